//! The scenarios and the contract an implementation follows.
//!
//! The harness runs an implementation's [`Implementation::run`] on a thread of its own. The run
//! builds both ends (server and client) in this process, then drives load until
//! [`Control::stopped`]. Only operations that *complete* while [`Control::measuring`] count; the
//! harness switches phases (warm-up → measure → stop) and reads CPU time and wake-ups at the
//! edges of the measured window, so implementations never time themselves.
//!
//! The criterion benches (`benches/compare.rs`) run the same implementations by operation count
//! instead of by time: a control made with [`Control::with_budget`] switches its own phases as
//! operations complete (warm-up for a number of them, then exactly the number criterion asked
//! for, then stop) and stamps the measured window's edges, so setup and teardown stay outside it
//! and the drivers, with their answer checks, are the tool's own.

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// A scenario, named as the issue names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scenario {
    /// Sequential heartbeats, one caller (answered by the server's heartbeat fast path where the
    /// implementation has one).
    HeartbeatSeq,
    /// Heartbeats through a pipeline (up to [`PIPELINE_DEPTH`] in flight), answered by a consumer
    /// thread on the server.
    HeartbeatPipelined,
    /// Sequential AppendEntries with one 100-byte entry.
    Append100bSeq,
    /// Pipelined AppendEntries with 64 entries of 1 KiB.
    Append64x1kPipelined,
    /// Pipelined AppendEntries with one 1 MiB entry (up to [`BULK_PIPELINE_DEPTH`] in flight).
    Append1mPipelined,
    /// Sequential RequestVote.
    VoteSeq,
    /// InstallSnapshot of [`SNAPSHOT_SIZE`] bytes, one transfer after another.
    Snapshot64m,
    /// Sequential heartbeat latency while `snapshot-64m` and `append-1m-pipelined` run to the
    /// same peer.
    HeartbeatUnderLoad,
    /// [`FAN_IN_CONNECTIONS`] connections to one server, each doing sequential heartbeats.
    FanIn1000,
    /// Sequential heartbeats, each on a new connection: connect (with `--tls`, the mutual TLS
    /// handshake), one heartbeat, close. An op is a connection: handshakes per second.
    HandshakeSeq,
    /// A 3-node openraft cluster over the implementation's network ([`crate::cluster`]), one
    /// client calling `client_write` on the leader; an op is a committed write.
    Cluster1,
    /// The same with 16 concurrent clients.
    Cluster16,
    /// The same with 64 concurrent clients.
    Cluster64,
    /// `cluster-1` with the benchmark store ([`crate::bench_store`]) in place of
    /// openraft-memstore, so the store's JSON does not hide the network.
    ClusterBench1,
    /// `cluster-16` with the benchmark store.
    ClusterBench16,
    /// `cluster-64` with the benchmark store.
    ClusterBench64,
}

/// The start of the error of a run whose implementation does not apply to its scenario (the
/// table prints it as it is, not as an error).
pub const NOT_APPLICABLE: &str = "n/a";

/// Requests in flight in the small-message pipelined scenarios.
pub const PIPELINE_DEPTH: usize = 128;
/// Requests in flight with 1 MiB entries.
pub const BULK_PIPELINE_DEPTH: usize = 8;
/// The snapshot size.
pub const SNAPSHOT_SIZE: usize = 64 << 20;
/// Connections in `fan-in-1000`.
pub const FAN_IN_CONNECTIONS: usize = 1000;

/// The smoke tests' (warm-up, measured window) pairs, tried in order while a run completes
/// nothing: short on an idle machine, wide enough for a loaded one to finish setting up.
#[cfg(test)]
pub(crate) const SMOKE_WINDOWS: [(Duration, Duration); 3] = [
    (Duration::from_millis(100), Duration::from_millis(300)),
    (Duration::from_secs(1), Duration::from_secs(2)),
    (Duration::from_secs(5), Duration::from_secs(5)),
];

impl Scenario {
    /// Every scenario, in the order the table shows them.
    pub const ALL: [Scenario; 16] = [
        Scenario::HeartbeatSeq,
        Scenario::HeartbeatPipelined,
        Scenario::Append100bSeq,
        Scenario::Append64x1kPipelined,
        Scenario::Append1mPipelined,
        Scenario::VoteSeq,
        Scenario::Snapshot64m,
        Scenario::HeartbeatUnderLoad,
        Scenario::FanIn1000,
        Scenario::HandshakeSeq,
        Scenario::Cluster1,
        Scenario::Cluster16,
        Scenario::Cluster64,
        Scenario::ClusterBench1,
        Scenario::ClusterBench16,
        Scenario::ClusterBench64,
    ];

