//! Counters and latency histograms, named as hashicorp/raft names its transport metrics
//! (`raft.net.rpcDecode`, `raft.net.rpcEnqueue`, `raft.net.rpcRespond`, labelled by `rpcType`),
//! plus raftnet's own: bytes, calls, queue depths and thread wake-ups. Recording is a few
//! relaxed atomic adds; [`Metrics`] is a snapshot read from the API.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::message::{Request, Response};

/// The `rpcType` label values hashicorp uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum RpcKind {
    AppendEntries = 0,
    Heartbeat = 1,
    RequestVote = 2,
    RequestPreVote = 3,
    InstallSnapshot = 4,
    TimeoutNow = 5,
}

const KINDS: usize = 6;
const KIND_NAMES: [&str; KINDS] = [
    "AppendEntries",
    "Heartbeat",
    "RequestVote",
    "RequestPreVote",
    "InstallSnapshot",
    "TimeoutNow",
];

impl RpcKind {
    pub(crate) fn of(request: &Request) -> RpcKind {
        match request {
            Request::AppendEntries(r) if r.is_heartbeat() => RpcKind::Heartbeat,
            Request::AppendEntries(_) => RpcKind::AppendEntries,
            Request::RequestVote(_) => RpcKind::RequestVote,
            Request::RequestPreVote(_) => RpcKind::RequestPreVote,
            Request::InstallSnapshot(_) => RpcKind::InstallSnapshot,
            Request::TimeoutNow(_) => RpcKind::TimeoutNow,
        }
    }

    pub(crate) fn of_response(response: &Response) -> RpcKind {
        match response {
            Response::AppendEntries(_) => RpcKind::AppendEntries,
            Response::RequestVote(_) => RpcKind::RequestVote,
            Response::RequestPreVote(_) => RpcKind::RequestPreVote,
            Response::InstallSnapshot(_) => RpcKind::InstallSnapshot,
            Response::TimeoutNow(_) => RpcKind::TimeoutNow,
        }
    }
}

/// Buckets are powers of two of nanoseconds: bucket `i` holds durations in `[2^(i-1), 2^i)` ns.
const BUCKETS: usize = 40;

/// A lock-free latency histogram.
#[derive(Debug)]
pub(crate) struct Histogram {
    buckets: [AtomicU64; BUCKETS],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub(crate) fn record(&self, d: Duration) {
        let ns = d.as_nanos().min(u128::from(u64::MAX)) as u64;
        let bucket = ((64 - ns.leading_zeros()) as usize).min(BUCKETS - 1);
        self.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    fn snapshot(&self) -> HistogramSnapshot {
        let buckets: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let count: u64 = buckets.iter().sum();
        let quantile = |q: f64| -> Duration {
            if count == 0 {
                return Duration::ZERO;
            }
            let rank = ((count as f64) * q).ceil().max(1.0) as u64;
            let mut seen = 0;
            for (i, n) in buckets.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    // The bucket's upper bound: a conservative estimate.
                    return Duration::from_nanos(if i == 0 { 1 } else { 1u64 << i.min(63) });
                }
            }
            Duration::MAX
        };
        let sum = self.sum_ns.load(Ordering::Relaxed);
        HistogramSnapshot {
            count,
            mean: Duration::from_nanos(sum.checked_div(count).unwrap_or(0)),
            p50: quantile(0.50),
            p99: quantile(0.99),
            p999: quantile(0.999),
        }
    }
}

/// A latency histogram's summary. Quantiles are upper bounds of power-of-two buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HistogramSnapshot {
    /// Samples recorded.
    pub count: u64,
    /// Mean.
    pub mean: Duration,
    /// Median (bucket upper bound).
    pub p50: Duration,
    /// 99th percentile (bucket upper bound).
    pub p99: Duration,
    /// 99.9th percentile (bucket upper bound).
    pub p999: Duration,
}

