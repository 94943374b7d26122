//! Drivers: the code that owns a transport's sockets, threads and clock, and pumps its
//! [`Engine`](crate::engine::Engine). The engine holds every piece of protocol state and does no
//! IO; a driver does all the IO and no protocol. Where the driver runs is the user's choice,
//! a [`Placement`].
//!
//! What a driver must provide (as mio's `sys/mod.rs` lists what a selector backend provides):
//! 1. **A waker.** A [`Wake`](crate::engine::handoff::Wake) given to the handoff when the
//!    transport is built. The driver sleeps only after `Handoff::prepare_sleep` said it may,
//!    and calls `Handoff::woke` when it runs again; producers ring the waker only in between.
//! 2. **A clock.** `now`, read once per turn and passed to the engine's inputs, and a
//!    [`Clock`](crate::engine::Clock) function for the decode-time metric.
//! 3. **The handoff and the timers each turn.** `Engine::handle_handoff`, then
//!    `Engine::handle_timeout` once `Engine::poll_timeout` is due. `handle_handoff` returning
//!    `false` ends the run.
//! 4. **Actions, after every input.** Drain `Engine::poll_action` and carry each out: dial an
//!    address for a key (then `handle_connected` or `handle_connect_failed`), close a key's
//!    socket, read a key again, pause or resume accepting. A key's slot may be reused by the
//!    next connection the engine makes, so a `Close` must be carried out before anything new is
//!    inserted.
//! 5. **Accepting.** Accept on the listener; `Engine::handle_accepted` gives the new key, and
//!    `handle_accept_failed` starts the back-off.
//! 6. **Reading.** While `Engine::wants_read`, append bytes to `Engine::recv_buffer` (or pass
//!    them to `handle_bytes`) and call `handle_received`; report the end of the stream with
//!    `handle_eof` (after the bytes before it) or `handle_error`. Bound the bytes read per
//!    connection per turn, so one busy peer cannot starve the others.
//! 7. **Writing.** `Engine::take_dirty`, then write each key's `Engine::send_queue`, advance it
//!    past what was written, and report `handle_flushed`; call `handle_writable` when a socket
//!    that was full can take more. Bound the bytes written per connection per turn.
//! 8. **Spans.** Run in the transport's span (given to `start`) for the whole run, and handle a
//!    connection's IO in the connection's span (`in_conn_span!`), so that whatever that runs (a
//!    heartbeat handler among it) is recorded in it: once per connection handled in a turn,
//!    never per frame.
//! 9. **The end.** Hold a [`ClosedOnExit`](crate::engine::ClosedOnExit) for the whole run (so a
//!    panic or a dropped task still fails what waits), and call `Engine::shutdown`, then carry
//!    out its actions, when the run ends.
//!
//! The drivers:
//! - `mio.rs`: epoll readiness on a thread of its own ([`Placement::Thread`], with `thread.rs`:
//!   the thread, and callers blocked on a call running the driver while it sleeps), or, with
//!   `runtime.rs`, as a task on a tokio runtime ([`Placement::Runtime`]); both read and write
//!   through the [`Stream`](stream::Stream) seam, which `stream.rs` owns with the one place
//!   streams are made.
//! - `blocking.rs`: std::net blocking sockets and a thread per connection
//!   ([`Placement::ThreadPerConnection`]): the reference driver, kept to prove the engine's
//!   interface serves a completion-style driver (bytes arrive in buffers of the driver's own)
//!   as well as a readiness one. An io_uring driver joins here.

/// Evaluate `$body` in connection `$key`'s span (`Engine::enter_conn`, `Engine::exit_conn`):
/// with no subscriber recording connection spans, the test of a flag. `$body` must not leave
/// early (`return`, `continue`, `?`), or the span would stay entered. (A macro, not a function
/// taking a closure, so that `$body` may borrow the driver mutably between the two calls.)
macro_rules! in_conn_span {
    ($engine:expr, $key:expr, $body:expr) => {{
        let entered = $engine.enter_conn($key);
        let value = $body;
        if entered {
            $engine.exit_conn();
        }
        value
    }};
}

