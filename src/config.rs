//! Transport configuration. Every tunable is a named constant with the reason for its value.

use std::sync::Arc;
use std::time::Duration;

use crate::transport::AddressProvider;
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

/// Unread snapshot bytes buffered per inbound snapshot before the reactor stops reading that
/// connection (it resumes at half).
pub const DEFAULT_SNAPSHOT_BUFFER: usize = 4 << 20;

/// How a transport behaves. `Config::default()` matches hashicorp/raft's common production
/// settings; every field can be changed with the builder methods.
#[derive(Clone)]
pub struct Config {
    /// Idle pooled outbound connections kept per peer (and lane). 0 disables pooling: every call
    /// dials, and closes its connection afterwards.
    pub max_pool: usize,
    /// Pipeline depth; below 2 disables pipelining (`Error::PipelineNotSupported`).
    pub max_rpcs_in_flight: usize,
    /// Deadline for each RPC and for dialing; `None`: no deadline (only per-call deadlines).
    pub timeout: Option<Duration>,
    /// Bytes of snapshot per `timeout` of deadline.
    pub timeout_scale: u64,
    /// The largest frame body accepted from peers (and sent to them).
    pub max_frame_body: u32,
    /// Entry payloads of this many bytes or more are written without copying.
    pub large_payload_threshold: usize,
    /// Size of the chunks a snapshot body is sent in.
    pub snapshot_chunk: usize,
    /// Unread bytes buffered per inbound snapshot before reading pauses.
    pub snapshot_buffer: usize,
    /// Maps server ids to addresses (overrides the address the caller gives).
    pub address_provider: Option<Arc<dyn AddressProvider>>,
    /// Makes the wire codec of each connection: raftnet's native format by default.
    pub codec: Arc<dyn CodecFactory>,
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
        }
    }
}

impl Config {
    /// Set [`max_pool`](Self::max_pool).
    pub fn max_pool(mut self, n: usize) -> Config {
        self.max_pool = n;
        self
    }

    /// Set [`max_rpcs_in_flight`](Self::max_rpcs_in_flight); 0 means the default.
    pub fn max_rpcs_in_flight(mut self, n: usize) -> Config {
        self.max_rpcs_in_flight = if n == 0 {
            DEFAULT_MAX_RPCS_IN_FLIGHT
        } else {
            n
        };
        self
    }

    /// Set [`timeout`](Self::timeout).
    pub fn timeout(mut self, timeout: Option<Duration>) -> Config {
        self.timeout = timeout;
        self
    }

    /// Set [`timeout_scale`](Self::timeout_scale).
    pub fn timeout_scale(mut self, bytes: u64) -> Config {
        self.timeout_scale = bytes.max(1);
        self
    }

    /// Set [`max_frame_body`](Self::max_frame_body).
    pub fn max_frame_body(mut self, bytes: u32) -> Config {
        self.max_frame_body = bytes;
        self
    }

    /// Set [`snapshot_chunk`](Self::snapshot_chunk).
    pub fn snapshot_chunk(mut self, bytes: usize) -> Config {
        self.snapshot_chunk = bytes.max(1);
        self
    }

    /// Set [`snapshot_buffer`](Self::snapshot_buffer).
    pub fn snapshot_buffer(mut self, bytes: usize) -> Config {
        self.snapshot_buffer = bytes.max(1);
        self
    }

    /// Set the [`address_provider`](Self::address_provider).
    pub fn address_provider(mut self, provider: Arc<dyn AddressProvider>) -> Config {
        self.address_provider = Some(provider);
        self
    }

    /// Set the [`codec`](Self::codec) factory.
    pub fn codec(mut self, factory: Arc<dyn CodecFactory>) -> Config {
        self.codec = factory;
        self
    }

    /// The deadline budget for a snapshot of `size` bytes: timeout × max(1, size / scale).
    pub fn snapshot_timeout(&self, size: u64) -> Option<Duration> {
        let factor = (size / self.timeout_scale.max(1)).max(1);
        self.timeout
            .map(|t| t.saturating_mul(u32::try_from(factor).unwrap_or(u32::MAX)))
    }
}
