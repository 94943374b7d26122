//! The incremental native frame decoder.
//!
//! It is pure: it never reads a socket. The caller appends whatever bytes arrived to a
//! [`BytesMut`] and calls [`FrameDecoder::decode`] until it answers `Ok(None)` (need more
//! bytes). Bytes may arrive split anywhere; the frames that come out are the same. Each frame
//! is cut out of the buffer as one [`Bytes`] and every payload in it is a slice of that, so the
//! data is never copied after the socket read.
//!
//! Memory follows the bytes received, never the bytes declared: a header's declared length is
//! checked against the maximum, and the buffer then grows toward it only as the body arrives;
//! the body decoder checks every declared count against the bytes left in the frame (see
//! `msgpack::Reader`).

/// The least room made for a body in progress at a time (see `decode_raw`).
const RESERVE_STEP: usize = 64 << 10;

/// Frames this long (header included) or longer are read to their end and no further
/// (see [`FrameDecoder::read_hint`]); shorter ones are read as many at a time as arrived.
const LARGE_FRAME: usize = 64 << 10;

/// The most room a read between frames makes for a next frame as long as the last one.
const MAX_GUESS: usize = 2 << 20;

use bytes::{Buf, BytesMut};

use super::body;
use super::frame::{DEFAULT_MAX_BODY_LEN, HEADER_LEN, PREAMBLE_LEN, check_preamble};
use crate::message::Message;
use crate::wire::{Flags, FrameHeader, Lane, RawFrame, WireError};

impl RawFrame {
    /// Decode the body as a native one. Payloads in the result are slices of `self.body`.
    pub fn decode(&self) -> Result<Frame, WireError> {
        Ok(Frame {
            request_id: self.header.request_id,
            lane: self.header.lane,
            flags: self.header.flags,
            message: body::decode(self.header.kind, &self.body)?,
        })
    }
}

/// A decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Matches a response (and snapshot chunks) to its request.
    pub request_id: u64,
    /// Traffic class.
    pub lane: Lane,
    /// Flag bits.
    pub flags: Flags,
    /// The message.
    pub message: Message,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Preamble,
    Frames,
}

/// Cuts native frames out of a byte stream.
#[derive(Debug, Clone)]
pub struct FrameDecoder {
    state: State,
    max_body_len: u32,
    /// The first error; every later call returns it again.
    failed: Option<WireError>,
    /// The length (header included) of the frame whose header is in the buffer and whose
    /// body is not yet complete.
    in_progress: Option<usize>,
    /// The length of the last frame cut, if it was at least [`LARGE_FRAME`]: the likely
    /// length of the next (a snapshot's chunks, a pipeline's bulk appends).
    last_large: Option<usize>,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder {
            state: State::Preamble,
            max_body_len: DEFAULT_MAX_BODY_LEN,
            failed: None,
            in_progress: None,
            last_large: None,
        }
    }
}

impl FrameDecoder {
    /// A decoder for a new connection: it expects the preamble first, and bodies of at most
    /// [`DEFAULT_MAX_BODY_LEN`] bytes.
    pub fn new() -> FrameDecoder {
        FrameDecoder::default()
    }

    /// Set the largest body accepted; a header declaring more is an error before any memory is
    /// reserved for it.
    pub fn with_max_body_len(mut self, bytes: u32) -> FrameDecoder {
        self.max_body_len = bytes;
        self
    }

    /// Start after the preamble (it was checked elsewhere, or the stream is a test's).
    pub fn without_preamble(mut self) -> FrameDecoder {
        self.state = State::Frames;
        self
    }

    /// The largest body accepted.
    pub fn max_body_len(&self) -> u32 {
        self.max_body_len
    }

