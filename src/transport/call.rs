//! The result slot behind every outbound result: [`Call`] (one RPC) and, in
//! [`pipeline`](super::pipeline), [`AppendFuture`](super::AppendFuture) (one pipelined append)
//! are both an [`Outcome`], so they block ([`Call::wait`], [`Call::wait_deadline`]), peek
//! ([`Call::try_result`], [`Call::is_done`]) and `.await` the same way. Also the transport's
//! half of a call, the [`Resolver`].
//!
//! A result is resolved exactly once. The transport holds the resolving half; if that half is
//! ever dropped without resolving (the transport stopped), dropping it resolves the call with
//! [`Error::Shutdown`], so no caller is ever left waiting.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use event_listener::{Event, EventListener};

use super::wait::{self, Spin};
use crate::engine::handoff::Lead;
use crate::error::{Error, Result};
use crate::message::*;

enum State<T> {
    Pending,
    Ready(Result<T>),
    /// Moved out to the awaiting code by a [`Call`]'s `Future::poll`.
    Taken,
}

/// What using a [`Call`] after its `Future` completed says: the result went to the code that
/// awaited it, and inventing another (the old `Err(Shutdown)`) would be a lie.
const USED_AFTER_COMPLETION: &str =
    "raftnet: a Call was used after its Future completed (the result went to the awaiting code)";

/// Where a result is left for its readers: resolving it is one lock, one atomic store and one
/// event notification (a fence when nobody listens: [`wait::notify_all`]).
pub(crate) struct Slot<T, P = ()> {
    ready: AtomicBool,
    state: Mutex<State<T>>,
    event: Event,
    /// What the result answers, when its readers need it too (a pipelined append's request,
    /// which the engine encodes and `AppendFuture::request` shows): held in the slot's own
    /// allocation rather than one of its own.
    payload: P,
}

impl<T, P> Slot<T, P> {
    fn with_payload(payload: P) -> Slot<T, P> {
        Slot {
            ready: AtomicBool::new(false),
            state: Mutex::new(State::Pending),
            event: Event::new(),
            payload,
        }
    }

    pub(crate) fn payload(&self) -> &P {
        &self.payload
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
        // Only wakes a thread or task that is actually waiting: a fence when nobody listens.
        wait::notify_all(&self.event)
    }

    fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Move the result out (no copy), once it is there. Only for a slot's one reader, as it
    /// finishes with it: [`Call::wait`], [`Call::wait_deadline`] and a `Call`'s `Future`.
    ///
    /// # Panics
    /// If the result was moved out already, which only a `Call` used after its `Future`
    /// completed can cause (like polling any finished future).
    pub(crate) fn take(&self) -> Option<Result<T>> {
        if !self.is_ready() {
            return None;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        match std::mem::replace(&mut *state, State::Taken) {
            State::Ready(r) => Some(r),
            State::Taken => panic!("{USED_AFTER_COMPLETION}"),
            // Not reachable: `ready` is set only after the state. Treated as not ready.
            State::Pending => {
                *state = State::Pending;
                None
            }
        }
    }
}

impl<T: Clone, P> Slot<T, P> {
    /// A copy of the result, once it is there; the result stays for the next look.
    ///
    /// # Panics
    /// As [`take`](Self::take): only for a `Call` used after its `Future` completed.
    pub(crate) fn peek(&self) -> Option<Result<T>> {
        if !self.is_ready() {
            return None;
        }
        match &*self.state.lock().unwrap_or_else(|e| e.into_inner()) {
            State::Ready(r) => Some(r.clone()),
            State::Taken => panic!("{USED_AFTER_COMPLETION}"),
            State::Pending => None,
        }
    }
}

/// A reader's end of a [`Slot`]: what [`Call`] and [`AppendFuture`](super::AppendFuture) are
/// underneath, so both wait, peek and poll alike. They differ only in how the finishing
/// methods get the result out, passed in as `get`: a `Call` is its slot's one reader and moves
/// it out ([`Slot::take`]); an `AppendFuture` shares its slot with its clones and copies it
/// ([`Slot::peek`]).
pub(crate) struct Outcome<T, P = ()> {
    slot: Arc<Slot<T, P>>,
    /// Kept between polls of the `Future`.
    listener: Option<EventListener>,
}

impl<T> Outcome<T> {
    /// A new, unresolved result.
    pub(crate) fn new() -> Outcome<T> {
        Outcome::with_payload(())
    }
}

impl<T, P> Outcome<T, P> {
    /// A new, unresolved result, with `payload` beside it (one allocation for both).
    pub(crate) fn with_payload(payload: P) -> Outcome<T, P> {
        Outcome {
            slot: Arc::new(Slot::with_payload(payload)),
            listener: None,
        }
    }

