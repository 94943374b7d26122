//! [`InmemTransport`]: the [`Transport`] contract in memory, for testing Raft implementations
//! without sockets (hashicorp's `InmemTransport`), with a simulated network: links between
//! transports can be connected, disconnected, cut (calls fail as unreachable) or made to lose
//! requests (calls time out). It is built from the same [`Config`] as the network transport.
//!
//! ```
//! use raftnet::{CallOptions, InmemTransport, ServerId, Transport};
//! use raftnet::message::{TimeoutNowRequest, TimeoutNowResponse};
//!
//! let a = InmemTransport::new("a");
//! let b = InmemTransport::new("b");
//! a.connect(&b);
//! let consumer = b.consumer().clone();
//! std::thread::spawn(move || consumer.recv().unwrap().respond_ok(TimeoutNowResponse::default()));
//! let answer = a.timeout_now(&ServerId::from("b"), &b.local_addr(), TimeoutNowRequest::default(), CallOptions::default());
//! assert!(answer.wait().is_ok());
//! ```

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::config::Config;
use crate::engine::HandlerSlot;
use crate::error::{Error, Result};
use crate::message::*;
use crate::transport::call::{AnyResolver, Call, Resolver, call};
use crate::transport::pipeline::{
    AppendPipeline, PipelineBackend, PipelineShared, PipelinedRequest,
};
use crate::transport::rpc::{Consumer, Responder, Rpc};
use crate::transport::snapshot::SnapshotReader;
use crate::transport::*;
use crate::wire::*;

fn lock_write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

/// The timeout of [`InmemTransport::new`]: hashicorp's in-memory default (v1.1.2 used 50 ms, HEAD
/// uses 500 ms). Shorter than the network's [`DEFAULT_TIMEOUT`](crate::DEFAULT_TIMEOUT) because
/// nothing in memory is slow but a peer that does not answer.
pub const DEFAULT_INMEM_TIMEOUT: Duration = Duration::from_millis(500);

/// hashicorp gives InstallSnapshot and TimeoutNow ten times the normal timeout.
const SLOW_RPC_FACTOR: u32 = 10;

/// The state of the link from one transport to a peer, set with
/// [`InmemTransport::set_link`] (also named `raftnet::Link`, beside `InmemTransport`).
///
/// ```
/// use raftnet::message::RequestVoteRequest;
/// use raftnet::{CallOptions, Error, InmemTransport, Link, ServerId, Transport};
///
/// let a = InmemTransport::new("a");
/// let b = InmemTransport::new("b");
/// a.connect(&b);
/// a.set_link(&b.local_addr(), Link::Cut);
/// let vote = a.request_vote(&ServerId::from("b"), &b.local_addr(), RequestVoteRequest::default(), CallOptions::default());
/// assert!(matches!(vote.wait(), Err(Error::Unreachable { addr, .. }) if addr == "b"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Link {
    /// Requests are delivered.
    #[default]
    Up,
    /// Calls fail at once as unreachable, as if the peer's machine were off.
    Cut,
    /// Requests are lost on the way; calls time out.
    Lossy,
}

struct Route {
    peer: Weak<Inner>,
    link: Link,
}

/// Stale places in the deadline order tolerated beyond twice the live tasks before they are
/// swept: a sweep is a pass over the whole order, so it waits for enough answers to pay for it.
const STALE_DEADLINE_SLACK: usize = 64;

/// A deadline's action: called with `false` when its time comes, with `true` when the transport
/// closes first (it then fails what it guards with `Shutdown`).
type Task = Box<dyn FnOnce(bool) + Send>;

/// Deadline tasks keyed by id; those with a time also in time order (the others wait for the
/// transport to close).
#[derive(Default)]
struct DeadlineState {
    order: BinaryHeap<Reverse<(Instant, u64)>>,
    tasks: HashMap<u64, Task>,
    closed: bool,
}

/// A deadline thread: runs each task when its time comes, or at once with `closing = true` when
/// the transport closes. A call's task is cancelled when its answer arrives first.
struct Deadlines {
    state: Mutex<DeadlineState>,
    changed: Condvar,
    next: AtomicU64,
}

impl Deadlines {
    /// Run `task` at `at`, or (without a time, or if it is never cancelled) when the transport
    /// closes. Returns the id that cancels it.
    fn add(&self, at: Option<Instant>, task: Task) -> u64 {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.closed {
            drop(s);
            task(true);
            return id;
        }
        s.tasks.insert(id, task);
        if let Some(at) = at {
            s.order.push(Reverse((at, id)));
            drop(s);
            self.changed.notify_one();
        }
        id
    }