    /// Take the next frame out of `buf`, without decoding its body.
    ///
    /// `Ok(None)`: `buf` holds no complete frame yet; append more bytes and call again. When
    /// a header is complete but its body is not, `buf` is given room for more of it: as much as
    /// it already holds (at least 64 KiB, at most what is missing), so a body that arrives grows
    /// the buffer by doubling while a header alone cannot make it reserve its declared length.
    pub fn decode_raw(&mut self, buf: &mut BytesMut) -> Result<Option<RawFrame>, WireError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.decode_raw_inner(buf)
            .inspect_err(|e| self.failed = Some(e.clone()))
    }

    fn decode_raw_inner(&mut self, buf: &mut BytesMut) -> Result<Option<RawFrame>, WireError> {
        if self.state == State::Preamble {
            let Some(seen) = buf.first_chunk::<PREAMBLE_LEN>() else {
                return Ok(None);
            };
            check_preamble(seen)?;
            buf.advance(PREAMBLE_LEN);
            self.state = State::Frames;
        }
        let Some(head) = buf.first_chunk::<HEADER_LEN>() else {
            return Ok(None);
        };
        let header = FrameHeader::parse(head, self.max_body_len)?;
        let frame_len = HEADER_LEN + header.body_len as usize;
        if buf.len() < frame_len {
            // Make room for more of the body, but never more than the bytes already here (or
            // one step): memory follows what the peer sent, not what its header declared. A
            // header declaring 64 MiB reserves 64 KiB; a body arriving in full grows the buffer
            // by doubling, as a `Vec` would.
            let missing = frame_len - buf.len();
            buf.reserve(missing.min(buf.len().max(RESERVE_STEP)));
            self.in_progress = Some(frame_len);
            return Ok(None);
        }
        self.in_progress = None;
        self.last_large = (frame_len >= LARGE_FRAME).then_some(frame_len);
        let mut frame = buf.split_to(frame_len).freeze();
        frame.advance(HEADER_LEN);
        Ok(Some(RawFrame {
            header,
            body: frame,
        }))
    }

    /// How many bytes the next read into `buf` should take, if a large frame (64 KiB or more)
    /// is in progress or just ended:
    /// up to its end (within the room [`decode_raw`](Self::decode_raw) made for it), or, between
    /// frames after a large one, the length of that one. `None`: read as much as has arrived.
    ///
    /// A read that stops at a large frame's end leaves nothing of the next frame behind it, so
    /// cutting the frame out empties the buffer: the next read goes into fresh room, instead of
    /// copying a partial frame out of the buffer the frames cut from it still share. And room
    /// made for a whole frame (the last one's length: memory follows what the peer sent) is
    /// filled without growing, where growing by doubling copies what came so far.
    pub fn read_hint(&self, buf: &BytesMut) -> Option<usize> {
        if self.state != State::Frames || self.failed.is_some() {
            return None;
        }
        match self.in_progress {
            Some(frame_len) if frame_len >= LARGE_FRAME => {
                let spare = buf.capacity() - buf.len();
                Some(frame_len.saturating_sub(buf.len()).min(spare).max(1))
            }
            Some(_) => None,
            // Never more than `MAX_GUESS`: a connection at rest keeps the room of its next read.
            None => self
                .last_large
                .filter(|&len| buf.len() < len)
                .map(|len| (len - buf.len()).min(MAX_GUESS)),
        }
    }

    /// Take the next frame out of `buf` and decode it.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        let Some(raw) = self.decode_raw(buf)? else {
            return Ok(None);
        };
        raw.decode()
            .map(Some)
            .inspect_err(|e| self.failed = Some(e.clone()))
    }

    /// The stream ended; `buf` holds what was left undecoded. An error if the stream stopped
    /// inside the preamble, a header or a body; `Ok` if it stopped between frames (or before
    /// sending anything at all).
    pub fn finish(&mut self, buf: &BytesMut) -> Result<(), WireError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if buf.is_empty() {
            return Ok(());
        }
        let inside = match self.state {
            State::Preamble => "preamble",
            State::Frames if buf.len() < HEADER_LEN => "frame header",
            State::Frames => "frame body",
        };
        let e = WireError::UnexpectedEof {
            inside,
            buffered: buf.len(),
        };
        self.failed = Some(e.clone());
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::wire::SendQueue;
    use crate::wire::native::FrameEncoder;

    const CHUNK: usize = 256 << 10;

    /// A preamble, three 256 KiB snapshot chunks, then a heartbeat-sized frame.
    fn stream() -> (Vec<u8>, Vec<Message>) {
        let encoder = FrameEncoder::new();
        let mut out = SendQueue::new();
        encoder.preamble(&mut out);
        let mut messages: Vec<Message> = (0..3u8)
            .map(|i| Message::SnapshotChunk(Bytes::from(vec![i; CHUNK])))
            .collect();
        messages.push(Message::SnapshotChunk(Bytes::from_static(b"end")));
        for m in &messages {
            encoder
                .encode(&mut out, 1, Lane::Snapshot, Flags::NONE, m)
                .unwrap();
        }
        (out.to_vec(), messages)
    }

    /// Reads as a driver makes them: what the hint says, else `small` bytes; at most what the
    /// peer sent. After every large frame cut but the first, the buffer holds nothing of the
    /// next one (so the next read needs no copy), and between large frames the hint is the last one's
    /// length. `hinted` false reads `small` bytes every time, as before hints.
    fn read_by_hints(hinted: bool, small: usize) -> Vec<Message> {
        let (bytes, _) = stream();
        let frame_len = HEADER_LEN + CHUNK;
        let mut decoder = FrameDecoder::new();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let hint = decoder.read_hint(&buf).filter(|_| hinted);
            if hinted && !got.is_empty() && buf.is_empty() && got.len() < 3 {
                assert_eq!(
                    hint,
                    Some(frame_len),
                    "between chunks: the last one's length"
                );
            }
            let n = hint.unwrap_or(small).min(bytes.len() - at);
            buf.reserve(n);
            buf.extend_from_slice(&bytes[at..at + n]);
            at += n;
            while let Some(frame) = decoder.decode(&mut buf).unwrap() {
                // The first read knows nothing of the frames to come: from the second on.
                if let Message::SnapshotChunk(c) = &frame.message
                    && c.len() == CHUNK
                    && !got.is_empty()
                {
                    assert!(
                        buf.is_empty(),
                        "{} bytes of the next frame read with chunk {}",
                        buf.len(),
                        got.len()
                    );
                }
                got.push(frame.message);
            }
        }
        assert_eq!(decoder.finish(&buf), Ok(()));
        got
    }

    #[test]
    fn reads_by_the_hint_end_at_each_large_frame() {
        let (_, messages) = stream();
        for small in [1, 100, 4096, 300_000] {
            assert_eq!(read_by_hints(true, small), messages, "reads of {small}");
        }
    }

    #[test]
    #[should_panic(expected = "bytes of the next frame read")]
    fn reads_without_the_hint_take_the_next_frame_with_them() {
        read_by_hints(false, 100_000);
    }

    /// A header declaring a large body earns no more room than the decoder gives any body in
    /// progress (memory follows what was sent), and the hint stays within that room; small
    /// frames and the preamble get no hint.
    #[test]
    fn a_hint_stays_within_the_room_already_made() {
        let mut decoder = FrameDecoder::new();
        let mut buf = BytesMut::new();
        assert_eq!(decoder.read_hint(&buf), None, "the preamble first");
        let mut out = SendQueue::new();
        FrameEncoder::new().preamble(&mut out);
        let encoder = FrameEncoder::new();
        let small = Message::SnapshotChunk(Bytes::from_static(b"small"));
        encoder
            .encode(&mut out, 1, Lane::Snapshot, Flags::NONE, &small)
            .unwrap();
        let big = Message::SnapshotChunk(Bytes::from(vec![7u8; 16 << 20]));
        encoder
            .encode(&mut out, 2, Lane::Snapshot, Flags::NONE, &big)
            .unwrap();
        let bytes = out.to_vec();
        let small_end = PREAMBLE_LEN + HEADER_LEN + 5;
        buf.extend_from_slice(&bytes[..small_end + HEADER_LEN + 10]);
        assert!(decoder.decode(&mut buf).unwrap().is_some());
        assert!(decoder.decode(&mut buf).unwrap().is_none());
        let room = buf.capacity() - buf.len();
        assert!(room < 1 << 20, "{room} bytes of room for a 16 MiB body");
        assert_eq!(decoder.read_hint(&buf), Some(room));
        let mut small_only = FrameDecoder::new().without_preamble();
        let mut buf = BytesMut::from(&bytes[PREAMBLE_LEN..small_end]);
        assert!(small_only.decode(&mut buf).unwrap().is_some());
        assert_eq!(small_only.read_hint(&buf), None, "after a small frame");
    }
}