    /// The openraft cluster scenarios (`--scenario cluster`), both stores.
    pub const CLUSTER: [Scenario; 6] = [
        Scenario::Cluster1,
        Scenario::Cluster16,
        Scenario::Cluster64,
        Scenario::ClusterBench1,
        Scenario::ClusterBench16,
        Scenario::ClusterBench64,
    ];

    /// The name used on the command line and in the output.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::HeartbeatSeq => "heartbeat-seq",
            Scenario::HeartbeatPipelined => "heartbeat-pipelined",
            Scenario::Append100bSeq => "append-100b-seq",
            Scenario::Append64x1kPipelined => "append-64x1k-pipelined",
            Scenario::Append1mPipelined => "append-1m-pipelined",
            Scenario::VoteSeq => "vote-seq",
            Scenario::Snapshot64m => "snapshot-64m",
            Scenario::HeartbeatUnderLoad => "heartbeat-under-load",
            Scenario::FanIn1000 => "fan-in-1000",
            Scenario::HandshakeSeq => "handshake-seq",
            Scenario::Cluster1 => "cluster-1",
            Scenario::Cluster16 => "cluster-16",
            Scenario::Cluster64 => "cluster-64",
            Scenario::ClusterBench1 => "cluster-bench-1",
            Scenario::ClusterBench16 => "cluster-bench-16",
            Scenario::ClusterBench64 => "cluster-bench-64",
        }
    }

    /// The scenario called `name`.
    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Concurrent clients, for the openraft cluster scenarios.
    pub fn cluster_clients(self) -> Option<usize> {
        match self {
            Scenario::Cluster1 | Scenario::ClusterBench1 => Some(1),
            Scenario::Cluster16 | Scenario::ClusterBench16 => Some(16),
            Scenario::Cluster64 | Scenario::ClusterBench64 => Some(64),
            _ => None,
        }
    }

    /// The store of an openraft cluster scenario.
    pub fn cluster_store(self) -> Option<crate::cluster::Store> {
        use crate::cluster::Store;
        match self {
            Scenario::Cluster1 | Scenario::Cluster16 | Scenario::Cluster64 => Some(Store::Memstore),
            Scenario::ClusterBench1 | Scenario::ClusterBench16 | Scenario::ClusterBench64 => {
                Some(Store::Bench)
            }
            _ => None,
        }
    }

    /// Entries per AppendEntries and bytes per entry, for the append scenarios.
    pub fn entries(self) -> Option<(usize, usize)> {
        match self {
            Scenario::Append100bSeq => Some((1, 100)),
            Scenario::Append64x1kPipelined => Some((64, 1024)),
            Scenario::Append1mPipelined => Some((1, 1 << 20)),
            _ => None,
        }
    }
}

const WARMUP: u8 = 0;
const MEASURE: u8 = 1;
const STOP: u8 = 2;

/// The phase of a run, set by the harness, read by the implementation's threads. Clones share
/// the phase: a run hands them to tasks that must be `'static` (tokio's `spawn`), which then see
/// the harness's switches as they happen, with nothing relaying them.
#[derive(Debug, Default, Clone)]
pub struct Control {
    phase: Arc<AtomicU8>,
    /// Set by [`Control::with_budget`]: the phases follow completed operations, not the harness.
    budget: Option<Arc<Budget>>,
}

/// A run measured by operation count (see [`Control::with_budget`]).
#[derive(Debug)]
struct Budget {
    /// Operations that warm up (connections dialled, pipelines filled) before the window opens.
    warmup: u64,
    /// Operations counted in the window.
    measured: u64,
    /// Operations completed so far, counted or not.
    completed: AtomicU64,
    /// When the last warm-up operation completed: the window opens.
    opened: OnceLock<Instant>,
    /// When the last counted operation completed: the window closes.
    closed: OnceLock<Instant>,
}

impl Control {
    /// A control in the warm-up phase.
    pub fn new() -> Control {
        Control::default()
    }

