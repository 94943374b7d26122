//! [`Config`]: how a transport behaves. This file owns every setting's default (a named constant
//! with the reason for its value), the one way to change it (a builder method per setting), and
//! what becomes of a value that means nothing (see [`Config`]).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use crate::driver::Backend;
use crate::transport::{AddressProvider, ServerAddress, ServerId};
use crate::wire::CodecFactory;
use crate::wire::native::{
    DEFAULT_LARGE_PAYLOAD_THRESHOLD, DEFAULT_MAX_BODY_LEN, NativeCodecFactory,
};

/// Idle connections kept per peer and lane. Consul runs hashicorp/raft with 3; raftnet's heartbeat
/// lane has a pool of its own, so 3 leaves room for votes and appends to overlap.
pub const DEFAULT_MAX_POOL: usize = 3;

/// Requests a pipeline keeps unanswered. hashicorp/raft defaults to 2 since v1.5.0 (#541) because
/// its follower serves a connection one request at a time; raftnet's serving side decodes and
/// queues every request of a connection at once, so deeper pipelines pay off, but the default
/// stays hashicorp's for predictable behaviour. Raise it for throughput.
pub const DEFAULT_MAX_RPCS_IN_FLIGHT: usize = 2;

/// The I/O deadline for an RPC and the dial timeout (Consul's value).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Snapshot deadlines scale by one `timeout` per this many bytes (hashicorp `DefaultTimeoutScale`).
pub const DEFAULT_TIMEOUT_SCALE: u64 = 256 * 1024;

/// Snapshot bodies travel in chunks of this size: large enough that per-frame costs vanish
/// against the copy into the kernel, small enough that a heartbeat on another connection is never
/// starved by one write.
pub const DEFAULT_SNAPSHOT_CHUNK: usize = 256 * 1024;

/// Inbound connections a transport holds at once; more are closed as they are accepted. A Raft
/// node's peers open a few each (a pool per lane, a pipeline, a snapshot), so this leaves room
/// for hundreds of peers while keeping a flood of connections within a process's descriptor
/// budget (a default `ulimit -n` is 1024 to 1M; each connection also holds its buffers).
pub const DEFAULT_MAX_INBOUND_CONNECTIONS: usize = 4096;

/// Inbound connections from one IP address at once. A raftnet peer opens one connection per
/// call it has in flight (pooled once idle), plus its pipelines and snapshots: a Raft node's
/// replication, heartbeats and elections need about 10, but a node can make many calls at once
/// (the exactly-once tests make 1000); 1024 lets one peer do that while one address alone
/// cannot take the listener's whole budget.
pub const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS: usize = 1024;

/// Requests of one inbound connection handed to the Raft side and not yet answered before the
/// transport stops reading that connection. A pipeline keeps `max_rpcs_in_flight` requests
/// outstanding (raftnet-bench's deepest uses 128); beyond twice that a peer is flooding, and
/// pausing its connection keeps its requests from crowding other peers' out of the consumer
/// queue.
pub const DEFAULT_MAX_UNANSWERED_REQUESTS: usize = 256;

/// Bytes of requests of one inbound connection handed to the Raft side and not yet answered
/// before the transport stops reading that connection: one largest frame
/// ([`DEFAULT_MAX_BODY_LEN`]), so any legal request is still taken, and a peer cannot make the
/// Raft side hold more than that of its requests.
pub const DEFAULT_MAX_UNANSWERED_BYTES: usize = DEFAULT_MAX_BODY_LEN as usize;

/// Bytes of answers queued for one inbound connection, not yet taken by the peer, before the
/// transport stops reading that connection. An answer is 20 to 100 bytes, so this holds
/// thousands; a peer that sends requests without reading its answers stops being read instead
/// of growing the process.
pub const DEFAULT_MAX_QUEUED_ANSWER_BYTES: usize = 1 << 20;

/// InstallSnapshot bodies received at once, all connections together; a further one is refused
/// with an error answer. With [`DEFAULT_SNAPSHOT_BUFFER`] that bounds buffered snapshot bytes to
/// 16 MiB. A node receives one snapshot at a time from its leader; 4 covers a leader change
/// mid-transfer.
pub const DEFAULT_MAX_INBOUND_SNAPSHOTS: usize = 4;

