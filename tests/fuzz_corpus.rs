//! Replays the committed fuzz seeds (fuzz/seeds/<target>/) through the fuzz entry points on
//! stable Rust, so every input the fuzzers were started from, and every crash they ever found
//! (saved there as a regression seed), stays a test. Also pushes edge inputs through the targets
//! (every prefix of a valid stream, all-0xff, all-zero). And sends every seed to a live server,
//! over plain TCP and inside TLS sessions (feature `tls`): each is answered or refused, every
//! connection is closed, and the server serves a legitimate call afterwards. The TLS target's
//! seeds (`tls_session`, a TLS session in memory) go there too: those of its raw mode, which
//! are ciphertext, on a bare TCP connection even to the TLS server.
//!
//! `cargo test --test fuzz_corpus -- --ignored write_seeds` rewrites the generated seeds.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use common::net::{EVENTUALLY, bind, finish, wait_until};
use common::peers::{echo_server, peer, vote};
use common::tls::Security;
use common::wire::*;
use raftnet::fuzzing;
use raftnet::message::*;
use raftnet::wire::hashicorp::{GoRaftVersion, HashicorpCodecFactory};
use raftnet::wire::native::*;
use raftnet::wire::*;
use raftnet::{CallOptions, Config, NetTransport, Transport};

type Target = fn(&[u8]);

const TARGETS: [(&str, Target); 6] = [
    ("frame_decoder", fuzzing::frame_decoder),
    ("split_equivalence", fuzzing::split_equivalence),
    ("roundtrip", fuzzing::roundtrip),
    ("message_body", fuzzing::message_body),
    ("hashicorp_decoder", fuzzing::hashicorp_decoder),
    ("sniffing_decoder", fuzzing::sniffing_decoder),
];

/// The TLS target: a handshake per input, so fewer edge inputs than the others get.
const TLS_TARGET: (&str, Target) = ("tls_session", fuzzing::tls_session);

fn seeds_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

#[test]
fn replay_committed_seeds() {
    for (name, target) in TARGETS.into_iter().chain([TLS_TARGET]) {
        let inputs = files(&seeds_dir().join(name));
        assert!(inputs.len() >= 10, "{name}: only {} seeds", inputs.len());
        for path in inputs {
            let data = std::fs::read(&path).unwrap();
            target(&data);
        }
    }
}

/// A stream of every kind of frame, after a preamble.
fn sample_stream() -> Vec<u8> {
    let frames: Vec<Frame> = sample_messages()
        .into_iter()
        .enumerate()
        .map(|(i, (_, message))| Frame {
            request_id: i as u64,
            lane: Lane::Control,
            flags: if matches!(message, Message::SnapshotChunk(_)) {
                Flags::END_STREAM
            } else {
                Flags::NONE
            },
            message,
        })
        .collect();
    encode_stream(&FrameEncoder::new(), &frames)
}

fn sample_messages() -> Vec<(&'static str, Message)> {
    let h = RpcHeader {
        protocol_version: 3,
        id: Some(Bytes::from_static(b"n1")),
        addr: Some(Bytes::from_static(b"127.0.0.1:7000")),
    };
    let log = |i: u64, data: &'static [u8]| Log {
        extensions: Some(Bytes::from_static(b"ext")),
        appended_at: Timestamp {
            unix_seconds: 1_704_164_645,
            nanos: 6_000,
            utc_offset: Some(3600),
        },
        ..Log::command(i, 4, Bytes::from_static(data))
    };
    vec![
        (
            "heartbeat",
            AppendEntriesRequest {
                header: h.clone(),
                term: 10,
                leader: h.addr.clone(),
                ..Default::default()
            }
            .into(),
        ),
        (
            "append_entries",
            AppendEntriesRequest {
                header: h.clone(),
                term: 10,
                prev_log_entry: 100,
                prev_log_term: 4,
                leader_commit_index: 90,
                entries: vec![log(101, b"set x=1"), log(102, &[0u8; 40])],
                ..Default::default()
            }
            .into(),
        ),
        (
            "request_vote",
            RequestVoteRequest {
                header: h.clone(),
                term: 11,
                candidate: h.addr.clone(),
                last_log_index: 5,
                last_log_term: 2,
                leadership_transfer: true,
            }
            .into(),
        ),
        (
            "install_snapshot",
            InstallSnapshotRequest {
                header: h.clone(),
                snapshot_version: 1,
                term: 10,
                size: 1000,
                configuration: Some(Bytes::from_static(b"\x81\xa7Servers\x90")),
                ..Default::default()
            }
            .into(),
        ),
        (
            "timeout_now",
            TimeoutNowRequest { header: h.clone() }.into(),
        ),
        (
            "request_pre_vote",
            RequestPreVoteRequest {
                header: h.clone(),
                term: 11,
                last_log_index: 5,
                last_log_term: 2,
            }
            .into(),
        ),
        (
            "append_entries_response",
            AppendEntriesResponse {
                header: h.clone(),
                term: 10,
                last_log: 102,
                success: true,
                no_retry_backoff: true,
            }
            .into(),
        ),
        (
            "request_vote_response",
            RequestVoteResponse {
                header: h.clone(),
                term: 11,
                peers: Some(Bytes::new()),
                granted: true,
            }
            .into(),
        ),
        (
            "install_snapshot_response",
            InstallSnapshotResponse {
                header: h.clone(),
                term: 10,
                success: false,
            }
            .into(),
        ),
        (
            "timeout_now_response",
            TimeoutNowResponse { header: h.clone() }.into(),
        ),
        (
            "request_pre_vote_response",
            RequestPreVoteResponse {
                header: h,
                term: 11,
                granted: true,
            }
            .into(),
        ),
        (
            "snapshot_chunk",
            Message::SnapshotChunk(Bytes::from_static(b"0123456789")),
        ),
        ("error", Message::Error("unknown peer".into())),
    ]
}

