//! The tokio baseline's variants and the benchmark store, through the package's library: every
//! variant the harness may report as tokio's best answers every RPC scenario correctly (each
//! answer is checked against what the scenario fixes: term, success or granted, last log index;
//! snapshot bodies byte by byte), and the openraft cluster on the benchmark store commits writes
//! that every node then holds (`cluster::run` checks each client's last acknowledged write on
//! every node).

use std::time::Duration;

use raftnet_bench::cluster::{self, Network, Store};
use raftnet_bench::pin::Placement;
use raftnet_bench::scenario::{Control, Implementation, Sample, Scenario};
use raftnet_bench::tokio_impl::{Design, Flavor, TokioImpl};

/// Run `run` through a warm-up and a measured window, widening both while nothing completes
/// (a loaded machine can take a while to set a run up); the sample of the last window.
fn measured(run: impl Fn(&Control) -> Result<Sample, String> + Sync) -> Result<Sample, String> {
    let windows = [(100, 300), (1000, 2000), (5000, 5000)];
    let mut last = Err("not run".to_string());
    for (warmup, window) in windows {
        let control = Control::new();
        last = std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(warmup));
                control.start_measuring();
                std::thread::sleep(Duration::from_millis(window));
                control.stop();
            });
            run(&control)
        });
        if !matches!(&last, Ok(sample) if sample.ops == 0) {
            break;
        }
    }
    last
}

/// Every variant `TokioImpl::variants` offers, on every RPC scenario it runs, completes
/// operations with every answer right.
#[test]
fn every_tokio_variant_answers_every_scenario() {
    let variants = TokioImpl::variants(Placement::None, None, None);
    let names: Vec<&str> = variants.iter().map(|v| v.name()).collect();
    assert_eq!(
        names,
        [
            "tokio:direct/current",
            "tokio:direct/multi1",
            "tokio:direct/multi2",
            "tokio:tasks/current",
        ]
    );
    for variant in &variants {
        for scenario in Scenario::ALL {
            if scenario.cluster_clients().is_some() || !variant.runs(scenario) {
                continue;
            }
            let what = format!("{} {}", variant.name(), scenario.name());
            let sample = measured(|control| variant.run(scenario, control))
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(sample.ops > 0, "{what}: nothing completed");
            assert_eq!(sample.ops as usize, sample.latencies_ns.len(), "{what}");
            if let Some((count, size)) = scenario.entries() {
                assert_eq!(
                    sample.payload_bytes,
                    sample.ops * (count * size) as u64,
                    "{what}: payload of the completed appends"
                );
            }
        }
    }
    // One variant per invocation runs the cluster scenarios; multi2 only heartbeat-under-load.
    let cluster_runners: Vec<&str> = variants
        .iter()
        .filter(|v| v.runs(Scenario::ClusterBench16))
        .map(|v| v.name())
        .collect();
    assert_eq!(cluster_runners, ["tokio:direct/current"]);
    let multi2 = TokioImpl::variant(Design::Direct, Flavor::MultiThread(2));
    assert!(multi2.runs(Scenario::HeartbeatUnderLoad) && !multi2.runs(Scenario::HeartbeatSeq));
}

/// The benchmark store under both networks: writes commit, and every node holds each
/// client's last acknowledged write (the check `cluster::run` makes before it returns).
#[test]
fn the_bench_store_replicates_every_acknowledged_write() {
    for network in [Network::Raftnet, Network::Tokio] {
        let what = format!("{} on the bench store", network.name());
        let sample = measured(|control| cluster::run(network, Store::Bench, 16, control))
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(sample.ops > 0, "{what}: no write committed");
        assert_eq!(sample.ops as usize, sample.latencies_ns.len(), "{what}");
    }
}
