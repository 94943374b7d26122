//! raftnet: the network transport a Raft implementation sends its RPCs through.
//!
//! This release holds the IO-free [`wire`] core: the messages of hashicorp/raft's transport,
//! field for field; raftnet's native framing (a preamble, then 16-byte headers with msgpack
//! bodies); an incremental, zero-copy decoder that no input can crash; and an encoder that
//! hands large payloads to vectored writes without copying them. The reactor-based transport
//! builds on it.

#![deny(missing_docs, missing_debug_implementations, unsafe_code)]

pub mod wire;

#[doc(hidden)]
pub mod fuzzing;

/// The README's code, compiled and run as a doctest so it stays true.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