/// Entries one AppendEntries may carry. hashicorp/raft caps `MaxAppendEntries` at 1024 and
/// openraft defaults to 300 per request; 65,536 entries decode into about 7 MiB and a few
/// milliseconds of work, where a 64 MiB frame of the smallest entries would be 7.5 million
/// (about 860 MiB decoded, and a second of the driver's time).
pub const DEFAULT_MAX_ENTRIES_PER_REQUEST: usize = 65_536;

/// Unread snapshot bytes buffered per inbound snapshot before the driver stops reading that
/// connection (it resumes at half).
pub const DEFAULT_SNAPSHOT_BUFFER: usize = 4 << 20;

/// The longest timeout kept as a deadline; longer ones (and snapshot budgets that grow past it)
/// mean no deadline. An `Instant` cannot reach arbitrarily far (macOS counts nanoseconds since
/// boot in a `u64`, about 584 years, and adding past the end panics), and a deadline a century
/// away never fires anyway.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// How a transport behaves (hashicorp/raft's `NetworkTransportConfig`), set with one builder
/// method per setting; each method documents its setting's default, unit and meaning.
/// `Config::default()` is hashicorp/raft's common production setup. The same `Config` builds a
/// [`NetTransport`](crate::NetTransport) and an [`InmemTransport`](crate::InmemTransport), which
/// honours the settings that mean something in memory
/// ([`with_config`](crate::InmemTransport::with_config) lists them).
///
/// Every value is accepted, so building a transport never fails on its config. A zero that
/// would mean nothing (a pipeline of no requests, a snapshot chunk of no bytes, a deadline that
/// has passed before the call starts) means what hashicorp/raft's zero means: the default, and
/// for the timeout no deadline. `Debug` shows the values in effect.
///
/// ```
/// use std::time::Duration;
/// use raftnet::{Config, InmemTransport, NetTransport};
///
/// let config = Config::default()
///     .max_pool(5)
///     .max_rpcs_in_flight(16)
///     .timeout(Some(Duration::from_secs(2)));
/// let net = NetTransport::bind("127.0.0.1:0", None, config.clone())?;
/// let inmem = InmemTransport::with_config("a", config);
/// # drop((net, inmem));
/// # Ok::<(), raftnet::Error>(())
/// ```
#[derive(Clone)]
pub struct Config {
    // Crate code reads these directly; users set them only through the methods below, so every
    // value passes through the same normalisation.
    pub(crate) max_pool: usize,
    pub(crate) max_rpcs_in_flight: usize,
    pub(crate) timeout: Option<Duration>,
    pub(crate) timeout_scale: u64,
    pub(crate) max_frame_body: u32,
    pub(crate) large_payload_threshold: usize,
    pub(crate) snapshot_chunk: usize,
    pub(crate) snapshot_buffer: usize,
    pub(crate) address_provider: Option<Arc<dyn AddressProvider>>,
    pub(crate) codec: Arc<dyn CodecFactory>,
    pub(crate) max_inbound_connections: usize,
    pub(crate) max_connections_per_address: usize,
    pub(crate) max_unanswered_requests: usize,
    pub(crate) max_unanswered_bytes: usize,
    pub(crate) max_queued_answer_bytes: usize,
    pub(crate) max_inbound_snapshots: usize,
    pub(crate) max_entries_per_request: usize,
    pub(crate) backend: Backend,
    pub(crate) zero_copy_send: Option<usize>,
    /// Feature `tls`: TLS on every connection.
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<crate::tls::TlsConfig>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("max_pool", &self.max_pool)
            .field("max_rpcs_in_flight", &self.max_rpcs_in_flight)
            .field("timeout", &self.timeout)
            .field("timeout_scale", &self.timeout_scale)
            .field("max_frame_body", &self.max_frame_body)
            .field("large_payload_threshold", &self.large_payload_threshold)
            .field("snapshot_chunk", &self.snapshot_chunk)
            .field("snapshot_buffer", &self.snapshot_buffer)
            .field("address_provider", &self.address_provider.is_some())
            .field("max_inbound_connections", &self.max_inbound_connections)
            .field(
                "max_connections_per_address",
                &self.max_connections_per_address,
            )
            .field("max_unanswered_requests", &self.max_unanswered_requests)
            .field("max_unanswered_bytes", &self.max_unanswered_bytes)
            .field("max_queued_answer_bytes", &self.max_queued_answer_bytes)
            .field("max_inbound_snapshots", &self.max_inbound_snapshots)
            .field("max_entries_per_request", &self.max_entries_per_request)
            .field("backend", &self.backend)
            .field("zero_copy_send", &self.zero_copy_send)
            .finish_non_exhaustive()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_pool: DEFAULT_MAX_POOL,
            max_rpcs_in_flight: DEFAULT_MAX_RPCS_IN_FLIGHT,
            timeout: Some(DEFAULT_TIMEOUT),
            timeout_scale: DEFAULT_TIMEOUT_SCALE,
            max_frame_body: DEFAULT_MAX_BODY_LEN,
            large_payload_threshold: DEFAULT_LARGE_PAYLOAD_THRESHOLD,
            snapshot_chunk: DEFAULT_SNAPSHOT_CHUNK,
            snapshot_buffer: DEFAULT_SNAPSHOT_BUFFER,
            address_provider: None,
            codec: Arc::new(NativeCodecFactory),
            max_inbound_connections: DEFAULT_MAX_INBOUND_CONNECTIONS,
            max_connections_per_address: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
            max_unanswered_requests: DEFAULT_MAX_UNANSWERED_REQUESTS,
            max_unanswered_bytes: DEFAULT_MAX_UNANSWERED_BYTES,
            max_queued_answer_bytes: DEFAULT_MAX_QUEUED_ANSWER_BYTES,
            max_inbound_snapshots: DEFAULT_MAX_INBOUND_SNAPSHOTS,
            max_entries_per_request: DEFAULT_MAX_ENTRIES_PER_REQUEST,
            backend: Backend::Auto,
            zero_copy_send: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }
}

