//! The mio driver on a thread of its own ([`Placement::Thread`](super::Placement::Thread)), and
//! callers that run it in that thread's place while it sleeps (leader/follower).
//!
//! A sequential round trip through a driver thread costs up to three wake-ups on the calling
//! side: the driver for the request, the driver again for the answer, then the caller. Here a
//! caller that finds the driver idle does the driver's work itself: it writes its request from
//! its own thread ([`Lead::submit`]) and, when it blocks on the answer, waits in `epoll_wait`
//! itself and runs every turn until its answer is in ([`Lead::run_until`]). A pipeline's
//! sender does the same with its batches and its blocking `recv`s (one thread then writes the
//! requests and reads the answers, as a task of a tokio client would). Before it sleeps
//! there it looks for events for as long as the recent round trips say the answer is due (a
//! budget of its own, `spin.rs`; the driver thread's learns from its own waits), so the
//! answer usually comes while it looks, and then nobody sleeps; if it does sleep,
//! the answer wakes the caller and nobody else. Whoever holds the driver's lock runs the
//! engine, so the engine stays single-threaded in effect; a caller only takes the lock when it
//! is free, never blocks on it, and falls back to waiting as before. The lock is free when the
//! thread sleeps, and the thread lets it go when a blocked caller asks while it is only
//! looking for events (its spin): the caller says it waits (`Handoff::leader_waiting`), the
//! thread goes to sleep at its next look, and the caller takes the driver (or, after
//! [`STEP_ASIDE`], waits as a follower). Without that, calls coming back to back kept the
//! thread looking between them and the callers handing every call over: on one CPU three
//! threads took turns yielding to each other.
//!
//! Two pollers make that work without a wake-up at each change of hands. The inner one (mio's
//! `Poll`, in [`MioDriver`]) holds every socket and the waker. The driver thread sleeps in an
//! outer one that holds only the inner one's descriptor (an epoll set is itself pollable): any
//! event of the inner set wakes it. A leader detaches the inner set from the outer one while it
//! waits in the inner one itself (the outer one then asks it only for priority data, which an
//! epoll set never has), so the events it waits for wake only the leader (threads in one
//! `epoll_wait` are woken one per event, and the driver thread would be first in line); as it
//! leaves it asks for readable again, and events that arrived meanwhile wake the thread at
//! once. Two `epoll_ctl(EPOLL_CTL_MOD)` calls per leadership, against a cross-core wake-up
//! (about 18 µs of CPU and 25 µs of latency on these machines) per hand-over.

use std::cell::Cell;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use tracing::Span;

use super::mio::{MioDriver, Waited, Waiter};
use crate::engine::ClosedOnExit;
use crate::engine::handoff::{Command, Completion, Handoff, Lead};
use crate::metrics::add;

/// The inner poller's token in the outer one.
const INNER: Token = Token(0);

/// How long a caller blocked on an answer waits for a driver thread that is only looking for
/// events to step aside (it checks between two looks: a few microseconds), before waiting for
/// its answer as a follower.
const STEP_ASIDE: Duration = Duration::from_micros(20);

thread_local! {
    /// Set while this thread runs a transport's engine in its driver thread's place: closing a
    /// transport from here must not wait for that thread, which may be waiting for this one.
    static LEADING: Cell<bool> = const { Cell::new(false) };
}

/// Whether this thread is running a transport's driver as a leader right now.
pub(crate) fn leading() -> bool {
    LEADING.with(Cell::get)
}

/// Mark this thread as leading a driver (or no longer), for [`leading`].
pub(super) fn set_leading(leading: bool) {
    LEADING.with(|l| l.set(leading));
}

/// A mio driver that its own thread runs, and callers may run in its place.
pub(crate) struct ThreadDriver {
    /// The driver, `None` once its thread has shut it down. Whoever holds this lock runs it.
    driver: Mutex<Option<MioDriver>>,
    /// The outer poller's registry, in which the inner poller is registered while the driver
    /// thread is the one its events should wake.
    outer: Registry,
    /// The inner poller's descriptor.
    inner: RawFd,
    handoff: Arc<Handoff>,
    /// The transport's span, entered by a leader as by the driver thread.
    span: Span,
}

impl ThreadDriver {
    /// Wrap `driver`; returns the outer poller, for [`run`] on the driver's thread.
    pub(crate) fn new(driver: MioDriver, span: Span) -> io::Result<(Arc<ThreadDriver>, Poll)> {
        let outer = Poll::new()?;
        let inner = driver.poll.as_raw_fd();
        outer
            .registry()
            .register(&mut SourceFd(&inner), INNER, Interest::READABLE)?;
        let handoff = driver.engine.shared().handoff.clone();
        let this = ThreadDriver {
            driver: Mutex::new(Some(driver)),
            outer: outer.registry().try_clone()?,
            inner,
            handoff,
            span,
        };
        Ok((Arc::new(this), outer))
    }

