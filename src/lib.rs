//! raftnet: the network transport a Raft implementation sends its RPCs through.
//!
//! - [`NetTransport`]: TCP. Every piece of protocol state lives in an IO-free connection engine,
//!   pumped by one single-threaded driver that owns every socket (mio, on a thread of its own or
//!   as a task on a tokio runtime: a [`Placement`]); zero-copy frame decoding, lock-free
//!   hand-off to the Raft side. hashicorp/raft's whole transport contract: AppendEntries (with a
//!   heartbeat fast path and a lane of its own), RequestVote, RequestPreVote, TimeoutNow,
//!   InstallSnapshot with a streamed body, pipelined appends.
//! - [`InmemTransport`]: the same [`Transport`] trait in memory, for testing Raft code, with
//!   links that can be cut or made to lose requests.
//! - [`message`]: the RPCs, field for field as hashicorp/raft defines them, for any wire format.
//! - [`wire`]: the IO-free wire core: the codec seam, [`wire::native`], raftnet's framing,
//!   decoder and encoder, and [`wire::hashicorp`], hashicorp/raft's format, for talking to Go
//!   nodes (one format per transport, both on one port, or each peer dialled in its own).
//! - `openraft` (feature `openraft`): openraft 0.9's network traits over raftnet, and the
//!   serving side that drives `Raft` from raftnet's inbound RPCs.
//! - `tls` (feature `tls`): mutual TLS with rustls for [`NetTransport`], each peer's certificate
//!   naming its [`ServerId`].
//!
//! Every outbound call returns a [`Call`]: block on it, poll it, or `.await` it under any
//! executor. Inbound RPCs arrive on the [`Consumer`] and are answered exactly once (dropping an
//! [`Rpc`] answers it with an error). Closing or dropping a transport fails everything still in
//! flight with [`Error::Shutdown`].
//!
//! # Example
//!
//! Two transports on loopback; one serves, the other calls it three ways.
//!
//! ```
//! use raftnet::message::*;
//! use raftnet::{CallOptions, Config, NetTransport, ServerId, Transport};
//! use std::time::Duration;
//!
//! let config = Config::default().timeout(Some(Duration::from_secs(5)));
//! let leader = NetTransport::bind("127.0.0.1:0", None, config.clone())?;
//! let follower = NetTransport::bind("127.0.0.1:0", None, config)?;
//!
//! // The follower's Raft loop: answer whatever arrives.
//! let consumer = follower.consumer().clone();
//! let raft = std::thread::spawn(move || {
//!     while let Ok(rpc) = consumer.recv() {
//!         let answer = match &rpc.request {
//!             Request::AppendEntries(a) => Ok(Response::AppendEntries(AppendEntriesResponse {
//!                 term: a.term,
//!                 last_log: a.entries.last().map_or(a.prev_log_entry, |e| e.index),
//!                 success: true,
//!                 ..Default::default()
//!             })),
//!             Request::RequestVote(v) => Ok(Response::RequestVote(RequestVoteResponse {
//!                 term: v.term,
//!                 granted: true,
//!                 ..Default::default()
//!             })),
//!             _ => Err("not supported here".to_string()),
//!         };
//!         rpc.respond(answer);
//!     }
//! });
//!
//! let peer = (ServerId::from("follower"), follower.local_addr());
//! let append = AppendEntriesRequest {
//!     term: 2,
//!     entries: vec![Log::command(1, 2, &b"x=1"[..])],
//!     ..Default::default()
//! };
//!
//! // 1. Block.
//! let answer = leader.append_entries(&peer.0, &peer.1, append.clone(), CallOptions::default()).wait()?;
//! assert_eq!(answer.last_log, 1);
//!
//! // 2. Poll without blocking.
//! let vote = leader.request_vote(&peer.0, &peer.1, RequestVoteRequest { term: 3, ..Default::default() }, CallOptions::default());
//! let granted = loop {
//!     if let Some(result) = vote.try_result() {
//!         break result?.granted;
//!     }
//!     std::thread::yield_now();
//! };
//! assert!(granted);
//!
//! // 3. Await, under any executor (here the `futures` crate's).
//! let call = leader.append_entries(&peer.0, &peer.1, append, CallOptions::timeout(Duration::from_secs(1)));
//! assert!(futures::executor::block_on(call)?.success);
//!
//! drop(follower); // closing it ends the Raft loop's `recv`
//! raft.join().unwrap();
//! # Ok::<(), raftnet::Error>(())
//! ```

#![deny(missing_docs, missing_debug_implementations, unsafe_code)]
// On docs.rs (`--cfg docsrs`, nightly rustdoc), every item behind a feature carries a badge
// naming it: `doc_cfg` reads the `#[cfg]`s themselves, so no item needs its own `doc(cfg)`.
#![cfg_attr(docsrs, feature(doc_cfg))]

mod config;
mod driver;
mod engine;
mod error;
pub mod inmem;
pub mod message;
mod metrics;
mod net;
#[cfg(feature = "openraft")]
pub mod openraft;
#[cfg(feature = "tls")]
pub mod tls;
mod transport;
pub mod wire;

// The public names, in one place. Modules stay private (but for the message, wire, inmem and
// openraft modules, which users name by path); each item a user needs is listed here.

// The contract: what a Raft implementation calls and what it receives.
pub use transport::{
    AddressProvider, Answers, AppendFuture, AppendPipeline, Call, CallOptions, Consumer,
    DROPPED_UNANSWERED, HeartbeatHandler, Responder, Rpc, ServerAddress, ServerId, Service,
    SnapshotData, SnapshotReader, Transport, TrySendError,
};

// The transports, and where the network one runs.
pub use driver::{Backend, Placement};
pub use inmem::{InmemTransport, Link};
pub use net::NetTransport;

// Settings, failures, measurements.
pub use config::{
    Config, DEFAULT_MAX_CONNECTIONS_PER_ADDRESS, DEFAULT_MAX_ENTRIES_PER_REQUEST,
    DEFAULT_MAX_INBOUND_CONNECTIONS, DEFAULT_MAX_INBOUND_SNAPSHOTS, DEFAULT_MAX_POOL,
    DEFAULT_MAX_QUEUED_ANSWER_BYTES, DEFAULT_MAX_RPCS_IN_FLIGHT, DEFAULT_MAX_UNANSWERED_BYTES,
    DEFAULT_MAX_UNANSWERED_REQUESTS, DEFAULT_SNAPSHOT_BUFFER, DEFAULT_SNAPSHOT_CHUNK,
    DEFAULT_TIMEOUT, DEFAULT_TIMEOUT_SCALE, MAX_TIMEOUT,
};
pub use error::{Error, ErrorClass, Refusal, Result};
pub use metrics::{HistogramSnapshot, Metric, MetricValue, Metrics, PerRpcType, RpcType};

#[doc(hidden)]
pub mod fuzzing;

/// The README's code, compiled and run as a doctest so it stays true (against this crate's
/// dependencies; `tests/readme.rs` builds the same programs with only those the README lists).
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
