//! msgpack as hashicorp/go-msgpack writes and reads it (its `MsgpackHandle` with `WriteExt`
//! off), by hand: the three tools the hashicorp codec is built from.
//!
//! - [`Out`], with [`Counter`] and [`QueueOut`]: the writer. Every message is written twice,
//!   once into a `Counter` (which measures it and runs every check that can fail) and then into
//!   the [`SendQueue`]: so an error leaves nothing queued, and the writing pass cannot fail
//!   halfway. Strings and byte slices take Go's old "raw" markers only (fixstr, `da`, `db`;
//!   never `d9` or `bin`), as go-msgpack writes them; payloads at or above the large-payload
//!   threshold are queued as their own segment, uncopied.
//! - [`Scanner`]: finds where one msgpack value ends in a stream that arrives in pieces,
//!   resumably (it never rescans what it has passed), with a single count of values still owed
//!   (an array of n owes n more, a map 2n), so nesting costs no stack and no memory.
//! - [`Reader`]: reads one complete value the way go-msgpack's decoder does: maps keyed by
//!   field name in any order, unknown keys skipped, any integer width that fits, strings and
//!   byte slices from any str or bin marker, and byte fields as slices of the frame (zero-copy).

use bytes::{BufMut, Bytes};

use crate::wire::{EncodeError, SendQueue, WireError};

const NIL: u8 = 0xc0;
const FALSE: u8 = 0xc2;
const TRUE: u8 = 0xc3;

/// Where an encoder writes. See the module doc for why there are two.
pub(super) trait Out {
    /// Small bytes, copied.
    fn put(&mut self, bytes: &[u8]);
    /// A payload: queued uncopied when it is large.
    fn payload(&mut self, bytes: &Bytes);

    fn nil(&mut self) {
        self.put(&[NIL]);
    }

    fn bool(&mut self, v: bool) {
        self.put(&[if v { TRUE } else { FALSE }]);
    }

    /// An unsigned integer in its smallest form (positive fixint, `cc`..`cf`).
    fn uint(&mut self, v: u64) {
        if v <= 0x7f {
            self.put(&[v as u8]);
        } else if v <= u64::from(u8::MAX) {
            self.put(&[0xcc, v as u8]);
        } else if v <= u64::from(u16::MAX) {
            let b = (v as u16).to_be_bytes();
            self.put(&[0xcd, b[0], b[1]]);
        } else if v <= u64::from(u32::MAX) {
            let b = (v as u32).to_be_bytes();
            self.put(&[0xce, b[0], b[1], b[2], b[3]]);
        } else {
            let mut m = [0u8; 9];
            m[0] = 0xcf;
            m[1..].copy_from_slice(&v.to_be_bytes());
            self.put(&m);
        }
    }

    /// A signed integer. `signed_markers`: go-msgpack v2 (hashicorp/raft 1.6 and later) writes a
    /// non-negative value above 127 with a signed marker (`d1 00 c8` for 200); go-msgpack 0.5.5
    /// (raft 1.1 to 1.5) with an unsigned one (`cc c8`).
    fn sint(&mut self, v: i64, signed_markers: bool) {
        if v >= 0 && (v <= 0x7f || !signed_markers) {
            return self.uint(v as u64);
        }
        if (-32..0).contains(&v) {
            self.put(&[v as i8 as u8]);
        } else if i64::from(i8::MIN) <= v && v <= i64::from(i8::MAX) {
            self.put(&[0xd0, v as i8 as u8]);
        } else if i64::from(i16::MIN) <= v && v <= i64::from(i16::MAX) {
            let b = (v as i16).to_be_bytes();
            self.put(&[0xd1, b[0], b[1]]);
        } else if i64::from(i32::MIN) <= v && v <= i64::from(i32::MAX) {
            let b = (v as i32).to_be_bytes();
            self.put(&[0xd2, b[0], b[1], b[2], b[3]]);
        } else {
            let mut m = [0u8; 9];
            m[0] = 0xd3;
            m[1..].copy_from_slice(&v.to_be_bytes());
            self.put(&m);
        }
    }

    /// A map header for `len` pairs.
    fn map_len(&mut self, len: usize) {
        if len < 16 {
            self.put(&[0x80 | len as u8]);
        } else {
            let b = (len as u16).to_be_bytes();
            self.put(&[0xde, b[0], b[1]]);
        }
    }