    /// Forget task `id` (its call was answered). Its place in the time order stays until its
    /// time (the thread then finds no task and skips it), unless such stale places come to
    /// outnumber the live tasks: then they go at once, so long timeouts cannot grow the order
    /// without bound.
    fn cancel(&self, id: u64) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let DeadlineState { order, tasks, .. } = &mut *s;
        tasks.remove(&id);
        if order.len() > 2 * tasks.len() + STALE_DEADLINE_SLACK {
            order.retain(|Reverse((_, id))| tasks.contains_key(id));
        }
    }

    fn run(&self) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if s.closed {
                return;
            }
            let now = Instant::now();
            match s.order.peek().copied() {
                Some(Reverse((at, id))) if at <= now => {
                    s.order.pop();
                    if let Some(task) = s.tasks.remove(&id) {
                        drop(s);
                        task(false);
                        s = self.state.lock().unwrap_or_else(|e| e.into_inner());
                    }
                }
                Some(Reverse((at, _))) => {
                    s = self
                        .changed
                        .wait_timeout(s, at - now)
                        .unwrap_or_else(|e| e.into_inner())
                        .0;
                }
                None => s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner()),
            }
        }
    }

    /// Stop the thread and run every pending task as closing.
    fn close(&self) {
        let tasks = {
            let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            s.closed = true;
            s.order.clear();
            std::mem::take(&mut s.tasks)
        };
        self.changed.notify_all();
        for (_, task) in tasks {
            task(true);
        }
    }
}

struct Inner {
    addr: ServerAddress,
    consumer: Consumer,
    config: Config,
    routes: RwLock<HashMap<ServerAddress, Route>>,
    handlers: HandlerSlot,
    pipelines: Mutex<Vec<(ServerAddress, Weak<PipelineShared>)>>,
    closed: AtomicBool,
    deadlines: Arc<Deadlines>,
}

/// An in-memory transport. Connect two with [`connect`](InmemTransport::connect) (each direction
/// separately, as in hashicorp/raft) and they exchange RPCs through their consumers. Build it
/// with [`new`](InmemTransport::new) (hashicorp's in-memory defaults) or from a [`Config`] with
/// [`with_config`](InmemTransport::with_config).
pub struct InmemTransport {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for InmemTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InmemTransport")
            .field("addr", &self.inner.addr)
            .field("config", &self.inner.config)
            .finish()
    }
}

static NEXT_ADDR: AtomicU64 = AtomicU64::new(1);

impl InmemTransport {
    /// A transport at `addr` (an empty address gets a unique generated one) with hashicorp's
    /// in-memory settings: [`with_config`](Self::with_config) with `Config::default()` and its
    /// timeout set to [`DEFAULT_INMEM_TIMEOUT`] (500 ms).
    pub fn new(addr: impl Into<ServerAddress>) -> InmemTransport {
        InmemTransport::with_config(addr, Config::default().timeout(Some(DEFAULT_INMEM_TIMEOUT)))
    }

    /// A transport at `addr` (an empty address gets a unique generated one) that behaves as
    /// `config` says, where that means something in memory:
    ///
    /// - [`timeout`](Config::timeout): the deadline of each call and pipelined append;
    ///   InstallSnapshot and TimeoutNow get ten times as long, as in hashicorp's
    ///   `InmemTransport`. `Config::default()`'s is the network's 10 s; [`new`](Self::new)
    ///   uses hashicorp's in-memory 500 ms.
    /// - [`max_rpcs_in_flight`](Config::max_rpcs_in_flight): the pipeline depth (1 disables
    ///   pipelining).
    /// - [`address_provider`](Config::address_provider): the address a call is routed to, and
    ///   what [`encode_peer`](Transport::encode_peer) returns.
    ///
    /// The rest describe connections, frames and streamed snapshot bodies, none of which exist
    /// here (requests are handed over as values, and a snapshot's receiver reads the sender's
    /// reader), so they are ignored: `max_pool`, `max_frame_body` (messages of any size pass),
    /// `large_payload_threshold`, `timeout_scale`, `snapshot_chunk`, `snapshot_buffer`, `codec`.
    pub fn with_config(addr: impl Into<ServerAddress>, config: Config) -> InmemTransport {
        let mut addr = addr.into();
        if addr.0.is_empty() {
            addr = ServerAddress(format!(
                "inmem-{}",
                NEXT_ADDR.fetch_add(1, Ordering::Relaxed)
            ));
        }
        let deadlines = Arc::new(Deadlines {
            state: Mutex::new(Default::default()),
            changed: Condvar::new(),
            next: AtomicU64::new(0),
        });
        let runner = deadlines.clone();
        let thread = std::thread::Builder::new()
            .name("raftnet-inmem-deadlines".into())
            .spawn(move || runner.run())
            .ok();
        InmemTransport {
            inner: Arc::new(Inner {
                addr,
                consumer: Consumer::new(None),
                config,
                routes: RwLock::new(HashMap::new()),
                handlers: HandlerSlot::default(),
                pipelines: Mutex::new(Vec::new()),
                closed: AtomicBool::new(false),
                deadlines,
            }),
            thread: Mutex::new(thread),
        }
    }

