//! [`NetTransport`]: the TCP transport. This file is its API: it turns calls into commands for
//! the connection engine (`crate::engine`), which a driver (`crate::driver`) runs where the
//! [`Placement`] says.
//!
//! ```text
//!  callers (any thread)          driver thread or task: engine + sockets        Raft side
//!  ───────────────────           ───────────────────────────────────────        ─────────
//!  append_entries() ──Command──▶ submission queue ─▶ pool / dial ─▶ socket ─▶ peer
//!        ▲                                                                    │
//!        └──── Call resolved ◀── decode answer ◀── socket ◀───────────────────┘
//!
//!  peer ─▶ socket ─▶ decode (zero-copy) ─▶ consumer queue ─────────▶ Consumer::recv()
//!                     ├─ heartbeat ─▶ handler  (on the driver)            │  (or recv_batch)
//!                     └─ any RPC ───▶ Service  (on the driver) ─┐         │
//!  peer ◀─ socket ◀─ encode ◀───────── answered in place ◀───────┘         │
//!                          ◀─ completion queue ◀──────────────── Rpc::respond() / Answers
//! ```
//!
//! The queues are lock-free (`crossbeam-queue`); a thread is woken only when it sleeps.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;

use crate::config::Config;
use crate::driver::{self, Backend, DriverHandle, Placement};
use crate::engine::Shared;
use crate::engine::feed::{self, SnapshotFeed};
use crate::engine::handoff::{AnyResolver, Command, Handoff, Lead, OutboundCall, OutboundSnapshot};
use crate::error::{Error, Result};
use crate::message::*;
use crate::metrics::{Metrics, RpcType};
use crate::transport::call::{Call, Resolver, call};
use crate::transport::pipeline::{
    AppendPipeline, PipelineBackend, PipelineShared, PipelinedRequest,
};
use crate::transport::rpc::Consumer;
use crate::transport::*;
use crate::wire::*;

/// The network transport: hashicorp/raft's `NetworkTransport` contract over TCP, on one
/// connection engine driven by one thread or task ([`Placement`]).
///
/// ```
/// use raftnet::{CallOptions, Config, NetTransport, ServerId, Transport};
/// use raftnet::message::{RequestVoteRequest, RequestVoteResponse};
///
/// // Two transports on ephemeral loopback ports.
/// let a = NetTransport::bind("127.0.0.1:0", None, Config::default())?;
/// let b = NetTransport::bind("127.0.0.1:0", None, Config::default())?;
///
/// // b's Raft side answers every vote request.
/// let consumer = b.consumer().clone();
/// let server = std::thread::spawn(move || {
///     let rpc = consumer.recv().unwrap();
///     rpc.respond_ok(RequestVoteResponse { term: 3, granted: true, ..Default::default() });
/// });
///
/// // a asks b for a vote.
/// let vote = a.request_vote(
///     &ServerId::from("b"),
///     &b.local_addr(),
///     RequestVoteRequest { term: 3, ..Default::default() },
///     CallOptions::default(),
/// );
/// assert!(vote.wait()?.granted);
/// server.join().unwrap();
/// # Ok::<(), raftnet::Error>(())
/// ```
pub struct NetTransport {
    shared: Arc<Shared>,
    /// Where calls and pipelines hand their commands to the engine.
    commands: Commands,
    local_addr: SocketAddr,
    bound_addr: SocketAddr,
    driver: Mutex<Option<DriverHandle>>,
    next_id: AtomicU64,
    /// What the driver waits on, resolved at bind.
    backend: Option<Backend>,
}

impl fmt::Debug for NetTransport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetTransport")
            .field("local_addr", &self.local_addr)
            .field("config", &self.shared.config)
            .finish()
    }
}

impl NetTransport {
    /// Listen on `bind` and start the transport's driver on a thread of its own
    /// ([`Placement::Thread`]).
    ///
    /// `advertise` is the address peers should dial (and what [`local_addr`](Transport::local_addr)
    /// returns); without it the bound address is used, which must then be a specific IP
    /// (hashicorp: "local bind address is not advertisable" for 0.0.0.0 or ::).
    ///
    /// # Errors
    ///
    /// All fatal ([`Error::is_fatal`]):
    /// - [`Error::Bind`]: `bind` did not resolve (`addr: None`), or binding failed (`addr` is
    ///   the address tried last, `reason` why: in use, not an address of this host, ...).
    /// - [`Error::NotAdvertisable`]: bound to 0.0.0.0 or :: without `advertise`.
    /// - [`Error::Start`]: the driver's thread or poller could not be created.
    pub fn bind(
        bind: impl ToSocketAddrs,
        advertise: Option<SocketAddr>,
        config: Config,
    ) -> Result<NetTransport> {
        Self::bind_with(bind, advertise, config, Placement::Thread)
    }