/// `value`, or `default` when `value` is zero: for the settings whose zero would mean nothing,
/// zero stands for the default, as a zero field does in hashicorp/raft's Go configs.
fn or_default<T: PartialEq + Default>(value: T, default: T) -> T {
    if value == T::default() {
        default
    } else {
        value
    }
}

impl Config {
    /// What the driver waits on: epoll, or io_uring (feature `uring`). The default,
    /// [`Backend::Auto`], is epoll for now (see there why), unless the environment variable
    /// `RAFTNET_BACKEND` says `uring` for a [`Placement::Thread`](crate::Placement::Thread)
    /// transport. [`Backend::Uring`] named here also runs with `Placement::Runtime`, on a thread
    /// of its own beside the runtime.
    pub fn backend(mut self, backend: Backend) -> Config {
        self.backend = backend;
        self
    }

    /// io_uring only ([`Backend::Uring`]): sends of at least `min_bytes` go out zero-copy
    /// (`SEND_ZC`, Linux 6.1): the kernel transmits from the transport's own buffers instead of
    /// copying them into socket memory, and the transport holds those buffers until the kernel
    /// says it is done with them. One send takes up to 256 KiB of a connection's queue, so this
    /// is for what fills sends: snapshots and large appends.
    ///
    /// Default `None`: every send copies. The copy saved is a NIC's to save: over loopback the
    /// kernel copies anyway, and zero-copy measured slower there (BENCHMARKS.md, "io_uring:
    /// zero-copy sends"). The transport's [metrics](crate::Metrics::zero_copy_sends) say whether
    /// it paid where it runs: how many zero-copy sends the kernel made, and how many of them it
    /// copied after all. The epoll backend, a kernel without `SEND_ZC` (logged once) and one
    /// that refuses a zero-copy send (logged; that send goes again, copying) send as before.
    /// `RAFTNET_URING_SEND_ZC=<bytes>|off` overrides it, for measuring.
    ///
    /// ```
    /// use raftnet::{Backend, Config};
    /// let config = Config::default()
    ///     .backend(Backend::Uring)
    ///     .zero_copy_send(Some(64 * 1024));
    /// # drop(config);
    /// ```
    pub fn zero_copy_send(mut self, min_bytes: Option<usize>) -> Config {
        self.zero_copy_send = min_bytes;
        self
    }

    /// Idle outbound connections kept per peer and lane for later calls to reuse.
    ///
    /// Default [`DEFAULT_MAX_POOL`] (3). 0 disables pooling: every call dials, and closes its
    /// connection afterwards.
    pub fn max_pool(mut self, connections: usize) -> Config {
        self.max_pool = connections;
        self
    }

