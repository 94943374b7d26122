//! The inbound side: RPCs handed to the Raft side, answered exactly once, and the consumer
//! queue they arrive through.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use crossbeam_queue::SegQueue;
use event_listener::Event;

use super::snapshot::SnapshotReader;
use super::wait::{self, Spin};
use crate::error::{Error, Result};
use crate::message::{MessageType, Request, Response};
use crate::wire::Lane;

/// Which request an answer is for, as the transport that received it knows it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AnswerRoute {
    /// The connection it arrived on (opaque here: the transport's connection key).
    pub(crate) conn: u64,
    /// Its id on that connection.
    pub(crate) request_id: u64,
    /// The lane it came on (the answer goes back on it).
    pub(crate) lane: Lane,
    /// Its frame body's length: what it counted against its connection's unanswered bytes.
    pub(crate) body_len: u32,
}

/// Where a [`Responder`] delivers its answer: the transport that received the request.
pub(crate) trait ResponseSink: Send + Sync {
    /// Deliver the answer to the request `route` names.
    fn respond(
        &self,
        route: AnswerRoute,
        result: std::result::Result<Response, String>,
        taken_at: Option<Instant>,
    );
}

enum Route {
    Sink {
        sink: Arc<dyn ResponseSink>,
        route: AnswerRoute,
    },
    Direct(Box<dyn FnOnce(std::result::Result<Response, String>) + Send>),
}

/// Answers one inbound RPC. Answering consumes it, so an RPC is answered at most once; dropping
/// it unanswered answers with an error, so the caller is never left waiting.
pub struct Responder {
    route: Option<Route>,
    request_kind: MessageType,
    taken_at: Option<Instant>,
}

/// The error text a caller sees when the Raft side drops an RPC without answering it.
pub const DROPPED_UNANSWERED: &str = "raftnet: rpc dropped without a response";

impl Responder {
    pub(crate) fn to_sink(
        sink: Arc<dyn ResponseSink>,
        route: AnswerRoute,
        request_kind: MessageType,
    ) -> Responder {
        Responder {
            route: Some(Route::Sink { sink, route }),
            request_kind,
            taken_at: None,
        }
    }

    pub(crate) fn direct(
        request_kind: MessageType,
        f: impl FnOnce(std::result::Result<Response, String>) + Send + 'static,
    ) -> Responder {
        Responder {
            route: Some(Route::Direct(Box::new(f))),
            request_kind,
            taken_at: None,
        }
    }

    /// Answer: `Ok(response)`, or `Err(text)`, which reaches the caller as
    /// [`Error::Remote(text)`](Error::Remote). A response of the wrong type (a vote response to
    /// an AppendEntries, say) is turned into an error for the caller.
    pub fn respond(mut self, result: std::result::Result<Response, String>) {
        self.send(result);
    }

    fn send(&mut self, result: std::result::Result<Response, String>) {
        let Some(route) = self.route.take() else {
            return;
        };
        let result = match result {
            Ok(response) => {
                let kind = response.message_type();
                if self.request_kind.response_type() == Some(kind) {
                    Ok(response)
                } else {
                    Err(format!(
                        "raftnet: a {:?} request was answered with a {kind:?}",
                        self.request_kind
                    ))
                }
            }
            Err(text) => Err(text),
        };
        match route {
            Route::Sink { sink, route } => sink.respond(route, result, self.taken_at),
            Route::Direct(f) => f(result),
        }
    }
}

impl Drop for Responder {
    fn drop(&mut self) {
        if self.route.is_some() {
            self.send(Err(DROPPED_UNANSWERED.to_string()));
        }
    }
}

impl fmt::Debug for Responder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Responder")
            .field("request_kind", &self.request_kind)
            .field("answered", &self.route.is_none())
            .finish()
    }
}

/// An inbound RPC for the Raft side to process.
///
/// Answer it with [`Rpc::respond`] (or through [`Rpc::responder`] after taking it apart).
/// An InstallSnapshot carries the snapshot's bytes in [`Rpc::snapshot`].
#[derive(Debug)]
pub struct Rpc {
    /// The request.
    pub request: Request,
    /// For InstallSnapshot only: the snapshot body, exactly `size` bytes.
    pub snapshot: Option<SnapshotReader>,
    /// Answers the request.
    pub responder: Responder,
    /// The address the request came from, where known.
    pub peer: Option<SocketAddr>,
    /// When the transport finished decoding the request (for the enqueue-time metric).
    pub(crate) decoded_at: Instant,
}

impl Rpc {
    pub(crate) fn new(
        request: Request,
        snapshot: Option<SnapshotReader>,
        responder: Responder,
        peer: Option<SocketAddr>,
        decoded_at: Instant,
    ) -> Rpc {
        Rpc {
            request,
            snapshot,
            responder,
            peer,
            decoded_at,
        }
    }

    /// Answer the request.
    pub fn respond(self, result: std::result::Result<Response, String>) {
        self.responder.respond(result)
    }

    /// Answer with a response.
    pub fn respond_ok(self, response: impl Into<Response>) {
        self.respond(Ok(response.into()))
    }

    /// Answer with an error text (the caller gets [`Error::Remote`]).
    pub fn respond_err(self, text: impl Into<String>) {
        self.respond(Err(text.into()))
    }
}

/// Counters the consumer queue keeps, read into [`Metrics`](crate::Metrics).
#[derive(Debug, Default)]
pub(crate) struct ConsumerStats {
    pub(crate) delivered: AtomicU64,
    pub(crate) wakes: AtomicU64,
}