    /// The slot itself, for a holder that needs its payload while the result is pending.
    pub(crate) fn slot(&self) -> &Arc<Slot<T, P>> {
        &self.slot
    }

    /// Another reader of the same result. Only for readers that copy the result out
    /// ([`Slot::peek`]): a reader that moves it out must be the only one.
    pub(crate) fn share(&self) -> Outcome<T, P> {
        Outcome {
            slot: self.slot.clone(),
            listener: None,
        }
    }

    /// Resolve directly, without a [`Resolver`] (the pipeline resolves its futures in send
    /// order itself, and fails every one still pending when it closes).
    pub(crate) fn resolve(&self, result: Result<T>) -> usize {
        self.slot.resolve(result)
    }

    pub(crate) fn is_done(&self) -> bool {
        self.slot.is_ready()
    }

    /// Block until the result is known (spinning briefly first).
    pub(crate) fn wait(&self, get: impl Fn(&Slot<T, P>) -> Option<Result<T>>) -> Result<T> {
        wait::wait(&self.slot.event, Spin::BeforeParking, || get(&self.slot))
    }

    /// Run the transport's driver on this thread until the result is known or `deadline`
    /// passes, if nobody else runs it (its thread sleeps). The result if it came; `None` if
    /// somebody else runs the driver, the deadline passed or the driver stopped: the caller
    /// then waits as usual (which looks once more).
    pub(crate) fn run_driver(
        &self,
        lead: &dyn Lead,
        deadline: Option<Instant>,
        get: impl Fn(&Slot<T, P>) -> Option<Result<T>>,
    ) -> Option<Result<T>> {
        if self.slot.is_ready() {
            return get(&self.slot);
        }
        let mut result = None;
        lead.run_until(deadline, &mut || {
            result = result.take().or_else(|| get(&self.slot));
            result.is_some()
        });
        result
    }

    /// Block until the result is known or `deadline` passes (`None`).
    pub(crate) fn wait_deadline(
        &self,
        deadline: Instant,
        get: impl Fn(&Slot<T, P>) -> Option<Result<T>>,
    ) -> Option<Result<T>> {
        let event = &self.slot.event;
        wait::wait_until(event, Spin::BeforeParking, Some(deadline), || {
            get(&self.slot)
        })
    }

    /// One poll of the `Future`.
    pub(crate) fn poll(
        &mut self,
        cx: &mut Context<'_>,
        get: impl Fn(&Slot<T, P>) -> Option<Result<T>>,
    ) -> Poll<Result<T>> {
        let slot = &self.slot;
        wait::poll_until(&slot.event, &mut self.listener, cx, || get(slot))
    }
}

impl<T: Clone, P> Outcome<T, P> {
    /// A copy of the result if it is known.
    pub(crate) fn try_result(&self) -> Option<Result<T>> {
        self.slot.peek()
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

/// The pending result of an outbound RPC, resolved exactly once: with the answer, or with an
/// error (the call timed out, the peer was unreachable, the transport closed:
/// [`Error::Shutdown`]). Every [`Transport`](crate::Transport) call returns one at once.
///
/// Use it one of three ways:
///
/// | | blocks the thread | result |
/// | --- | --- | --- |
/// | [`wait`](Self::wait) | until the result is known | the result; consumes the call |
/// | [`wait_deadline`](Self::wait_deadline) | until the result is known or a deadline passes | the result, or the call back |
/// | [`try_result`](Self::try_result) | never | a copy of the result, or `None` while in flight |
/// | `.await` | never (any executor) | the result; consumes the call |
///
/// [`AppendFuture`](crate::AppendFuture), a pipelined append's result, has the same methods
/// with the same meaning.
///
/// # Examples
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
    out: Outcome<T>,
    /// The driver this call's blocking waits may run while its thread sleeps (see
    /// [`Lead`]).
    lead: Option<Arc<dyn Lead>>,
}

/// A call and the resolver that completes it.
pub(crate) fn call<T>() -> (Call<T>, Resolver<T>) {
    let out = Outcome::new();
    let resolver = Resolver {
        slot: Some(out.slot.clone()),
    };
    (Call { out, lead: None }, resolver)
}

impl<T> Call<T> {
    /// Let blocking waits on this call run `lead` (its transport's driver) while the driver's
    /// thread sleeps, instead of parking until that thread wakes this one.
    pub(crate) fn led_by(mut self, lead: Option<Arc<dyn Lead>>) -> Call<T> {
        self.lead = lead;
        self
    }

    /// A call that has already failed.
    pub(crate) fn failed(error: Error) -> Call<T> {
        let (call, resolver) = call();
        resolver.resolve(Err(error));
        call
    }