mod blocking;
pub(crate) mod mio;
#[cfg(feature = "tokio")]
mod runtime;
pub(crate) mod stream;
mod thread;
#[cfg(feature = "tls")]
mod tls;

use std::fmt;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use tracing::Span;

use crate::config::Config;
use crate::engine::handoff::Lead;
use crate::engine::{Engine, Shared};
use crate::error::{Error, Result};

/// Where a [`NetTransport`](crate::NetTransport)'s driver (the loop that owns its sockets) runs.
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum Placement {
    /// A thread of its own, sleeping in `epoll_wait` when idle (mio). The default, for Raft
    /// loops that are threads. While that thread sleeps, a thread that blocks on a
    /// [`Call`](crate::Call) runs the driver in its place until its answer comes (its request is
    /// written from it, and the answer wakes it and nobody else): a round trip then costs each
    /// side one wake-up instead of up to three. A [`Service`](crate::Service) or heartbeat
    /// handler may therefore run on such a calling thread.
    #[default]
    Thread,
    /// A task on this tokio runtime (feature `tokio`). For a Raft that lives on that runtime
    /// (openraft does): its calls, the driver and its serving task then hand work to each other
    /// as tasks of one runtime instead of waking a sleeping thread at every crossing. A
    /// heartbeat handler then runs on a worker of the runtime, so it must not block.
    #[cfg(feature = "tokio")]
    Runtime(tokio::runtime::Handle),
    /// Blocking std::net sockets, a thread per connection. Slow and thread-hungry: it exists to
    /// test the connection engine with a driver that is neither mio nor tokio, and as the
    /// reference a new driver is held against.
    ThreadPerConnection,
}

impl fmt::Debug for Placement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Placement::Thread => "Thread",
            #[cfg(feature = "tokio")]
            Placement::Runtime(_) => "Runtime",
            Placement::ThreadPerConnection => "ThreadPerConnection",
        })
    }
}

/// Set when a driver task is done, whether its loop ended or the runtime dropped it.
#[derive(Clone, Default)]
pub(crate) struct Finished(Arc<(Mutex<bool>, Condvar)>);

