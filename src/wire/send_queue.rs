//! The bytes waiting to go out on one connection, as a queue of segments for vectored writes.
//!
//! Small frames are packed back to back into one growing buffer, so a batch of heartbeats leaves
//! in a single `writev` element; large payloads sit in the queue as their own [`Bytes`], shared
//! with the caller's entry, never copied. Any codec writes into a `SendQueue`; the driver (or a
//! test) drains it with [`io_slices`](SendQueue::io_slices) and [`advance`](SendQueue::advance).

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

/// Encoded output waiting to be written.
#[derive(Debug, Default)]
pub struct SendQueue {
    /// Segments that come before `buf`, oldest first.
    pub(crate) segments: VecDeque<Bytes>,
    /// The tail: small frames and fields packed together, written after every segment.
    pub(crate) buf: BytesMut,
}

impl SendQueue {
    /// An empty queue.
    pub fn new() -> SendQueue {
        SendQueue::default()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty() && self.segments.iter().all(Bytes::is_empty)
    }

    /// Bytes waiting, in total.
    pub fn len(&self) -> usize {
        self.segments.iter().map(Bytes::len).sum::<usize>() + self.buf.len()
    }

    /// Number of separate pieces a vectored write of everything would take.
    pub fn segment_count(&self) -> usize {
        self.segments.len() + usize::from(!self.buf.is_empty())
    }

    /// Append bytes as they are (copied into the tail buffer).
    pub fn push_slice(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Append `segment` as a piece of its own (no copy), after everything queued.
    pub(crate) fn push_segment(&mut self, segment: Bytes) {
        if !self.buf.is_empty() {
            let packed = self.buf.split().freeze();
            self.segments.push_back(packed);
        }
        self.segments.push_back(segment);
    }

    /// Move everything `from` holds to the end of this queue (its segments uncopied).
    pub(crate) fn append(&mut self, from: SendQueue) {
        for segment in from.segments {
            self.push_segment(segment);
        }
        self.buf.extend_from_slice(&from.buf);
    }

    /// Fill `dst` with the waiting bytes in order, for `write_vectored`; returns how many
    /// slices were filled.
    pub fn io_slices<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let pieces = self
            .segments
            .iter()
            .map(|b| &b[..])
            .chain(std::iter::once(&self.buf[..]))
            .filter(|s| !s.is_empty());
        let mut n = 0;
        for (slot, piece) in dst.iter_mut().zip(pieces) {
            *slot = IoSlice::new(piece);
            n += 1;
        }
        n
    }

    /// The queued bytes when they are one non-empty slice (the usual case: small frames
    /// packed in the tail), so a writer needs no vector of slices for them; `None` when the
    /// queue is empty or in several pieces.
    pub fn single_slice(&self) -> Option<&[u8]> {
        match (self.segments.len(), self.buf.is_empty()) {
            (0, false) => Some(&self.buf),
            (1, true) if !self.segments[0].is_empty() => Some(&self.segments[0]),
            _ => None,
        }
    }

    /// Drop the first `n` bytes (they were written).
    ///
    /// # Panics
    /// If `n` is more than [`len`](Self::len): that is a bug in the caller, which can only have
    /// written what it was given.
    pub fn advance(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.segments.front_mut() else {
                self.buf.advance(n);
                return;
            };
            if n < front.len() {
                front.advance(n);
                return;
            }
            n -= front.len();
            self.segments.pop_front();
        }
        // Leave no fully written segment behind (a zero-length one only wastes a slot).
        while self.segments.front().is_some_and(Bytes::is_empty) {
            self.segments.pop_front();
        }
    }

    /// Everything waiting, concatenated (a copy; for tests and tools, not the hot path).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        for segment in &self.segments {
            out.extend_from_slice(segment);
        }
        out.extend_from_slice(&self.buf);
        out
    }

    /// Drop everything waiting.
    pub fn clear(&mut self) {
        if !self.segments.is_empty() {
            self.segments.clear();
        }
        self.buf.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One slice exactly when the bytes are one non-empty piece, and then the same bytes the
    /// vector would name.
    #[test]
    fn a_single_slice_is_the_whole_queue_in_one_piece() {
        let mut q = SendQueue::new();
        assert_eq!(q.single_slice(), None);
        q.push_slice(b"tail");
        assert_eq!(q.single_slice(), Some(&b"tail"[..]));
        q.segments.push_back(Bytes::from_static(b"head"));
        assert_eq!(
            q.single_slice(),
            None,
            "a segment and the tail are two pieces"
        );
        q.buf.clear();
        assert_eq!(q.single_slice(), Some(&b"head"[..]));
        q.segments[0] = Bytes::new();
        assert_eq!(
            q.single_slice(),
            None,
            "an empty segment is no slice to write"
        );
        q.push_slice(b"x");
        let mut slices = [IoSlice::new(&[]); 4];
        assert_eq!(q.io_slices(&mut slices), 1);
        assert_eq!(
            q.single_slice(),
            None,
            "an empty segment before the tail: the vector's way"
        );
    }
}