    /// Block the current thread until the result is known, and return it.
    ///
    /// Blocks at most until the call's deadline (the transport's timeout, or
    /// [`CallOptions::deadline`](crate::CallOptions)), when the call fails with
    /// [`Error::Timeout`]; a closed transport fails it at once with [`Error::Shutdown`].
    ///
    /// How it waits: if the transport's driver thread sleeps
    /// ([`Placement::Thread`](crate::Placement::Thread)), this thread runs the driver itself
    /// until the answer comes (so the answer wakes only this thread; it may serve other
    /// connections meanwhile, a [`Service`](crate::Service) included). Otherwise it spins for a
    /// few microseconds, because answers under load usually come within that time (cheaper than
    /// parking and waking a thread), then parks.
    ///
    /// # Examples
    ///
    /// ```
    /// use raftnet::message::{TimeoutNowRequest, TimeoutNowResponse};
    /// use raftnet::{CallOptions, InmemTransport, ServerId, Transport};
    ///
    /// let (a, b) = (InmemTransport::new("a"), InmemTransport::new("b"));
    /// a.connect(&b);
    /// let consumer = b.consumer().clone();
    /// std::thread::spawn(move || consumer.recv().unwrap().respond_ok(TimeoutNowResponse::default()));
    ///
    /// let call = a.timeout_now(&ServerId::from("b"), &b.local_addr(), TimeoutNowRequest::default(), CallOptions::default());
    /// assert_eq!(call.wait()?, TimeoutNowResponse::default());
    /// # Ok::<(), raftnet::Error>(())
    /// ```
    pub fn wait(self) -> Result<T> {
        if let Some(lead) = &self.lead
            && let Some(result) = self.out.run_driver(&**lead, None, Slot::take)
        {
            return result;
        }
        self.out.wait(Slot::take)
    }

    /// Block the current thread until the result is known or `deadline` passes.
    ///
    /// `Ok(result)` once known; `Err(call)` at `deadline`, handing the call back: it is still
    /// in flight, and the transport's own deadline still applies to it. Spins briefly before
    /// blocking, as [`wait`](Self::wait) does.
    ///
    /// # Examples
    ///
    /// ```
    /// use raftnet::message::RequestVoteRequest;
    /// use raftnet::{CallOptions, InmemTransport, ServerId, Transport};
    /// use std::time::{Duration, Instant};
    ///
    /// let (a, b) = (InmemTransport::new("a"), InmemTransport::new("b"));
    /// a.connect(&b);
    /// let call = a.request_vote(&ServerId::from("b"), &b.local_addr(), RequestVoteRequest::default(), CallOptions::default());
    ///
    /// // b's Raft side has not answered yet: the call comes back, still in flight.
    /// let call = match call.wait_deadline(Instant::now() + Duration::from_millis(10)) {
    ///     Ok(result) => panic!("unexpected result {result:?}"),
    ///     Err(call) => call,
    /// };
    /// assert!(!call.is_done());
    /// ```
    pub fn wait_deadline(self, deadline: Instant) -> std::result::Result<Result<T>, Call<T>> {
        if let Some(lead) = &self.lead
            && let Some(result) = self.out.run_driver(&**lead, Some(deadline), Slot::take)
        {
            return Ok(result);
        }
        match self.out.wait_deadline(deadline, Slot::take) {
            Some(result) => Ok(result),
            None => Err(self),
        }
    }

