//! What a transport counts and times, and the [`Metrics`] snapshot that shows it.
//!
//! Recording (`record.rs`'s `TransportMetrics`, shared by the transport's threads) is relaxed
//! atomic adds into arrays indexed by [`RpcType`]: one per counted event, two per timed one (a
//! log-linear latency bucket and the sum); no allocation, no lock, no name lookup. [`Metrics`]
//! is a typed snapshot read from the API: one field per metric, per-type values as
//! [`PerRpcType`], latencies as [`HistogramSnapshot`] (percentiles within 1/64). [`Metrics::iter`]
//! lists every value with its name and labels for an exporter, and with feature `metrics`,
//! [`Metrics::publish`] hands them all to the `metrics` crate's facade. The names follow
//! hashicorp/raft where it has one (`raft.net.rpcDecode`, `raft.net.rpcEnqueue`,
//! `raft.net.rpcRespond`, labelled by `rpcType`), and raftnet's own (bytes, calls, queue depths,
//! thread wake-ups) are under `raftnet.`.

use std::fmt;
use std::ops::{Index, IndexMut};
use std::time::Duration;

use crate::message::Request;

#[cfg(feature = "metrics")]
mod publish;
mod record;

use self::record::HISTOGRAM_GROUPING_POWER;
#[cfg(feature = "metrics")]
use self::record::REPORTED_QUANTILES;
pub(crate) use self::record::{LatencyRuns, TransportMetrics, add};

/// How many [`RpcType`]s there are (the length of the per-type arrays).
const RPC_TYPES: usize = 6;

/// The kinds of RPC, as hashicorp/raft's `rpcType` metric label names them. A heartbeat (an
/// AppendEntries without entries) counts as a type of its own.
///
/// ```
/// use raftnet::RpcType;
///
/// assert_eq!(RpcType::RequestVote.as_str(), "RequestVote");
/// assert_eq!(RpcType::ALL.len(), 6);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RpcType {
    /// AppendEntries with entries.
    AppendEntries = 0,
    /// AppendEntries without entries (taken on the heartbeat lane).
    Heartbeat = 1,
    /// RequestVote.
    RequestVote = 2,
    /// RequestPreVote.
    RequestPreVote = 3,
    /// InstallSnapshot.
    InstallSnapshot = 4,
    /// TimeoutNow.
    TimeoutNow = 5,
}

/// The `rpcType` label values, in discriminant order.
const RPC_TYPE_NAMES: [&str; RPC_TYPES] = [
    "AppendEntries",
    "Heartbeat",
    "RequestVote",
    "RequestPreVote",
    "InstallSnapshot",
    "TimeoutNow",
];

/// Each type's labels, `[("rpcType", name)]`, made once so an export borrows them.
static RPC_TYPE_LABELS: [[(&str, &str); 1]; RPC_TYPES] = {
    let mut labels = [[("", "")]; RPC_TYPES];
    let mut i = 0;
    while i < RPC_TYPES {
        labels[i] = [(Metrics::RPC_TYPE_LABEL, RPC_TYPE_NAMES[i])];
        i += 1;
    }
    labels
};

impl RpcType {
    /// Every type, in the order [`PerRpcType::iter`] and [`Metrics::iter`] list them.
    pub const ALL: [RpcType; RPC_TYPES] = [
        RpcType::AppendEntries,
        RpcType::Heartbeat,
        RpcType::RequestVote,
        RpcType::RequestPreVote,
        RpcType::InstallSnapshot,
        RpcType::TimeoutNow,
    ];

    /// The `rpcType` label value (hashicorp's spelling, for example `"RequestVote"`).
    pub const fn as_str(self) -> &'static str {
        RPC_TYPE_NAMES[self as usize]
    }

    /// The labels a metric of this type carries: `[("rpcType", self.as_str())]`.
    pub fn labels(self) -> &'static [(&'static str, &'static str)] {
        &RPC_TYPE_LABELS[self as usize]
    }

    pub(crate) fn of(request: &Request) -> RpcType {
        match request {
            Request::AppendEntries(r) if r.is_heartbeat() => RpcType::Heartbeat,
            Request::AppendEntries(_) => RpcType::AppendEntries,
            Request::RequestVote(_) => RpcType::RequestVote,
            Request::RequestPreVote(_) => RpcType::RequestPreVote,
            Request::InstallSnapshot(_) => RpcType::InstallSnapshot,
            Request::TimeoutNow(_) => RpcType::TimeoutNow,
        }
    }
}