    /// Route calls for `peer`'s address to it (this direction only).
    pub fn connect(&self, peer: &InmemTransport) {
        self.connect_addr(peer.inner.addr.clone(), peer);
    }

    /// Route calls for `addr` to `peer`.
    pub fn connect_addr(&self, addr: ServerAddress, peer: &InmemTransport) {
        self.inner
            .routes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                addr,
                Route {
                    peer: Arc::downgrade(&peer.inner),
                    link: Link::Up,
                },
            );
    }

    /// Remove the route to `addr` and close pipelines to it.
    pub fn disconnect(&self, addr: &ServerAddress) {
        lock_write(&self.inner.routes).remove(addr);
        self.fail_pipelines(Some(addr), Error::PipelineClosed);
    }

    /// Remove every route and close every pipeline.
    pub fn disconnect_all(&self) {
        lock_write(&self.inner.routes).clear();
        self.fail_pipelines(None, Error::PipelineClosed);
    }

    /// Fail (and forget) the pipelines to `to`, or all of them.
    fn fail_pipelines(&self, to: Option<&ServerAddress>, error: Error) {
        let mut pipelines = self
            .inner
            .pipelines
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        pipelines.retain(|(addr, p)| {
            if to.is_some_and(|to| to != addr) {
                return true;
            }
            if let Some(p) = p.upgrade() {
                p.fail(error.clone());
            }
            false
        });
    }

    /// Change the link to `addr` (which must be connected): up, cut, or losing requests.
    pub fn set_link(&self, addr: &ServerAddress, link: Link) {
        if let Some(route) = self
            .inner
            .routes
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(addr)
        {
            route.link = link;
        }
    }
}

impl Inner {
    fn peer(&self, target: &ServerAddress) -> Result<(Arc<Inner>, Link)> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::Shutdown);
        }
        let unreachable = || Error::Unreachable {
            addr: target.0.clone(),
            reason: Arc::new(std::io::Error::new(
                std::io::ErrorKind::NotConnected,
                format!("failed to connect to peer: {target}"),
            )),
        };
        let routes = self.routes.read().unwrap_or_else(|e| e.into_inner());
        let route = routes.get(target).ok_or_else(unreachable)?;
        let peer = route
            .peer
            .upgrade()
            .filter(|p| !p.closed.load(Ordering::Acquire))
            .ok_or_else(unreachable)?;
        if route.link == Link::Cut {
            return Err(unreachable());
        }
        Ok((peer, route.link))
    }

    /// The deadline `timeout` from now, if there is a timeout and an `Instant` can hold it.
    fn deadline_in(timeout: Option<Duration>) -> Option<Instant> {
        timeout.and_then(|t| Instant::now().checked_add(t))
    }

    /// Hand `request` to the peer; `answer` receives its response or failure exactly once.
    /// Without a deadline the call waits for its answer or for this transport to close.
    fn deliver(
        &self,
        target: &ServerAddress,
        request: Request,
        snapshot: Option<SnapshotReader>,
        deadline: Option<Instant>,
        answer: impl Fn(Result<Response>) + Send + Sync + 'static,
    ) {
        let answer = Arc::new(answer);
        let (peer, link) = match self.peer(target) {
            Ok(p) => p,
            Err(e) => return answer(Err(e)),
        };
        let on_deadline = answer.clone();
        let task = self.deadlines.add(
            deadline,
            Box::new(move |closing| {
                on_deadline(Err(if closing {
                    Error::Shutdown
                } else {
                    Error::Timeout
                }))
            }),
        );
        if link == Link::Lossy {
            return;
        }
        let kind = request.message_type();
        // An answered call needs no deadline any more; forgetting it keeps calls without one
        // from piling up until close.
        let deadlines = self.deadlines.clone();
        let responder = Responder::direct(kind, move |result| {
            deadlines.cancel(task);
            answer(result.map_err(Error::Remote))
        });
        let rpc = Rpc::new(request, snapshot, responder, None, Instant::now());
        let heartbeat = matches!(&rpc.request, Request::AppendEntries(r) if r.is_heartbeat());
        let handlers = peer.handlers.get();
        let rpc = match (handlers.heartbeat.filter(|_| heartbeat), handlers.service) {
            (Some(handler), _) => serve_here(|| {
                handler(rpc);
                None
            }),
            (None, Some(service)) => serve_here(|| service.serve(rpc)),
            (None, None) => Some(rpc),
        };
        let Some(rpc) = rpc else {
            return;
        };
        peer.consumer.shared().push(rpc);
    }

    fn call<T: Send + 'static>(
        &self,
        id: &ServerId,
        target: &ServerAddress,
        request: Request,
        snapshot: Option<SnapshotReader>,
        options: CallOptions,
        wrap: fn(Resolver<T>) -> AnyResolver,
    ) -> Call<T> {
        let (call, resolver) = call();
        let factor = match request {
            Request::InstallSnapshot(_) | Request::TimeoutNow(_) => SLOW_RPC_FACTOR,
            _ => 1,
        };
        let timeout = self.config.timeout.map(|t| t.saturating_mul(factor));
        // The earlier of the configured deadline and the call's own, if either exists.
        let deadline = [Self::deadline_in(timeout), options.deadline]
            .into_iter()
            .flatten()
            .min();
        let target = self.config.dial_address(id, target);
        let resolver = wrap(resolver);
        self.deliver(&target, request, snapshot, deadline, move |result| {
            resolver.clone().resolve(result);
        });
        call
    }
}

