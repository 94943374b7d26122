//! Hand-written msgpack reading and writing on top of `rmp`'s low-level functions.
//!
//! [`Reader`] walks a frame body held in a [`Bytes`] and hands out byte fields as slices of it
//! (zero-copy). Every length it reads is checked against the bytes that remain before anything
//! is allocated for it, so a short hostile input cannot make it reserve memory.
//!
//! [`BodySink`] writes a frame body into the encoder's buffer; byte fields at or above the
//! large-payload threshold are not copied but queued as their own segment for a vectored write.

use std::collections::VecDeque;
use std::io;

use bytes::{Bytes, BytesMut};
use rmp::Marker;
use rmp::decode::{self, NumValueReadError, ValueReadError, bytes::BytesReadError};

use super::error::{EncodeError, WireError};
use super::frame::MessageType;

/// A cursor over one frame body.
pub(crate) struct Reader<'a> {
    /// The whole body, so byte fields can be cut out of it without copying.
    body: &'a Bytes,
    /// The unread rest of `body`.
    rd: decode::Bytes<'a>,
}

fn read_error(
    field: &'static str,
    expected: &'static str,
) -> impl Fn(ValueReadError<BytesReadError>) -> WireError {
    move |e| match e {
        ValueReadError::InvalidMarkerRead(_) | ValueReadError::InvalidDataRead(_) => {
            WireError::Truncated { field }
        }
        ValueReadError::TypeMismatch(marker) => WireError::WrongType {
            field,
            expected,
            found: marker.to_u8(),
        },
    }
}

fn num_error(field: &'static str) -> impl Fn(NumValueReadError<BytesReadError>) -> WireError {
    move |e| match e {
        NumValueReadError::InvalidMarkerRead(_) | NumValueReadError::InvalidDataRead(_) => {
            WireError::Truncated { field }
        }
        NumValueReadError::TypeMismatch(marker) => WireError::WrongType {
            field,
            expected: "an integer",
            found: marker.to_u8(),
        },
        NumValueReadError::OutOfRange => WireError::OutOfRange { field },
    }
}

impl<'a> Reader<'a> {
    pub(crate) fn new(body: &'a Bytes) -> Reader<'a> {
        Reader {
            body,
            rd: decode::Bytes::new(body),
        }
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.rd.remaining_slice().len()
    }

    fn skip(&mut self, n: usize) {
        self.rd = decode::Bytes::new(&self.rd.remaining_slice()[n..]);
    }

    /// Whether the next value is msgpack nil (and if so, consume it).
    fn take_nil(&mut self) -> bool {
        if self.rd.remaining_slice().first() == Some(&Marker::Null.to_u8()) {
            self.skip(1);
            true
        } else {
            false
        }
    }

    /// Read an array header and check it has exactly `expected` elements.
    pub(crate) fn fields(&mut self, message: &'static str, expected: u32) -> Result<(), WireError> {
        let found =
            decode::read_array_len(&mut self.rd).map_err(read_error(message, "an array"))?;
        if found != expected {
            return Err(WireError::FieldCount {
                message,
                expected,
                found,
            });
        }
        Ok(())
    }

    /// Read an array header for a list whose elements each take at least `min_element_len`
    /// bytes, and check the declared count against the bytes left.
    pub(crate) fn list_len(
        &mut self,
        field: &'static str,
        min_element_len: usize,
    ) -> Result<usize, WireError> {
        let declared =
            decode::read_array_len(&mut self.rd).map_err(read_error(field, "an array"))?;
        let remaining = self.remaining();
        if (declared as usize).saturating_mul(min_element_len) > remaining {
            return Err(WireError::LengthOverrun {
                field,
                declared,
                remaining,
            });
        }
        Ok(declared as usize)
    }

    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        decode::read_int(&mut self.rd).map_err(num_error(field))
    }

    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64, WireError> {
        decode::read_int(&mut self.rd).map_err(num_error(field))
    }

    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        decode::read_int(&mut self.rd).map_err(num_error(field))
    }

    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        decode::read_int(&mut self.rd).map_err(num_error(field))
    }

    pub(crate) fn opt_i32(&mut self, field: &'static str) -> Result<Option<i32>, WireError> {
        if self.take_nil() {
            return Ok(None);
        }
        decode::read_int(&mut self.rd)
            .map(Some)
            .map_err(num_error(field))
    }

    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool, WireError> {
        decode::read_bool(&mut self.rd).map_err(read_error(field, "a bool"))
    }

    /// A Go `[]byte`: nil, or a msgpack bin cut out of the body without copying.
    pub(crate) fn opt_bytes(&mut self, field: &'static str) -> Result<Option<Bytes>, WireError> {
        if self.take_nil() {
            return Ok(None);
        }
        let len = decode::read_bin_len(&mut self.rd).map_err(read_error(field, "bin or nil"))?;
        self.slice(field, len).map(Some)
    }

    /// A msgpack string, copied into a `String`.
    pub(crate) fn string(&mut self, field: &'static str) -> Result<String, WireError> {
        let len = decode::read_str_len(&mut self.rd).map_err(read_error(field, "a string"))?;
        let bytes = self.slice(field, len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| WireError::InvalidUtf8 { field })
    }

    fn slice(&mut self, field: &'static str, len: u32) -> Result<Bytes, WireError> {
        let remaining = self.remaining();
        let len_usize = len as usize;
        if len_usize > remaining {
            return Err(WireError::LengthOverrun {
                field,
                declared: len,
                remaining,
            });
        }
        let start = self.body.len() - remaining;
        self.skip(len_usize);
        Ok(self.body.slice(start..start + len_usize))
    }

    /// Check that the whole body was consumed.
    pub(crate) fn finish(self, kind: MessageType) -> Result<(), WireError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(WireError::TrailingBytes { kind, count }),
        }
    }
}

