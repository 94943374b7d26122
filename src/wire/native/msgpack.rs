//! Hand-written msgpack reading and writing: the codec's hot path.
//!
//! The format bytes come from `rmp`'s [`Marker`] (the constants below); the branching is ours.
//! An earlier version called `rmp::encode`/`rmp::decode` for every value: those go through
//! `io::Write`/generic readers, one small copy or out-of-line call per marker, and measured
//! slower than rmp-serde itself (BENCHMARKS.md). Writing the markers directly into a buffer
//! reserved once per message, and reading them with a bounds-checked cursor, is what makes the
//! codec fast.
//!
//! [`Reader`] walks a frame body held in a [`Bytes`] and hands out byte fields as slices of it
//! (zero-copy). Every length it reads is checked against the bytes that remain before anything
//! is allocated for it, so a short hostile input cannot make it reserve memory.
//!
//! [`BodySink`] writes a frame body into the encoder's buffer; byte fields at or above the
//! large-payload threshold are not copied but queued as their own segment for a vectored write.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};
use rmp::Marker;

use super::frame::HEADER_LEN;
use crate::message::MessageType;
use crate::wire::{EncodeError, WireError};

const NIL: u8 = Marker::Null.to_u8();
const FALSE: u8 = Marker::False.to_u8();
const TRUE: u8 = Marker::True.to_u8();
const U8: u8 = Marker::U8.to_u8();
const U16: u8 = Marker::U16.to_u8();
const U32: u8 = Marker::U32.to_u8();
const U64: u8 = Marker::U64.to_u8();
const I8: u8 = Marker::I8.to_u8();
const I16: u8 = Marker::I16.to_u8();
const I32: u8 = Marker::I32.to_u8();
const I64: u8 = Marker::I64.to_u8();
const BIN8: u8 = Marker::Bin8.to_u8();
const BIN16: u8 = Marker::Bin16.to_u8();
const BIN32: u8 = Marker::Bin32.to_u8();
const STR8: u8 = Marker::Str8.to_u8();
const STR16: u8 = Marker::Str16.to_u8();
const STR32: u8 = Marker::Str32.to_u8();
const ARRAY16: u8 = Marker::Array16.to_u8();
const ARRAY32: u8 = Marker::Array32.to_u8();
const FIXARRAY: u8 = Marker::FixArray(0).to_u8();
const FIXSTR: u8 = Marker::FixStr(0).to_u8();
const FIXPOS_MAX: u8 = 0x7f;
const FIXNEG_MIN: u8 = 0xe0;

#[cold]
fn truncated(field: &'static str) -> WireError {
    WireError::Truncated { field }
}

#[cold]
fn wrong_type(field: &'static str, expected: &'static str, found: u8) -> WireError {
    WireError::WrongType {
        field,
        expected,
        found,
    }
}

#[cold]
fn out_of_range(field: &'static str) -> WireError {
    WireError::OutOfRange { field }
}

/// A cursor over one frame body.
pub(crate) struct Reader<'a> {
    /// The whole body, so byte fields can be cut out of it without copying.
    body: &'a Bytes,
    data: &'a [u8],
    pos: usize,
}

/// An integer as msgpack stores it: its value is one of these.
enum Int {
    Unsigned(u64),
    Signed(i64),
}

impl<'a> Reader<'a> {
    pub(crate) fn new(body: &'a Bytes) -> Reader<'a> {
        Reader {
            body,
            data: body,
            pos: 0,
        }
    }

    /// Bytes not yet read.
    pub(crate) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    #[inline(always)]
    fn byte(&mut self, field: &'static str) -> Result<u8, WireError> {
        match self.data.get(self.pos) {
            Some(&b) => {
                self.pos += 1;
                Ok(b)
            }
            None => Err(truncated(field)),
        }
    }

    #[inline(always)]
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], WireError> {
        match self.data.get(self.pos..self.pos + N) {
            Some(s) => {
                self.pos += N;
                let mut out = [0u8; N];
                out.copy_from_slice(s);
                Ok(out)
            }
            None => Err(truncated(field)),
        }
    }

