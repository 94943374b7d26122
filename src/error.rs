//! The one error type callers of the transport see, covering hashicorp/raft's cases, and the
//! classes ([`ErrorClass`]) a Raft loop acts on: retry now, back off, read the peer's answer, or
//! give up.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::wire::{EncodeError, WireError};

/// Why an RPC, a pipeline or the transport itself failed.
///
/// Cloneable (a lost connection fails every call that was waiting on it with the same error).
///
/// # Classes
///
/// A Raft loop rarely needs the variant; it needs to know what to do next. [`class`](Error::class)
/// says, and [`is_retryable`](Error::is_retryable), [`should_backoff`](Error::should_backoff),
/// [`is_remote`](Error::is_remote) and [`is_fatal`](Error::is_fatal) ask for one class each.
/// Every variant is in exactly one class:
///
/// | variant | class | why |
/// |---|---|---|
/// | [`Io`](Error::Io) | [`Retry`](ErrorClass::Retry) | the connection was lost mid-call; the next call dials a fresh one |
/// | [`Timeout`](Error::Timeout) | [`Retry`](ErrorClass::Retry) | the answer was late, the peer may be busy or the packet lost; the Raft loop's own timers pace the retries |
/// | [`PipelineClosed`](Error::PipelineClosed) | [`Retry`](ErrorClass::Retry) | the pipeline is gone (closed, or its connection lost): open a new one, or send plain calls |
/// | [`Unreachable`](Error::Unreachable) | [`Backoff`](ErrorClass::Backoff) | the peer could not be reached at all; dialling again at once would fail the same way |
/// | `Tls` (feature `tls`) | [`Backoff`](ErrorClass::Backoff) | the TLS handshake with the peer was refused (by either side: a certificate its roots do not vouch for, or not the server dialled) or a record of its session did not open; dialling again at once is refused the same way (certificates change by reload, not by retrying) |
/// | [`Remote`](Error::Remote) | [`Remote`](ErrorClass::Remote) | the network did its job: the peer's Raft side answered with an error, and its text says what it means (openraft decodes it into a `RemoteError`) |
/// | [`Refused`](Error::Refused) | [`Fatal`](ErrorClass::Fatal) | the peer's transport refused the call before its Raft side saw it (its TLS checks: a claimed identity the certificate does not carry, an RPC the peer's authorization hook does not allow): sending it again is refused the same way |
/// | [`Shutdown`](Error::Shutdown) | [`Fatal`](ErrorClass::Fatal) | this transport is closed for good |
/// | [`PipelineNotSupported`](Error::PipelineNotSupported) | [`Fatal`](ErrorClass::Fatal) | pipelining is off in this transport's configuration: send plain calls |
/// | [`Protocol`](Error::Protocol) | [`Fatal`](ErrorClass::Fatal) | the peer speaks something else (or another version): a new connection would read the same bytes |
/// | [`Encode`](Error::Encode) | [`Fatal`](ErrorClass::Fatal) | this message cannot be encoded (too large for the peer, say); sending it again fails the same way |
/// | [`Snapshot`](Error::Snapshot) | [`Fatal`](ErrorClass::Fatal) | the local snapshot source failed (short, unreadable, negative size): the Raft side must open a new snapshot, not resend this one |
/// | [`Config`](Error::Config), [`Bind`](Error::Bind), [`NotAdvertisable`](Error::NotAdvertisable), [`Start`](Error::Start) | [`Fatal`](ErrorClass::Fatal) | the transport could not be built; its settings or its host must change |
///
/// ```
/// use raftnet::{Error, ErrorClass};
///
/// // What a replication loop does with a failed call.
/// fn next_step(e: &Error) -> &'static str {
///     match e.class() {
///         ErrorClass::Retry => "send again now",
///         ErrorClass::Backoff => "wait, then send again",
///         ErrorClass::Remote => "read the peer's answer",
///         ErrorClass::Fatal => "stop sending this",
///     }
/// }
/// assert_eq!(next_step(&Error::Timeout), "send again now");
/// assert_eq!(next_step(&Error::Shutdown), "stop sending this");
/// assert!(Error::Timeout.is_retryable() && !Error::Timeout.should_backoff());
/// ```
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
    /// TLS refused the connection (feature `tls`): its handshake failed (this side did not
    /// accept the peer's certificate, for example one of another CA, expired, or not naming the
    /// server dialled; or the peer sent an alert, refusing this side's), or a record of an
    /// established session did not open. The server's side logs it too, naming the peer.
    #[cfg(feature = "tls")]
    Tls {
        /// The peer's address (`None` if the socket could no longer tell it).
        peer: Option<SocketAddr>,
        /// Whether the handshake failed: before the session carried any data (in TLS 1.3 a
        /// client's handshake completes before the server has checked its certificate, so the
        /// alert refusing it comes just after). Else a record of the session did not open.
        handshake: bool,
        /// rustls' reason: match it for the case (`rustls::Error::InvalidCertificate`,
        /// `rustls::Error::AlertReceived`, ...).
        reason: rustls::Error,
    },
    /// The peer sent bytes that are not valid raftnet frames; its connection was closed.
    Protocol(WireError),
    /// The message could not be encoded (for example it is larger than the peer accepts).
    Encode(EncodeError),
    /// The remote answered with an error (the text its Raft side responded with).
    Remote(String),
    /// The peer's transport refused the call before its Raft side saw it: `reason` says which
    /// check, `message` is the peer's text. On the wire it is an error answer whose text starts
    /// with [`Refusal::wire_prefix`], so a peer that does not know it (hashicorp/raft) reads an
    /// ordinary error text.
    Refused {
        /// Which check refused the call.
        reason: Refusal,
        /// The peer's explanation.
        message: String,
    },
    /// The snapshot body could not be read, or did not hold the declared number of bytes.
    Snapshot(String),
    /// A setting is invalid.
    Config(String),
    /// The transport could not listen: its bind address did not resolve, or binding it failed
    /// (in use, not a local address, not permitted).
    Bind {
        /// The address binding failed on; `None` when the bind address did not resolve to one.
        addr: Option<SocketAddr>,
        /// Why (the resolver's or the socket's error).
        reason: Arc<io::Error>,
    },
    /// The transport is bound to an unspecified address (0.0.0.0 or ::) and was given no
    /// address to advertise, so peers could not dial what it would call its own address
    /// (hashicorp: `errNotAdvertisable`, "local bind address is not advertisable").
    NotAdvertisable {
        /// The bound address.
        addr: SocketAddr,
    },
    /// The transport's driver could not be started (a thread, the poller or its waker could
    /// not be created; the host is out of threads or file descriptors).
    Start {
        /// What could not be started, for example "the driver thread" or "the poller".
        what: &'static str,
        /// Why.
        reason: Arc<io::Error>,
    },
}