    /// Pipeline depth: how many appends an [`AppendPipeline`](crate::AppendPipeline) keeps in
    /// flight, unanswered (hashicorp's `MaxRPCsInFlight`).
    ///
    /// Default [`DEFAULT_MAX_RPCS_IN_FLIGHT`] (2). 1 disables pipelining:
    /// `append_entries_pipeline` fails with
    /// [`Error::PipelineNotSupported`](crate::Error::PipelineNotSupported) and Raft replicates one
    /// request at a time. 0 means the default, as hashicorp's `MaxRPCsInFlight: 0` does.
    pub fn max_rpcs_in_flight(mut self, requests: usize) -> Config {
        self.max_rpcs_in_flight = or_default(requests, DEFAULT_MAX_RPCS_IN_FLIGHT);
        self
    }

    /// The deadline of each RPC, measured from the call, and the dial timeout. InstallSnapshot
    /// gets this much per [`timeout_scale`](Self::timeout_scale) bytes of snapshot.
    ///
    /// Default `Some(`[`DEFAULT_TIMEOUT`]`)` (10 s). `None`: no deadline but the per-call
    /// [`CallOptions::deadline`](crate::CallOptions). `Some(Duration::ZERO)` also means no
    /// deadline (hashicorp sets none for a zero timeout), as does anything longer than
    /// [`MAX_TIMEOUT`].
    pub fn timeout(mut self, timeout: Option<Duration>) -> Config {
        self.timeout = timeout.filter(|t| !t.is_zero() && *t <= MAX_TIMEOUT);
        self
    }

    /// Bytes of snapshot per [`timeout`](Self::timeout) of deadline: an InstallSnapshot of `size`
    /// bytes may take `timeout × max(1, size / timeout_scale)`.
    ///
    /// Default [`DEFAULT_TIMEOUT_SCALE`] (256 KiB, hashicorp's). 0 means the default.
    pub fn timeout_scale(mut self, bytes: u64) -> Config {
        self.timeout_scale = or_default(bytes, DEFAULT_TIMEOUT_SCALE);
        self
    }

    /// The largest frame body, in bytes, accepted from peers and sent to them. A peer sending a
    /// larger frame loses its connection ([`Error::Protocol`](crate::Error::Protocol)); a
    /// message that would encode larger fails to send
    /// ([`Error::Encode`](crate::Error::Encode)). Peers should agree on it.
    ///
    /// Default [`DEFAULT_MAX_BODY_LEN`](crate::wire::native::DEFAULT_MAX_BODY_LEN) (64 MiB,
    /// room for hashicorp's default batch of 64 entries of 1 MiB). 0 means the default.
    pub fn max_frame_body(mut self, bytes: u32) -> Config {
        self.max_frame_body = or_default(bytes, DEFAULT_MAX_BODY_LEN);
        self
    }

    /// Entry payloads of this many bytes or more are queued for the socket as they are, without
    /// a copy into the frame buffer; smaller ones are copied.
    ///
    /// Default [`DEFAULT_LARGE_PAYLOAD_THRESHOLD`](crate::wire::native::DEFAULT_LARGE_PAYLOAD_THRESHOLD)
    /// (8 KiB, measured). Every value is meaningful: 0 queues every byte field on its own,
    /// `usize::MAX` copies everything.
    pub fn large_payload_threshold(mut self, bytes: usize) -> Config {
        self.large_payload_threshold = bytes;
        self
    }

    /// The size, in bytes, of the pieces a snapshot body is read from its reader and sent in.
    /// Two chunks at most wait between the reader and the socket.
    ///
    /// Default [`DEFAULT_SNAPSHOT_CHUNK`] (256 KiB). 0 means the default.
    pub fn snapshot_chunk(mut self, bytes: usize) -> Config {
        self.snapshot_chunk = or_default(bytes, DEFAULT_SNAPSHOT_CHUNK);
        self
    }

    /// Bytes of an inbound snapshot buffered unread before the transport stops reading its
    /// connection (until the Raft side has read half of them).
    ///
    /// A reader that waits for the body is woken once a quarter of this has arrived, or at the
    /// body's end, not for every chunk: a reader faster than the network would otherwise
    /// sleep and wake once per chunk. Chunks that arrive while it is reading it takes at once.
    ///
    /// Default [`DEFAULT_SNAPSHOT_BUFFER`] (4 MiB). 0 means the default.
    pub fn snapshot_buffer(mut self, bytes: usize) -> Config {
        self.snapshot_buffer = or_default(bytes, DEFAULT_SNAPSHOT_BUFFER);
        self
    }