    #[inline(always)]
    fn int(&mut self, field: &'static str) -> Result<Int, WireError> {
        let m = self.byte(field)?;
        Ok(match m {
            0..=FIXPOS_MAX => Int::Unsigned(u64::from(m)),
            FIXNEG_MIN..=0xff => Int::Signed(i64::from(m as i8)),
            U8 => Int::Unsigned(u64::from(self.byte(field)?)),
            U16 => Int::Unsigned(u64::from(u16::from_be_bytes(self.array(field)?))),
            U32 => Int::Unsigned(u64::from(u32::from_be_bytes(self.array(field)?))),
            U64 => Int::Unsigned(u64::from_be_bytes(self.array(field)?)),
            I8 => Int::Signed(i64::from(self.byte(field)? as i8)),
            I16 => Int::Signed(i64::from(i16::from_be_bytes(self.array(field)?))),
            I32 => Int::Signed(i64::from(i32::from_be_bytes(self.array(field)?))),
            I64 => Int::Signed(i64::from_be_bytes(self.array(field)?)),
            other => return Err(wrong_type(field, "an integer", other)),
        })
    }

    #[inline(always)]
    pub(crate) fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        match self.int(field)? {
            Int::Unsigned(v) => Ok(v),
            Int::Signed(v) => u64::try_from(v).map_err(|_| out_of_range(field)),
        }
    }

    #[inline(always)]
    pub(crate) fn i64(&mut self, field: &'static str) -> Result<i64, WireError> {
        match self.int(field)? {
            Int::Unsigned(v) => i64::try_from(v).map_err(|_| out_of_range(field)),
            Int::Signed(v) => Ok(v),
        }
    }

    #[inline]
    pub(crate) fn u32(&mut self, field: &'static str) -> Result<u32, WireError> {
        u32::try_from(self.u64(field)?).map_err(|_| out_of_range(field))
    }

    #[inline]
    pub(crate) fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        u8::try_from(self.u64(field)?).map_err(|_| out_of_range(field))
    }

    /// Whether the next value is msgpack nil (and if so, consume it).
    #[inline(always)]
    fn take_nil(&mut self) -> bool {
        if self.data.get(self.pos) == Some(&NIL) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    pub(crate) fn opt_i32(&mut self, field: &'static str) -> Result<Option<i32>, WireError> {
        if self.take_nil() {
            return Ok(None);
        }
        i32::try_from(self.i64(field)?)
            .map(Some)
            .map_err(|_| out_of_range(field))
    }

    #[inline(always)]
    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool, WireError> {
        match self.byte(field)? {
            FALSE => Ok(false),
            TRUE => Ok(true),
            other => Err(wrong_type(field, "a bool", other)),
        }
    }

    #[inline(always)]
    fn array_header(&mut self, field: &'static str) -> Result<u32, WireError> {
        let m = self.byte(field)?;
        match m {
            FIXARRAY..=0x9f => Ok(u32::from(m & 0x0f)),
            ARRAY16 => Ok(u32::from(u16::from_be_bytes(self.array(field)?))),
            ARRAY32 => Ok(u32::from_be_bytes(self.array(field)?)),
            other => Err(wrong_type(field, "an array", other)),
        }
    }

    /// Read an array header and check it has exactly `expected` elements.
    #[inline(always)]
    pub(crate) fn fields(&mut self, message: &'static str, expected: u32) -> Result<(), WireError> {
        let found = self.array_header(message)?;
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
        let declared = self.array_header(field)?;
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

    /// A Go `[]byte`: nil, or a msgpack bin cut out of the body without copying.
    #[inline(always)]
    pub(crate) fn opt_bytes(&mut self, field: &'static str) -> Result<Option<Bytes>, WireError> {
        let m = self.byte(field)?;
        let len = match m {
            NIL => return Ok(None),
            BIN8 => u32::from(self.byte(field)?),
            BIN16 => u32::from(u16::from_be_bytes(self.array(field)?)),
            BIN32 => u32::from_be_bytes(self.array(field)?),
            other => return Err(wrong_type(field, "bin or nil", other)),
        };
        self.slice(field, len).map(Some)
    }

    /// A msgpack string, copied into a `String`.
    pub(crate) fn string(&mut self, field: &'static str) -> Result<String, WireError> {
        let m = self.byte(field)?;
        let len = match m {
            FIXSTR..=0xbf => u32::from(m & 0x1f),
            STR8 => u32::from(self.byte(field)?),
            STR16 => u32::from(u16::from_be_bytes(self.array(field)?)),
            STR32 => u32::from_be_bytes(self.array(field)?),
            other => return Err(wrong_type(field, "a string", other)),
        };
        let bytes = self.slice(field, len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| WireError::InvalidUtf8 { field })
    }

    #[inline(always)]
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
        let start = self.pos;
        self.pos += len_usize;
        if len_usize == 0 {
            // An empty, non-nil slice: no need to touch the body's reference count.
            return Ok(Bytes::new());
        }
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

/// Room reserved for a message's small fields before writing them (a header and a few
/// integers), so the writes below do not each grow the buffer.
const SMALL_FIELDS_RESERVE: usize = 128;
/// After a payload is split off into its own segment, the buffer left over may have no room;
/// this much is reserved for the fields that follow, instead of growing it a few bytes at a time.
const AFTER_SPLIT_RESERVE: usize = 4096;
/// When the buffer runs out of room mid-message, it grows by at least this much.
const WRITE_ROOM: usize = 256;

/// Where the encoder writes one frame: its buffer, plus the segment queue for payloads that
/// are sent without copying. It keeps count of the body's length so the header's length field
/// can be filled in at the end.
///
/// Small values are written straight into the buffer's spare capacity and committed (the
/// buffer's length set) in one step at the end, or before anything else touches the buffer. A
/// marker is then a bounds check and a store, instead of `BytesMut`'s reserve-write-advance for
/// each one; this took the heartbeat encode from 890 to about 300 instructions (BENCHMARKS.md).
pub(crate) struct BodySink<'a> {
    buf: &'a mut BytesMut,
    /// The start of `buf`'s spare capacity, as of the last `sync`.
    cursor: *mut u8,
    /// The length of that spare capacity.
    room: usize,
    /// Bytes written at `cursor`, not yet committed to `buf`'s length (`fill <= room`).
    fill: usize,
    segments: &'a mut VecDeque<Bytes>,
    large_payload_threshold: usize,
    /// Set once a payload went out as its own segment: the buffer chunk holding this frame's
    /// header, kept mutable until the length is known, and the index of its placeholder in
    /// `segments`.
    head: Option<(usize, BytesMut)>,
    /// Offset of this frame's header within `buf` (or within `head` once split off).
    header_at: usize,
    /// Where this frame's body bytes start in `buf` (0 after a split).
    body_start: usize,
    /// Body bytes that left `buf` (split-off chunks and queued payloads).
    flushed: u64,
}

impl<'a> BodySink<'a> {
    /// Start a frame at the end of `buf` with its (not yet length-patched) header.
    #[inline]
    pub(crate) fn new(
        buf: &'a mut BytesMut,
        segments: &'a mut VecDeque<Bytes>,
        large_payload_threshold: usize,
        header: [u8; HEADER_LEN],
    ) -> BodySink<'a> {
        let header_at = buf.len();
        buf.reserve(HEADER_LEN + SMALL_FIELDS_RESERVE);
        let mut sink = BodySink {
            buf,
            cursor: std::ptr::null_mut(),
            room: 0,
            fill: 0,
            segments,
            large_payload_threshold,
            head: None,
            header_at,
            body_start: header_at + HEADER_LEN,
            flushed: 0,
        };
        sink.sync();
        sink.put(header);
        sink
    }

    /// Make sure the buffer can take `n` more bytes without reallocating.
    #[inline]
    pub(crate) fn reserve(&mut self, n: usize) {
        if self.room - self.fill < n {
            self.commit();
            self.buf.reserve(n);
            self.sync();
        }
    }

    /// How many bytes of `v` this sink will copy into its buffer (0 if it queues them).
    #[inline]
    pub(crate) fn copied_len(&self, v: &Option<Bytes>) -> usize {
        match v {
            Some(b) if b.len() < self.large_payload_threshold => b.len(),
            _ => 0,
        }
    }

    fn body_len(&self) -> u64 {
        self.flushed + (self.buf.len() + self.fill - self.body_start) as u64
    }

    #[cold]
    fn grow(&mut self, n: usize) {
        self.commit();
        self.buf.reserve(n.max(WRITE_ROOM));
        self.sync();
    }

    /// Point the cursor at `buf`'s spare capacity. Called after anything that may have moved or
    /// resized `buf`; `fill` must be 0 (everything written was committed).
    #[inline]
    fn sync(&mut self) {
        debug_assert_eq!(self.fill, 0);
        let spare = self.buf.spare_capacity_mut();
        self.room = spare.len();
        self.cursor = spare.as_mut_ptr().cast();
    }

    /// Copy `bytes` to the cursor. The caller checked `self.fill + bytes.len() <= self.room`.
    #[inline(always)]
    fn write_unchecked(&mut self, bytes: &[u8]) {
        debug_assert!(self.fill + bytes.len() <= self.room);
        // Ids, addresses and small commands are a few bytes long: two overlapping 8-byte moves
        // beat a call into `memcpy` for them.
        if (8..=16).contains(&bytes.len()) {
            let n = bytes.len();
            let mut head = [0u8; 8];
            let mut tail = [0u8; 8];
            head.copy_from_slice(&bytes[..8]);
            tail.copy_from_slice(&bytes[n - 8..]);
            self.write_fixed(head, 0);
            self.write_fixed(tail, n - 8);
            self.fill += n;
            return;
        }
        // SAFETY: `cursor` is the start of `buf`'s spare capacity and `room` its length, as of
        // the last `sync`; every method that changes `buf` commits and syncs again, so they are
        // still current. The caller checked that `fill + len <= room`, so the destination lies
        // within that spare capacity. The source cannot overlap it: spare capacity belongs to
        // `buf` alone (no `Bytes` points there, only at committed bytes) and `bytes` is a local
        // array or a caller's slice.
        #[allow(unsafe_code)]
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.cursor.add(self.fill), bytes.len());
        }
        self.fill += bytes.len();
    }

    /// Copy `N` bytes to `offset` bytes past the write position, without advancing it. The
    /// caller checked `self.fill + offset + N <= self.room`.
    #[inline(always)]
    fn write_fixed<const N: usize>(&mut self, bytes: [u8; N], offset: usize) {
        debug_assert!(self.fill + offset + N <= self.room);
        // SAFETY: as in `write_unchecked`: the destination lies within the spare capacity the
        // cursor points at (checked by the caller), and the source is a local array.
        #[allow(unsafe_code)]
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.cursor.add(self.fill + offset), N);
        }
    }

    #[inline(always)]
    fn put<const N: usize>(&mut self, bytes: [u8; N]) {
        if self.room - self.fill < N {
            self.grow(N);
        }
        self.write_fixed(bytes, 0);
        self.fill += N;
    }

    /// Make the bytes written so far part of the buffer.
    #[inline]
    fn commit(&mut self) {
        if self.fill == 0 {
            return;
        }
        let len = self.buf.len() + self.fill;
        debug_assert!(len <= self.buf.capacity());
        // SAFETY: `write_unchecked` initialized the `fill` bytes right after `len()` (inside the
        // spare capacity, see there), so the first `len` bytes are initialized and
        // `len <= capacity`.
        #[allow(unsafe_code)]
        unsafe {
            self.buf.set_len(len);
        }
        self.fill = 0;
        self.sync();
    }

    /// Drop the unused room: `buf` ends where the writing ended.
    fn settle(&mut self) {
        self.commit();
    }

    /// An unsigned integer in its smallest form (as `rmp::encode::write_uint`).
    #[inline(always)]
    pub(crate) fn uint(&mut self, v: u64) {
        if v <= u64::from(FIXPOS_MAX) {
            self.put([v as u8]);
        } else if v <= u64::from(u8::MAX) {
            self.put([U8, v as u8]);
        } else if v <= u64::from(u16::MAX) {
            let b = (v as u16).to_be_bytes();
            self.put([U16, b[0], b[1]]);
        } else if v <= u64::from(u32::MAX) {
            let b = (v as u32).to_be_bytes();
            self.put([U32, b[0], b[1], b[2], b[3]]);
        } else {
            let b = v.to_be_bytes();
            self.put([U64, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        }
    }

    /// A signed integer in its smallest form (as `rmp::encode::write_sint`: non-negative
    /// values use the unsigned forms).
    #[inline(always)]
    pub(crate) fn sint(&mut self, v: i64) {
        if v >= 0 {
            self.uint(v as u64);
        } else if v >= -32 {
            self.put([v as i8 as u8]);
        } else if v >= i64::from(i8::MIN) {
            self.put([I8, v as i8 as u8]);
        } else if v >= i64::from(i16::MIN) {
            let b = (v as i16).to_be_bytes();
            self.put([I16, b[0], b[1]]);
        } else if v >= i64::from(i32::MIN) {
            let b = (v as i32).to_be_bytes();
            self.put([I32, b[0], b[1], b[2], b[3]]);
        } else {
            let b = v.to_be_bytes();
            self.put([I64, b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]);
        }
    }

    #[inline(always)]
    pub(crate) fn bool(&mut self, v: bool) {
        self.put([if v { TRUE } else { FALSE }]);
    }

    #[inline(always)]
    pub(crate) fn nil(&mut self) {
        self.put([NIL]);
    }

    pub(crate) fn opt_i32(&mut self, v: Option<i32>) {
        match v {
            Some(v) => self.sint(i64::from(v)),
            None => self.nil(),
        }
    }

    #[inline(always)]
    pub(crate) fn array_len(&mut self, field: &'static str, len: usize) -> Result<(), EncodeError> {
        if len < 16 {
            self.put([FIXARRAY | len as u8]);
        } else if len <= usize::from(u16::MAX) {
            let b = (len as u16).to_be_bytes();
            self.put([ARRAY16, b[0], b[1]]);
        } else {
            let len = u32::try_from(len).map_err(|_| EncodeError::FieldTooLong { field })?;
            let b = len.to_be_bytes();
            self.put([ARRAY32, b[0], b[1], b[2], b[3]]);
        }
        Ok(())
    }

    /// Bytes copied as they are.
    #[inline]
    fn raw(&mut self, bytes: &[u8]) {
        if self.room - self.fill < bytes.len() {
            self.grow(bytes.len());
        }
        self.write_unchecked(bytes);
    }

    /// A string (as `rmp::encode::write_str`: fixstr, str8, str16, str32).
    pub(crate) fn string(&mut self, field: &'static str, s: &str) -> Result<(), EncodeError> {
        let len = u32::try_from(s.len()).map_err(|_| EncodeError::FieldTooLong { field })?;
        if len < 32 {
            self.put([FIXSTR | len as u8]);
        } else if len < 256 {
            self.put([STR8, len as u8]);
        } else if len <= u32::from(u16::MAX) {
            let b = (len as u16).to_be_bytes();
            self.put([STR16, b[0], b[1]]);
        } else {
            let b = len.to_be_bytes();
            self.put([STR32, b[0], b[1], b[2], b[3]]);
        }
        self.raw(s.as_bytes());
        Ok(())
    }

    /// A Go `[]byte`: nil, or bin whose payload is copied if small and queued as its own
    /// segment if large.
    #[inline(always)]
    pub(crate) fn opt_bytes(
        &mut self,
        field: &'static str,
        v: &Option<Bytes>,
    ) -> Result<(), EncodeError> {
        let Some(bytes) = v else {
            self.nil();
            return Ok(());
        };
        let len = u32::try_from(bytes.len()).map_err(|_| EncodeError::FieldTooLong { field })?;
        if len < 256 {
            self.put([BIN8, len as u8]);
        } else if len <= u32::from(u16::MAX) {
            let b = (len as u16).to_be_bytes();
            self.put([BIN16, b[0], b[1]]);
        } else {
            let b = len.to_be_bytes();
            self.put([BIN32, b[0], b[1], b[2], b[3]]);
        }
        self.payload(bytes);
        Ok(())
    }

    /// Raw payload bytes: copied below the threshold, a segment of their own at or above it.
    #[inline(always)]
    pub(crate) fn payload(&mut self, bytes: &Bytes) {
        if bytes.len() < self.large_payload_threshold || bytes.is_empty() {
            self.raw(bytes);
        } else {
            self.queue_payload(bytes);
        }
    }

    fn queue_payload(&mut self, bytes: &Bytes) {
        self.settle();
        self.flushed += (self.buf.len() - self.body_start) as u64;
        self.body_start = 0;
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
        self.flushed += bytes.len() as u64;
        if self.buf.capacity() < SMALL_FIELDS_RESERVE {
            self.buf.reserve(AFTER_SPLIT_RESERVE);
        }
        self.sync();
    }

    /// Fill in the body length, or undo the whole frame if it is longer than `max_body_len`.
    pub(crate) fn finish(mut self, max_body_len: u32) -> Result<(), EncodeError> {
        self.settle();
        let body_len = self.body_len();
        if body_len > u64::from(max_body_len) {
            self.abort();
            return Err(EncodeError::FrameTooLarge {
                len: body_len,
                max: max_body_len,
            });
        }
        let len = (body_len as u32).to_be_bytes();
        match self.head.take() {
            Some((index, mut head)) => {
                head[self.header_at..self.header_at + 4].copy_from_slice(&len);
                self.segments[index] = head.freeze();
            }
            None => self.buf[self.header_at..self.header_at + 4].copy_from_slice(&len),
        }
        Ok(())
    }

    /// Remove everything this frame queued, leaving the queue as it was before its header.
    pub(crate) fn abort(mut self) {
        self.settle();
        match self.head.take() {
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

impl Drop for BodySink<'_> {
    /// Whatever happens, bytes written are committed (never left as uninitialized length).
    fn drop(&mut self) {
        self.commit();
    }
}

#[cfg(test)]
mod tests {
    //! The sink's fast path writes into spare capacity and commits it with `set_len`; these
    //! tests drive every path through it (growth mid-message, payloads split into segments,
    //! aborts) and run under Miri (`cargo +nightly miri test --lib wire::native::msgpack`), which checks
    //! that no uninitialized byte is ever committed or read.

    use super::*;
    use crate::message::{AppendEntriesRequest, Log, Message};
    use crate::wire::native::{FrameEncoder, decode_body};
    use crate::wire::{Lane, SendQueue};

    fn message(entries: usize, size: usize) -> Message {
        AppendEntriesRequest {
            term: 7,
            leader: Some(Bytes::from_static(b"leader")),
            entries: (0..entries)
                .map(|i| Log::command(i as u64 + 300, u64::MAX, vec![i as u8; size]))
                .collect(),
            ..Default::default()
        }
        .into()
    }

    fn roundtrip(threshold: usize, initial_capacity: usize, m: &Message) {
        let encoder = FrameEncoder::new().with_large_payload_threshold(threshold);
        let mut q = SendQueue::new();
        q.buf = BytesMut::with_capacity(initial_capacity);
        encoder
            .encode(&mut q, 1, Lane::Control, crate::wire::Flags::NONE, m)
            .unwrap();
        encoder
            .encode(&mut q, 2, Lane::Control, crate::wire::Flags::NONE, m)
            .unwrap();
        let bytes = Bytes::from(q.to_vec());
        let first_len = u32::from_be_bytes(bytes[0..4].try_into().unwrap()) as usize;
        let body = bytes.slice(HEADER_LEN..HEADER_LEN + first_len);
        assert_eq!(&decode_body(MessageType::AppendEntries, &body).unwrap(), m);
    }

    #[test]
    fn every_write_path_commits_initialized_bytes() {
        for (entries, size) in [(0, 0), (1, 3), (3, 40), (2, 300)] {
            let m = message(entries, size);
            for threshold in [0, 1, 64, usize::MAX] {
                for capacity in [0, 1, 20, 4096] {
                    roundtrip(threshold, capacity, &m);
                }
            }
        }
    }

    #[test]
    fn abort_leaves_earlier_frames_intact() {
        let encoder = FrameEncoder::new()
            .with_large_payload_threshold(16)
            .with_max_body_len(100);
        let mut q = SendQueue::new();
        encoder
            .encode(
                &mut q,
                1,
                Lane::Control,
                crate::wire::Flags::NONE,
                &message(1, 3),
            )
            .unwrap();
        let before = q.to_vec();
        assert!(
            encoder
                .encode(
                    &mut q,
                    2,
                    Lane::Control,
                    crate::wire::Flags::NONE,
                    &message(2, 300)
                )
                .is_err()
        );
        assert_eq!(q.to_vec(), before);
    }
}
