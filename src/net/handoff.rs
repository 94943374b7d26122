//! The only code shared between the reactor thread and everyone else: the submission queue
//! (callers → reactor), the completion queue (Raft's answers → reactor), and the waker that is
//! rung only when the reactor is asleep.
//!
//! Waking a sleeping thread on the other core costs about 18 µs of CPU and 25 µs of latency on
//! these machines (docs: perf-anchors.md), more than a whole RPC, so the reactor announces when it
//! is about to sleep, and producers ring the waker only then. While it runs, it drains both
//! queues every turn without being told.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering, fence};
use std::time::Instant;

use crossbeam_queue::SegQueue;

use super::snapshot_out::SnapshotFeed;
use crate::error::Error;
use crate::metrics::{RpcKind, TransportMetrics, add};
pub(crate) use crate::transport::call::AnyResolver;
use crate::transport::pipeline::PipelineShared;
use crate::transport::rpc::ResponseSink;
use crate::wire::*;

/// A request/response call for the reactor to send.
pub(crate) struct OutboundCall {
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) lane: Lane,
    pub(crate) request: Request,
    pub(crate) resolver: AnyResolver,
    pub(crate) deadline: Option<Instant>,
    pub(crate) kind: RpcKind,
}

/// A snapshot transfer for the reactor to run; its body arrives through `feed`.
pub(crate) struct OutboundSnapshot {
    pub(crate) id: u64,
    pub(crate) addr: std::net::SocketAddr,
    pub(crate) request: InstallSnapshotRequest,
    pub(crate) resolver: AnyResolver,
    pub(crate) deadline: Option<Instant>,
    pub(crate) feed: Arc<SnapshotFeed>,
}

/// Work for the reactor from callers.
pub(crate) enum Command {
    Call(OutboundCall),
    Snapshot(OutboundSnapshot),
    /// A snapshot's pump has new data (sent only when the reactor said it was waiting for it).
    SnapshotReady {
        id: u64,
    },
    OpenPipeline {
        id: u64,
        addr: std::net::SocketAddr,
        shared: Arc<PipelineShared>,
    },
    PipelineSend {
        id: u64,
        seq: u64,
        request: Arc<AppendEntriesRequest>,
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

/// Work for the reactor from the Raft side.
pub(crate) enum Completion {
    Response {
        conn: u64,
        request_id: u64,
        lane: Lane,
        result: Result<Response, String>,
        taken_at: Option<Instant>,
    },
    /// A snapshot reader caught up: read its connection again.
    ResumeRead { conn: u64 },
}

pub(crate) struct Handoff {
    pub(crate) commands: SegQueue<Command>,
    pub(crate) completions: SegQueue<Completion>,
    /// Set by the reactor just before it blocks in `poll`.
    sleeping: AtomicBool,
    /// Set once the transport is closing; submissions then fail at once.
    pub(crate) closed: AtomicBool,
    waker: mio::Waker,
    /// Set when the reactor runs as a task on a runtime: rung instead of `waker`, a task
    /// notification rather than an eventfd write.
    #[cfg(feature = "tokio")]
    pub(crate) task: std::sync::OnceLock<Arc<tokio::sync::Notify>>,
    pub(crate) metrics: Arc<TransportMetrics>,
}

impl Handoff {
    pub(crate) fn new(waker: mio::Waker, metrics: Arc<TransportMetrics>) -> Handoff {
        Handoff {
            commands: SegQueue::new(),
            completions: SegQueue::new(),
            sleeping: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            waker,
            #[cfg(feature = "tokio")]
            task: std::sync::OnceLock::new(),
            metrics,
        }
    }

    /// Queue a command for the reactor. If the transport is closed, the command fails with
    /// [`Error::Shutdown`] instead.
    pub(crate) fn submit(&self, command: Command) {
        if self.closed.load(Ordering::Acquire) {
            command.fail(Error::Shutdown);
            return;
        }
        self.commands.push(command);
        self.notify();
        // Closed while we pushed: the reactor may already have drained for the last time.
        // Failing what is left here guarantees no call waits forever.
        if self.closed.load(Ordering::SeqCst) {
            self.fail_pending_commands();
        }
    }

    pub(crate) fn fail_pending_commands(&self) {
        while let Some(c) = self.commands.pop() {
            c.fail(Error::Shutdown);
        }
    }

    pub(crate) fn complete(&self, completion: Completion) {
        self.completions.push(completion);
        self.notify();
    }

    /// Ring the waker if, and only if, the reactor is asleep (or about to be).
    pub(crate) fn notify(&self) {
        // Pairs with the fence in `prepare_sleep`: either the reactor sees our item when it
        // checks the queues, or we see its `sleeping` flag here.
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) && self.sleeping.swap(false, Ordering::AcqRel) {
            add(&self.metrics.reactor_wakes, 1);
            #[cfg(feature = "tokio")]
            if let Some(task) = self.task.get() {
                task.notify_one();
                return;
            }
            if let Err(e) = self.waker.wake() {
                log::error!("raftnet: waking the reactor failed: {e}");
            }
        }
    }

    /// Called by the reactor before it blocks: returns `false` (do not block) if work arrived.
    pub(crate) fn prepare_sleep(&self) -> bool {
        self.sleeping.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if !self.commands.is_empty() || !self.completions.is_empty() {
            self.sleeping.store(false, Ordering::Relaxed);
            return false;
        }
        true
    }

    pub(crate) fn woke(&self) {
        self.sleeping.store(false, Ordering::Relaxed);
    }
}

/// A responder's answer goes back to the reactor through the completion queue.
pub(crate) struct HandoffSink(pub(crate) Arc<Handoff>);

impl ResponseSink for HandoffSink {
    fn respond(
        &self,
        conn: u64,
        request_id: u64,
        lane: Lane,
        result: Result<Response, String>,
        taken_at: Option<Instant>,
    ) {
        self.0.complete(Completion::Response {
            conn,
            request_id,
            lane,
            result,
            taken_at,
        });
    }
}
