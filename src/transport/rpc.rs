//! The inbound side: RPCs handed to the Raft side, answered exactly once, and the consumer
//! queue they arrive through.

use std::fmt;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Instant;

use crossbeam_queue::SegQueue;
use event_listener::Event;

use super::snapshot::SnapshotReader;
use super::wait::{self, Spin};
use crate::engine::handoff::Lead;
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
    /// Its kind, which labels the answer's metric (a heartbeat's answer is an AppendEntries
    /// response, but is timed as a heartbeat's).
    pub(crate) kind: crate::metrics::RpcType,
}

/// One answer on its way back: the request it is for, the answer, and when the Raft side took
/// the request (for the Raft-side time metric).
pub(crate) struct Answer {
    pub(crate) route: AnswerRoute,
    pub(crate) result: std::result::Result<Response, String>,
    pub(crate) taken_at: Option<Instant>,
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

    /// Deliver several answers (taking them out of `answers`), in order.
    fn respond_all(&self, answers: &mut Vec<Answer>) {
        for a in answers.drain(..) {
            self.respond(a.route, a.result, a.taken_at);
        }
    }
}

/// Delivers an answer straight to its caller (the in-memory transport).
type DirectAnswer = Box<dyn FnOnce(std::result::Result<Response, String>) + Send>;

enum Route {
    Sink {
        sink: Arc<dyn ResponseSink>,
        route: AnswerRoute,
    },
    Direct(DirectAnswer),
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
        let result = self.checked(result);
        match route {
            Route::Sink { sink, route } => sink.respond(route, result, self.taken_at),
            Route::Direct(f) => f(result),
        }
    }

    /// `result`, or an error for the caller if it answers another kind of request.
    fn checked(
        &self,
        result: std::result::Result<Response, String>,
    ) -> std::result::Result<Response, String> {
        match result {
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

/// Answers given together: each [`Responder`] [added](Answers::add) is answered when
/// [`send`](Answers::send) runs (or when the `Answers` is dropped), and the answers for one
/// transport reach it as one hand-off (one queue operation, at most one wake-up of its thread)
/// instead of one each. Answers keep the order they were added in.
///
/// For a Raft loop that takes RPCs in batches ([`Consumer::recv_batch`]); answering them one by
/// one with [`Rpc::respond`] is just as correct.
#[derive(Default)]
pub struct Answers {
    /// The transport the answers in `batch` go to.
    sink: Option<Arc<dyn ResponseSink>>,
    batch: Vec<Answer>,
    /// Answers for a transport without a queue to batch into (the in-memory one).
    direct: Vec<(DirectAnswer, std::result::Result<Response, String>)>,
}

impl fmt::Debug for Answers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Answers")
            .field("pending", &self.len())
            .finish()
    }
}

impl Answers {
    /// An empty batch.
    pub fn new() -> Answers {
        Answers::default()
    }

    /// Answer `responder`'s request with `result` when the batch is sent (as
    /// [`Responder::respond`] would at once). An answer for another transport than the ones
    /// before it sends those first.
    pub fn add(&mut self, mut responder: Responder, result: std::result::Result<Response, String>) {
        let Some(route) = responder.route.take() else {
            return;
        };
        let result = responder.checked(result);
        match route {
            Route::Sink { sink, route } => {
                if self.sink.as_ref().is_some_and(|s| !Arc::ptr_eq(s, &sink)) {
                    self.send();
                }
                self.sink = Some(sink);
                self.batch.push(Answer {
                    route,
                    result,
                    taken_at: responder.taken_at,
                });
            }
            Route::Direct(f) => self.direct.push((f, result)),
        }
    }

    /// Send every answer added so far.
    pub fn send(&mut self) {
        if let Some(sink) = self.sink.take()
            && !self.batch.is_empty()
        {
            sink.respond_all(&mut self.batch);
        }
        for (f, result) in self.direct.drain(..) {
            f(result);
        }
    }

    /// How many answers wait to be sent.
    pub fn len(&self) -> usize {
        self.batch.len() + self.direct.len()
    }

