//! The mio driver as a task on a tokio runtime ([`Placement::Runtime`](super::Placement)): the
//! same turns as on a thread of its own, but instead of sleeping in `epoll_wait`, the task waits
//! for the driver's epoll descriptor to become readable (registered with the runtime's I/O
//! driver), for a ring from the handoff (a task notification, not an eventfd write), or for the
//! engine's next timer. It never spins: the runtime's workers have other tasks to run.
//!
//! For a Raft that lives on that runtime (openraft does), its calls, the engine and its serving
//! task then hand work to each other as tasks of one runtime, instead of waking a sleeping
//! thread at every crossing.
//!
//! While the task waits, a caller may run a turn in its place ([`Lead`], as on the thread
//! placement): a call is written from the task (or thread) that makes it, and an answer from
//! the one that gives it, instead of each waking the driver task for a turn of its own. The
//! driver sits behind a lock that the task holds only between waits and a caller only takes
//! when it is free; the task still does all the waiting (callers never wait for events here:
//! [`Lead::run_until`] declines).

use std::io;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tracing::Span;

use super::Finished;
use super::mio::MioDriver;
use super::thread::set_leading;
use crate::engine::ClosedOnExit;
use crate::engine::handoff::{Command, Completion, Handoff, Lead, Wake};
use crate::metrics::add;

/// Turns in a row with work before the task yields to the runtime's other tasks.
const BUSY_TURNS_BEFORE_YIELD: u32 = 16;

/// Rings the driver task.
pub(crate) struct NotifyWake(pub(crate) Arc<Notify>);

impl Wake for NotifyWake {
    fn wake(&self) -> io::Result<()> {
        self.0.notify_one();
        Ok(())
    }
}

/// A mio driver that a task on a runtime runs, and callers may run a turn of in its place.
pub(crate) struct TaskDriver {
    /// Whoever holds this lock runs the driver: the task between its waits, or a caller.
    driver: Mutex<MioDriver>,
    handoff: Arc<Handoff>,
    /// The transport's span, entered by a caller that runs a turn.
    span: Span,
}

impl TaskDriver {
    pub(crate) fn new(driver: MioDriver, span: Span) -> Arc<TaskDriver> {
        let handoff = driver.engine.shared().handoff.clone();
        Arc::new(TaskDriver {
            driver: Mutex::new(driver),
            handoff,
            span,
        })
    }

    fn lock(&self) -> MutexGuard<'_, MioDriver> {
        // A caller that panicked inside a turn (a bug) set `stopping`: the task shuts down.
        self.driver.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Give the engine `work` and carry it out here if the task waits (nobody holds the
    /// driver): `queue` queues it without ringing anyone. Otherwise `hand_over` queues it for
    /// whoever runs the engine (ringing the task if it is about to wait).
    fn run_once<W>(&self, work: W, queue: fn(&Handoff, W), hand_over: fn(&Handoff, W)) {
        let Ok(mut guard) = self.driver.try_lock() else {
            hand_over(&self.handoff, work);
            return;
        };
        if guard.stopping {
            drop(guard);
            hand_over(&self.handoff, work);
            return;
        }
        queue(&self.handoff, work);
        let _span = self.span.enter();
        let lead = Leading::start(&mut guard, &self.handoff);
        add(&lead.driver.engine.metrics().led_turns, 1);
        lead.driver.now = Instant::now();
        if !lead.driver.turn() {
            lead.driver.stopping = true;
        }
        if lead.driver.needs_its_waiter() {
            self.handoff.wake_driver();
        }
    }
}

/// Marks the thread as leading for a turn (so a close from a handler inside it does not wait
/// for the task, which waits for the lock), and stops the driver if the turn panics.
struct Leading<'a> {
    driver: &'a mut MioDriver,
    handoff: &'a Handoff,
}

impl<'a> Leading<'a> {
    fn start(driver: &'a mut MioDriver, handoff: &'a Handoff) -> Leading<'a> {
        set_leading(true);
        Leading { driver, handoff }
    }
}

impl Drop for Leading<'_> {
    fn drop(&mut self) {
        set_leading(false);
        if std::thread::panicking() {
            self.driver.stopping = true;
            self.handoff.wake_driver();
        }
    }
}

impl Lead for TaskDriver {
    fn submit(&self, command: Command) {
        self.run_once(command, Handoff::submit_quietly, Handoff::submit);
    }

    fn complete(&self, completion: Completion) {
        self.run_once(completion, Handoff::complete_quietly, Handoff::complete);
    }

    fn run_until(&self, _: Option<Instant>, _: &mut dyn FnMut() -> bool) -> Option<bool> {
        // Waiting for events is the task's: a thread blocked here would hold a runtime's
        // driver away from its task (and may be one of the runtime's own workers).
        None
    }
}