    fn lock(&self) -> MutexGuard<'_, Option<MioDriver>> {
        // A leader that panicked inside a turn (a bug) left the engine in an unknown state: the
        // driver thread sees `stopping` set by `Leadership`'s drop and shuts down.
        self.driver.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Take the driver if nobody runs it (its thread sleeps) and it is not stopping.
    fn try_take(&self) -> Option<MutexGuard<'_, Option<MioDriver>>> {
        let guard = self.driver.try_lock().ok()?;
        guard.as_ref().is_some_and(|d| !d.stopping).then_some(guard)
    }

    /// The driver's thread holds the driver: ask it to step aside (it does as soon as it is
    /// only looking for events, `MioDriver::wait`), and look for [`STEP_ASIDE`] for the lock to
    /// come free or `done` to be true meanwhile. `Err(Some(true))` if `done` came first,
    /// `Err(None)` if the thread kept the driver (busy with work of its own): the caller then
    /// waits as usual.
    fn take_from_thread(
        &self,
        done: &mut dyn FnMut() -> bool,
    ) -> Result<MutexGuard<'_, Option<MioDriver>>, Option<bool>> {
        self.handoff.leader_waiting(true);
        let start = Instant::now();
        let taken = loop {
            if done() {
                break Err(Some(true));
            }
            if let Some(guard) = self.try_take() {
                break Ok(guard);
            }
            if start.elapsed() >= STEP_ASIDE {
                break Err(None);
            }
            std::thread::yield_now();
        };
        self.handoff.leader_waiting(false);
        taken
    }

    /// Let the inner set's events wake the driver thread again (an `EPOLL_CTL_MOD` back to
    /// readable: the kernel looks at the inner set then, so events that came meanwhile wake the
    /// thread at once).
    fn attach(&self) -> io::Result<()> {
        self.outer
            .reregister(&mut SourceFd(&self.inner), INNER, Interest::READABLE)
    }

    /// Keep the inner set's events from waking the driver thread while a leader waits in it.
    /// The inner set stays in the outer one, asking only for priority data, which an epoll
    /// descriptor never has: an `EPOLL_CTL_MOD` each way, where taking it out and putting it
    /// back would free and allocate the kernel's entry and, for an epoll set inside another,
    /// check the pair for loops on every return.
    fn detach(&self) -> io::Result<()> {
        self.outer
            .reregister(&mut SourceFd(&self.inner), INNER, Interest::PRIORITY)
    }

    /// Hand the driver back to its sleeping thread: wake it if it has work it would not see
    /// otherwise (a continued read or write, a timer due before it planned to wake).
    fn hand_back(&self, driver: &MioDriver) {
        if driver.needs_its_waiter() {
            self.handoff.wake_driver();
        }
    }
}

/// Marks the thread as leading, and makes sure a panic inside a turn stops the driver instead
/// of leaving it to a thread that would not know (or could not be woken: the inner set is
/// attached to the outer one again first, if the leader had detached it).
struct Leadership<'a> {
    driver: &'a mut MioDriver,
    owner: &'a ThreadDriver,
    /// The inner set is detached from the outer one (see [`Lead::run_until`]).
    detached: bool,
}

impl<'a> Leadership<'a> {
    fn start(driver: &'a mut MioDriver, owner: &'a ThreadDriver, detached: bool) -> Leadership<'a> {
        set_leading(true);
        Leadership {
            driver,
            owner,
            detached,
        }
    }
}

impl Drop for Leadership<'_> {
    fn drop(&mut self) {
        set_leading(false);
        if std::thread::panicking() {
            self.driver.stopping = true;
            if self.detached {
                let _ = self.owner.attach();
            }
            self.owner.handoff.wake_driver();
        }
    }
}

impl ThreadDriver {
    /// Give the engine `work` and carry it out here if nobody runs the engine (its thread
    /// sleeps): `queue` queues it without ringing anyone. Otherwise `hand_over` queues it for
    /// whoever runs the engine (ringing the thread if it is about to sleep).
    fn run_once<W>(&self, work: W, queue: fn(&Handoff, W), hand_over: fn(&Handoff, W)) {
        let Some(mut guard) = self.try_take() else {
            hand_over(&self.handoff, work);
            return;
        };
        queue(&self.handoff, work);
        let driver = guard.as_mut().expect("try_take returns a running driver");
        let _span = self.span.enter();
        let lead = Leadership::start(driver, self, false);
        add(&lead.driver.engine.metrics().led_turns, 1);
        // The sleeping flag stays as the driver thread left it: producers keep ringing it, and
        // it takes the driver lock after this turn.
        lead.driver.now = Instant::now();
        if !lead.driver.turn() {
            lead.driver.stopping = true;
        }
        self.hand_back(lead.driver);
    }
}

