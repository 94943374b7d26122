//! The native frame layout: the connection preamble and the fixed 16-byte frame header.
//! docs/wire.md is the specification; this file is its executable form.
//!
//! ```text
//! connection := preamble frame*
//! preamble   := "RAFTNET" version:u8                        (8 bytes)
//! frame      := header body
//! header     := body_len:u32 type:u8 flags:u8 lane:u8 0:u8 request_id:u64   (16 bytes, big-endian)
//! body       := body_len bytes: one msgpack value, or raw snapshot bytes
//! ```

use crate::message::MessageType;
use crate::wire::{Flags, FrameHeader, Lane, WireError};

/// The bytes every native connection starts with, in both directions, before the version byte.
pub const MAGIC: [u8; 7] = *b"RAFTNET";

/// The native wire format version this build speaks. Any change to the byte layout of a frame
/// or a body bumps it (the golden vectors in tests/golden/ make an accidental change fail).
pub const WIRE_VERSION: u8 = 1;

/// Length of the preamble: [`MAGIC`] then [`WIRE_VERSION`].
pub const PREAMBLE_LEN: usize = 8;

/// The preamble this build sends.
pub const PREAMBLE: [u8; PREAMBLE_LEN] = {
    let mut p = [0u8; PREAMBLE_LEN];
    let mut i = 0;
    while i < MAGIC.len() {
        p[i] = MAGIC[i];
        i += 1;
    }
    p[MAGIC.len()] = WIRE_VERSION;
    p
};

/// Length of a frame header.
pub const HEADER_LEN: usize = 16;

/// The default largest frame body a decoder accepts: 64 MiB, room for hashicorp's default batch
/// of 64 entries of 1 MiB each. Snapshots stream in chunks, so they never need a large frame.
pub const DEFAULT_MAX_BODY_LEN: u32 = 64 << 20;

impl FrameHeader {
    /// Parse and validate a header. `max_body_len` is checked here, before anything is
    /// allocated for the body.
    pub fn parse(bytes: &[u8; HEADER_LEN], max_body_len: u32) -> Result<FrameHeader, WireError> {
        let body_len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let kind = MessageType::from_u8(bytes[4]).ok_or(WireError::UnknownMessageType(bytes[4]))?;
        let flags = Flags(bytes[5]);
        if flags.0 & !allowed_flags(kind).0 != 0 {
            return Err(WireError::InvalidFlags {
                kind,
                flags: flags.0,
            });
        }
        let lane = Lane::from_u8(bytes[6])?;
        if bytes[7] != 0 {
            return Err(WireError::ReservedNotZero(bytes[7]));
        }
        if body_len > max_body_len {
            return Err(WireError::FrameTooLarge {
                len: body_len,
                max: max_body_len,
            });
        }
        let mut id = [0u8; 8];
        id.copy_from_slice(&bytes[8..16]);
        Ok(FrameHeader {
            body_len,
            kind,
            flags,
            lane,
            request_id: u64::from_be_bytes(id),
        })
    }

    /// The header's 16 bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..4].copy_from_slice(&self.body_len.to_be_bytes());
        out[4] = self.kind as u8;
        out[5] = self.flags.0;
        out[6] = self.lane as u8;
        out[8..16].copy_from_slice(&self.request_id.to_be_bytes());
        out
    }
}

/// The flags a message type may carry.
fn allowed_flags(kind: MessageType) -> Flags {
    match kind {
        MessageType::SnapshotChunk => Flags::END_STREAM,
        _ => Flags::NONE,
    }
}

/// Check a peer's preamble. On a mismatch the error names what was seen and, where it can tell,
/// which protocol the stray traffic speaks.
pub fn check_preamble(seen: &[u8; PREAMBLE_LEN]) -> Result<(), WireError> {
    if seen[..MAGIC.len()] != MAGIC {
        return Err(WireError::BadPreamble {
            seen: *seen,
            looks_like: guess_protocol(seen),
        });
    }
    let theirs = seen[MAGIC.len()];
    if theirs != WIRE_VERSION {
        return Err(WireError::UnsupportedVersion {
            theirs,
            ours: WIRE_VERSION,
        });
    }
    Ok(())
}

/// A best guess at what sent `seen` (the first bytes of a connection, as many as arrived)
/// instead of a raftnet preamble.
pub(crate) fn guess_protocol(seen: &[u8]) -> Option<&'static str> {
    const HTTP_METHODS: [&[u8]; 9] = [
        b"GET ", b"POST ", b"PUT ", b"HEAD ", b"DELETE ", b"OPTIONS", b"PATCH ", b"CONNECT",
        b"TRACE ",
    ];
    if HTTP_METHODS.iter().any(|m| seen.starts_with(m)) {
        return Some("an HTTP client");
    }
    if seen.starts_with(b"HTTP/") {
        return Some("an HTTP server");
    }
    if seen.starts_with(b"PRI * HT") {
        return Some("an HTTP/2 client");
    }
    if seen.starts_with(b"SSH-") {
        return Some("an SSH peer");
    }
    let (first, second) = (seen.first().copied(), seen.get(1).copied());
    // A TLS record: handshake (22), version 3.x.
    if first == Some(0x16) && second == Some(0x03) {
        return Some("a TLS client (is the peer configured for TLS?)");
    }
    // hashicorp/raft's NetworkTransport: an rpc type byte 0..=4, then a msgpack map holding
    // the request struct (fixmap or map16).
    if let (Some(rpc_type), Some(map)) = (first, second)
        && rpc_type <= 0x04
        && (map & 0xF0 == 0x80 || map == 0xDE)
    {
        return Some("a hashicorp/raft NetworkTransport");
    }
    if seen.len() >= 2 && seen.iter().all(|&b| b == 0) {
        return Some("zero bytes");
    }
    None
}
