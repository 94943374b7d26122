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
}

impl Default for FrameDecoder {
    fn default() -> Self {
        FrameDecoder {
            state: State::Preamble,
            max_body_len: DEFAULT_MAX_BODY_LEN,
            failed: None,
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
            return Ok(None);
        }
        let mut frame = buf.split_to(frame_len).freeze();
        frame.advance(HEADER_LEN);
        Ok(Some(RawFrame {
            header,
            body: frame,
        }))
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