impl fmt::Display for RpcType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One value per [`RpcType`], indexed by it.
///
/// ```
/// use raftnet::{PerRpcType, RpcType};
///
/// let mut sent = PerRpcType::<u64>::default();
/// sent[RpcType::RequestVote] += 3;
/// sent[RpcType::Heartbeat] += 1;
/// assert_eq!(sent[RpcType::RequestVote], 3);
/// assert_eq!(sent.total(), 4);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PerRpcType<T>([T; RPC_TYPES]);

impl<T> PerRpcType<T> {
    /// Each type's value, made by `f`.
    pub fn from_fn(mut f: impl FnMut(RpcType) -> T) -> Self {
        PerRpcType(std::array::from_fn(|i| f(RpcType::ALL[i])))
    }

    /// Each type with its value, in [`RpcType::ALL`]'s order.
    pub fn iter(&self) -> impl Iterator<Item = (RpcType, &T)> {
        RpcType::ALL.into_iter().zip(&self.0)
    }
}

impl PerRpcType<u64> {
    /// The sum over every type.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

impl<T> Index<RpcType> for PerRpcType<T> {
    type Output = T;

    fn index(&self, rpc_type: RpcType) -> &T {
        &self.0[rpc_type as usize]
    }
}

impl<T> IndexMut<RpcType> for PerRpcType<T> {
    fn index_mut(&mut self, rpc_type: RpcType) -> &mut T {
        &mut self.0[rpc_type as usize]
    }
}

/// A latency histogram's summary: the samples recorded since the transport started.
///
/// Percentiles are nearest-rank (the `ceil(q * count)`-th smallest sample), each reported as
/// at least that sample and less than 1/64 (1.6 %) above it, for latencies up to 18 minutes; 0
/// before any sample. `count`, `max` and `sum` are exact; `mean` is `sum / count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct HistogramSnapshot {
    /// Samples recorded.
    pub count: u64,
    /// Mean.
    pub mean: Duration,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
    /// The largest sample.
    pub max: Duration,
    /// The samples' total (for a mean over any interval: the change in `sum` over the change in
    /// `count`).
    pub sum: Duration,
}

impl HistogramSnapshot {
    /// The relative precision of the percentiles: each is at least the true nearest-rank
    /// sample and less than `1 + PERCENTILE_PRECISION` times it.
    pub const PERCENTILE_PRECISION: f64 = 1.0 / (1u64 << HISTOGRAM_GROUPING_POWER) as f64;
}

