//! Deterministic snapshot bodies: a reader that produces a known byte pattern of any length,
//! counting and checksumming what is read out of it, so both ends of a stream can be compared
//! without holding the body in memory.

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The byte at `offset` of a deterministic snapshot body.
pub(crate) fn pattern_byte(offset: u64) -> u8 {
    let x = offset.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 56) as u8 ^ (offset as u8)
}

/// A running checksum (FNV-1a over 64 bits) that can be fed in pieces.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Checksum {
    pub state: u64,
    pub len: u64,
}

impl Default for Checksum {
    fn default() -> Self {
        Checksum {
            state: 0xcbf2_9ce4_8422_2325,
            len: 0,
        }
    }
}

impl Checksum {
    pub(crate) fn update(&mut self, bytes: &[u8]) {
        let mut h = self.state;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01B3);
        }
        self.state = h;
        self.len += bytes.len() as u64;
    }
}

/// A reader that produces `limit` bytes of [`pattern_byte`] (`u64::MAX`: without end),
/// counting what was read out of it and checksumming it.
pub(crate) struct PatternReader {
    pub offset: u64,
    pub limit: u64,
    pub read: Arc<AtomicU64>,
    pub checksum: Arc<std::sync::Mutex<Checksum>>,
}

impl PatternReader {
    pub(crate) fn new(limit: u64) -> PatternReader {
        PatternReader {
            offset: 0,
            limit,
            read: Arc::new(AtomicU64::new(0)),
            checksum: Arc::new(std::sync::Mutex::new(Checksum::default())),
        }
    }
}

impl Read for PatternReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.limit - self.offset).min(buf.len() as u64) as usize;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = pattern_byte(self.offset + i as u64);
        }
        self.offset += n as u64;
        self.read.fetch_add(n as u64, Ordering::SeqCst);
        self.checksum.lock().unwrap().update(&buf[..n]);
        Ok(n)
    }
}