    /// An array header.
    fn array_len(&mut self, field: &'static str, len: usize) -> Result<(), EncodeError> {
        if len < 16 {
            self.put(&[0x90 | len as u8]);
        } else if let Ok(n) = u16::try_from(len) {
            let b = n.to_be_bytes();
            self.put(&[0xdc, b[0], b[1]]);
        } else {
            let n = u32::try_from(len).map_err(|_| EncodeError::FieldTooLong { field })?;
            let b = n.to_be_bytes();
            self.put(&[0xdd, b[0], b[1], b[2], b[3]]);
        }
        Ok(())
    }

    /// A raw-string header (go-msgpack's old spec: fixstr, then `da`, then `db`).
    fn raw_len(&mut self, field: &'static str, len: usize) -> Result<(), EncodeError> {
        if len < 32 {
            self.put(&[0xa0 | len as u8]);
        } else if let Ok(n) = u16::try_from(len) {
            let b = n.to_be_bytes();
            self.put(&[0xda, b[0], b[1]]);
        } else {
            let n = u32::try_from(len).map_err(|_| EncodeError::FieldTooLong { field })?;
            let b = n.to_be_bytes();
            self.put(&[0xdb, b[0], b[1], b[2], b[3]]);
        }
        Ok(())
    }

    /// A map key (a Go field name).
    fn key(&mut self, name: &'static str) {
        // Field names are short ASCII: always a fixstr.
        self.put(&[0xa0 | name.len() as u8]);
        self.put(name.as_bytes());
    }

    /// A Go string.
    fn str(&mut self, field: &'static str, s: &str) -> Result<(), EncodeError> {
        self.raw_len(field, s.len())?;
        self.put(s.as_bytes());
        Ok(())
    }

    /// A Go `[]byte`: nil (`c0`) or raw bytes (an empty slice is `a0`).
    fn opt_bytes(&mut self, field: &'static str, v: &Option<Bytes>) -> Result<(), EncodeError> {
        match v {
            None => self.nil(),
            Some(b) => {
                self.raw_len(field, b.len())?;
                self.payload(b);
            }
        }
        Ok(())
    }
}

/// Measures a message (the first of the two passes).
#[derive(Debug, Default)]
pub(super) struct Counter {
    pub(super) len: u64,
}

impl Out for Counter {
    fn put(&mut self, bytes: &[u8]) {
        self.len += bytes.len() as u64;
    }

    fn payload(&mut self, bytes: &Bytes) {
        self.len += bytes.len() as u64;
    }
}

/// Writes into a [`SendQueue`] (the second pass).
pub(super) struct QueueOut<'a> {
    pub(super) out: &'a mut SendQueue,
    pub(super) large_payload_threshold: usize,
}

impl Out for QueueOut<'_> {
    fn put(&mut self, bytes: &[u8]) {
        self.out.buf.put_slice(bytes);
    }

    fn payload(&mut self, bytes: &Bytes) {
        if bytes.len() < self.large_payload_threshold || bytes.is_empty() {
            self.out.buf.put_slice(bytes);
        } else {
            self.out.push_segment(bytes.clone());
        }
    }
}

/// How one msgpack marker continues: the bytes of its length field, a fixed payload, whether
/// the length counts bytes or child values.
enum Shape {
    /// `fixed` more bytes, no children.
    Fixed(usize),
    /// A length of `width` bytes, then that many bytes (plus `extra`, an ext's type byte).
    Sized { width: usize, extra: usize },
    /// `n` children follow (fixarray / fixmap: n known from the marker).
    Children(u64),
    /// A length of `width` bytes, then that many children times `per`.
    Counted { width: usize, per: u64 },
}

