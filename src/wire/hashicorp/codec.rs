//! [`HashicorpCodec`]: hashicorp/raft's `NetworkTransport` framing behind the
//! [`Codec`](crate::wire::Codec) seam.
//!
//! ```text
//! request := rpc_type:u8  msgpack(request)  [exactly Size raw bytes, InstallSnapshot only]
//! answer  := msgpack(error string, "" for none)  msgpack(response | nil)
//! ```
//!
//! There is no length prefix, so a frame ends where its msgpack value does (found by the
//! resumable [`Scanner`], bounded by the same maximum body as native frames), and no request
//! id, so answers are matched by order: a dialled connection remembers the id and type of each
//! request it encoded and gives each answer the oldest one's; a serving connection numbers the
//! requests it reads and writes their answers in that order, holding back an answer the Raft
//! side gives before an earlier request's (Go reads them in order).

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use super::GoRaftVersion;
use super::decoder::{decode_request, decode_response};
use super::encoder::{append_entries, encode_struct, error_text};
use super::gomsgpack::{Counter, Out, QueueOut, Reader, Scanner};
use crate::message::{AppendEntriesRequest, Message, MessageType};
use crate::wire::native::{DEFAULT_LARGE_PAYLOAD_THRESHOLD, DEFAULT_MAX_BODY_LEN};
use crate::wire::{
    Codec, CodecContext, CodecFactory, EncodeError, Flags, FrameHeader, Lane, RawFrame, SendQueue,
    WireError,
};

/// Makes a [`HashicorpCodec`] for every connection: set it with
/// [`Config::codec`](crate::Config::codec) to talk to hashicorp/raft (Go) nodes.
///
/// ```
/// use std::sync::Arc;
/// use raftnet::Config;
/// use raftnet::wire::hashicorp::{GoRaftVersion, HashicorpCodecFactory};
///
/// let config = Config::default().codec(Arc::new(HashicorpCodecFactory::new(GoRaftVersion::Latest)));
/// # let _ = config;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct HashicorpCodecFactory {
    version: GoRaftVersion,
}

impl HashicorpCodecFactory {
    /// Codecs that write what hashicorp/raft `version` writes (all of them read every version).
    pub fn new(version: GoRaftVersion) -> HashicorpCodecFactory {
        HashicorpCodecFactory { version }
    }
}

impl CodecFactory for HashicorpCodecFactory {
    fn new_codec(&self, context: &CodecContext) -> Box<dyn Codec> {
        Box::new(HashicorpCodec::for_connection(self.version, context))
    }
}

/// The request a hashicorp rpc type byte names (the first byte of every request), if any: 0
/// AppendEntries, 1 RequestVote, 2 InstallSnapshot, 3 TimeoutNow, 4 RequestPreVote.
pub(crate) fn request_type(rpc_type: u8) -> Option<MessageType> {
    MessageType::from_u8(rpc_type).filter(|_| rpc_type <= MessageType::RequestPreVote as u8)
}

/// An InstallSnapshot body arriving on a serving connection.
#[derive(Debug, Clone)]
struct SnapshotBody {
    request_id: u64,
    remaining: u64,
}

/// hashicorp/raft's `NetworkTransport` format, for one connection (see the module doc).
#[derive(Debug)]
pub struct HashicorpCodec {
    version: GoRaftVersion,
    serving: bool,
    pub(super) max_body_len: u32,
    large_payload_threshold: usize,
    pub(super) max_entries: usize,
    scanner: Scanner,
    /// The first decoding error; every later call returns it again.
    failed: Option<WireError>,
    /// Dialled side: the requests encoded and not yet answered (id, the answer's type).
    pub(super) awaiting: VecDeque<(u64, MessageType)>,
    /// Serving side: the id the next request read gets.
    next_request_id: u64,
    /// Serving side: the requests read and not yet answered, in arrival order.
    unanswered: VecDeque<u64>,
    /// Serving side: answers given before an earlier request's, held until it is written.
    early: Vec<(u64, SendQueue)>,
    /// Serving side: the snapshot body being read.
    snapshot_body: Option<SnapshotBody>,
}

impl HashicorpCodec {
    /// A codec for the serving (`serving`) or dialling end of a connection, with the native
    /// format's default limits.
    pub fn new(version: GoRaftVersion, serving: bool) -> HashicorpCodec {
        HashicorpCodec {
            version,
            serving,
            max_body_len: DEFAULT_MAX_BODY_LEN,
            large_payload_threshold: DEFAULT_LARGE_PAYLOAD_THRESHOLD,
            // Standalone, entries are bounded by the body's length; a transport's codecs take
            // their limit from the config.
            max_entries: usize::MAX,
            scanner: Scanner::default(),
            failed: None,
            awaiting: VecDeque::new(),
            next_request_id: 1,
            unanswered: VecDeque::new(),
            early: Vec::new(),
            snapshot_body: None,
        }
    }

