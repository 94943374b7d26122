//! Recording: what the transport's threads add to as they work ([`TransportMetrics`], relaxed
//! atomic adds into arrays indexed by [`RpcType`](super::RpcType)), the latency
//! [`Histogram`] it keeps per timed event, and the snapshot read from them.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::{HistogramSnapshot, Metrics, PerRpcType, RPC_TYPES};

/// Each power of two of nanoseconds is split into `2^HISTOGRAM_GROUPING_POWER` buckets, so a
/// bucket is at most 1/64 as wide as the values in it: the precision of every reported
/// percentile. (1/32 would halve the memory, 1/128 double it; 1/64 is well under the run-to-run
/// spread of latency percentiles, and a transport's 24 timers take 420 KiB with it.)
#[cfg(not(miri))]
pub(super) const HISTOGRAM_GROUPING_POWER: u8 = 6;

/// Under Miri, one bucket per power of two (as raftnet's histograms had before this crate):
/// Miri checks every atomic access, and the 24 x 2 240 buckets of each transport made an
/// engine test that took 2 s take 70 s (24 x 41 buckets: 2.7 s). The code is the same; the
/// precision tests check the bound that holds (2x) there.
#[cfg(miri)]
pub(super) const HISTOGRAM_GROUPING_POWER: u8 = 0;

/// Values up to `2^HISTOGRAM_MAX_VALUE_POWER - 1` ns (18.3 minutes) have buckets; longer ones are
/// counted in the last one (and in `max` and `mean` as they are).
const HISTOGRAM_MAX_VALUE_POWER: u8 = 40;

/// The largest value with a bucket of its own, in nanoseconds.
pub(super) const HISTOGRAM_LARGEST_NS: u64 = (1 << HISTOGRAM_MAX_VALUE_POWER) - 1;

/// The percentiles a [`HistogramSnapshot`] reports, in its fields' order.
pub(super) const REPORTED_QUANTILES: [f64; 3] = [0.50, 0.99, 0.999];

/// A lock-free latency histogram: log-linear buckets of nanoseconds (the `histogram` crate's
/// `AtomicHistogram`), plus the sum and the largest value.
///
/// Recording is two relaxed atomic adds (the bucket, the sum) and a relaxed load of the maximum
/// (a compare-exchange only when the value is a new maximum): no allocation, lock or clock read.
/// The count is the buckets' total, taken when a snapshot is read rather than kept per record.
pub(crate) struct Histogram {
    buckets: histogram::AtomicHistogram,
    sum_ns: AtomicU64,
    max_ns: AtomicU64,
}

/// Latencies up to `now`, recorded in runs: consecutive samples measured from the same start (a
/// batch's requests, sent with one clock read) are one subtraction and one histogram update.
/// The open run is recorded when the next one starts, and on drop.
pub(crate) struct LatencyRuns<'a> {
    histogram: &'a Histogram,
    now: Instant,
    start: Option<Instant>,
    latency: Duration,
    count: u64,
}

impl<'a> LatencyRuns<'a> {
    pub(crate) fn new(histogram: &'a Histogram, now: Instant) -> LatencyRuns<'a> {
        LatencyRuns {
            histogram,
            now,
            start: None,
            latency: Duration::ZERO,
            count: 0,
        }
    }

    /// Count a sample from `start` to `now`; its latency.
    pub(crate) fn since(&mut self, start: Instant) -> Duration {
        if self.start != Some(start) {
            self.finish();
            self.start = Some(start);
            self.latency = self.now.saturating_duration_since(start);
        }
        self.count += 1;
        self.latency
    }

    /// Record the open run.
    fn finish(&mut self) {
        if self.count > 0 {
            self.histogram.record_n(self.latency, self.count);
            self.count = 0;
        }
    }
}

impl Drop for LatencyRuns<'_> {
    fn drop(&mut self) {
        self.finish();
    }
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The buckets are thousands of counters: show the summary instead.
        fmt::Debug::fmt(&self.snapshot(), f)
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: histogram::AtomicHistogram::new(
                HISTOGRAM_GROUPING_POWER,
                HISTOGRAM_MAX_VALUE_POWER,
            )
            .expect("the grouping power is below the max value power, which is at most 64"),
            sum_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    pub(crate) fn record(&self, d: Duration) {
        self.record_n(d, 1);
    }