    /// Like [`bind`](NetTransport::bind), but the driver runs as a task on `runtime` instead of
    /// a thread of its own ([`Placement::Runtime`], feature `tokio`).
    ///
    /// For a Raft that lives on that runtime (openraft does): its calls, the driver and its
    /// serving task then hand work to each other as tasks of one runtime, instead of waking a
    /// sleeping thread at every crossing (raftnet-bench's openraft cluster, BENCHMARKS.md:
    /// writes/s at 64 clients 0.55x → 0.87x the tokio network's with the nodes on two CPUs).
    /// Blocking callers work as with `bind`. A [heartbeat handler](Transport::set_heartbeat_handler)
    /// then runs on a worker of `runtime`, so it must not block.
    ///
    /// With [`Backend::Uring`](crate::Backend::Uring) named in `config`, the io_uring driver
    /// runs on a thread of its own beside the runtime instead of as its task.
    ///
    /// [`close`](Transport::close) stops the task. Called from outside the runtime it waits,
    /// as `bind`'s does, until every connection is closed and every call resolved; called from
    /// inside (a task, `block_on`), it returns at once and the task finishes on its own shortly
    /// after. If the runtime shuts down first, the task is dropped: its calls resolve with
    /// [`Error::Shutdown`], and its sockets close.
    ///
    /// ```
    /// use raftnet::{Config, NetTransport, Transport};
    ///
    /// let runtime = tokio::runtime::Runtime::new()?;
    /// let transport = NetTransport::bind_on("127.0.0.1:0", None, Config::default(), runtime.handle())?;
    /// println!("listening on {}", transport.local_addr());
    /// transport.close();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    #[cfg(feature = "tokio")]
    pub fn bind_on(
        bind: impl ToSocketAddrs,
        advertise: Option<SocketAddr>,
        config: Config,
        runtime: &tokio::runtime::Handle,
    ) -> Result<NetTransport> {
        Self::bind_with(bind, advertise, config, Placement::Runtime(runtime.clone()))
    }