#[test]
fn edge_inputs_through_every_target() {
    let stream = sample_stream();
    for (_, target) in TARGETS {
        for cfg in [0u8, 1, 2, 4, 8, 12] {
            for len in 0..=stream.len().min(200) {
                let mut input = vec![cfg, 3, 1, 7, 200];
                input.extend_from_slice(&stream[..len]);
                target(&input);
            }
            target(&[cfg; 64]);
            target(&[0xff; 300]);
            target(&[0x00; 300]);
        }
    }
}

/// The TLS target's configuration byte: `mode` in bits 0-1 (through, sealed whole or in pieces;
/// raw, before or after the handshake), the piece length's bits (`piece`) in bits 2-7.
fn tls_cfg(mode: TlsMode, piece: u8) -> u8 {
    piece << 2 | mode as u8
}

#[derive(Clone, Copy)]
enum TlsMode {
    Through = 0,
    Raw = 1,
    ThroughSealedInPieces = 2,
    RawAfterHandshake = 3,
}

/// Piece-length bits: 1 byte, 7 bytes, 613 bytes, all at once.
const TLS_PIECES: [u8; 4] = [0, 6, 32, 63];

#[test]
fn edge_inputs_through_the_tls_target() {
    let (_, target) = TLS_TARGET;
    let stream = sample_stream();
    let hello = client_hello();
    for mode in [
        TlsMode::Through,
        TlsMode::Raw,
        TlsMode::ThroughSealedInPieces,
        TlsMode::RawAfterHandshake,
    ] {
        for piece in TLS_PIECES {
            let cfg = tls_cfg(mode, piece);
            for bytes in [&stream[..], &hello[..]] {
                for len in (0..=bytes.len()).step_by(97).chain([bytes.len()]) {
                    target(&[&[cfg][..], &bytes[..len]].concat());
                }
            }
            for fill in [0x00, 0xff, 0x16, 0x17] {
                target(&[&[cfg][..], &[fill; 300]].concat());
            }
        }
    }
    target(&[]);
    // Not a seed: it would raise the fuzzer's input size limit to 64 KiB for every input.
    for piece in [TLS_PIECES[2], TLS_PIECES[3]] {
        target(
            &[
                &[tls_cfg(TlsMode::Raw, piece)][..],
                &fuzzing::oversized_tls_hello(),
            ]
            .concat(),
        );
    }
}

/// A client's first flight (its hello), as a rustls client of another CA writes it to server
/// `node-1` (the TLS target's).
fn client_hello() -> Vec<u8> {
    let config = common::tls::TestCa::new("seed CA").tls("node-2");
    let name = raftnet::tls::rustls::pki_types::ServerName::try_from("node-1").unwrap();
    let mut client =
        raftnet::tls::rustls::ClientConnection::new(config.client_config().clone(), name).unwrap();
    let mut hello = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut hello).unwrap();
    }
    hello
}

