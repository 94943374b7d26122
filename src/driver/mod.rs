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
//!   as well as a readiness one.
//! - `uring/` (feature `uring`, Linux): io_uring completions on a thread of its own
//!   ([`Placement::Thread`] with [`Backend::Uring`]); [`choose_backend`] picks it or epoll.

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
mod spin;
pub(crate) mod stream;
mod thread;
#[cfg(feature = "tls")]
pub(crate) mod tls;
#[cfg(all(feature = "uring", target_os = "linux"))]
pub(crate) mod uring;

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
    /// heartbeat handler then runs on a worker of the runtime, so it must not block. With
    /// [`Backend::Uring`] named in the configuration, the io_uring driver runs on a thread of
    /// its own beside the runtime instead (it waits in `io_uring_enter`, not in the runtime).
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

/// What a [`Placement::Thread`] driver waits on: a setting
/// ([`Config::backend`](crate::Config::backend)), resolved when the transport binds.
/// [`NetTransport::backend`](crate::NetTransport::backend) says which one runs.
///
/// The environment variable `RAFTNET_BACKEND` (`epoll` or `uring`) decides for a transport
/// configured with `Auto` (the default): an operator's switch that needs no rebuild. A backend
/// named in the code is what that code asked for, and wins. Any other value of the variable
/// fails the bind with [`Error::Config`](crate::Error::Config).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Backend {
    /// epoll, for now, unless `RAFTNET_BACKEND` says `uring`. The io_uring driver measures
    /// 0.88-0.92x epoll on pipelined heartbeats, 0.7-0.8x on sequential round trips and
    /// 1.0-1.1x with a thousand connections calling at once: callers cannot run it in its
    /// thread's place as they run the epoll driver (see [`Placement::Thread`]), so a round trip
    /// has one more busy thread (BENCHMARKS.md, "io_uring: a spin that yields only while
    /// yielding gives the CPU away"). `Auto` will choose io_uring where it can run once it
    /// measures faster.
    #[default]
    Auto,
    /// epoll readiness through mio: what the other placements use too.
    Epoll,
    /// io_uring completions (feature `uring`, Linux 5.11 or newer), on a thread of the
    /// driver's own: with [`Placement::Thread`], and with `Placement::Runtime` too (the driver
    /// then runs beside the runtime, not as its task; its calls and answers work from the
    /// runtime's tasks as from any thread). Binding fails with [`Error::Start`] where io_uring
    /// cannot run, and with [`Placement::ThreadPerConnection`].
    Uring,
}

impl Backend {
    /// The backend named by `RAFTNET_BACKEND`, if set.
    fn from_env() -> Result<Option<Backend>> {
        match std::env::var("RAFTNET_BACKEND") {
            Ok(value) => Backend::parse(&value),
            Err(_) => Ok(None),
        }
    }

    /// A value of `RAFTNET_BACKEND`: `None` for the empty string.
    fn parse(value: &str) -> Result<Option<Backend>> {
        match value.trim().to_ascii_lowercase().as_str() {
            "" => Ok(None),
            "auto" => Ok(Some(Backend::Auto)),
            "epoll" => Ok(Some(Backend::Epoll)),
            "uring" | "io_uring" => Ok(Some(Backend::Uring)),
            _ => Err(Error::Config(format!(
                "RAFTNET_BACKEND={value:?}: expected auto, epoll or uring"
            ))),
        }
    }
}

/// The backend a transport placed at `placement` runs on, given the configured one (and, for
/// `Auto`, `RAFTNET_BACKEND`): never `Auto`. `None` for the thread-per-connection driver, which waits on
/// neither. Asking for io_uring where it cannot run is an error, never a quiet fallback.
pub(crate) fn choose_backend(
    placement: &Placement,
    configured: Backend,
) -> Result<Option<Backend>> {
    let requested = match configured {
        Backend::Auto => Backend::from_env()?.unwrap_or(Backend::Auto),
        named => named,
    };
    let uring_error = |why: String| Error::Start {
        what: "the io_uring driver",
        reason: Arc::new(std::io::Error::new(std::io::ErrorKind::Unsupported, why)),
    };
    if matches!(placement, Placement::ThreadPerConnection) {
        // Only code that named io_uring fails here; `RAFTNET_BACKEND=uring` is for the
        // transports that can run it.
        if configured == Backend::Uring {
            return Err(uring_error(format!(
                "io_uring runs with Placement::Thread or Placement::Runtime, not {placement:?}"
            )));
        }
        return Ok(None);
    }
    if !matches!(placement, Placement::Thread) {
        // On a runtime, io_uring runs on a thread of its own beside it, which only code that
        // named it asks for: `RAFTNET_BACKEND=uring` leaves the runtime's task to epoll.
        if configured != Backend::Uring {
            return Ok(Some(Backend::Epoll));
        }
    }
    match (requested, uring_unavailable()) {
        // See `Backend::Auto` for why it is epoll.
        (Backend::Epoll | Backend::Auto, _) => Ok(Some(Backend::Epoll)),
        (Backend::Uring, None) => Ok(Some(Backend::Uring)),
        (Backend::Uring, Some(why)) => Err(uring_error(why)),
    }
}