    /// Look up each peer's address by its server id (hashicorp's `ServerAddressProvider`), for
    /// clusters whose servers change addresses: the provider's answer is dialled instead of the
    /// address the caller gives, which is used only when the provider fails.
    ///
    /// Default: none, every call goes to the address its caller gives.
    pub fn address_provider(mut self, provider: Arc<dyn AddressProvider>) -> Config {
        self.address_provider = Some(provider);
        self
    }

    /// What makes the wire codec of each connection (the format of frames on the socket).
    ///
    /// Default [`NativeCodecFactory`]: raftnet's native format. Both ends of a connection must
    /// use the same format: for hashicorp/raft (Go) peers,
    /// [`HashicorpCodecFactory`](crate::wire::hashicorp::HashicorpCodecFactory); to accept both
    /// formats on one port, [`SniffingCodecFactory`](crate::wire::SniffingCodecFactory); to
    /// dial each peer in its own format, [`PeerCodecFactory`](crate::wire::PeerCodecFactory).
    pub fn codec(mut self, factory: Arc<dyn CodecFactory>) -> Config {
        self.codec = factory;
        self
    }

    // ---- limits: what one peer may take of the node ------------------------------------------
    //
    // Each limit below protects the node (its memory, its driver's time, its other peers'
    // service) from a peer that is valid but greedy, buggy or hostile. Each counts in a metric
    // when it acts and logs the peer it acted on. The deadlines for slow peers follow
    // [`timeout`](Self::timeout): a frame must arrive at no less than `timeout_scale` bytes per
    // `timeout`, and a snapshot body must not stall for longer than `timeout`.

    /// Inbound connections held at once; more are closed as they are accepted
    /// (`Metrics::connections_refused`).
    ///
    /// Default [`DEFAULT_MAX_INBOUND_CONNECTIONS`] (4096). 0 means the default.
    pub fn max_inbound_connections(mut self, connections: usize) -> Config {
        self.max_inbound_connections = or_default(connections, DEFAULT_MAX_INBOUND_CONNECTIONS);
        self
    }

    /// Inbound connections held at once from one IP address; more are closed as they are
    /// accepted (`Metrics::connections_refused`).
    ///
    /// Default [`DEFAULT_MAX_CONNECTIONS_PER_ADDRESS`] (1024). 0 means the default.
    pub fn max_connections_per_address(mut self, connections: usize) -> Config {
        self.max_connections_per_address =
            or_default(connections, DEFAULT_MAX_CONNECTIONS_PER_ADDRESS);
        self
    }

    /// Requests of one inbound connection the Raft side holds unanswered before the transport
    /// stops reading that connection; it reads again once half are answered
    /// (`Metrics::reads_paused`). Each connection's share of the consumer queue is bounded so.
    ///
    /// Default [`DEFAULT_MAX_UNANSWERED_REQUESTS`] (256). 0 means the default.
    pub fn max_unanswered_requests(mut self, requests: usize) -> Config {
        self.max_unanswered_requests = or_default(requests, DEFAULT_MAX_UNANSWERED_REQUESTS);
        self
    }

    /// Bytes of requests (frame bodies) of one inbound connection the Raft side holds
    /// unanswered before the transport stops reading that connection; it reads again once half
    /// are answered. A request larger than what is left is still taken, so any legal request
    /// gets through.
    ///
    /// Default [`DEFAULT_MAX_UNANSWERED_BYTES`] (64 MiB). 0 means the default.
    pub fn max_unanswered_bytes(mut self, bytes: usize) -> Config {
        self.max_unanswered_bytes = or_default(bytes, DEFAULT_MAX_UNANSWERED_BYTES);
        self
    }

    /// Bytes of answers queued for one inbound connection and not yet taken by its peer before
    /// the transport stops reading that connection; it reads again once half are written.
    ///
    /// Default [`DEFAULT_MAX_QUEUED_ANSWER_BYTES`] (1 MiB). 0 means the default.
    pub fn max_queued_answer_bytes(mut self, bytes: usize) -> Config {
        self.max_queued_answer_bytes = or_default(bytes, DEFAULT_MAX_QUEUED_ANSWER_BYTES);
        self
    }

