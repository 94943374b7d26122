//! `cargo bench -p raftnet-bench --bench compare`: the main scenarios of `raftnet-bench` as
//! criterion groups, one per scenario, with raftnet, the tokio baseline and the machine's raw
//! loopback reference as functions of the same group, so criterion's report and its HTML plots
//! (target/criterion/report/index.html) show them side by side.
//!
//! Nothing here is a second implementation: every function runs the tool's own
//! ([`RaftnetImpl`], [`TokioImpl`], [`raw`]), with their setup, their placement and their
//! answer checks (a wrong answer or a damaged snapshot body fails the bench, so a transport
//! returning garbage cannot look fast). Criterion asks for a number of iterations; each sample
//! builds both ends afresh and [`time_operations`] times exactly that many operations after a
//! warm-up (connections dialled, pipelines full), leaving setup and teardown out of the time.
//!
//! What an iteration is, per group (the same for every function of the group, so criterion's
//! times and throughputs compare directly):
//!
//! | group | iteration | throughput | raw reference |
//! |---|---|---|---|
//! | heartbeat-seq, vote-seq, append-100b-seq | one RPC, answered, the next sent after it | RPCs | raw-pingpong-64b: one 64 B round trip |
//! | heartbeat-pipelined | one RPC completing, 128 in flight | RPCs | none (below) |
//! | append-64x1k-pipelined | one RPC of 64 entries of 1 KiB completing, 128 in flight | entry bytes | raw-bulk-64k: one 64 KiB write |
//! | append-1m-pipelined | one RPC of a 1 MiB entry completing, 8 in flight | entry bytes | raw-bulk-1m: one 1 MiB write |
//! | snapshot-64m | one 64 MiB InstallSnapshot, body checked | snapshot bytes | raw-bulk-1m: 64 writes of 1 MiB |
//!
//! heartbeat-pipelined has no raw reference: the raw references are a sequential ping-pong and
//! one-way bulk bytes, and a pipelined stream of small requests is neither (beside it the
//! ping-pong would read as "raw is 9x slower").
//!
//! Placement: every thread on CPU 0 (`raftnet-bench`'s default, `--pin same`); set
//! `RAFTNET_BENCH_PIN=split` (server threads on CPU 1, client threads on CPU 0) or `none`. The
//! tokio baseline is its direct design (`TokioImpl::default()`) on the runtime flavour measured
//! best for the placement; `raftnet-bench` runs every variant and compares with the best. The other
//! scenarios (heartbeat-under-load's latency, fan-in-1000, the openraft cluster), CPU time and
//! context switches per operation, and rounds are `raftnet-bench`'s (BENCHMARKS.md).

use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use raftnet_bench::pin::{self, Placement};
use raftnet_bench::raftnet_impl::RaftnetImpl;
use raftnet_bench::raw;
use raftnet_bench::scenario::{
    BULK_PIPELINE_DEPTH, Control, Implementation, PIPELINE_DEPTH, SNAPSHOT_SIZE, Sample, Scenario,
    time_operations,
};
use raftnet_bench::tokio_impl::TokioImpl;

/// The machine's reference for a group: the same work over plain blocking sockets.
#[derive(Debug, Clone, Copy)]
enum Reference {
    /// `raw-pingpong-64b`: an iteration is one 64 B round trip.
    PingPong,
    /// One-way bulk bytes: an iteration is `writes` blocking writes of `write_size` bytes.
    Bulk {
        name: &'static str,
        write_size: usize,
        writes: u64,
    },
}

impl Reference {
    fn name(self) -> &'static str {
        match self {
            Reference::PingPong => raw::Raw::PingPong.name(),
            Reference::Bulk { name, .. } => name,
        }
    }

    /// Raw operations per iteration.
    fn ops_per_iteration(self) -> u64 {
        match self {
            Reference::PingPong => 1,
            Reference::Bulk { writes, .. } => writes,
        }
    }

    /// Raw operations before the window opens: the connection up, the socket buffers full.
    fn warmup(self) -> u64 {
        match self {
            Reference::PingPong => SEQUENTIAL_WARMUP,
            Reference::Bulk { write_size, .. } => (8 << 20) / write_size as u64,
        }
    }

    fn run(self, control: &Control) -> Result<Sample, String> {
        match self {
            Reference::PingPong => raw::ping_pong(control),
            Reference::Bulk { write_size, .. } => raw::bulk_in_writes_of(write_size, control),
        }
    }
}

/// Sequential operations before a window opens (the first dials the connection).
const SEQUENTIAL_WARMUP: u64 = 16;

/// One criterion group: a scenario, what an iteration moves, and how long to sample it.
struct Group {
    scenario: Scenario,
    throughput: Throughput,
    /// Operations each run completes before its window opens: enough to dial the connection
    /// and, for pipelined scenarios, to fill the pipeline twice over.
    warmup: u64,
    reference: Option<Reference>,
    /// Fewer samples for the bulk groups, whose iterations take milliseconds: the whole bench
    /// stays at a few minutes.
    sample_size: usize,
    measurement_time: Duration,
    /// `Flat` where an iteration takes tens of milliseconds (criterion's advice: its linear
    /// sampling would need more time than the group is given).
    sampling_mode: SamplingMode,
}

