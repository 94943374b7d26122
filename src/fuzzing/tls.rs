//! Target `tls_session` (feature `tls`): raftnet's TLS session in memory ([`tls_session`]).

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};

use bytes::{Bytes, BytesMut};
use rustls::client::Resumption;
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, ServerConfig};

use super::decode_all;
use crate::Error;
use crate::driver::tls::Session;
use crate::tls::TlsConfig;
use crate::transport::ServerId;
use crate::wire::native::FrameDecoder;

// Test-only keys, guarding nothing: a CA, and the certificates and keys of server `node-1` and
// of its client `node-2` (both valid from 1975 to 4096), made once by
// `cargo run --example make_certs -- src/fuzzing/keys 1 2`. A fuzz target cannot make them
// itself (rcgen is a dev-dependency), and a fixed set keeps each run's handshakes alike.
const CA: &str = include_str!("keys/ca.pem");
const SERVER_CERT: &str = include_str!("keys/node-1.pem");
const SERVER_KEY: &str = include_str!("keys/node-1.key");
const CLIENT_CERT: &str = include_str!("keys/node-2.pem");
const CLIENT_KEY: &str = include_str!("keys/node-2.key");

/// The server's id: the DNS name in its certificate.
const SERVER_ID: &str = "node-1";
/// The client's, likewise.
const CLIENT_ID: &str = "node-2";
const CLIENT_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 40000);
const SERVER_ADDR: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)), 7000);

/// What the client seals in raw mode after the handshake, before the input arrives.
const SEALED: &[u8] = b"sealed by the client";

/// The client's and the server's configurations, parsed once (a handshake per input is cost
/// enough), without session resumption: every input's handshake is a full one, alike, and no
/// ticket outlives its input (libFuzzer's leak check scans the heap after every input that
/// leaves allocations behind, which a growing ticket cache does).
fn configs() -> &'static (TlsConfig, TlsConfig) {
    static CONFIGS: OnceLock<(TlsConfig, TlsConfig)> = OnceLock::new();
    CONFIGS.get_or_init(|| {
        let config = |cert: &str, key: &str| {
            let parsed = TlsConfig::from_pem(CA.as_bytes(), cert.as_bytes(), key.as_bytes())
                .expect("the fuzz target's test certificates");
            let mut server = ServerConfig::clone(parsed.server_config());
            server.session_storage = Arc::new(NoServerSessionStorage {});
            server.send_tls13_tickets = 0;
            let mut client = ClientConfig::clone(parsed.client_config());
            client.resumption = Resumption::disabled();
            TlsConfig::new(Arc::new(server), Arc::new(client))
        };
        (
            config(CLIENT_CERT, CLIENT_KEY),
            config(SERVER_CERT, SERVER_KEY),
        )
    })
}

/// A client session dialling [`SERVER_ID`] and a server session to accept it, both knowing
/// their peer's address, as the io_uring driver makes them.
fn sessions() -> (Session, Session) {
    let (client, server) = configs();
    Session::memory_pair(client, server, SERVER_ID, CLIENT_ADDR, SERVER_ADDR)
}

/// The piece length bits 2-7 of the configuration byte pick: 1 to 32 bytes (`0..=31`), then
/// multiples of 613 up to past a full record (`32..=62`: 613 to 19,003), then all at once
/// (`63`).
fn piece_len(bits: u8) -> usize {
    match bits & 63 {
        63 => usize::MAX,
        n @ 0..=31 => usize::from(n) + 1,
        n => usize::from(n - 31) * 613,
    }
}

/// Each side's records to the other, whole, until neither has any: the handshake, which must
/// complete, opening no plaintext.
fn handshake(client: &mut Session, server: &mut Session) {
    let mut plaintext = BytesMut::new();
    loop {
        let mut moved = false;
        for client_sends in [true, false] {
            let (from, to) = match client_sends {
                true => (&mut *client, &mut *server),
                false => (&mut *server, &mut *client),
            };
            if let Some(records) = from.records().expect("records from memory") {
                let opened = to
                    .open(&records, &mut plaintext)
                    .expect("the handshake completes");
                assert_eq!(opened.plaintext, 0);
                moved = true;
            }
        }
        if !moved {
            break;
        }
    }
    assert!(plaintext.is_empty(), "plaintext during the handshake");
    assert!(!client.is_handshaking() && !server.is_handshaking());
}

