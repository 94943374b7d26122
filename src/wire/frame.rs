//! What every wire format's frames have in common, as the connection engine sees them: a
//! [`FrameHeader`] (kind, flags, lane, request id) and a body ([`RawFrame`]). Each format
//! (`native`, later hashicorp's) reads its own bytes into these.

use bytes::Bytes;

use super::error::WireError;
use crate::message::MessageType;

/// Per-frame flag bits. Bits this version does not define are rejected, so a later version
/// can give them meaning without being misread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(pub(crate) u8);

impl Flags {
    /// No flag set.
    pub const NONE: Flags = Flags(0);
    /// On a [`MessageType::SnapshotChunk`](crate::message::MessageType::SnapshotChunk): the last chunk of the snapshot body.
    pub const END_STREAM: Flags = Flags(0x01);

    /// The raw bits.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// Flags from raw bits, without validation (the decoder validates per message type).
    pub fn from_bits(bits: u8) -> Flags {
        Flags(bits)
    }

    /// Whether every bit of `other` is set.
    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;
    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

/// Which traffic class a frame belongs to. The transport keeps each lane's frames apart so a
/// heartbeat never waits on the wire behind a snapshot or a large append.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(u8)]
pub enum Lane {
    /// Ordinary request/response RPCs (votes, single appends, timeout-now).
    #[default]
    Control = 0,
    /// Heartbeats only.
    Heartbeat = 1,
    /// Pipelined AppendEntries.
    Pipeline = 2,
    /// A snapshot transfer.
    Snapshot = 3,
}

impl Lane {
    /// The lane for a wire byte.
    pub fn from_u8(byte: u8) -> Result<Lane, WireError> {
        Ok(match byte {
            0 => Lane::Control,
            1 => Lane::Heartbeat,
            2 => Lane::Pipeline,
            3 => Lane::Snapshot,
            other => return Err(WireError::UnknownLane(other)),
        })
    }
}

/// A decoded, validated frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FrameHeader {
    /// Length of the body that follows the header.
    pub body_len: u32,
    /// What the body holds.
    pub kind: MessageType,
    /// Flag bits, valid for `kind`.
    pub flags: Flags,
    /// Traffic class.
    pub lane: Lane,
    /// Matches a response (and snapshot chunks) to its request.
    pub request_id: u64,
}

/// A frame whose header is validated and whose body is cut out, not yet decoded. The engine
/// routes on the header (lane, request id, type) before paying for the body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFrame {
    /// The validated header.
    pub header: FrameHeader,
    /// Exactly `header.body_len` bytes.
    pub body: Bytes,
}
