//! [`Session`] without sockets: a client and a server session of one test CA, each side's
//! records handed to the other's [`Session::open`] in memory (quinn-proto's `Pair`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::{Bytes, BytesMut};

use super::Session;
use crate::Error;
use crate::transport::ServerId;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls::{AlertDescription, CertificateError};

/// A certificate authority of its own (the cluster's, or an impostor's).
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-sign the CA");
        Ca {
            issuer: Issuer::new(params, key),
            pem: cert.pem(),
        }
    }

    /// Mutual TLS for server `id`: a certificate naming `id` (its only DNS name), trusting
    /// this CA alone.
    fn tls(&self, id: &str) -> crate::tls::TlsConfig {
        self.tls_trusting(id, self)
    }

    /// Mutual TLS for server `id` with this CA's certificate, trusting `roots` alone.
    fn tls_trusting(&self, id: &str, roots: &Ca) -> crate::tls::TlsConfig {
        let mut params = CertificateParams::new(vec![id.to_string()]).expect("node params");
        params.distinguished_name.push(DnType::CommonName, id);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().expect("node key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign the node");
        crate::tls::TlsConfig::from_pem(
            roots.pem.as_bytes(),
            cert.pem().as_bytes(),
            key.serialize_pem().as_bytes(),
        )
        .expect("a TLS config from the test certificates")
    }
}

const CLIENT_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 40000);
const SERVER_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 7000);

/// A client session dialling server `server-1` at [`SERVER_ADDR`] and the server session
/// accepting it, as the io_uring driver makes them, each knowing its peer's address as a
/// driver's does.
struct Pair {
    client: Session,
    server: Session,
}

/// Which side of a [`Pair`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Client,
    Server,
}

/// What one delivery opened on the receiving side, summed over its pieces.
#[derive(Debug, PartialEq, Eq)]
struct Delivered {
    plaintext: Vec<u8>,
    peer_closed: bool,
}

impl Pair {
    fn new(client: &crate::tls::TlsConfig, server: &crate::tls::TlsConfig) -> Pair {
        let (client, server) =
            Session::memory_pair(client, server, "server-1", CLIENT_ADDR, SERVER_ADDR);
        Pair { client, server }
    }

    /// A handshaken pair of one CA: client `client-1`, server `server-1`.
    fn connected(ca: &Ca) -> Pair {
        let mut pair = Pair::new(&ca.tls("client-1"), &ca.tls("server-1"));
        pair.handshake().expect("the handshake completes");
        assert!(!pair.client.is_handshaking());
        assert!(!pair.server.is_handshaking());
        pair
    }

    fn side(&mut self, side: Side) -> (&mut Session, &mut Session) {
        match side {
            Side::Client => (&mut self.client, &mut self.server),
            Side::Server => (&mut self.server, &mut self.client),
        }
    }

    /// Move each side's records to the other, whole, until neither has any: the first
    /// refusal ends it, with the side that refused.
    fn handshake(&mut self) -> Result<(), (Side, io::Error)> {
        let mut from = Side::Client;
        let mut idle = 0;
        while idle < 2 {
            match self.deliver(from, usize::MAX) {
                Ok(None) => idle += 1,
                Ok(Some(delivered)) => {
                    assert_eq!(delivered.plaintext, b"", "plaintext during the handshake");
                    idle = 0;
                }
                Err(e) => return Err((other(from), e)),
            }
            from = other(from);
        }
        Ok(())
    }

    /// `from`'s records, if it has any, opened by the other side in pieces of `piece`
    /// bytes.
    fn deliver(&mut self, from: Side, piece: usize) -> io::Result<Option<Delivered>> {
        let (sender, receiver) = self.side(from);
        let Some(records) = sender.records()? else {
            return Ok(None);
        };
        open_in_pieces(receiver, &records, piece).map(Some)
    }

    /// `from` seals `pieces`, the other side opens its records in pieces of `piece` bytes.
    fn send(&mut self, from: Side, pieces: &[&[u8]], piece: usize) -> io::Result<Delivered> {
        let (sender, _) = self.side(from);
        let mut queue: Vec<Bytes> = pieces.iter().map(|p| Bytes::copy_from_slice(p)).collect();
        sender.seal(&mut queue).expect("seal");
        assert!(queue.is_empty(), "seal took every piece");
        Ok(self.deliver(from, piece)?.expect("records to deliver"))
    }
}

