//! `raftnet-tls-open`: what the receiving side of a TLS stream spends per byte opening records,
//! through rustls' buffered API (raftnet's path today) and its unbuffered one (records opened in
//! place), alternated in each round; plaintext GB/s per path and the ratio, then the medians.
//!
//! ```text
//! cargo run --release -p raftnet-bench --bin raftnet-tls-open -- [FRAMES] [ROUNDS]
//! ```
//!
//! FRAMES 1 MiB frames per path and round (default 256), ROUNDS rounds (default 5). The module
//! doc of `raftnet_bench::tls_open` says what each path copies.

use raftnet_bench::measure::median;
use raftnet_bench::tls_open::{Ends, Path, receive};

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
    let (mut buffered, mut in_place) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        let rate = |path| -> Result<f64, String> {
            let seconds = receive(&ends, path, frames, &mut |frame| {
                std::hint::black_box(frame);
            })?;
            Ok(bytes / seconds / 1e9)
        };
        let b = rate(Path::Buffered)?;
        let p = rate(Path::InPlace)?;
        println!(
            "round {round}: plaintext GB/s opened: buffered {b:.2}, in place {p:.2} ({:.2}x)",
            p / b
        );
        buffered.push(b);
        in_place.push(p);
    }
    // NaN when no round ran.
    let (b, p) = (
        median(buffered).unwrap_or(f64::NAN),
        median(in_place).unwrap_or(f64::NAN),
    );
    println!("medians: buffered {b:.2}, in place {p:.2} ({:.2}x)", p / b);
    Ok(())
}