/// A snapshot of a transport's metrics ([`NetTransport::metrics`](crate::NetTransport::metrics)):
/// one field per metric. Counters count from the transport's start; gauges are the value when
/// the snapshot was taken; timers summarise every sample so far.
///
/// Each field's exported name is a constant here (`Metrics::CALLS_SENT` is
/// `"raftnet.callsSent"`), and per-type values carry the label [`RPC_TYPE_LABEL`](Self::RPC_TYPE_LABEL)
/// (`rpcType`), as hashicorp/raft labels its `raft.net.*` timers.
///
/// Reading one metric:
///
/// ```
/// use raftnet::{Config, NetTransport, RpcType};
///
/// let transport = NetTransport::bind("127.0.0.1:0", None, Config::default())?;
/// let m = transport.metrics();
/// assert_eq!(m.calls_sent[RpcType::RequestVote], 0);
/// assert_eq!(m.rpc_decode[RpcType::Heartbeat].count, 0);
/// assert_eq!(m.protocol_errors, 0);
/// # Ok::<(), raftnet::Error>(())
/// ```
///
/// Exporting all of them by name, here in Prometheus' text format by hand, without knowing the
/// fields (with feature `metrics`, `Metrics::publish` hands them to the `metrics` crate's facade
/// instead, for any of its exporters):
///
/// ```
/// use std::fmt::Write;
/// use raftnet::{Config, MetricValue, NetTransport};
///
/// let transport = NetTransport::bind("127.0.0.1:0", None, Config::default())?;
/// let mut text = String::new();
/// for metric in transport.metrics().iter() {
///     // Prometheus spells `raft.net.rpcDecode` as `raft_net_rpcDecode`.
///     let name = metric.name.replace('.', "_");
///     let labels: Vec<String> =
///         metric.labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
///     let labels = match labels.is_empty() {
///         true => String::new(),
///         false => format!("{{{}}}", labels.join(",")),
///     };
///     match metric.value {
///         MetricValue::Counter(n) | MetricValue::Gauge(n) => writeln!(text, "{name}{labels} {n}")?,
///         MetricValue::Histogram(h) => {
///             writeln!(text, "{name}_count{labels} {}", h.count)?;
///             writeln!(text, "{name}_p99_seconds{labels} {}", h.p99.as_secs_f64())?;
///         }
///     }
/// }
/// assert!(text.contains("\nraftnet_dials 0\n"));
/// assert!(text.contains("\nraftnet_callsSent{rpcType=\"RequestVote\"} 0\n"));
/// assert!(text.contains("\nraft_net_rpcDecode_count{rpcType=\"Heartbeat\"} 0\n"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Metrics {
    /// `raft.net.rpcDecode`: decoding an inbound RPC's frame (a batch's decoding time, shared
    /// among the RPCs in it).
    pub rpc_decode: PerRpcType<HistogramSnapshot>,
    /// `raft.net.rpcEnqueue`: an inbound RPC's wait, from decoded to taken by the Raft side (or
    /// handled by the heartbeat handler).
    pub rpc_enqueue: PerRpcType<HistogramSnapshot>,
    /// `raft.net.rpcRespond`: the Raft side's time to answer, from taking the RPC to its answer
    /// reaching the driver.
    pub rpc_respond: PerRpcType<HistogramSnapshot>,
    /// `raftnet.call`: an outbound call's latency, from submitted to answered.
    pub call_latency: PerRpcType<HistogramSnapshot>,
    /// `raftnet.rpcsReceived`: inbound RPCs decoded.
    pub rpcs_received: PerRpcType<u64>,
    /// `raftnet.callsSent`: outbound calls sent (pipelined appends included).
    pub calls_sent: PerRpcType<u64>,
    /// `raftnet.callsFailed`: outbound calls that ended in an error.
    pub calls_failed: PerRpcType<u64>,
    /// `raftnet.bytesRead`: bytes read from sockets.
    pub bytes_read: u64,
    /// `raftnet.bytesWritten`: bytes written to sockets.
    pub bytes_written: u64,
    /// `raftnet.reads`: socket reads that returned bytes.
    pub reads: u64,
    /// `raftnet.writes`: socket writes that took bytes.
    pub writes: u64,
    /// `raftnet.reactorTurns`: turns of the driver's loop.
    pub reactor_turns: u64,
    /// `raftnet.reactorWakes`: times a producer rang the sleeping driver's waker.
    pub reactor_wakes: u64,
    /// `raftnet.reactorSleeps`: times the driver blocked waiting for events (each ends in a
    /// wake-up, by a socket, a timer or the waker; `reactor_wakes` counts the waker's).
    pub reactor_sleeps: u64,
    /// `raftnet.ledTurns`: turns of the driver run by a calling thread in the place of the
    /// driver's sleeping thread (a call sent without waking it, or a blocking wait that ran the
    /// driver until its answer came) on [`Placement::Thread`](crate::Placement::Thread); on
    /// `Placement::Runtime`, turns a call or an answer ran in the waiting driver task's place.
    pub led_turns: u64,
    /// `raftnet.systemCalls`: system calls made to run the transport's sockets, by its driver
    /// or a thread leading it: waits for events (`epoll_wait`, `io_uring_enter`), reads and
    /// writes (also those that found the socket empty or full), accepts, `epoll_ctl` as a
    /// leader takes and hands back the driver, and `sched_yield` while spinning. Not counted:
    /// setting up a connection (socket, connect, options, registration), producers' waker rings
    /// (`reactor_wakes`), and the thread-per-connection driver's blocking reads and writes. A
    /// TLS stream's read or write counts once however many the stream makes.
    pub system_calls: u64,
    /// `raftnet.callerWakes`: threads or tasks woken because their call, pipeline future or
    /// pipeline slot resolved.
    pub caller_wakes: u64,
    /// `raftnet.consumerWakes`: Raft-side receivers woken because an RPC arrived.
    pub consumer_wakes: u64,
    /// `raftnet.dials`: outbound connections started.
    pub dials: u64,
    /// `raftnet.dialFailures`: outbound connections that failed or timed out before connecting.
    pub dial_failures: u64,
    /// `raftnet.accepted`: inbound connections accepted.
    pub accepted: u64,
    /// `raftnet.protocolErrors`: connections closed because the peer sent invalid frames.
    pub protocol_errors: u64,
    /// `raftnet.heartbeatsFastPath`: heartbeats answered by the heartbeat handler on the
    /// driver, without the consumer.
    pub heartbeats_fast_path: u64,
    /// `raftnet.connectionsRefused`: inbound connections closed as they were accepted, over
    /// [`Config::max_inbound_connections`](crate::Config::max_inbound_connections) or
    /// [`max_connections_per_address`](crate::Config::max_connections_per_address).
    pub connections_refused: u64,
    /// `raftnet.readsPaused`: times the driver stopped reading an inbound connection because its
    /// peer reached [`max_unanswered_requests`](crate::Config::max_unanswered_requests),
    /// [`max_unanswered_bytes`](crate::Config::max_unanswered_bytes) or
    /// [`max_queued_answer_bytes`](crate::Config::max_queued_answer_bytes).
    pub reads_paused: u64,
    /// `raftnet.snapshotsRefused`: InstallSnapshots answered with an error, over
    /// [`max_inbound_snapshots`](crate::Config::max_inbound_snapshots).
    pub snapshots_refused: u64,
    /// `raftnet.slowPeersClosed`: inbound connections closed because a frame arrived slower
    /// than `timeout_scale` bytes per `timeout`, or a snapshot body stalled for `timeout`.
    pub slow_peers_closed: u64,
    /// `raftnet.zeroCopySends`: zero-copy sends done, counted when the kernel says it no longer
    /// reads their buffers (io_uring with [`Config::zero_copy_send`](crate::Config::zero_copy_send)).
    pub zero_copy_sends: u64,
    /// `raftnet.zeroCopyCopied`: those of [`zero_copy_sends`](Self::zero_copy_sends) the kernel
    /// copied after all (over loopback, or a NIC that cannot send from user memory): when they
    /// are most of them, zero-copy does not pay here.
    pub zero_copy_copied: u64,
    /// `raftnet.consumerQueue` (gauge): inbound RPCs waiting for the Raft side.
    pub consumer_queue: u64,
    /// `raftnet.submissionQueue` (gauge): commands waiting for the driver.
    pub submission_queue: u64,
    /// `raftnet.completionQueue` (gauge): answers from the Raft side waiting for the driver.
    pub completion_queue: u64,
    /// `raftnet.openConnections` (gauge): open connections, inbound and outbound.
    pub open_connections: u64,
    /// `raftnet.idlePooledConnections` (gauge): idle pooled outbound connections.
    pub idle_pooled_connections: u64,
    /// `raftnet.timers` (gauge): the driver's pending timers (deadlines, dial timeouts).
    pub timers: u64,
}