/// `session` opens `ciphertext` in pieces of `piece` bytes: each piece's plaintext, as `open`
/// appended it, and whether the peer closed. Panics at a refusal.
fn open_in_pieces(session: &mut Session, ciphertext: &[u8], piece: usize) -> (Vec<Bytes>, bool) {
    let mut opened_pieces = Vec::new();
    let mut peer_closed = false;
    for chunk in ciphertext.chunks(piece) {
        let mut plaintext = BytesMut::new();
        let opened = session
            .open(chunk, &mut plaintext)
            .expect("records the peer sealed open");
        assert_eq!(opened.plaintext, plaintext.len());
        peer_closed |= opened.peer_closed;
        if !plaintext.is_empty() {
            opened_pieces.push(plaintext.freeze());
        }
    }
    (opened_pieces, peer_closed)
}

/// Target `tls_session` (feature `tls`): raftnet's TLS session (`driver::tls::Session`, what
/// both drivers run their TLS connections with) without sockets: a client and a server session
/// of one test CA, each side's records given to the other's `open` in memory.
///
/// The configuration byte: bit 0 picks the mode, clear "through", set "raw"; bit 1 is the
/// mode's option (through: the input is sealed in pieces of the piece length rather than whole;
/// raw: the input arrives after the handshake rather than before it); bits 2-7 pick the piece
/// length the ciphertext is opened in (1 to 32 bytes, multiples of 613 up to 19,003, or all
/// at once).
///
/// - Through: after the handshake, the client seals the input; the server opens the records in
///   pieces, and what it opens must be the input, byte for byte, with each side's peer named
///   once. The plaintext then goes through the native frame decoder in the pieces `open`
///   appended, as the engine reads it, and must decode as the input does whole. A close_notify
///   then ends the stream with nothing more opened.
/// - Raw: the input is ciphertext for the server, before the handshake (a client's first
///   flight) or after it (once a record the client sealed was opened). Every `open` returns
///   `Ok` or a refusal (`InvalidData`, an [`Error::Tls`] naming the client's address, the
///   handshake's exactly when it came before the handshake) or rustls' own `Other` (and, known
///   and not a refusal, rustls' error for a handshake message over 64 KiB: `check_failure`); it
///   opens nothing the client did not seal; and before the handshake, the handshake never
///   completes.
///
/// Any panic is a finding.
pub fn tls_session(data: &[u8]) {
    let Some((&cfg, input)) = data.split_first() else {
        return;
    };
    let piece = piece_len(cfg >> 2);
    let option = cfg & 2 != 0;
    if cfg & 1 == 0 {
        through(input, piece, option);
    } else {
        raw(input, piece, option);
    }
}

fn through(input: &[u8], piece: usize, sealed_in_pieces: bool) {
    let (mut client, mut server) = sessions();
    handshake(&mut client, &mut server);
    let named = |session: &mut Session, addr, id: &str| {
        let peer = session.take_verified_peer(Some(addr)).expect("a peer");
        assert_eq!(peer.identity.server_ids(), [ServerId::from(id)]);
        assert_eq!(peer.identity.addr(), addr);
        assert!(session.take_verified_peer(Some(addr)).is_none());
    };
    named(&mut client, SERVER_ADDR, SERVER_ID);
    named(&mut server, CLIENT_ADDR, CLIENT_ID);

    let mut queue: Vec<Bytes> = if sealed_in_pieces {
        input.chunks(piece).map(Bytes::copy_from_slice).collect()
    } else {
        vec![Bytes::copy_from_slice(input)]
    };
    client.seal(&mut queue).expect("a session seals all");
    assert!(queue.is_empty());
    let records = client.records().expect("records from memory");
    assert_eq!(records.is_some(), !input.is_empty());
    let records = records.unwrap_or_default();
    let (opened, peer_closed) = open_in_pieces(&mut server, &records, piece);
    assert!(!peer_closed);
    let plaintext: Vec<u8> = opened.concat();
    assert!(
        plaintext == input,
        "the server opened other bytes than the client sealed"
    );

    // The engine decodes what each open appended: as the input decodes whole.
    let split = decode_all(FrameDecoder::new(), &mut opened.iter().map(|b| &b[..]));
    let whole = decode_all(FrameDecoder::new(), &mut std::iter::once(input));
    assert_eq!(split, whole, "decoding TLS's pieces differs from one piece");

    // The client ends the session: the stream's end, and nothing more.
    client.send_close_notify();
    let records = client.records().expect("records from memory");
    let records = records.expect("a close_notify");
    let (opened, peer_closed) = open_in_pieces(&mut server, &records, piece);
    assert!(opened.is_empty() && peer_closed);
}