fn other(side: Side) -> Side {
    match side {
        Side::Client => Side::Server,
        Side::Server => Side::Client,
    }
}

/// `ciphertext` given to `session` in pieces of `piece` bytes (the last may be shorter),
/// checking each [`Opened`] against what it appended.
fn open_in_pieces(session: &mut Session, ciphertext: &[u8], piece: usize) -> io::Result<Delivered> {
    let mut plaintext = BytesMut::new();
    let mut peer_closed = false;
    for chunk in ciphertext.chunks(piece) {
        let before = plaintext.len();
        let opened = session.open(chunk, &mut plaintext)?;
        assert_eq!(opened.plaintext, plaintext.len() - before);
        peer_closed |= opened.peer_closed;
    }
    Ok(Delivered {
        plaintext: plaintext.to_vec(),
        peer_closed,
    })
}

/// The [`Error::Tls`] an `open` refused with: its `peer`, `handshake` and `reason`.
fn refusal(e: io::Error) -> (Option<SocketAddr>, bool, rustls::Error) {
    assert_eq!(e.kind(), io::ErrorKind::InvalidData, "{e}");
    let inner = e.into_inner().expect("an inner error");
    match *inner.downcast::<Error>().expect("a raftnet error") {
        Error::Tls {
            peer,
            handshake,
            reason,
        } => (peer, handshake, reason),
        other => panic!("not a TLS refusal: {other:?}"),
    }
}

/// `len` bytes that differ from their neighbours and from other lengths' patterns.
fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) ^ (i >> 8) as u8)
        .collect()
}

#[test]
fn the_handshake_completes_in_memory_and_each_side_names_its_peer_once() {
    let ca = Ca::new("cluster CA");
    let mut pair = Pair::new(&ca.tls("client-1"), &ca.tls("server-1"));
    // Before the handshake: no identity, and no close_notify (no session to end).
    assert!(pair.client.take_verified_peer(Some(SERVER_ADDR)).is_none());
    assert!(pair.server.take_verified_peer(Some(CLIENT_ADDR)).is_none());
    assert!(!pair.client.ends_with_close_notify());
    assert!(!pair.server.ends_with_close_notify());

    pair.handshake().expect("the handshake completes");
    assert!(!pair.client.is_handshaking());
    assert!(!pair.server.is_handshaking());
    assert!(pair.client.ends_with_close_notify());
    assert!(pair.server.ends_with_close_notify());

    let server = pair
        .client
        .take_verified_peer(Some(SERVER_ADDR))
        .expect("once");
    assert_eq!(server.identity.server_ids(), [ServerId::from("server-1")]);
    assert_eq!(server.identity.addr(), SERVER_ADDR);
    assert!(server.authorize.is_none());
    assert!(pair.client.take_verified_peer(Some(SERVER_ADDR)).is_none());

    let client = pair.server.take_verified_peer(None).expect("once");
    assert_eq!(client.identity.server_ids(), [ServerId::from("client-1")]);
    // No address given: the unspecified one.
    assert_eq!(client.identity.addr(), SocketAddr::from(([0, 0, 0, 0], 0)));
    assert!(pair.server.take_verified_peer(Some(CLIENT_ADDR)).is_none());

    // Nothing left to send either way, and nothing was refused.
    assert!(pair.client.records().unwrap().is_none());
    assert!(pair.server.records().unwrap().is_none());
    assert!(!pair.client.failed && !pair.server.failed);
}