/// Writes the generated seeds. The fuzzers' own minimized finds live beside them.
#[test]
#[ignore]
fn write_seeds() {
    let stream = sample_stream();
    let without_preamble = &stream[PREAMBLE_LEN..];
    let mut streams: Vec<(String, Vec<u8>)> = vec![
        ("all_frames".into(), [&[0u8][..], &stream].concat()),
        (
            "all_frames_no_preamble".into(),
            [&[1u8][..], without_preamble].concat(),
        ),
        (
            "all_frames_small_max".into(),
            [&[3u8][..], without_preamble].concat(),
        ),
        (
            "all_frames_threshold0".into(),
            [&[4u8][..], &stream].concat(),
        ),
        (
            "http_get".into(),
            b"\x00GET / HTTP/1.1\r\nHost: a\r\n\r\n".to_vec(),
        ),
        ("other_version".into(), b"\x00RAFTNET\x02".to_vec()),
    ];
    for (name, message) in sample_messages() {
        let flags = if matches!(message, Message::SnapshotChunk(_)) {
            Flags::END_STREAM
        } else {
            Flags::NONE
        };
        let mut q = SendQueue::new();
        FrameEncoder::new()
            .encode(&mut q, 9, Lane::Control, flags, &message)
            .unwrap();
        streams.push((format!("one_{name}"), [&[1u8][..], &q.to_vec()].concat()));
    }
    let write = |target: &str, name: &str, data: &[u8]| {
        let dir = seeds_dir().join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
    };
    // tls_session: frames through a session (sealed whole or in pieces, opened in pieces of 1,
    // 7 or 613 bytes or whole); ciphertext for the server: a client's hello (it differs at every
    // writing: its random and key share), before and after the handshake, and records no
    // session sealed.
    let [one, seven, six_hundred_thirteen, whole] = TLS_PIECES;
    let http_get = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    let hello = client_hello();
    let mut record = vec![0x17, 0x03, 0x03, 0x00, 0x20];
    record.extend(0u8..0x20);
    let tls_seeds: [(&str, u8, &[u8]); 12] = [
        (
            "through_all_frames",
            tls_cfg(TlsMode::Through, whole),
            &stream,
        ),
        (
            "through_all_frames_by_1",
            tls_cfg(TlsMode::Through, one),
            &stream,
        ),
        (
            "through_all_frames_by_7",
            tls_cfg(TlsMode::Through, seven),
            &stream,
        ),
        (
            "through_all_frames_sealed_by_613",
            tls_cfg(TlsMode::ThroughSealedInPieces, six_hundred_thirteen),
            &stream,
        ),
        (
            "through_http_get",
            tls_cfg(TlsMode::Through, seven),
            http_get,
        ),
        ("raw_hello", tls_cfg(TlsMode::Raw, whole), &hello),
        ("raw_hello_by_1", tls_cfg(TlsMode::Raw, one), &hello),
        (
            "raw_hello_after",
            tls_cfg(TlsMode::RawAfterHandshake, whole),
            &hello,
        ),
        (
            "raw_close_notify",
            tls_cfg(TlsMode::Raw, whole),
            &[0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00],
        ),
        (
            "raw_record_after",
            tls_cfg(TlsMode::RawAfterHandshake, seven),
            &record,
        ),
        (
            "raw_oversized_record_after",
            tls_cfg(TlsMode::RawAfterHandshake, whole),
            &[0x17, 0x03, 0x03, 0xff, 0xff, 0x00],
        ),
        ("raw_http_get", tls_cfg(TlsMode::Raw, whole), http_get),
    ];
    for (name, cfg, bytes) in tls_seeds {
        write("tls_session", name, &[&[cfg][..], bytes].concat());
    }
    // sniffing_decoder: native streams from their preamble (its config byte has no bit 0)...
    for (name, data) in &streams {
        if data[0] & 1 == 0 {
            write("sniffing_decoder", &format!("native-{name}"), data);
        }
    }
    // ...and the hashicorp requests of hashicorp_decoder's seeds, whose config byte is alike.
    for path in files(&seeds_dir().join("hashicorp_decoder")) {
        let data = std::fs::read(&path).unwrap();
        if data.first().is_some_and(|cfg| cfg & 1 == 0) {
            let name = path.file_name().unwrap().to_string_lossy();
            write("sniffing_decoder", &format!("hashicorp-{name}"), &data);
        }
    }
    for (name, data) in &streams {
        write("frame_decoder", name, data);
        write("roundtrip", name, data);
        // split_equivalence: cfg, cut count, cut lengths, then the stream.
        let (cfg, rest) = data.split_first().unwrap();
        write(
            "split_equivalence",
            name,
            &[&[*cfg, 3, 0, 6, 40][..], rest].concat(),
        );
    }
    for (name, message) in sample_messages() {
        let mut q = SendQueue::new();
        let flags = if matches!(message, Message::SnapshotChunk(_)) {
            Flags::END_STREAM
        } else {
            Flags::NONE
        };
        FrameEncoder::new()
            .encode(&mut q, 9, Lane::Control, flags, &message)
            .unwrap();
        let bytes = q.to_vec();
        write(
            "message_body",
            name,
            &[&[bytes[4]][..], &bytes[HEADER_LEN..]].concat(),
        );
    }
}

