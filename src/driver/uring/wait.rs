//! The io_uring driver's wait: hand the turn's submissions to the kernel, look for completions
//! while [`SpinBudget`] says one is due, then sleep in `io_uring_enter`.
//!
//! **Looking costs no system call.** The kernel posts completions to memory the driver shares
//! with it, and a ring whose kernel holds completions back until the driver enters
//! ([`TaskRun::Cooperative`], [`TaskRun::Deferred`]) says so in a flag there. So unlike the
//! epoll driver, whose every look is an `epoll_wait`, the spin's only system call is the
//! `sched_yield` that lets a thread sharing the CPU run (the caller, or the peer whose answer is
//! due). Yielding at every look made most of the driver's system calls (1.2M of 1.28M in a 2 s
//! heartbeat-pipelined run, BENCHMARKS.md), and a yield that comes straight back bought
//! nothing: no other thread wanted the CPU, so what the driver waits for comes from another
//! one. So [`YieldPacer`] yields at once again only while yielding lets another thread run,
//! and otherwise after [`YIELD_EVERY`] of looking. `RAFTNET_URING_YIELD_US` sets that interval
//! for measuring (0: a yield per look, as before).

use std::io;
use std::time::{Duration, Instant};

use io_uring::types;

use super::UringDriver;
#[cfg(doc)]
use super::setup::TaskRun;
#[cfg(doc)]
use crate::driver::spin::SpinBudget;
use crate::metrics::add;

/// Looking for completions between two yields of the CPU while spinning, after a yield that
/// found no other thread wanting the CPU.
pub(super) const YIELD_EVERY: Duration = Duration::from_micros(5);

/// A yield that took this long let another thread run (one that found none returns in well
/// under a microsecond: [`YieldPacer`]).
const SWITCHED: Duration = Duration::from_micros(2);

/// [`YIELD_EVERY`], or `RAFTNET_URING_YIELD_US` when measuring. Read once per driver.
pub(super) fn yield_every() -> Duration {
    let Ok(value) = std::env::var("RAFTNET_URING_YIELD_US") else {
        return YIELD_EVERY;
    };
    match value.parse::<u64>() {
        Ok(us) => Duration::from_micros(us),
        Err(_) => {
            tracing::warn!(
                "RAFTNET_URING_YIELD_US={value:?} is not a number of microseconds; ignored"
            );
            YIELD_EVERY
        }
    }
}

impl UringDriver {
    /// Submit the turn's operations and wait for completions: with work queued, only submit;
    /// otherwise look for completions (no system call: the kernel posts them to the shared
    /// queue) for as long as [`SpinBudget`] says something is due, yielding the CPU when
    /// [`YieldPacer`] says, then sleep in `io_uring_enter` until a completion, the next timer,
    /// or a waker ring.
    pub(super) fn wait(&mut self) -> io::Result<()> {
        self.waiting_since = None;
        if self.has_queued_work() || self.completions_ready() {
            self.submit(false, None)?;
            self.now = Instant::now();
            return Ok(());
        }
        self.submit(false, None)?;
        let spin_start = self.now;
        self.waiting_since = Some(spin_start);
        let spin = self.spin.budget();
        let mut yields = YieldPacer::new(spin_start, self.yield_every);
        loop {
            if self.has_queued_work() {
                // A caller's command or answer, handed over without a wake-up.
                self.now = Instant::now();
                self.spin.record(self.now - spin_start);
                self.waiting_since = None;
                self.submit(false, None)?;
                return Ok(());
            }
            if self.completions_ready() {
                // Posts the completions the kernel holds back, if it does (see `TaskRun`).
                self.submit(false, None)?;
                self.now = Instant::now();
                return Ok(());
            }
            let now = Instant::now();
            self.now = now;
            if now - spin_start >= spin || self.engine.poll_timeout().is_some_and(|at| at <= now) {
                break;
            }
            if !yields.due(now) {
                // Looking costs no system call; a peer on another CPU is seen without one.
                std::hint::spin_loop();
                continue;
            }
            // Give a thread that shares this CPU (the caller or the peer whose event is due)
            // its turn.
            add(&self.engine.metrics().system_calls, 1);
            std::thread::yield_now();
            yields.yielded(now, Instant::now());
        }
        let handoff = self.engine.shared().handoff.clone();
        let waited = if handoff.prepare_sleep() {
            add(&self.engine.metrics().reactor_sleeps, 1);
            let timeout = self
                .engine
                .poll_timeout()
                .map(|at| at.saturating_duration_since(Instant::now()));
            self.submit(true, timeout)
        } else {
            Ok(())
        };
        handoff.woke();
        self.now = Instant::now();
        waited
    }

