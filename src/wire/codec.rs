//! The codec seam: the only way the connection engine touches a wire format.
//!
//! Each connection owns one [`Codec`], made for it by the [`CodecFactory`] in
//! [`Config::codec`](crate::Config::codec), so the native format and hashicorp/raft's (no
//! preamble, no length prefix, responses matched by order) sit side by side, even on one
//! transport: a factory may choose by the peer dialled
//! ([`PeerCodecFactory`](super::PeerCodecFactory)), and a codec may choose its format from
//! the first bytes it reads ([`SniffingCodec`](super::SniffingCodec)). A codec is IO-free: bytes in through
//! [`Codec::decode_frame`], bytes out into a [`SendQueue`].
//!
//! The calls mirror what the engine does with a connection:
//! - [`start`](Codec::start) once, when the connection is made (native: the preamble);
//! - [`decode_frame`](Codec::decode_frame) for every frame, so the engine can route on the
//!   header (kind, lane, request id) before paying for the body, then
//!   [`decode_body`](Codec::decode_body);
//! - [`encode`](Codec::encode) for requests, responses and error answers,
//!   [`encode_append_entries`](Codec::encode_append_entries) for a request a pipeline shares
//!   with its futures, and [`encode_snapshot_chunk`](Codec::encode_snapshot_chunk) for the body
//!   of an InstallSnapshot, which follows its request on the same connection;
//! - [`finish`](Codec::finish) when the peer closes, to tell a clean end from a cut-off frame.
//!
//! **Request ids.** The engine numbers the requests it sends on a connection and matches
//! answers by the id a decoded frame carries. A format that carries ids (native) writes and reads
//! them; one that matches answers by order (hashicorp's) remembers the ids of the requests it
//! encoded and gives each decoded answer the id of the oldest unanswered one. On a serving
//! connection the engine answers with the id the request arrived with. Either way the engine
//! never depends on how a format numbers or orders its frames.

use std::net::SocketAddr;

use bytes::{Bytes, BytesMut};

use super::error::{EncodeError, WireError};
use super::frame::{Lane, RawFrame};
use super::send_queue::SendQueue;
use crate::message::{AppendEntriesRequest, Message};

/// One wire format, for one connection (it may keep per-connection state).
pub trait Codec: Send {
    /// Queue what the connection starts with in the direction this side writes (native: the
    /// preamble).
    fn start(&mut self, out: &mut SendQueue);

    /// Take the next complete frame out of `input` without decoding its body: `Ok(None)` means
    /// more bytes are needed. An error is final: the connection is closed.
    fn decode_frame(&mut self, input: &mut BytesMut) -> Result<Option<RawFrame>, WireError>;

    /// How many bytes the next read into `input` should take, if the format knows better than
    /// "whatever has arrived" (native: a large frame is read up to its end, see
    /// [`FrameDecoder::read_hint`](crate::wire::native::FrameDecoder::read_hint)). The default: `None`.
    fn read_hint(&self, input: &BytesMut) -> Option<usize> {
        let _ = input;
        None
    }

    /// Decode a frame's body; payloads in the result are slices of `frame.body` (no copy).
    fn decode_body(&mut self, frame: &RawFrame) -> Result<Message, WireError>;

    /// The peer closed its side with `input` left undecoded: an error if that cut a frame off.
    fn finish(&mut self, input: &BytesMut) -> Result<(), WireError>;

    /// Queue a request, a response or an error answer. On error nothing is queued.
    fn encode(
        &mut self,
        out: &mut SendQueue,
        request_id: u64,
        lane: Lane,
        message: &Message,
    ) -> Result<(), EncodeError>;

    /// Queue an AppendEntries request borrowed from its owner. On error nothing is queued.
    fn encode_append_entries(
        &mut self,
        out: &mut SendQueue,
        request_id: u64,
        lane: Lane,
        request: &AppendEntriesRequest,
    ) -> Result<(), EncodeError>;

    /// Queue the next piece of the snapshot body that follows request `request_id`; `last`
    /// ends the body. `chunk` is queued without a copy where the format allows.
    fn encode_snapshot_chunk(
        &mut self,
        out: &mut SendQueue,
        request_id: u64,
        chunk: Bytes,
        last: bool,
    ) -> Result<(), EncodeError>;
}

/// What a [`CodecFactory`] knows about the connection it makes a codec for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CodecContext {
    /// The peer's address.
    pub peer: SocketAddr,
    /// Accepted (this side serves it) rather than dialled.
    pub inbound: bool,
    /// The largest frame body to accept or produce ([`Config::max_frame_body`](crate::Config)).
    pub max_body_len: u32,
    /// Payloads of this many bytes or more are queued without a copy
    /// ([`Config::large_payload_threshold`](crate::Config)).
    pub large_payload_threshold: usize,
    /// Entries one inbound AppendEntries may carry
    /// ([`Config::max_entries_per_request`](crate::Config::max_entries_per_request)).
    pub max_entries_per_request: usize,
}

/// Makes the codec of each new connection ([`Config::codec`](crate::Config::codec)).
pub trait CodecFactory: Send + Sync {
    /// A codec for the connection `context` describes.
    fn new_codec(&self, context: &CodecContext) -> Box<dyn Codec>;
}
