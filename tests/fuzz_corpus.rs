//! Replays the committed fuzz seeds (fuzz/seeds/<target>/) through the fuzz entry points on
//! stable Rust, so every input the fuzzers were started from, and every crash they ever found
//! (saved there as a regression seed), stays a test. Also pushes edge inputs through the targets
//! (every prefix of a valid stream, all-0xff, all-zero). And sends every seed to a live server,
//! over plain TCP and inside TLS sessions (feature `tls`): each is answered or refused, every
//! connection is closed, and the server serves a legitimate call afterwards.
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
    for (name, target) in TARGETS {
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
/// where the byte says the stream starts after one (bit 0, the native targets).
fn as_stream(target: &str, seed: &[u8]) -> Vec<u8> {
    let Some((&cfg, rest)) = seed.split_first() else {
        return Vec::new();
    };
    if target != "hashicorp_decoder" && cfg & 1 != 0 {
        [&PREAMBLE[..], rest].concat()
    } else {
        rest.to_vec()
    }
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

/// Every committed seed, each on a connection of its own (inside a TLS session over TLS) and
/// followed by the end of the stream, to a live server (the hashicorp target's to one that
/// speaks hashicorp's format): the server answers or refuses each and closes each connection,
/// and afterwards it still serves a legitimate call, with no connection left open.
fn seeds_against_a_live_server(security: Security) {
    let servers = [live_server(&security, false), live_server(&security, true)];
    let mut work: Vec<(SocketAddr, String, Vec<u8>)> = Vec::new();
    for (name, _) in TARGETS {
        let server = &servers[usize::from(name == "hashicorp_decoder")];
        for path in files(&seeds_dir().join(name)) {
            let seed = std::fs::read(&path).unwrap();
            let what = format!("{name}/{}", path.file_name().unwrap().to_string_lossy());
            work.push((server.bound_addr(), what, as_stream(name, &seed)));
        }
    }
    // Four peers at once: thousands of handshakes take a while one after another.
    const PEERS: usize = 4;
    std::thread::scope(|scope| {
        for peer in 0..PEERS {
            let (work, security) = (&work, &security);
            scope.spawn(move || {
                for (addr, what, bytes) in work.iter().skip(peer).step_by(PEERS) {
                    security.send_expecting_close(*addr, bytes, true, what);
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
