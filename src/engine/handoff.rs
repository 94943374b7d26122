//! The only code shared between the engine's thread and everyone else: the submission queue
//! (callers → engine), the completion queue (Raft's answers → engine), and the [`Wake`] that is
//! rung only when the engine's driver is asleep. Answers given on the engine's own thread while
//! it serves a read (by a `Service` or the heartbeat handler) skip the completion queue: they are
//! collected for the engine to write right after that read ([`answering_inline`]).
//!
//! Waking a sleeping thread on another core costs about 18 µs of CPU and 25 µs of latency on a
//! 2-vCPU VM (BENCHMARKS.md, "Where raftnet loses"), more than a whole RPC, so the driver
//! announces when it is about to sleep, and producers ring only then. While it runs, it drains
//! both queues every turn without being told.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering, fence};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use crossbeam_queue::SegQueue;

use super::feed::SnapshotFeed;
use super::key::ConnKey;
use crate::error::Error;
use crate::message::*;
use crate::metrics::{RpcType, TransportMetrics, add};
use crate::transport::ServerId;
pub(crate) use crate::transport::call::AnyResolver;
use crate::transport::pipeline::{PipelineShared, PipelinedRequest};
use crate::transport::rpc::{Answer, AnswerRoute, ResponseSink};
use crate::wire::*;

/// How a driver is woken from its sleep: an eventfd write for the mio thread, a task
/// notification on a runtime, a channel message for the blocking driver.
pub(crate) trait Wake: Send + Sync {
    /// Wake the driver (called at most once per sleep).
    fn wake(&self) -> io::Result<()>;
}

/// A request/response call for the engine to send.
pub(crate) struct OutboundCall {
    pub(crate) addr: SocketAddr,
    /// The server the call is for, when the dial must check who answers (TLS): a connection
    /// made for one server never carries another's calls.
    pub(crate) server: Option<ServerId>,
    pub(crate) lane: Lane,
    pub(crate) request: Request,
    pub(crate) resolver: AnyResolver,
    pub(crate) deadline: Option<Instant>,
    pub(crate) kind: RpcType,
}

/// A snapshot transfer for the engine to run; its body arrives through `feed`.
pub(crate) struct OutboundSnapshot {
    pub(crate) id: u64,
    pub(crate) addr: SocketAddr,
    /// As [`OutboundCall::server`].
    pub(crate) server: Option<ServerId>,
    pub(crate) request: InstallSnapshotRequest,
    pub(crate) resolver: AnyResolver,
    pub(crate) deadline: Option<Instant>,
    pub(crate) feed: Arc<SnapshotFeed>,
}

/// Work for the engine from callers.
///
/// A call and a snapshot are boxed: their requests (200-odd bytes) made every command over 300
/// bytes, and the submission queue moves each in and out and zeroes blocks of 31 slots as it
/// grows. Boxed, a call costs an allocation and saves more (callgrind, vote-seq: about 500
/// instructions fewer per call).
pub(crate) enum Command {
    Call(Box<OutboundCall>),
    Snapshot(Box<OutboundSnapshot>),
    /// A snapshot's pump has new data (sent only when the engine said it was waiting for it).
    SnapshotReady {
        id: u64,
    },
    OpenPipeline {
        id: u64,
        addr: SocketAddr,
        /// As [`OutboundCall::server`].
        server: Option<ServerId>,
        shared: Arc<PipelineShared>,
    },
    /// Send pipelined request number `seq` (its future waits in the pipeline's queue).
    PipelineSend {
        id: u64,
        seq: u64,
        request: PipelinedRequest,
    },
    /// Send several pipelined requests, in order (see `PipelineSend`).
    PipelineSendBatch {
        id: u64,
        batch: Vec<(u64, PipelinedRequest)>,
    },
    ClosePipeline {
        id: u64,
    },
    CloseStreams,
    Shutdown,
}

impl Command {
    /// The transport is gone: fail whatever this command was waiting to do.
    pub(crate) fn fail(self, e: Error) {
        match self {
            Command::Call(c) => {
                c.resolver.fail(e);
            }
            Command::Snapshot(s) => {
                s.feed.cancel();
                s.resolver.fail(e);
            }
            Command::OpenPipeline { shared, .. } => shared.fail(e),
            _ => {}
        }
    }
}

/// Work for the engine from the Raft side.
pub(crate) enum Completion {
    Response {
        conn: ConnKey,
        route: AnswerRoute,
        result: Result<Response, String>,
        taken_at: Option<Instant>,
    },
    /// Answers given together ([`Answers`](crate::Answers)), in order.
    Responses(Vec<Answer>),
    /// A snapshot reader caught up: read its connection again.
    ResumeRead { conn: ConnKey },
}

