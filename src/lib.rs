//! raftnet: the network transport a Raft implementation sends its RPCs through.
//!
//! - [`NetTransport`]: TCP, one single-threaded mio reactor owning every socket, zero-copy
//!   frame decoding, lock-free hand-off to the Raft side. hashicorp/raft's whole transport
//!   contract: AppendEntries (with a heartbeat fast path and lane), RequestVote,
//!   RequestPreVote, TimeoutNow, InstallSnapshot with a streamed body, pipelined appends.
//! - [`InmemTransport`]: the same [`Transport`] trait in memory, for testing Raft code, with
//!   links that can be cut or made to drop requests.
//! - [`wire`]: the IO-free core: messages, the native framing, decoder and encoder.
//!
//! Every outbound call returns a [`Call`]: block on it, poll it, or `.await` it under any
//! executor. Inbound RPCs arrive on the [`Consumer`] and are answered exactly once.

#![deny(missing_docs, missing_debug_implementations, unsafe_code)]

mod config;
mod error;
pub mod inmem;
mod metrics;
mod net;
mod transport;
pub mod wire;

pub use config::*;
pub use error::{Error, Result};
pub use inmem::InmemTransport;
pub use metrics::{HistogramSnapshot, Metrics};
pub use net::NetTransport;
pub use transport::*;

#[doc(hidden)]
pub mod fuzzing;

/// The README's code, compiled and run as a doctest so it stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