    /// InstallSnapshot bodies received at once, all connections together; a further one is
    /// answered with an error and its connection closed (`Metrics::snapshots_refused`). A
    /// connection carries one snapshot at a time: a second before the first body ends is a
    /// protocol error. Buffered snapshot bytes stay below this times
    /// [`snapshot_buffer`](Self::snapshot_buffer).
    ///
    /// Default [`DEFAULT_MAX_INBOUND_SNAPSHOTS`] (4). 0 means the default.
    pub fn max_inbound_snapshots(mut self, snapshots: usize) -> Config {
        self.max_inbound_snapshots = or_default(snapshots, DEFAULT_MAX_INBOUND_SNAPSHOTS);
        self
    }

    /// Entries one inbound AppendEntries may carry; one with more is a protocol error (its
    /// connection closes) before any entry is decoded.
    ///
    /// Default [`DEFAULT_MAX_ENTRIES_PER_REQUEST`] (65,536). 0 means the default.
    pub fn max_entries_per_request(mut self, entries: usize) -> Config {
        self.max_entries_per_request = or_default(entries, DEFAULT_MAX_ENTRIES_PER_REQUEST);
        self
    }

    /// Feature `tls`: mutual TLS on every connection this transport dials or accepts, with
    /// these certificates and roots ([`crate::tls`] says how identities are checked). Runs on
    /// [`Placement::Thread`](crate::Placement::Thread) and `Placement::Runtime`; binding on
    /// [`Placement::ThreadPerConnection`](crate::Placement::ThreadPerConnection) with TLS fails
    /// with [`Error::Config`](crate::Error::Config). Default: none (plain TCP).
    #[cfg(feature = "tls")]
    pub fn tls(mut self, tls: crate::tls::TlsConfig) -> Config {
        self.tls = Some(tls);
        self
    }

    /// The deadline budget for a snapshot of `size` bytes:
    /// `timeout × max(1, size / timeout_scale)`, or `None` without a timeout or past
    /// [`MAX_TIMEOUT`].
    pub fn snapshot_timeout(&self, size: u64) -> Option<Duration> {
        let factor = (size / self.timeout_scale).max(1);
        let factor = u32::try_from(factor).unwrap_or(u32::MAX);
        self.timeout
            .and_then(|t| t.checked_mul(factor))
            .filter(|t| *t <= MAX_TIMEOUT)
    }

