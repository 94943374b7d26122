//! With feature `metrics`: [`Metrics::publish`](super::Metrics::publish) hands every value to
//! the `metrics` crate's facade, with its name, labels, description and unit.

use super::*;

/// The label that tells a timer's percentiles apart when they are published (Prometheus'
/// summary label), with the value each of [`REPORTED_QUANTILES`] gets.
const QUANTILE_LABELS: [(&str, &str); REPORTED_QUANTILES.len()] = [
    ("quantile", "0.5"),
    ("quantile", "0.99"),
    ("quantile", "0.999"),
];

impl Metrics {
    /// Hands every metric to the [`metrics`](https://docs.rs/metrics) crate's facade (feature
    /// `metrics`), so whichever recorder the program installed exports it: Prometheus,
    /// StatsD, OpenTelemetry and the others. Call it before each scrape or on a timer (a
    /// second is plenty); recording costs nothing extra, since the transport counts into its
    /// own atomics whether or not anything is published.
    ///
    /// Under the names and labels [`iter`](Self::iter) lists:
    /// - a counter is a facade counter set with `absolute`, a gauge a facade gauge;
    /// - a timer, whose samples the facade never sees, is published as a Prometheus summary is
    ///   laid out: a gauge under the timer's own name per percentile, labelled `quantile="0.5"`,
    ///   `"0.99"` and `"0.999"` (in seconds, within [`HistogramSnapshot::PERCENTILE_PRECISION`],
    ///   over the transport's life, `NaN` before its first sample), a gauge `NAME.max` (seconds,
    ///   `NaN` before the first sample), a gauge `NAME.sum` (seconds) and a counter
    ///   `NAME.count`. So `rate(raft_net_rpcDecode_sum[1m]) / rate(raft_net_rpcDecode_count[1m])`
    ///   is the last minute's mean in Prometheus, and `raft_net_rpcDecode{quantile="0.99"}` the
    ///   lifetime 99th percentile.
    ///
    /// Each name is also described (its meaning, and seconds or bytes as its unit), which
    /// Prometheus shows as `# HELP`. Two transports in one process publish the same series;
    /// publish each under a recorder of its own (`metrics::with_local_recorder`) or add a label
    /// in the exporter to tell them apart.
    ///
    /// ```
    /// use raftnet::{Config, NetTransport};
    /// use metrics_exporter_prometheus::PrometheusBuilder;
    ///
    /// let transport = NetTransport::bind("127.0.0.1:0", None, Config::default())?;
    /// // A program installs its exporter once (`PrometheusBuilder::install` serves /metrics);
    /// // here the recorder is local and rendered by hand.
    /// let recorder = PrometheusBuilder::new().build_recorder();
    /// metrics::with_local_recorder(&recorder, || transport.metrics().publish());
    /// let text = recorder.handle().render();
    /// assert!(text.contains("\nraftnet_callsSent{rpcType=\"RequestVote\"} 0\n"));
    /// assert!(text.contains("\nraft_net_rpcDecode_count{rpcType=\"Heartbeat\"} 0\n"));
    /// assert!(text.contains("\nraft_net_rpcDecode{rpcType=\"Heartbeat\",quantile=\"0.99\"} NaN\n"));
    /// # Ok::<(), raftnet::Error>(())
    /// ```
    pub fn publish(&self) {
        for metric in self.iter() {
            let (help, unit) = description(metric.name);
            match metric.value {
                MetricValue::Counter(n) => {
                    describe(metric.name, help, unit, Facade::Counter);
                    metrics::counter!(metric.name, metric.labels).absolute(n);
                }
                MetricValue::Gauge(n) => {
                    describe(metric.name, help, unit, Facade::Gauge);
                    metrics::gauge!(metric.name, metric.labels).set(n as f64);
                }
                MetricValue::Histogram(h) => publish_timer(metric, help, h),
            }
        }
    }
}

/// One timer's series, laid out as a Prometheus summary (see [`Metrics::publish`]).
fn publish_timer(metric: Metric, help: &str, h: HistogramSnapshot) {
    use metrics::Unit::Seconds;
    let seconds = |d: Duration| match h.count {
        0 => f64::NAN,
        _ => d.as_secs_f64(),
    };
    let help = |what: &str| format!("{help} {what}");
    let name = metric.name;
    describe(name, help("Percentiles."), Some(Seconds), Facade::Gauge);
    for (quantile, p) in QUANTILE_LABELS.iter().zip([h.p50, h.p99, h.p999]) {
        let labels = metric.labels.iter().chain([quantile]);
        let labels: Vec<metrics::Label> = labels.map(metrics::Label::from).collect();
        metrics::gauge!(name, labels).set(seconds(p));
    }
    let max = format!("{name}.max");
    describe(&max, help("The longest."), Some(Seconds), Facade::Gauge);
    metrics::gauge!(max, metric.labels).set(seconds(h.max));
    let sum = format!("{name}.sum");
    describe(&sum, help("The total."), Some(Seconds), Facade::Gauge);
    metrics::gauge!(sum, metric.labels).set(h.sum.as_secs_f64());
    let count = format!("{name}.count");
    describe(&count, help("Samples."), None, Facade::Counter);
    metrics::counter!(count, metric.labels).absolute(h.count);
}

