//! A TLS session on rustls' unbuffered API, for either driver ([`Session`]): records are opened
//! where they were received (in the caller's buffer; a record cut short is kept until the rest
//! comes) and their payloads copied once, into the engine's buffer; the engine's bytes are
//! sealed into the session's outgoing buffer, from which a driver writes them. Also what
//! raftnet keeps track of about a session: a refusal logged once, the peer's identity reported
//! once.
//!
//! Why the unbuffered API: rustls' buffered one copies every received byte into its own buffer
//! before opening it, and that copy (with the plaintext's next one) fell into a `memcpy` trap on
//! some machines (BENCHMARKS.md, "A memcpy trap decides the TLS bulk rows"); measured in
//! memory with `raftnet-tls-open`, opening in place and sealing into the session's buffer cost
//! both ends of a stream 1.05-1.16x less without the trap, 1.8-2.2x less with it.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use rustls::client::{ClientConnectionData, UnbufferedClientConnection};
use rustls::server::{ServerConnectionData, UnbufferedServerConnection};
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedConnectionCommon,
    UnbufferedStatus, WriteTraffic,
};

use crate::Error;
use crate::tls::{Authorize, PeerIdentity, VerifiedPeer};

/// Plaintext a session takes from the engine before its handshake completes (sealed then): the
/// bound rustls' buffered API kept, so the engine's own back-pressure holds the rest.
const HELD_LIMIT: usize = 64 * 1024;

/// Pieces shorter than this are copied together before sealing, so that a run of small frames
/// makes one record rather than one each (a record costs 22 bytes and an AEAD call); longer
/// ones are sealed where they lie.
const COALESCE_BELOW: usize = 4 * 1024;

/// The plaintext a full TLS record carries.
const RECORD_PLAINTEXT: usize = 16 * 1024;

/// An outgoing buffer larger than this is freed once its records are out (an idle connection
/// keeps no bulk transfer's room); smaller ones are kept for the next records.
const OUTGOING_KEPT: usize = 16 * 1024;

/// Either end of a TLS session, on rustls' unbuffered API: the caller owns the buffers, records
/// are opened where they lie and sealed into the session's outgoing buffer.
enum Conn {
    Client(UnbufferedClientConnection),
    Server(UnbufferedServerConnection),
}

/// `process_tls_records` for either end (rustls defines it per end).
///
/// rustls keeps the places of handshake messages it has not taken yet (a flight's messages in
/// one record, a message in pieces) as offsets into the buffer it was last given, so every call
/// gets that buffer again, less what it said to discard: the caller's, or the session's
/// [`incoming`](Session::incoming), never an empty one in its place. Records queued to go out
/// are taken while `wants_write` says there are some, which looks at no buffer.
trait Records: std::ops::Deref<Target = rustls::CommonState> {
    type Data;
    fn records<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;
}

impl Records for UnbufferedConnectionCommon<ClientConnectionData> {
    type Data = ClientConnectionData;
    fn records<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, ClientConnectionData> {
        self.process_tls_records(incoming)
    }
}

impl Records for UnbufferedConnectionCommon<ServerConnectionData> {
    type Data = ServerConnectionData;
    fn records<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, ServerConnectionData> {
        self.process_tls_records(incoming)
    }
}

/// Calls `$body` with `$c` bound to the session's connection, whichever end it is.
macro_rules! with_conn {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            Conn::Client(client) => {
                let $c = &mut **client;
                $body
            }
            Conn::Server(server) => {
                let $c = &mut **server;
                $body
            }
        }
    };
}

/// Records waiting to go out: `buf[sent..queued]`. `buf` beyond `queued` is zeroed room that
/// rustls writes records into (it takes an initialized slice), grown as a record needs.
#[derive(Default)]
struct Outgoing {
    buf: Vec<u8>,
    queued: usize,
    sent: usize,
}