/// What the transport records, shared by its threads.
#[derive(Debug, Default)]
pub(crate) struct TransportMetrics {
    pub(crate) rpc_decode: [Histogram; KINDS],
    pub(crate) rpc_enqueue: [Histogram; KINDS],
    pub(crate) rpc_respond: [Histogram; KINDS],
    pub(crate) call_latency: [Histogram; KINDS],
    pub(crate) rpcs_received: [AtomicU64; KINDS],
    pub(crate) calls_sent: [AtomicU64; KINDS],
    pub(crate) calls_failed: [AtomicU64; KINDS],
    pub(crate) bytes_read: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    pub(crate) reads: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) reactor_turns: AtomicU64,
    pub(crate) reactor_wakes: AtomicU64,
    /// Times the reactor blocked in `poll` (each ends in a wake-up, by a socket, a timer or the
    /// waker); `reactor_wakes` counts the waker rings among them.
    pub(crate) reactor_sleeps: AtomicU64,
    /// Threads or tasks woken because their call, pipeline future or pipeline slot resolved.
    pub(crate) caller_wakes: AtomicU64,
    pub(crate) dials: AtomicU64,
    pub(crate) dial_failures: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) protocol_errors: AtomicU64,
    pub(crate) heartbeats_fast_path: AtomicU64,
}

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

/// A snapshot of a transport's metrics.
///
/// Names follow hashicorp/raft where it has one (`raft.net.rpcDecode` and so on, with the
/// label as `name;rpcType=AppendEntries`); raftnet's own are under `raftnet.`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metrics {
    /// Monotonic counters.
    pub counters: BTreeMap<String, u64>,
    /// Current values (queue depths, open connections).
    pub gauges: BTreeMap<String, u64>,
    /// Latency summaries.
    pub timers: BTreeMap<String, HistogramSnapshot>,
}

impl Metrics {
    /// A counter's value (0 if it was never recorded).
    pub fn counter(&self, name: &str) -> u64 {
        self.counters.get(name).copied().unwrap_or(0)
    }

    /// A gauge's value (0 if absent).
    pub fn gauge(&self, name: &str) -> u64 {
        self.gauges.get(name).copied().unwrap_or(0)
    }

    /// A timer's summary (empty if absent).
    pub fn timer(&self, name: &str) -> HistogramSnapshot {
        self.timers.get(name).copied().unwrap_or_default()
    }
}

impl TransportMetrics {
    pub(crate) fn snapshot(&self, gauges: &[(&str, u64)], consumer_wakes: u64) -> Metrics {
        let mut m = Metrics::default();
        for (i, kind) in KIND_NAMES.iter().enumerate() {
            for (name, h) in [
                ("raft.net.rpcDecode", &self.rpc_decode[i]),
                ("raft.net.rpcEnqueue", &self.rpc_enqueue[i]),
                ("raft.net.rpcRespond", &self.rpc_respond[i]),
                ("raftnet.call", &self.call_latency[i]),
            ] {
                let s = h.snapshot();
                if s.count > 0 {
                    m.timers.insert(format!("{name};rpcType={kind}"), s);
                }
            }
            for (name, c) in [
                ("raftnet.rpcsReceived", &self.rpcs_received[i]),
                ("raftnet.callsSent", &self.calls_sent[i]),
                ("raftnet.callsFailed", &self.calls_failed[i]),
            ] {
                let v = c.load(Ordering::Relaxed);
                if v > 0 {
                    m.counters.insert(format!("{name};rpcType={kind}"), v);
                }
            }
        }
        for (name, c) in [
            ("raftnet.bytesRead", &self.bytes_read),
            ("raftnet.bytesWritten", &self.bytes_written),
            ("raftnet.reads", &self.reads),
            ("raftnet.writes", &self.writes),
            ("raftnet.reactorTurns", &self.reactor_turns),
            ("raftnet.reactorWakes", &self.reactor_wakes),
            ("raftnet.reactorSleeps", &self.reactor_sleeps),
            ("raftnet.callerWakes", &self.caller_wakes),
            ("raftnet.dials", &self.dials),
            ("raftnet.dialFailures", &self.dial_failures),
            ("raftnet.accepted", &self.accepted),
            ("raftnet.protocolErrors", &self.protocol_errors),
            ("raftnet.heartbeatsFastPath", &self.heartbeats_fast_path),
        ] {
            m.counters
                .insert(name.to_string(), c.load(Ordering::Relaxed));
        }
        m.counters
            .insert("raftnet.consumerWakes".to_string(), consumer_wakes);
        for (name, v) in gauges {
            m.gauges.insert(name.to_string(), *v);
        }
        m
    }
}
