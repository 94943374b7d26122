//! The native frame encoder: header and small fields are written into the [`SendQueue`]'s
//! buffer; payloads at or above [`DEFAULT_LARGE_PAYLOAD_THRESHOLD`] are queued as their own
//! segments, without a copy.

use super::body;
use super::frame::{DEFAULT_MAX_BODY_LEN, PREAMBLE};
use super::msgpack::BodySink;
use crate::message::{AppendEntriesRequest, Message, MessageType};
use crate::wire::{EncodeError, Flags, FrameHeader, Lane, SendQueue};

/// Payloads of this many bytes or more go out as their own segment instead of being copied
/// into the frame buffer. Measured with `cargo bench --bench codec -- threshold` (encode plus a
/// vectored write to loopback TCP, BENCHMARKS.md): copying wins up to 4 KiB (an extra `iovec`
/// and reference count cost more than the copy), queueing wins from 8 KiB (0.6x the time at
/// 8 KiB, 0.9x at 16 and 64 KiB), so the cut is at 8 KiB.
pub const DEFAULT_LARGE_PAYLOAD_THRESHOLD: usize = 8192;

/// Encodes native frames into a [`SendQueue`].
#[derive(Debug, Clone)]
pub struct FrameEncoder {
    large_payload_threshold: usize,
    max_body_len: u32,
}

impl Default for FrameEncoder {
    fn default() -> Self {
        FrameEncoder {
            large_payload_threshold: DEFAULT_LARGE_PAYLOAD_THRESHOLD,
            max_body_len: DEFAULT_MAX_BODY_LEN,
        }
    }
}

impl FrameEncoder {
    /// An encoder with the default threshold and maximum body length.
    pub fn new() -> FrameEncoder {
        FrameEncoder::default()
    }

    /// Set the payload size from which payloads are queued rather than copied (0: always queue).
    pub fn with_large_payload_threshold(mut self, bytes: usize) -> FrameEncoder {
        self.large_payload_threshold = bytes;
        self
    }

    /// Set the largest body this encoder will produce; match the peer decoder's maximum so a
    /// message it would reject fails here, with an error for the caller, instead.
    pub fn with_max_body_len(mut self, bytes: u32) -> FrameEncoder {
        self.max_body_len = bytes;
        self
    }

    /// The largest body this encoder produces.
    pub fn max_body_len(&self) -> u32 {
        self.max_body_len
    }

    /// Queue the connection preamble (first thing on every native connection).
    pub fn preamble(&self, out: &mut SendQueue) {
        out.push_slice(&PREAMBLE);
    }

    /// Queue one frame. On error nothing is queued.
    pub fn encode(
        &self,
        out: &mut SendQueue,
        request_id: u64,
        lane: Lane,
        flags: Flags,
        message: &Message,
    ) -> Result<(), EncodeError> {
        let kind = message.message_type();
        if flags != Flags::NONE
            && !(kind == MessageType::SnapshotChunk && flags == Flags::END_STREAM)
        {
            return Err(EncodeError::InvalidFlags {
                kind,
                flags: flags.bits(),
            });
        }
        self.encode_body(out, request_id, lane, flags, kind, |sink| {
            body::encode(message, sink)
        })
    }

    /// Queue an AppendEntries frame from a borrowed request (a pipeline keeps its requests
    /// shared with the futures it hands out). On error nothing is queued.
    pub fn encode_append_entries(
        &self,
        out: &mut SendQueue,
        request_id: u64,
        lane: Lane,
        request: &AppendEntriesRequest,
    ) -> Result<(), EncodeError> {
        self.encode_body(
            out,
            request_id,
            lane,
            Flags::NONE,
            MessageType::AppendEntries,
            |sink| body::encode_append_entries(request, sink),
        )
    }

    fn encode_body(
        &self,
        out: &mut SendQueue,
        request_id: u64,
        lane: Lane,
        flags: Flags,
        kind: MessageType,
        write: impl FnOnce(&mut BodySink<'_>) -> Result<(), EncodeError>,
    ) -> Result<(), EncodeError> {
        let header = FrameHeader {
            body_len: 0, // filled in by `BodySink::finish`
            kind,
            flags,
            lane,
            request_id,
        };
        let mut sink = BodySink::new(
            &mut out.buf,
            &mut out.segments,
            self.large_payload_threshold,
            header.to_bytes(),
        );
        if let Err(e) = write(&mut sink) {
            sink.abort();
            return Err(e);
        }
        sink.finish(self.max_body_len)
    }
}
