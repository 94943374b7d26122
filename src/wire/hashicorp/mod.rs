//! hashicorp/raft's wire format: what its Go `NetworkTransport` (`net_transport.go`, over
//! hashicorp/go-msgpack) writes and reads, byte for byte, so a raftnet node can talk to Go nodes.
//! `tests/hashicorp_golden.rs` checks it against bytes Go wrote, `tests/hashicorp_interop.rs`
//! against a running Go transport.
//!
//! ```text
//! request := rpc_type:u8  msgpack(request)  [exactly Size raw bytes, InstallSnapshot only]
//! answer  := msgpack(error string)  msgpack(response | nil)
//! ```
//!
//! No preamble, no length prefix, no request id: a frame ends where its msgpack value ends, and
//! answers are matched to requests by their order on the connection. Structs are msgpack maps
//! keyed by their Go field names, sorted, every field present; byte slices and strings take
//! go-msgpack's old raw-string markers; `[]byte` nil (`c0`) and empty (`a0`) stay apart
//! (`Option<Bytes>` in [`crate::message`]).
//!
//! The pieces, in the order bytes flow:
//! - `gomsgpack`: the writer (measured, then written: an error queues nothing), the resumable
//!   scanner that finds where a value ends, and the lenient zero-copy reader;
//! - `encoder`: each message as go-msgpack writes it, for a [`GoRaftVersion`];
//! - `decoder`: each message as go-msgpack reads it (unknown keys skipped, any key order,
//!   every integer width, both `time.Time` forms);
//! - [`HashicorpCodec`]: all of it behind the [`Codec`](crate::wire::Codec) seam, with answers
//!   matched by order and the snapshot body that follows its request;
//!   [`HashicorpCodecFactory`] puts it on a transport through
//!   [`Config::codec`](crate::Config::codec).
//!
//! In a mixed cluster, a node accepts both formats on one port with
//! [`SniffingCodecFactory`](crate::wire::SniffingCodecFactory) (a hashicorp connection's first
//! byte is its first request's rpc type, 0 to 4; a native one's is the preamble's `R`) and
//! dials its Go peers in this format and the rest natively with
//! [`PeerCodecFactory`](crate::wire::PeerCodecFactory):
//!
//! ```
//! use std::sync::Arc;
//! use raftnet::Config;
//! use raftnet::wire::hashicorp::{GoRaftVersion, HashicorpCodecFactory};
//! use raftnet::wire::{PeerCodecFactory, SniffingCodecFactory};
//!
//! let go_peer = "10.0.0.3:8300".parse().unwrap();
//! let version = GoRaftVersion::V1_1;
//! let formats = PeerCodecFactory::new(Arc::new(SniffingCodecFactory::new(version)))
//!     .peer(go_peer, Arc::new(HashicorpCodecFactory::new(version)));
//! let config = Config::default().codec(Arc::new(formats));
//! # let _ = config;
//! ```
//!
//! Limits are the native format's: a value longer than the maximum body (or declaring more
//! elements than that many bytes could hold) is refused before it is buffered, entries per
//! AppendEntries are bounded, and no input makes the decoder panic.
//!
//! ```
//! use bytes::BytesMut;
//! use raftnet::message::*;
//! use raftnet::wire::hashicorp::{GoRaftVersion, HashicorpCodec};
//! use raftnet::wire::{Codec, Lane, SendQueue};
//!
//! let mut client = HashicorpCodec::new(GoRaftVersion::Latest, false);
//! let mut server = HashicorpCodec::new(GoRaftVersion::Latest, true);
//! let vote = RequestVoteRequest { term: 7, ..Default::default() };
//! let mut wire = SendQueue::new();
//! client.encode(&mut wire, 42, Lane::Control, &vote.clone().into()).unwrap();
//! assert_eq!(wire.to_vec()[0], 1); // hashicorp's rpc type byte for RequestVote
//!
//! // The server reads it (its own request id, 1) and answers...
//! let mut input = BytesMut::from(&wire.to_vec()[..]);
//! let frame = server.decode_frame(&mut input).unwrap().unwrap();
//! assert_eq!(server.decode_body(&frame).unwrap(), Message::from(vote));
//! let mut answer = SendQueue::new();
//! let granted = RequestVoteResponse { term: 7, granted: true, ..Default::default() };
//! server.encode(&mut answer, frame.header.request_id, Lane::Control, &granted.clone().into()).unwrap();
//!
//! // ...and the client matches the answer to its request 42 by order.
//! let mut input = BytesMut::from(&answer.to_vec()[..]);
//! let frame = client.decode_frame(&mut input).unwrap().unwrap();
//! assert_eq!(frame.header.request_id, 42);
//! assert_eq!(client.decode_body(&frame).unwrap(), Message::from(granted));
//! ```

mod codec;
mod decoder;
mod encoder;
mod gomsgpack;

pub(crate) use codec::request_type;
pub use codec::{HashicorpCodec, HashicorpCodecFactory};

/// Which hashicorp/raft generation's bytes to write. Every generation's bytes are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum GoRaftVersion {
    /// hashicorp/raft v1.1.x and v1.2.x (Debian 12 ships v1.1.2), on go-msgpack 0.5.5: no
    /// `RPCHeader.ID`/`Addr` keys, no `Log.AppendedAt`, non-negative signed integers above 127
    /// with unsigned markers (`Size` 1000 is `cd 03 e8`). Newer nodes read this (they fall back
    /// to `Leader`/`Candidate` for the sender's address).
    V1_1,
    /// hashicorp/raft v1.6 and later, on go-msgpack v2 with its default time format: every
    /// field, non-negative signed integers above 127 with signed markers (`d1 03 e8`),
    /// `AppendedAt` as Go's `MarshalBinary` bytes. v1.1.2 nodes skip the keys they lack.
    #[default]
    Latest,
}

impl GoRaftVersion {
    fn has_header_ids(self) -> bool {
        self == GoRaftVersion::Latest
    }

    fn has_appended_at(self) -> bool {
        self == GoRaftVersion::Latest
    }

    fn signed_markers(self) -> bool {
        self == GoRaftVersion::Latest
    }
}

#[cfg(test)]
mod tests;
