//! Pipelined AppendEntries: many requests in flight on one connection, with back-pressure at
//! `max_rpcs_in_flight`, completions delivered in send order, and every outstanding future
//! resolved (with an error) when the pipeline closes, its connection is lost or the transport
//! shuts down: none is ever left hanging (hashicorp/raft #96, #612).
//!
//! This file owns [`AppendPipeline`] (sending, and receiving completions), [`AppendFuture`] (one
//! append's result, the same result slot as a [`Call`](super::Call)'s) and the state both share
//! with the backend that carries the requests ([`PipelineShared`]).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Instant;

use crossbeam_queue::SegQueue;
use event_listener::Event;

use super::call::{Outcome, Slot};
use super::wait::{self, Spin};
use crate::error::{Error, Result};
use crate::message::{AppendEntriesRequest, AppendEntriesResponse};

/// One pipelined AppendEntries (hashicorp's `AppendFuture`): when it started, what it sent,
/// and, once known, its answer or error.
///
/// It has the methods of a [`Call`](crate::Call), with the same meaning: block on it
/// ([`wait`](Self::wait), [`wait_deadline`](Self::wait_deadline)), peek at it
/// ([`try_result`](Self::try_result), [`is_done`](Self::is_done)), or `.await` it. Unlike a
/// call it is [`Clone`]: the sender and the pipeline's [`recv`](AppendPipeline::recv) each get
/// one, and every clone sees the same result (each read copies it).
pub struct AppendFuture {
    start: Instant,
    /// The answer's slot, with the request in it: one allocation per append for both.
    out: Outcome<AppendEntriesResponse, AppendEntriesRequest>,
}

impl Clone for AppendFuture {
    fn clone(&self) -> Self {
        AppendFuture {
            start: self.start,
            out: self.out.share(),
        }
    }
}

impl AppendFuture {
    /// A new, unanswered append of `request`, started at `start`.
    fn new(start: Instant, request: AppendEntriesRequest) -> AppendFuture {
        AppendFuture {
            start,
            out: Outcome::with_payload(request),
        }
    }

    /// The request as its backend carries it to the wire.
    fn to_send(&self) -> PipelinedRequest {
        PipelinedRequest(self.out.slot().clone())
    }
}

/// A pipelined request on its way to the wire: it shares its future's allocation (the request
/// lives in the answer's slot), so handing it to the backend allocates nothing.
#[derive(Clone)]
pub(crate) struct PipelinedRequest(Arc<Slot<AppendEntriesResponse, AppendEntriesRequest>>);

impl std::ops::Deref for PipelinedRequest {
    type Target = AppendEntriesRequest;

    fn deref(&self) -> &AppendEntriesRequest {
        self.0.payload()
    }
}

impl fmt::Debug for AppendFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppendFuture")
            .field("start", &self.start)
            .field("done", &self.is_done())
            .finish()
    }
}

impl AppendFuture {
    /// When the request was handed to the pipeline (hashicorp's `Start()`): its deadline and
    /// the call-latency metric run from then.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// The request (hashicorp's `Request()`).
    pub fn request(&self) -> &AppendEntriesRequest {
        self.out.slot().payload()
    }

    /// Whether the answer (or failure) is known. Never blocks.
    pub fn is_done(&self) -> bool {
        self.out.is_done()
    }

    /// The answer if it is known, without blocking; `None` while in flight (hashicorp's
    /// `Response()`, which is only meaningful once `Error()` returned).
    ///
    /// It peeks: every call after the first `Some` returns the same result again, as
    /// [`Call::try_result`](crate::Call::try_result) does.
    pub fn try_result(&self) -> Option<Result<AppendEntriesResponse>> {
        self.out.try_result()
    }

    /// Block the current thread until the answer is known, and return it (hashicorp's
    /// `Error()`, with the response).
    ///
    /// Blocks at most until the transport's timeout; closing the pipeline or the transport
    /// fails it at once. Spins for a few microseconds before blocking, as
    /// [`Call::wait`](crate::Call::wait) does. Consumes this handle; clone the future first to
    /// keep one.
    pub fn wait(self) -> Result<AppendEntriesResponse> {
        self.out.wait(Slot::peek)
    }