impl Lead for ThreadDriver {
    fn submit(&self, command: Command) {
        self.run_once(command, Handoff::submit_quietly, Handoff::submit);
    }

    fn complete(&self, completion: Completion) {
        self.run_once(completion, Handoff::complete_quietly, Handoff::complete);
    }

    fn run_until(&self, deadline: Option<Instant>, done: &mut dyn FnMut() -> bool) -> Option<bool> {
        let mut guard = match self.try_take() {
            Some(guard) => guard,
            None => match self.take_from_thread(done) {
                Ok(guard) => guard,
                Err(finished) => return finished,
            },
        };
        if let Err(e) = self.detach() {
            tracing::warn!("cannot run the driver from a caller: {e}");
            return None;
        }
        let driver = guard.as_mut().expect("try_take returns a running driver");
        let _span = self.span.enter();
        let mut lead = Leadership::start(driver, self, true);
        let driver = &mut *lead.driver;
        self.handoff.woke();
        driver.now = Instant::now();
        // The two `epoll_ctl` of this leadership: the detaching above and the attaching below.
        add(&driver.engine.metrics().system_calls, 2);
        let finished = loop {
            add(&driver.engine.metrics().led_turns, 1);
            if !driver.turn() {
                driver.stopping = true;
                break done();
            }
            if done() {
                break true;
            }
            let now = driver.now;
            if deadline.is_some_and(|d| d <= now) {
                break false;
            }
            // As the driver thread waits: look for as long as the answer is due (it then
            // usually comes while this thread looks, and neither side sleeps), then sleep, at
            // most until the deadline.
            let polled = match driver.wait(Waiter::Leader) {
                Waited::Polled(polled) => polled,
                Waited::Sleep(timeout) => {
                    let until_deadline = deadline.map(|d| d.saturating_duration_since(now));
                    let timeout = match (timeout, until_deadline) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                    add(&driver.engine.metrics().system_calls, 1);
                    let polled = driver.poll.poll(&mut driver.events, timeout);
                    self.handoff.woke();
                    driver.now = Instant::now();
                    polled
                }
            };
            if !driver.dispatch(polled) {
                driver.stopping = true;
                break done();
            }
        };
        // Attach the inner set first: events that came meanwhile then wake the thread.
        if let Err(e) = self.attach() {
            tracing::error!("cannot hand the driver back to its thread, stopping: {e}");
            driver.stopping = true;
        }
        self.handoff.sleep_again();
        self.hand_back(driver);
        lead.detached = false;
        Some(finished)
    }
}

/// Run the driver on its own thread until the transport shuts down; callers may run it
/// meanwhile (see the module's doc).
pub(crate) fn run(this: Arc<ThreadDriver>, mut outer: Poll) {
    let mut outer_events = Events::with_capacity(4);
    let mut guard = this.lock();
    // However the loop ends (even by a panic), callers must not be left waiting.
    let _closed = ClosedOnExit(
        guard
            .as_ref()
            .expect("a new driver")
            .engine
            .shared()
            .clone(),
    );
    loop {
        let driver = guard
            .as_mut()
            .expect("only this thread takes the driver out");
        if driver.stopping || !driver.turn() {
            break;
        }
        let polled = match driver.wait(Waiter::Thread) {
            Waited::Polled(polled) => polled,
            Waited::Sleep(timeout) => {
                driver.sleep_until = timeout.map(|t| driver.now + t);
                drop(guard);
                let slept = outer.poll(&mut outer_events, timeout);
                guard = this.lock();
                let driver = guard
                    .as_mut()
                    .expect("only this thread takes the driver out");
                add(&driver.engine.metrics().system_calls, 1);
                this.handoff.woke();
                driver.sleep_until = None;
                if let Err(e) = slept
                    && e.kind() != io::ErrorKind::Interrupted
                {
                    tracing::error!("poll failed, stopping the transport: {e}");
                    break;
                }
                if driver.stopping {
                    break;
                }
                driver.poll_now()
            }
        };
        let driver = guard
            .as_mut()
            .expect("only this thread takes the driver out");
        if !driver.dispatch(polled) {
            break;
        }
    }
    if let Some(mut driver) = guard.take() {
        driver.shutdown();
    }
}
