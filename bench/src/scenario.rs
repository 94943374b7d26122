//! The scenarios and the contract an implementation follows.
//!
//! The harness runs an implementation's [`Implementation::run`] on a thread of its own. The run
//! builds both ends (server and client) in this process, then drives load until
//! [`Control::stopped`]. Only operations that *complete* while [`Control::measuring`] count; the
//! harness switches phases (warm-up → measure → stop) and reads CPU time and wake-ups at the
//! edges of the measured window, so implementations never time themselves.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::Duration;

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
    /// A 3-node openraft cluster over the implementation's network ([`crate::cluster`]), one
    /// client calling `client_write` on the leader; an op is a committed write.
    Cluster1,
    /// The same with 16 concurrent clients.
    Cluster16,
    /// The same with 64 concurrent clients.
    Cluster64,
}

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
    pub const ALL: [Scenario; 12] = [
        Scenario::HeartbeatSeq,
        Scenario::HeartbeatPipelined,
        Scenario::Append100bSeq,
        Scenario::Append64x1kPipelined,
        Scenario::Append1mPipelined,
        Scenario::VoteSeq,
        Scenario::Snapshot64m,
        Scenario::HeartbeatUnderLoad,
        Scenario::FanIn1000,
        Scenario::Cluster1,
        Scenario::Cluster16,
        Scenario::Cluster64,
    ];

    /// The openraft cluster scenarios (`--scenario cluster`).
    pub const CLUSTER: [Scenario; 3] =
        [Scenario::Cluster1, Scenario::Cluster16, Scenario::Cluster64];

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
            Scenario::Cluster1 => "cluster-1",
            Scenario::Cluster16 => "cluster-16",
            Scenario::Cluster64 => "cluster-64",
        }
    }

    /// The scenario called `name`.
    pub fn from_name(name: &str) -> Option<Scenario> {
        Scenario::ALL.into_iter().find(|s| s.name() == name)
    }

    /// Concurrent clients, for the openraft cluster scenarios.
    pub fn cluster_clients(self) -> Option<usize> {
        match self {
            Scenario::Cluster1 => Some(1),
            Scenario::Cluster16 => Some(16),
            Scenario::Cluster64 => Some(64),
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
}

impl Control {
    /// A control in the warm-up phase.
    pub fn new() -> Control {
        Control::default()
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

    /// (Harness) back to warm-up, to reuse a control.
    pub fn reset(&self) {
        self.phase.store(WARMUP, Ordering::Relaxed);
    }
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
}

impl Sample {
    /// Merge another thread's sample into this one.
    pub fn merge(&mut self, other: Sample) {
        self.ops += other.ops;
        self.payload_bytes += other.payload_bytes;
        self.latencies_ns.extend(other.latencies_ns);
    }

    /// Count one completed operation, if measuring.
    pub fn record(&mut self, control: &Control, latency: Duration, payload_bytes: u64) {
        if control.measuring() {
            self.ops += 1;
            self.payload_bytes += payload_bytes;
            self.latencies_ns.push(latency.as_nanos() as u64);
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
}
