//! Cases 6 and 7, what the server decodes: an AppendEntries of millions of tiny entries
//! refused before decoding (6) and its control, one legal entry of 64 MiB (6c, report only);
//! and a response sent where a request belongs, named in the log (7). Their tests are in
//! main.rs.

use std::io::Write;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use raftnet::message::*;
use raftnet::wire::native::*;
use raftnet::wire::*;

use crate::attack::*;
use crate::bounds::*;
use crate::common::child::*;
use crate::common::legit::*;
use crate::common::net::*;
use crate::common::peers::append;
use crate::common::tls::Security;
use crate::common::wire::frame_header;
use crate::raw::*;

// ---- 6. decoding bounded -----------------------------------------------------------------------

/// The body of an AppendEntries of `n` entries of 9 bytes (the smallest a log entry encodes
/// in: an array marker and eight zero fields), written without building `n` entries.
pub(crate) fn tiny_entries_body(n: u32) -> Vec<u8> {
    let entries = |k: usize| {
        request(
            0,
            Lane::Control,
            AppendEntriesRequest {
                entries: vec![
                    Log {
                        appended_at: Timestamp {
                            unix_seconds: 0,
                            nanos: 0,
                            utc_offset: None,
                        },
                        ..Default::default()
                    };
                    k
                ],
                ..Default::default()
            },
        )
    };
    let (two, three) = (entries(2), entries(3));
    assert_eq!(three.len() - two.len(), 9, "an entry of nine bytes");
    let body = &two[HEADER_LEN..];
    let entry = &body[body.len() - 9..];
    assert_eq!(body[body.len() - 19], 0x92, "a fixarray of two entries");
    let prefix = &body[..body.len() - 19];
    let mut out = Vec::with_capacity(prefix.len() + 5 + 9 * n as usize);
    out.extend_from_slice(prefix);
    out.push(0xdd); // array 32
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(&entry.repeat(n as usize));
    out
}

/// One legal frame of the maximum size made of the smallest entries: 64 MiB of 9-byte entries,
/// 7.5 million of them. Before `max_entries_per_request` the server decoded them (860 MiB and a
/// 0.7 to 1.8 s stall of its driver); now the count is refused before any entry is decoded. The
/// frame itself is received in full first: memory for its 64 MiB, grown by doubling.
pub(crate) fn millions_of_tiny_entries(vm_limit: Option<u64>, security: Security) -> Outcome {
    let max_body = DEFAULT_MAX_BODY_LEN as usize;
    let n = ((max_body - 64) / 9) as u32;
    let body = tiny_entries_body(n);
    assert!(body.len() <= max_body);
    let (tls_held, tls_why) = tls_connections(&security, 1);
    let mut a = Attack::begin_with(
        "6. one 64 MiB AppendEntries of 7.5 million 9-byte entries",
        ServerSpec::default(),
        LegitKind::Heartbeat,
        LEGIT_TIMEOUT,
        vm_limit,
        security,
    );
    // The frame's 64 MiB, in a buffer that doubles as it fills: while it grows from 32 to
    // 64 MiB both may be held, so twice the frame. Measured +64 MiB (the allocator grew the
    // buffer in place); 860 MiB of decoded entries before the limit.
    let bound = Bound {
        held: 2 * 64 * MIB + tls_held,
        why: format!("a 64 MiB frame buffer, twice while it doubles{tls_why}"),
        address_space: false,
    };
    let frame = [
        PREAMBLE.to_vec(),
        frame_header(
            body.len() as u32,
            MessageType::AppendEntries as u8,
            0,
            Lane::Control as u8,
            0,
            1,
        ),
        body,
    ]
    .concat();
    // Again and again on new connections, until the legitimate peer's heartbeats have been
    // measured during it (at least twice, at most 20 times).
    let during = Instant::now();
    let mut frames = 0;
    let mut errors = a.metrics().get("protocol_errors");
    while frames < 2 || (a.legit.answered_since(during) < ATTACK_CALLS && frames < 20) {
        let mut s = a.connect();
        let _ = s.write_all(&frame).and_then(|()| s.flush());
        // Until the server closes the connection, its memory watched meanwhile.
        let deadline = Instant::now() + EVENTUALLY;
        while !read_answers(&mut s, Duration::from_millis(100)).1 {
            a.check_memory(&bound);
            assert!(
                Instant::now() < deadline,
                "the server did not close the connection within {EVENTUALLY:?}"
            );
        }
        frames += 1;
        let m = a.metrics();
        assert_eq!(m.get("protocol_errors"), errors + 1, "one protocol error");
        errors += 1;
        assert_eq!(m.get("held"), 0);
        a.check_memory(&bound);
    }
    let stopped = Instant::now();
    let expected = format!(
        "AppendEntries declares {n} entries, more than the maximum of {MAX_ENTRIES_PER_REQUEST}"
    );
    let logged = a.server.lines_matching(|l| l.contains(&expected));
    assert_eq!(logged.len(), frames, "each named in the log: {expected}");
    a.legit_served_during();
    a.end(
        stopped,
        format!("{frames} × one frame: {n} entries of 9 bytes (64 MiB)"),
        &bound,
        format!("protocol_errors={frames}, each \"{expected}\""),
    )
}