fn shape(marker: u8) -> Result<Shape, WireError> {
    Ok(match marker {
        0x00..=0x7f | 0xe0..=0xff | NIL | FALSE | TRUE => Shape::Fixed(0),
        0x80..=0x8f => Shape::Children(2 * u64::from(marker & 0x0f)),
        0x90..=0x9f => Shape::Children(u64::from(marker & 0x0f)),
        0xa0..=0xbf => Shape::Fixed(usize::from(marker & 0x1f)),
        0xc4 | 0xd9 => Shape::Sized { width: 1, extra: 0 },
        0xc5 | 0xda => Shape::Sized { width: 2, extra: 0 },
        0xc6 | 0xdb => Shape::Sized { width: 4, extra: 0 },
        0xc7 => Shape::Sized { width: 1, extra: 1 },
        0xc8 => Shape::Sized { width: 2, extra: 1 },
        0xc9 => Shape::Sized { width: 4, extra: 1 },
        0xca => Shape::Fixed(4),
        0xcb => Shape::Fixed(8),
        0xcc | 0xd0 => Shape::Fixed(1),
        0xcd | 0xd1 => Shape::Fixed(2),
        0xce | 0xd2 => Shape::Fixed(4),
        0xcf | 0xd3 => Shape::Fixed(8),
        0xd4 => Shape::Fixed(2),
        0xd5 => Shape::Fixed(3),
        0xd6 => Shape::Fixed(5),
        0xd7 => Shape::Fixed(9),
        0xd8 => Shape::Fixed(17),
        0xdc => Shape::Counted { width: 2, per: 1 },
        0xdd => Shape::Counted { width: 4, per: 1 },
        0xde => Shape::Counted { width: 2, per: 2 },
        0xdf => Shape::Counted { width: 4, per: 2 },
        // 0xc1: never used by msgpack.
        other => {
            return Err(WireError::WrongType {
                field: "msgpack value",
                expected: "a msgpack marker",
                found: other,
            });
        }
    })
}

fn be_len(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
}

/// Finds the end of `values` consecutive msgpack values at the start of a buffer that grows
/// between calls. See the module doc.
#[derive(Debug, Clone, Default)]
pub(super) struct Scanner {
    /// Bytes passed so far (whole tokens only).
    pos: usize,
    /// Values still to pass.
    owed: u64,
}

impl Scanner {
    /// Start looking for the end of `values` values.
    pub(super) fn start(&mut self, values: u64) {
        self.pos = 0;
        self.owed = values;
    }

    /// Whether a scan is under way.
    pub(super) fn active(&self) -> bool {
        self.owed > 0 || self.pos > 0
    }

    /// Go on scanning `data` (the same buffer as before, possibly longer). `Some(len)`: the
    /// values end after `len` bytes; `None`: more bytes are needed. Values longer than `max`
    /// bytes, or declaring more children than `max` bytes could hold, are an error.
    pub(super) fn scan(&mut self, data: &[u8], max: usize) -> Result<Option<usize>, WireError> {
        while self.owed > 0 {
            let Some(&marker) = data.get(self.pos) else {
                return Ok(None);
            };
            let rest = &data[self.pos + 1..];
            let (len, children) = match shape(marker)? {
                Shape::Fixed(n) => (1 + n as u64, 0),
                Shape::Children(n) => (1, n),
                Shape::Sized { width, extra } => {
                    let Some(field) = rest.get(..width) else {
                        return Ok(None);
                    };
                    (1 + (width + extra) as u64 + be_len(field), 0)
                }
                Shape::Counted { width, per } => {
                    let Some(field) = rest.get(..width) else {
                        return Ok(None);
                    };
                    (1 + width as u64, per * be_len(field))
                }
            };
            let end = self.pos as u64 + len;
            // Every value takes at least a byte: what is owed must fit in what is left.
            let owed = self.owed - 1 + children;
            if end.saturating_add(owed) > max as u64 {
                return Err(WireError::FrameTooLarge {
                    len: u32::try_from(end.saturating_add(owed)).unwrap_or(u32::MAX),
                    max: u32::try_from(max).unwrap_or(u32::MAX),
                });
            }
            if end > data.len() as u64 {
                return Ok(None);
            }
            self.pos = end as usize;
            self.owed = owed;
        }
        let len = self.pos;
        self.pos = 0;
        Ok(Some(len))
    }
}

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