    /// Block the current thread until the answer is known or `deadline` passes.
    ///
    /// `Ok(result)` once known; `Err(future)` at `deadline`, handing the future back: the
    /// request is still in flight. Spins briefly before blocking, as [`wait`](Self::wait) does.
    ///
    /// # Examples
    ///
    /// ```
    /// use raftnet::message::AppendEntriesRequest;
    /// use raftnet::{InmemTransport, ServerId, Transport};
    /// use std::time::{Duration, Instant};
    ///
    /// let (leader, follower) = (InmemTransport::new("leader"), InmemTransport::new("follower"));
    /// leader.connect(&follower);
    /// let pipeline = leader.append_entries_pipeline(&ServerId::from("follower"), &follower.local_addr())?;
    /// let future = pipeline.try_send(AppendEntriesRequest::default()).expect("room");
    ///
    /// // The follower has not answered: the future comes back, still in flight.
    /// let future = future
    ///     .wait_deadline(Instant::now() + Duration::from_millis(10))
    ///     .expect_err("not answered yet");
    /// assert!(!future.is_done());
    /// # Ok::<(), raftnet::Error>(())
    /// ```
    pub fn wait_deadline(
        self,
        deadline: Instant,
    ) -> std::result::Result<Result<AppendEntriesResponse>, AppendFuture> {
        match self.out.wait_deadline(deadline, Slot::peek) {
            Some(result) => Ok(result),
            None => Err(self),
        }
    }
}

/// `.await` the answer under any executor; never blocks the thread or spins. Other clones keep
/// seeing the result.
impl Future for AppendFuture {
    type Output = Result<AppendEntriesResponse>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.get_mut().out.poll(cx, Slot::peek)
    }
}

/// How a pipeline's requests reach the wire (the network transport's engine, or an in-memory peer).
pub(crate) trait PipelineBackend: Send + Sync {
    /// Send request number `seq`; its answer comes back through [`PipelineShared::complete`].
    fn send(&self, seq: u64, request: PipelinedRequest);
    /// Send several, in order (taking them out of `batch`).
    fn send_batch(&self, batch: &mut Vec<(u64, PipelinedRequest)>) {
        for (seq, request) in batch.drain(..) {
            self.send(seq, request);
        }
    }
    /// The pipeline is closed: drop its connection.
    fn close(&self);
    /// Run the transport's driver on this thread until `done` returns `true` or `deadline`
    /// passes, if the transport lets a waiting thread do that and nobody else runs it now
    /// ([`Lead::run_until`](crate::engine::handoff::Lead::run_until)): `None` otherwise (the
    /// default), and the caller waits as usual.
    fn run_until(
        &self,
        _deadline: Option<Instant>,
        _done: &mut dyn FnMut() -> bool,
    ) -> Option<bool> {
        None
    }
}

struct State {
    closed: Option<Error>,
    next_seq: u64,
    /// Sent, not yet answered, in send order.
    pending: VecDeque<(u64, AppendFuture)>,
    /// Answers that arrived ahead of an earlier request's.
    early: BTreeMap<u64, Result<AppendEntriesResponse>>,
}

/// The state a pipeline's handle and its backend share.
pub(crate) struct PipelineShared {
    max_in_flight: usize,
    state: Mutex<State>,
    /// `state.closed` is set: read without the lock by a sender that runs the driver and looks
    /// after every turn whether to stop ([`AppendPipeline::lead_until`]).
    closed: AtomicBool,
    /// Rung when a slot frees up or the pipeline closes.
    space: Event,
    /// Completed futures, in send order.
    done: SegQueue<AppendFuture>,
    done_event: Event,
}