impl Outgoing {
    /// Append what `write` puts into the room, growing the room to the size it asks for.
    fn append(&mut self, mut write: impl FnMut(&mut [u8]) -> Result<usize, InsufficientSizeError>) {
        loop {
            match write(&mut self.buf[self.queued..]) {
                Ok(n) => {
                    self.queued += n;
                    return;
                }
                Err(InsufficientSizeError { required_size }) => {
                    self.buf.resize(self.queued + required_size, 0)
                }
            }
        }
    }

    /// Append what `encrypt` seals into the room (growing it as rustls asks); a session whose
    /// keys are spent (TLS 1.2 after its record limit; TLS 1.3 renews them) fails the write
    /// rather than dropping the bytes.
    fn encrypt(
        &mut self,
        mut encrypt: impl FnMut(&mut [u8]) -> Result<usize, EncryptError>,
    ) -> io::Result<()> {
        loop {
            match encrypt(&mut self.buf[self.queued..]) {
                Ok(n) => {
                    self.queued += n;
                    return Ok(());
                }
                Err(EncryptError::InsufficientSize(InsufficientSizeError { required_size })) => {
                    self.buf.resize(self.queued + required_size, 0)
                }
                Err(e) => return Err(io::Error::other(e)),
            }
        }
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.sent..self.queued]
    }

    /// The records waiting, handed over with their buffer (no copy: a send of the io_uring
    /// driver carries them, up to its budget of 256 KiB); the next records get a new buffer.
    fn take(&mut self) -> Bytes {
        let mut buf = std::mem::take(&mut self.buf);
        buf.truncate(self.queued);
        let sent = std::mem::take(&mut self.sent);
        self.queued = 0;
        Bytes::from(buf).slice(sent..)
    }

    /// `n` more bytes went out; once all have, the buffer is emptied (and freed if large).
    fn advance(&mut self, n: usize) {
        self.sent += n;
        if self.sent == self.queued {
            self.sent = 0;
            self.queued = 0;
            if self.buf.len() > OUTGOING_KEPT {
                self.buf = Vec::new();
            }
        }
    }
}

/// Where [`Session::open_in_place`] puts the plaintext it opens.
pub(crate) trait Plaintext {
    /// Bytes it can take now.
    fn room(&self) -> usize;
    /// Append `bytes` (at most [`room`](Plaintext::room) of them).
    fn put(&mut self, bytes: &[u8]);
}

impl Plaintext for BytesMut {
    fn room(&self) -> usize {
        usize::MAX
    }

    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

/// What a TLS connection is beyond its socket, for either driver: the rustls session (its
/// unbuffered API: records opened where they were received, sealed into [`Outgoing`]), and
/// what raftnet keeps track of about it (a refusal logged once, the peer's identity reported
/// once). The readiness drivers wrap it with their socket in [`TlsStream`]; the io_uring driver
/// keeps it beside its connection and moves the bytes itself (`uring/tls.rs`).
pub(crate) struct Session {
    conn: Conn,
    /// Records waiting to go out.
    outgoing: Outgoing,
    /// Received ciphertext not opened yet, kept across calls: a record a receive cut short, or
    /// handshake records rustls joins into one message once all have come.
    incoming: Vec<u8>,
    /// Opened plaintext the caller had no room for, handed out first next time.
    stash: Vec<u8>,
    stash_at: usize,
    /// Plaintext taken before the handshake completed, sealed once it has.
    held: Vec<u8>,
    /// Small pieces copied together before sealing (see [`COALESCE_BELOW`]).
    stage: Vec<u8>,
    /// The peer ended the session (close_notify).
    peer_closed: bool,
    /// The handshake failed (logged once).
    pub(super) failed: bool,
    /// The session has handed out plaintext: a refusal now is not the handshake's.
    pub(crate) carried: bool,
    /// The peer's address, once the socket knew it (a dial's only once connected): a peer that
    /// refuses and resets leaves a socket that no longer tells it.
    pub(crate) peer: Option<SocketAddr>,
    /// The authorization hook of the configuration this connection was made with, handed to
    /// the engine with the peer's identity.
    authorize: Option<Authorize>,
    /// The peer's identity was handed to the engine (once, after the handshake).
    identity_reported: bool,
}

/// Why opening stopped.
enum Stop {
    /// No whole record is left: what remains (a record cut short) waits for more.
    NeedMore,
    /// The caller's plaintext room is full: what remains is the caller's to offer again.
    Full,
    /// The session is over (after the peer's close_notify): nothing more is opened.
    Closed,
}

impl Session {
    fn new(conn: Conn, authorize: Option<Authorize>) -> Session {
        Session {
            conn,
            outgoing: Outgoing::default(),
            incoming: Vec::new(),
            stash: Vec::new(),
            stash_at: 0,
            held: Vec::new(),
            stage: Vec::new(),
            peer_closed: false,
            failed: false,
            carried: false,
            peer: None,
            authorize,
            identity_reported: false,
        }
    }