impl Transport for InmemTransport {
    fn consumer(&self) -> &Consumer {
        &self.inner.consumer
    }

    fn local_addr(&self) -> ServerAddress {
        self.inner.addr.clone()
    }

    fn append_entries(
        &self,
        id: &ServerId,
        target: &ServerAddress,
        request: AppendEntriesRequest,
        options: CallOptions,
    ) -> Call<AppendEntriesResponse> {
        self.inner.call(
            id,
            target,
            request.into(),
            None,
            options,
            AnyResolver::AppendEntries,
        )
    }

    fn request_vote(
        &self,
        id: &ServerId,
        target: &ServerAddress,
        request: RequestVoteRequest,
        options: CallOptions,
    ) -> Call<RequestVoteResponse> {
        self.inner.call(
            id,
            target,
            request.into(),
            None,
            options,
            AnyResolver::RequestVote,
        )
    }

    fn request_pre_vote(
        &self,
        id: &ServerId,
        target: &ServerAddress,
        request: RequestPreVoteRequest,
        options: CallOptions,
    ) -> Call<RequestPreVoteResponse> {
        self.inner.call(
            id,
            target,
            request.into(),
            None,
            options,
            AnyResolver::RequestPreVote,
        )
    }

    fn timeout_now(
        &self,
        id: &ServerId,
        target: &ServerAddress,
        request: TimeoutNowRequest,
        options: CallOptions,
    ) -> Call<TimeoutNowResponse> {
        self.inner.call(
            id,
            target,
            request.into(),
            None,
            options,
            AnyResolver::TimeoutNow,
        )
    }

    fn install_snapshot(
        &self,
        id: &ServerId,
        target: &ServerAddress,
        request: InstallSnapshotRequest,
        data: SnapshotData,
        options: CallOptions,
    ) -> Call<InstallSnapshotResponse> {
        if request.size < 0 {
            return Call::failed(Error::Snapshot(format!(
                "negative snapshot size {}",
                request.size
            )));
        }
        // As in hashicorp/raft, the receiver reads the sender's reader directly.
        let reader = SnapshotReader::direct(data, request.size as u64);
        self.inner.call(
            id,
            target,
            request.into(),
            Some(reader),
            options,
            AnyResolver::InstallSnapshot,
        )
    }

    fn append_entries_pipeline(
        &self,
        id: &ServerId,
        target: &ServerAddress,
    ) -> Result<AppendPipeline> {
        let depth = self.inner.config.max_rpcs_in_flight;
        if depth < 2 {
            return Err(Error::PipelineNotSupported);
        }
        // Routed once, like the network pipeline's connection.
        let target = self.inner.config.dial_address(id, target).into_owned();
        self.inner.peer(&target)?;
        let shared = PipelineShared::new(depth);
        self.inner
            .pipelines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((target.clone(), Arc::downgrade(&shared)));
        Ok(AppendPipeline::new(
            shared.clone(),
            Box::new(InmemPipeline {
                transport: Arc::downgrade(&self.inner),
                target,
                shared: Arc::downgrade(&shared),
            }),
        ))
    }