// ---- the seeds against a live server ----------------------------------------------------------

/// What a live server reads of a seed: the bytes after its configuration byte, after a preamble
/// where the byte says the stream starts after one (bit 0, the native targets; for the TLS
/// target, bit 0 says the bytes are ciphertext: [`is_ciphertext`]).
fn as_stream(target: &str, seed: &[u8]) -> Vec<u8> {
    let Some((&cfg, rest)) = seed.split_first() else {
        return Vec::new();
    };
    if !matches!(target, "hashicorp_decoder" | "tls_session") && cfg & 1 != 0 {
        [&PREAMBLE[..], rest].concat()
    } else {
        rest.to_vec()
    }
}

/// Whether a seed is ciphertext for a server (the TLS target's raw mode), sent on a bare TCP
/// connection rather than inside a session.
fn is_ciphertext(target: &str, seed: &[u8]) -> bool {
    target == "tls_session" && seed.first().is_some_and(|cfg| cfg & 1 != 0)
}

/// raftnet's own format, or hashicorp's.
fn format(hashicorp: bool) -> Config {
    let config = Config::default().timeout(Some(EVENTUALLY));
    match hashicorp {
        true => config.codec(Arc::new(HashicorpCodecFactory::new(GoRaftVersion::Latest))),
        false => config,
    }
}

/// A server answering every RPC, in raftnet's own format or hashicorp's, over `security`.
fn live_server(security: &Security, hashicorp: bool) -> NetTransport {
    let server = bind(security.server(format(hashicorp)));
    echo_server(server.consumer().clone());
    server
}

/// Every committed seed, each on a connection of its own (inside a TLS session over TLS, but
/// for ciphertext) and followed by the end of the stream, to a live server (the hashicorp
/// target's to one that speaks hashicorp's format): the server answers or refuses each and
/// closes each connection, and afterwards it still serves a legitimate call, with no connection
/// left open.
fn seeds_against_a_live_server(security: Security) {
    let servers = [live_server(&security, false), live_server(&security, true)];
    let mut work: Vec<(SocketAddr, String, Vec<u8>, bool)> = Vec::new();
    for (name, _) in TARGETS.into_iter().chain([TLS_TARGET]) {
        let server = &servers[usize::from(name == "hashicorp_decoder")];
        for path in files(&seeds_dir().join(name)) {
            let seed = std::fs::read(&path).unwrap();
            let what = format!("{name}/{}", path.file_name().unwrap().to_string_lossy());
            let bare = is_ciphertext(name, &seed);
            work.push((server.bound_addr(), what, as_stream(name, &seed), bare));
        }
    }
    // Four peers at once: thousands of handshakes take a while one after another.
    const PEERS: usize = 4;
    std::thread::scope(|scope| {
        for peer in 0..PEERS {
            let (work, security) = (&work, &security);
            scope.spawn(move || {
                for (addr, what, bytes, bare) in work.iter().skip(peer).step_by(PEERS) {
                    let sender = if *bare { &Security::Plain } else { security };
                    sender.send_expecting_close(*addr, bytes, true, what);
                }
            });
        }
    });
    for (server, hashicorp) in servers.iter().zip([false, true]) {
        let client = bind(security.client(format(hashicorp)));
        let answer = finish(client.request_vote(
            &peer(),
            &server.local_addr(),
            vote(7),
            CallOptions::default(),
        ))
        .unwrap_or_else(|e| {
            panic!("a legitimate call after the seeds (hashicorp {hashicorp}): {e}")
        });
        assert_eq!((answer.term, answer.granted), (7, true));
        client.close();
        wait_until("every connection closed", || server.open_connections() == 0);
    }
    eprintln!("{} seeds sent{}", work.len(), security.suffix());
}

#[test]
fn every_seed_to_a_live_server() {
    seeds_against_a_live_server(Security::Plain);
}

#[test]
fn every_seed_inside_a_tls_session_to_a_live_tls_server() {
    seeds_against_a_live_server(Security::tls());
}