#[test]
fn plaintext_arrives_byte_exact_in_pieces_of_every_size() {
    let ca = Ca::new("cluster CA");
    let mut pair = Pair::connected(&ca);
    // Three pieces sealed one by one, three records: pieces of the ciphertext cut record
    // headers, bodies and tags at every offset.
    let (a, b, c) = (pattern(1, 1), pattern(200, 2), pattern(700, 3));
    let whole = [&a[..], &b, &c].concat();
    let pieces = || {
        vec![
            Bytes::from(a.clone()),
            Bytes::from(b.clone()),
            Bytes::from(c.clone()),
        ]
    };
    // Sealed in one call, the same pieces fill one record (5-byte header, content type and
    // 16-byte tag around them), as a send of the io_uring driver seals its pieces.
    let (sender, receiver) = pair.side(Side::Client);
    assert_eq!(sender.seal(&mut pieces()).unwrap(), whole.len());
    let record = sender.records().unwrap().expect("records");
    assert_eq!(record.len(), whole.len() + 22);
    assert_eq!(
        open_in_pieces(receiver, &record, usize::MAX)
            .unwrap()
            .plaintext,
        whole
    );
    for from in [Side::Client, Side::Server] {
        for piece in [usize::MAX].into_iter().chain(1..=whole.len() + 3 * 22) {
            let (sender, receiver) = pair.side(from);
            for one in pieces() {
                sender.seal(&mut vec![one]).unwrap();
            }
            let records = sender.records().unwrap().expect("records");
            // Each record: a 5-byte header, the piece, its content type, a 16-byte tag.
            assert_eq!(records.len(), whole.len() + 3 * 22);
            let delivered = open_in_pieces(receiver, &records, piece)
                .unwrap_or_else(|e| panic!("{from:?}, pieces of {piece}: {e}"));
            assert_eq!(
                delivered,
                Delivered {
                    plaintext: whole.clone(),
                    peer_closed: false
                },
                "{from:?}, pieces of {piece}"
            );
        }
    }
}

#[test]
fn a_megabyte_is_sealed_whole_and_arrives_byte_exact_in_pieces_of_every_size() {
    const MIB: usize = 1 << 20;
    let ca = Ca::new("cluster CA");
    let mut pair = Pair::connected(&ca);
    let payload = pattern(MIB, 9);
    // A full record: 16 KiB of plaintext, its content type and tag, its header.
    const RECORD: usize = 5 + 16 * 1024 + 1 + 16;
    for from in [Side::Client, Side::Server] {
        for piece in [usize::MAX, RECORD + 1, RECORD - 1, 4096, 1000] {
            let delivered = pair.send(from, &[&payload], piece).unwrap();
            assert_eq!(
                delivered.plaintext.len(),
                MIB,
                "{from:?}, pieces of {piece}"
            );
            assert!(
                delivered.plaintext == payload,
                "{from:?}, pieces of {piece}"
            );
            assert!(!delivered.peer_closed);
        }
    }
}

#[test]
fn close_notify_ends_the_stream_after_the_plaintext_sent_before_it() {
    let ca = Ca::new("cluster CA");
    for from in [Side::Client, Side::Server] {
        for piece in [usize::MAX, 1, 7] {
            let mut pair = Pair::connected(&ca);
            let (sender, receiver) = pair.side(from);
            sender
                .seal(&mut vec![Bytes::from_static(b"last words")])
                .unwrap();
            sender.send_close_notify();
            let records = sender.records().unwrap().expect("records");
            // What follows close_notify is not part of the session: neither opened nor
            // refused.
            let records = [&records[..], b"trailing garbage"].concat();
            assert_eq!(
                open_in_pieces(receiver, &records, piece).unwrap(),
                Delivered {
                    plaintext: b"last words".to_vec(),
                    peer_closed: true
                },
                "{from:?}, pieces of {piece}"
            );
        }
    }
}

#[test]
fn a_flipped_byte_after_the_handshake_is_refused_and_answered_with_an_alert() {
    let ca = Ca::new("cluster CA");
    // The record of "second": a 5-byte header, 6 bytes, a content type, a 16-byte tag.
    for at in [5, 5 + 3, 5 + 6, 5 + 6 + 1 + 15] {
        let mut pair = Pair::connected(&ca);
        // The session has carried data: a refusal now is the record's, not the handshake's.
        let first = pair.send(Side::Client, &[b"first"], usize::MAX).unwrap();
        assert_eq!(first.plaintext, b"first");
        pair.client
            .seal(&mut vec![Bytes::from_static(b"second")])
            .unwrap();
        let mut records = pair.client.records().unwrap().unwrap().to_vec();
        assert_eq!(records.len(), 5 + 6 + 1 + 16);
        records[at] ^= 0x40;

        let mut plaintext = BytesMut::new();
        let Err(e) = pair.server.open(&records, &mut plaintext) else {
            panic!("byte {at}: the flipped record opened");
        };
        assert_eq!(
            refusal(e),
            (Some(CLIENT_ADDR), false, rustls::Error::DecryptError),
            "byte {at}"
        );
        assert_eq!(plaintext, b"".as_slice());
        assert!(!pair.server.ends_with_close_notify());

        // The alert for the client: bad_record_mac. The client never received data, so
        // its refusal counts as the handshake's (see `refused`: TLS 1.3's client).
        let alert = pair.server.records().unwrap().expect("an alert");
        let e = open_in_pieces(&mut pair.client, &alert, usize::MAX).unwrap_err();
        assert_eq!(
            refusal(e),
            (
                Some(SERVER_ADDR),
                true,
                rustls::Error::AlertReceived(AlertDescription::BadRecordMac)
            )
        );
        assert!(!pair.client.ends_with_close_notify());
    }
}