/// What a Raft loop should do about an [`Error`]: see the table on [`Error`].
///
/// Deliberately exhaustive (no `#[non_exhaustive]`), so a loop can `match` every class; new
/// error variants join one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Send again now: the connection was lost or the answer was late (openraft: `Network`).
    Retry,
    /// The peer cannot be reached: wait before sending to it again (openraft: `Unreachable`).
    Backoff,
    /// The peer's Raft side answered with an error: what to do depends on its answer (openraft:
    /// `RemoteError`).
    Remote,
    /// Sending again cannot help: the transport is closed or could not be built, the message
    /// cannot be encoded, the peer speaks another protocol, or the snapshot source failed.
    Fatal,
}

impl Error {
    /// What a Raft loop should do about this error (the table on [`Error`]).
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::Io(_) | Error::Timeout | Error::PipelineClosed => ErrorClass::Retry,
            Error::Unreachable { .. } => ErrorClass::Backoff,
            #[cfg(feature = "tls")]
            Error::Tls { .. } => ErrorClass::Backoff,
            Error::Remote(_) => ErrorClass::Remote,
            Error::Refused { .. }
            | Error::Shutdown
            | Error::PipelineNotSupported
            | Error::Protocol(_)
            | Error::Encode(_)
            | Error::Snapshot(_)
            | Error::Config(_)
            | Error::Bind { .. }
            | Error::NotAdvertisable { .. }
            | Error::Start { .. } => ErrorClass::Fatal,
        }
    }

    /// Whether sending again at once may succeed: a lost connection, a late answer, a closed
    /// pipeline ([`ErrorClass::Retry`]).
    pub fn is_retryable(&self) -> bool {
        self.class() == ErrorClass::Retry
    }

    /// Whether to wait before sending to this peer again: it could not be reached
    /// ([`ErrorClass::Backoff`]).
    pub fn should_backoff(&self) -> bool {
        self.class() == ErrorClass::Backoff
    }

    /// Whether the peer's Raft side answered with an error ([`ErrorClass::Remote`]).
    pub fn is_remote(&self) -> bool {
        self.class() == ErrorClass::Remote
    }

    /// Whether no retry can help: the transport is closed or could not be built, the message
    /// cannot be encoded, the peer speaks another protocol, or the snapshot source failed
    /// ([`ErrorClass::Fatal`]).
    pub fn is_fatal(&self) -> bool {
        self.class() == ErrorClass::Fatal
    }

    /// Whether the peer could not be reached at all, or not over TLS (back off before
    /// retrying).
    pub fn is_unreachable(&self) -> bool {
        self.class() == ErrorClass::Backoff
    }

    /// A failed read or write: [`Error::Io`], or, where the TLS stream refused the peer (its
    /// `io::Error` carries an [`Error::Tls`]), that.
    pub(crate) fn io(e: io::Error) -> Error {
        #[cfg(feature = "tls")]
        if let Some(tls @ Error::Tls { .. }) = e.get_ref().and_then(|inner| inner.downcast_ref()) {
            return tls.clone();
        }
        Error::Io(Arc::new(e))
    }

    /// For `map_err`: `what` (a thread, the poller) could not be created.
    pub(crate) fn start(what: &'static str) -> impl FnOnce(io::Error) -> Error {
        move |e| Error::Start {
            what,
            reason: Arc::new(e),
        }
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
            #[cfg(feature = "tls")]
            Error::Tls {
                peer,
                handshake,
                reason,
            } => {
                let what = if *handshake {
                    "TLS handshake with"
                } else {
                    "TLS session with"
                };
                match peer {
                    Some(peer) => write!(f, "{what} {peer} refused: {reason}"),
                    None => write!(f, "{what} the peer refused: {reason}"),
                }
            }
            Error::Protocol(e) => write!(f, "protocol error: {e}"),
            Error::Encode(e) => write!(f, "cannot encode: {e}"),
            Error::Remote(text) => f.write_str(text),
            Error::Refused { reason, message } => {
                write!(f, "{}{message}", reason.wire_prefix())
            }
            Error::Snapshot(text) => write!(f, "snapshot: {text}"),
            Error::Config(text) => f.write_str(text),
            Error::Bind { addr: None, reason } => {
                write!(f, "bind address does not resolve: {reason}")
            }
            Error::Bind {
                addr: Some(addr),
                reason,
            } => write!(f, "bind failed on {addr}: {reason}"),
            // hashicorp's text, word for word: callers match on it.
            Error::NotAdvertisable { .. } => f.write_str("local bind address is not advertisable"),
            Error::Start { what, reason } => write!(f, "cannot start {what}: {reason}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Unreachable { reason, .. }
            | Error::Bind { reason, .. }
            | Error::Start { reason, .. } => Some(reason.as_ref()),
            Error::Io(e) => Some(e.as_ref()),
            #[cfg(feature = "tls")]
            Error::Tls { reason, .. } => Some(reason),
            Error::Protocol(e) => Some(e),
            Error::Encode(e) => Some(e),
            _ => None,
        }
    }
}