/// One metric of a [`Metrics`] snapshot, as [`Metrics::iter`] lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// Its name (one of the `Metrics::*` name constants, such as `"raft.net.rpcDecode"`).
    pub name: &'static str,
    /// Its labels as `(name, value)` pairs: `[("rpcType", "RequestVote")]` for a per-type
    /// metric, none for a transport-wide one.
    pub labels: &'static [(&'static str, &'static str)],
    /// Its value.
    pub value: MetricValue,
}

/// A metric's value, by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricValue {
    /// A monotonic count since the transport started.
    Counter(u64),
    /// A current level (a queue's depth, open connections).
    Gauge(u64),
    /// A latency summary.
    Histogram(HistogramSnapshot),
}

impl Metrics {
    /// The label per-type metrics carry, valued by [`RpcType::as_str`] (hashicorp's name).
    pub const RPC_TYPE_LABEL: &'static str = "rpcType";

    /// The name of [`rpc_decode`](Self::rpc_decode) (hashicorp's).
    pub const RPC_DECODE: &'static str = "raft.net.rpcDecode";
    /// The name of [`rpc_enqueue`](Self::rpc_enqueue) (hashicorp's).
    pub const RPC_ENQUEUE: &'static str = "raft.net.rpcEnqueue";
    /// The name of [`rpc_respond`](Self::rpc_respond) (hashicorp's).
    pub const RPC_RESPOND: &'static str = "raft.net.rpcRespond";
    /// The name of [`call_latency`](Self::call_latency).
    pub const CALL: &'static str = "raftnet.call";
    /// The name of [`rpcs_received`](Self::rpcs_received).
    pub const RPCS_RECEIVED: &'static str = "raftnet.rpcsReceived";
    /// The name of [`calls_sent`](Self::calls_sent).
    pub const CALLS_SENT: &'static str = "raftnet.callsSent";
    /// The name of [`calls_failed`](Self::calls_failed).
    pub const CALLS_FAILED: &'static str = "raftnet.callsFailed";
    /// The name of [`bytes_read`](Self::bytes_read).
    pub const BYTES_READ: &'static str = "raftnet.bytesRead";
    /// The name of [`bytes_written`](Self::bytes_written).
    pub const BYTES_WRITTEN: &'static str = "raftnet.bytesWritten";
    /// The name of [`reads`](Self::reads).
    pub const READS: &'static str = "raftnet.reads";
    /// The name of [`writes`](Self::writes).
    pub const WRITES: &'static str = "raftnet.writes";
    /// The name of [`reactor_turns`](Self::reactor_turns).
    pub const REACTOR_TURNS: &'static str = "raftnet.reactorTurns";
    /// The name of [`reactor_wakes`](Self::reactor_wakes).
    pub const REACTOR_WAKES: &'static str = "raftnet.reactorWakes";
    /// The name of [`reactor_sleeps`](Self::reactor_sleeps).
    pub const REACTOR_SLEEPS: &'static str = "raftnet.reactorSleeps";
    /// The name of [`led_turns`](Self::led_turns).
    pub const LED_TURNS: &'static str = "raftnet.ledTurns";
    /// The name of [`system_calls`](Self::system_calls).
    pub const SYSTEM_CALLS: &'static str = "raftnet.systemCalls";
    /// The name of [`caller_wakes`](Self::caller_wakes).
    pub const CALLER_WAKES: &'static str = "raftnet.callerWakes";
    /// The name of [`consumer_wakes`](Self::consumer_wakes).
    pub const CONSUMER_WAKES: &'static str = "raftnet.consumerWakes";
    /// The name of [`dials`](Self::dials).
    pub const DIALS: &'static str = "raftnet.dials";
    /// The name of [`dial_failures`](Self::dial_failures).
    pub const DIAL_FAILURES: &'static str = "raftnet.dialFailures";
    /// The name of [`accepted`](Self::accepted).
    pub const ACCEPTED: &'static str = "raftnet.accepted";
    /// The name of [`protocol_errors`](Self::protocol_errors).
    pub const PROTOCOL_ERRORS: &'static str = "raftnet.protocolErrors";
    /// The name of [`heartbeats_fast_path`](Self::heartbeats_fast_path).
    pub const HEARTBEATS_FAST_PATH: &'static str = "raftnet.heartbeatsFastPath";
    /// The name of [`connections_refused`](Self::connections_refused).
    pub const CONNECTIONS_REFUSED: &'static str = "raftnet.connectionsRefused";
    /// The name of [`reads_paused`](Self::reads_paused).
    pub const READS_PAUSED: &'static str = "raftnet.readsPaused";
    /// The name of [`snapshots_refused`](Self::snapshots_refused).
    pub const SNAPSHOTS_REFUSED: &'static str = "raftnet.snapshotsRefused";
    /// The name of [`slow_peers_closed`](Self::slow_peers_closed).
    pub const SLOW_PEERS_CLOSED: &'static str = "raftnet.slowPeersClosed";
    /// The name of [`zero_copy_sends`](Self::zero_copy_sends).
    pub const ZERO_COPY_SENDS: &'static str = "raftnet.zeroCopySends";
    /// The name of [`zero_copy_copied`](Self::zero_copy_copied).
    pub const ZERO_COPY_COPIED: &'static str = "raftnet.zeroCopyCopied";
    /// The name of [`consumer_queue`](Self::consumer_queue).
    pub const CONSUMER_QUEUE: &'static str = "raftnet.consumerQueue";
    /// The name of [`submission_queue`](Self::submission_queue).
    pub const SUBMISSION_QUEUE: &'static str = "raftnet.submissionQueue";
    /// The name of [`completion_queue`](Self::completion_queue).
    pub const COMPLETION_QUEUE: &'static str = "raftnet.completionQueue";
    /// The name of [`open_connections`](Self::open_connections).
    pub const OPEN_CONNECTIONS: &'static str = "raftnet.openConnections";
    /// The name of [`idle_pooled_connections`](Self::idle_pooled_connections).
    pub const IDLE_POOLED_CONNECTIONS: &'static str = "raftnet.idlePooledConnections";
    /// The name of [`timers`](Self::timers).
    pub const TIMERS: &'static str = "raftnet.timers";