    /// A dial's session with `tls` (the configuration in force now, read once per connection),
    /// meant to reach `server` at `addr`.
    pub(crate) fn dial(
        tls: &crate::tls::TlsConfig,
        addr: SocketAddr,
        server: Option<&crate::transport::ServerId>,
    ) -> io::Result<Session> {
        let tls = tls.current();
        let client = UnbufferedClientConnection::new(
            tls.client_config().clone(),
            tls.server_name(addr, server),
        )
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let mut session = Session::new(Conn::Client(client), None);
        // The client speaks first: its hello is ready to go.
        session.queue_made();
        Ok(session)
    }

    /// An accepted connection's session with `tls` (the configuration in force now).
    pub(crate) fn accept(tls: &crate::tls::TlsConfig) -> io::Result<Session> {
        let tls = tls.current();
        let server = UnbufferedServerConnection::new(tls.server_config().clone())
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(Session::new(
            Conn::Server(server),
            tls.authorizer().cloned(),
        ))
    }

    /// A client session dialling `server_id` at `server_addr` and a server session to accept
    /// it, each knowing its peer's address, as the io_uring driver makes them: for the tests
    /// and the fuzz target that run the two in memory.
    pub(crate) fn memory_pair(
        client: &crate::tls::TlsConfig,
        server: &crate::tls::TlsConfig,
        server_id: &str,
        client_addr: SocketAddr,
        server_addr: SocketAddr,
    ) -> (Session, Session) {
        let server_id = crate::transport::ServerId::from(server_id);
        let mut client =
            Session::dial(client, server_addr, Some(&server_id)).expect("a client session");
        client.peer = Some(server_addr);
        let mut server = Session::accept(server).expect("a server session");
        server.peer = Some(client_addr);
        (client, server)
    }

    /// Whether the handshake is still going on.
    pub(crate) fn is_handshaking(&self) -> bool {
        match &self.conn {
            Conn::Client(c) => c.is_handshaking(),
            Conn::Server(s) => s.is_handshaking(),
        }
    }

    /// Whether opened plaintext waits for room (the next open hands it out first).
    pub(crate) fn has_plaintext(&self) -> bool {
        self.stash_at < self.stash.len()
    }

    /// Whether records wait to go out.
    pub(crate) fn wants_write(&self) -> bool {
        !self.outgoing.pending().is_empty()
    }

    /// The records waiting to go out, for a driver that writes them where they lie.
    pub(crate) fn pending_records(&self) -> &[u8] {
        self.outgoing.pending()
    }

    /// `n` bytes of [`pending_records`](Session::pending_records) went out.
    pub(crate) fn records_sent(&mut self, n: usize) {
        self.outgoing.advance(n);
    }