    fn encode_peer(&self, id: &ServerId, addr: &ServerAddress) -> Bytes {
        Bytes::from(
            self.inner
                .config
                .dial_address(id, addr)
                .into_owned()
                .0
                .into_bytes(),
        )
    }

    fn set_heartbeat_handler(&self, handler: Option<HeartbeatHandler>) {
        self.inner.handlers.set_heartbeat(handler);
    }

    fn set_service(&self, service: Option<Arc<dyn Service>>) {
        self.inner.handlers.set_service(service);
    }

    /// Nothing to reset in memory.
    fn close_streams(&self) {}

    fn close(&self) {
        if self.inner.closed.swap(true, Ordering::AcqRel) {
            return;
        }
        // Pipelines fail with Shutdown (not PipelineClosed, as a plain disconnect would).
        self.fail_pipelines(None, Error::Shutdown);
        self.disconnect_all();
        // Calls still waiting for an answer fail with Shutdown.
        self.inner.deadlines.close();
        self.inner.consumer.shared().close();
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
    }
}

impl Drop for InmemTransport {
    fn drop(&mut self) {
        self.close();
    }
}

struct InmemPipeline {
    transport: Weak<Inner>,
    target: ServerAddress,
    shared: Weak<PipelineShared>,
}

impl PipelineBackend for InmemPipeline {
    fn send(&self, seq: u64, request: PipelinedRequest) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let Some(transport) = self.transport.upgrade() else {
            shared.fail(Error::Shutdown);
            return;
        };
        let deadline = Inner::deadline_in(transport.config.timeout);
        let pipeline = self.shared.clone();
        transport.deliver(
            &self.target,
            Request::AppendEntries((*request).clone()),
            None,
            deadline,
            move |result| {
                let Some(p) = pipeline.upgrade() else { return };
                match result {
                    Ok(Response::AppendEntries(r)) => {
                        p.complete(seq, Ok(r));
                    }
                    Ok(other) => {
                        p.complete(
                            seq,
                            Err(Error::Protocol(WireError::UnexpectedMessage {
                                expected: "an AppendEntries response",
                                found: other.message_type(),
                            })),
                        );
                    }
                    // A timeout or lost peer ends the pipeline, as on the network.
                    Err(Error::Remote(text)) => {
                        p.complete(seq, Err(Error::Remote(text)));
                    }
                    Err(e) => p.fail(e),
                }
            },
        );
    }

    fn close(&self) {}
}

/// Run a handler where the sender's call delivers to it, as the network transport runs it on
/// its own thread: a blocking wait inside panics, and a panic is caught (the RPC it held is
/// dropped, which answers it with an error).
fn serve_here(handler: impl FnOnce() -> Option<Rpc>) -> Option<Rpc> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        crate::transport::wait::on_transport_thread(handler)
    }))
    .unwrap_or(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (deadline tasks, places in the deadline order) of `t`.
    fn deadline_state(t: &InmemTransport) -> (usize, usize) {
        let s = t
            .inner
            .deadlines
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        (s.tasks.len(), s.order.len())
    }

    /// An answered call forgets its deadline task at once, with or without a timeout (without
    /// one, the task would otherwise wait for the transport to close), and the places answered
    /// calls leave in the deadline order do not pile up until their (here distant) time.
    #[test]
    fn answered_calls_leave_no_deadline_behind() {
        const CALLS: usize = 3 * STALE_DEADLINE_SLACK;
        for timeout in [None, Some(Duration::from_secs(60))] {
            let config = Config::default().timeout(timeout);
            let a = InmemTransport::with_config("a", config.clone());
            let b = InmemTransport::with_config("b", config);
            a.connect(&b);
            let consumer = b.consumer().clone();
            let server = std::thread::spawn(move || {
                for _ in 0..CALLS {
                    let rpc = consumer.recv().expect("a request");
                    rpc.respond_ok(TimeoutNowResponse::default());
                }
            });
            for _ in 0..CALLS {
                let call = a.timeout_now(
                    &ServerId::from("b"),
                    &b.local_addr(),
                    TimeoutNowRequest::default(),
                    CallOptions::default(),
                );
                assert!(call.wait().is_ok(), "timeout {timeout:?}");
            }
            server.join().expect("the server thread");
            let (tasks, order) = deadline_state(&a);
            assert_eq!(tasks, 0, "timeout {timeout:?}");
            assert!(
                order <= STALE_DEADLINE_SLACK + 1,
                "timeout {timeout:?}: {order} places"
            );
        }
    }
}