/// Stops the driver when the task ends, also when the runtime drops it unfinished: callers
/// no longer run it, and (if the task did not get to it) it shuts down, which resolves every
/// call in flight (the driver outlives its task: the transport holds it as its [`Lead`]).
struct StopOnExit {
    driver: Arc<TaskDriver>,
    shut_down: bool,
}

impl StopOnExit {
    fn shut_down(&mut self) {
        let mut driver = self.driver.lock();
        driver.stopping = true;
        if !std::mem::replace(&mut self.shut_down, true) {
            driver.shutdown();
        }
    }
}

impl Drop for StopOnExit {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// Run the driver as a task until the transport shuts down. `finished` is signalled when the
/// task ends, also when the runtime drops it unfinished.
pub(crate) async fn run_task(this: Arc<TaskDriver>, ring: Arc<Notify>, finished: Finished) {
    let _finished = finished.signal_on_drop();
    let (_closed, epoll) = {
        let driver = this.lock();
        let closed = ClosedOnExit(driver.engine.shared().clone());
        match register_with_runtime(&driver.poll) {
            Ok(fd) => (closed, fd),
            Err(e) => {
                tracing::error!("cannot register the driver with the runtime: {e}");
                return;
            }
        }
    };
    let mut stop = StopOnExit {
        driver: this.clone(),
        shut_down: false,
    };
    let handoff = this.handoff.clone();
    let mut busy_turns = 0u32;
    loop {
        // The lock is held for a turn and a look at the sockets, never across an await.
        let sleep = {
            let mut guard = this.lock();
            let driver = &mut *guard;
            if driver.stopping || !driver.turn() {
                break;
            }
            if driver.has_queued_work() {
                // Busy: let the runtime's other tasks (the Raft side among them) run now and
                // then, as a task that never awaited would starve them.
                busy_turns += 1;
                None
            } else if handoff.prepare_sleep() {
                // No look for events before sleeping (an `epoll_wait` that nearly always
                // finds none): events that came during the turn have already made the epoll
                // descriptor readable for the runtime (its readiness is cleared before each
                // look, below), so the wait ends at once. The runtime's own `epoll_wait` is
                // the only one per wake.
                busy_turns = 0;
                add(&driver.engine.metrics().reactor_sleeps, 1);
                let timeout = driver.next_timeout();
                driver.sleep_until = timeout.map(|t| driver.now + t);
                Some(timeout)
            } else {
                None
            }
        };
        match sleep {
            Some(timeout) => {
                let woken = async {
                    tokio::select! {
                        ready = epoll.readable() => {
                            if let Ok(mut ready) = ready {
                                ready.clear_ready();
                            }
                        }
                        _ = ring.notified() => {}
                    }
                };
                match timeout {
                    Some(timeout) => {
                        let _ = tokio::time::timeout(timeout, woken).await;
                    }
                    None => woken.await,
                }
                handoff.woke();
            }
            None if busy_turns >= BUSY_TURNS_BEFORE_YIELD => {
                busy_turns = 0;
                tokio::task::yield_now().await;
            }
            None => {}
        }
        let mut guard = this.lock();
        let driver = &mut *guard;
        driver.sleep_until = None;
        if driver.stopping {
            break;
        }
        add(&driver.engine.metrics().system_calls, 1);
        let polled = driver.poll.poll(&mut driver.events, Some(Duration::ZERO));
        driver.now = Instant::now();
        if !driver.dispatch(polled) {
            break;
        }
    }
    stop.shut_down();
}

/// A duplicate of the driver's epoll descriptor, registered with the runtime's I/O driver:
/// readable whenever `poll` has events for the driver (a socket or the waker).
///
/// Not for speed: tokio offers no safe way to register a descriptor. Miri cannot run it
/// (epoll); `tests/bind_on.rs` exercises it.
#[allow(unsafe_code)]
fn register_with_runtime(
    poll: &mio::Poll,
) -> io::Result<tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>> {
    use std::os::fd::{AsRawFd, BorrowedFd};
    // SAFETY: `poll` owns this descriptor and keeps it open while it exists, which covers this
    // borrow (it ends with the statement, once the duplicate is made).
    let epoll = unsafe { BorrowedFd::borrow_raw(poll.as_raw_fd()) }.try_clone_to_owned()?;
    // SAFETY: the `AsyncFd` owns the duplicate (an `OwnedFd`), so the descriptor stays open and
    // the same for the `AsyncFd`'s whole life, as `register_with_interest` requires.
    unsafe {
        tokio::io::unix::AsyncFd::register_with_interest(epoll, tokio::io::Interest::READABLE)
    }
    .map_err(|e| e.into_parts().1)
}