    /// The peer's records were refused (a certificate not vouched for, or for another server; a
    /// record that does not open; an alert: the peer refused ours): log it, and fail the
    /// connection with rustls' reason, carried as an [`Error::Tls`] (which `Error::io` hands to
    /// the calls that waited on it). The alert rustls queued is the caller's to write first.
    pub(crate) fn refused(&mut self, error: rustls::Error) -> io::Error {
        let peer = self.peer;
        // In TLS 1.3 a client's handshake is done before the server has checked its
        // certificate: the server's alert refusing it comes after, before any data.
        let handshake = self.is_handshaking() || !self.carried;
        if !std::mem::replace(&mut self.failed, true) {
            let side = match self.conn {
                Conn::Client(_) => "a dialled",
                Conn::Server(_) => "an accepted",
            };
            if handshake {
                tracing::warn!(?peer, %error, "TLS handshake refused on {side} connection");
            } else {
                tracing::warn!(?peer, %error, "TLS record refused on {side} connection");
            }
        }
        let refusal = Error::Tls {
            peer,
            handshake,
            reason: error,
        };
        io::Error::new(io::ErrorKind::InvalidData, refusal)
    }

    /// After the handshake: a bool test per read until then, then once more. A peer without
    /// a certificate (a server configuration of the application's own that does not ask for
    /// one) gets an identity naming no server, so the checks fail closed: a request claiming a
    /// sender is refused, and the hook decides on an empty identity.
    pub(crate) fn take_verified_peer(&mut self, addr: Option<SocketAddr>) -> Option<VerifiedPeer> {
        if self.identity_reported || self.is_handshaking() {
            return None;
        }
        self.identity_reported = true;
        let addr = addr.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
        let certificates = match &self.conn {
            Conn::Client(c) => c.peer_certificates(),
            Conn::Server(s) => s.peer_certificates(),
        };
        let identity = match certificates.and_then(|chain| chain.first()) {
            Some(certificate) => PeerIdentity::from_certificate(certificate, addr),
            None => PeerIdentity::new(Vec::new(), addr),
        };
        Some(VerifiedPeer {
            identity: Arc::new(identity),
            authorize: self.authorize.clone(),
        })
    }

    /// Open `ciphertext` (a copy of it, for callers that keep theirs) and append every byte it
    /// opens to `plaintext`: [`open_in_place`](Session::open_in_place) for the tests and the
    /// fuzz target.
    pub(crate) fn open(
        &mut self,
        ciphertext: &[u8],
        plaintext: &mut BytesMut,
    ) -> io::Result<Opened> {
        self.open_in_place(&mut ciphertext.to_vec(), plaintext)
    }

    /// Open the records in `ciphertext` where they lie, handing their plaintext to `plaintext`
    /// as far as it has room; [`Opened::consumed`] says how much of `ciphertext` was taken (all
    /// of it, unless the room ran out: the rest is the caller's to offer again). A record cut
    /// short at the end is kept by the session (copied) until the rest of it comes. An `Err` is
    /// a refusal ([`Session::refused`], logged), with the alert for the peer queued.
    pub(crate) fn open_in_place(
        &mut self,
        ciphertext: &mut [u8],
        plaintext: &mut dyn Plaintext,
    ) -> io::Result<Opened> {
        let mut opened = Opened {
            consumed: 0,
            plaintext: 0,
            peer_closed: false,
        };
        self.unstash(plaintext, &mut opened);
        if plaintext.room() == 0 {
            return Ok(opened);
        }
        if !self.incoming.is_empty() && !self.peer_closed {
            // What was kept first: the record it ends with completed from `ciphertext`.
            let need = record_need(&self.incoming);
            let take = need.min(ciphertext.len());
            self.incoming.extend_from_slice(&ciphertext[..take]);
            opened.consumed = take;
            if take < need {
                return self.finish_open(opened);
            }
            let stop = self.open_incoming(plaintext, &mut opened)?;
            if !matches!(stop, Stop::NeedMore) {
                return self.finish_open(opened);
            }
            if !self.incoming.is_empty() {
                // rustls holds whole records (a handshake message in pieces, joined once all
                // have come): the rest of `ciphertext` joins them.
                self.incoming
                    .extend_from_slice(&ciphertext[opened.consumed..]);
                opened.consumed = ciphertext.len();
                self.open_incoming(plaintext, &mut opened)?;
                return self.finish_open(opened);
            }
        }
        if !self.peer_closed {
            let start = opened.consumed;
            let (used, stop) =
                self.open_records(&mut ciphertext[start..], plaintext, &mut opened)?;
            opened.consumed += used;
            if let Stop::NeedMore = stop {
                // A record cut short (or records rustls holds, as above): kept.
                self.incoming
                    .extend_from_slice(&ciphertext[opened.consumed..]);
                opened.consumed = ciphertext.len();
            }
        }
        if self.peer_closed {
            // What follows the peer's close_notify is not part of the session.
            opened.consumed = ciphertext.len();
            self.incoming.clear();
        }
        self.finish_open(opened)
    }