    /// A control that runs by operation count, for the criterion benches: the first `warmup`
    /// operations to complete warm up (at least one, so that the window opens when an operation
    /// completes, after the run's setup); the window opens as the last of them completes and
    /// closes as the next `measured` have, and the control stops the run there. The drivers
    /// need nothing else: they check [`Control::stopped`] and [`Sample::record`] their
    /// completions as with the harness. [`Control::measured_window`] gives the window's length.
    ///
    /// A pipelined driver has operations in flight when the window opens and when it closes,
    /// so the window measures its steady state. With several threads completing operations at
    /// once, the stamp of an edge may come a moment after the completion that set it; the
    /// scenarios the benches run complete on one thread.
    pub fn with_budget(warmup: u64, measured: u64) -> Control {
        Control {
            phase: Arc::default(),
            budget: Some(Arc::new(Budget {
                warmup: warmup.max(1),
                measured,
                completed: AtomicU64::new(0),
                opened: OnceLock::new(),
                closed: OnceLock::new(),
            })),
        }
    }

    /// For a control [`with_budget`](Control::with_budget): the time from the completion of the
    /// last warm-up operation to that of the last counted one, once the run got that far.
    pub fn measured_window(&self) -> Option<Duration> {
        let budget = self.budget.as_ref()?;
        let (opened, closed) = (budget.opened.get()?, budget.closed.get()?);
        Some(closed.duration_since(*opened))
    }

    /// An operation completed: whether it counts. Under the harness, it counts while
    /// [`measuring`](Control::measuring); under a budget, this moves the phases as the budget
    /// says.
    pub fn complete_operation(&self) -> bool {
        let Some(budget) = &self.budget else {
            return self.measuring();
        };
        let n = budget.completed.fetch_add(1, Ordering::Relaxed) + 1;
        let last = budget.warmup + budget.measured;
        if n < budget.warmup || n > last {
            return false;
        }
        if n == budget.warmup {
            let _ = budget.opened.set(Instant::now());
            self.start_measuring();
        }
        if n == last {
            let _ = budget.closed.set(Instant::now());
            self.stop();
        }
        // The last warm-up operation opens the window; it is not in it.
        n > budget.warmup
    }

    /// Whether completions count now.
    pub fn measuring(&self) -> bool {
        self.phase.load(Ordering::Relaxed) == MEASURE
    }

    /// Whether the run is over: stop issuing work, wind down, return the sample.
    pub fn stopped(&self) -> bool {
        self.phase.load(Ordering::Relaxed) == STOP
    }

    /// (Harness) start the measured window.
    pub fn start_measuring(&self) {
        self.phase.store(MEASURE, Ordering::Relaxed);
    }

    /// (Harness) end the run.
    pub fn stop(&self) {
        self.phase.store(STOP, Ordering::Relaxed);
    }

    /// (Harness) back to warm-up, to reuse a control (one without a budget: a budget runs once).
    pub fn reset(&self) {
        self.phase.store(WARMUP, Ordering::Relaxed);
    }
}

/// How long a run waits for its budget before [`time_operations`] stops it and gives up: far
/// beyond any sample criterion sizes (seconds), short of hanging a CI job for good.
pub const BUDGET_TIMEOUT: Duration = Duration::from_secs(600);

/// The criterion benches' runner: `run` (an [`Implementation::run`] or a raw reference) on a
/// thread of its own, placed as a client thread as the harness places it, under
/// [`Control::with_budget`]`(warmup, ops)`; the measured window, once exactly `ops` operations
/// were counted in it and the run returned `Ok`. Anything else is an `Err` that says what: the
/// run's own error (a wrong answer, a refused snapshot body), a run that returned before its
/// budget, or one that counted another number of operations.
pub fn time_operations(
    warmup: u64,
    ops: u64,
    run: impl FnOnce(&Control) -> Result<Sample, String> + Send,
) -> Result<Duration, String> {
    let control = Control::with_budget(warmup, ops);
    let (done, result) = std::sync::mpsc::channel();
    let sample = std::thread::scope(|s| {
        s.spawn(|| {
            crate::pin::pin_client_thread();
            let _ = done.send(run(&control));
        });
        result.recv_timeout(BUDGET_TIMEOUT).unwrap_or_else(|e| {
            // Let the run wind down (the scope joins it) and say why it ended.
            control.stop();
            Err(match e {
                RecvTimeoutError::Timeout => format!(
                    "{ops} operations not done within {} s",
                    BUDGET_TIMEOUT.as_secs()
                ),
                RecvTimeoutError::Disconnected => "the run panicked".into(),
            })
        })
    })?;
    let window = control
        .measured_window()
        .ok_or("the run returned before its budget was done")?;
    if sample.ops != ops {
        return Err(format!(
            "the run counted {} operations, expected {ops}",
            sample.ops
        ));
    }
    Ok(window)
}