impl PipelineShared {
    pub(crate) fn new(max_in_flight: usize) -> Arc<PipelineShared> {
        Arc::new(PipelineShared {
            max_in_flight: max_in_flight.max(1),
            state: Mutex::new(State {
                closed: None,
                next_seq: 0,
                pending: VecDeque::new(),
                early: BTreeMap::new(),
            }),
            closed: AtomicBool::new(false),
            space: Event::new(),
            done: SegQueue::new(),
            done_event: Event::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The answer to request `seq` arrived. Futures resolve in send order: an answer that
    /// overtakes an earlier request's waits for it. `None` if nothing waits for this answer
    /// (the pipeline closed, it was answered already, or it was never sent); otherwise when the
    /// request was handed to the pipeline.
    pub(crate) fn complete(
        &self,
        seq: u64,
        result: Result<AppendEntriesResponse>,
    ) -> Option<Instant> {
        let mut started = None;
        self.complete_all([(seq, result)], |_, at, _| started = at);
        started
    }

    /// The answers of one read, in the order they arrived, under one lock and with one
    /// notification of the pipeline's waiters. `report(seq, started, ok)` for each: when its
    /// request was handed to the pipeline, or `None` if nothing waits for it (see
    /// [`complete`](Self::complete)), and whether it was an answer rather than an error.
    /// Returns the threads or tasks woken.
    pub(crate) fn complete_all(
        &self,
        answers: impl IntoIterator<Item = (u64, Result<AppendEntriesResponse>)>,
        mut report: impl FnMut(u64, Option<Instant>, bool),
    ) -> usize {
        let mut s = self.lock();
        let mut resolved = 0;
        let mut woken = 0;
        for (seq, result) in answers {
            let ok = result.is_ok();
            let started = self.complete_locked(&mut s, seq, result, &mut resolved, &mut woken);
            report(seq, started, ok);
        }
        drop(s);
        if resolved > 0 {
            woken += self.space.notify(usize::MAX);
            woken += self.done_event.notify(usize::MAX);
        }
        woken
    }

    fn complete_locked(
        &self,
        s: &mut State,
        seq: u64,
        result: Result<AppendEntriesResponse>,
        resolved: &mut usize,
        woken: &mut usize,
    ) -> Option<Instant> {
        let front = s.pending.front().map(|(front, _)| *front)?;
        if s.closed.is_some() || seq < front || seq >= s.next_seq || s.early.contains_key(&seq) {
            return None;
        }
        // Sequence numbers in `pending` are consecutive, so `seq`'s future is found by offset.
        let started = s.pending[(seq - front) as usize].1.start;
        if front == seq {
            // The usual case: answers arrive in send order. No reordering needed.
            if let Some((_, future)) = s.pending.pop_front() {
                *woken += future.out.resolve(result);
                self.done.push(future);
                *resolved += 1;
            }
        } else {
            s.early.insert(seq, result);
        }
        while let Some((front_seq, _)) = s.pending.front() {
            let front_seq = *front_seq;
            let Some(result) = s.early.remove(&front_seq) else {
                break;
            };
            let Some((_, future)) = s.pending.pop_front() else {
                break;
            };
            *woken += future.out.resolve(result);
            self.done.push(future);
            *resolved += 1;
        }
        Some(started)
    }

    /// When the oldest unanswered request was handed to the pipeline (its deadline runs from
    /// then).
    pub(crate) fn oldest_start(&self) -> Option<Instant> {
        self.lock().pending.front().map(|(_, f)| f.start)
    }

    /// Close with `error`: every outstanding future fails with it, in send order.
    pub(crate) fn fail(&self, error: Error) {
        let mut s = self.lock();
        if s.closed.is_some() {
            return;
        }
        s.closed = Some(error.clone());
        self.closed.store(true, Ordering::Release);
        s.early.clear();
        while let Some((_, future)) = s.pending.pop_front() {
            future.out.resolve(Err(error.clone()));
            self.done.push(future);
        }
        drop(s);
        self.space.notify(usize::MAX);
        self.done_event.notify(usize::MAX);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.lock().pending.len()
    }
}

/// Pipelined replication to one peer (hashicorp's `AppendPipeline`).
///
/// With `max_rpcs_in_flight = N`, up to N requests are on the wire unanswered. Sending comes
/// in three forms, named as channels name them (and as [`recv`](Self::recv),
/// [`try_recv`](Self::try_recv), [`recv_async`](Self::recv_async) receive):
///
/// | | when the pipeline is full |
/// | --- | --- |
/// | [`send`](Self::send) | **blocks the thread**: hashicorp's `AppendEntries` ("the send may block which is an effective form of back-pressure") |
/// | [`try_send`](Self::try_send) | never blocks: hands the request back ([`TrySendError::Full`]) |
/// | [`send_async`](Self::send_async) | waits without blocking the thread |
///
/// (Unlike [`Transport::append_entries`](crate::Transport::append_entries), which never blocks
/// and returns a [`Call`](crate::Call): a pipeline's back-pressure is the point of it.)
///
/// Answers are delivered in send order, through the returned [`AppendFuture`]s and through
/// [`recv`](Self::recv) (hashicorp's `Consumer()` channel). Dropping the pipeline closes it.
///
/// On a [`NetTransport`](crate::NetTransport) whose driver runs on a thread of its own
/// ([`bind`](crate::NetTransport::bind)), a thread that sends, or blocks in `recv`,
/// `recv_batch`, `recv_deadline` or `send`, does the driver's work itself while the driver's
/// thread sleeps: it writes its requests and reads their answers with no thread woken in
/// between, as a call's [`wait`](crate::Call::wait) does. One thread that both sends and
/// receives (the usual replication loop) is the fastest way to drive a pipeline.
///
/// # Examples
///
/// ```
/// use raftnet::message::{AppendEntriesRequest, AppendEntriesResponse};
/// use raftnet::{InmemTransport, ServerId, Transport};
///
/// let (leader, follower) = (InmemTransport::new("leader"), InmemTransport::new("follower"));
/// leader.connect(&follower);
/// // The follower's Raft side accepts everything.
/// let consumer = follower.consumer().clone();
/// std::thread::spawn(move || {
///     while let Ok(rpc) = consumer.recv() {
///         rpc.respond_ok(AppendEntriesResponse { success: true, ..Default::default() });
///     }
/// });
///
/// let pipeline = leader.append_entries_pipeline(&ServerId::from("follower"), &follower.local_addr())?;
/// for term in 1..=3 {
///     pipeline.send(AppendEntriesRequest { term, ..Default::default() })?; // blocks while full
/// }
/// for term in 1..=3 {
///     let done = pipeline.recv()?; // in send order
///     assert_eq!(done.request().term, term);
///     assert!(done.wait()?.success);
/// }
/// # Ok::<(), raftnet::Error>(())
/// ```
pub struct AppendPipeline {
    shared: Arc<PipelineShared>,
    backend: Box<dyn PipelineBackend>,
}

impl fmt::Debug for AppendPipeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppendPipeline")
            .field("in_flight", &self.shared.in_flight())
            .field("closed", &self.shared.is_closed())
            .finish()
    }
}

/// Why [`AppendPipeline::try_send`] did not send.
#[derive(Debug)]
pub enum TrySendError {
    /// `max_rpcs_in_flight` requests are unanswered; the request is handed back.
    Full(Box<AppendEntriesRequest>),
    /// The pipeline is closed.
    Closed(Error),
}

impl AppendPipeline {
    pub(crate) fn new(
        shared: Arc<PipelineShared>,
        backend: Box<dyn PipelineBackend>,
    ) -> AppendPipeline {
        AppendPipeline { shared, backend }
    }