/// The control for case 6's latency (report only): the same 64 MiB, legal and taken, as one
/// AppendEntries of one 64 MiB entry on one connection, answered by the Raft side. What the
/// legitimate peer's heartbeats pay here is the cost of receiving a frame of the maximum size,
/// which case 6 pays too before the entry count is read.
pub(crate) fn one_large_entry(vm_limit: Option<u64>) -> Outcome {
    let mut a = Attack::begin(
        "6c. control: one legal 64 MiB AppendEntries of one entry",
        ServerSpec::default(),
        LegitKind::Heartbeat,
        LEGIT_TIMEOUT,
        vm_limit,
    );
    // As case 6: the frame's buffer, twice while it doubles (the entry is a slice of it).
    let bound = Bound {
        held: 2 * 64 * MIB,
        why: "a 64 MiB frame buffer, twice while it doubles".into(),
        address_space: false,
    };
    let payload = DEFAULT_MAX_BODY_LEN as usize - 1024;
    let template = request(0, Lane::Control, append(1, 1, payload));
    let mut s = a.connect();
    s.write_all(&PREAMBLE).expect("preamble");
    let (mut decoder, mut received) = (FrameDecoder::new(), BytesMut::new());
    let during = Instant::now();
    let mut frames = 0u64;
    let mut one = Vec::with_capacity(template.len());
    while frames < 2 || (a.legit.answered_since(during) < ATTACK_CALLS && frames < 20) {
        frames += 1;
        one.clear();
        with_id(&template, frames, &mut one);
        s.write_all(&one).expect("send");
        match next_answer(&mut s, &mut decoder, &mut received) {
            Some(f) => assert!(
                matches!(f.message, Message::Response(Response::AppendEntries(_))),
                "answered: {:?}",
                f.message
            ),
            None => panic!("the server closed the connection"),
        }
        a.check_memory(&bound);
    }
    let stopped = Instant::now();
    drop(s);
    a.legit_served_during();
    let errors = a.metrics().get("protocol_errors");
    a.end(
        stopped,
        format!("{frames} × one frame: one entry of {} MiB", payload >> 20),
        &bound,
        format!("each answered; protocol_errors={errors}"),
    )
}

// ---- 7. error texts ----------------------------------------------------------------------------

/// A response sent where a request belongs: the server's log names the message it received,
/// not a msgpack marker.
pub(crate) fn response_to_the_serving_side(vm_limit: Option<u64>) -> Outcome {
    let mut a = Attack::begin(
        "7. a response sent where a request belongs",
        ServerSpec::default(),
        LegitKind::Vote,
        LEGIT_TIMEOUT,
        vm_limit,
    );
    let bound = Bound {
        held: 0,
        why: "nothing held".into(),
        address_space: false,
    };
    let mut s = a.connect();
    let port = s.socket().local_addr().expect("local address").port();
    let response = Message::Response(RequestVoteResponse::default().into());
    let _ = s.write_all(
        &[
            PREAMBLE.to_vec(),
            frame(3, Lane::Control, Flags::NONE, &response),
        ]
        .concat(),
    );
    let (_, closed) = read_answers(&mut s, EVENTUALLY);
    assert!(closed, "the server closed the connection");
    let m = a.metrics();
    assert_eq!(m.get("protocol_errors"), 1);
    let logged = a
        .server
        .lines_matching(|l| l.contains(&format!("127.0.0.1:{port}")));
    assert_eq!(logged.len(), 1, "one line about the connection: {logged:?}");
    assert!(
        logged[0].contains(
            "expected a request on a serving connection, received a RequestVoteResponse message"
        ) && !logged[0].contains("marker"),
        "the log names the message: {}",
        logged[0]
    );
    a.legit_served_during();
    let stopped = Instant::now();
    a.end(
        stopped,
        "a RequestVoteResponse frame after the preamble".into(),
        &bound,
        format!("logged: {}", logged[0]),
    )
}