impl Finished {
    /// Block until the task is done.
    fn wait(&self) {
        let (done, changed) = &*self.0;
        let mut done = done.lock().unwrap_or_else(|e| e.into_inner());
        while !*done {
            done = changed.wait(done).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Signals when dropped (at the end of the task, or with the task when the runtime drops
    /// it).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    pub(crate) fn signal_on_drop(self) -> impl Drop {
        struct Signal(Finished);
        impl Drop for Signal {
            fn drop(&mut self) {
                let (done, changed) = &*(self.0).0;
                *done.lock().unwrap_or_else(|e| e.into_inner()) = true;
                changed.notify_all();
            }
        }
        Signal(self)
    }
}

/// How [`NetTransport::close`](crate::Transport::close) waits for the driver to finish.
pub(crate) enum DriverHandle {
    /// A thread of its own.
    Thread(JoinHandle<()>),
    /// A task on a runtime.
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    Task(Finished),
}

impl DriverHandle {
    /// Wait until the driver has stopped (it was told to). `false` if waiting here could
    /// deadlock (a heartbeat handler closing from the driver's own thread, a close from inside
    /// the runtime the driver is a task of): the driver then finishes the close on its own.
    pub(crate) fn join(self) -> bool {
        match self {
            DriverHandle::Thread(thread) => {
                // From the driver's thread, or a caller running the driver in its place (which
                // the driver thread may be waiting for).
                if std::thread::current().id() == thread.thread().id() || self::thread::leading() {
                    return false;
                }
                if thread.join().is_err() {
                    tracing::error!("the driver thread panicked");
                }
                true
            }
            DriverHandle::Task(finished) => {
                #[cfg(feature = "tokio")]
                if tokio::runtime::Handle::try_current().is_ok() {
                    // Waiting inside the runtime could wait for this very thread to run the
                    // task. The task finishes the close on its own when it ends.
                    return false;
                }
                finished.wait();
                true
            }
        }
    }
}

/// The clock drivers give the engine.
fn system_clock() -> Instant {
    Instant::now()
}

/// A started driver, as [`start`] returns it.
pub(crate) struct Started {
    /// The transport's state, shared with the driver.
    pub(crate) shared: Arc<Shared>,
    /// How to wait for the driver to stop.
    pub(crate) handle: DriverHandle,
    /// Where callers may run the driver in its thread's place (see [`Lead`]).
    pub(crate) lead: Option<Arc<dyn Lead>>,
}

/// Build the transport's shared state and engine around `listener` and start its driver where
/// `placement` says, running in `span` (the transport's; its connections' spans are children).
/// With the driver a [`Lead`] where callers may run it in its thread's place.
pub(crate) fn start(
    placement: Placement,
    listener: std::net::TcpListener,
    config: Config,
    name: &str,
    span: Span,
) -> Result<Started> {
    let spawn = |name: String, run: Box<dyn FnOnce() + Send>| {
        let span = span.clone();
        std::thread::Builder::new()
            .name(name)
            .spawn(move || span.in_scope(run))
            .map(DriverHandle::Thread)
            .map_err(Error::start("the driver thread"))
    };
    match placement {
        Placement::Thread => {
            let poll = ::mio::Poll::new().map_err(Error::start("the poller"))?;
            let waker = ::mio::Waker::new(poll.registry(), mio::WAKER)
                .map_err(Error::start("the poller's waker"))?;
            let shared = Shared::new(config, Box::new(waker));
            let engine = Engine::new(shared.clone(), system_clock).with_span(span.clone());
            let driver = mio::MioDriver::new(poll, listener, engine)
                .map_err(Error::start("polling the listener"))?;
            let (driver, outer) = thread::ThreadDriver::new(driver, span.clone())
                .map_err(Error::start("the outer poller"))?;
            let lead: Arc<dyn Lead> = driver.clone();
            shared.handoff.set_lead(Arc::downgrade(&lead));
            shared.consumer.shared().set_lead(Arc::downgrade(&lead));
            let handle = spawn(name.into(), Box::new(move || thread::run(driver, outer)))?;
            Ok(Started {
                shared,
                handle,
                lead: Some(lead),
            })
        }
        #[cfg(feature = "tokio")]
        Placement::Runtime(runtime) => {
            let poll = ::mio::Poll::new().map_err(Error::start("the poller"))?;
            let ring = Arc::new(tokio::sync::Notify::new());
            let shared = Shared::new(config, Box::new(runtime::NotifyWake(ring.clone())));
            let engine = Engine::new(shared.clone(), system_clock).with_span(span.clone());
            let driver = mio::MioDriver::new(poll, listener, engine)
                .map_err(Error::start("polling the listener"))?;
            let finished = Finished::default();
            let task = runtime::run_task(driver, ring, finished.clone());
            runtime.spawn(tracing::Instrument::instrument(task, span.clone()));
            Ok(Started {
                shared,
                handle: DriverHandle::Task(finished),
                lead: None,
            })
        }
        Placement::ThreadPerConnection => {
            #[cfg(feature = "tls")]
            if config.tls.is_some() {
                return Err(Error::Config(
                    "TLS runs on the mio driver (Placement::Thread or Placement::Runtime), \
                     not on Placement::ThreadPerConnection"
                        .into(),
                ));
            }
            let (driver, waker) = blocking::BlockingDriver::prepare(listener)
                .map_err(Error::start("the blocking listener"))?;
            let shared = Shared::new(config, Box::new(waker));
            let engine = Engine::new(shared.clone(), system_clock).with_span(span.clone());
            let handle = spawn(name.into(), Box::new(move || driver.run(engine)))?;
            Ok(Started {
                shared,
                handle,
                lead: None,
            })
        }
    }
}
