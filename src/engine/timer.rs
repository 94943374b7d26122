//! The engine's timers: call deadlines, dial timeouts and the accept back-off, in one heap.
//! Entries are not removed one by one; when one fires, the engine checks that what it guards is
//! still pending (the connection key carries a generation). Stale entries (of connections
//! closed before their dial timeout or deadline) are swept out together once they outnumber
//! what the open connections can hold (`Engine::add_timer`), so churn cannot grow the heap
//! beyond a bound of the connections open. Call deadlines are kept per
//! connection, not per call: a connection arms one entry for its earliest pending deadline and
//! re-arms when it fires early, so the heap holds about one entry per connection however many
//! calls pass through it.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use super::key::ConnKey;

/// What a timer guards. At the same instant, a dial timer fires before a deadline: a call
/// whose connection never came up fails as unreachable, which says more than a timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TimerKind {
    /// An outbound connection still dialling.
    Dial { conn: ConnKey },
    /// The earliest deadline of the calls pending on `conn`.
    Deadline { conn: ConnKey },
    /// Accepting paused after an error; resume.
    AcceptResume,
}

#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, TimerKind)>>,
}

impl Timers {
    pub(crate) fn add(&mut self, at: Instant, kind: TimerKind) {
        self.heap.push(Reverse((at, kind)));
    }

    /// The next timer that is due at `now`, if any, with the instant it was set for.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, TimerKind)> {
        match self.heap.peek() {
            Some(Reverse((at, _))) if *at <= now => self.heap.pop().map(|Reverse(entry)| entry),
            _ => None,
        }
    }

    /// When the next timer is due (None: no timer).
    pub(crate) fn next_at(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Keep only the entries `keep` says still guard something (an O(n) rebuild, for the
    /// engine's occasional sweep of stale entries).
    pub(crate) fn retain(&mut self, mut keep: impl FnMut(Instant, TimerKind) -> bool) {
        self.heap.retain(|Reverse((at, kind))| keep(*at, *kind));
    }
}

/// hashicorp's accept back-off: 5 ms, doubling, capped at 1 s (#301).
pub(crate) fn accept_backoff(previous: Option<Duration>) -> Duration {
    const FIRST: Duration = Duration::from_millis(5);
    const CAP: Duration = Duration::from_secs(1);
    match previous {
        None => FIRST,
        Some(d) => (d * 2).min(CAP),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_fire_in_order() {
        let now = Instant::now();
        let mut t = Timers::default();
        let (one, two) = (ConnKey::new(1, 1), ConnKey::new(2, 1));
        t.add(
            now + Duration::from_millis(20),
            TimerKind::Dial { conn: two },
        );
        t.add(
            now + Duration::from_millis(10),
            TimerKind::Dial { conn: one },
        );
        t.add(now + Duration::from_millis(30), TimerKind::AcceptResume);
        assert_eq!(t.next_at(), Some(now + Duration::from_millis(10)));
        assert_eq!(t.pop_due(now), None);
        let later = now + Duration::from_millis(25);
        assert_eq!(
            t.pop_due(later).map(|e| e.1),
            Some(TimerKind::Dial { conn: one })
        );
        assert_eq!(
            t.pop_due(later).map(|e| e.1),
            Some(TimerKind::Dial { conn: two })
        );
        assert_eq!(t.pop_due(later), None);
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn accept_backoff_doubles_to_a_second() {
        let mut d = None;
        let mut seen = Vec::new();
        for _ in 0..10 {
            let next = accept_backoff(d);
            seen.push(next.as_millis());
            d = Some(next);
        }
        assert_eq!(seen, [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
    }
}
