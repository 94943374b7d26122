//! Case 4, snapshots: a second one on a connection before the first body ends (4a), more at
//! once than `max_inbound_snapshots` (4b), and a body that stops arriving (4c); and the
//! snapshot attackers the ignored finding in main.rs uses too. Their tests are in main.rs.

use std::io::Write;
use std::time::{Duration, Instant};

use raftnet::message::*;
use raftnet::wire::native::*;
use raftnet::*;

use crate::attack::*;
use crate::bounds::*;
use crate::common::child::*;
use crate::common::legit::*;
use crate::common::net::*;
use crate::common::tls::{RawPeer, Security};
use crate::raw::*;

// ---- 4. snapshots ------------------------------------------------------------------------------

/// One connection starts a snapshot and, before its body ends, others (new ids, then the same
/// id again on a second connection): a protocol error; the first snapshot's reader ends with an
/// error, not a hang; no second reader is handed over.
pub(crate) fn snapshots_on_one_connection(vm_limit: Option<u64>, security: Security) -> Outcome {
    let (tls_held, tls_why) = tls_connections(&security, 1);
    let mut a = Attack::begin_with(
        "4a. one connection, a second snapshot before the first body ends",
        ServerSpec::default(),
        LegitKind::Vote,
        LEGIT_TIMEOUT,
        vm_limit,
        security,
    );
    let bound = Bound {
        held: tls_held,
        why: format!("nothing held{tls_why}"),
        address_space: false,
    };
    let part = vec![7u8; 100];
    // Many snapshots, new ids: InstallSnapshot 1 (term 101) and part of its body, then 2, 3, ...
    let mut many = PREAMBLE.to_vec();
    for id in 1..=50u64 {
        many.extend(snapshot_request(id, 100 + id, 1000));
        many.extend(chunk(id, &part, false));
    }
    // The same id twice: InstallSnapshot 7 (term 201) and part of its body, then 7 again.
    let duplicate = [
        PREAMBLE.to_vec(),
        snapshot_request(7, 201, 1000),
        chunk(7, &part, false),
        snapshot_request(7, 202, 1000),
        chunk(7, &part, false),
    ]
    .concat();
    let mut endings = Vec::new();
    for (bytes, first, second) in [(many, 101, 102), (duplicate, 201, 202)] {
        let errors = a.metrics().get("protocol_errors");
        let mut s = a.connect();
        let _ = s.write_all(&bytes).and_then(|()| s.flush());
        let (_, closed) = read_answers(&mut s, EVENTUALLY);
        assert!(closed, "term {first}: the server closed the connection");
        let ended = a
            .server
            .wait_line(&format!("the reader of snapshot {first} ends"), |l| {
                l.starts_with(&format!("snapshot term={first} "))
            });
        assert!(
            ended.contains(" err "),
            "snapshot {first}'s reader ended with an error: {ended}"
        );
        endings.push(ended);
        let m = a.metrics();
        assert_eq!(m.get("protocol_errors"), errors + 1, "one protocol error");
        assert_eq!(m.get("held"), 0);
        assert!(
            a.server
                .lines_matching(|l| l.starts_with(&format!("snapshot term={second} ")))
                .is_empty(),
            "no reader for the second snapshot"
        );
    }
    let logged = a.server.lines_matching(|l| {
        l.starts_with("log ")
            && l.contains(
                "an InstallSnapshot arrived before the previous snapshot's body on the connection ended",
            )
    });
    assert_eq!(logged.len(), 2, "each named in the log: {logged:?}");
    a.legit_served_during();
    let stopped = Instant::now();
    a.end(
        stopped,
        "50 InstallSnapshots each before the previous body ended; the same id twice".into(),
        &bound,
        format!("protocol_errors=2; the first snapshots' readers ended: {endings:?}"),
    )
}