    /// Every metric with its name and labels: the transport-wide counters and gauges first,
    /// then each per-type metric once per [`RpcType`] (zeros included, so an exporter's series
    /// never come and go). Each `(name, labels)` pair appears once.
    pub fn iter(&self) -> impl Iterator<Item = Metric> + '_ {
        use MetricValue::{Counter, Gauge};
        // The one place names meet fields: a new field is exported by adding its row.
        let scalars = [
            (Self::BYTES_READ, Counter(self.bytes_read)),
            (Self::BYTES_WRITTEN, Counter(self.bytes_written)),
            (Self::READS, Counter(self.reads)),
            (Self::WRITES, Counter(self.writes)),
            (Self::REACTOR_TURNS, Counter(self.reactor_turns)),
            (Self::REACTOR_WAKES, Counter(self.reactor_wakes)),
            (Self::REACTOR_SLEEPS, Counter(self.reactor_sleeps)),
            (Self::LED_TURNS, Counter(self.led_turns)),
            (Self::SYSTEM_CALLS, Counter(self.system_calls)),
            (Self::CALLER_WAKES, Counter(self.caller_wakes)),
            (Self::CONSUMER_WAKES, Counter(self.consumer_wakes)),
            (Self::DIALS, Counter(self.dials)),
            (Self::DIAL_FAILURES, Counter(self.dial_failures)),
            (Self::ACCEPTED, Counter(self.accepted)),
            (Self::PROTOCOL_ERRORS, Counter(self.protocol_errors)),
            (
                Self::HEARTBEATS_FAST_PATH,
                Counter(self.heartbeats_fast_path),
            ),
            (Self::CONNECTIONS_REFUSED, Counter(self.connections_refused)),
            (Self::READS_PAUSED, Counter(self.reads_paused)),
            (Self::SNAPSHOTS_REFUSED, Counter(self.snapshots_refused)),
            (Self::SLOW_PEERS_CLOSED, Counter(self.slow_peers_closed)),
            (Self::ZERO_COPY_SENDS, Counter(self.zero_copy_sends)),
            (Self::ZERO_COPY_COPIED, Counter(self.zero_copy_copied)),
            (Self::CONSUMER_QUEUE, Gauge(self.consumer_queue)),
            (Self::SUBMISSION_QUEUE, Gauge(self.submission_queue)),
            (Self::COMPLETION_QUEUE, Gauge(self.completion_queue)),
            (Self::OPEN_CONNECTIONS, Gauge(self.open_connections)),
            (
                Self::IDLE_POOLED_CONNECTIONS,
                Gauge(self.idle_pooled_connections),
            ),
            (Self::TIMERS, Gauge(self.timers)),
        ];
        let counters = [
            (Self::RPCS_RECEIVED, &self.rpcs_received),
            (Self::CALLS_SENT, &self.calls_sent),
            (Self::CALLS_FAILED, &self.calls_failed),
        ];
        let timers = [
            (Self::RPC_DECODE, &self.rpc_decode),
            (Self::RPC_ENQUEUE, &self.rpc_enqueue),
            (Self::RPC_RESPOND, &self.rpc_respond),
            (Self::CALL, &self.call_latency),
        ];
        let scalars = scalars.into_iter().map(|(name, value)| Metric {
            name,
            labels: &[],
            value,
        });
        let counters = counters
            .into_iter()
            .flat_map(|(name, per_type)| per_type_metrics(name, per_type, Counter));
        let timers = timers
            .into_iter()
            .flat_map(|(name, per_type)| per_type_metrics(name, per_type, MetricValue::Histogram));
        scalars.chain(counters).chain(timers)
    }
}

