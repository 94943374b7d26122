//! How long a driver keeps looking for events before it sleeps: [`SpinBudget`], shared by the
//! epoll and io_uring drivers.
//!
//! Sleeping costs a wake-up when the next event comes: about 18 µs of CPU and 25 µs of latency
//! across cores on the machines measured, which is most of a sequential round trip. Looking
//! without sleeping costs CPU for as long as nothing comes. So a driver spins only as long as
//! its recent past says an event is due: when events have been coming at short intervals (a
//! round trip in progress, a peer calling one RPC after another), it looks for a little longer
//! than that interval (at most [`MAX_SPIN`]); when they have not (an idle cluster's 50 ms
//! heartbeats), it looks for [`BASE_SPIN`] and sleeps.

use std::time::Duration;

/// The spin when events are not coming at short intervals: about the cost of the wake-up it
/// saves when one comes anyway.
pub(super) const BASE_SPIN: Duration = Duration::from_micros(20);

/// The longest spin: events further apart than this are not worth a CPU kept busy for them.
/// A round trip to another process on these machines takes 80-130 µs; within one process,
/// 20-30 µs.
pub(super) const MAX_SPIN: Duration = Duration::from_micros(200);

/// The driver's recent intervals between starting to wait and an event arriving, and the spin
/// they call for.
#[derive(Debug, Clone)]
pub(crate) struct SpinBudget {
    /// A moving average of the recent intervals, each counted as at most twice the longest
    /// spin (so one long idle gap does not take many short ones to forget), in nanoseconds.
    typical_ns: u64,
    /// The longest spin allowed ([`MAX_SPIN`], or `RAFTNET_SPIN_MAX_US` when measuring).
    max_ns: u64,
}

impl Default for SpinBudget {
    fn default() -> Self {
        SpinBudget::with_max(max_spin_from_env().unwrap_or(MAX_SPIN))
    }
}

impl SpinBudget {
    /// A budget that never spins longer than `max` (nor shorter than [`BASE_SPIN`], unless
    /// `max` is shorter: then always `max`).
    pub(crate) fn with_max(max: Duration) -> SpinBudget {
        let max_ns = duration_ns(max);
        SpinBudget {
            // Start as if idle: the first events earn a longer spin.
            typical_ns: 2 * max_ns,
            max_ns,
        }
    }

    /// How long to look for events before sleeping now.
    pub(crate) fn budget(&self) -> Duration {
        let base = duration_ns(BASE_SPIN).min(self.max_ns);
        let ns = if self.typical_ns > self.max_ns {
            base
        } else {
            // A quarter more than the typical interval: an event that comes a little late is
            // still caught, and one that is not coming costs at most that much.
            (self.typical_ns + self.typical_ns / 4).clamp(base, self.max_ns)
        };
        Duration::from_nanos(ns)
    }

    /// A wait that began `waited` ago ended with an event (not a timer).
    pub(crate) fn record(&mut self, waited: Duration) {
        let sample = duration_ns(waited).min(2 * self.max_ns);
        // An average over about the last eight waits.
        self.typical_ns = self.typical_ns - self.typical_ns / 8 + sample / 8;
    }
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// `RAFTNET_SPIN_MAX_US`: the longest spin in microseconds, for measuring (20 spins as before
/// the budget adapted; 0 never spins). Read once per driver.
fn max_spin_from_env() -> Option<Duration> {
    let value = std::env::var("RAFTNET_SPIN_MAX_US").ok()?;
    match value.parse::<u64>() {
        Ok(us) => Some(Duration::from_micros(us)),
        Err(_) => {
            tracing::warn!(
                "RAFTNET_SPIN_MAX_US={value:?} is not a number of microseconds; ignored"
            );
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// `spin` after `waits` more waits that each lasted `gap`.
    fn after(mut spin: SpinBudget, waits: usize, gap: Duration) -> SpinBudget {
        for _ in 0..waits {
            spin.record(gap);
        }
        spin
    }

    #[test]
    fn an_idle_driver_spins_the_base() {
        let spin = SpinBudget::with_max(MAX_SPIN);
        assert_eq!(spin.budget(), BASE_SPIN);
        let spin = after(spin, 100, Duration::from_millis(50));
        assert_eq!(spin.budget(), BASE_SPIN);
    }

    #[test]
    fn events_at_short_intervals_earn_a_spin_a_quarter_longer() {
        let spin = after(SpinBudget::with_max(MAX_SPIN), 200, us(80));
        // The average converges to 80 µs (within a rounding per step); the spin is 100 µs.
        let budget = spin.budget();
        assert!(budget >= us(99) && budget <= us(101), "{budget:?}");
    }

    #[test]
    fn the_spin_stays_between_the_base_and_the_max() {
        let spin = after(SpinBudget::with_max(MAX_SPIN), 200, us(1));
        assert_eq!(spin.budget(), BASE_SPIN);
        let spin = after(spin, 200, us(170));
        assert_eq!(spin.budget(), MAX_SPIN);
    }

    #[test]
    fn a_return_to_idle_returns_to_the_base_within_a_few_waits() {
        let mut spin = after(SpinBudget::with_max(MAX_SPIN), 200, us(60));
        assert!(spin.budget() > BASE_SPIN);
        let mut waits = 0;
        while spin.budget() > BASE_SPIN {
            spin.record(Duration::from_secs(1));
            waits += 1;
        }
        assert!(waits <= 8, "{waits} idle waits to forget");
    }

    #[test]
    fn alternating_idle_and_busy_waits_spin_the_base() {
        // A leader at rest: a heartbeat call every 50 ms, its answer 100 µs after it.
        let mut spin = SpinBudget::with_max(MAX_SPIN);
        for _ in 0..100 {
            spin.record(Duration::from_millis(50));
            spin.record(us(100));
        }
        assert_eq!(spin.budget(), BASE_SPIN);
    }

    #[test]
    fn a_max_below_the_base_is_the_spin() {
        let mut spin = SpinBudget::with_max(Duration::ZERO);
        assert_eq!(spin.budget(), Duration::ZERO);
        spin.record(us(5));
        assert_eq!(spin.budget(), Duration::ZERO);
        let old = after(SpinBudget::with_max(BASE_SPIN), 100, us(10));
        assert_eq!(old.budget(), BASE_SPIN);
    }
}
