//! Pipelined AppendEntries: many requests in flight on one connection, with back-pressure at
//! `max_rpcs_in_flight`, completions delivered in send order, and every outstanding future
//! resolved (with an error) when the pipeline closes, its connection is lost or the transport
//! shuts down: none is ever left hanging (hashicorp/raft #96, #612).

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::Instant;

use crossbeam_queue::SegQueue;
use event_listener::{Event, EventListener, Listener};

use super::call::SharedSlot;
use crate::error::{Error, Result};
use crate::message::{AppendEntriesRequest, AppendEntriesResponse};

/// One pipelined AppendEntries: when it started, what it sent, and (once known) its answer.
/// Cloning shares the same result. Await it, block on it, or poll it.
pub struct AppendFuture {
    start: Instant,
    request: Arc<AppendEntriesRequest>,
    slot: SharedSlot<AppendEntriesResponse>,
    listener: Option<EventListener>,
}

impl Clone for AppendFuture {
    fn clone(&self) -> Self {
        AppendFuture {
            start: self.start,
            request: self.request.clone(),
            slot: self.slot.clone(),
            listener: None,
        }
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
    /// When the request was handed to the pipeline.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// The request.
    pub fn request(&self) -> &AppendEntriesRequest {
        &self.request
    }

    /// Whether the answer (or failure) is known.
    pub fn is_done(&self) -> bool {
        self.slot.is_ready()
    }

    /// The answer, once known, without blocking; `None` while in flight.
    pub fn try_response(&self) -> Option<Result<AppendEntriesResponse>> {
        self.slot.get()
    }

    /// Block until the answer is known.
    pub fn wait(&self) -> Result<AppendEntriesResponse> {
        self.slot.wait()
    }
}

impl Future for AppendFuture {
    type Output = Result<AppendEntriesResponse>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        this.slot.poll(&mut this.listener, cx)
    }
}

/// How a pipeline's requests reach the wire (the network reactor, or an in-memory peer).
pub(crate) trait PipelineBackend: Send + Sync {
    /// Send request number `seq`; its answer comes back through [`PipelineShared::complete`].
    fn send(&self, seq: u64, request: Arc<AppendEntriesRequest>);
    /// The pipeline is closed: drop its connection.
    fn close(&self);
}

struct State {
    closed: Option<Error>,
    next_seq: u64,
    /// Sent, not yet answered, in send order.
    pending: VecDeque<(u64, AppendFuture)>,
    /// Answers that arrived ahead of an earlier request's.
    early: BTreeMap<u64, Result<AppendEntriesResponse>>,
}

/// What completing a pipelined request did.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Completed {
    /// When the request was handed to the pipeline (for the call-latency metric).
    pub(crate) started: Instant,
    /// Threads or tasks woken.
    pub(crate) woken: usize,
}

/// The state a pipeline's handle and its backend share.
pub(crate) struct PipelineShared {
    max_in_flight: usize,
    state: Mutex<State>,
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
    /// (the pipeline closed, it was answered already, or it was never sent).
    pub(crate) fn complete(
        &self,
        seq: u64,
        result: Result<AppendEntriesResponse>,
    ) -> Option<Completed> {
        let mut s = self.lock();
        let front = s.pending.front().map(|(front, _)| *front)?;
        if s.closed.is_some() || seq < front || seq >= s.next_seq || s.early.contains_key(&seq) {
            return None;
        }
        // Sequence numbers in `pending` are consecutive, so `seq`'s future is found by offset.
        let started = s.pending[(seq - front) as usize].1.start;
        let mut resolved = 0;
        let mut woken = 0;
        if front == seq {
            // The usual case: answers arrive in send order. No reordering needed.
            if let Some((_, future)) = s.pending.pop_front() {
                woken += future.slot.resolve(result);
                self.done.push(future);
                resolved += 1;
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
            woken += future.slot.resolve(result);
            self.done.push(future);
            resolved += 1;
        }
        drop(s);
        if resolved > 0 {
            woken += self.space.notify(usize::MAX);
            woken += self.done_event.notify(usize::MAX);
        }
        Some(Completed { started, woken })
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
        s.early.clear();
        while let Some((_, future)) = s.pending.pop_front() {
            future.slot.resolve(Err(error.clone()));
            self.done.push(future);
        }
        drop(s);
        self.space.notify(usize::MAX);
        self.done_event.notify(usize::MAX);
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.lock().closed.is_some()
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.lock().pending.len()
    }
}

/// Pipelined replication to one peer (hashicorp's `AppendPipeline`).
///
/// With `max_rpcs_in_flight = N`, up to N requests are on the wire unanswered: the first N-1
/// calls to [`append_entries`](Self::append_entries) return at once, the N-th is sent and then
/// waits until an answer frees a slot. [`try_append_entries`](Self::try_append_entries) never
/// waits. Answers are delivered in send order, through the returned futures and through
/// [`recv`](Self::recv). Dropping the pipeline closes it.
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

/// Why [`AppendPipeline::try_append_entries`] did not send.
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