    /// Whether another send must wait (`None`: N requests unanswered), or may go ahead
    /// (`Some(Ok)`), or the pipeline closed (`Some(Err)`).
    fn room(&self) -> Option<Result<()>> {
        let s = self.shared.lock();
        if let Some(e) = &s.closed {
            return Some(Err(e.clone()));
        }
        (s.pending.len() < self.shared.max_in_flight).then_some(Ok(()))
    }

    /// Block until a slot is free or the pipeline closed (spinning briefly first).
    fn wait_for_room(&self) -> Result<()> {
        self.lead_until(None, || self.room().is_some());
        wait::wait(&self.shared.space, Spin::BeforeParking, || self.room())
    }

    /// Before a blocking wait for `ready`: run the transport's driver on this thread until
    /// `ready` (or the pipeline closes, or `deadline` passes) if its own thread sleeps, as a
    /// blocking [`Call::wait`](crate::Call::wait) does. The answers are then read, and the
    /// next requests written, by the thread that waits for them, with no wake-up of the driver
    /// thread or of this one in between (leader/follower, `driver/thread.rs`). The wait that
    /// follows finds `ready` at once, or waits as before if somebody else runs the driver.
    fn lead_until(&self, deadline: Option<Instant>, ready: impl Fn() -> bool) {
        if ready() {
            return;
        }
        self.backend
            .run_until(deadline, &mut || ready() || self.shared.is_closed());
    }