/// Where the encoder writes one frame: its buffer, plus the segment queue for payloads that
/// are sent without copying. It counts every body byte so the header's length can be filled in
/// at the end.
pub(crate) struct BodySink<'a> {
    buf: &'a mut BytesMut,
    segments: &'a mut VecDeque<Bytes>,
    large_payload_threshold: usize,
    /// Set once a payload went out as its own segment: the buffer chunk holding this frame's
    /// header, kept mutable until the length is known, and the index of its placeholder in
    /// `segments`.
    head: Option<(usize, BytesMut)>,
    /// Offset of this frame's header within `buf` (or within `head` once split off).
    header_at: usize,
    /// Body bytes written so far.
    body_len: u64,
}

impl<'a> BodySink<'a> {
    /// Start a frame at the end of `buf`; the caller has already written its header there.
    pub(crate) fn new(
        buf: &'a mut BytesMut,
        segments: &'a mut VecDeque<Bytes>,
        large_payload_threshold: usize,
        header_at: usize,
    ) -> BodySink<'a> {
        BodySink {
            buf,
            segments,
            large_payload_threshold,
            head: None,
            header_at,
            body_len: 0,
        }
    }

    // rmp writes through `io::Write`; writing into memory cannot fail, so the `Result`s of
    // the `rmp::encode` calls below are always `Ok` and are dropped.

    pub(crate) fn uint(&mut self, v: u64) {
        let _ = rmp::encode::write_uint(self, v);
    }

    pub(crate) fn sint(&mut self, v: i64) {
        let _ = rmp::encode::write_sint(self, v);
    }

    pub(crate) fn bool(&mut self, v: bool) {
        let _ = rmp::encode::write_bool(self, v);
    }

    pub(crate) fn nil(&mut self) {
        let _ = rmp::encode::write_nil(self);
    }

    pub(crate) fn opt_i32(&mut self, v: Option<i32>) {
        match v {
            Some(v) => self.sint(i64::from(v)),
            None => self.nil(),
        }
    }

    pub(crate) fn array_len(&mut self, field: &'static str, len: usize) -> Result<(), EncodeError> {
        let len = u32::try_from(len).map_err(|_| EncodeError::FieldTooLong { field })?;
        let _ = rmp::encode::write_array_len(self, len);
        Ok(())
    }

    pub(crate) fn string(&mut self, field: &'static str, s: &str) -> Result<(), EncodeError> {
        let len = u32::try_from(s.len()).map_err(|_| EncodeError::FieldTooLong { field })?;
        let _ = rmp::encode::write_str_len(self, len);
        self.raw(s.as_bytes());
        Ok(())
    }

    /// A Go `[]byte`: nil, or bin whose payload is copied if small and queued as its own
    /// segment if large.
    pub(crate) fn opt_bytes(
        &mut self,
        field: &'static str,
        v: &Option<Bytes>,
    ) -> Result<(), EncodeError> {
        match v {
            None => {
                self.nil();
                Ok(())
            }
            Some(bytes) => {
                let len =
                    u32::try_from(bytes.len()).map_err(|_| EncodeError::FieldTooLong { field })?;
                let _ = rmp::encode::write_bin_len(self, len);
                self.payload(bytes);
                Ok(())
            }
        }
    }

    /// Raw payload bytes: copied below the threshold, a segment of their own at or above it.
    pub(crate) fn payload(&mut self, bytes: &Bytes) {
        if bytes.len() < self.large_payload_threshold || bytes.is_empty() {
            self.raw(bytes);
            return;
        }
        match &self.head {
            None => {
                // The header is in `buf`: keep that chunk mutable (to patch the length later)
                // and hold its place in the queue.
                let head = self.buf.split();
                self.head = Some((self.segments.len(), head));
                self.segments.push_back(Bytes::new());
            }
            Some(_) => {
                if !self.buf.is_empty() {
                    self.segments.push_back(self.buf.split().freeze());
                }
            }
        }
        self.segments.push_back(bytes.clone());
        self.body_len += bytes.len() as u64;
    }

    fn raw(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
        self.body_len += bytes.len() as u64;
    }

    /// Fill in the body length, or undo the whole frame if it is longer than `max_body_len`.
    pub(crate) fn finish(self, max_body_len: u32) -> Result<(), EncodeError> {
        if self.body_len > u64::from(max_body_len) {
            let len = self.body_len;
            self.abort();
            return Err(EncodeError::FrameTooLarge {
                len,
                max: max_body_len,
            });
        }
        let len = (self.body_len as u32).to_be_bytes();
        match self.head {
            Some((index, mut head)) => {
                head[self.header_at..self.header_at + 4].copy_from_slice(&len);
                self.segments[index] = head.freeze();
            }
            None => self.buf[self.header_at..self.header_at + 4].copy_from_slice(&len),
        }
        Ok(())
    }

    /// Remove everything this frame queued, leaving the queue as it was before its header.
    pub(crate) fn abort(self) {
        match self.head {
            Some((index, mut head)) => {
                // `head` holds earlier frames' bytes, then this frame's start; everything after
                // it in the queue, and all of `buf`, belongs to this frame.
                self.segments.truncate(index);
                head.truncate(self.header_at);
                if !head.is_empty() {
                    self.segments.push_back(head.freeze());
                }
                self.buf.clear();
            }
            None => self.buf.truncate(self.header_at),
        }
    }
}

impl io::Write for BodySink<'_> {
    #[inline]
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.raw(bytes);
        Ok(bytes.len())
    }

    #[inline]
    fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.raw(bytes);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
