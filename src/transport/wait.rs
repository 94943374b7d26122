//! How the public types wait: one blocking wait ([`wait_until`], [`wait`]) and its async twin
//! ([`poll_until`], [`wait_until_async`]), shared by [`Call`](super::Call),
//! [`AppendFuture`](super::AppendFuture), [`AppendPipeline`](super::AppendPipeline),
//! [`Consumer`](super::Consumer) and [`SnapshotReader`](super::SnapshotReader).
//!
//! Every wait here is the same protocol: look (`ready`), listen on the [`Event`] the other side
//! notifies, look again, then sleep. Looking again after listening is what makes it correct: a
//! notification sent between the first look and `listen` reaches nobody, and the second look
//! sees what it announced. `ready` both checks and takes (it returns the value waited for), so a
//! waiter that loses a race with another one (two threads on one [`Consumer`](super::Consumer))
//! just goes on waiting.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use event_listener::{Event, EventListener, Listener};

/// Wake every thread or task listening on `event`, after the value they wait for was stored:
/// how many were woken. When nobody listens this costs a fence, not `Event::notify`'s first-use
/// allocation of the event's listener list (event-listener allocates it on the first `notify`
/// as on the first `listen`): a call's or a pipelined append's result is usually taken without
/// anybody listening, so that was an allocation and a free per RPC.
///
/// Correct without the notification because of the protocol above: a waiter listens (the
/// listener is in the list, then `listen` emits a `SeqCst` fence) before its second look. With
/// the fence here between storing the value and counting the listeners, either the count sees
/// that waiter's listener (and it is notified), or its second look sees the value.
pub(crate) fn notify_all(event: &Event) -> usize {
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    if event.total_listeners() == 0 {
        return 0;
    }
    event.notify(usize::MAX)
}

/// How long a thread about to block first checks (yielding the CPU) whether what it waits for
/// has arrived. Under load the answer usually comes within this window, which saves both sides a
/// futex wake-up (about 18 µs of CPU and 25 µs of latency across cores on these machines, more
/// than the wait itself); when idle it costs this much CPU once per wait.
const SPIN_BEFORE_PARK: Duration = Duration::from_micros(20);

/// Spin briefly until `ready` yields a value; `None` if it did not within [`SPIN_BEFORE_PARK`].
/// Called before parking a thread.
///
/// The spin yields the CPU after its first rounds, so it also pays on a single CPU: a thread
/// waiting for a peer on the same CPU hands it the CPU with `sched_yield` (measured: heartbeat
/// round trips 35.6k/s with the spin, 28.6k/s without, everything pinned to one CPU), where
/// parking would cost a futex sleep and wake-up per hand-off.
fn spin_until<R>(mut ready: impl FnMut() -> Option<R>) -> Option<R> {
    let start = Instant::now();
    let mut round = 0u32;
    loop {
        if let Some(value) = ready() {
            return Some(value);
        }
        // Reading the clock costs about as much as a few checks; look at it now and then.
        if round % 16 == 15 && start.elapsed() >= SPIN_BEFORE_PARK {
            return None;
        }
        if round < 32 {
            std::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
        round += 1;
    }
}

thread_local! {
    /// Set while a handler runs on a transport's own thread (see [`on_transport_thread`]).
    static ON_TRANSPORT_THREAD: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `handler` (a [`Service`](crate::Service) or heartbeat handler) as the transport's own
/// thread does: a blocking wait inside it panics instead of hanging, since what it waits for
/// could only be delivered by the thread it blocks.
pub(crate) fn on_transport_thread<R>(handler: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            ON_TRANSPORT_THREAD.with(|flag| flag.set(self.0));
        }
    }
    let _reset = Reset(ON_TRANSPORT_THREAD.with(|flag| flag.replace(true)));
    handler()
}

/// Called just before a thread blocks: see [`on_transport_thread`].
fn refuse_to_block_the_transport() {
    if ON_TRANSPORT_THREAD.with(|flag| flag.get()) {
        panic!(
            "raftnet: a Service or heartbeat handler blocked on the transport's own thread \
             (waiting for an answer, a pipeline or a snapshot body the transport must deliver \
             itself); hand such work to another thread"
        );
    }
}

/// Whether a blocking wait spins ([`SPIN_BEFORE_PARK`]) before it parks the thread. Each call
/// site keeps the choice it was measured with; async waits never spin (they would hold up
/// their executor's thread).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spin {
    /// Spin briefly first: the hot blocking waits (a call's answer, the next inbound RPC, a
    /// pipeline's completions and free slots).
    BeforeParking,
    /// Park at once.
    Never,
}

/// Block the thread until `ready` yields a value, or until `deadline` passes (then `None`,
/// after one last look). `event` is what the other side notifies after making `ready` true.
/// Without a deadline it only returns `Some`; [`wait`] says so in its type.
pub(crate) fn wait_until<R>(
    event: &Event,
    spin: Spin,
    deadline: Option<Instant>,
    mut ready: impl FnMut() -> Option<R>,
) -> Option<R> {
    loop {
        let early = match spin {
            Spin::BeforeParking => spin_until(&mut ready),
            Spin::Never => ready(),
        };
        if early.is_some() {
            return early;
        }
        let listener = event.listen();
        if let Some(value) = ready() {
            return Some(value);
        }
        refuse_to_block_the_transport();
        match deadline {
            None => listener.wait(),
            Some(deadline) => {
                if listener.wait_deadline(deadline).is_none() {
                    return ready();
                }
            }
        }
    }
}