#[test]
fn a_certificate_of_another_ca_is_refused_during_the_handshake() {
    let ca = Ca::new("cluster CA");
    let impostor = Ca::new("impostor CA");

    // A server the client's CA does not vouch for: the client refuses the server's first
    // flight, and its alert refuses the server.
    let mut pair = Pair::new(&ca.tls("client-1"), &impostor.tls("server-1"));
    let (side, e) = pair.handshake().unwrap_err();
    assert_eq!(side, Side::Client);
    let unknown_issuer = rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer);
    assert_eq!(
        refusal(e),
        (Some(SERVER_ADDR), true, unknown_issuer.clone())
    );
    assert!(pair.client.is_handshaking());
    let alert = pair.client.records().unwrap().expect("an alert");
    let e = open_in_pieces(&mut pair.server, &alert, usize::MAX).unwrap_err();
    let unknown_ca = rustls::Error::AlertReceived(AlertDescription::UnknownCA);
    assert_eq!(refusal(e), (Some(CLIENT_ADDR), true, unknown_ca.clone()));
    assert!(pair.client.take_verified_peer(None).is_none());
    assert!(!pair.client.ends_with_close_notify());
    assert!(!pair.server.ends_with_close_notify());

    // A client the server's CA does not vouch for: in TLS 1.3 the client's handshake is
    // done when the server refuses its certificate; the alert is still the handshake's.
    let mut pair = Pair::new(&impostor.tls_trusting("client-1", &ca), &ca.tls("server-1"));
    let (side, e) = pair.handshake().unwrap_err();
    assert_eq!(side, Side::Server);
    assert_eq!(refusal(e), (Some(CLIENT_ADDR), true, unknown_issuer));
    assert!(!pair.client.is_handshaking());
    let alert = pair.server.records().unwrap().expect("an alert");
    let e = open_in_pieces(&mut pair.client, &alert, usize::MAX).unwrap_err();
    assert_eq!(refusal(e), (Some(SERVER_ADDR), true, unknown_ca));
    assert!(pair.server.take_verified_peer(None).is_none());
    assert!(!pair.client.ends_with_close_notify());
    assert!(!pair.server.ends_with_close_notify());
}

/// rustls refuses to join a hello of more than 64 KiB: a refusal like the others (`Error::Tls`,
/// the session failed), and the session holds no more than that of it.
#[test]
fn a_handshake_message_over_64_kib_is_refused() {
    let ca = Ca::new("cluster CA");
    for piece in [usize::MAX, 1000] {
        let mut server = Session::accept(&ca.tls("server-1")).unwrap();
        server.peer = Some(CLIENT_ADDR);
        let e =
            open_in_pieces(&mut server, &crate::fuzzing::oversized_tls_hello(), piece).unwrap_err();
        let (peer, handshake, reason) = refusal(e);
        assert_eq!((peer, handshake), (Some(CLIENT_ADDR), true));
        assert_eq!(
            reason,
            rustls::Error::InvalidMessage(rustls::InvalidMessage::HandshakePayloadTooLarge)
        );
        assert!(server.failed);
        assert!(!server.ends_with_close_notify());
    }
}