    /// A codec with the limits `context` gives.
    pub fn for_connection(version: GoRaftVersion, context: &CodecContext) -> HashicorpCodec {
        HashicorpCodec {
            max_body_len: context.max_body_len,
            large_payload_threshold: context.large_payload_threshold,
            max_entries: context.max_entries_per_request,
            ..HashicorpCodec::new(version, context.inbound)
        }
    }

    fn fail(&mut self, e: WireError) -> WireError {
        self.failed = Some(e.clone());
        e
    }

    fn decode_request_frame(
        &mut self,
        input: &mut BytesMut,
    ) -> Result<Option<RawFrame>, WireError> {
        if let Some(body) = &mut self.snapshot_body {
            if body.remaining > 0 && input.is_empty() {
                return Ok(None);
            }
            let n = (input.len() as u64)
                .min(body.remaining)
                .min(u64::from(u32::MAX));
            let chunk = input.split_to(n as usize).freeze();
            body.remaining -= n;
            let request_id = body.request_id;
            let last = body.remaining == 0;
            if last {
                self.snapshot_body = None;
            }
            return Ok(Some(RawFrame {
                header: FrameHeader {
                    body_len: n as u32,
                    kind: MessageType::SnapshotChunk,
                    flags: if last { Flags::END_STREAM } else { Flags::NONE },
                    lane: Lane::Snapshot,
                    request_id,
                },
                body: chunk,
            }));
        }
        let Some(&rpc_type) = input.first() else {
            return Ok(None);
        };
        let Some(kind) = request_type(rpc_type) else {
            return Err(WireError::UnknownMessageType(rpc_type));
        };
        if !self.scanner.active() {
            self.scanner.start(1);
        }
        let Some(len) = self.scanner.scan(&input[1..], self.max_body_len as usize)? else {
            return Ok(None);
        };
        input.advance(1);
        let body = input.split_to(len).freeze();
        let request_id = self.next_request_id;
        self.next_request_id += 1;
        self.unanswered.push_back(request_id);
        let lane = if kind == MessageType::InstallSnapshot {
            // The body follows at once: its length is the request's Size.
            let request = decode_request(kind, &body, self.max_entries)?;
            if let crate::message::Request::InstallSnapshot(r) = request {
                self.snapshot_body = Some(SnapshotBody {
                    request_id,
                    remaining: r.size.max(0) as u64,
                });
            }
            Lane::Snapshot
        } else {
            Lane::Control
        };
        Ok(Some(RawFrame {
            header: FrameHeader {
                body_len: len as u32,
                kind,
                flags: Flags::NONE,
                lane,
                request_id,
            },
            body,
        }))
    }

    fn decode_answer_frame(&mut self, input: &mut BytesMut) -> Result<Option<RawFrame>, WireError> {
        if input.is_empty() {
            return Ok(None);
        }
        if !self.scanner.active() {
            // The error string, then the response.
            self.scanner.start(2);
        }
        let Some(len) = self.scanner.scan(input, self.max_body_len as usize)? else {
            return Ok(None);
        };
        let body = input.split_to(len).freeze();
        let is_error = !Reader::new(&body).string("error")?.is_empty();
        let Some((request_id, response_kind)) = self.awaiting.pop_front() else {
            return Err(WireError::UnexpectedMessage {
                expected: "nothing: no request on this connection awaits an answer",
                found: MessageType::Error,
            });
        };
        Ok(Some(RawFrame {
            header: FrameHeader {
                body_len: len as u32,
                kind: if is_error {
                    MessageType::Error
                } else {
                    response_kind
                },
                flags: Flags::NONE,
                lane: Lane::Control,
                request_id,
            },
            body,
        }))
    }

    /// Write `write`'s bytes after measuring them: nothing is queued if the measuring fails or
    /// the value is over the maximum body.
    fn queue(
        &self,
        out: &mut SendQueue,
        write: impl Fn(&mut dyn Out) -> Result<(), EncodeError>,
    ) -> Result<(), EncodeError> {
        let mut counter = Counter::default();
        write(&mut counter)?;
        if counter.len > u64::from(self.max_body_len) + 1 {
            return Err(EncodeError::FrameTooLarge {
                len: counter.len,
                max: self.max_body_len,
            });
        }
        write(&mut QueueOut {
            out,
            large_payload_threshold: self.large_payload_threshold,
        })
    }