/// A snapshot attacker's end: its socket, the body bytes it wrote, what the server answered,
/// and whether the server closed the connection.
pub(crate) struct SnapshotAttacker {
    pub(crate) stream: RawPeer,
    pub(crate) sent: u64,
    pub(crate) answers: Vec<Frame>,
    pub(crate) closed: bool,
}

/// `n` connections (the attack's, plain or TLS) each start a 64 MiB snapshot (terms 1000 and
/// on) and write its body in 256 KiB chunks (raftnet's own chunk size) until the server stops
/// reading (a write blocks for 1 s) or closes; then read what the server answers within 2 s.
pub(crate) fn snapshot_attackers(a: &Attack, n: u64) -> Vec<SnapshotAttacker> {
    const SIZE: u64 = 64 << 20;
    const CHUNK: usize = DEFAULT_SNAPSHOT_CHUNK;
    let body = chunk(1, &vec![5u8; CHUNK], false);
    let attackers: Vec<_> = (0..n)
        .map(|i| {
            let body = body.clone();
            let mut stream = a.connect();
            std::thread::spawn(move || {
                stream
                    .socket()
                    .set_write_timeout(Some(Duration::from_secs(1)))
                    .expect("write timeout");
                let start = [PREAMBLE.to_vec(), snapshot_request(1, 1000 + i, SIZE)].concat();
                let mut sent = 0u64;
                if stream.write_all(&start).is_ok() {
                    while sent < SIZE && stream.write_all(&body).is_ok() {
                        sent += CHUNK as u64;
                    }
                }
                let (answers, closed) = read_answers(&mut stream, Duration::from_secs(2));
                SnapshotAttacker {
                    stream,
                    sent,
                    answers,
                    closed,
                }
            })
        })
        .collect();
    attackers
        .into_iter()
        .map(|t| t.join().expect("an attacker"))
        .collect()
}

/// What `max_inbound_snapshots` snapshots that nobody reads hold in the server (KiB): each
/// buffers `snapshot_buffer` (4 MiB) of chunks before its connection pauses, and one read more.
/// The resident memory is twice the bytes (a finding: a 256 KiB chunk keeps alive the whole
/// read buffer it was cut from, about 512 KiB; see
/// `finding_snapshot_buffers_hold_twice_the_bytes_they_count`), so the bound is twice the
/// buffers. Measured +29 to +34 MiB for 4 snapshots, with 4 or 20 attackers; +159 MiB with
/// the cap at usize::MAX (all 20 taken).
/// Over TLS, each of the `connections` attacking holds a TLS connection's buffers too.
pub(crate) fn held_snapshots_bound(security: &Security, connections: u64) -> Bound {
    let cap = MAX_INBOUND_SNAPSHOTS;
    let buffer = SNAPSHOT_BUFFER;
    let (tls_held, tls_why) = tls_connections(security, connections);
    Bound {
        held: cap * (2 * buffer + ONE_READ) + tls_held,
        why: format!("{cap} snapshots × (2 × the 4 MiB snapshot_buffer + one read){tls_why}"),
        address_space: false,
    }
}

