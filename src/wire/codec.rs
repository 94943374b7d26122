//! The codec seam: how [`Frame`]s become bytes on a connection and back.
//!
//! The transport talks to a connection only through this trait, so the native format and a
//! later hashicorp/raft-compatible one (no preamble, no length prefix, responses matched by
//! order) can sit side by side. A codec is IO-free: bytes in through [`Codec::decode`], bytes out
//! into a [`SendQueue`].

use bytes::BytesMut;

use super::decoder::{Frame, FrameDecoder};
use super::encoder::FrameEncoder;
use super::error::{EncodeError, WireError};
use super::frame::{Flags, Lane};
use super::message::Message;
use super::send_queue::SendQueue;

/// One wire format, for one connection (it may keep per-connection state).
pub trait Codec: Send {
    /// Queue what a connection starts with (native: the preamble).
    fn start(&mut self, out: &mut SendQueue);

    /// Queue one frame. On error nothing is queued.
    fn encode(
        &mut self,
        out: &mut SendQueue,
        request_id: u64,
        lane: Lane,
        flags: Flags,
        message: &Message,
    ) -> Result<(), EncodeError>;

    /// Take the next complete frame out of `input` (`Ok(None)`: need more bytes).
    fn decode(&mut self, input: &mut BytesMut) -> Result<Option<Frame>, WireError>;

    /// The peer closed its side; check nothing was cut off.
    fn finish(&mut self, input: &BytesMut) -> Result<(), WireError>;
}

/// raftnet's own format (docs/wire.md).
#[derive(Debug, Clone, Default)]
pub struct NativeCodec {
    /// The encoding half.
    pub encoder: FrameEncoder,
    /// The decoding half.
    pub decoder: FrameDecoder,
}

impl NativeCodec {
    /// A codec for a new connection with default limits.
    pub fn new() -> NativeCodec {
        NativeCodec::default()
    }
}

impl Codec for NativeCodec {
    fn start(&mut self, out: &mut SendQueue) {
        self.encoder.preamble(out);
    }

    fn encode(
        &mut self,
        out: &mut SendQueue,
        request_id: u64,
        lane: Lane,
        flags: Flags,
        message: &Message,
    ) -> Result<(), EncodeError> {
        self.encoder.encode(out, request_id, lane, flags, message)
    }

    fn decode(&mut self, input: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        self.decoder.decode(input)
    }

    fn finish(&mut self, input: &BytesMut) -> Result<(), WireError> {
        self.decoder.finish(input)
    }
}