/// Which of a peer's checks refused a call ([`Error::Refused`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// The request's header claimed a server id (`RpcHeader::id`) that the sender's TLS
    /// certificate does not carry.
    IdentityMismatch,
    /// The peer's authorization hook (`TlsConfig::authorize`, feature `tls`) does not allow
    /// this kind of RPC from the sender's identity.
    Unauthorized,
}

impl Refusal {
    const ALL: [Refusal; 2] = [Refusal::IdentityMismatch, Refusal::Unauthorized];

    /// How an error answer's text starts when this check refused the request: what the caller
    /// recognizes to report [`Error::Refused`] instead of [`Error::Remote`].
    pub fn wire_prefix(self) -> &'static str {
        match self {
            Refusal::IdentityMismatch => "raftnet refused: identity mismatch: ",
            Refusal::Unauthorized => "raftnet refused: unauthorized: ",
        }
    }

    /// The error text a refusal travels as (the peer's side of [`Error::Refused`]).
    #[cfg(any(test, feature = "tls"))]
    pub(crate) fn answer(self, message: &str) -> String {
        format!("{}{message}", self.wire_prefix())
    }
}

impl Error {
    /// The error a caller sees for an error answer with `text`: [`Error::Refused`] when it is
    /// a refusal's ([`Refusal::wire_prefix`]), else [`Error::Remote`].
    pub(crate) fn from_answer(text: String) -> Error {
        for reason in Refusal::ALL {
            if let Some(message) = text.strip_prefix(reason.wire_prefix()) {
                return Error::Refused {
                    reason,
                    message: message.to_string(),
                };
            }
        }
        Error::Remote(text)
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

/// Two errors are equal when they are the same case with the same address or text; I/O errors
/// compare by kind. Tests use this to assert an exact outcome.
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
            #[cfg(feature = "tls")]
            (
                Tls {
                    peer: a,
                    handshake: h,
                    reason: r,
                },
                Tls {
                    peer: b,
                    handshake: i,
                    reason: s,
                },
            ) => a == b && h == i && r == s,
            (Protocol(a), Protocol(b)) => a == b,
            (Encode(a), Encode(b)) => a == b,
            (
                Refused {
                    reason: a,
                    message: m,
                },
                Refused {
                    reason: b,
                    message: n,
                },
            ) => a == b && m == n,
            (Remote(a), Remote(b)) | (Snapshot(a), Snapshot(b)) | (Config(a), Config(b)) => a == b,
            (Bind { addr: a, reason: r }, Bind { addr: b, reason: s }) => {
                a == b && r.kind() == s.kind()
            }
            (NotAdvertisable { addr: a }, NotAdvertisable { addr: b }) => a == b,
            (Start { what: a, reason: r }, Start { what: b, reason: s }) => {
                a == b && r.kind() == s.kind()
            }
            _ => false,
        }
    }
}