fn groups() -> [Group; 7] {
    let sequential = |scenario| Group {
        scenario,
        throughput: Throughput::Elements(1),
        warmup: SEQUENTIAL_WARMUP,
        reference: Some(Reference::PingPong),
        sample_size: 30,
        measurement_time: Duration::from_secs(3),
        sampling_mode: SamplingMode::Auto,
    };
    let entry_bytes =
        |scenario: Scenario| scenario.entries().map_or(0, |(n, size)| (n * size) as u64);
    [
        sequential(Scenario::HeartbeatSeq),
        sequential(Scenario::VoteSeq),
        sequential(Scenario::Append100bSeq),
        Group {
            scenario: Scenario::HeartbeatPipelined,
            throughput: Throughput::Elements(1),
            warmup: 2 * PIPELINE_DEPTH as u64,
            reference: None,
            sample_size: 30,
            measurement_time: Duration::from_secs(3),
            sampling_mode: SamplingMode::Auto,
        },
        Group {
            scenario: Scenario::Append64x1kPipelined,
            throughput: Throughput::Bytes(entry_bytes(Scenario::Append64x1kPipelined)),
            warmup: 2 * PIPELINE_DEPTH as u64,
            reference: Some(Reference::Bulk {
                name: "raw-bulk-64k",
                write_size: 64 << 10,
                writes: 1,
            }),
            sample_size: 30,
            measurement_time: Duration::from_secs(3),
            sampling_mode: SamplingMode::Auto,
        },
        Group {
            scenario: Scenario::Append1mPipelined,
            throughput: Throughput::Bytes(entry_bytes(Scenario::Append1mPipelined)),
            warmup: 2 * BULK_PIPELINE_DEPTH as u64,
            reference: Some(Reference::Bulk {
                name: "raw-bulk-1m",
                write_size: raw::BULK_WRITE,
                writes: 1,
            }),
            sample_size: 20,
            measurement_time: Duration::from_secs(3),
            sampling_mode: SamplingMode::Auto,
        },
        Group {
            scenario: Scenario::Snapshot64m,
            throughput: Throughput::Bytes(SNAPSHOT_SIZE as u64),
            warmup: 1,
            reference: Some(Reference::Bulk {
                name: "raw-bulk-1m",
                write_size: raw::BULK_WRITE,
                writes: (SNAPSHOT_SIZE / raw::BULK_WRITE) as u64,
            }),
            sample_size: 10,
            measurement_time: Duration::from_secs(5),
            sampling_mode: SamplingMode::Flat,
        },
    ]
}

/// `RAFTNET_BENCH_PIN`, or `same`.
fn placement() -> Placement {
    match std::env::var("RAFTNET_BENCH_PIN") {
        Err(_) => Placement::Same,
        Ok(name) => Placement::from_name(&name)
            .unwrap_or_else(|| panic!("RAFTNET_BENCH_PIN={name}: expected same, split or none")),
    }
}

/// The measured window of `ops` operations of `run`; a failed run fails the bench, saying why.
fn timed(
    what: &str,
    warmup: u64,
    ops: u64,
    run: impl FnOnce(&Control) -> Result<Sample, String> + Send,
) -> Duration {
    time_operations(warmup, ops, run).unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn compare(c: &mut Criterion) {
    let placement = placement();
    pin::set_placement(placement);
    let tokio = TokioImpl::default();
    eprintln!(
        "compare: placement {} (RAFTNET_BENCH_PIN=same|split|none), tokio baseline: {}",
        placement.name(),
        tokio.describe()
    );
    let implementations: [&dyn Implementation; 2] = [&RaftnetImpl::default(), &tokio];
    for group in groups() {
        let scenario = group.scenario;
        let mut criterion_group = c.benchmark_group(scenario.name());
        criterion_group
            .throughput(group.throughput)
            .sample_size(group.sample_size)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(group.measurement_time)
            .sampling_mode(group.sampling_mode);
        for imp in implementations {
            let what = format!("{}/{}", scenario.name(), imp.name());
            criterion_group.bench_function(imp.name(), |b| {
                b.iter_custom(|iters| {
                    timed(&what, group.warmup, iters, |control| {
                        imp.run(scenario, control)
                    })
                })
            });
        }
        if let Some(reference) = group.reference {
            let what = format!("{}/{}", scenario.name(), reference.name());
            criterion_group.bench_function(reference.name(), |b| {
                b.iter_custom(|iters| {
                    let ops = iters * reference.ops_per_iteration();
                    timed(&what, reference.warmup(), ops, |control| {
                        reference.run(control)
                    })
                })
            });
        }
        criterion_group.finish();
    }
}

criterion_group!(benches, compare);
criterion_main!(benches);
