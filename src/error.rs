//! The one error type callers of the transport see, covering hashicorp/raft's cases.

use std::fmt;
use std::io;
use std::sync::Arc;

use crate::wire::{EncodeError, WireError};

/// Why an RPC, a pipeline or the transport itself failed.
///
/// Cloneable (a lost connection fails every call that was waiting on it with the same error).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Error {
    /// The transport was closed (hashicorp: `ErrTransportShutdown`, "transport shutdown").
    Shutdown,
    /// The pipeline was closed, by its owner or because its connection was lost (hashicorp:
    /// `ErrPipelineShutdown`, "append pipeline closed").
    PipelineClosed,
    /// Pipelining is switched off (`max_rpcs_in_flight` below 2; hashicorp:
    /// `ErrPipelineReplicationNotSupported`).
    PipelineNotSupported,
    /// The call's deadline passed before its answer arrived.
    Timeout,
    /// The peer could not be reached: the address did not resolve, the dial failed or took
    /// longer than the dial timeout.
    Unreachable {
        /// The address dialled.
        addr: String,
        /// Why.
        reason: Arc<io::Error>,
    },
    /// The connection failed or was closed while the call was in flight.
    Io(Arc<io::Error>),
    /// The peer sent bytes that are not valid raftnet frames; its connection was closed.
    Protocol(WireError),
    /// The message could not be encoded (for example it is larger than the peer accepts).
    Encode(EncodeError),
    /// The remote answered with an error (the text its Raft side responded with).
    Remote(String),
    /// The snapshot body could not be read, or did not hold the declared number of bytes.
    Snapshot(String),
    /// The transport could not be set up (bind failed, address not advertisable, ...).
    Config(String),
}

impl Error {
    /// Whether the peer could not be reached at all (back off before retrying).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Error::Unreachable { .. })
    }

    pub(crate) fn io(e: io::Error) -> Error {
        Error::Io(Arc::new(e))
    }

    pub(crate) fn connection_lost() -> Error {
        Error::io(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "connection lost before the answer arrived",
        ))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Shutdown => f.write_str("transport shutdown"),
            Error::PipelineClosed => f.write_str("append pipeline closed"),
            Error::PipelineNotSupported => f.write_str("pipeline replication not supported"),
            Error::Timeout => f.write_str("rpc timed out"),
            Error::Unreachable { addr, reason } => write!(f, "failed to reach {addr}: {reason}"),
            Error::Io(e) => write!(f, "connection error: {e}"),
            Error::Protocol(e) => write!(f, "protocol error: {e}"),
            Error::Encode(e) => write!(f, "cannot encode: {e}"),
            Error::Remote(text) => f.write_str(text),
            Error::Snapshot(text) => write!(f, "snapshot: {text}"),
            Error::Config(text) => f.write_str(text),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Unreachable { reason, .. } => Some(reason.as_ref()),
            Error::Io(e) => Some(e.as_ref()),
            Error::Protocol(e) => Some(e),
            Error::Encode(e) => Some(e),
            _ => None,
        }
    }
}

impl From<WireError> for Error {
    fn from(e: WireError) -> Self {
        Error::Protocol(e)
    }
}

impl From<EncodeError> for Error {
    fn from(e: EncodeError) -> Self {
        Error::Encode(e)
    }
}

/// Two errors are equal when they are the same case (and, for text-carrying cases, the same
/// text); I/O errors compare by kind. Tests use this to assert an exact outcome.
impl PartialEq for Error {
    fn eq(&self, other: &Error) -> bool {
        use Error::*;
        match (self, other) {
            (Shutdown, Shutdown)
            | (PipelineClosed, PipelineClosed)
            | (PipelineNotSupported, PipelineNotSupported)
            | (Timeout, Timeout) => true,
            (Unreachable { addr: a, .. }, Unreachable { addr: b, .. }) => a == b,
            (Io(a), Io(b)) => a.kind() == b.kind(),
            (Protocol(a), Protocol(b)) => a == b,
            (Encode(a), Encode(b)) => a == b,
            (Remote(a), Remote(b)) | (Snapshot(a), Snapshot(b)) | (Config(a), Config(b)) => a == b,
            _ => false,
        }
    }
}

/// A `Result` with raftnet's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