    /// Listen on `bind` and start the driver where `placement` says (for code that chooses at
    /// run time; [`bind`](NetTransport::bind) and `bind_on` are the usual spellings).
    ///
    /// **Logs** ([`tracing`](https://docs.rs/tracing); with feature `log`, on by default, also
    /// [`log`](https://docs.rs/log) records while no tracing subscriber is installed): the
    /// driver runs in an `info` span named
    /// `raftnet` with the transport's `listener` address (and `advertised`, when that differs),
    /// a child of the span current here, so binding inside a span that names the node
    /// (`info_span!("node", id = 2)`) puts the node's id on every line the transport logs.
    /// Each connection has a `debug` span `conn` under it: its `peer` address, `dir`
    /// (`accepted` or `dialled`), the `lane` of a dialled one and the connection's key (`conn`).
    /// What needs attention is `warn` (a limit acting on a peer, a protocol error, a slow peer
    /// closed) or `error`; connections opening and closing (with the reason) are `debug`;
    /// snapshots starting and ending are `info`; each call, request and answer is `trace`.
    pub fn bind_with(
        bind: impl ToSocketAddrs,
        advertise: Option<SocketAddr>,
        config: Config,
        placement: Placement,
    ) -> Result<NetTransport> {
        let candidates = bind.to_socket_addrs().map_err(|e| Error::Bind {
            addr: None,
            reason: Arc::new(e),
        })?;
        let mut failure = None;
        let mut bound = None;
        for candidate in candidates {
            match listen(candidate) {
                Ok(l) => {
                    bound = Some(l);
                    break;
                }
                Err(e) => failure = Some((candidate, e)),
            }
        }
        let listener = bound.ok_or_else(|| match failure {
            // The last candidate's error: the others failed too, most likely the same way.
            Some((candidate, e)) => Error::Bind {
                addr: Some(candidate),
                reason: Arc::new(e),
            },
            None => Error::Bind {
                addr: None,
                reason: Arc::new(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "it resolved to no address",
                )),
            },
        })?;
        Self::from_listener(listener, advertise, config, placement)
    }

    /// Serve on `listener`, a socket already bound and listening, and start the driver where
    /// `placement` says: for a listener this process did not bind itself (systemd's socket
    /// activation, or a supervisor that holds a node's port across restarts so no other
    /// process can take it while the node is down, as `tests/node_example.rs` does through the
    /// node example's `--listen-fd`), or one bound with options `bind` does not set. Its
    /// backlog is what it was listened with (`bind` listens with 1024); the driver sets it
    /// non-blocking (the blocking backend, blocking). Otherwise as
    /// [`bind_with`](NetTransport::bind_with), logs included.
    ///
    /// ```
    /// use raftnet::{Config, NetTransport, Placement, Transport};
    ///
    /// let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    /// let port = listener.local_addr()?.port();
    /// let transport = NetTransport::from_listener(listener, None, Config::default(), Placement::Thread)?;
    /// assert_eq!(transport.bound_addr().port(), port);
    /// transport.close();
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// As `bind_with`'s, except that [`Error::Bind`] here means `listener` is not a listening
    /// socket or its address cannot be read (`addr` is its address when that could be read).
    pub fn from_listener(
        listener: std::net::TcpListener,
        advertise: Option<SocketAddr>,
        config: Config,
        placement: Placement,
    ) -> Result<NetTransport> {
        let bound_addr = listener.local_addr().map_err(|e| Error::Bind {
            addr: None,
            reason: Arc::new(e),
        })?;
        // A socket that was only bound, or a connected one, converted into a TcpListener
        // would accept nothing: said here, rather than as a driver that never serves.
        let listening = socket2::SockRef::from(&listener)
            .is_listener()
            .map_err(|e| Error::Bind {
                addr: Some(bound_addr),
                reason: Arc::new(e),
            })?;
        if !listening {
            return Err(Error::Bind {
                addr: Some(bound_addr),
                reason: Arc::new(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "the socket is not listening",
                )),
            });
        }
        let local_addr = advertise.unwrap_or(bound_addr);
        if local_addr.ip().is_unspecified() {
            return Err(Error::NotAdvertisable { addr: local_addr });
        }
        let name = format!("raftnet-driver-{}", bound_addr.port());
        let span = tracing::info_span!(
            "raftnet",
            listener = %bound_addr,
            advertised = (local_addr != bound_addr).then_some(tracing::field::display(local_addr)),
        );
        let backend = driver::choose_backend(&placement, config.backend)?;
        let config = match backend {
            Some(chosen) => config.backend(chosen),
            None => config,
        };
        // This transport's own slot for its TLS configuration, which `reload_tls` swaps.
        #[cfg(feature = "tls")]
        let config = match config.tls.clone() {
            Some(tls) => config.tls(tls.live()),
            None => config,
        };
        tracing::debug!(parent: &span, ?placement, ?backend, "listening");
        let driver::Started {
            shared,
            handle,
            lead,
        } = driver::start(placement, listener, config, &name, span)?;
        let commands = Commands {
            handoff: shared.handoff.clone(),
            lead,
        };
        Ok(NetTransport {
            shared,
            commands,
            local_addr,
            bound_addr,
            driver: Mutex::new(Some(handle)),
            next_id: AtomicU64::new(1),
            backend,
        })
    }

    /// What the driver waits on: [`Backend::Epoll`] or [`Backend::Uring`] (never `Auto`: what
    /// it resolved to at bind), `None` on the thread-per-connection driver, which uses neither.
    pub fn backend(&self) -> Option<Backend> {
        self.backend
    }

    /// The address the listener is bound to (may differ from the advertised one).
    pub fn bound_addr(&self) -> SocketAddr {
        self.bound_addr
    }

    /// Feature `tls`: use `tls`'s certificates, roots, peers and authorization hook from now
    /// on, without a restart (a renewed certificate, a new CA, a CA bundle during a CA
    /// rotation). Connections accepted or dialled after this call use them; those open already
    /// keep the session they have until they close (a pooled connection is reused as before).
    /// Fails with [`Error::Config`] if this transport was bound without TLS: it cannot start
    /// speaking TLS to peers that expect plaintext.
    #[cfg(feature = "tls")]
    pub fn reload_tls(&self, tls: crate::tls::TlsConfig) -> Result<()> {
        match &self.shared.config.tls {
            Some(live) => {
                live.replace(tls);
                tracing::info!("TLS configuration reloaded: new connections use it");
                Ok(())
            }
            None => Err(Error::Config(
                "reload_tls: this transport was bound without TLS".into(),
            )),
        }
    }

    /// Idle pooled outbound connections, all peers and lanes together.
    pub fn pooled_connections(&self) -> usize {
        self.shared.gauges.idle_pooled.load(Ordering::Relaxed)
    }

    /// Open connections (inbound and outbound).
    pub fn open_connections(&self) -> usize {
        self.shared.gauges.open_connections.load(Ordering::Relaxed)
    }

    /// Whether [`close`](Transport::close) was called.
    pub fn is_shutdown(&self) -> bool {
        self.shared.handoff.is_closed()
    }

    /// A snapshot of the transport's metrics: see [`Metrics`] for reading one and exporting
    /// them all by name.
    pub fn metrics(&self) -> Metrics {
        let s = &self.shared;
        let level = |gauge: &std::sync::atomic::AtomicUsize| gauge.load(Ordering::Relaxed) as u64;
        let consumer_wakes = s.consumer.shared().stats.wakes.load(Ordering::Relaxed);
        Metrics {
            consumer_queue: s.consumer.len() as u64,
            submission_queue: s.handoff.commands.len() as u64,
            completion_queue: s.handoff.completions.len() as u64,
            open_connections: level(&s.gauges.open_connections),
            idle_pooled_connections: level(&s.gauges.idle_pooled),
            timers: level(&s.gauges.timers),
            ..s.metrics.snapshot(consumer_wakes)
        }
    }

    /// The server a call's dial must reach, for the dial to check: with TLS, the call's
    /// target (a copy per call: TLS only); `None` without it.
    fn dial_server(&self, id: &ServerId) -> Option<ServerId> {
        #[cfg(feature = "tls")]
        if self.shared.config.tls.is_some() {
            return Some(id.clone());
        }
        let _ = id;
        None
    }

    fn resolve(&self, id: &ServerId, target: &ServerAddress) -> Result<SocketAddr> {
        let target = self.shared.config.dial_address(id, target);
        if let Some(addr) = parse_numeric(&target.0) {
            return Ok(addr);
        }
        // A host name: resolved on the calling thread, never on the driver.
        let unreachable = |reason: std::io::Error| Error::Unreachable {
            addr: target.0.clone(),
            reason: Arc::new(reason),
        };
        target
            .0
            .to_socket_addrs()
            .map_err(unreachable)?
            .next()
            .ok_or_else(|| {
                unreachable(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "no address",
                ))
            })
    }

    fn call<T>(
        &self,
        id: &ServerId,
        target: &ServerAddress,
        request: Request,
        options: CallOptions,
        wrap: fn(Resolver<T>) -> AnyResolver,
    ) -> Call<T> {
        let (call, resolver) = call();
        let call = call.led_by(self.commands.lead.clone());
        let kind = RpcType::of(&request);
        let addr = match self.resolve(id, target) {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(server = %id, %target, rpc = ?kind, error = %e, "call failed: its target does not resolve");
                resolver.resolve(Err(e));
                return call;
            }
        };
        let lane = if kind == RpcType::Heartbeat {
            Lane::Heartbeat
        } else {
            Lane::Control
        };
        let command = Command::Call(Box::new(OutboundCall {
            addr,
            server: self.dial_server(id),
            lane,
            request,
            resolver: wrap(resolver),
            deadline: options.deadline,
            kind,
        }));
        self.commands.submit(command);
        call
    }
}