    /// Whether a completed future waits to be taken.
    fn has_done(&self) -> bool {
        !self.shared.done.is_empty()
    }

    async fn wait_for_room_async(&self) -> Result<()> {
        wait::wait_until_async(&self.shared.space, || self.room()).await
    }

    /// Send one request, **blocking the thread** while the pipeline is full (hashicorp's
    /// `AppendEntries` on its pipeline: back-pressure).
    ///
    /// The first N-1 sends return at once; the N-th is sent, then blocks until an answer frees
    /// a slot. (It spins for a few microseconds before blocking, as
    /// [`Call::wait`](crate::Call::wait) does.) `Err` if the pipeline is closed before the
    /// request is sent. Once sent, the request is answered through its future (and
    /// [`recv`](Self::recv)) only: if the pipeline closes while this send waits for room
    /// afterwards, the send still returns the future, which fails with the close, so each
    /// request is reported exactly once. Use [`try_send`](Self::try_send) never to block, or
    /// [`send_async`](Self::send_async) in async code.
    pub fn send(&self, request: AppendEntriesRequest) -> Result<AppendFuture> {
        let mut request = request;
        loop {
            match self.try_send(request) {
                Ok(future) => {
                    // Back-pressure only: a close meanwhile fails `future` itself.
                    let _ = self.wait_for_room();
                    return Ok(future);
                }
                Err(TrySendError::Full(back)) => request = *back,
                Err(TrySendError::Closed(e)) => return Err(e),
            }
            // Another thread filled the pipeline: wait, then try again (which reports a close).
            let _ = self.wait_for_room();
        }
    }

    /// Send one request, waiting without blocking the thread while the pipeline is full: the
    /// async form of [`send`](Self::send), under any executor.
    pub async fn send_async(&self, request: AppendEntriesRequest) -> Result<AppendFuture> {
        let mut request = request;
        loop {
            match self.try_send(request) {
                Ok(future) => {
                    // Back-pressure only: a close meanwhile fails `future` itself.
                    let _ = self.wait_for_room_async().await;
                    return Ok(future);
                }
                Err(TrySendError::Full(back)) => request = *back,
                Err(TrySendError::Closed(e)) => return Err(e),
            }
            let _ = self.wait_for_room_async().await;
        }
    }

    /// Send one request if fewer than `max_rpcs_in_flight` are unanswered; never blocks.
    ///
    /// A full pipeline hands the request back ([`TrySendError::Full`]); a closed one says why
    /// ([`TrySendError::Closed`]).
    ///
    /// # Examples
    ///
    /// ```
    /// use raftnet::message::AppendEntriesRequest;
    /// use raftnet::{InmemTransport, ServerId, Transport, TrySendError};
    ///
    /// let (leader, follower) = (InmemTransport::new("leader"), InmemTransport::new("follower"));
    /// leader.connect(&follower);
    /// let pipeline = leader.append_entries_pipeline(&ServerId::from("follower"), &follower.local_addr())?;
    /// // Nobody answers: fill the pipeline, then one more comes back.
    /// while pipeline.try_send(AppendEntriesRequest::default()).is_ok() {}
    /// assert!(matches!(pipeline.try_send(AppendEntriesRequest::default()), Err(TrySendError::Full(_))));
    /// # Ok::<(), raftnet::Error>(())
    /// ```
    pub fn try_send(
        &self,
        request: AppendEntriesRequest,
    ) -> std::result::Result<AppendFuture, TrySendError> {
        let mut s = self.shared.lock();
        if let Some(e) = &s.closed {
            return Err(TrySendError::Closed(e.clone()));
        }
        if s.pending.len() >= self.shared.max_in_flight {
            return Err(TrySendError::Full(Box::new(request)));
        }
        let seq = s.next_seq;
        s.next_seq += 1;
        let future = AppendFuture::new(Instant::now(), request);
        let to_send = future.to_send();
        s.pending.push_back((seq, future.clone()));
        drop(s);
        self.backend.send(seq, to_send);
        Ok(future)
    }

