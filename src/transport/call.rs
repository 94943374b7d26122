//! The result of an outbound call, usable three ways: block on it ([`Call::wait`]), poll it
//! without blocking ([`Call::try_result`]), or `.await` it under any executor.
//!
//! A call is resolved exactly once. The transport holds the other half (a [`Resolver`]); if
//! that half is ever dropped without resolving (the transport stopped), dropping it resolves the
//! call with [`Error::Shutdown`], so no caller is ever left waiting.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use event_listener::{Event, EventListener, Listener};

use crate::error::{Error, Result};
use crate::message::*;

enum State<T> {
    Pending,
    Ready(Result<T>),
    Taken,
}

/// Where a result is left for its waiter.
pub(crate) struct Slot<T> {
    ready: AtomicBool,
    state: Mutex<State<T>>,
    event: Event,
}

impl<T> Slot<T> {
    fn new() -> Slot<T> {
        Slot {
            ready: AtomicBool::new(false),
            state: Mutex::new(State::Pending),
            event: Event::new(),
        }
    }

    /// Store the result once; later calls are ignored. Returns how many waiting threads or
    /// tasks were woken (0 when nobody was waiting, or the result was already stored).
    fn resolve(&self, result: Result<T>) -> usize {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !matches!(*state, State::Pending) {
            return 0;
        }
        *state = State::Ready(result);
        drop(state);
        self.ready.store(true, Ordering::Release);
        // Only wakes a thread or task that is actually waiting: cheap when nobody listens.
        self.event.notify(usize::MAX)
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    fn take(&self) -> Option<Result<T>> {
        if !self.is_ready() {
            return None;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match std::mem::replace(&mut *state, State::Taken) {
            State::Ready(r) => Some(r),
            State::Taken => Some(Err(Error::Shutdown)),
            // Not reachable: `ready` is set only after the state. Treated as not ready.
            State::Pending => None,
        }
    }

    fn peek<R>(&self, f: impl FnOnce(&Result<T>) -> R) -> Option<R> {
        if !self.is_ready() {
            return None;
        }
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match &*state {
            State::Ready(r) => Some(f(r)),
            _ => None,
        }
    }

    fn wait_ready(&self, deadline: Option<Instant>) -> bool {
        loop {
            if super::spin_until(|| self.is_ready()) {
                return true;
            }
            let listener = self.event.listen();
            if self.is_ready() {
                return true;
            }
            match deadline {
                None => listener.wait(),
                Some(d) => {
                    if listener.wait_deadline(d).is_none() && !self.is_ready() {
                        return false;
                    }
                }
            }
        }
    }

    fn poll_ready(&self, listener: &mut Option<EventListener>, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if self.is_ready() {
                return Poll::Ready(());
            }
            match listener {
                None => *listener = Some(self.event.listen()),
                Some(l) => {
                    if Pin::new(&mut *l).poll(cx).is_pending() {
                        return if self.is_ready() {
                            Poll::Ready(())
                        } else {
                            Poll::Pending
                        };
                    }
                    *listener = None;
                }
            }
        }
    }
}

/// The transport's half of a call: resolves it exactly once.
pub(crate) struct Resolver<T> {
    slot: Option<Arc<Slot<T>>>,
}

impl<T> Resolver<T> {
    /// Resolve the call; returns how many waiters were woken.
    pub(crate) fn resolve(mut self, result: Result<T>) -> usize {
        match self.slot.take() {
            Some(slot) => slot.resolve(result),
            None => 0,
        }
    }
}

/// A clone resolves the same call: the first resolution wins, later ones are ignored. (The
/// in-memory transport gives one to the responder and one to the deadline timer.)
impl<T> Clone for Resolver<T> {
    fn clone(&self) -> Self {
        Resolver {
            slot: self.slot.clone(),
        }
    }
}

impl<T> Drop for Resolver<T> {
    fn drop(&mut self) {
        if let Some(slot) = self.slot.take() {
            slot.resolve(Err(Error::Shutdown));
        }
    }
}

impl<T> fmt::Debug for Resolver<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Resolver")
    }
}

/// A pending result of an outbound RPC.
///
/// ```no_run
/// # fn demo(call: raftnet::Call<raftnet::message::RequestVoteResponse>) -> raftnet::Result<()> {
/// // Block:
/// let response = call.wait()?;
/// # Ok(()) }
/// # async fn demo2(call: raftnet::Call<raftnet::message::RequestVoteResponse>) -> raftnet::Result<()> {
/// // Or await, under any executor:
/// let response = call.await?;
/// # Ok(()) }
/// ```
#[must_use = "a call does nothing useful unless its result is read"]
pub struct Call<T> {
    slot: Arc<Slot<T>>,
    listener: Option<EventListener>,
}

/// A call and the resolver that completes it.
pub(crate) fn call<T>() -> (Call<T>, Resolver<T>) {
    let slot = Arc::new(Slot::new());
    (
        Call {
            slot: slot.clone(),
            listener: None,
        },
        Resolver { slot: Some(slot) },
    )
}