pub(crate) struct Handoff {
    pub(crate) commands: SegQueue<Command>,
    pub(crate) completions: SegQueue<Completion>,
    /// Set by the driver just before it sleeps.
    sleeping: AtomicBool,
    /// Set once the transport is closing; submissions then fail at once.
    closed: AtomicBool,
    waker: Box<dyn Wake>,
    metrics: Arc<TransportMetrics>,
    /// The driver, when answers may be written by the thread that gives them while the
    /// driver thread sleeps (see [`Lead`]). Weak: the driver holds this handoff.
    lead: OnceLock<Weak<dyn Lead>>,
    /// Threads blocked on an answer that found the driver thread running the engine and want
    /// to run it themselves: a driver thread that is only looking for events (its spin) goes
    /// to sleep at once so that they can (`driver/thread.rs`).
    leaders_waiting: AtomicUsize,
}

impl Handoff {
    pub(crate) fn new(waker: Box<dyn Wake>, metrics: Arc<TransportMetrics>) -> Handoff {
        Handoff {
            commands: SegQueue::new(),
            completions: SegQueue::new(),
            sleeping: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            waker,
            metrics,
            lead: OnceLock::new(),
            leaders_waiting: AtomicUsize::new(0),
        }
    }

    /// A blocked thread starts (`true`) or stops (`false`) waiting to run the engine.
    pub(crate) fn leader_waiting(&self, waiting: bool) {
        if waiting {
            self.leaders_waiting.fetch_add(1, Ordering::Relaxed);
        } else {
            self.leaders_waiting.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Whether a blocked thread waits to run the engine (see `leader_waiting`).
    pub(crate) fn leaders_waiting(&self) -> bool {
        self.leaders_waiting.load(Ordering::Relaxed) > 0
    }

    /// Let answers be carried out by `lead` on the answering thread (see [`Lead::complete`]).
    pub(crate) fn set_lead(&self, lead: Weak<dyn Lead>) {
        let _ = self.lead.set(lead);
    }

    /// Hand the engine an answer: through `lead` where there is one (written from this thread
    /// if the driver thread sleeps), else queued for the driver.
    fn complete_here(&self, completion: Completion) {
        match self.lead.get().and_then(Weak::upgrade) {
            Some(lead) => lead.complete(completion),
            None => self.complete(completion),
        }
    }

    /// Queue a command for the engine. If the transport is closed, the command fails with
    /// [`Error::Shutdown`] instead.
    pub(crate) fn submit(&self, command: Command) {
        self.submit_then(command, Handoff::notify);
    }

    /// Queue a command for the engine without ringing anyone: for a thread that runs the
    /// engine itself right after (see [`Lead`]).
    pub(crate) fn submit_quietly(&self, command: Command) {
        self.submit_then(command, |_| {});
    }

    fn submit_then(&self, command: Command, announce: impl FnOnce(&Handoff)) {
        if self.is_closed() {
            command.fail(Error::Shutdown);
            return;
        }
        self.commands.push(command);
        announce(self);
        // Closed while we pushed: the engine may already have drained for the last time.
        // Failing what is left here guarantees no call waits forever.
        if self.closed.load(Ordering::SeqCst) {
            self.fail_pending_commands();
        }
    }

    /// Ask the engine to shut down. The command goes in even after [`close`](Self::close), so
    /// an engine that is still running always sees it.
    pub(crate) fn submit_shutdown(&self) {
        self.commands.push(Command::Shutdown);
        self.notify();
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// No more submissions: from now on they fail at once. What is queued is failed too.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        self.fail_pending_commands();
    }

    fn fail_pending_commands(&self) {
        while let Some(c) = self.commands.pop() {
            c.fail(Error::Shutdown);
        }
    }

    pub(crate) fn complete(&self, completion: Completion) {
        self.completions.push(completion);
        self.notify();
    }

    /// Queue an answer for the engine without ringing anyone: for a thread that runs the
    /// engine itself right after (see [`Lead`]).
    pub(crate) fn complete_quietly(&self, completion: Completion) {
        self.completions.push(completion);
    }

    /// Whether commands or completions wait.
    pub(crate) fn has_work(&self) -> bool {
        !self.commands.is_empty() || !self.completions.is_empty()
    }

    /// Ring the waker if, and only if, the driver is asleep (or about to be).
    pub(crate) fn notify(&self) {
        // Pairs with the fence in `prepare_sleep`: either the driver sees our item when it
        // checks the queues, or we see its `sleeping` flag here.
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel) {
            add(&self.metrics.reactor_wakes, 1);
            if let Err(e) = self.waker.wake() {
                tracing::error!("waking the driver failed: {e}");
            }
        }
    }

    /// Called by the driver before it sleeps: returns `false` (do not sleep) if work arrived.
    pub(crate) fn prepare_sleep(&self) -> bool {
        self.sleeping.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.has_work() {
            self.sleeping.store(false, Ordering::Relaxed);
            return false;
        }
        true
    }

    pub(crate) fn woke(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
    }

    /// Called by a thread that ran the engine in place of a sleeping driver thread (see
    /// [`Lead`]), as it stops: the driver thread still sleeps, so producers must ring again,
    /// and work that arrived meanwhile rings now.
    pub(crate) fn sleep_again(&self) {
        self.sleeping.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if self.has_work() {
            self.notify();
        }
    }

    /// Ring the waker whether or not the driver announced a sleep (a leader handing back work
    /// the sleeping driver thread must do: a timer it does not know of, a read to continue).
    pub(crate) fn wake_driver(&self) {
        add(&self.metrics.reactor_wakes, 1);
        if let Err(e) = self.waker.wake() {
            tracing::error!("waking the driver failed: {e}");
        }
    }
}

/// A driver that a caller's thread may run in place of the driver's own thread while that one
/// sleeps (leader/follower: one thread runs the engine at a time, so it stays single-threaded in
/// effect). A caller about to block on a call then sends its request and waits for the answer
/// in `epoll_wait` itself, so a round trip wakes the caller once (when its answer arrives)
/// instead of waking the driver thread for the request, again for the answer, and then the
/// caller (BENCHMARKS.md, "Leader/follower"). Implemented by the mio driver on a thread of its
/// own (`driver::thread`), and as a runtime's task (`driver::runtime`: a call or an answer is
/// written by whoever gives it while the task waits; waiting for events stays the task's).
pub(crate) trait Lead: Send + Sync {
    /// Queue `command`; if nobody runs the engine now, carry it out on this thread (its frame
    /// written from here) instead of waking the driver thread for it.
    fn submit(&self, command: Command);

