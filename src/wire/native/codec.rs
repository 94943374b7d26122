//! [`NativeCodec`]: the native format behind the [`Codec`] seam.

use bytes::{Bytes, BytesMut};

use super::body;
use super::decoder::FrameDecoder;
use super::encoder::FrameEncoder;
use crate::message::{AppendEntriesRequest, Message};
use crate::wire::{
    Codec, CodecContext, CodecFactory, EncodeError, Flags, Lane, RawFrame, SendQueue, WireError,
};

/// raftnet's own format (docs/wire.md), for every connection: the default factory.
/// raftnet's own format (docs/wire.md), for every connection: the default factory.
#[derive(Debug, Clone, Copy, Default)]
pub struct NativeCodecFactory;

impl CodecFactory for NativeCodecFactory {
    fn new_codec(&self, context: &CodecContext) -> Box<dyn Codec> {
        Box::new(NativeCodec::for_connection(context))
    }
}

/// raftnet's own format (docs/wire.md).
#[derive(Debug, Clone)]
pub struct NativeCodec {
    encoder: FrameEncoder,
    decoder: FrameDecoder,
    max_entries: usize,
}

impl Default for NativeCodec {
    fn default() -> Self {
        NativeCodec {
            encoder: FrameEncoder::new(),
            decoder: FrameDecoder::new(),
            // Standalone, entries are bounded by the body's length; a transport's codecs take
            // their limit from the config.
            max_entries: usize::MAX,
        }
    }
}

impl NativeCodec {
    /// A codec with default limits.
    pub fn new() -> NativeCodec {
        NativeCodec::default()
    }

    /// A codec with the limits `context` gives.
    pub fn for_connection(context: &CodecContext) -> NativeCodec {
        NativeCodec {
            encoder: FrameEncoder::new()
                .with_large_payload_threshold(context.large_payload_threshold)
                .with_max_body_len(context.max_body_len),
            decoder: FrameDecoder::new().with_max_body_len(context.max_body_len),
            max_entries: context.max_entries_per_request,
        }
    }
}

impl Codec for NativeCodec {
    fn start(&mut self, out: &mut SendQueue) {
        self.encoder.preamble(out);
    }

    fn decode_frame(&mut self, input: &mut BytesMut) -> Result<Option<RawFrame>, WireError> {
        self.decoder.decode_raw(input)
    }

    fn read_hint(&self, input: &BytesMut) -> Option<usize> {
        self.decoder.read_hint(input)
    }

    fn decode_body(&mut self, frame: &RawFrame) -> Result<Message, WireError> {
        body::decode_limited(frame.header.kind, &frame.body, self.max_entries)
    }

    fn finish(&mut self, input: &BytesMut) -> Result<(), WireError> {
        self.decoder.finish(input)
    }

    fn encode(
        &mut self,
        out: &mut SendQueue,
        request_id: u64,
        lane: Lane,
        message: &Message,
    ) -> Result<(), EncodeError> {
        self.encoder
            .encode(out, request_id, lane, Flags::NONE, message)
    }

    fn encode_append_entries(
        &mut self,
        out: &mut SendQueue,
        request_id: u64,
        lane: Lane,
        request: &AppendEntriesRequest,
    ) -> Result<(), EncodeError> {
        self.encoder
            .encode_append_entries(out, request_id, lane, request)
    }

    fn encode_snapshot_chunk(
        &mut self,
        out: &mut SendQueue,
        request_id: u64,
        chunk: Bytes,
        last: bool,
    ) -> Result<(), EncodeError> {
        let flags = if last { Flags::END_STREAM } else { Flags::NONE };
        self.encoder.encode(
            out,
            request_id,
            Lane::Snapshot,
            flags,
            &Message::SnapshotChunk(chunk),
        )
    }
}