    /// Whether no answer waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Answers {
    fn drop(&mut self) {
        self.send();
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
    /// The transport's driver, when a receiver about to block may run it while the driver
    /// thread sleeps (see [`Lead`]): the next RPC then wakes the receiver and nobody else.
    lead: OnceLock<Weak<dyn Lead>>,
}

impl ConsumerShared {
    /// Let blocking receivers run `lead` (see the field).
    pub(crate) fn set_lead(&self, lead: Weak<dyn Lead>) {
        let _ = self.lead.set(lead);
    }
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
                lead: OnceLock::new(),
            }),
        }
    }

    pub(crate) fn shared(&self) -> &Arc<ConsumerShared> {
        &self.shared
    }

    fn take(&self) -> Option<Rpc> {
        let mut rpc = self.shared.queue.pop()?;
        self.stamp_taken(std::slice::from_mut(&mut rpc), Instant::now());
        Some(rpc)
    }

    /// Take up to `max` waiting RPCs into `batch` (after what it holds): how many. One clock
    /// read for all of them.
    fn take_batch(&self, batch: &mut Vec<Rpc>, max: usize) -> usize {
        let Some(first) = self.shared.queue.pop() else {
            return 0;
        };
        let now = Instant::now();
        let start = batch.len();
        batch.push(first);
        while batch.len() - start < max {
            match self.shared.queue.pop() {
                Some(rpc) => batch.push(rpc),
                None => break,
            }
        }
        self.stamp_taken(&mut batch[start..], now);
        batch.len() - start
    }

    /// Stamp RPCs taken at `now` (each answer's time in the Raft side is measured from here)
    /// and record their enqueue metric. The RPCs of one read share their decoding time, so each
    /// run of them of one kind is one enqueue sample counted that many times: one subtraction
    /// and one histogram update per run, not per RPC.
    fn stamp_taken(&self, batch: &mut [Rpc], now: Instant) {
        for rpc in batch.iter_mut() {
            rpc.responder.taken_at = Some(now);
        }
        let Some(m) = &self.shared.metrics else {
            return;
        };
        let run_of = |rpc: &Rpc| (crate::metrics::RpcType::of(&rpc.request), rpc.decoded_at);
        for run in batch.chunk_by(|a, b| run_of(a) == run_of(b)) {
            let (kind, decoded_at) = run_of(&run[0]);
            m.rpc_enqueue[kind as usize]
                .record_n(now.saturating_duration_since(decoded_at), run.len() as u64);
        }
    }

    /// Up to `max` waiting RPCs, appended to `batch`, without blocking: how many (0 if none
    /// waits, or `max` is 0); `Err(Error::Shutdown)` once the transport is closed and nothing
    /// is left.
    pub fn try_recv_batch(&self, batch: &mut Vec<Rpc>, max: usize) -> Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        match self.take_batch(batch, max) {
            0 if self.shared.closed.load(Ordering::Acquire) => match self.take_batch(batch, max) {
                0 => Err(Error::Shutdown),
                n => Ok(n),
            },
            n => Ok(n),
        }
    }

    /// Block until at least one RPC arrives, then take every RPC waiting, up to `max`,
    /// appending them to `batch`: how many (at least 1; 0 only if `max` is 0).
    /// `Err(Error::Shutdown)` once the transport is closed and nothing is left.
    ///
    /// The batch form of [`recv`](Self::recv), for a Raft loop that can take several RPCs
    /// at once: one wait (and at most one wake-up) and one clock read per batch, and the
    /// pipelined appends of a peer arrive in order within and across batches. Answer them
    /// with an [`Answers`] to send the answers back together, too.
    ///
    /// # Examples
    ///
    /// ```
    /// use raftnet::message::{AppendEntriesRequest, AppendEntriesResponse, Request};
    /// use raftnet::{Answers, CallOptions, InmemTransport, Transport};
    ///
    /// let (a, b) = (InmemTransport::new("a"), InmemTransport::new("b"));
    /// a.connect(&b);
    /// let calls: Vec<_> = (1..=3)
    ///     .map(|term| {
    ///         let request = AppendEntriesRequest { term, ..Default::default() };
    ///         a.append_entries(&"b".into(), &b.local_addr(), request, CallOptions::default())
    ///     })
    ///     .collect();
    ///
    /// let mut batch = Vec::new();
    /// let mut taken = 0;
    /// while taken < 3 {
    ///     taken += b.consumer().recv_batch(&mut batch, 64)?;
    /// }
    /// let mut answers = Answers::new();
    /// for rpc in batch.drain(..) {
    ///     let Request::AppendEntries(r) = &rpc.request else { unreachable!() };
    ///     let response = AppendEntriesResponse { term: r.term, success: true, ..Default::default() };
    ///     answers.add(rpc.responder, Ok(response.into()));
    /// }
    /// answers.send();
    /// for (call, term) in calls.into_iter().zip(1..) {
    ///     assert_eq!(call.wait()?.term, term);
    /// }
    /// # Ok::<(), raftnet::Error>(())
    /// ```
    pub fn recv_batch(&self, batch: &mut Vec<Rpc>, max: usize) -> Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        let mut ready = || match self.try_recv_batch(batch, max) {
            Ok(0) => None,
            other => Some(other),
        };
        if let Some(got) = self.run_driver(&mut ready) {
            return got;
        }
        wait::wait(&self.shared.event, Spin::BeforeParking, ready)
    }

    /// Run the transport's driver on this thread until `ready` yields a value, if the driver
    /// thread sleeps and nobody else runs it; `None` if it could not (or the driver stopped):
    /// the caller then waits as usual. `ready` is tried first.
    fn run_driver<R>(&self, ready: &mut impl FnMut() -> Option<R>) -> Option<R> {
        let mut got = ready();
        if got.is_none()
            && let Some(lead) = self.shared.lead.get().and_then(Weak::upgrade)
        {
            lead.run_until(None, &mut || {
                got = got.take().or_else(&mut *ready);
                got.is_some()
            });
        }
        got
    }

    /// The async form of [`recv_batch`](Self::recv_batch) (works under any executor).
    pub async fn recv_batch_async(&self, batch: &mut Vec<Rpc>, max: usize) -> Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        wait::wait_until_async(&self.shared.event, || {
            match self.try_recv_batch(batch, max) {
                Ok(0) => None,
                other => Some(other),
            }
        })
        .await
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
        let mut ready = || self.try_recv().transpose();
        if let Some(got) = self.run_driver(&mut ready) {
            return got;
        }
        wait::wait(&self.shared.event, Spin::BeforeParking, ready)
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
        self.delivered(1);
    }

    /// Queue every RPC of `rpcs` (emptying it, keeping its allocation), in order, and wake as
    /// many waiting receivers as there are RPCs, at most: one notification for the lot.
    pub(crate) fn push_all(&self, rpcs: &mut Vec<Rpc>) {
        let n = rpcs.len();
        for rpc in rpcs.drain(..) {
            self.queue.push(rpc);
        }
        self.delivered(n);
    }

    fn delivered(&self, n: usize) {
        self.stats.delivered.fetch_add(n as u64, Ordering::Relaxed);
        let woken = self.event.notify_additional(n);
        if woken > 0 {
            self.stats.wakes.fetch_add(woken as u64, Ordering::Relaxed);
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