/// Block the thread until `ready` yields a value: [`wait_until`] without a deadline.
pub(crate) fn wait<R>(event: &Event, spin: Spin, mut ready: impl FnMut() -> Option<R>) -> R {
    loop {
        // Without a deadline `wait_until` returns only with a value; the loop spares a panic
        // path.
        if let Some(value) = wait_until(event, spin, None, &mut ready) {
            return value;
        }
    }
}

/// The async twin of [`wait`], one poll at a time: `Ready` once `ready` yields a value;
/// otherwise the task is registered on `event` through `listener` (which the caller keeps
/// between polls) and `Pending`. Never spins.
pub(crate) fn poll_until<R>(
    event: &Event,
    listener: &mut Option<EventListener>,
    cx: &mut Context<'_>,
    mut ready: impl FnMut() -> Option<R>,
) -> Poll<R> {
    loop {
        if let Some(value) = ready() {
            *listener = None;
            return Poll::Ready(value);
        }
        match listener {
            // Listen, then look again (the next round) before sleeping.
            None => *listener = Some(event.listen()),
            Some(l) => {
                if Pin::new(l).poll(cx).is_pending() {
                    return Poll::Pending;
                }
                // Notified: a fresh listener for the next round, after a look.
                *listener = None;
            }
        }
    }
}

/// Wait without blocking the thread until `ready` yields a value (any executor).
pub(crate) async fn wait_until_async<R>(event: &Event, mut ready: impl FnMut() -> Option<R>) -> R {
    let mut listener = None;
    std::future::poll_fn(|cx| poll_until(event, &mut listener, cx, &mut ready)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A value another thread sets, with the event it rings after setting it.
    #[derive(Default)]
    struct Flag {
        value: AtomicUsize,
        event: Event,
    }

    impl Flag {
        fn set(&self, value: usize) {
            self.value.store(value, Ordering::Release);
            notify_all(&self.event);
        }

        fn get(&self) -> Option<usize> {
            Some(self.value.load(Ordering::Acquire)).filter(|v| *v != 0)
        }
    }

    fn set_later(flag: &Arc<Flag>, after: Duration) -> std::thread::JoinHandle<()> {
        let flag = flag.clone();
        std::thread::spawn(move || {
            std::thread::sleep(after);
            flag.set(7);
        })
    }

    #[test]
    fn returns_when_the_event_fires() {
        for spin in [Spin::BeforeParking, Spin::Never] {
            let flag = Arc::new(Flag::default());
            // Long enough that the waiter has parked (past the spin) when the value comes.
            let setter = set_later(&flag, Duration::from_millis(20));
            assert_eq!(wait(&flag.event, spin, || flag.get()), 7, "{spin:?}");
            setter.join().unwrap();

            let flag = Arc::new(Flag::default());
            let setter = set_later(&flag, Duration::from_millis(20));
            let far = Instant::now() + Duration::from_secs(60);
            assert_eq!(
                wait_until(&flag.event, spin, Some(far), || flag.get()),
                Some(7)
            );
            setter.join().unwrap();
        }
    }

    #[test]
    fn returns_none_when_the_deadline_passes() {
        for spin in [Spin::BeforeParking, Spin::Never] {
            let flag = Flag::default();
            let start = Instant::now();
            let deadline = start + Duration::from_millis(30);
            assert_eq!(
                wait_until(&flag.event, spin, Some(deadline), || flag.get()),
                None
            );
            assert!(Instant::now() >= deadline, "returned before the deadline");
            // A deadline already past: one look (after the spin, if any), no sleep.
            assert_eq!(
                wait_until(&flag.event, spin, Some(start), || flag.get()),
                None
            );
        }
    }

    #[test]
    fn a_value_already_there_is_returned_without_listening() {
        let flag = Flag::default();
        flag.set(3);
        assert_eq!(wait(&flag.event, Spin::Never, || flag.get()), 3);
        assert_eq!(
            wait_until(
                &flag.event,
                Spin::BeforeParking,
                Some(Instant::now()),
                || { flag.get() }
            ),
            Some(3)
        );
    }

    #[test]
    fn the_async_twin_wakes_when_the_event_fires() {
        let flag = Arc::new(Flag::default());
        let setter = set_later(&flag, Duration::from_millis(20));
        let got = futures::executor::block_on(wait_until_async(&flag.event, || flag.get()));
        assert_eq!(got, 7);
        setter.join().unwrap();
    }

    #[test]
    fn poll_until_registers_then_takes_the_value() {
        let flag = Flag::default();
        let mut listener = None;
        let mut cx = Context::from_waker(std::task::Waker::noop());
        assert!(poll_until(&flag.event, &mut listener, &mut cx, || flag.get()).is_pending());
        assert!(listener.is_some(), "registered before returning Pending");
        flag.set(5);
        assert_eq!(
            poll_until(&flag.event, &mut listener, &mut cx, || flag.get()),
            Poll::Ready(5)
        );
        assert!(listener.is_none(), "the registration goes with the value");
    }
}