    /// Reserve a sequence number and register the future, if there is room.
    fn start(
        &self,
        request: AppendEntriesRequest,
        room: usize,
    ) -> std::result::Result<AppendFuture, TrySendError> {
        let mut s = self.shared.lock();
        if let Some(e) = &s.closed {
            return Err(TrySendError::Closed(e.clone()));
        }
        if s.pending.len() >= room {
            return Err(TrySendError::Full(Box::new(request)));
        }
        let seq = s.next_seq;
        s.next_seq += 1;
        let request = Arc::new(request);
        let future = AppendFuture {
            start: Instant::now(),
            request: request.clone(),
            slot: SharedSlot::new(),
            listener: None,
        };
        s.pending.push_back((seq, future.clone()));
        drop(s);
        self.backend.send(seq, request);
        Ok(future)
    }

    /// Whether another send must wait (N requests unanswered), or the pipeline closed.
    fn must_wait(&self) -> Option<std::result::Result<(), Error>> {
        let s = self.shared.lock();
        if let Some(e) = &s.closed {
            return Some(Err(e.clone()));
        }
        if s.pending.len() >= self.shared.max_in_flight {
            None
        } else {
            Some(Ok(()))
        }
    }

    /// Send one request; block while the pipeline is full (back-pressure).
    pub fn append_entries(&self, request: AppendEntriesRequest) -> Result<AppendFuture> {
        let mut request = request;
        let future = loop {
            match self.start(request, self.shared.max_in_flight) {
                Ok(f) => break f,
                Err(TrySendError::Closed(e)) => return Err(e),
                Err(TrySendError::Full(r)) => {
                    request = *r;
                    self.block_until_room();
                }
            }
        };
        self.block_until_room();
        match self.must_wait() {
            Some(Err(e)) => Err(e),
            _ => Ok(future),
        }
    }

    fn block_until_room(&self) {
        loop {
            if super::spin_until(|| self.must_wait().is_some()) {
                return;
            }
            let listener = self.shared.space.listen();
            if self.must_wait().is_some() {
                return;
            }
            listener.wait();
        }
    }

    async fn room(&self) {
        loop {
            if self.must_wait().is_some() {
                return;
            }
            let listener = self.shared.space.listen();
            if self.must_wait().is_some() {
                return;
            }
            listener.await;
        }
    }

    /// Send one request; wait (without blocking the thread) while the pipeline is full.
    pub async fn append_entries_async(
        &self,
        request: AppendEntriesRequest,
    ) -> Result<AppendFuture> {
        let mut request = request;
        let future = loop {
            match self.start(request, self.shared.max_in_flight) {
                Ok(f) => break f,
                Err(TrySendError::Closed(e)) => return Err(e),
                Err(TrySendError::Full(r)) => {
                    request = *r;
                    self.room().await;
                }
            }
        };
        self.room().await;
        match self.must_wait() {
            Some(Err(e)) => Err(e),
            _ => Ok(future),
        }
    }

    /// Send one request if fewer than `max_rpcs_in_flight` are unanswered; never waits.
    pub fn try_append_entries(
        &self,
        request: AppendEntriesRequest,
    ) -> std::result::Result<AppendFuture, TrySendError> {
        self.start(request, self.shared.max_in_flight)
    }

    /// The next completed future, in send order, if one is ready; `Err(PipelineClosed)` (or
    /// the error that closed it) once the pipeline is closed and every future was taken.
    pub fn try_recv(&self) -> Result<Option<AppendFuture>> {
        if let Some(f) = self.shared.done.pop() {
            return Ok(Some(f));
        }
        match &self.shared.lock().closed {
            Some(e) => self.shared.done.pop().map(Some).ok_or_else(|| e.clone()),
            None => Ok(None),
        }
    }

    /// Block until the next completed future (hashicorp's `Consumer()` channel).
    pub fn recv(&self) -> Result<AppendFuture> {
        loop {
            if let Some(f) = self.try_recv()? {
                return Ok(f);
            }
            super::spin_until(|| !self.shared.done.is_empty() || self.shared.is_closed());
            if let Some(f) = self.try_recv()? {
                return Ok(f);
            }
            let listener = self.shared.done_event.listen();
            if let Some(f) = self.try_recv()? {
                return Ok(f);
            }
            listener.wait();
        }
    }

    /// Wait for the next completed future without blocking the thread.
    pub async fn recv_async(&self) -> Result<AppendFuture> {
        loop {
            if let Some(f) = self.try_recv()? {
                return Ok(f);
            }
            let listener = self.shared.done_event.listen();
            if let Some(f) = self.try_recv()? {
                return Ok(f);
            }
            listener.await;
        }
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