/// A `Result` with raftnet's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn io_error(kind: io::ErrorKind) -> Arc<io::Error> {
        Arc::new(io::Error::new(kind, "test"))
    }

    /// One error of each variant, with the class the table on [`Error`] gives it.
    fn table() -> Vec<(Error, ErrorClass)> {
        use ErrorClass::*;
        let addr: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        vec![
            (Error::io(io::ErrorKind::ConnectionReset.into()), Retry),
            (Error::connection_lost(), Retry),
            (Error::Timeout, Retry),
            (Error::PipelineClosed, Retry),
            (
                Error::Unreachable {
                    addr: "10.0.0.1:1".into(),
                    reason: io_error(io::ErrorKind::ConnectionRefused),
                },
                Backoff,
            ),
            (Error::Remote("not the leader".into()), Remote),
            #[cfg(feature = "tls")]
            (
                Error::Tls {
                    peer: Some(addr),
                    handshake: true,
                    reason: rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA),
                },
                Backoff,
            ),
            (
                Error::Refused {
                    reason: Refusal::Unauthorized,
                    message: "no votes from node-9".into(),
                },
                Fatal,
            ),
            (Error::Shutdown, Fatal),
            (Error::PipelineNotSupported, Fatal),
            (Error::Protocol(WireError::UnknownMessageType(200)), Fatal),
            (
                Error::Encode(EncodeError::FieldTooLong { field: "data" }),
                Fatal,
            ),
            (Error::Snapshot("short body".into()), Fatal),
            (Error::Config("max_pool must be at least 1".into()), Fatal),
            (
                Error::Bind {
                    addr: Some(addr),
                    reason: io_error(io::ErrorKind::AddrInUse),
                },
                Fatal,
            ),
            (Error::NotAdvertisable { addr }, Fatal),
            (
                Error::Start {
                    what: "the driver thread",
                    reason: io_error(io::ErrorKind::WouldBlock),
                },
                Fatal,
            ),
        ]
    }

    /// Which variant an error is. Exhaustive, so a new variant fails to compile here until the
    /// table above has a row for it.
    fn variant(e: &Error) -> usize {
        match e {
            Error::Shutdown => 0,
            Error::PipelineClosed => 1,
            Error::PipelineNotSupported => 2,
            Error::Timeout => 3,
            Error::Unreachable { .. } => 4,
            Error::Io(_) => 5,
            Error::Protocol(_) => 6,
            Error::Encode(_) => 7,
            Error::Remote(_) => 8,
            Error::Snapshot(_) => 9,
            Error::Config(_) => 10,
            Error::Bind { .. } => 11,
            Error::NotAdvertisable { .. } => 12,
            Error::Start { .. } => 13,
            Error::Refused { .. } => 14,
            #[cfg(feature = "tls")]
            Error::Tls { .. } => 15,
        }
    }

    /// Variants in the table: the TLS one only with its feature.
    const VARIANTS: usize = if cfg!(feature = "tls") { 16 } else { 15 };

    #[test]
    fn every_variant_has_the_class_the_table_gives_it() {
        let table = table();
        let mut seen = [false; VARIANTS];
        for (error, class) in &table {
            seen[variant(error)] = true;
            assert_eq!(error.class(), *class, "{error:?}");
        }
        assert!(seen.iter().all(|&s| s), "a variant has no row: {seen:?}");
    }

    #[test]
    fn a_refusal_travels_as_error_text_and_comes_back_as_its_kind() {
        for reason in Refusal::ALL {
            let text = reason.answer("header id node-2, certificate node-1");
            assert_eq!(
                Error::from_answer(text.clone()),
                Error::Refused {
                    reason,
                    message: "header id node-2, certificate node-1".into(),
                }
            );
            // Its text is what the peer sent, for logs and for peers that do not know it.
            assert_eq!(Error::from_answer(text.clone()).to_string(), text);
        }
        // Any other error text is the Raft side's.
        assert_eq!(
            Error::from_answer("raftnet refused: something new".into()),
            Error::Remote("raftnet refused: something new".into())
        );
    }

    #[test]
    fn each_error_answers_exactly_one_class_question() {
        for (error, class) in table() {
            let answers = [
                (error.is_retryable(), ErrorClass::Retry),
                (error.should_backoff(), ErrorClass::Backoff),
                (error.is_remote(), ErrorClass::Remote),
                (error.is_fatal(), ErrorClass::Fatal),
            ];
            let yes: Vec<ErrorClass> = answers
                .iter()
                .filter(|(a, _)| *a)
                .map(|(_, c)| *c)
                .collect();
            assert_eq!(yes, [class], "{error:?}");
            // The older, narrower question agrees with the class.
            assert_eq!(
                error.is_unreachable(),
                class == ErrorClass::Backoff,
                "{error:?}"
            );
        }
    }

    #[test]
    fn bind_and_start_errors_name_their_address_and_cause() {
        let addr: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        let in_use = Error::Bind {
            addr: Some(addr),
            reason: Arc::new(io::Error::new(io::ErrorKind::AddrInUse, "address in use")),
        };
        assert_eq!(
            in_use.to_string(),
            "bind failed on 127.0.0.1:7000: address in use"
        );
        let unresolved = Error::Bind {
            addr: None,
            reason: Arc::new(io::Error::other("no such host")),
        };
        assert_eq!(
            unresolved.to_string(),
            "bind address does not resolve: no such host"
        );
        assert_eq!(
            Error::NotAdvertisable { addr }.to_string(),
            "local bind address is not advertisable"
        );
        let start = Error::start("the driver thread")(io::Error::other("out of threads"));
        assert_eq!(
            start.to_string(),
            "cannot start the driver thread: out of threads"
        );

        // The io::Error is the source, for error reporters that walk the chain.
        use std::error::Error as _;
        for e in [&in_use, &unresolved, &start] {
            assert!(e.source().unwrap().is::<io::Error>(), "{e:?}");
        }
        assert!(Error::NotAdvertisable { addr }.source().is_none());
    }

    /// A TLS refusal the stream reports (inside an `io::Error`) reaches callers as its kind,
    /// naming the peer; any other `io::Error` stays `Error::Io`.
    #[cfg(feature = "tls")]
    #[test]
    fn a_tls_refusal_inside_an_io_error_becomes_error_tls() {
        let refusal = Error::Tls {
            peer: Some("127.0.0.1:7000".parse().unwrap()),
            handshake: true,
            reason: rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        };
        let carried = io::Error::new(io::ErrorKind::InvalidData, refusal.clone());
        let error = Error::io(carried);
        assert_eq!(error, refusal);
        assert_eq!(
            error.to_string(),
            "TLS handshake with 127.0.0.1:7000 refused: invalid peer certificate: UnknownIssuer"
        );
        use std::error::Error as _;
        assert!(error.source().unwrap().is::<rustls::Error>());
        let plain = Error::io(io::Error::new(io::ErrorKind::InvalidData, "not TLS"));
        assert!(matches!(plain, Error::Io(_)), "{plain:?}");
    }

    #[test]
    fn equality_compares_address_and_kind() {
        let a: SocketAddr = "127.0.0.1:7000".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:7001".parse().unwrap();
        let bind = |addr, kind| Error::Bind {
            addr,
            reason: io_error(kind),
        };
        use io::ErrorKind::*;
        assert_eq!(bind(Some(a), AddrInUse), bind(Some(a), AddrInUse));
        assert_ne!(bind(Some(a), AddrInUse), bind(Some(b), AddrInUse));
        assert_ne!(bind(Some(a), AddrInUse), bind(Some(a), PermissionDenied));
        assert_ne!(bind(None, AddrInUse), bind(Some(a), AddrInUse));
        assert_eq!(
            Error::NotAdvertisable { addr: a },
            Error::NotAdvertisable { addr: a }
        );
        assert_ne!(
            Error::NotAdvertisable { addr: a },
            Error::NotAdvertisable { addr: b }
        );
        let start = |what, kind| Error::Start {
            what,
            reason: io_error(kind),
        };
        assert_eq!(start("the poller", Other), start("the poller", Other));
        assert_ne!(
            start("the poller", Other),
            start("the driver thread", Other)
        );
        // A bind failure is not a configuration error.
        assert_ne!(
            bind(Some(a), AddrInUse),
            Error::Config("bind failed".into())
        );
    }
}