/// Why io_uring cannot run in this build or on this host, if it cannot.
fn uring_unavailable() -> Option<String> {
    #[cfg(all(feature = "uring", target_os = "linux"))]
    return uring::unavailable().map(str::to_owned);
    #[cfg(not(all(feature = "uring", target_os = "linux")))]
    return Some(if cfg!(target_os = "linux") {
        "raftnet was built without its `uring` feature".to_owned()
    } else {
        "io_uring exists only on Linux".to_owned()
    });
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
                // A caller running a turn in the task's place holds the driver the task
                // needs to finish.
                if self::thread::leading() {
                    return false;
                }
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
        // On a runtime too (`choose_backend` chose it only if the code named it): the io_uring
        // driver waits in `io_uring_enter` on a thread of its own, not as a task.
        #[cfg(all(feature = "uring", target_os = "linux"))]
        _ if config.backend == Backend::Uring => {
            let (ring, taskrun, wake_fd, waker) =
                uring::prepare().map_err(Error::start("the io_uring driver"))?;
            let shared = Shared::new(config, Box::new(waker));
            let engine = Engine::new(shared.clone(), system_clock).with_span(span.clone());
            let driver = uring::UringDriver::new(ring, taskrun, wake_fd, listener, engine)
                .map_err(Error::start("the io_uring driver"))?;
            let handle = spawn(name.into(), Box::new(move || driver.run()))?;
            // No leader/follower on io_uring yet: callers wait for its thread.
            Ok(Started {
                shared,
                handle,
                lead: None,
            })
        }
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
            let driver = runtime::TaskDriver::new(driver, span.clone());
            let lead: Arc<dyn Lead> = driver.clone();
            shared.handoff.set_lead(Arc::downgrade(&lead));
            shared.consumer.shared().set_lead(Arc::downgrade(&lead));
            let finished = Finished::default();
            let task = runtime::run_task(driver, ring, finished.clone());
            runtime.spawn(tracing::Instrument::instrument(task, span.clone()));
            Ok(Started {
                shared,
                handle: DriverHandle::Task(finished),
                lead: Some(lead),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raftnet_backend_values() {
        assert_eq!(Backend::parse("epoll").unwrap(), Some(Backend::Epoll));
        assert_eq!(Backend::parse(" URING\n").unwrap(), Some(Backend::Uring));
        assert_eq!(Backend::parse("io_uring").unwrap(), Some(Backend::Uring));
        assert_eq!(Backend::parse("auto").unwrap(), Some(Backend::Auto));
        assert_eq!(Backend::parse("").unwrap(), None);
        let error = Backend::parse("kqueue").unwrap_err();
        assert!(
            matches!(&error, Error::Config(m) if m.contains("\"kqueue\"")),
            "{error}"
        );
    }

    #[test]
    fn io_uring_only_on_a_thread_of_its_own() {
        let error = choose_backend(&Placement::ThreadPerConnection, Backend::Uring).unwrap_err();
        assert!(
            matches!(&error, Error::Start { what: "the io_uring driver", reason }
                if reason.to_string().contains("Placement::Thread")),
            "{error}"
        );
        // The blocking driver waits on neither; a backend named for it is not an error.
        assert_eq!(
            choose_backend(&Placement::ThreadPerConnection, Backend::Epoll).unwrap(),
            None
        );
        assert_eq!(
            choose_backend(&Placement::Thread, Backend::Epoll).unwrap(),
            Some(Backend::Epoll)
        );
        let auto = choose_backend(&Placement::Thread, Backend::Auto).unwrap();
        // (RAFTNET_BACKEND, if the environment sets it, decides for Auto.)
        if std::env::var_os("RAFTNET_BACKEND").is_none() {
            assert_eq!(auto, Some(Backend::Epoll));
        }
    }
}