    /// Whether the result is known (then [`try_result`](Self::try_result) returns it and
    /// [`wait`](Self::wait) does not block). Never blocks.
    pub fn is_done(&self) -> bool {
        self.out.is_done()
    }
}

impl<T: Clone> Call<T> {
    /// The result if it is known, without blocking; `None` while the call is in flight.
    ///
    /// It peeks: every call after the first `Some` returns the same result again (a copy; the
    /// responses' byte fields are reference-counted [`Bytes`](bytes::Bytes)), so polling code
    /// can look as often as it likes. [`wait`](Self::wait) and `.await` move the result out
    /// without copying.
    ///
    /// # Panics
    /// If the call was polled as a `Future` to completion before (as `(&mut call).await` does):
    /// the result went to the awaiting code. `.await` on the call itself consumes it, so this
    /// cannot happen there.
    ///
    /// # Examples
    ///
    /// ```
    /// use raftnet::message::{TimeoutNowRequest, TimeoutNowResponse};
    /// use raftnet::{CallOptions, InmemTransport, ServerId, Transport};
    ///
    /// let (a, b) = (InmemTransport::new("a"), InmemTransport::new("b"));
    /// a.connect(&b);
    /// let call = a.timeout_now(&ServerId::from("b"), &b.local_addr(), TimeoutNowRequest::default(), CallOptions::default());
    /// assert_eq!(call.try_result(), None); // in flight
    ///
    /// b.consumer().recv()?.respond_ok(TimeoutNowResponse::default());
    /// let result = loop {
    ///     if let Some(result) = call.try_result() {
    ///         break result;
    ///     }
    ///     std::thread::yield_now();
    /// };
    /// assert_eq!(result, Ok(TimeoutNowResponse::default()));
    /// assert_eq!(call.try_result(), Some(result)); // the same result, again
    /// # Ok::<(), raftnet::Error>(())
    /// ```
    pub fn try_result(&self) -> Option<Result<T>> {
        self.out.try_result()
    }
}

/// `.await` the result under any executor; never blocks the thread or spins.
impl<T> Future for Call<T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        self.get_mut().out.poll(cx, Slot::take)
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
            Error::Protocol(crate::wire::WireError::UnexpectedMessage {
                expected: "the response type of the request",
                found: got.message_type(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn new_call() -> (Call<RequestVoteResponse>, Resolver<RequestVoteResponse>) {
        call()
    }

    fn vote(term: u64) -> RequestVoteResponse {
        RequestVoteResponse {
            term,
            ..Default::default()
        }
    }

    #[test]
    fn a_result_nobody_waits_for_is_stored_without_touching_the_event() {
        let (call, resolver) = new_call();
        resolver.resolve(Ok(vote(4)));
        // event-listener's `notify` would have allocated the event's listener list.
        assert_eq!(
            format!("{:?}", call.out.slot.event),
            "Event(<uninitialized>)"
        );
        assert_eq!(call.try_result(), Some(Ok(vote(4))));
    }

    #[test]
    fn a_thread_blocked_on_a_call_is_woken_by_its_result() {
        let (call, resolver) = new_call();
        let waiter = std::thread::spawn(move || call.wait());
        // Long enough for the waiter to finish its spin and listen (if it did not, it still
        // sees the result on its second look: the test then passes without the wake-up).
        std::thread::sleep(Duration::from_millis(50));
        resolver.resolve(Ok(vote(9)));
        assert_eq!(waiter.join().expect("waiter"), Ok(vote(9)));
    }

    #[test]
    fn try_result_twice_returns_the_same_result() {
        let (call, resolver) = new_call();
        assert_eq!(call.try_result(), None);
        assert!(!call.is_done());
        resolver.resolve(Ok(vote(4)));
        assert!(call.is_done());
        assert_eq!(call.try_result(), Some(Ok(vote(4))));
        assert_eq!(call.try_result(), Some(Ok(vote(4))));
        // Peeking left the result for the consuming reads.
        assert_eq!(call.wait(), Ok(vote(4)));

        let (call, resolver) = new_call();
        resolver.resolve(Err(Error::Timeout));
        assert_eq!(call.try_result(), Some(Err(Error::Timeout)));
        assert_eq!(call.try_result(), Some(Err(Error::Timeout)));
    }

    #[test]
    fn dropping_the_resolver_resolves_with_shutdown_exactly_once() {
        let (call, resolver) = new_call();
        let late = resolver.clone();
        drop(resolver);
        assert_eq!(call.try_result(), Some(Err(Error::Shutdown)));
        // The first resolution won: a later one, and the last clone's drop, change nothing.
        assert_eq!(late.clone().resolve(Ok(vote(1))), 0);
        drop(late);
        assert_eq!(call.try_result(), Some(Err(Error::Shutdown)));
        assert_eq!(call.wait(), Err(Error::Shutdown));
    }

    #[test]
    fn dropping_the_resolver_wakes_a_blocked_waiter() {
        let (call, resolver) = new_call();
        let waiter = std::thread::spawn(move || call.wait());
        std::thread::sleep(Duration::from_millis(20));
        drop(resolver);
        assert_eq!(waiter.join().unwrap(), Err(Error::Shutdown));
    }

    #[test]
    fn wait_deadline_hands_the_call_back_then_returns_the_result() {
        let (call, resolver) = new_call();
        let deadline = Instant::now() + Duration::from_millis(10);
        let call = call
            .wait_deadline(deadline)
            .expect_err("nothing resolved it");
        assert!(Instant::now() >= deadline);
        assert!(!call.is_done());
        resolver.resolve(Ok(vote(2)));
        assert_eq!(call.wait_deadline(deadline).ok(), Some(Ok(vote(2))));
    }

    #[test]
    fn await_moves_the_result_out() {
        let (call, resolver) = new_call();
        let waiter = std::thread::spawn(move || futures::executor::block_on(call));
        std::thread::sleep(Duration::from_millis(20));
        resolver.resolve(Ok(vote(3)));
        assert_eq!(waiter.join().unwrap(), Ok(vote(3)));
    }

    #[test]
    #[should_panic(expected = "used after its Future completed")]
    fn a_call_used_after_its_future_completed_panics_rather_than_invent_a_result() {
        let (mut call, resolver) = new_call();
        resolver.resolve(Ok(vote(1)));
        assert_eq!(futures::executor::block_on(&mut call), Ok(vote(1)));
        let _ = call.try_result();
    }
}