    /// Completions are posted, or the kernel holds some back until the next `io_uring_enter`
    /// (a [`TaskRun::Cooperative`] or [`TaskRun::Deferred`] ring says so in a flag). One look at
    /// memory shared with the kernel each, no system call.
    pub(super) fn completions_ready(&mut self) -> bool {
        !self.ring.completion().is_empty() || self.ring.submission().taskrun()
    }

    /// Hand the queued submissions to the kernel (one `io_uring_enter`, none if there are none
    /// and `wait` is false); with `wait`, also wait for a completion, at most `timeout`. Then
    /// close the sockets the turn closed (see the module doc).
    pub(super) fn submit(&mut self, wait: bool, timeout: Option<Duration>) -> io::Result<()> {
        let enters = wait && timeout != Some(Duration::ZERO)
            || !self.ring.submission().is_empty()
            || self.ring.submission().taskrun();
        if enters {
            add(&self.engine.metrics().system_calls, 1);
        }
        let result = if wait && timeout != Some(Duration::ZERO) {
            match timeout {
                Some(t) => {
                    let ts = types::Timespec::from(t);
                    let args = types::SubmitArgs::new().timespec(&ts);
                    self.ring.submitter().submit_with_args(1, &args)
                }
                None => self.ring.submitter().submit_and_wait(1),
            }
        } else if !self.ring.submission().is_empty() || self.ring.submission().taskrun() {
            // With the task-run flag up this also posts what the kernel holds back.
            self.ring.submitter().submit()
        } else {
            Ok(0)
        };
        let result = match result {
            Ok(_) => Ok(()),
            // A timeout, a signal, or a full completion queue (it is drained next): not failures.
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY)
                ) =>
            {
                Ok(())
            }
            Err(e) => Err(e),
        };
        if result.is_ok() && self.ring.submission().is_empty() {
            self.closing.clear();
        }
        result
    }
}

/// When a spinning driver next yields the CPU: at the first look that finds nothing, then at
/// once again while yielding lets another thread run (a yield that took [`SWITCHED`] or more),
/// and only after `every` of looking once a yield came straight back (no other thread wanted
/// this CPU, so what the driver waits for comes from another one, seen without a yield).
#[derive(Debug, Clone, Copy)]
struct YieldPacer {
    next: Instant,
    every: Duration,
}

impl YieldPacer {
    fn new(start: Instant, every: Duration) -> YieldPacer {
        YieldPacer { next: start, every }
    }

    /// Whether to yield at `now`.
    fn due(&self, now: Instant) -> bool {
        now >= self.next
    }

    /// A yield began at `before` and returned at `after`.
    fn yielded(&mut self, before: Instant, after: Instant) {
        self.next = if after.saturating_duration_since(before) >= SWITCHED {
            after
        } else {
            after + self.every
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn the_first_look_yields_and_a_yield_that_came_straight_back_waits_its_interval() {
        let start = Instant::now();
        let mut pacer = YieldPacer::new(start, YIELD_EVERY);
        assert!(pacer.due(start), "the first look that finds nothing yields");
        // Back in well under SWITCHED: nobody else wanted the CPU.
        let back = start + us(1);
        pacer.yielded(start, back);
        assert!(!pacer.due(back));
        assert!(!pacer.due(back + YIELD_EVERY - us(1)));
        assert!(pacer.due(back + YIELD_EVERY));
    }

    #[test]
    fn a_yield_that_let_another_thread_run_is_followed_by_another_at_once() {
        let start = Instant::now();
        let mut pacer = YieldPacer::new(start, YIELD_EVERY);
        let back = start + SWITCHED;
        pacer.yielded(start, back);
        assert!(pacer.due(back));
        // And a quick one after it restores the interval.
        let quick = back + us(1);
        pacer.yielded(back, quick);
        assert!(!pacer.due(quick + YIELD_EVERY - us(1)));
        assert!(pacer.due(quick + YIELD_EVERY));
    }

    #[test]
    fn an_interval_of_zero_yields_at_every_look() {
        let start = Instant::now();
        let mut pacer = YieldPacer::new(start, Duration::ZERO);
        pacer.yielded(start, start + us(1));
        assert!(pacer.due(start + us(1)));
    }
}
