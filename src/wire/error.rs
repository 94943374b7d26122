//! The typed errors of the wire core. Each way an input can be wrong has its own variant, so
//! callers (and tests) can tell a stray HTTP client from a truncated frame from a peer speaking
//! a newer version.

use std::fmt;

use super::native::PREAMBLE_LEN;
use crate::message::MessageType;

/// Why bytes from a peer could not be decoded. After any of these the connection's byte
/// stream can no longer be trusted: the decoder keeps returning the same error.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WireError {
    /// The connection did not start with raftnet's magic bytes.
    BadPreamble {
        /// The first bytes the peer sent.
        seen: [u8; PREAMBLE_LEN],
        /// What those bytes look like, where that can be told.
        looks_like: Option<&'static str>,
    },
    /// A listener that accepts both formats ([`SniffingCodecFactory`](super::SniffingCodecFactory))
    /// got a first byte that starts neither: not the native preamble's `R`, not a
    /// hashicorp/raft rpc type (0 to 4).
    UnknownFormat {
        /// The connection's first byte.
        first: u8,
        /// What the bytes that arrived with it (as many as one read gave) look like, where
        /// that can be told.
        looks_like: Option<&'static str>,
    },
    /// The peer speaks another version of the native format.
    UnsupportedVersion {
        /// The peer's version.
        theirs: u8,
        /// Ours.
        ours: u8,
    },
    /// A frame header declared a body longer than the configured maximum.
    FrameTooLarge {
        /// The declared body length.
        len: u32,
        /// The maximum.
        max: u32,
    },
    /// A frame header named a message type this version does not know.
    UnknownMessageType(u8),
    /// A frame header named a lane this version does not know.
    UnknownLane(u8),
    /// A frame header carried flags its message type may not have.
    InvalidFlags {
        /// The frame's message type.
        kind: MessageType,
        /// The flag bits as received.
        flags: u8,
    },
    /// The reserved header byte was not zero.
    ReservedNotZero(u8),
    /// A frame body ended in the middle of a value.
    Truncated {
        /// The field being read.
        field: &'static str,
    },
    /// A value had the wrong msgpack type.
    WrongType {
        /// The field being read.
        field: &'static str,
        /// What the field must be.
        expected: &'static str,
        /// The msgpack marker byte found instead.
        found: u8,
    },
    /// An array, string or binary declared more elements or bytes than the frame has left.
    LengthOverrun {
        /// The field being read.
        field: &'static str,
        /// The declared length.
        declared: u32,
        /// Bytes left in the frame body.
        remaining: usize,
    },
    /// A message's array did not have the number of fields its type has.
    FieldCount {
        /// The message or struct.
        message: &'static str,
        /// Fields it has.
        expected: u32,
        /// Fields received.
        found: u32,
    },
    /// An integer did not fit its field, or a value was outside its field's range.
    OutOfRange {
        /// The field being read.
        field: &'static str,
    },
    /// A string was not UTF-8.
    InvalidUtf8 {
        /// The field being read.
        field: &'static str,
    },
    /// Bytes were left in a frame body after its message.
    TrailingBytes {
        /// The message type.
        kind: MessageType,
        /// How many bytes were left over.
        count: usize,
    },
    /// A message arrived where the protocol does not allow it: a response on a serving
    /// connection, a request answering a call, a response of another type than the request's,
    /// a snapshot chunk with no snapshot in progress.
    UnexpectedMessage {
        /// What was allowed there.
        expected: &'static str,
        /// What came.
        found: MessageType,
    },
    /// An AppendEntries declared more entries than the receiver takes
    /// ([`Config::max_entries_per_request`](crate::Config::max_entries_per_request)).
    TooManyEntries {
        /// Entries declared.
        declared: u32,
        /// The maximum.
        max: usize,
    },
    /// An InstallSnapshot arrived on a connection whose previous snapshot body had not ended (a
    /// connection carries one snapshot at a time).
    SnapshotInProgress,
    /// The stream ended inside a preamble, frame header or frame body.
    UnexpectedEof {
        /// Where the stream ended.
        inside: &'static str,
        /// Bytes of that unit received before the end.
        buffered: usize,
    },
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::BadPreamble { seen, looks_like } => {
                write!(
                    f,
                    "not a raftnet connection: it began with {}",
                    HexAscii(seen)
                )?;
                match looks_like {
                    Some(what) => write!(f, ", which looks like {what}"),
                    None => Ok(()),
                }
            }
            WireError::UnknownFormat { first, looks_like } => {
                write!(
                    f,
                    "neither a raftnet nor a hashicorp/raft connection: its first byte is {}",
                    HexAscii(&[*first])
                )?;
                match looks_like {
                    Some(what) => write!(f, ", which looks like {what}"),
                    None => Ok(()),
                }
            }
            WireError::UnsupportedVersion { theirs, ours } => write!(
                f,
                "peer speaks raftnet wire version {theirs}, this build speaks version {ours}"
            ),
            WireError::FrameTooLarge { len, max } => {
                write!(f, "frame body of {len} bytes exceeds the maximum of {max}")
            }
            WireError::UnknownMessageType(t) => write!(f, "unknown message type {t:#04x}"),
            WireError::UnknownLane(l) => write!(f, "unknown lane {l}"),
            WireError::InvalidFlags { kind, flags } => {
                write!(f, "flags {flags:#04x} are not valid on a {kind:?} frame")
            }
            WireError::ReservedNotZero(b) => {
                write!(f, "reserved frame header byte is {b:#04x}, not 0")
            }
            WireError::Truncated { field } => write!(f, "frame body ends inside {field}"),
            WireError::WrongType {
                field,
                expected,
                found,
            } => write!(
                f,
                "{field}: expected {expected}, found msgpack marker {found:#04x}"
            ),
            WireError::LengthOverrun {
                field,
                declared,
                remaining,
            } => write!(
                f,
                "{field}: declared length {declared} exceeds the {remaining} bytes left in the frame"
            ),
            WireError::FieldCount {
                message,
                expected,
                found,
            } => write!(f, "{message} has {expected} fields, received {found}"),
            WireError::OutOfRange { field } => write!(f, "{field}: value out of range"),
            WireError::InvalidUtf8 { field } => write!(f, "{field}: not valid UTF-8"),
            WireError::TrailingBytes { kind, count } => {
                write!(f, "{count} bytes left over after a {kind:?} message")
            }
            WireError::UnexpectedMessage { expected, found } => {
                write!(f, "expected {expected}, received a {found:?} message")
            }
            WireError::TooManyEntries { declared, max } => write!(
                f,
                "AppendEntries declares {declared} entries, more than the maximum of {max}"
            ),
            WireError::SnapshotInProgress => f.write_str(
                "an InstallSnapshot arrived before the previous snapshot's body on the connection ended",
            ),
            WireError::UnexpectedEof { inside, buffered } => write!(
                f,
                "connection closed inside a {inside} ({buffered} bytes of it received)"
            ),
        }
    }
}

