//! The chaos harness: raftnet under injected faults, with every answer checked.
//!
//! ```text
//! cargo run --release --example chaos -- --seconds 60 --seed 7 [--nodes 3|5] [--only soak|cluster]
//! ```
//!
//! Two runs, each `--seconds` long (the same seed fixes both):
//! - **the transport soak**: three `NetTransport`s calling each other through a fault-injecting
//!   proxy (appends with checksummed payloads, votes, pre-votes, TimeoutNow, snapshots,
//!   pipelines): every call must resolve once, with its own answer or an error, snapshots
//!   whole or not at all, and descriptors, threads and memory back to their baseline after the
//!   final heal;
//! - **the cluster**: 3 (or 5) processes of the node example (openraft over raftnet, data on
//!   disk) behind the proxy, 16 clients reading (linearizable reads), writing and
//!   compare-and-setting, while links are partitioned, cut one way, slowed, throttled and
//!   dropped, and nodes are killed with SIGKILL and restarted, or stopped with SIGSTOP past the
//!   election timeout; the history must be linearizable.
//!
//! It prints a progress line every 5 s and a table per run: operations by outcome, faults by
//! kind, recovery time after each heal (p50 / max), throughput during faults against
//! fault-free, violations (must be 0), and the seed to replay. It exits with status 1 if any run
//! found a violation. The nodes' data dirs and logs are in a temp dir, kept when the cluster
//! run fails. The harness itself is the `raftnet-chaos` package (`chaos/`).

use std::time::Duration;

use raftnet_chaos::{cluster, soak};

fn usage() -> &'static str {
    "usage: chaos [--seconds N] [--seed S] [--nodes 3|5] [--clients N] [--only soak|cluster]"
}

fn main() {
    let (mut seconds, mut seed, mut nodes, mut clients, mut only) = (60u64, None, 3usize, 16, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || {
            args.next().unwrap_or_else(|| {
                eprintln!("{arg} needs a value\n{}", usage());
                std::process::exit(2)
            })
        };
        let number = |v: String| -> u64 {
            v.parse().unwrap_or_else(|_| {
                eprintln!("not a number: {v}\n{}", usage());
                std::process::exit(2)
            })
        };
        match arg.as_str() {
            "--seconds" => seconds = number(value()),
            "--seed" => seed = Some(number(value())),
            "--nodes" => nodes = number(value()) as usize,
            "--clients" => clients = number(value()) as usize,
            "--only" => only = Some(value()),
            "--help" | "-h" => {
                println!("{}", usage());
                return;
            }
            other => {
                eprintln!("unknown argument {other}\n{}", usage());
                std::process::exit(2);
            }
        }
    }
    if nodes != 3 && nodes != 5 {
        eprintln!("--nodes must be 3 or 5\n{}", usage());
        std::process::exit(2);
    }
    // Without --seed, one from the clock, printed first so that a run cut short can be replayed.
    let seed = seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64 % 1_000_000)
    });
    println!("chaos: seed {seed}, {seconds} s per run (replay: --seed {seed})");
    let duration = Duration::from_secs(seconds);
    let mut violations = 0;

    if only.as_deref() != Some("cluster") {
        let report = soak::run(&soak::SoakConfig {
            duration,
            seed,
            progress: true,
        })
        .expect("the transport soak could not start");
        println!("\n{}", report.table());
        violations += report.violations.len();
    }

    if only.as_deref() != Some("soak") {
        let node_binary = cluster::build_node_example(env!("CARGO_MANIFEST_DIR").as_ref())
            .expect("build the node example");
        let dir = tempfile::Builder::new()
            .prefix("raftnet-chaos-")
            .tempdir()
            .expect("a temp dir for the nodes");
        let report = cluster::run(&cluster::ClusterConfig {
            node_binary,
            data_dir: dir.path().to_path_buf(),
            nodes,
            clients,
            duration,
            seed,
            progress: true,
        })
        .expect("the cluster could not start");
        println!("\n{}", report.table());
        if report.violations() > 0 {
            println!(
                "the nodes' data dirs and logs are kept in {}",
                dir.keep().display()
            );
        }
        violations += report.violations();
    }

    println!("violations: {violations} (seed {seed})");
    if violations > 0 {
        std::process::exit(1);
    }
}
