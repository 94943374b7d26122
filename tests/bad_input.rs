//! Bad input from a peer closes that peer's connection only: the server counts a protocol
//! error and hangs up, while a healthy client's calls on another connection keep succeeding.
//! Each test runs twice: over plain TCP, and over mutual TLS (feature `tls`), where the same
//! bytes travel inside a TLS session of a peer the server's CA vouches for
//! (`common::tls::Security`).

mod common;

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::bodies::*;
use common::net::*;
use common::peers::*;
use common::tls::Security;
use common::wire::{encode_frame, frame_header};
use raftnet::message::*;
use raftnet::wire::native::*;
use raftnet::wire::*;
use raftnet::*;

const MAX_BODY: u32 = 1 << 20;
/// A valid preamble followed by `rest`.
fn after_preamble(rest: &[u8]) -> Vec<u8> {
    let mut v = PREAMBLE.to_vec();
    v.extend_from_slice(rest);
    v
}

#[test]
fn bad_input_closes_only_the_offending_connection() {
    bad_input_closes_only_the_offending_connection_with(Security::Plain);
}

#[test]
fn bad_input_inside_a_tls_session_closes_only_that_session() {
    bad_input_closes_only_the_offending_connection_with(Security::tls());
}

fn bad_input_closes_only_the_offending_connection_with(security: Security) {
    let server = bind(
        security.server(
            Config::default()
                .timeout(Some(Duration::from_secs(30)))
                .max_frame_body(MAX_BODY),
        ),
    );
    let answerer = echo_server(server.consumer().clone());
    let client = Arc::new(bind(
        security.client(Config::default().timeout(Some(Duration::from_secs(30)))),
    ));
    let target = server.local_addr();

    // The healthy client: one call after another, all on one pooled connection.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let healthy = {
        let (client, target, stop, ok) = (client.clone(), target.clone(), stop.clone(), ok.clone());
        std::thread::spawn(move || {
            let mut term = 0;
            let mut failures = Vec::new();
            while !stop.load(Ordering::SeqCst) {
                term += 1;
                match client
                    .request_vote(&peer(), &target, vote(term), CallOptions::default())
                    .wait()
                {
                    Ok(r) if r.term == term && r.granted => {
                        ok.fetch_add(1, Ordering::SeqCst);
                    }
                    other => failures.push(format!("vote {term}: {other:?}")),
                }
            }
            failures
        })
    };
    wait_until("the healthy client's first answers", || {
        ok.load(Ordering::SeqCst) >= 10
    });

    let vote_frame = encode_frame(7, &Message::Request(vote(7).into()));
    let vote_body = &vote_frame[HEADER_LEN..];
    let mut cases: Vec<(&str, Vec<u8>, bool)> = vec![
        (
            "an HTTP request",
            b"GET / HTTP/1.1\r\nHost: raft\r\nUser-Agent: curl/8\r\n\r\n".to_vec(),
            false,
        ),
        (
            "another wire version",
            b"RAFTNET\x02"
                .iter()
                .copied()
                .chain(vote_frame.clone())
                .collect(),
            false,
        ),
        (
            "a frame of an unknown type",
            after_preamble(&frame_header(0, 0x42, 0, 0, 0, 1)),
            false,
        ),
        (
            "a header declaring a body over max_frame_body",
            after_preamble(&frame_header(MAX_BODY + 1, 0x01, 0, 0, 0, 1)),
            false,
        ),
        (
            "a header declaring a 4 GiB body",
            after_preamble(&frame_header(u32::MAX, 0x00, 0, 0, 0, 1)),
            false,
        ),
        (
            "a truncated msgpack body",
            after_preamble(&[frame_header(5, 0x01, 0, 0, 0, 1), vote_body[..5].to_vec()].concat()),
            false,
        ),
        (
            "an unknown lane",
            after_preamble(&frame_header(0, 0x03, 0, 9, 0, 1)),
            false,
        ),
        (
            "a non-zero reserved byte",
            after_preamble(&frame_header(0, 0x03, 0, 0, 1, 1)),
            false,
        ),
        (
            "a flag a request may not carry",
            after_preamble(&frame_header(0, 0x03, 0x01, 0, 0, 1)),
            false,
        ),
        (
            "a response sent to the serving side",
            after_preamble(&encode_frame(
                3,
                &Message::Response(RequestVoteResponse::default().into()),
            )),
            false,
        ),
        (
            "a snapshot chunk for no snapshot",
            after_preamble(&{
                let mut out = SendQueue::new();
                FrameEncoder::new()
                    .encode(
                        &mut out,
                        5,
                        Lane::Snapshot,
                        Flags::END_STREAM,
                        &Message::SnapshotChunk(bytes::Bytes::from_static(b"abc")),
                    )
                    .unwrap();
                out.to_vec()
            }),
            false,
        ),
    ];
    // Garbage: deterministic pseudo-random bytes, before and after a valid preamble.
    let garbage: Vec<u8> = (0..256u64).map(pattern_byte).collect();
    cases.push(("garbage", garbage.clone(), false));
    cases.push((
        "garbage after the preamble",
        after_preamble(&garbage),
        false,
    ));
    // A good request first, then garbage on the same connection.
    cases.push((
        "garbage after a valid request",
        after_preamble(&[vote_frame.clone(), garbage.clone()].concat()),
        false,
    ));

    let addr = server.bound_addr();
    for (what, bytes, eof) in &cases {
        let errors_before = server.metrics().protocol_errors;
        let ok_before = ok.load(Ordering::SeqCst);
        let got = security.send_expecting_close(addr, bytes, *eof, what);
        // Whatever the server sent starts with its preamble.
        assert!(
            got.is_empty() || got.starts_with(&PREAMBLE[..got.len().min(PREAMBLE.len())]),
            "{what}: the server sent {got:?}"
        );
        wait_until(&format!("{what}: a protocol error"), || {
            server.metrics().protocol_errors > errors_before
        });
        assert_eq!(
            server.metrics().protocol_errors,
            errors_before + 1,
            "{what}: exactly one protocol error"
        );
        wait_until(
            &format!("{what}: the healthy client to keep being answered"),
            || ok.load(Ordering::SeqCst) >= ok_before + 3,
        );
        eprintln!(
            "{what}: closed, counted; healthy client at {} calls",
            ok.load(Ordering::SeqCst)
        );
    }

    stop.store(true, Ordering::SeqCst);
    let failures = healthy.join().unwrap();
    assert!(failures.is_empty(), "healthy calls failed: {failures:?}");
    let m = client.metrics();
    assert_eq!(m.dials, 1, "the healthy client kept its one connection");
    assert_eq!(m.protocol_errors, 0);
    assert_eq!(server.metrics().protocol_errors, cases.len() as u64);
    // Only the healthy client's connection is left on the server.
    wait_until("the server to drop every bad connection", || {
        server.open_connections() == 1
    });
    client.close();
    drop(server);
    answerer.join().unwrap();
}

