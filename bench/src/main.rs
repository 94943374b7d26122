//! `raftnet-bench`: runs the Raft RPC scenarios against raftnet and the tokio baseline in one
//! process, interleaved, plus the machine's raw loopback references, and prints a table (or JSON
//! lines) and writes an SVG chart. `raftnet-bench --help` describes the options.
//!
//! The harness is this binary; the scenarios, the implementations and the counters it reads are
//! the package's library (`raftnet_bench`):
//! - [`cli`]: the command line;
//! - [`runner`]: runs every (scenario, implementation) pair through warm-up, window and stop;
//! - [`results`]: the metrics of the runs, and the comparisons derived from them;
//! - [`output`]: the table, the JSON lines and the SVG chart.

#![forbid(unsafe_code)]

mod cli;
mod output;
mod results;
mod runner;

use std::process::ExitCode;

use cli::{Parsed, USAGE};

/// Take `--backend epoll|uring` (what raftnet's transports wait on) out of `args`.
fn take_backend(args: Vec<String>) -> Result<(Option<raftnet::Backend>, Vec<String>), String> {
    let mut backend = None;
    let mut rest = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let value = match arg.strip_prefix("--backend") {
            Some("") => args.next().unwrap_or_default(),
            Some(v) if v.starts_with('=') => v[1..].to_string(),
            _ => {
                rest.push(arg);
                continue;
            }
        };
        backend = Some(match value.as_str() {
            "epoll" => raftnet::Backend::Epoll,
            "uring" => raftnet::Backend::Uring,
            _ => return Err(format!("--backend: expected epoll or uring, not {value}")),
        });
    }
    Ok((backend, rest))
}

fn main() -> ExitCode {
    let args = match take_backend(std::env::args().skip(1).collect()) {
        Ok((backend, rest)) => {
            if let Some(backend) = backend {
                raftnet_bench::raftnet_impl::set_backend(backend);
            }
            rest
        }
        Err(e) => {
            eprintln!("raftnet-bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let options = match cli::parse_args(args) {
        Ok(Parsed::Run(o)) => o,
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("raftnet-bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if options.tls {
        if let Err(e) = raftnet_bench::raftnet_impl::use_tls() {
            eprintln!("raftnet-bench: {e}");
            return ExitCode::FAILURE;
        }
        eprintln!(
            "raftnet-bench: the RPC scenarios run over mutual TLS (raftnet's and the tokio baseline's direct design)"
        );
        // A trap of the machine, not of either implementation, that can decide the TLS bulk
        // rows: say so before the figures (copy_check's module doc).
        if let Some(note) = raftnet_bench::copy_check::note(raftnet_bench::copy_check::measure()) {
            eprintln!("raftnet-bench: note: {note}");
        }
    }
    let imps = runner::implementations(&options);
    let results = runner::run_all(&options, &imps, true);
    output::print(&results);
    if options.tls {
        // The smoke test reads this: tokio rows that ran plaintext would show 0.
        eprintln!(
            "raftnet-bench: tokio TLS handshakes: {}",
            raftnet_bench::tls::tokio_handshakes()
        );
    }
    ExitCode::SUCCESS
}