    /// The address to reach server `id` at: the [address provider](Self::address_provider)'s
    /// answer, or `target` without a provider or when it fails (logged, as hashicorp does).
    /// Borrowed when it is `target` (no copy per call without a provider).
    pub(crate) fn dial_address<'a>(
        &self,
        id: &ServerId,
        target: &'a ServerAddress,
    ) -> Cow<'a, ServerAddress> {
        let Some(provider) = &self.address_provider else {
            return Cow::Borrowed(target);
        };
        match provider.server_addr(id) {
            Ok(found) => Cow::Owned(found),
            Err(e) => {
                tracing::warn!(
                    server = %id,
                    fallback = %target,
                    error = %e,
                    "unable to get address for server, using fallback address"
                );
                Cow::Borrowed(target)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_documented_constants() {
        let c = Config::default();
        assert_eq!(c.max_pool, DEFAULT_MAX_POOL);
        assert_eq!(c.max_rpcs_in_flight, DEFAULT_MAX_RPCS_IN_FLIGHT);
        assert_eq!(c.timeout, Some(DEFAULT_TIMEOUT));
        assert_eq!(c.timeout_scale, DEFAULT_TIMEOUT_SCALE);
        assert_eq!(c.max_frame_body, DEFAULT_MAX_BODY_LEN);
        assert_eq!(c.large_payload_threshold, DEFAULT_LARGE_PAYLOAD_THRESHOLD);
        assert_eq!(c.snapshot_chunk, DEFAULT_SNAPSHOT_CHUNK);
        assert_eq!(c.snapshot_buffer, DEFAULT_SNAPSHOT_BUFFER);
        assert!(c.address_provider.is_none());
    }

    #[test]
    fn each_setter_sets_its_own_field() {
        let c = Config::default()
            .max_pool(7)
            .max_rpcs_in_flight(1)
            .timeout(Some(Duration::from_millis(1)))
            .timeout_scale(1)
            .max_frame_body(1)
            .large_payload_threshold(usize::MAX)
            .snapshot_chunk(1)
            .snapshot_buffer(usize::MAX);
        assert_eq!(c.max_pool, 7);
        // 1 is kept: it is how pipelining is switched off.
        assert_eq!(c.max_rpcs_in_flight, 1);
        assert_eq!(c.timeout, Some(Duration::from_millis(1)));
        assert_eq!(c.timeout_scale, 1);
        assert_eq!(c.max_frame_body, 1);
        assert_eq!(c.large_payload_threshold, usize::MAX);
        assert_eq!(c.snapshot_chunk, 1);
        assert_eq!(c.snapshot_buffer, usize::MAX);
    }

    #[derive(Debug)]
    struct FixedAddress;

    impl AddressProvider for FixedAddress {
        fn server_addr(&self, _id: &ServerId) -> std::result::Result<ServerAddress, String> {
            Ok(ServerAddress::from("fixed:1"))
        }
    }

    /// Every field has a builder, and each builder sets its own field to what it was given. The
    /// destructuring names every field with no `..`: a field added without a builder (and a
    /// line here) does not compile.
    #[test]
    fn every_field_has_a_builder_that_sets_it() {
        let provider: Arc<dyn AddressProvider> = Arc::new(FixedAddress);
        let factory: Arc<dyn CodecFactory> = Arc::new(NativeCodecFactory);
        // Each value differs from its default and from every other, so a builder writing the
        // wrong field shows.
        let config = Config::default()
            .max_pool(11)
            .max_rpcs_in_flight(12)
            .timeout(Some(Duration::from_millis(13)))
            .timeout_scale(14)
            .max_frame_body(15)
            .large_payload_threshold(16)
            .snapshot_chunk(17)
            .snapshot_buffer(18)
            .address_provider(provider.clone())
            .codec(factory.clone())
            .max_inbound_connections(19)
            .max_connections_per_address(20)
            .max_unanswered_requests(21)
            .max_unanswered_bytes(22)
            .max_queued_answer_bytes(23)
            .max_inbound_snapshots(24)
            .max_entries_per_request(25)
            .backend(Backend::Uring)
            .zero_copy_send(Some(26));
        let Config {
            max_pool,
            max_rpcs_in_flight,
            timeout,
            timeout_scale,
            max_frame_body,
            large_payload_threshold,
            snapshot_chunk,
            snapshot_buffer,
            address_provider,
            codec,
            max_inbound_connections,
            max_connections_per_address,
            max_unanswered_requests,
            max_unanswered_bytes,
            max_queued_answer_bytes,
            max_inbound_snapshots,
            max_entries_per_request,
            backend,
            zero_copy_send,
            // Making a TlsConfig takes certificates: tests/tls.rs sets it and shows its effect.
            #[cfg(feature = "tls")]
                tls: _,
        } = config;
        assert_eq!(max_pool, 11);
        assert_eq!(max_rpcs_in_flight, 12);
        assert_eq!(timeout, Some(Duration::from_millis(13)));
        assert_eq!(timeout_scale, 14);
        assert_eq!(max_frame_body, 15);
        assert_eq!(large_payload_threshold, 16);
        assert_eq!(snapshot_chunk, 17);
        assert_eq!(snapshot_buffer, 18);
        assert!(Arc::ptr_eq(&address_provider.unwrap(), &provider));
        assert!(Arc::ptr_eq(&codec, &factory));
        assert_eq!(max_inbound_connections, 19);
        assert_eq!(max_connections_per_address, 20);
        assert_eq!(max_unanswered_requests, 21);
        assert_eq!(max_unanswered_bytes, 22);
        assert_eq!(max_queued_answer_bytes, 23);
        assert_eq!(max_inbound_snapshots, 24);
        assert_eq!(max_entries_per_request, 25);
        assert_eq!(backend, Backend::Uring);
        assert_eq!(zero_copy_send, Some(26));
    }

    #[test]
    fn zero_means_the_default_where_zero_would_mean_nothing() {
        let c = Config::default()
            .max_rpcs_in_flight(9)
            .max_rpcs_in_flight(0)
            .timeout_scale(0)
            .max_frame_body(0)
            .snapshot_chunk(0)
            .snapshot_buffer(0)
            .max_inbound_connections(0)
            .max_connections_per_address(0)
            .max_unanswered_requests(0)
            .max_unanswered_bytes(0)
            .max_queued_answer_bytes(0)
            .max_inbound_snapshots(0)
            .max_entries_per_request(0);
        assert_eq!(c.max_rpcs_in_flight, DEFAULT_MAX_RPCS_IN_FLIGHT);
        assert_eq!(c.timeout_scale, DEFAULT_TIMEOUT_SCALE);
        assert_eq!(c.max_frame_body, DEFAULT_MAX_BODY_LEN);
        assert_eq!(c.snapshot_chunk, DEFAULT_SNAPSHOT_CHUNK);
        assert_eq!(c.snapshot_buffer, DEFAULT_SNAPSHOT_BUFFER);
        // The limits: a limit of zero would refuse every peer.
        assert_eq!(c.max_inbound_connections, DEFAULT_MAX_INBOUND_CONNECTIONS);
        assert_eq!(
            c.max_connections_per_address,
            DEFAULT_MAX_CONNECTIONS_PER_ADDRESS
        );
        assert_eq!(c.max_unanswered_requests, DEFAULT_MAX_UNANSWERED_REQUESTS);
        assert_eq!(c.max_unanswered_bytes, DEFAULT_MAX_UNANSWERED_BYTES);
        assert_eq!(c.max_queued_answer_bytes, DEFAULT_MAX_QUEUED_ANSWER_BYTES);
        assert_eq!(c.max_inbound_snapshots, DEFAULT_MAX_INBOUND_SNAPSHOTS);
        assert_eq!(c.max_entries_per_request, DEFAULT_MAX_ENTRIES_PER_REQUEST);
    }

    #[test]
    fn zero_is_kept_where_it_means_something() {
        let c = Config::default().max_pool(0).large_payload_threshold(0);
        assert_eq!(c.max_pool, 0, "0 disables pooling");
        assert_eq!(c.large_payload_threshold, 0, "0 queues every byte field");
    }

    #[test]
    fn a_zero_or_unreachable_timeout_means_no_deadline() {
        let with = |t| Config::default().timeout(Some(t)).timeout;
        assert_eq!(with(Duration::ZERO), None);
        assert_eq!(with(MAX_TIMEOUT), Some(MAX_TIMEOUT));
        assert_eq!(with(MAX_TIMEOUT + Duration::from_nanos(1)), None);
        assert_eq!(with(Duration::MAX), None);
        assert_eq!(Config::default().timeout(None).timeout, None);
    }

    #[test]
    fn snapshot_timeout_scales_with_size_and_stays_representable() {
        let second = Duration::from_secs(1);
        let c = Config::default().timeout(Some(second)).timeout_scale(100);
        assert_eq!(c.snapshot_timeout(0), Some(second), "at least one timeout");
        assert_eq!(c.snapshot_timeout(199), Some(second));
        assert_eq!(c.snapshot_timeout(300), Some(3 * second));
        // A budget an Instant could not hold is no deadline (adding it to now would panic).
        let far = Config::default()
            .timeout(Some(MAX_TIMEOUT))
            .timeout_scale(1);
        assert_eq!(far.snapshot_timeout(2), None);
        assert_eq!(far.snapshot_timeout(u64::MAX), None);
        assert_eq!(
            Config::default().timeout(None).snapshot_timeout(1 << 40),
            None
        );
    }

    #[derive(Debug)]
    struct Provider(std::result::Result<ServerAddress, String>);

    impl AddressProvider for Provider {
        fn server_addr(&self, _id: &ServerId) -> std::result::Result<ServerAddress, String> {
            self.0.clone()
        }
    }

    #[test]
    fn dial_address_asks_the_provider_and_falls_back_to_the_target() {
        let id = ServerId::from("n1");
        let target = ServerAddress::from("given");
        let found = ServerAddress::from("found");
        let dial = |c: Config| c.dial_address(&id, &target).into_owned();
        assert_eq!(dial(Config::default()), target);
        let ok = Config::default().address_provider(Arc::new(Provider(Ok(found.clone()))));
        assert_eq!(dial(ok), found);
        let failing = Config::default().address_provider(Arc::new(Provider(Err("no".into()))));
        assert_eq!(dial(failing), target);
    }

    #[test]
    fn debug_shows_the_values_in_effect() {
        let text = format!(
            "{:?}",
            Config::default()
                .max_rpcs_in_flight(0)
                .timeout(Some(Duration::ZERO))
        );
        assert!(text.contains("max_rpcs_in_flight: 2"), "{text}");
        assert!(text.contains("timeout: None"), "{text}");
    }
}