/// What one run produced inside the measured window.
#[derive(Debug, Default, Clone)]
pub struct Sample {
    /// Operations completed (RPCs; transfers for `snapshot-64m`; heartbeats for
    /// `heartbeat-under-load`; committed client writes for the `cluster-*` scenarios).
    pub ops: u64,
    /// Payload bytes moved by those operations (entry data, snapshot bytes; for
    /// `heartbeat-under-load`, the background load's bytes).
    pub payload_bytes: u64,
    /// Latency of each counted operation, in nanoseconds (for pipelined ones: time in flight,
    /// from send to completion; for cluster writes: the `client_write` call, i.e. commit). Implementations may subsample if there are very many.
    pub latencies_ns: Vec<u64>,
    /// CPU time and context switches of other processes the run drove during the window (the
    /// Go column's `hashicorp-bench` process, which reads its own getrusage at the window's
    /// edges): the harness reads only this process's (`RUSAGE_SELF`), and adds these, so CPU
    /// per op covers both ends wherever they run.
    pub other_processes: Option<crate::measure::Usage>,
}

impl Sample {
    /// Merge another thread's sample into this one.
    pub fn merge(&mut self, other: Sample) {
        self.ops += other.ops;
        self.payload_bytes += other.payload_bytes;
        self.latencies_ns.extend(other.latencies_ns);
        if let Some(usage) = other.other_processes {
            self.add_other_process(usage);
        }
    }

    /// Add another process's CPU time and context switches in the window.
    pub fn add_other_process(&mut self, usage: crate::measure::Usage) {
        let total = self.other_processes.get_or_insert_with(Default::default);
        total.cpu += usage.cpu;
        total.switches += usage.switches;
    }

    /// Count one completed operation, if it counts ([`Control::complete_operation`]).
    pub fn record(&mut self, control: &Control, latency: Duration, payload_bytes: u64) {
        if control.complete_operation() {
            self.ops += 1;
            self.payload_bytes += payload_bytes;
            self.latencies_ns.push(latency.as_nanos() as u64);
        }
    }

    /// Count one completed operation without a latency (a one-way write), if it counts.
    pub fn count(&mut self, control: &Control, payload_bytes: u64) {
        if control.complete_operation() {
            self.ops += 1;
            self.payload_bytes += payload_bytes;
        }
    }
}

/// An implementation of the scenarios (raftnet or the tokio baseline).
pub trait Implementation: Send + Sync {
    /// `raftnet` or `tokio`.
    fn name(&self) -> &'static str;

    /// Build both ends, drive `scenario` until `control.stopped()`, tear everything down, and
    /// return what completed while `control.measuring()`. Server-side threads must be created
    /// inside [`crate::pin::as_server`], client-side ones inside [`crate::pin::as_client`], so
    /// the `--pin` placement applies to both implementations alike.
    fn run(&self, scenario: Scenario, control: &Control) -> Result<Sample, String>;

    /// Whether this implementation runs `scenario` (a variant may leave one to another).
    fn runs(&self, _scenario: Scenario) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A driver as the implementations write them: complete operations until stopped, each
    /// taking `each`, after `setup`; the instants around the window's edges, for the checks.
    struct Driven {
        sample: Sample,
        /// Just before the last warm-up operation completed.
        before_open: Instant,
        /// Just after the last counted one completed.
        after_close: Instant,
        /// Operations the driver completed in all (it stops at the control's word).
        completed: u64,
    }

    fn drive(control: &Control, warmup: u64, setup: Duration, each: Duration) -> Driven {
        std::thread::sleep(setup);
        let (mut before_open, mut after_close) = (Instant::now(), Instant::now());
        let mut sample = Sample::default();
        let mut completed = 0;
        while !control.stopped() && completed < 1000 {
            std::thread::sleep(each);
            completed += 1;
            if completed == warmup {
                before_open = Instant::now();
            }
            sample.record(control, Duration::from_micros(completed), 10);
            after_close = Instant::now();
        }
        Driven {
            sample,
            before_open,
            after_close,
            completed,
        }
    }