pub(crate) struct ConsumerShared {
    queue: SegQueue<Rpc>,
    event: Event,
    closed: AtomicBool,
    pub(crate) stats: ConsumerStats,
    pub(crate) metrics: Option<Arc<crate::metrics::TransportMetrics>>,
}

/// Where inbound RPCs arrive (hashicorp's `Consumer()` channel). Cheap to clone; several
/// threads may take from it. Receiving blocks ([`recv`](Self::recv),
/// [`recv_deadline`](Self::recv_deadline)), polls ([`try_recv`](Self::try_recv)) or awaits
/// ([`recv_async`](Self::recv_async)), as an [`AppendPipeline`](crate::AppendPipeline)'s
/// completions do; the transport only wakes a receiver that is actually waiting.
#[derive(Clone)]
pub struct Consumer {
    shared: Arc<ConsumerShared>,
}

impl fmt::Debug for Consumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("queued", &self.len())
            .finish()
    }
}

impl Consumer {
    pub(crate) fn new(metrics: Option<Arc<crate::metrics::TransportMetrics>>) -> Consumer {
        Consumer {
            shared: Arc::new(ConsumerShared {
                queue: SegQueue::new(),
                event: Event::new(),
                closed: AtomicBool::new(false),
                stats: ConsumerStats::default(),
                metrics,
            }),
        }
    }

    pub(crate) fn shared(&self) -> &Arc<ConsumerShared> {
        &self.shared
    }

    fn take(&self) -> Option<Rpc> {
        let mut rpc = self.shared.queue.pop()?;
        let now = Instant::now();
        rpc.responder.taken_at = Some(now);
        if let Some(m) = &self.shared.metrics {
            let kind = crate::metrics::RpcType::of(&rpc.request) as usize;
            m.rpc_enqueue[kind].record(now.saturating_duration_since(rpc.decoded_at));
        }
        Some(rpc)
    }

    /// The next RPC if one is waiting, without blocking; `Ok(None)` if none is;
    /// `Err(Error::Shutdown)` once the transport is closed and nothing is left.
    pub fn try_recv(&self) -> Result<Option<Rpc>> {
        if let Some(rpc) = self.take() {
            return Ok(Some(rpc));
        }
        if self.shared.closed.load(Ordering::Acquire) {
            // Something may have been queued just before the close.
            return self.take().map(Some).ok_or(Error::Shutdown);
        }
        Ok(None)
    }

    /// Block the thread until an RPC arrives; `Err(Error::Shutdown)` once the transport is
    /// closed and nothing is left. Spins for a few microseconds before blocking, because under
    /// load the next RPC usually comes within that time.
    pub fn recv(&self) -> Result<Rpc> {
        wait::wait(&self.shared.event, Spin::BeforeParking, || {
            self.try_recv().transpose()
        })
    }

    /// Block the thread until an RPC arrives or `deadline` passes (`Ok(None)`);
    /// `Err(Error::Shutdown)` as [`recv`](Self::recv). Parks at once, without the spin of
    /// [`recv`](Self::recv) (as this bounded wait always has).
    ///
    /// # Examples
    ///
    /// ```
    /// use raftnet::{InmemTransport, Transport};
    /// use std::time::{Duration, Instant};
    ///
    /// let transport = InmemTransport::new("a");
    /// // Nobody sent anything.
    /// let next = transport.consumer().recv_deadline(Instant::now() + Duration::from_millis(10))?;
    /// assert!(next.is_none());
    /// # Ok::<(), raftnet::Error>(())
    /// ```
    pub fn recv_deadline(&self, deadline: Instant) -> Result<Option<Rpc>> {
        wait::wait_until(&self.shared.event, Spin::Never, Some(deadline), || {
            self.try_recv().transpose()
        })
        .transpose()
    }

    /// Wait for an RPC without blocking the thread (works under any executor): the async form
    /// of [`recv`](Self::recv).
    pub async fn recv_async(&self) -> Result<Rpc> {
        wait::wait_until_async(&self.shared.event, || self.try_recv().transpose()).await
    }

    /// RPCs waiting to be taken.
    pub fn len(&self) -> usize {
        self.shared.queue.len()
    }

    /// Whether no RPC is waiting.
    pub fn is_empty(&self) -> bool {
        self.shared.queue.is_empty()
    }
}

impl ConsumerShared {
    /// Queue an RPC and wake one waiting receiver, if any is waiting.
    pub(crate) fn push(&self, rpc: Rpc) {
        self.queue.push(rpc);
        self.stats.delivered.fetch_add(1, Ordering::Relaxed);
        if self.event.notify_additional(1) > 0 {
            self.stats.wakes.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// No more RPCs will come: wake every receiver so it sees the close.
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.event.notify(usize::MAX);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn every_receive_form_waits_then_reports_the_close() {
        let consumer = Consumer::new(None);
        let soon = Instant::now() + Duration::from_millis(10);
        assert!(matches!(consumer.recv_deadline(soon), Ok(None)));
        let shared = consumer.shared().clone();
        let closer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            shared.close();
        });
        let far = Instant::now() + Duration::from_secs(60);
        assert!(matches!(consumer.recv_deadline(far), Err(Error::Shutdown)));
        closer.join().unwrap();
        assert!(matches!(consumer.recv(), Err(Error::Shutdown)));
        let awaited = futures::executor::block_on(consumer.recv_async());
        assert!(matches!(awaited, Err(Error::Shutdown)));
    }
}