/// A peer that connects and says nothing, or hangs up cleanly between frames, is not a
/// protocol error.
#[test]
fn clean_hang_ups_are_not_protocol_errors() {
    clean_hang_ups_are_not_protocol_errors_with(Security::Plain);
}

/// Over TLS: a peer that hangs up before its handshake, or after an answer without
/// close_notify, is not one either.
#[test]
fn clean_hang_ups_of_tls_peers_are_not_protocol_errors() {
    clean_hang_ups_are_not_protocol_errors_with(Security::tls());
}

fn clean_hang_ups_are_not_protocol_errors_with(security: Security) {
    let server = bind(security.server(Config::default().timeout(Some(Duration::from_secs(30)))));
    let answerer = echo_server(server.consumer().clone());
    let addr = server.bound_addr();
    // Connect, send nothing, hang up.
    drop(security.connect(addr));
    // Preamble, one complete request, hang up after its answer.
    let mut s = security.connect(addr);
    s.socket().set_read_timeout(Some(EVENTUALLY)).unwrap();
    s.write_all(&after_preamble(&encode_frame(
        1,
        &Message::Request(vote(1).into()),
    )))
    .unwrap();
    let mut decoder = FrameDecoder::new();
    let mut buf = bytes::BytesMut::new();
    let answer = loop {
        if let Some(f) = decoder.decode(&mut buf).unwrap() {
            break f;
        }
        let mut chunk = [0u8; 1024];
        let n = s.read(&mut chunk).unwrap();
        assert!(n > 0);
        buf.extend_from_slice(&chunk[..n]);
    };
    assert_eq!(answer.request_id, 1);
    drop(s);
    wait_until("both connections to be closed", || {
        server.metrics().accepted == 2 && server.open_connections() == 0
    });
    assert_eq!(server.metrics().protocol_errors, 0);
    drop(server);
    answerer.join().unwrap();
}

/// A peer that sends part of a frame and then closes its sending half: the server must notice
/// the end of the stream, count a protocol error (the stream ended inside a frame) and close.
/// The bytes and the FIN usually arrive together, in one readiness edge.
#[test]
fn partial_frame_then_half_close_is_noticed() {
    partial_frame_then_half_close_is_noticed_with(Security::Plain);
}

/// Over TLS: the part of a frame, then close_notify and the FIN.
#[test]
fn partial_frame_then_close_notify_is_noticed() {
    partial_frame_then_half_close_is_noticed_with(Security::tls());
}

fn partial_frame_then_half_close_is_noticed_with(security: Security) {
    let server = bind(security.server(Config::default().timeout(Some(Duration::from_secs(30)))));
    let answerer = echo_server(server.consumer().clone());
    let vote_frame = encode_frame(7, &Message::Request(vote(7).into()));
    for attempt in 0..5 {
        let errors_before = server.metrics().protocol_errors;
        security.send_expecting_close(
            server.bound_addr(),
            &after_preamble(&vote_frame[..vote_frame.len() - 3]),
            true,
            &format!("attempt {attempt}: a stream that ends inside a frame body"),
        );
        wait_until("a protocol error", || {
            server.metrics().protocol_errors > errors_before
        });
    }
    drop(server);
    answerer.join().unwrap();
}

/// A peer that sends a whole request and closes its sending half at once: the server answers
/// or not, but it notices the end of the stream and closes the connection (hashicorp's
/// handler returns on EOF and closes).
#[test]
fn request_then_half_close_is_noticed() {
    request_then_half_close_is_noticed_with(Security::Plain);
}

/// Over TLS: a request, then close_notify and the FIN.
#[test]
fn request_then_close_notify_is_noticed() {
    request_then_half_close_is_noticed_with(Security::tls());
}

fn request_then_half_close_is_noticed_with(security: Security) {
    let server = bind(security.server(Config::default().timeout(Some(Duration::from_secs(30)))));
    let answerer = echo_server(server.consumer().clone());
    let vote_frame = encode_frame(7, &Message::Request(vote(7).into()));
    for attempt in 0..5 {
        security.send_expecting_close(
            server.bound_addr(),
            &after_preamble(&vote_frame),
            true,
            &format!("attempt {attempt}: a request, then a half-close"),
        );
    }
    wait_until("the server to close every connection", || {
        server.open_connections() == 0
    });
    assert_eq!(server.metrics().protocol_errors, 0);
    drop(server);
    answerer.join().unwrap();
}
