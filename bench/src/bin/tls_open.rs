//! `raftnet-tls-open`: what each end of a TLS stream spends per byte, through rustls' buffered
//! API (raftnet's path before) and its unbuffered one (raftnet's path now), alternated in each
//! round: the receiving end opening records (in place on the unbuffered path), then the sending
//! end sealing them; plaintext GB/s per path and the ratio, then the medians.
//!
//! ```text
//! cargo run --release -p raftnet-bench --bin raftnet-tls-open -- [FRAMES] [ROUNDS]
//! ```
//!
//! FRAMES 1 MiB frames per path and round (default 256), ROUNDS rounds (default 5). The module
//! doc of `raftnet_bench::tls_open` says what each path copies.

use raftnet_bench::measure::median;
use raftnet_bench::tls_open::{Ends, Path, receive, send};

fn main() -> Result<(), String> {
    let mut args = std::env::args().skip(1);
    let frames: usize = args
        .next()
        .map_or(Ok(256), |a| a.parse())
        .map_err(|_| "FRAMES")?;
    let rounds: usize = args
        .next()
        .map_or(Ok(5), |a| a.parse())
        .map_err(|_| "ROUNDS")?;
    let ends = Ends::new()?;
    let bytes = (frames * raftnet_bench::tls_open::FRAME) as f64;
    // Per path: GB/s opened, GB/s sealed.
    let mut rates: [[Vec<f64>; 2]; 2] = Default::default();
    for round in 1..=rounds {
        let opened = |path| -> Result<f64, String> {
            let seconds = receive(&ends, path, frames, &mut |frame| {
                std::hint::black_box(frame);
            })?;
            Ok(bytes / seconds / 1e9)
        };
        let sealed = |path| -> Result<f64, String> {
            Ok(bytes / send(&ends, path, frames, false)?.seconds / 1e9)
        };
        let o = [opened(Path::Buffered)?, opened(Path::InPlace)?];
        let s = [sealed(Path::Buffered)?, sealed(Path::InPlace)?];
        println!("round {round}: {}", line(o, s));
        for path in 0..2 {
            rates[path][0].push(o[path]);
            rates[path][1].push(s[path]);
        }
    }
    // NaN when no round ran.
    let m = |v: &Vec<f64>| median(v.clone()).unwrap_or(f64::NAN);
    let o = [m(&rates[0][0]), m(&rates[1][0])];
    let s = [m(&rates[0][1]), m(&rates[1][1])];
    println!("medians: {}", line(o, s));
    Ok(())
}

/// One round's (or the medians') rates: opened and sealed, buffered and unbuffered, and the time
/// per byte of both ends together (a stream's cost) as a ratio.
fn line(opened: [f64; 2], sealed: [f64; 2]) -> String {
    let both = |path: usize| 1.0 / opened[path] + 1.0 / sealed[path];
    format!(
        "plaintext GB/s opened: buffered {:.2}, in place {:.2} ({:.2}x); sealed: buffered {:.2}, \
         unbuffered {:.2} ({:.2}x); both ends: unbuffered {:.2}x buffered",
        opened[0],
        opened[1],
        opened[1] / opened[0],
        sealed[0],
        sealed[1],
        sealed[1] / sealed[0],
        both(0) / both(1),
    )
}