    /// The same for an answer from the Raft side.
    fn complete(&self, completion: Completion);

    /// Run the engine on this thread until `done` returns `true` or `deadline` passes, if
    /// nobody else runs it now. `None` if somebody does (the caller then waits as usual);
    /// otherwise `done`'s last answer.
    fn run_until(&self, deadline: Option<Instant>, done: &mut dyn FnMut() -> bool) -> Option<bool>;
}

thread_local! {
    /// While an engine serves a read on this thread: its handoff (by address) and the answers
    /// its handlers gave right there, which the engine writes after the read instead of taking
    /// them through the completion queue (a queue push and pop, and a turn later, per answer).
    static INLINE: RefCell<Inline> = const {
        RefCell::new(Inline {
            handoff: std::ptr::null(),
            answers: Vec::new(),
        })
    };
}

struct Inline {
    handoff: *const Handoff,
    answers: Vec<Answer>,
}

/// Run `serve` (an engine serving frames) with answers to `handoff`'s requests given on this
/// thread meanwhile collected into `answers` (which lends its allocation) rather than queued.
/// Also marks the thread as the transport's own for the handlers `serve` runs (see
/// `wait::on_transport_thread`).
pub(crate) fn answering_inline<R>(
    handoff: &Handoff,
    answers: &mut Vec<Answer>,
    serve: impl FnOnce() -> R,
) -> R {
    /// Puts the answers back, and what was there before (an engine serving inside another's
    /// handler), however `serve` ends.
    struct Restore<'a> {
        answers: &'a mut Vec<Answer>,
        outer: Option<Inline>,
    }
    impl Drop for Restore<'_> {
        fn drop(&mut self) {
            if let Some(outer) = self.outer.take() {
                INLINE.with(|inline| {
                    let mut inline = inline.borrow_mut();
                    *self.answers = std::mem::take(&mut inline.answers);
                    *inline = outer;
                });
            }
        }
    }
    let outer = INLINE.with(|inline| {
        std::mem::replace(
            &mut *inline.borrow_mut(),
            Inline {
                handoff,
                answers: std::mem::take(answers),
            },
        )
    });
    let _restore = Restore {
        answers,
        outer: Some(outer),
    };
    crate::transport::wait::on_transport_thread(serve)
}

/// A responder's answer goes back to the engine through the completion queue, or, given on
/// the engine's thread while it serves (see [`answering_inline`]), straight to the engine.
pub(crate) struct HandoffSink(pub(crate) Arc<Handoff>);

impl HandoffSink {
    /// Whether answers to this handoff given on this thread are collected inline now (an
    /// engine of its transport is serving on this thread: [`answering_inline`]). False during
    /// the thread's teardown, when the slot may be gone: the answer is then queued.
    fn answering_inline(&self) -> bool {
        let ours = Arc::as_ptr(&self.0);
        INLINE
            .try_with(|inline| inline.try_borrow_mut().is_ok_and(|i| i.handoff == ours))
            .unwrap_or(false)
    }
}

impl ResponseSink for HandoffSink {
    fn respond(
        &self,
        route: AnswerRoute,
        result: Result<Response, String>,
        taken_at: Option<Instant>,
    ) {
        // Checked first, then pushed in place: an `Answer` built beforehand and handed around
        // as an `Option` was moved three times (callgrind, heartbeat-pipelined).
        if self.answering_inline() {
            INLINE.with(|inline| {
                inline.borrow_mut().answers.push(Answer {
                    route,
                    result,
                    taken_at,
                })
            });
        } else {
            self.0.complete_here(Completion::Response {
                conn: ConnKey::from_raw(route.conn),
                route,
                result,
                taken_at,
            });
        }
    }

    fn respond_all(&self, answers: &mut Vec<Answer>) {
        // The batch's vector goes along (one allocation per batch, for the next one).
        self.0
            .complete_here(Completion::Responses(std::mem::take(answers)));
    }
}