/// The kinds of facade metric a raftnet metric is published as.
#[derive(Clone, Copy)]
enum Facade {
    Counter,
    Gauge,
}

/// Describes `name` to the facade's current recorder, as a `kind`.
fn describe(
    name: &str,
    help: impl Into<metrics::SharedString>,
    unit: Option<metrics::Unit>,
    kind: Facade,
) {
    let (name, help) = (name.to_owned().into(), help.into());
    metrics::with_recorder(|recorder| match kind {
        Facade::Counter => recorder.describe_counter(name, unit, help),
        Facade::Gauge => recorder.describe_gauge(name, unit, help),
    });
}

/// What a metric means (its field's doc, shortened) and its unit, for the facade's
/// descriptions.
pub(super) fn description(name: &str) -> (&'static str, Option<metrics::Unit>) {
    use metrics::Unit::Bytes;
    let help = match name {
        Metrics::RPC_DECODE => "Decoding an inbound RPC's frame.",
        Metrics::RPC_ENQUEUE => "An inbound RPC's wait from decoded to taken by the Raft side.",
        Metrics::RPC_RESPOND => "The Raft side's time to answer an inbound RPC.",
        Metrics::CALL => "An outbound call's latency, from submitted to answered.",
        Metrics::RPCS_RECEIVED => "Inbound RPCs decoded.",
        Metrics::CALLS_SENT => "Outbound calls sent (pipelined appends included).",
        Metrics::CALLS_FAILED => "Outbound calls that ended in an error.",
        Metrics::BYTES_READ => return ("Bytes read from sockets.", Some(Bytes)),
        Metrics::BYTES_WRITTEN => return ("Bytes written to sockets.", Some(Bytes)),
        Metrics::READS => "Socket reads that returned bytes.",
        Metrics::WRITES => "Socket writes that took bytes.",
        Metrics::REACTOR_TURNS => "Turns of the driver's loop.",
        Metrics::REACTOR_WAKES => "Times a producer rang the sleeping driver's waker.",
        Metrics::REACTOR_SLEEPS => "Times the driver blocked waiting for events.",
        Metrics::SYSTEM_CALLS => "System calls made to run the transport's sockets.",
        Metrics::LED_TURNS => {
            "Driver turns run by a calling thread in place of the sleeping driver thread."
        }
        Metrics::CALLER_WAKES => "Callers woken because their call or pipeline slot resolved.",
        Metrics::CONSUMER_WAKES => "Raft-side receivers woken because an RPC arrived.",
        Metrics::DIALS => "Outbound connections started.",
        Metrics::DIAL_FAILURES => "Outbound connections that failed before connecting.",
        Metrics::ACCEPTED => "Inbound connections accepted.",
        Metrics::PROTOCOL_ERRORS => "Connections closed because the peer sent invalid frames.",
        Metrics::HEARTBEATS_FAST_PATH => "Heartbeats answered by the heartbeat handler.",
        Metrics::CONNECTIONS_REFUSED => "Inbound connections closed over a connection limit.",
        Metrics::READS_PAUSED => "Times reading a connection paused over a per-peer limit.",
        Metrics::SNAPSHOTS_REFUSED => "InstallSnapshots refused over max_inbound_snapshots.",
        Metrics::SLOW_PEERS_CLOSED => "Inbound connections closed for sending too slowly.",
        Metrics::ZERO_COPY_SENDS => "Zero-copy sends done (io_uring SEND_ZC).",
        Metrics::ZERO_COPY_COPIED => "Zero-copy sends the kernel copied after all.",
        Metrics::CONSUMER_QUEUE => "Inbound RPCs waiting for the Raft side.",
        Metrics::SUBMISSION_QUEUE => "Commands waiting for the driver.",
        Metrics::COMPLETION_QUEUE => "Answers from the Raft side waiting for the driver.",
        Metrics::OPEN_CONNECTIONS => "Open connections, inbound and outbound.",
        Metrics::IDLE_POOLED_CONNECTIONS => "Idle pooled outbound connections.",
        Metrics::TIMERS => "The driver's pending timers.",
        _ => "",
    };
    (help, None)
}