    /// Open what the session kept ([`Session::incoming`]), dropping what rustls took.
    fn open_incoming(
        &mut self,
        plaintext: &mut dyn Plaintext,
        opened: &mut Opened,
    ) -> io::Result<Stop> {
        let mut incoming = std::mem::take(&mut self.incoming);
        let result = self.open_records(&mut incoming, plaintext, opened);
        if let Ok((used, _)) = &result {
            incoming.drain(..*used);
        }
        self.incoming = incoming;
        result.map(|(_, stop)| stop)
    }

    /// The end of an open: the handshake's completion seals what waited for it.
    fn finish_open(&mut self, mut opened: Opened) -> io::Result<Opened> {
        if !self.held.is_empty() && !self.is_handshaking() {
            let held = std::mem::take(&mut self.held);
            self.seal_slices(&mut std::iter::once(&held[..]), usize::MAX)?;
        }
        opened.peer_closed = self.peer_closed;
        Ok(opened)
    }

    /// Hand out what the caller had no room for last time.
    fn unstash(&mut self, plaintext: &mut dyn Plaintext, opened: &mut Opened) {
        if self.stash_at < self.stash.len() {
            let n = plaintext.room().min(self.stash.len() - self.stash_at);
            plaintext.put(&self.stash[self.stash_at..self.stash_at + n]);
            self.stash_at += n;
            opened.plaintext += n;
            if self.stash_at == self.stash.len() {
                self.stash.clear();
                self.stash_at = 0;
            }
        }
    }

    /// Run rustls over `buf` until no whole record is left, the room is full, or the session
    /// ended: the bytes of `buf` it took, and why it stopped.
    fn open_records(
        &mut self,
        buf: &mut [u8],
        plaintext: &mut dyn Plaintext,
        opened: &mut Opened,
    ) -> io::Result<(usize, Stop)> {
        let Session {
            conn,
            outgoing,
            stash,
            peer_closed,
            carried,
            ..
        } = self;
        let result = with_conn!(conn, c => {
            drive_open(c, buf, outgoing, stash, plaintext, opened, peer_closed)
        });
        if opened.plaintext > 0 {
            *carried = true;
        }
        match result {
            Ok(done) => Ok(done),
            Err(e) => {
                self.queue_made();
                Err(self.refused(e))
            }
        }
    }

    /// Records rustls made without being asked (a refusal's alert, the client's hello): into
    /// the outgoing records. Looks at no received bytes (see [`Records`]).
    fn queue_made(&mut self) {
        let outgoing = &mut self.outgoing;
        with_conn!(&mut self.conn, c => queue_made(c, outgoing))
    }

    /// Seal `pieces` into records, all of them; the bytes sealed. Before the handshake
    /// completes they are held and sealed once it has (the io_uring driver seals only after).
    pub(crate) fn seal(&mut self, pieces: &mut Vec<Bytes>) -> io::Result<usize> {
        let total: usize = pieces.iter().map(Bytes::len).sum();
        let sealed = self.seal_slices(&mut pieces.iter().map(|p| &p[..]), usize::MAX)?;
        if sealed < total {
            // Only before the handshake completes, past what it holds: not how drivers call.
            return Err(io::ErrorKind::WriteZero.into());
        }
        pieces.clear();
        Ok(sealed)
    }

