//! [`InmemTransport`]: the [`Transport`] contract in memory, for testing Raft implementations
//! without sockets (hashicorp's `InmemTransport`), with a simulated network: links between
//! transports can be connected, disconnected, cut (calls fail as unreachable) or made to lose
//! requests (calls time out).
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

use crate::error::{Error, Result};
use crate::message::*;
use crate::transport::call::{AnyResolver, Call, Resolver, call};
use crate::transport::pipeline::{AppendPipeline, PipelineBackend, PipelineShared};
use crate::transport::rpc::{Consumer, Responder, Rpc};
use crate::transport::snapshot::SnapshotReader;
use crate::transport::*;
use crate::wire::*;

fn lock_write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(|e| e.into_inner())
}

/// hashicorp's default (v1.1.2 used 50 ms, HEAD uses 500 ms).
pub const DEFAULT_INMEM_TIMEOUT: Duration = Duration::from_millis(500);

/// hashicorp gives InstallSnapshot and TimeoutNow ten times the normal timeout.
const SLOW_RPC_FACTOR: u32 = 10;

/// The state of the link from one transport to a peer.
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

/// A deadline's action: called with `false` when its time comes, with `true` when the transport
/// closes first (it then fails what it guards with `Shutdown`).
type Task = Box<dyn FnOnce(bool) + Send>;

/// Deadline tasks keyed by id, in time order.
#[derive(Default)]
struct DeadlineState {
    order: BinaryHeap<Reverse<(Instant, u64)>>,
    tasks: HashMap<u64, Task>,
    closed: bool,
}

/// A deadline thread: runs each task when its time comes, or at once with `closing = true` when
/// the transport closes.
struct Deadlines {
    state: Mutex<DeadlineState>,
    changed: Condvar,
    next: AtomicU64,
}

impl Deadlines {
    fn add(&self, at: Instant, task: Task) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if s.closed {
            drop(s);
            task(true);
            return;
        }
        s.order.push(Reverse((at, id)));
        s.tasks.insert(id, task);
        drop(s);
        self.changed.notify_one();
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
    timeout: Duration,
    max_rpcs_in_flight: usize,
    routes: RwLock<HashMap<ServerAddress, Route>>,
    heartbeat: RwLock<Option<HeartbeatHandler>>,
    pipelines: Mutex<Vec<(ServerAddress, Weak<PipelineShared>)>>,
    closed: AtomicBool,
    deadlines: Arc<Deadlines>,
}

/// An in-memory transport. Connect two with [`connect`](InmemTransport::connect) (each direction
/// separately, as in hashicorp/raft) and they exchange RPCs through their consumers.
pub struct InmemTransport {
    inner: Arc<Inner>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for InmemTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InmemTransport")
            .field("addr", &self.inner.addr)
            .finish()
    }
}

static NEXT_ADDR: AtomicU64 = AtomicU64::new(1);

impl InmemTransport {
    /// A transport at `addr` (an empty address gets a unique generated one), with hashicorp's
    /// default 500 ms timeout.
    pub fn new(addr: impl Into<ServerAddress>) -> InmemTransport {
        InmemTransport::with_timeout(addr, DEFAULT_INMEM_TIMEOUT)
    }

