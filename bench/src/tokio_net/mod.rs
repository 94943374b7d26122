//! The tokio baseline's network, written as a competent user would write a Raft transport with
//! tokio, tokio-util's `LengthDelimitedCodec` and rmp-serde. It carries the tokio side of the
//! RPC scenarios ([`crate::tokio_impl`], with [`messages`]) and the openraft cluster's tokio
//! network ([`crate::cluster`], with openraft's own messages), which share [`frame`],
//! [`connection`] and [`client`].
//!
//! - [`frame`]: each frame is a length and an envelope (request id + message), encoded with
//!   `rmp_serde` in one buffer, read with `LengthDelimitedCodec`; a payload is copied once on
//!   the way out and not at all on the way in (decoded into `Bytes` slices of the frame).
//! - [`connection`]: one long-lived TCP connection per peer, `TCP_NODELAY` on. A writer task per
//!   connection end drains an mpsc channel: every frame available, in one vectored write (the
//!   `tasks` design, and the openraft cluster's client side, whose many callers share it).
//! - [`direct`]: the `direct` design: one task owns a connection, reads every frame ready,
//!   answers or completes each in place, and writes what it queued in one `write_all` once
//!   nothing more is ready (the scenarios' `direct` server and callers, and the openraft
//!   cluster's serving side).
//! - [`client`]: requests multiplexed by id on that connection; its reader task completes the
//!   caller's `oneshot` found by id in a `HashMap`.
//! - [`messages`]: serde structs mirroring `raftnet::message`'s (Go `[]byte` fields as
//!   `Option<ByteBuf>`), in raftnet's field order with the header's three fields flattened, so a
//!   body is byte for byte raftnet's body (a test in [`requests`] checks it).
//! - [`requests`]: what the scenarios send, built once per run.
//! - [`server`]: the scenarios' other end in the `tasks` design (and what both designs share of
//!   it: answers, snapshot checks). Where raftnet's side hands a request to its consumer
//!   thread (votes, appends: the Raft loop's work), the server hands it to a consumer task over
//!   an mpsc channel, and the consumer (standing for the Raft loop) answers. Heartbeats are
//!   answered in the connection (reader) task, as raftnet answers them on its reactor; so are
//!   snapshots, whose chunks the connection task checks (raftnet's consumer thread reads them
//!   from a `SnapshotReader` instead). A snapshot is the request, then the body as 256 KiB chunk
//!   messages with the same id on the same connection, the response after the last chunk.

pub(crate) mod client;
pub(crate) mod connection;
pub(crate) mod direct;
pub(crate) mod frame;
pub(crate) mod messages;
pub(crate) mod requests;
pub(crate) mod server;

/// The tokio scenarios' messages: byte fields as [`Payload`]s, shared without copies (see
/// [`messages`] and [`frame`]).
pub(crate) type Message = messages::Message<Payload>;

/// A byte field of the tokio scenarios' messages: a `Bytes` (cloned without a copy, sliced
/// from a received frame without a copy), written as msgpack bin like `serde_bytes`' types.
/// (A newtype, rather than `bytes`' own serde support, so the package needs no new feature.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Payload(pub(crate) bytes::Bytes);

impl serde::Serialize for Payload {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl std::ops::Deref for Payload {
    type Target = bytes::Bytes;

    fn deref(&self) -> &bytes::Bytes {
        &self.0
    }
}

impl AsRef<[u8]> for Payload {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<bytes::Bytes> for Payload {
    fn from(bytes: bytes::Bytes) -> Payload {
        Payload(bytes)
    }
}