    /// Seal up to `limit` bytes of `slices` (in order) into records, or hold them while the
    /// handshake goes on (up to [`HELD_LIMIT`]); the bytes taken.
    pub(crate) fn seal_slices(
        &mut self,
        slices: &mut dyn Iterator<Item = &[u8]>,
        limit: usize,
    ) -> io::Result<usize> {
        if self.is_handshaking() {
            let mut taken = 0;
            for slice in slices {
                let n = slice.len().min(HELD_LIMIT.saturating_sub(self.held.len()));
                self.held.extend_from_slice(&slice[..n]);
                taken += n;
                if n < slice.len() {
                    break;
                }
            }
            return Ok(taken);
        }
        let Session {
            conn,
            outgoing,
            incoming,
            stage,
            ..
        } = self;
        with_conn!(conn, c => write_traffic(c, incoming, outgoing, |traffic, outgoing| {
            seal_records(traffic, slices, limit, outgoing, stage)
        }))
    }

    /// Queue the session's end (close_notify), once the handshake is done.
    pub(crate) fn send_close_notify(&mut self) {
        let Session {
            conn,
            outgoing,
            incoming,
            ..
        } = self;
        let _ = with_conn!(conn, c => write_traffic(c, incoming, outgoing, |traffic, outgoing| {
            outgoing.encrypt(|room| traffic.queue_close_notify(room))?;
            Ok(0)
        }));
    }

    /// The records the session has ready to go out, as one buffer handed over without a copy
    /// (`None` if there are none).
    pub(crate) fn records(&mut self) -> io::Result<Option<Bytes>> {
        if self.outgoing.pending().is_empty() {
            return Ok(None);
        }
        Ok(Some(self.outgoing.take()))
    }

    /// Whether closing should tell the peer the session ended on purpose (close_notify): not
    /// before a session exists (a peer that never completed the handshake, a stall, a port scan,
    /// gets only the TCP stream's end) nor after a refusal (the alert said why).
    pub(crate) fn ends_with_close_notify(&self) -> bool {
        !self.failed && !self.is_handshaking()
    }
}

/// The bytes still missing from the last record in `buf` (records back to back from its start):
/// at least one while its header is short, 0 if `buf` ends where a record does.
fn record_need(buf: &[u8]) -> usize {
    let mut at = 0;
    loop {
        let left = buf.len() - at;
        if left == 0 {
            return 0;
        }
        if left < 5 {
            return 5 - left;
        }
        let len = 5 + usize::from(u16::from_be_bytes([buf[at + 3], buf[at + 4]]));
        if left < len {
            return len - left;
        }
        at += len;
    }
}

/// rustls' encode error as the room it asked for (a record is encoded once).
fn encoded(result: Result<usize, EncodeError>) -> Result<usize, InsufficientSizeError> {
    match result {
        Ok(n) => Ok(n),
        Err(EncodeError::InsufficientSize(e)) => Err(e),
        Err(EncodeError::AlreadyEncoded) => Ok(0),
    }
}

/// [`Session::open_records`] for either end.
fn drive_open<C: Records>(
    conn: &mut C,
    buf: &mut [u8],
    outgoing: &mut Outgoing,
    stash: &mut Vec<u8>,
    plaintext: &mut dyn Plaintext,
    opened: &mut Opened,
    peer_closed: &mut bool,
) -> Result<(usize, Stop), rustls::Error> {
    let mut consumed = 0;
    loop {
        let status = conn.records(&mut buf[consumed..]);
        let mut discard = status.discard;
        let stop = match status.state? {
            ConnectionState::ReadTraffic(mut traffic) => {
                while let Some(record) = traffic.next_record() {
                    let record = record?;
                    discard += record.discard;
                    let payload = record.payload;
                    // Copied once, into the caller's buffer; what it has no room for waits.
                    let n = payload.len().min(plaintext.room());
                    plaintext.put(&payload[..n]);
                    stash.extend_from_slice(&payload[n..]);
                    opened.plaintext += n;
                }
                (plaintext.room() == 0).then_some(Stop::Full)
            }
            ConnectionState::EncodeTlsData(mut encode) => {
                outgoing.append(|room| encoded(encode.encode(room)));
                None
            }
            // The records are queued in order, and go out before anything sealed later.
            ConnectionState::TransmitTlsData(transmit) => {
                transmit.done();
                None
            }
            // What follows the peer's close_notify is not part of the session.
            ConnectionState::PeerClosed | ConnectionState::Closed => {
                *peer_closed = true;
                Some(Stop::Closed)
            }
            ConnectionState::ReadEarlyData(_) => {
                // raftnet's configurations never accept 0-RTT data (it can be replayed).
                return Err(rustls::Error::General("early data is not accepted".into()));
            }
            _ => Some(Stop::NeedMore),
        };
        consumed += discard;
        if let Some(stop) = stop {
            return Ok((consumed, stop));
        }
    }
}

/// Queue the records rustls made on its own (see [`Session::queue_made`]).
fn queue_made<C: Records>(conn: &mut C, outgoing: &mut Outgoing) {
    while conn.wants_write() {
        match conn.records(&mut []).state {
            Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                outgoing.append(|room| encoded(encode.encode(room)));
            }
            _ => return,
        }
    }
}