impl<T> Call<T> {
    /// A call that has already failed.
    pub(crate) fn failed(error: Error) -> Call<T> {
        let (call, resolver) = call();
        resolver.resolve(Err(error));
        call
    }

    /// Block the current thread until the result is known.
    pub fn wait(self) -> Result<T> {
        self.slot.wait_ready(None);
        self.slot.take().unwrap_or(Err(Error::Shutdown))
    }

    /// Block until the result is known or `deadline` passes; on timeout the call is handed back
    /// (it is still in flight, and the transport's own deadline still applies to it).
    pub fn wait_deadline(self, deadline: Instant) -> std::result::Result<Result<T>, Call<T>> {
        if self.slot.wait_ready(Some(deadline)) {
            Ok(self.slot.take().unwrap_or(Err(Error::Shutdown)))
        } else {
            Err(self)
        }
    }

    /// The result if it is known, without blocking; `None` while the call is in flight.
    /// Once it has returned `Some`, the result is gone: later calls return
    /// `Some(Err(Error::Shutdown))`.
    pub fn try_result(&mut self) -> Option<Result<T>> {
        self.slot.take()
    }

    /// Whether the result is known.
    pub fn is_done(&self) -> bool {
        self.slot.is_ready()
    }
}

impl<T> Future for Call<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        let this = self.get_mut();
        match this.slot.poll_ready(&mut this.listener, cx) {
            Poll::Ready(()) => Poll::Ready(this.slot.take().unwrap_or(Err(Error::Shutdown))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T> Unpin for Call<T> {}

impl<T> fmt::Debug for Call<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Call")
            .field("done", &self.is_done())
            .finish()
    }
}

/// A shared, cloneable result: what a pipelined append resolves into (the sender and the
/// pipeline's consumer both hold it).
pub(crate) struct SharedSlot<T>(Arc<Slot<T>>);

impl<T> Clone for SharedSlot<T> {
    fn clone(&self) -> Self {
        SharedSlot(self.0.clone())
    }
}

impl<T: Clone> SharedSlot<T> {
    pub(crate) fn new() -> SharedSlot<T> {
        SharedSlot(Arc::new(Slot::new()))
    }

    pub(crate) fn resolve(&self, result: Result<T>) -> usize {
        self.0.resolve(result)
    }

    pub(crate) fn is_ready(&self) -> bool {
        self.0.is_ready()
    }

    pub(crate) fn get(&self) -> Option<Result<T>> {
        self.0.peek(Clone::clone)
    }

    pub(crate) fn wait(&self) -> Result<T> {
        self.0.wait_ready(None);
        self.get().unwrap_or(Err(Error::Shutdown))
    }

    pub(crate) fn poll(
        &self,
        listener: &mut Option<EventListener>,
        cx: &mut Context<'_>,
    ) -> Poll<Result<T>> {
        match self.0.poll_ready(listener, cx) {
            Poll::Ready(()) => Poll::Ready(self.get().unwrap_or(Err(Error::Shutdown))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A resolver for any of the five response types.
#[derive(Clone)]
pub(crate) enum AnyResolver {
    AppendEntries(Resolver<AppendEntriesResponse>),
    RequestVote(Resolver<RequestVoteResponse>),
    RequestPreVote(Resolver<RequestPreVoteResponse>),
    TimeoutNow(Resolver<TimeoutNowResponse>),
    InstallSnapshot(Resolver<InstallSnapshotResponse>),
}

impl AnyResolver {
    /// Resolve with a response; a response of the wrong type is a protocol error. Returns how
    /// many waiters were woken.
    pub(crate) fn resolve(self, result: Result<Response, Error>) -> usize {
        let mismatch = |got: &Response| {
            Error::Protocol(crate::wire::WireError::WrongType {
                field: "response",
                expected: "the response type of the request",
                found: got.message_type() as u8,
            })
        };
        match (self, result) {
            (AnyResolver::AppendEntries(r), Ok(Response::AppendEntries(v))) => r.resolve(Ok(v)),
            (AnyResolver::RequestVote(r), Ok(Response::RequestVote(v))) => r.resolve(Ok(v)),
            (AnyResolver::RequestPreVote(r), Ok(Response::RequestPreVote(v))) => r.resolve(Ok(v)),
            (AnyResolver::TimeoutNow(r), Ok(Response::TimeoutNow(v))) => r.resolve(Ok(v)),
            (AnyResolver::InstallSnapshot(r), Ok(Response::InstallSnapshot(v))) => r.resolve(Ok(v)),
            (any, Ok(other)) => any.fail(mismatch(&other)),
            (any, Err(e)) => any.fail(e),
        }
    }

    pub(crate) fn fail(self, e: Error) -> usize {
        match self {
            AnyResolver::AppendEntries(r) => r.resolve(Err(e)),
            AnyResolver::RequestVote(r) => r.resolve(Err(e)),
            AnyResolver::RequestPreVote(r) => r.resolve(Err(e)),
            AnyResolver::TimeoutNow(r) => r.resolve(Err(e)),
            AnyResolver::InstallSnapshot(r) => r.resolve(Err(e)),
        }
    }
}