impl std::error::Error for WireError {}

/// Why a message could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EncodeError {
    /// The encoded body would exceed the maximum body length (the peer would reject it).
    FrameTooLarge {
        /// The body length the message needs, as far as it was counted.
        len: u64,
        /// The maximum.
        max: u32,
    },
    /// A single field is longer than msgpack can describe (4 GiB).
    FieldTooLong {
        /// The field.
        field: &'static str,
    },
    /// A field holds a value its type does not allow (a timestamp's nanoseconds at or above
    /// one second).
    OutOfRange {
        /// The field.
        field: &'static str,
    },
    /// A [`Message::SnapshotChunk`](crate::message::Message::SnapshotChunk) can only be sent with
    /// flags valid for it, and other messages with none.
    InvalidFlags {
        /// The message type.
        kind: MessageType,
        /// The flag bits given.
        flags: u8,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::FrameTooLarge { len, max } => write!(
                f,
                "message needs a frame body of at least {len} bytes, the maximum is {max}"
            ),
            EncodeError::FieldTooLong { field } => {
                write!(f, "{field} is longer than msgpack allows (4 GiB)")
            }
            EncodeError::OutOfRange { field } => write!(f, "{field}: value out of range"),
            EncodeError::InvalidFlags { kind, flags } => {
                write!(f, "flags {flags:#04x} are not valid on a {kind:?} frame")
            }
        }
    }
}

impl std::error::Error for EncodeError {}

/// Shows bytes as hex, then as text where printable: `47 45 54 20 ("GET ")`.
struct HexAscii<'a>(&'a [u8]);

impl fmt::Display for HexAscii<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, b) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{b:02x}")?;
        }
        f.write_str(" (\"")?;
        for &b in self.0 {
            if b.is_ascii_graphic() || b == b' ' {
                write!(f, "{}", b as char)?;
            } else {
                f.write_str(".")?;
            }
        }
        f.write_str("\")")
    }
}
