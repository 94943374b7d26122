//! The chaos smoke: a short run of each of `examples/chaos.rs`'s two runs, with fixed seeds
//! (the full runs and their tables are in RELIABILITY.md).
//!
//! - `transport_soak_under_faults`: three transports calling each other through the
//!   fault-injecting proxy for 12 s: every call resolves once, with its own answer or an error a
//!   fault explains; snapshots arrive whole or fail; resources return to their baseline.
//! - `cluster_history_is_linearizable_under_faults`: three node-example processes behind the
//!   proxy for 20 s of partitions, cuts, drops, kill -9 with restarts and SIGSTOPs, with 8
//!   clients: the recorded history of reads, writes and compare-and-sets is linearizable.
//!
//! Run one at a time (they share the two cores with everything else `cargo test` runs, and each
//! counts on timers firing roughly on time): the second waits for the first.

use std::sync::Mutex;
use std::time::Duration;

use raftnet_chaos::checker::Verdict;
use raftnet_chaos::{cluster, soak};

/// One chaos run at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn transport_soak_under_faults() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let report = soak::run(&soak::SoakConfig {
        duration: Duration::from_secs(12),
        seed: 1,
        progress: false,
    })
    .expect("the soak starts");
    println!("{}", report.table());
    assert!(report.violations.is_empty(), "{}", report.table());
    assert_eq!(report.never_resolved, 0);
    // It did something: calls of every kind answered, faults injected (the seed fixes them).
    assert!(report.ok() >= 1000, "{}", report.table());
    assert_eq!(
        report.calls.len(),
        6,
        "every call kind ran: {:?}",
        report.calls
    );
    assert!(
        report.calls.values().all(|&(ok, _)| ok > 0),
        "{:?}",
        report.calls
    );
    assert!(
        report.availability.total_faults() >= 3,
        "{}",
        report.table()
    );
}

#[test]
fn cluster_history_is_linearizable_under_faults() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let node_binary = cluster::build_node_example(env!("CARGO_MANIFEST_DIR").as_ref())
        .expect("build the node example");
    let dir = tempfile::tempdir().unwrap();
    let report = cluster::run(&cluster::ClusterConfig {
        node_binary,
        data_dir: dir.path().to_path_buf(),
        nodes: 3,
        clients: 8,
        duration: Duration::from_secs(20),
        seed: 7,
        progress: false,
    })
    .expect("the cluster starts");
    println!("{}", report.table());
    if report.violations() > 0 {
        let kept = dir.keep();
        panic!(
            "{}\nthe nodes' logs are in {}",
            report.table(),
            kept.display()
        );
    }
    assert_eq!(report.verdict, Verdict::Linearizable);
    // It did something: every kind of operation answered, on several key sets, under faults.
    for kind in ["read", "write", "cas"] {
        assert!(
            report.operations.get(kind).is_some_and(|o| o[0] > 0),
            "no {kind} answered: {}",
            report.table()
        );
    }
    assert!(report.history_len >= 200, "{}", report.table());
    assert!(
        report.availability.total_faults() >= 3,
        "{}",
        report.table()
    );
}