#[test]
fn a_certificate_for_another_server_is_refused_by_the_dial() {
    let ca = Ca::new("cluster CA");
    let mut pair = Pair::new(&ca.tls("client-1"), &ca.tls("server-2"));
    let (side, e) = pair.handshake().unwrap_err();
    assert_eq!(side, Side::Client);
    let (peer, handshake, reason) = refusal(e);
    assert_eq!((peer, handshake), (Some(SERVER_ADDR), true));
    let expected = rustls::pki_types::ServerName::try_from("server-1").unwrap();
    let presented = vec![r#"DnsName("server-2")"#.to_string()];
    assert_eq!(
        reason,
        rustls::Error::InvalidCertificate(CertificateError::NotValidForNameContext {
            expected,
            presented
        })
    );
}

/// A reader's buffer of `room` bytes per read, as the readiness drivers' stream hands the
/// session (`Uninit`): [`Plaintext`](super::Plaintext) with a bound.
struct Room {
    room: usize,
    got: Vec<u8>,
}

impl super::Plaintext for Room {
    fn room(&self) -> usize {
        self.room - self.got.len()
    }

    fn put(&mut self, bytes: &[u8]) {
        assert!(bytes.len() <= self.room(), "put past the room");
        self.got.extend_from_slice(bytes);
    }
}

/// Reads smaller than a record, and than what a receive brought: the session hands out what
/// fits, keeps the rest of a record it opened, and leaves the records it did not open to the
/// caller (`consumed`), which offers them again; every byte arrives once, in order.
#[test]
fn reads_smaller_than_a_record_get_every_byte_once_in_order() {
    let ca = Ca::new("cluster CA");
    let payload = pattern(40_000, 5);
    for room in [1, 100, 16 * 1024 - 1, 16 * 1024, 16 * 1024 + 1, 50_000] {
        for receive in [usize::MAX, 1000, 16 * 1024 + 22 + 1] {
            let mut pair = Pair::connected(&ca);
            pair.client
                .seal(&mut vec![Bytes::from(payload.clone())])
                .unwrap();
            let records = pair.client.records().unwrap().expect("records");
            let mut got = Vec::new();
            let mut reads = 0;
            for chunk in records.chunks(receive) {
                // What one receive brought, offered until the session took all of it.
                let mut chunk = chunk.to_vec();
                let mut start = 0;
                loop {
                    let mut read = Room {
                        room,
                        got: Vec::new(),
                    };
                    let opened = pair
                        .server
                        .open_in_place(&mut chunk[start..], &mut read)
                        .unwrap();
                    assert_eq!(opened.plaintext, read.got.len());
                    got.extend_from_slice(&read.got);
                    start += opened.consumed;
                    reads += 1;
                    if start == chunk.len() && read.got.len() < room {
                        break;
                    }
                }
            }
            // What the last records left for more reads.
            while pair.server.has_plaintext() {
                let mut read = Room {
                    room,
                    got: Vec::new(),
                };
                pair.server.open_in_place(&mut [], &mut read).unwrap();
                got.extend_from_slice(&read.got);
            }
            assert_eq!(
                got.len(),
                payload.len(),
                "room {room}, receives of {receive}"
            );
            assert!(got == payload, "room {room}, receives of {receive}");
            assert!(reads >= payload.len() / room, "room {room}: {reads} reads");
        }
    }
}

/// What the engine writes before the handshake completes is held (up to 64 KiB, the rest left
/// to the engine's queue) and sealed once it has, after the handshake's own records: the peer
/// opens exactly those bytes, once.
#[test]
fn plaintext_written_during_the_handshake_goes_out_once_it_completes() {
    let ca = Ca::new("cluster CA");
    let mut pair = Pair::new(&ca.tls("client-1"), &ca.tls("server-1"));
    let early = pattern(70 * 1024, 7);
    let taken = pair
        .client
        .seal_slices(
            &mut [&early[..1000], &early[1000..]].into_iter(),
            usize::MAX,
        )
        .unwrap();
    assert_eq!(taken, 64 * 1024, "held up to its bound");
    // Nothing sealed yet: the client's hello alone.
    assert!(pair.client.is_handshaking());
    let mut delivered = Vec::new();
    let mut from = Side::Client;
    let mut idle = 0;
    while idle < 2 {
        match pair.deliver(from, usize::MAX).unwrap() {
            None => idle += 1,
            Some(d) => {
                idle = 0;
                assert!(!d.peer_closed);
                if from == Side::Client {
                    delivered.extend_from_slice(&d.plaintext);
                } else {
                    assert_eq!(d.plaintext, b"", "the server sent no data");
                }
            }
        }
        from = other(from);
    }
    assert!(!pair.client.is_handshaking() && !pair.server.is_handshaking());
    assert_eq!(delivered.len(), taken);
    assert!(delivered == early[..taken]);
}