    /// Send requests from the front of `requests` while the pipeline has room, never blocking:
    /// the sent ones leave `requests`, and their futures are appended to `futures`, in send
    /// order. How many were sent (0 if the pipeline is full); `Err` if it is closed.
    ///
    /// The batch form of [`try_send`](Self::try_send): one lock of the pipeline and one
    /// hand-off to the transport (at most one wake-up of its thread) for the lot.
    ///
    /// # Examples
    ///
    /// ```
    /// use raftnet::message::AppendEntriesRequest;
    /// use raftnet::{Config, InmemTransport, ServerId, Transport};
    ///
    /// let config = Config::default().max_rpcs_in_flight(4);
    /// let leader = InmemTransport::with_config("leader", config.clone());
    /// let follower = InmemTransport::with_config("follower", config);
    /// leader.connect(&follower);
    /// let pipeline = leader.append_entries_pipeline(&ServerId::from("follower"), &follower.local_addr())?;
    /// let mut requests: Vec<_> = (1..=6)
    ///     .map(|term| AppendEntriesRequest { term, ..Default::default() })
    ///     .collect();
    /// let mut futures = Vec::new();
    /// // Nobody answers: four fit, two stay.
    /// assert_eq!(pipeline.try_send_batch(&mut requests, &mut futures)?, 4);
    /// assert_eq!(requests.len(), 2);
    /// assert_eq!(futures.iter().map(|f| f.request().term).collect::<Vec<_>>(), [1, 2, 3, 4]);
    /// # Ok::<(), raftnet::Error>(())
    /// ```
    pub fn try_send_batch(
        &self,
        requests: &mut Vec<AppendEntriesRequest>,
        futures: &mut Vec<AppendFuture>,
    ) -> Result<usize> {
        let mut s = self.shared.lock();
        if let Some(e) = &s.closed {
            return Err(e.clone());
        }
        let n = requests
            .len()
            .min(self.shared.max_in_flight.saturating_sub(s.pending.len()));
        if n == 0 {
            return Ok(0);
        }
        let start = Instant::now();
        let mut batch = Vec::with_capacity(n);
        for request in requests.drain(..n) {
            let seq = s.next_seq;
            s.next_seq += 1;
            let future = AppendFuture::new(start, request);
            batch.push((seq, future.to_send()));
            s.pending.push_back((seq, future.clone()));
            futures.push(future);
        }
        drop(s);
        self.backend.send_batch(&mut batch);
        Ok(n)
    }

    /// Send every request of `requests` (emptying it), **blocking the thread** while the
    /// pipeline is full; their futures are appended to `futures`, in send order. `Err` if the
    /// pipeline is closed, or closes while this waits (the requests not sent stay in
    /// `requests`). The batch form of [`send`](Self::send), except that it returns once the
    /// last request is sent.
    pub fn send_batch(
        &self,
        requests: &mut Vec<AppendEntriesRequest>,
        futures: &mut Vec<AppendFuture>,
    ) -> Result<()> {
        loop {
            self.try_send_batch(requests, futures)?;
            if requests.is_empty() {
                return Ok(());
            }
            self.wait_for_room()?;
        }
    }

    /// The async form of [`send_batch`](Self::send_batch), under any executor.
    pub async fn send_batch_async(
        &self,
        requests: &mut Vec<AppendEntriesRequest>,
        futures: &mut Vec<AppendFuture>,
    ) -> Result<()> {
        loop {
            self.try_send_batch(requests, futures)?;
            if requests.is_empty() {
                return Ok(());
            }
            self.wait_for_room_async().await?;
        }
    }

    /// The next completed future, in send order, if one is ready; never blocks. `Ok(None)` if
    /// none is; `Err(PipelineClosed)` (or the error that closed it) once the pipeline is closed
    /// and every future was taken.
    pub fn try_recv(&self) -> Result<Option<AppendFuture>> {
        if let Some(f) = self.shared.done.pop() {
            return Ok(Some(f));
        }
        match &self.shared.lock().closed {
            Some(e) => self.shared.done.pop().map(Some).ok_or_else(|| e.clone()),
            None => Ok(None),
        }
    }

    /// Block the thread until the next completed future, in send order (hashicorp's
    /// `Consumer()` channel); `Err` once the pipeline is closed and every future was taken.
    /// Spins for a few microseconds before blocking.
    pub fn recv(&self) -> Result<AppendFuture> {
        self.lead_until(None, || self.has_done());
        wait::wait(&self.shared.done_event, Spin::BeforeParking, || {
            self.try_recv().transpose()
        })
    }