    #[test]
    fn a_budget_counts_exactly_its_operations_after_the_warm_up() {
        let control = Control::with_budget(3, 5);
        assert!(!control.measuring() && !control.stopped());
        assert_eq!(control.measured_window(), None);
        let each = Duration::from_millis(10);
        let d = drive(&control, 3, Duration::from_millis(200), each);
        // Operations 4 to 8 count, with their latencies and payloads; the driver stopped there.
        assert_eq!(d.completed, 8);
        assert_eq!(d.sample.ops, 5);
        assert_eq!(d.sample.payload_bytes, 50);
        assert_eq!(d.sample.latencies_ns, [4000, 5000, 6000, 7000, 8000]);
        assert!(control.stopped() && !control.measuring());
        // The window spans the five counted operations (each slept 10 ms) and nothing before
        // the last warm-up operation (the 200 ms of setup): bounds from the same clock.
        let window = control.measured_window().expect("the budget was done");
        assert!(window >= 5 * each, "{window:?}");
        assert!(window <= d.after_close - d.before_open, "{window:?}");
    }

    #[test]
    fn a_budget_warms_up_with_one_operation_at_least() {
        let control = Control::with_budget(0, 2);
        let d = drive(&control, 1, Duration::ZERO, Duration::ZERO);
        assert_eq!((d.completed, d.sample.ops), (3, 2));
        assert_eq!(d.sample.latencies_ns, [2000, 3000]);
    }

    #[test]
    fn without_a_budget_the_harness_sets_the_phases() {
        let control = Control::new();
        let mut sample = Sample::default();
        sample.record(&control, Duration::from_micros(1), 1);
        control.start_measuring();
        sample.record(&control, Duration::from_micros(2), 1);
        sample.count(&control, 7);
        control.stop();
        sample.record(&control, Duration::from_micros(3), 1);
        assert_eq!((sample.ops, sample.payload_bytes), (2, 8));
        assert_eq!(sample.latencies_ns, [2000]);
        assert_eq!(control.measured_window(), None);
    }

    #[test]
    fn time_operations_gives_the_window_of_exactly_the_budget() {
        let each = Duration::from_millis(2);
        let window = time_operations(2, 10, |c| Ok(drive(c, 2, Duration::ZERO, each).sample));
        assert!(window.unwrap() >= 10 * each);
    }

    /// The tool's implementations and references run under a budget as under the harness:
    /// exactly the operations asked for, answers checked (`time_operations` is `Ok` only then).
    #[test]
    fn time_operations_runs_the_tools_implementations() {
        use crate::raftnet_impl::RaftnetImpl;
        use crate::tokio_impl::TokioImpl;
        let _load = crate::measure::test_lock::loading();
        let implementations: [&dyn Implementation; 2] =
            [&RaftnetImpl::default(), &TokioImpl::default()];
        for imp in implementations {
            for (scenario, warmup) in [
                (Scenario::VoteSeq, 4),
                (Scenario::Append64x1kPipelined, 2 * PIPELINE_DEPTH as u64),
            ] {
                let what = format!("{} {}", imp.name(), scenario.name());
                let window = time_operations(warmup, 50, |c| imp.run(scenario, c))
                    .unwrap_or_else(|e| panic!("{what}: {e}"));
                assert!(window > Duration::ZERO, "{what}");
            }
        }
        assert!(time_operations(4, 50, crate::raw::ping_pong).is_ok());
        assert!(time_operations(4, 50, |c| crate::raw::bulk_in_writes_of(64 << 10, c)).is_ok());
    }

    #[test]
    fn time_operations_refuses_what_is_not_the_budget_done_right() {
        // The run's own error (a driver's answer check) comes through as it is.
        let err = time_operations(1, 5, |_| -> Result<Sample, String> {
            Err("wrong answer: RequestVote(term 7, granted false)".into())
        });
        assert_eq!(
            err,
            Err("wrong answer: RequestVote(term 7, granted false)".into())
        );
        // A run that returns before its budget is done.
        let err = time_operations(1, 5, |c| {
            let mut sample = Sample::default();
            for _ in 0..3 {
                sample.record(c, Duration::ZERO, 0);
            }
            Ok(sample)
        });
        assert_eq!(
            err,
            Err("the run returned before its budget was done".into())
        );
        // A run that counts operations the budget did not (here: its own, after the stop).
        let err = time_operations(1, 5, |c| {
            let mut sample = drive(c, 1, Duration::ZERO, Duration::ZERO).sample;
            sample.ops += 1;
            Ok(sample)
        });
        assert_eq!(err, Err("the run counted 6 operations, expected 5".into()));
    }
}