    /// A transport whose calls time out after `timeout` (InstallSnapshot and TimeoutNow: ten
    /// times that).
    pub fn with_timeout(addr: impl Into<ServerAddress>, timeout: Duration) -> InmemTransport {
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
                timeout,
                max_rpcs_in_flight: crate::config::DEFAULT_MAX_RPCS_IN_FLIGHT,
                routes: RwLock::new(HashMap::new()),
                heartbeat: RwLock::new(None),
                pipelines: Mutex::new(Vec::new()),
                closed: AtomicBool::new(false),
                deadlines,
            }),
            thread: Mutex::new(thread),
        }
    }

    /// Set the pipeline depth (below 2 disables pipelining).
    pub fn set_max_rpcs_in_flight(&mut self, n: usize) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.max_rpcs_in_flight = n;
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

    /// Hand `request` to the peer; `answer` receives its response or failure exactly once.
    fn deliver(
        &self,
        target: &ServerAddress,
        request: Request,
        snapshot: Option<SnapshotReader>,
        deadline: Instant,
        answer: impl Fn(Result<Response>) + Send + Sync + 'static,
    ) {
        let answer = Arc::new(answer);
        let (peer, link) = match self.peer(target) {
            Ok(p) => p,
            Err(e) => return answer(Err(e)),
        };
        let on_deadline = answer.clone();
        self.deadlines.add(
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
        let responder =
            Responder::direct(kind, move |result| answer(result.map_err(Error::Remote)));
        let rpc = Rpc::new(request, snapshot, responder, None, Instant::now());
        let heartbeat = matches!(&rpc.request, Request::AppendEntries(r) if r.is_heartbeat());
        if heartbeat {
            let handler = peer
                .heartbeat
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Some(handler) = handler {
                handler(rpc);
                return;
            }
        }
        peer.consumer.shared().push(rpc);
    }

    fn call<T: Send + 'static>(
        &self,
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
        let mut deadline = Instant::now() + self.timeout * factor;
        if let Some(d) = options.deadline {
            deadline = deadline.min(d);
        }
        let resolver = wrap(resolver);
        self.deliver(target, request, snapshot, deadline, move |result| {
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
        _id: &ServerId,
        target: &ServerAddress,
        request: AppendEntriesRequest,
        options: CallOptions,
    ) -> Call<AppendEntriesResponse> {
        self.inner.call(
            target,
            request.into(),
            None,
            options,
            AnyResolver::AppendEntries,
        )
    }

    fn request_vote(
        &self,
        _id: &ServerId,
        target: &ServerAddress,
        request: RequestVoteRequest,
        options: CallOptions,
    ) -> Call<RequestVoteResponse> {
        self.inner.call(
            target,
            request.into(),
            None,
            options,
            AnyResolver::RequestVote,
        )
    }

    fn request_pre_vote(
        &self,
        _id: &ServerId,
        target: &ServerAddress,
        request: RequestPreVoteRequest,
        options: CallOptions,
    ) -> Call<RequestPreVoteResponse> {
        self.inner.call(
            target,
            request.into(),
            None,
            options,
            AnyResolver::RequestPreVote,
        )
    }

    fn timeout_now(
        &self,
        _id: &ServerId,
        target: &ServerAddress,
        request: TimeoutNowRequest,
        options: CallOptions,
    ) -> Call<TimeoutNowResponse> {
        self.inner.call(
            target,
            request.into(),
            None,
            options,
            AnyResolver::TimeoutNow,
        )
    }

    fn install_snapshot(
        &self,
        _id: &ServerId,
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
            target,
            request.into(),
            Some(reader),
            options,
            AnyResolver::InstallSnapshot,
        )
    }

    fn append_entries_pipeline(
        &self,
        _id: &ServerId,
        target: &ServerAddress,
    ) -> Result<AppendPipeline> {
        if self.inner.max_rpcs_in_flight < 2 {
            return Err(Error::PipelineNotSupported);
        }
        self.inner.peer(target)?;
        let shared = PipelineShared::new(self.inner.max_rpcs_in_flight);
        self.inner
            .pipelines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((target.clone(), Arc::downgrade(&shared)));
        Ok(AppendPipeline::new(
            shared.clone(),
            Box::new(InmemPipeline {
                transport: Arc::downgrade(&self.inner),
                target: target.clone(),
                shared: Arc::downgrade(&shared),
            }),
        ))
    }

    fn encode_peer(&self, _id: &ServerId, addr: &ServerAddress) -> Bytes {
        Bytes::from(addr.0.clone().into_bytes())
    }

    fn set_heartbeat_handler(&self, handler: Option<HeartbeatHandler>) {
        *self
            .inner
            .heartbeat
            .write()
            .unwrap_or_else(|e| e.into_inner()) = handler;
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
    fn send(&self, seq: u64, request: Arc<AppendEntriesRequest>) {
        let Some(shared) = self.shared.upgrade() else {
            return;
        };
        let Some(transport) = self.transport.upgrade() else {
            shared.fail(Error::Shutdown);
            return;
        };
        let deadline = Instant::now() + transport.timeout;
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
                            Err(Error::Protocol(WireError::WrongType {
                                field: "pipeline response",
                                expected: "an AppendEntries response",
                                found: other.message_type() as u8,
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