    fn encode_request(
        &mut self,
        out: &mut SendQueue,
        request_id: u64,
        kind: MessageType,
        write: impl Fn(&mut dyn Out) -> Result<(), EncodeError>,
    ) -> Result<(), EncodeError> {
        self.queue(out, |o| {
            o.put(&[kind as u8]);
            write(o)
        })?;
        if let Some(answer) = kind.response_type() {
            self.awaiting.push_back((request_id, answer));
        }
        Ok(())
    }

    fn encode_answer(
        &mut self,
        out: &mut SendQueue,
        request_id: u64,
        message: &Message,
    ) -> Result<(), EncodeError> {
        let version = self.version;
        let write = |o: &mut dyn Out| match message {
            Message::Error(text) => {
                error_text(text, o)?;
                o.nil();
                Ok(())
            }
            response => {
                error_text("", o)?;
                encode_struct(response, version, o)
            }
        };
        match self.unanswered.front() {
            Some(&oldest) if oldest != request_id && self.unanswered.contains(&request_id) => {
                // An earlier request is still unanswered: hold this one back until it is.
                let mut held = SendQueue::new();
                self.queue(&mut held, write)?;
                self.early.push((request_id, held));
                return Ok(());
            }
            // Not a request this side read: written at once (nothing to order it after).
            _ => self.queue(out, write)?,
        }
        if self.unanswered.front() == Some(&request_id) {
            self.unanswered.pop_front();
        }
        while let Some(&next) = self.unanswered.front() {
            let Some(at) = self.early.iter().position(|(id, _)| *id == next) else {
                break;
            };
            let (_, held) = self.early.swap_remove(at);
            out.append(held);
            self.unanswered.pop_front();
        }
        Ok(())
    }
}

impl Codec for HashicorpCodec {
    fn start(&mut self, _out: &mut SendQueue) {
        // hashicorp's NetworkTransport sends nothing before its first request.
    }

    fn decode_frame(&mut self, input: &mut BytesMut) -> Result<Option<RawFrame>, WireError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let frame = if self.serving {
            self.decode_request_frame(input)
        } else {
            self.decode_answer_frame(input)
        };
        frame.map_err(|e| self.fail(e))
    }

    fn decode_body(&mut self, frame: &RawFrame) -> Result<Message, WireError> {
        let kind = frame.header.kind;
        match kind {
            MessageType::SnapshotChunk => Ok(Message::SnapshotChunk(frame.body.clone())),
            MessageType::Error => Ok(Message::Error(Reader::new(&frame.body).string("error")?)),
            kind if kind.is_request() => {
                decode_request(kind, &frame.body, self.max_entries).map(Message::Request)
            }
            kind => {
                let mut r = Reader::new(&frame.body);
                r.skip("error")?;
                let response = frame.body.slice(r.position()..);
                decode_response(kind, &response).map(Message::Response)
            }
        }
    }

    fn finish(&mut self, input: &BytesMut) -> Result<(), WireError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        let inside = match &self.snapshot_body {
            Some(body) if body.remaining > 0 => "snapshot body",
            _ if input.is_empty() => return Ok(()),
            _ if self.serving => "hashicorp request",
            _ => "hashicorp answer",
        };
        Err(self.fail(WireError::UnexpectedEof {
            inside,
            buffered: input.len(),
        }))
    }

    fn encode(
        &mut self,
        out: &mut SendQueue,
        request_id: u64,
        _lane: Lane,
        message: &Message,
    ) -> Result<(), EncodeError> {
        let version = self.version;
        match message {
            Message::Request(request) => {
                self.encode_request(out, request_id, request.message_type(), |o| {
                    encode_struct(message, version, o)
                })
            }
            Message::Response(_) | Message::Error(_) => {
                self.encode_answer(out, request_id, message)
            }
            Message::SnapshotChunk(chunk) => {
                self.encode_snapshot_chunk(out, request_id, chunk.clone(), false)
            }
        }
    }

    fn encode_append_entries(
        &mut self,
        out: &mut SendQueue,
        request_id: u64,
        _lane: Lane,
        request: &AppendEntriesRequest,
    ) -> Result<(), EncodeError> {
        let version = self.version;
        self.encode_request(out, request_id, MessageType::AppendEntries, |o| {
            append_entries(request, version, o)
        })
    }

    fn encode_snapshot_chunk(
        &mut self,
        out: &mut SendQueue,
        _request_id: u64,
        chunk: Bytes,
        _last: bool,
    ) -> Result<(), EncodeError> {
        // The raw bytes follow the request, with no framing of their own.
        if chunk.len() < self.large_payload_threshold {
            out.push_slice(&chunk);
        } else {
            out.push_segment(chunk);
        }
        Ok(())
    }
}