fn raw(input: &[u8], piece: usize, after_handshake: bool) {
    let (mut client, mut server) = sessions();
    let mut plaintext = BytesMut::new();
    if after_handshake {
        handshake(&mut client, &mut server);
        client
            .seal(&mut vec![Bytes::from_static(SEALED)])
            .expect("seal");
        let records = client.records().expect("records from memory");
        let opened = server
            .open(&records.expect("a record"), &mut plaintext)
            .expect("the client's record opens");
        assert_eq!(opened.plaintext, SEALED.len());
    }
    for chunk in input.chunks(piece) {
        match server.open(chunk, &mut plaintext) {
            Ok(opened) => assert_eq!(opened.plaintext, 0, "opened what no one sealed"),
            Err(e) => {
                check_failure(e, &server, after_handshake);
                // The alert (or whatever the server has to say) is ready to go out.
                server.records().expect("records from memory");
                break;
            }
        }
        // The server's flights (an answer to a client's hello) go out as a driver sends them.
        server.records().expect("records from memory");
    }
    let sealed: &[u8] = if after_handshake { SEALED } else { b"" };
    assert!(
        plaintext == sealed,
        "the server opened bytes the client did not seal"
    );
    if !after_handshake {
        assert!(
            server.is_handshaking(),
            "a handshake completed with bytes no client made"
        );
        assert!(server.take_verified_peer(Some(CLIENT_ADDR)).is_none());
    }
}

/// How the server's `open` may fail on raw bytes: a refusal (`InvalidData`, an [`Error::Tls`]
/// naming the client's address, the handshake's exactly when before the handshake), or rustls'
/// own `Other`.
fn check_failure(e: io::Error, server: &Session, after_handshake: bool) {
    match e.kind() {
        io::ErrorKind::InvalidData => {}
        io::ErrorKind::Other => return,
        kind => panic!("open failed with {kind:?}: {e}"),
    }
    let inner = e.into_inner().expect("a refusal carries its reason");
    match inner.downcast::<Error>().map(|e| *e) {
        Ok(Error::Tls {
            peer, handshake, ..
        }) => {
            assert_eq!(peer, Some(CLIENT_ADDR));
            assert_eq!(handshake, !after_handshake);
            assert!(!server.ends_with_close_notify());
        }
        Ok(other) => panic!("a refusal that is not TLS's: {other:?}"),
        Err(other) => panic!("an InvalidData that is no refusal: {other}"),
    }
}

/// A client hello of 64 KiB in records of 16 KiB: more than rustls takes of a handshake
/// message (65,535 bytes), which `Session::open` refuses. Not a seed: it would raise
/// the fuzzer's input size limit to 64 KiB for every input; `tests/fuzz_corpus.rs` and the
/// session's own tests send it.
pub fn oversized_tls_hello() -> Vec<u8> {
    let mut message = vec![0x01, 0x01, 0x00, 0x00]; // client_hello, 65,536 bytes
    message.resize(4 + 0x1_0000, 0);
    let mut records = Vec::new();
    for fragment in message.chunks(16 * 1024) {
        records.extend_from_slice(&[0x16, 0x03, 0x01]);
        records.extend_from_slice(&(fragment.len() as u16).to_be_bytes());
        records.extend_from_slice(fragment);
    }
    records
}