    /// Block the thread until the next completed future or until `deadline` passes
    /// (`Ok(None)`); `Err` as [`recv`](Self::recv). Spins briefly before blocking, as
    /// [`recv`](Self::recv) does.
    ///
    /// # Examples
    ///
    /// ```
    /// use raftnet::{InmemTransport, ServerId, Transport};
    /// use std::time::{Duration, Instant};
    ///
    /// let (leader, follower) = (InmemTransport::new("leader"), InmemTransport::new("follower"));
    /// leader.connect(&follower);
    /// let pipeline = leader.append_entries_pipeline(&ServerId::from("follower"), &follower.local_addr())?;
    /// // Nothing was sent, so nothing completes.
    /// assert!(pipeline.recv_deadline(Instant::now() + Duration::from_millis(10))?.is_none());
    /// # Ok::<(), raftnet::Error>(())
    /// ```
    pub fn recv_deadline(&self, deadline: Instant) -> Result<Option<AppendFuture>> {
        self.lead_until(Some(deadline), || self.has_done());
        let event = &self.shared.done_event;
        wait::wait_until(event, Spin::BeforeParking, Some(deadline), || {
            self.try_recv().transpose()
        })
        .transpose()
    }

    /// Wait for the next completed future without blocking the thread (any executor): the
    /// async form of [`recv`](Self::recv).
    pub async fn recv_async(&self) -> Result<AppendFuture> {
        wait::wait_until_async(&self.shared.done_event, || self.try_recv().transpose()).await
    }

    /// Every completed future waiting, up to `max`, appended to `done` in send order, without
    /// blocking: how many (0 if none is ready, or `max` is 0); `Err` as
    /// [`try_recv`](Self::try_recv) once the pipeline is closed and every future was taken.
    pub fn try_recv_batch(&self, done: &mut Vec<AppendFuture>, max: usize) -> Result<usize> {
        let start = done.len();
        while done.len() - start < max {
            match self.shared.done.pop() {
                Some(future) => done.push(future),
                None => break,
            }
        }
        match done.len() - start {
            0 if max > 0 => self.try_recv().map(|next| match next {
                Some(future) => {
                    done.push(future);
                    1
                }
                None => 0,
            }),
            n => Ok(n),
        }
    }

    /// Block until at least one future completes, then take every completed one waiting, up
    /// to `max`, appending them to `done` in send order: how many (at least 1; 0 only if `max`
    /// is 0). `Err` as [`recv`](Self::recv). One wait (and at most one wake-up) per batch.
    pub fn recv_batch(&self, done: &mut Vec<AppendFuture>, max: usize) -> Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        self.lead_until(None, || self.has_done());
        wait::wait(&self.shared.done_event, Spin::BeforeParking, || match self
            .try_recv_batch(done, max)
        {
            Ok(0) => None,
            other => Some(other),
        })
    }

    /// The async form of [`recv_batch`](Self::recv_batch), under any executor.
    pub async fn recv_batch_async(
        &self,
        done: &mut Vec<AppendFuture>,
        max: usize,
    ) -> Result<usize> {
        if max == 0 {
            return Ok(0);
        }
        wait::wait_until_async(&self.shared.done_event, || {
            match self.try_recv_batch(done, max) {
                Ok(0) => None,
                other => Some(other),
            }
        })
        .await
    }

    /// Requests sent and not yet answered.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight()
    }

    /// Close the pipeline: its connection is dropped and every outstanding future fails with
    /// [`Error::PipelineClosed`]. Idempotent; safe from any thread.
    pub fn close(&self) {
        self.shared.fail(Error::PipelineClosed);
        self.backend.close();
    }
}

impl Drop for AppendPipeline {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// A backend that carries nothing: the tests answer through [`PipelineShared::complete`].
    struct Held;

    impl PipelineBackend for Held {
        fn send(&self, _seq: u64, _request: PipelinedRequest) {}
        fn close(&self) {}
    }

    fn pipeline(max_in_flight: usize) -> (AppendPipeline, Arc<PipelineShared>) {
        let shared = PipelineShared::new(max_in_flight);
        (AppendPipeline::new(shared.clone(), Box::new(Held)), shared)
    }