/// Bring the session to where it may seal (rustls' `WriteTraffic`), queueing what rustls has
/// to send first, and call `write` there; `incoming` is what the session kept of the peer's
/// records (see [`Records`]: rustls is given it, and takes nothing whole from it).
fn write_traffic<C: Records>(
    conn: &mut C,
    incoming: &mut Vec<u8>,
    outgoing: &mut Outgoing,
    mut write: impl FnMut(&mut WriteTraffic<'_, C::Data>, &mut Outgoing) -> io::Result<usize>,
) -> io::Result<usize> {
    queue_made(conn, outgoing);
    loop {
        let status = conn.records(incoming);
        let discard = status.discard;
        let written = match status.state {
            Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                outgoing.append(|room| encoded(encode.encode(room)));
                None
            }
            Ok(ConnectionState::TransmitTlsData(transmit)) => {
                transmit.done();
                None
            }
            Ok(ConnectionState::WriteTraffic(mut traffic)) => Some(write(&mut traffic, outgoing)),
            // Opening takes every whole record, so there is no plaintext here to read first.
            Ok(other) => Some(Err(io::Error::other(format!(
                "TLS session cannot seal now: {other:?}"
            )))),
            Err(e) => Some(Err(io::Error::new(io::ErrorKind::InvalidData, e))),
        };
        incoming.drain(..discard);
        if let Some(written) = written {
            return written;
        }
    }
}

/// Seal up to `limit` bytes of `slices` in `traffic`, small pieces copied together first (see
/// [`COALESCE_BELOW`]); the bytes taken.
fn seal_records<Data>(
    traffic: &mut WriteTraffic<'_, Data>,
    slices: &mut dyn Iterator<Item = &[u8]>,
    limit: usize,
    outgoing: &mut Outgoing,
    stage: &mut Vec<u8>,
) -> io::Result<usize> {
    let mut taken = 0;
    for slice in slices {
        let slice = &slice[..slice.len().min(limit - taken)];
        if slice.len() < COALESCE_BELOW {
            stage.extend_from_slice(slice);
            if stage.len() >= RECORD_PLAINTEXT {
                outgoing.encrypt(|room| traffic.encrypt(stage, room))?;
                stage.clear();
            }
        } else {
            if !stage.is_empty() {
                outgoing.encrypt(|room| traffic.encrypt(stage, room))?;
                stage.clear();
            }
            outgoing.encrypt(|room| traffic.encrypt(slice, room))?;
        }
        taken += slice.len();
        if taken == limit {
            break;
        }
    }
    if !stage.is_empty() {
        outgoing.encrypt(|room| traffic.encrypt(stage, room))?;
        stage.clear();
    }
    Ok(taken)
}

/// What [`Session::open_in_place`] found.
pub(crate) struct Opened {
    /// Bytes of the caller's ciphertext taken (the rest is the caller's to offer again).
    pub(crate) consumed: usize,
    /// Plaintext bytes handed to the caller's buffer.
    pub(crate) plaintext: usize,
    /// The peer ended the session (close_notify): the stream's end, once the plaintext is read.
    pub(crate) peer_closed: bool,
}