/// 20 connections each start a 64 MiB snapshot and send its body as fast as they can, to a Raft
/// side that reads none of them. `max_inbound_snapshots` (4) are taken, each buffering up to
/// `snapshot_buffer` (4 MiB) before its connection pauses; the other 16 get an error answer and
/// are closed. Without the cap all 20 are taken (+159 MiB).
pub(crate) fn many_snapshots(vm_limit: Option<u64>, security: Security) -> Outcome {
    const ATTACKERS: u64 = 20;
    let cap = MAX_INBOUND_SNAPSHOTS;
    let bound = held_snapshots_bound(&security, ATTACKERS);
    let mut a = Attack::begin_with(
        "4b. 20 connections each starting a 64 MiB snapshot, none read",
        ServerSpec {
            hold_snapshots: true,
            ..Default::default()
        },
        LegitKind::Vote,
        LEGIT_TIMEOUT,
        vm_limit,
        security,
    );
    let results = snapshot_attackers(&a, ATTACKERS);
    a.check_memory(&bound);
    let refused: Vec<&SnapshotAttacker> = results.iter().filter(|r| r.closed).collect();
    let m = a.metrics();
    assert_eq!(m.get("snapshots_refused"), ATTACKERS - cap, "{m:?}");
    assert_eq!(m.get("held"), cap, "the Raft side holds {cap} snapshots");
    assert_eq!(
        refused.len() as u64,
        ATTACKERS - cap,
        "the refused are closed"
    );
    for r in &refused {
        let text = match r.answers.first().map(|f| &f.message) {
            Some(Message::Error(text)) => text,
            other => panic!("a refused snapshot is answered with an error, not {other:?}"),
        };
        assert!(
            text.contains("snapshots are being received already"),
            "{text}"
        );
    }
    a.legit_served_during();
    a.check_memory(&bound);
    let taken: u64 = results.iter().filter(|r| !r.closed).map(|r| r.sent).sum();
    let notes = format!(
        "snapshots_refused={}, each answered with an error; the {cap} taken had {} MiB written \
         to them (the server's buffers and the kernel's) when their writes blocked",
        m.get("snapshots_refused"),
        taken >> 20
    );
    a.server.command("release");
    a.server
        .wait_line("released", |l| l.starts_with("released "));
    drop(results.into_iter().map(|r| r.stream).collect::<Vec<_>>());
    let stopped = Instant::now();
    a.end(
        stopped,
        format!("{ATTACKERS} × (InstallSnapshot of 64 MiB + its body until the writes block)"),
        &bound,
        notes,
    )
}

/// A snapshot body that stops arriving while its connection stays open: after the timeout (1 s
/// here) the connection is closed as a slow peer and the reader ends with an error.
pub(crate) fn stalled_snapshot(vm_limit: Option<u64>, security: Security) -> Outcome {
    let (tls_held, tls_why) = tls_connections(&security, 1);
    let mut a = Attack::begin_with(
        "4c. a snapshot body that stops arriving, its connection open",
        ServerSpec {
            timeout_ms: SHORT_TIMEOUT_MS,
            ..Default::default()
        },
        LegitKind::Vote,
        LEGIT_TIMEOUT,
        vm_limit,
        security,
    );
    let bound = Bound {
        held: tls_held,
        why: format!("nothing held{tls_why}"),
        address_space: false,
    };
    let mut s = a.connect();
    let bytes = [
        PREAMBLE.to_vec(),
        snapshot_request(1, 301, 1000),
        chunk(1, &[9u8; 100], false),
    ]
    .concat();
    // Before the write: over TLS the write completes the handshake first, and the server may
    // read the bytes within the turn that finished it, its progress dated at that turn's start.
    let sent = Instant::now();
    s.write_all(&bytes).expect("send");
    s.flush().expect("send");
    let ended = a
        .server
        .wait_line("the stalled snapshot's reader ends", |l| {
            l.starts_with("snapshot term=301 ")
        });
    let after = sent.elapsed();
    assert!(
        ended.contains(" err "),
        "the reader ends with an error: {ended}"
    );
    assert!(
        after >= Duration::from_millis(SHORT_TIMEOUT_MS),
        "the reader failed {after:?} after the last bytes, before the timeout"
    );
    let (_, closed) = read_answers(&mut s, EVENTUALLY);
    assert!(closed, "the server closed the connection");
    let m = a.metrics();
    assert_eq!(m.get("slow_peers_closed"), 1);
    let logged = a
        .server
        .lines_matching(|l| l.contains("its snapshot body stalled"));
    assert_eq!(logged.len(), 1, "{logged:?}");
    a.legit_served_during();
    drop(s);
    let stopped = Instant::now();
    a.end(
        stopped,
        "InstallSnapshot of 1000 bytes, 100 of them, then nothing".into(),
        &bound,
        format!("slow_peers_closed=1; the reader ended after {after:?}: {ended}"),
    )
}