/// How many numeric addresses a thread keeps parsed ([`parse_numeric`]): more than the peers a
/// Raft node calls.
const PARSED_KEPT: usize = 8;

thread_local! {
    /// The numeric addresses this thread's calls parsed lately, oldest first, with what they
    /// parse to.
    static PARSED: std::cell::RefCell<Vec<(Box<str>, SocketAddr)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// `text` as a numeric socket address (`None` for a host name, or no address at all). A node
/// calls the same few peers over and over, and parsing an address costs more (about 450
/// instructions per call; callgrind, vote-seq) than comparing it with a few strings, so each
/// thread keeps its last [`PARSED_KEPT`]. A parse depends on the text
/// alone, so a kept one never goes stale; host names are never kept: they resolve anew.
fn parse_numeric(text: &str) -> Option<SocketAddr> {
    let kept = PARSED.try_with(|parsed| {
        parsed
            .borrow()
            .iter()
            .find(|(t, _)| **t == *text)
            .map(|&(_, addr)| addr)
    });
    if let Ok(Some(addr)) = kept {
        return Some(addr);
    }
    let addr = text.parse::<SocketAddr>().ok()?;
    // During the thread's teardown the list may be gone: the address is just not kept.
    let _ = PARSED.try_with(|parsed| {
        let mut parsed = parsed.borrow_mut();
        if parsed.len() == PARSED_KEPT {
            parsed.remove(0);
        }
        parsed.push((text.into(), addr));
    });
    Some(addr)
}

impl Transport for NetTransport {
    fn consumer(&self) -> &Consumer {
        &self.shared.consumer
    }

    fn local_addr(&self) -> ServerAddress {
        ServerAddress(self.local_addr.to_string())
    }

    fn append_entries(
        &self,
        id: &ServerId,
        target: &ServerAddress,
        request: AppendEntriesRequest,
        options: CallOptions,
    ) -> Call<AppendEntriesResponse> {
        self.call(
            id,
            target,
            request.into(),
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
        self.call(
            id,
            target,
            request.into(),
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
        self.call(
            id,
            target,
            request.into(),
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
        self.call(id, target, request.into(), options, AnyResolver::TimeoutNow)
    }

    fn install_snapshot(
        &self,
        id: &ServerId,
        target: &ServerAddress,
        request: InstallSnapshotRequest,
        data: SnapshotData,
        options: CallOptions,
    ) -> Call<InstallSnapshotResponse> {
        self.send_snapshot(id, target, request, Body::Reader(data), options)
    }

    /// The body's chunks are slices of `data`: no copy, and no reader thread.
    fn install_snapshot_bytes(
        &self,
        id: &ServerId,
        target: &ServerAddress,
        request: InstallSnapshotRequest,
        data: Bytes,
        options: CallOptions,
    ) -> Call<InstallSnapshotResponse> {
        if (data.len() as u64) < request.size.max(0) as u64 {
            return Call::failed(Error::Snapshot(format!(
                "{} bytes given for a snapshot of {}",
                data.len(),
                request.size
            )));
        }
        self.send_snapshot(id, target, request, Body::Bytes(data), options)
    }

    fn append_entries_pipeline(
        &self,
        id: &ServerId,
        target: &ServerAddress,
    ) -> Result<AppendPipeline> {
        let max = self.shared.config.max_rpcs_in_flight;
        if max < 2 {
            return Err(Error::PipelineNotSupported);
        }
        if self.is_shutdown() {
            return Err(Error::Shutdown);
        }
        let addr = self.resolve(id, target)?;
        let pipeline_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let shared = PipelineShared::new(max);
        self.shared.handoff.submit(Command::OpenPipeline {
            id: pipeline_id,
            addr,
            server: self.dial_server(id),
            shared: shared.clone(),
        });
        Ok(AppendPipeline::new(
            shared,
            Box::new(NetPipeline {
                id: pipeline_id,
                commands: self.commands.clone(),
            }),
        ))
    }

    fn encode_peer(&self, id: &ServerId, addr: &ServerAddress) -> Bytes {
        Bytes::from(
            self.shared
                .config
                .dial_address(id, addr)
                .into_owned()
                .0
                .into_bytes(),
        )
    }

    fn set_heartbeat_handler(&self, handler: Option<HeartbeatHandler>) {
        self.shared.handlers.set_heartbeat(handler);
    }

    fn set_service(&self, service: Option<Arc<dyn Service>>) {
        self.shared.handlers.set_service(service);
    }

    fn close_streams(&self) {
        self.shared.handoff.submit(Command::CloseStreams);
    }

    fn close(&self) {
        let Some(driver) = self.driver.lock().unwrap_or_else(|e| e.into_inner()).take() else {
            return;
        };
        self.shared.handoff.submit_shutdown();
        if driver.join() {
            self.shared.close();
        }
    }
}

impl Drop for NetTransport {
    fn drop(&mut self) {
        self.close();
    }
}

/// Connections a listener holds before the driver accepts them. std and mio both listen with
/// 128, so a burst of dials beyond that (a cluster restarting, 1000 clients at once) waits a
/// second for SYN retransmission; 1024 absorbs such bursts.
const LISTEN_BACKLOG: i32 = 1024;

/// A listener on `addr`.
fn listen(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    // As std and mio do: a restarted node can bind its port while old connections linger.
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(std::net::TcpListener::from(socket))
}

/// Where a call's or a pipeline's commands go: carried out on the submitting thread when the
/// driver lets callers run it in its thread's place and that thread sleeps
/// (`Placement::Thread`'s epoll driver, and a turn on the runtime placement), else queued for
/// the driver.
#[derive(Clone)]
struct Commands {
    handoff: Arc<Handoff>,
    /// The driver, where it lets callers lead: calls are sent, and blocking waits served, from
    /// the caller's thread when the driver's sleeps.
    lead: Option<Arc<dyn Lead>>,
}

impl Commands {
    fn submit(&self, command: Command) {
        match &self.lead {
            Some(lead) => lead.submit(command),
            None => self.handoff.submit(command),
        }
    }
}

/// A pipeline's requests go to the engine as commands, as a call's do.
struct NetPipeline {
    id: u64,
    commands: Commands,
}

impl PipelineBackend for NetPipeline {
    fn send(&self, seq: u64, request: PipelinedRequest) {
        self.commands.submit(Command::PipelineSend {
            id: self.id,
            seq,
            request,
        });
    }

    fn send_batch(&self, batch: &mut Vec<(u64, PipelinedRequest)>) {
        self.commands.submit(Command::PipelineSendBatch {
            id: self.id,
            batch: std::mem::take(batch),
        });
    }

    fn close(&self) {
        self.commands.submit(Command::ClosePipeline { id: self.id });
    }

    fn run_until(&self, deadline: Option<Instant>, done: &mut dyn FnMut() -> bool) -> Option<bool> {
        self.commands.lead.as_ref()?.run_until(deadline, done)
    }
}

/// Where a snapshot's body comes from.
enum Body {
    /// Read on a thread of its own (the reader may block).
    Reader(SnapshotData),
    /// Already in memory.
    Bytes(Bytes),
}

impl NetTransport {
    fn send_snapshot(
        &self,
        id: &ServerId,
        target: &ServerAddress,
        request: InstallSnapshotRequest,
        body: Body,
        options: CallOptions,
    ) -> Call<InstallSnapshotResponse> {
        if request.size < 0 {
            return Call::failed(Error::Snapshot(format!(
                "negative snapshot size {}",
                request.size
            )));
        }
        let addr = match self.resolve(id, target) {
            Ok(a) => a,
            Err(e) => return Call::failed(e),
        };
        let (call, resolver) = call();
        let snapshot_id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let chunk = self.shared.config.snapshot_chunk;
        let size = request.size as u64;
        let feed = match body {
            Body::Bytes(data) => SnapshotFeed::from_bytes(data, size, chunk),
            Body::Reader(data) => {
                // Two chunks in flight between the pump and the engine keep both busy.
                let handoff = self.shared.handoff.clone();
                let feed = SnapshotFeed::new(chunk.saturating_mul(2), move || {
                    handoff.submit(Command::SnapshotReady { id: snapshot_id })
                });
                let pump_feed = feed.clone();
                let pump = std::thread::Builder::new()
                    .name("raftnet-snapshot".into())
                    .spawn(move || feed::pump(data, size, chunk, pump_feed));
                if let Err(e) = pump {
                    resolver.resolve(Err(Error::Snapshot(format!(
                        "cannot start the snapshot reader thread: {e}"
                    ))));
                    return call;
                }
                feed
            }
        };
        self.shared
            .handoff
            .submit(Command::Snapshot(Box::new(OutboundSnapshot {
                id: snapshot_id,
                addr,
                server: self.dial_server(id),
                request,
                resolver: AnyResolver::InstallSnapshot(resolver),
                deadline: options.deadline,
                feed,
            })));
        call
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A kept parse is the parse: the same answers whether kept or not, past the number kept,
    /// and a host name (or an address without a port) is never taken for a number.
    #[test]
    fn kept_parses_answer_as_parsing_does() {
        let addrs: Vec<String> = (0..PARSED_KEPT as u16 + 3)
            .map(|i| format!("127.0.0.{}:{}", i + 1, 4000 + i))
            .collect();
        for _ in 0..2 {
            for text in &addrs {
                assert_eq!(parse_numeric(text), Some(text.parse().unwrap()));
            }
        }
        PARSED.with(|p| assert_eq!(p.borrow().len(), PARSED_KEPT));
        assert_eq!(parse_numeric("[::1]:80"), Some("[::1]:80".parse().unwrap()));
        assert_eq!(parse_numeric("localhost:80"), None);
        assert_eq!(parse_numeric("127.0.0.1"), None);
        PARSED.with(|p| {
            let kept = p.borrow();
            assert_eq!(kept.len(), PARSED_KEPT);
            assert_eq!(&*kept.last().unwrap().0, "[::1]:80");
        });
    }
}