/// A cursor over complete msgpack values (cut out by a [`Scanner`]).
pub(super) struct Reader<'a> {
    body: &'a Bytes,
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(super) fn new(body: &'a Bytes) -> Reader<'a> {
        Reader { body, pos: 0 }
    }

    /// Bytes read so far.
    pub(super) fn position(&self) -> usize {
        self.pos
    }

    pub(super) fn at_end(&self) -> bool {
        self.pos >= self.body.len()
    }

    fn peek(&self, field: &'static str) -> Result<u8, WireError> {
        self.body
            .get(self.pos)
            .copied()
            .ok_or_else(|| truncated(field))
    }

    fn byte(&mut self, field: &'static str) -> Result<u8, WireError> {
        let b = self.peek(field)?;
        self.pos += 1;
        Ok(b)
    }

    fn take(&mut self, field: &'static str, n: usize) -> Result<&'a [u8], WireError> {
        let body: &'a [u8] = self.body;
        let end = self.pos.checked_add(n).ok_or_else(|| truncated(field))?;
        let s = body.get(self.pos..end).ok_or_else(|| {
            if n > body.len() - self.pos {
                WireError::LengthOverrun {
                    field,
                    declared: u32::try_from(n).unwrap_or(u32::MAX),
                    remaining: body.len() - self.pos,
                }
            } else {
                truncated(field)
            }
        })?;
        self.pos = end;
        Ok(s)
    }

    fn be(&mut self, field: &'static str, width: usize) -> Result<u64, WireError> {
        Ok(be_len(self.take(field, width)?))
    }

    /// Consume a nil if one is next.
    pub(super) fn take_nil(&mut self) -> bool {
        if self.body.get(self.pos) == Some(&NIL) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Any msgpack integer, as i128 (every u64 and i64 fits).
    fn int(&mut self, field: &'static str) -> Result<i128, WireError> {
        let m = self.byte(field)?;
        Ok(match m {
            0x00..=0x7f => i128::from(m),
            0xe0..=0xff => i128::from(m as i8),
            0xcc => i128::from(self.be(field, 1)?),
            0xcd => i128::from(self.be(field, 2)?),
            0xce => i128::from(self.be(field, 4)?),
            0xcf => i128::from(self.be(field, 8)?),
            0xd0 => i128::from(self.be(field, 1)? as u8 as i8),
            0xd1 => i128::from(self.be(field, 2)? as u16 as i16),
            0xd2 => i128::from(self.be(field, 4)? as u32 as i32),
            0xd3 => i128::from(self.be(field, 8)? as i64),
            // go-msgpack decodes nil into a number as zero.
            NIL => 0,
            other => return Err(wrong_type(field, "an integer", other)),
        })
    }

    pub(super) fn u64(&mut self, field: &'static str) -> Result<u64, WireError> {
        u64::try_from(self.int(field)?).map_err(|_| out_of_range(field))
    }

    pub(super) fn i64(&mut self, field: &'static str) -> Result<i64, WireError> {
        i64::try_from(self.int(field)?).map_err(|_| out_of_range(field))
    }

    pub(super) fn u8(&mut self, field: &'static str) -> Result<u8, WireError> {
        u8::try_from(self.int(field)?).map_err(|_| out_of_range(field))
    }

    pub(super) fn bool(&mut self, field: &'static str) -> Result<bool, WireError> {
        match self.byte(field)? {
            FALSE | NIL => Ok(false),
            TRUE => Ok(true),
            other => Err(wrong_type(field, "a bool", other)),
        }
    }

    /// The length of a str or bin value, if one is next (`None`: something else is).
    fn raw_len(&mut self, field: &'static str) -> Result<Option<usize>, WireError> {
        let m = self.peek(field)?;
        let len = match m {
            0xa0..=0xbf => {
                self.pos += 1;
                u64::from(m & 0x1f)
            }
            0xc4 | 0xd9 => {
                self.pos += 1;
                self.be(field, 1)?
            }
            0xc5 | 0xda => {
                self.pos += 1;
                self.be(field, 2)?
            }
            0xc6 | 0xdb => {
                self.pos += 1;
                self.be(field, 4)?
            }
            _ => return Ok(None),
        };
        Ok(Some(len as usize))
    }

    /// A Go `[]byte`: `None` for nil, a slice of the body otherwise (no copy).
    pub(super) fn opt_bytes(&mut self, field: &'static str) -> Result<Option<Bytes>, WireError> {
        if self.take_nil() {
            return Ok(None);
        }
        let found = self.peek(field)?;
        let Some(len) = self.raw_len(field)? else {
            return Err(wrong_type(field, "bytes or nil", found));
        };
        let start = self.pos;
        self.take(field, len)?;
        Ok(Some(self.body.slice(start..start + len)))
    }

    /// A Go string (nil reads as ""); bytes that are not UTF-8 are replaced, as Go strings may
    /// hold any bytes.
    pub(super) fn string(&mut self, field: &'static str) -> Result<String, WireError> {
        if self.take_nil() {
            return Ok(String::new());
        }
        let found = self.peek(field)?;
        let Some(len) = self.raw_len(field)? else {
            return Err(wrong_type(field, "a string", found));
        };
        Ok(String::from_utf8_lossy(self.take(field, len)?).into_owned())
    }

    /// A `time.Time`'s bytes: `None` for nil, else the payload of a str or bin value or of an
    /// ext of type -1 (the msgpack timestamp extension).
    pub(super) fn time_bytes(
        &mut self,
        field: &'static str,
    ) -> Result<Option<&'a [u8]>, WireError> {
        if self.take_nil() {
            return Ok(None);
        }
        let found = self.peek(field)?;
        if let Some(len) = self.raw_len(field)? {
            return self.take(field, len).map(Some);
        }
        self.pos += 1;
        let len = match found {
            0xd6 => 4,
            0xd7 => 8,
            0xc7 => self.be(field, 1)? as usize,
            other => return Err(wrong_type(field, "a time", other)),
        };
        if self.byte(field)? != 0xff {
            return Err(out_of_range(field));
        }
        self.take(field, len).map(Some)
    }

    /// A map header: the number of pairs.
    pub(super) fn map_len(&mut self, field: &'static str) -> Result<u64, WireError> {
        let m = self.byte(field)?;
        let n = match m {
            0x80..=0x8f => u64::from(m & 0x0f),
            0xde => self.be(field, 2)?,
            0xdf => self.be(field, 4)?,
            other => return Err(wrong_type(field, "a map", other)),
        };
        self.check_count(field, n.saturating_mul(2))?;
        Ok(n)
    }

    /// An array header (nil reads as an empty array, as Go's nil slice).
    pub(super) fn array_len(&mut self, field: &'static str) -> Result<u64, WireError> {
        let m = self.byte(field)?;
        let n = match m {
            NIL => 0,
            0x90..=0x9f => u64::from(m & 0x0f),
            0xdc => self.be(field, 2)?,
            0xdd => self.be(field, 4)?,
            other => return Err(wrong_type(field, "an array", other)),
        };
        self.check_count(field, n)?;
        Ok(n)
    }

    /// Every value takes a byte at least: a count larger than the bytes left is a lie.
    fn check_count(&self, field: &'static str, values: u64) -> Result<(), WireError> {
        let remaining = self.body.len() - self.pos;
        if values > remaining as u64 {
            return Err(WireError::LengthOverrun {
                field,
                declared: u32::try_from(values).unwrap_or(u32::MAX),
                remaining,
            });
        }
        Ok(())
    }

    /// A map key: the raw bytes of a string key.
    pub(super) fn key(&mut self, field: &'static str) -> Result<&'a [u8], WireError> {
        let found = self.peek(field)?;
        let Some(len) = self.raw_len(field)? else {
            return Err(wrong_type(field, "a string key", found));
        };
        self.take(field, len)
    }

    /// Pass over one value of any type (an unknown field's), without recursion.
    pub(super) fn skip(&mut self, field: &'static str) -> Result<(), WireError> {
        let mut scanner = Scanner::default();
        scanner.start(1);
        let rest = &self.body[self.pos..];
        match scanner.scan(rest, rest.len())? {
            Some(n) => {
                self.pos += n;
                Ok(())
            }
            None => Err(truncated(field)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(f: impl Fn(&mut dyn Out)) -> Vec<u8> {
        let mut counter = Counter::default();
        f(&mut counter);
        let mut queue = SendQueue::new();
        f(&mut QueueOut {
            out: &mut queue,
            large_payload_threshold: 4,
        });
        let bytes = queue.to_vec();
        assert_eq!(counter.len, bytes.len() as u64, "the two passes agree");
        bytes
    }

    #[test]
    fn integers_take_go_msgpack_markers() {
        assert_eq!(written(|o| o.uint(127)), [0x7f]);
        assert_eq!(written(|o| o.uint(128)), [0xcc, 0x80]);
        assert_eq!(written(|o| o.uint(256)), [0xcd, 0x01, 0x00]);
        assert_eq!(written(|o| o.uint(1 << 16)), [0xce, 0, 1, 0, 0]);
        assert_eq!(written(|o| o.uint(1 << 32)), [0xcf, 0, 0, 0, 1, 0, 0, 0, 0]);
        // go-msgpack v2 (raft 1.6+): signed markers; 0.5.5: unsigned ones.
        assert_eq!(written(|o| o.sint(1000, true)), [0xd1, 0x03, 0xe8]);
        assert_eq!(written(|o| o.sint(1000, false)), [0xcd, 0x03, 0xe8]);
        assert_eq!(written(|o| o.sint(200, true)), [0xd1, 0x00, 0xc8]);
        assert_eq!(written(|o| o.sint(5, true)), [0x05]);
        assert_eq!(written(|o| o.sint(-1, false)), [0xff]);
        assert_eq!(written(|o| o.sint(-33, true)), [0xd0, 0xdf]);
    }

    #[test]
    fn strings_use_the_raw_family_only() {
        assert_eq!(written(|o| o.str("s", "").unwrap()), [0xa0]);
        let s53 = "x".repeat(53);
        let w = written(|o| o.str("s", &s53).unwrap());
        assert_eq!(
            &w[..3],
            &[0xda, 0x00, 0x35],
            "str16 for 53 bytes, never str8"
        );
        assert_eq!(written(|o| o.opt_bytes("b", &None).unwrap()), [0xc0]);
        let large = Bytes::from(vec![7u8; 40]);
        let w = written(|o| o.opt_bytes("b", &Some(large.clone())).unwrap());
        assert_eq!(&w[..3], &[0xda, 0x00, 40]);
        assert_eq!(&w[3..], &large[..]);
    }

    #[test]
    fn the_scanner_resumes_and_bounds_what_is_declared() {
        // {"a": [1, "xyz"], "b": nil} then a byte of the next value.
        let value = [
            0x82, 0xa1, b'a', 0x92, 0x01, 0xa3, b'x', b'y', b'z', 0xa1, b'b', 0xc0, 0x07,
        ];
        for cut in 0..value.len() - 1 {
            let mut s = Scanner::default();
            s.start(1);
            assert_eq!(s.scan(&value[..cut], 100).unwrap(), None, "cut at {cut}");
            assert_eq!(s.scan(&value, 100).unwrap(), Some(12));
        }
        // An array32 declaring 2^32-1 elements in a frame of at most 1000 bytes.
        let mut s = Scanner::default();
        s.start(1);
        assert!(matches!(
            s.scan(&[0xdd, 0xff, 0xff, 0xff, 0xff], 1000),
            Err(WireError::FrameTooLarge { max: 1000, .. })
        ));
        // A string longer than the maximum is refused before it arrives.
        s.start(1);
        assert!(matches!(
            s.scan(&[0xdb, 0x00, 0x10, 0x00, 0x00], 1000),
            Err(WireError::FrameTooLarge { .. })
        ));
        s.start(1);
        assert!(matches!(
            s.scan(&[0xc1], 1000),
            Err(WireError::WrongType { found: 0xc1, .. })
        ));
    }

    #[test]
    fn the_reader_accepts_every_width_go_accepts() {
        let body = Bytes::from_static(&[
            0xd1, 0x03, 0xe8, // i16 1000
            0xcd, 0x03, 0xe8, // u16 1000
            0xc4, 0x02, b'h', b'i', // bin8 "hi"
            0xd9, 0x02, b'h', b'i', // str8 "hi"
            0xff, // -1
        ]);
        let mut r = Reader::new(&body);
        assert_eq!(r.u64("a").unwrap(), 1000);
        assert_eq!(r.i64("b").unwrap(), 1000);
        assert_eq!(r.opt_bytes("c").unwrap().unwrap(), &b"hi"[..]);
        assert_eq!(r.opt_bytes("d").unwrap().unwrap(), &b"hi"[..]);
        assert_eq!(r.u64("e"), Err(WireError::OutOfRange { field: "e" }));
    }
}