/// `per_type`'s values as metrics named `name`, each labelled with its type.
fn per_type_metrics<'a, T: Copy>(
    name: &'static str,
    per_type: &'a PerRpcType<T>,
    value: fn(T) -> MetricValue,
) -> impl Iterator<Item = Metric> + 'a {
    per_type.iter().map(move |(rpc_type, &v)| Metric {
        name,
        labels: rpc_type.labels(),
        value: value(v),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::record::{HISTOGRAM_LARGEST_NS, Histogram};
    use super::*;

    /// Every field set to a value no other field has. A struct literal without `..`, so a new
    /// field fails to compile here until it is given one (and then must be exported to pass).
    fn distinct() -> Metrics {
        let mut last = 0;
        let mut next = move || {
            last += 1;
            last
        };
        let counts = |next: &mut dyn FnMut() -> u64| PerRpcType::from_fn(|_| next());
        let timers = |next: &mut dyn FnMut() -> u64| {
            PerRpcType::from_fn(|_| HistogramSnapshot {
                count: next(),
                ..HistogramSnapshot::default()
            })
        };
        Metrics {
            rpc_decode: timers(&mut next),
            rpc_enqueue: timers(&mut next),
            rpc_respond: timers(&mut next),
            call_latency: timers(&mut next),
            rpcs_received: counts(&mut next),
            calls_sent: counts(&mut next),
            calls_failed: counts(&mut next),
            bytes_read: next(),
            bytes_written: next(),
            reads: next(),
            writes: next(),
            reactor_turns: next(),
            reactor_wakes: next(),
            reactor_sleeps: next(),
            led_turns: next(),
            system_calls: next(),
            caller_wakes: next(),
            consumer_wakes: next(),
            dials: next(),
            dial_failures: next(),
            accepted: next(),
            protocol_errors: next(),
            heartbeats_fast_path: next(),
            connections_refused: next(),
            reads_paused: next(),
            snapshots_refused: next(),
            slow_peers_closed: next(),
            zero_copy_sends: next(),
            zero_copy_copied: next(),
            consumer_queue: next(),
            submission_queue: next(),
            completion_queue: next(),
            open_connections: next(),
            idle_pooled_connections: next(),
            timers: next(),
        }
    }

    #[test]
    fn the_export_lists_every_field_once() {
        let m = distinct();
        let values: Vec<u64> = m
            .iter()
            .map(|metric| match metric.value {
                MetricValue::Counter(n) | MetricValue::Gauge(n) => n,
                MetricValue::Histogram(h) => h.count,
            })
            .collect();
        let expected: Vec<u64> = (1..=values.len() as u64).collect();
        let mut sorted = values.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, expected, "each field's value exactly once");
        // 7 per-type metrics for each of 6 types, 26 transport-wide.
        assert_eq!(values.len(), 7 * RPC_TYPES + 28);
    }

    #[test]
    fn the_export_reads_the_field_its_name_says() {
        let m = distinct();
        let find = |name: &str, rpc_type: Option<RpcType>| -> MetricValue {
            let labels = rpc_type.map_or(&[][..], RpcType::labels);
            m.iter()
                .find(|metric| metric.name == name && metric.labels == labels)
                .unwrap_or_else(|| panic!("{name} {labels:?} is not exported"))
                .value
        };
        for t in RpcType::ALL {
            let t_ = Some(t);
            let h = MetricValue::Histogram;
            let c = MetricValue::Counter;
            assert_eq!(find("raft.net.rpcDecode", t_), h(m.rpc_decode[t]));
            assert_eq!(find("raft.net.rpcEnqueue", t_), h(m.rpc_enqueue[t]));
            assert_eq!(find("raft.net.rpcRespond", t_), h(m.rpc_respond[t]));
            assert_eq!(find("raftnet.call", t_), h(m.call_latency[t]));
            assert_eq!(find("raftnet.rpcsReceived", t_), c(m.rpcs_received[t]));
            assert_eq!(find("raftnet.callsSent", t_), c(m.calls_sent[t]));
            assert_eq!(find("raftnet.callsFailed", t_), c(m.calls_failed[t]));
        }
        let c = |n| MetricValue::Counter(n);
        let g = |n| MetricValue::Gauge(n);
        assert_eq!(find("raftnet.bytesRead", None), c(m.bytes_read));
        assert_eq!(find("raftnet.bytesWritten", None), c(m.bytes_written));
        assert_eq!(find("raftnet.reads", None), c(m.reads));
        assert_eq!(find("raftnet.writes", None), c(m.writes));
        assert_eq!(find("raftnet.reactorTurns", None), c(m.reactor_turns));
        assert_eq!(find("raftnet.reactorWakes", None), c(m.reactor_wakes));
        assert_eq!(find("raftnet.reactorSleeps", None), c(m.reactor_sleeps));
        assert_eq!(find("raftnet.ledTurns", None), c(m.led_turns));
        assert_eq!(find("raftnet.systemCalls", None), c(m.system_calls));
        assert_eq!(find("raftnet.callerWakes", None), c(m.caller_wakes));
        assert_eq!(find("raftnet.consumerWakes", None), c(m.consumer_wakes));
        assert_eq!(find("raftnet.dials", None), c(m.dials));
        assert_eq!(find("raftnet.dialFailures", None), c(m.dial_failures));
        assert_eq!(find("raftnet.accepted", None), c(m.accepted));
        assert_eq!(find("raftnet.protocolErrors", None), c(m.protocol_errors));
        assert_eq!(
            find("raftnet.heartbeatsFastPath", None),
            c(m.heartbeats_fast_path)
        );
        assert_eq!(
            find("raftnet.connectionsRefused", None),
            c(m.connections_refused)
        );
        assert_eq!(find("raftnet.readsPaused", None), c(m.reads_paused));
        assert_eq!(
            find("raftnet.snapshotsRefused", None),
            c(m.snapshots_refused)
        );
        assert_eq!(
            find("raftnet.slowPeersClosed", None),
            c(m.slow_peers_closed)
        );
        assert_eq!(find("raftnet.zeroCopySends", None), c(m.zero_copy_sends));
        assert_eq!(find("raftnet.zeroCopyCopied", None), c(m.zero_copy_copied));
        assert_eq!(find("raftnet.consumerQueue", None), g(m.consumer_queue));
        assert_eq!(find("raftnet.submissionQueue", None), g(m.submission_queue));
        assert_eq!(find("raftnet.completionQueue", None), g(m.completion_queue));
        assert_eq!(find("raftnet.openConnections", None), g(m.open_connections));
        assert_eq!(
            find("raftnet.idlePooledConnections", None),
            g(m.idle_pooled_connections)
        );
        assert_eq!(find("raftnet.timers", None), g(m.timers));
    }

    /// The nearest-rank percentile of `sorted` samples: the `ceil(q * n)`-th smallest.
    fn nearest_rank(sorted: &[u64], q: f64) -> u64 {
        let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
        sorted[rank - 1]
    }

    /// `samples` recorded, and each reported percentile at least the true one and less than
    /// `PERCENTILE_PRECISION` above it; count, sum, max exact.
    fn assert_reports(samples: &[u64]) {
        let h = Histogram::default();
        for &ns in samples {
            h.record(Duration::from_nanos(ns));
        }
        let s = h.snapshot();
        let mut sorted = samples.to_vec();
        sorted.sort_unstable();
        let sum: u64 = samples.iter().sum();
        assert_eq!(s.count, samples.len() as u64);
        assert_eq!(s.sum, Duration::from_nanos(sum));
        assert_eq!(s.mean, Duration::from_nanos(sum / samples.len() as u64));
        assert_eq!(s.max, Duration::from_nanos(*sorted.last().unwrap()));
        let precision = HistogramSnapshot::PERCENTILE_PRECISION;
        for (q, reported) in [(0.50, s.p50), (0.99, s.p99), (0.999, s.p999)] {
            let truth = nearest_rank(&sorted, q);
            let reported = reported.as_nanos() as u64;
            assert!(
                reported >= truth && (reported as f64) < truth as f64 * (1.0 + precision),
                "p{}: reported {reported} ns for {truth} ns, beyond {precision}",
                q * 100.0,
            );
        }
    }

    #[test]
    fn percentiles_are_within_the_documented_precision() {
        // Miri (CI runs this module's tests under it) takes every 100th sample: the same
        // percentiles, in seconds rather than minutes.
        let step = if cfg!(miri) { 100 } else { 1 };
        // Each of 1..=100 000 ns once: p50 = 50 000, p99 = 99 000, p99.9 = 99 900 (power-of-two
        // buckets said 65 536, 131 072, 131 072).
        assert_reports(
            &(step..=100_000)
                .step_by(step as usize)
                .collect::<Vec<u64>>(),
        );
        // Latencies spread over 1 us to 1 s, log-uniformly (a fixed xorshift sequence).
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let spread: Vec<u64> = (0..50_000 / step)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                10f64.powf(3.0 + (x % 1_000_000) as f64 / 1_000_000.0 * 6.0) as u64
            })
            .collect();
        assert_reports(&spread);
        // A tail: 990 fast calls and 10 slow ones, p99.9 is the slow one exactly (the maximum).
        let mut tail = vec![20_000; 990];
        tail.extend([3_000_000_000; 10]);
        assert_reports(&tail);
        // Values under 128 ns have buckets of their own: exact.
        assert_reports(&[0, 1, 7, 100, 127]);
        let documented = if cfg!(miri) { 1.0 } else { 1.0 / 64.0 };
        assert_eq!(HistogramSnapshot::PERCENTILE_PRECISION, documented);
    }

    #[test]
    fn percentiles_never_exceed_the_maximum() {
        // One sample: its bucket ends 7 612 ns above it, the maximum is the sample itself.
        let h = Histogram::default();
        let one = Duration::from_nanos(1_000_003);
        h.record(one);
        let s = h.snapshot();
        assert_eq!((s.p50, s.p99, s.p999, s.max), (one, one, one, one));
        // Past the last bucket, which ends at 2^40 - 1 ns (18.3 minutes): counted there, the
        // maximum exact.
        let h = Histogram::default();
        let long = Duration::from_secs(3600);
        h.record(Duration::from_millis(1));
        h.record(long);
        let s = h.snapshot();
        assert_eq!((s.count, s.max), (2, long));
        assert_eq!(s.p99, Duration::from_nanos(HISTOGRAM_LARGEST_NS));
        // Nothing recorded: all zero.
        assert_eq!(
            Histogram::default().snapshot(),
            HistogramSnapshot::default()
        );
    }

    /// Every exported name has a description for the facade (`# HELP` in Prometheus).
    #[cfg(feature = "metrics")]
    #[test]
    fn every_published_name_is_described() {
        for metric in distinct().iter() {
            let (help, _) = super::publish::description(metric.name);
            assert!(help.ends_with('.'), "{} has no description", metric.name);
        }
    }

    #[test]
    fn rpc_types_index_their_own_slot() {
        let names: BTreeSet<&str> = RpcType::ALL.iter().map(|t| t.as_str()).collect();
        assert_eq!(names.len(), RPC_TYPES);
        for (i, t) in RpcType::ALL.into_iter().enumerate() {
            // Recording indexes the arrays by `as usize`; the snapshot by `RpcType`.
            assert_eq!(t as usize, i);
            assert_eq!(t.labels(), &[("rpcType", t.as_str())]);
            assert_eq!(t.to_string(), t.as_str());
        }
        let per = PerRpcType::from_fn(|t| t as u64 * 10);
        assert_eq!(per[RpcType::InstallSnapshot], 40);
        assert_eq!(per.total(), 150);
        let listed: Vec<RpcType> = per.iter().map(|(t, _)| t).collect();
        assert_eq!(listed, RpcType::ALL);
    }
}