    /// Record `n` samples of `d` at once (one bucket update, not `n`).
    pub(crate) fn record_n(&self, d: Duration, n: u64) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        // In range once clamped, so `add` cannot fail.
        let _ = self.buckets.add(ns.min(HISTOGRAM_LARGEST_NS), n);
        self.sum_ns
            .fetch_add(ns.saturating_mul(n), Ordering::Relaxed);
        // Most samples are not a new maximum: a load, and no write to a line every thread shares.
        if ns > self.max_ns.load(Ordering::Relaxed) {
            self.max_ns.fetch_max(ns, Ordering::Relaxed);
        }
    }

    pub(super) fn snapshot(&self) -> HistogramSnapshot {
        let buckets = self.buckets.load();
        let count: u64 = buckets.as_slice().iter().sum();
        let sum = self.sum_ns.load(Ordering::Relaxed);
        // Read after the buckets: a sample counted there but whose maximum is not visible yet
        // is still reported within its bucket (below).
        let max = self.max_ns.load(Ordering::Relaxed);
        let mut quantiles = [const { None }; REPORTED_QUANTILES.len()];
        buckets
            .quantile_buckets_into(&REPORTED_QUANTILES, &mut quantiles)
            .expect("the quantiles are in 0..=1 and there is a slot for each");
        // Nearest rank's sample lies in the bucket found, and never above the maximum: the
        // bucket's upper end, lowered to the maximum where that is smaller, is at least the
        // sample and less than 1/64 above it.
        let [p50, p99, p999] = quantiles.map(|bucket| {
            Duration::from_nanos(bucket.map_or(0, |b| b.end().min(max.max(b.start()))))
        });
        HistogramSnapshot {
            count,
            mean: Duration::from_nanos(sum.checked_div(count).unwrap_or(0)),
            p50,
            p99,
            p999,
            max: Duration::from_nanos(max),
            sum: Duration::from_nanos(sum),
        }
    }
}

/// What the transport records, shared by its threads.
#[derive(Debug, Default)]
pub(crate) struct TransportMetrics {
    pub(crate) rpc_decode: [Histogram; RPC_TYPES],
    pub(crate) rpc_enqueue: [Histogram; RPC_TYPES],
    pub(crate) rpc_respond: [Histogram; RPC_TYPES],
    pub(crate) call_latency: [Histogram; RPC_TYPES],
    pub(crate) rpcs_received: [AtomicU64; RPC_TYPES],
    pub(crate) calls_sent: [AtomicU64; RPC_TYPES],
    pub(crate) calls_failed: [AtomicU64; RPC_TYPES],
    pub(crate) bytes_read: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    pub(crate) reads: AtomicU64,
    pub(crate) writes: AtomicU64,
    pub(crate) reactor_turns: AtomicU64,
    pub(crate) reactor_wakes: AtomicU64,
    /// Times the driver blocked in `poll` (each ends in a wake-up, by a socket, a timer or the
    /// waker); `reactor_wakes` counts the waker rings among them.
    pub(crate) reactor_sleeps: AtomicU64,
    pub(crate) led_turns: AtomicU64,
    /// See [`Metrics::system_calls`](super::Metrics::system_calls) for what counts.
    pub(crate) system_calls: AtomicU64,
    /// Threads or tasks woken because their call, pipeline future or pipeline slot resolved.
    pub(crate) caller_wakes: AtomicU64,
    pub(crate) dials: AtomicU64,
    pub(crate) dial_failures: AtomicU64,
    pub(crate) accepted: AtomicU64,
    pub(crate) protocol_errors: AtomicU64,
    pub(crate) heartbeats_fast_path: AtomicU64,
    pub(crate) connections_refused: AtomicU64,
    pub(crate) reads_paused: AtomicU64,
    pub(crate) snapshots_refused: AtomicU64,
    pub(crate) slow_peers_closed: AtomicU64,
    pub(crate) zero_copy_sends: AtomicU64,
    pub(crate) zero_copy_copied: AtomicU64,
}

pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}

impl TransportMetrics {
    /// The counters and timers; the gauges (which live elsewhere in the transport) are left 0
    /// for the caller to fill in.
    pub(crate) fn snapshot(&self, consumer_wakes: u64) -> Metrics {
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let counts = |cs: &[AtomicU64; RPC_TYPES]| PerRpcType::from_fn(|t| load(&cs[t as usize]));
        let timers =
            |hs: &[Histogram; RPC_TYPES]| PerRpcType::from_fn(|t| hs[t as usize].snapshot());
        Metrics {
            rpc_decode: timers(&self.rpc_decode),
            rpc_enqueue: timers(&self.rpc_enqueue),
            rpc_respond: timers(&self.rpc_respond),
            call_latency: timers(&self.call_latency),
            rpcs_received: counts(&self.rpcs_received),
            calls_sent: counts(&self.calls_sent),
            calls_failed: counts(&self.calls_failed),
            bytes_read: load(&self.bytes_read),
            bytes_written: load(&self.bytes_written),
            reads: load(&self.reads),
            writes: load(&self.writes),
            reactor_turns: load(&self.reactor_turns),
            reactor_wakes: load(&self.reactor_wakes),
            reactor_sleeps: load(&self.reactor_sleeps),
            led_turns: load(&self.led_turns),
            system_calls: load(&self.system_calls),
            caller_wakes: load(&self.caller_wakes),
            consumer_wakes,
            dials: load(&self.dials),
            dial_failures: load(&self.dial_failures),
            accepted: load(&self.accepted),
            protocol_errors: load(&self.protocol_errors),
            heartbeats_fast_path: load(&self.heartbeats_fast_path),
            connections_refused: load(&self.connections_refused),
            reads_paused: load(&self.reads_paused),
            snapshots_refused: load(&self.snapshots_refused),
            slow_peers_closed: load(&self.slow_peers_closed),
            zero_copy_sends: load(&self.zero_copy_sends),
            zero_copy_copied: load(&self.zero_copy_copied),
            ..Metrics::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` samples recorded at once read back as `n` samples recorded one by one: the same
    /// count, sum, mean and maximum.
    #[test]
    fn samples_recorded_at_once_count_as_each() {
        let at_once = Histogram::default();
        let one_by_one = Histogram::default();
        at_once.record_n(Duration::from_micros(7), 5);
        at_once.record_n(Duration::from_micros(30), 2);
        for _ in 0..5 {
            one_by_one.record(Duration::from_micros(7));
        }
        for _ in 0..2 {
            one_by_one.record(Duration::from_micros(30));
        }
        let (a, b) = (at_once.snapshot(), one_by_one.snapshot());
        assert_eq!(a.count, 7);
        assert_eq!(a.sum, Duration::from_micros(95));
        assert_eq!(a.max, Duration::from_micros(30));
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }

    /// Runs of equal starts are recorded as their samples would be one by one, whatever the
    /// order of starts, including a start seen again after another.
    #[test]
    fn latency_runs_record_every_sample() {
        let base = Instant::now();
        let now = base + Duration::from_micros(100);
        let starts = [0, 0, 0, 40, 40, 0, 90].map(|us| base + Duration::from_micros(us));
        let in_runs = Histogram::default();
        let one_by_one = Histogram::default();
        {
            let mut runs = LatencyRuns::new(&in_runs, now);
            for start in starts {
                assert_eq!(runs.since(start), now - start);
                one_by_one.record(now - start);
            }
        }
        let (a, b) = (in_runs.snapshot(), one_by_one.snapshot());
        assert_eq!(a.count, 7);
        assert_eq!(a.sum, Duration::from_micros(3 * 100 + 2 * 60 + 100 + 10));
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }
}