    fn request(term: u64) -> AppendEntriesRequest {
        AppendEntriesRequest {
            term,
            ..Default::default()
        }
    }

    fn answer(term: u64) -> AppendEntriesResponse {
        AppendEntriesResponse {
            term,
            success: true,
            ..Default::default()
        }
    }

    #[test]
    fn wait_deadline_times_out_and_hands_the_future_back() {
        let (pipeline, shared) = pipeline(4);
        let future = pipeline.try_send(request(1)).unwrap();
        let deadline = Instant::now() + Duration::from_millis(10);
        let future = future.wait_deadline(deadline).expect_err("unanswered");
        assert!(Instant::now() >= deadline);
        assert!(!future.is_done());
        assert_eq!(future.request().term, 1, "the same future came back");
        shared.complete(0, Ok(answer(1))).expect("was waiting");
        assert_eq!(future.wait_deadline(deadline).ok(), Some(Ok(answer(1))));
    }

    #[test]
    fn try_result_twice_returns_the_same_result_in_every_clone() {
        let (pipeline, shared) = pipeline(4);
        let future = pipeline.try_send(request(1)).unwrap();
        let clone = future.clone();
        assert_eq!(future.try_result(), None);
        shared.complete(0, Ok(answer(1)));
        assert_eq!(future.try_result(), Some(Ok(answer(1))));
        assert_eq!(future.try_result(), Some(Ok(answer(1))));
        assert_eq!(clone.try_result(), Some(Ok(answer(1))));
        let completed = pipeline.try_recv().unwrap().expect("completed");
        assert_eq!(futures::executor::block_on(completed), Ok(answer(1)));
        assert_eq!(clone.wait(), Ok(answer(1)));
        assert_eq!(future.try_result(), Some(Ok(answer(1))));
    }

    #[test]
    fn recv_deadline_times_out_then_returns_the_completion() {
        let (pipeline, shared) = pipeline(4);
        pipeline.try_send(request(1)).unwrap();
        let soon = Instant::now() + Duration::from_millis(10);
        assert!(pipeline.recv_deadline(soon).unwrap().is_none());
        shared.complete(0, Ok(answer(1)));
        let done = pipeline.recv_deadline(soon).unwrap().expect("completed");
        assert_eq!(done.try_result(), Some(Ok(answer(1))));
        pipeline.close();
        assert_eq!(
            pipeline.recv_deadline(soon).err(),
            Some(Error::PipelineClosed)
        );
    }

    #[test]
    fn send_blocks_while_full_until_an_answer_frees_a_slot() {
        let (pipeline, shared) = pipeline(2);
        let first = pipeline.send(request(1)).unwrap();
        let answerer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            shared.complete(0, Ok(answer(1)));
        });
        // The second send fills the pipeline: it is sent, then blocks until the first answer.
        let started = Instant::now();
        let second = pipeline.send(request(2)).unwrap();
        assert!(started.elapsed() >= Duration::from_millis(20));
        assert!(first.is_done());
        assert!(!second.is_done());
        answerer.join().unwrap();
        assert!(pipeline.try_send(request(3)).is_ok());
    }

    /// A send that is waiting for room after its request went out, when the pipeline closes:
    /// the request is reported once, by its future (and `recv`), not also by the send.
    #[test]
    #[cfg_attr(miri, ignore)] // sleeps and threads: slow under Miri, nothing unsafe
    fn a_close_while_send_waits_for_room_fails_the_sent_request_once() {
        let (pipeline, shared) = pipeline(1);
        let failer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            shared.fail(Error::Shutdown);
        });
        // Sent, then blocked: the pipeline is full with it.
        let sent = pipeline.send(request(1)).expect("the request was sent");
        failer.join().unwrap();
        assert_eq!(sent.try_result(), Some(Err(Error::Shutdown)));
        let reported = pipeline.try_recv().unwrap().expect("its completion");
        assert_eq!(reported.request().term, 1);
        assert_eq!(
            pipeline.try_recv().err(),
            Some(Error::Shutdown),
            "reported once"
        );
        assert!(pipeline.send(request(2)).is_err(), "closed before sending");
    }
}
