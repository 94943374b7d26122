//! Greedy, buggy and hostile peers against a real transport over sockets (issue 10): each attack
//! of the issue, the bound the engine's limits (`src/engine/limits.rs`) hold it to, and a
//! legitimate peer whose calls keep succeeding meanwhile. Cases 1 to 6 (all but the control
//! 6c and case 7) also run over mutual TLS (`common::tls::Security`): the server child serves
//! TLS, and the attackers write the same bytes inside TLS sessions of certificates its CA
//! signed, held to the same bounds plus what each TLS connection holds
//! ([`TLS_CONNECTION`](bounds::TLS_CONNECTION)). Over TLS the slowloris peers (5b) complete
//! their handshakes and then dribble a frame (a handshake that stalls is tested in tests/tls.rs:
//! `an_accepted_connection_whose_handshake_stalls_is_closed`). The `ulimit -v` runs are plain
//! only.
//!
//! The attacked server runs in a child process (this binary re-run, `common::child`), so that
//! its memory is its own: tests in one binary are threads of one process. The parent reads the
//! child's `VmRSS`, `VmHWM` and `VmSize` from `/proc/<pid>/status` before, during (every 2 ms,
//! and `VmHWM` reset at the start) and after each attack. The attackers are raw sockets in the
//! parent; the legitimate peer is a raftnet client in the parent (`common::legit`) calling one
//! call after another, its latencies recorded while idle and during the attack.
//!
//! Each case is a function returning an [`Outcome`](attack::Outcome); a test runs it and
//! asserts within it, the memory cases run again under `ulimit -v`
//! (`under_an_address_space_limit_*`), and the ignored `report` runs them all one after another
//! and prints the table RELIABILITY.md shows:
//!
//! ```text
//! cargo test --release --test greedy_peers -- --ignored --nocapture report
//! ```
//!
//! No assertion is on timing: latencies are reported, not asserted (a loaded 2-core machine
//! stretches them). What is asserted: memory within the bound plus
//! [`RSS_SLACK`](bounds::RSS_SLACK), the limit's metric, the answers or closes the attacker
//! sees, and every legitimate call answered within its call timeout. Deadlines the server must
//! enforce use a 1 s `Config::timeout`, and a closed connection is checked for no earlier than
//! that (a lower bound no load can break).
//!
//! The files: this one holds every test (each case's plain and TLS runs, the runs under
//! `ulimit -v`, the bounds found missing, the findings and the report); the cases they run are
//! in [`requests`] (1 to 3), [`snapshots`] (4), [`connections`] (5) and [`decoding`] (6 and
//! 7), measured with [`attack`] against the limits of [`bounds`], by the raw peers of [`raw`].

#[path = "../common/mod.rs"]
mod common;

mod attack;
mod bounds;
mod connections;
mod decoding;
mod raw;
mod requests;
mod snapshots;

use std::io::{Read, Write};
use std::net::Shutdown;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use common::child::*;
use common::legit::*;
use common::measure::profile;
use common::net::*;
use common::peers::vote;
use common::tls::Security;
use raftnet::wire::native::*;
use raftnet::wire::*;
use raftnet::*;

use attack::*;
use bounds::*;
use connections::*;
use decoding::*;
use raw::*;
use requests::*;
use snapshots::*;

/// The child's role: a no-op unless this binary was re-run as a server child.
#[test]
fn server_child() {
    serve_if_child();
}

// ---- 1 to 3: requests (requests.rs) ------------------------------------------------------------

#[test]
fn headers_declaring_64_mib_reserve_only_what_arrives() {
    headers_declaring_64_mib(None, Security::Plain);
}

#[test]
fn headers_declaring_64_mib_inside_tls_sessions_reserve_only_what_arrives() {
    headers_declaring_64_mib(None, Security::tls());
}

#[test]
fn a_peer_that_does_not_read_its_answers_stops_being_read() {
    unread_answers(None, Security::Plain);
}

#[test]
fn a_tls_peer_that_does_not_read_its_answers_stops_being_read() {
    unread_answers(None, Security::tls());
}

#[test]
fn a_flood_to_a_slow_raft_side_leaves_room_for_other_peers() {
    flood_to_a_slow_raft_side(None, Security::Plain);
}

#[test]
fn a_tls_flood_to_a_slow_raft_side_leaves_room_for_other_peers() {
    flood_to_a_slow_raft_side(None, Security::tls());
}

// ---- 4. snapshots (snapshots.rs) ---------------------------------------------------------------

#[test]
fn a_connection_carries_one_snapshot_at_a_time() {
    snapshots_on_one_connection(None, Security::Plain);
}

#[test]
fn a_tls_session_carries_one_snapshot_at_a_time() {
    snapshots_on_one_connection(None, Security::tls());
}

#[test]
fn snapshots_over_the_cap_are_refused_and_buffers_stay_bounded() {
    many_snapshots(None, Security::Plain);
}

#[test]
fn tls_snapshots_over_the_cap_are_refused_and_buffers_stay_bounded() {
    many_snapshots(None, Security::tls());
}

#[test]
fn a_stalled_snapshot_body_ends_its_reader_after_the_timeout() {
    stalled_snapshot(None, Security::Plain);
}

#[test]
fn a_stalled_snapshot_body_inside_a_tls_session_ends_its_reader_after_the_timeout() {
    stalled_snapshot(None, Security::tls());
}

// ---- 5. connections (connections.rs) -----------------------------------------------------------

#[test]
fn connections_over_the_per_address_limit_are_refused() {
    connections_per_address(None, Security::Plain);
}

#[test]
fn tls_connections_over_the_per_address_limit_are_refused() {
    connections_per_address(None, Security::tls());
}

#[test]
fn slowloris_connections_are_closed_after_the_timeout() {
    slowloris(None, Security::Plain);
}

#[test]
fn slowloris_tls_sessions_are_closed_after_the_timeout() {
    slowloris(None, Security::tls());
}

// ---- 6 and 7: decoding bounded, error texts (decoding.rs) --------------------------------------

#[test]
fn an_append_of_millions_of_tiny_entries_is_refused_before_decoding() {
    millions_of_tiny_entries(None, Security::Plain);
}

#[test]
fn a_tls_append_of_millions_of_tiny_entries_is_refused_before_decoding() {
    millions_of_tiny_entries(None, Security::tls());
}

#[test]
fn a_response_on_a_serving_connection_is_named_in_the_log() {
    response_to_the_serving_side(None);
}

// ---- 8. under an address-space limit ---------------------------------------------------------

/// The server child's address space when it serves the legitimate peer with nothing attacking
/// it (KiB), measured once per run.
fn normal_address_space() -> u64 {
    static NORMAL: OnceLock<u64> = OnceLock::new();
    *NORMAL.get_or_init(|| {
        let server = ServerChild::spawn(&ServerSpec::default(), None);
        let legit = Legit::start(server.target(), LegitKind::Vote, LEGIT_TIMEOUT);
        legit
            .wait_answered(IDLE_CALLS, Instant::now())
            .expect("the legitimate peer is answered");
        let vm = server.memory().vm;
        drop(legit.stop());
        vm
    })
}

/// `ulimit -v` for the memory cases: about 5 × the server's normal address space. Case 1's
/// 2.5 GiB of reservations before the fix did not fit in it.
fn address_space_limit() -> u64 {
    5 * normal_address_space()
}

#[test]
fn under_an_address_space_limit_headers_declaring_64_mib() {
    headers_declaring_64_mib(Some(address_space_limit()), Security::Plain);
}

#[test]
fn under_an_address_space_limit_unread_answers() {
    unread_answers(Some(address_space_limit()), Security::Plain);
}

#[test]
fn under_an_address_space_limit_many_snapshots() {
    many_snapshots(Some(address_space_limit()), Security::Plain);
}

#[test]
fn under_an_address_space_limit_millions_of_tiny_entries() {
    millions_of_tiny_entries(Some(address_space_limit()), Security::Plain);
}

// ---- bounds found missing, and kept ----------------------------------------------------------

/// The issue's case 3 bound, per request: "the consumer queue holds at most
/// `max_unanswered_requests` of the flooder's". A flood of small requests arrives many to a
/// read; the ones past the limit wait until answers make room. (Found missing at first: the
/// whole read was handed over, 3,566 to 8,562 votes queued at once in case 2, 5,450 here.)
#[test]
fn one_read_of_requests_is_handed_over_no_further_than_max_unanswered_requests() {
    const VOTES: u64 = 100_000;
    let limit = MAX_UNANSWERED_REQUESTS;
    let mut server = ServerChild::spawn(&ServerSpec::default(), None);
    let mut s = connect(server.addr());
    let mut answers = s.try_clone().expect("clone");
    let reader = std::thread::spawn(move || {
        let mut sink = vec![0u8; 64 << 10];
        while matches!(answers.read(&mut sink), Ok(n) if n > 0) {}
    });
    let template = request(0, Lane::Control, vote(1));
    let mut flood = PREAMBLE.to_vec();
    for id in 1..=VOTES {
        with_id(&template, id, &mut flood);
    }
    s.write_all(&flood).expect("the flood");
    wait_until("every vote taken", || {
        server.metrics().get("rpcs_received") >= VOTES
    });
    let most = server.metrics().get("max_queue");
    s.shutdown(Shutdown::Both).expect("shutdown");
    reader.join().expect("the reader");
    assert!(
        most <= limit,
        "{most} of one connection's requests waited for the Raft side at once; \
         max_unanswered_requests is {limit}"
    );
}

// ---- findings: where the library does not hold the issue's bound -----------------------------
//
// Each is ignored so that the suite passes, and fails when run (`-- --ignored finding_`) until
// the library holds the bound; the tests above assert the bound the library holds today.

/// The issue's case 4 bound: "buffered snapshot bytes stay below `max_inbound_snapshots` ×
/// `snapshot_buffer`". The bytes counted do (`SnapshotStream::push` pauses at 4 MiB), but the
/// memory they hold is about twice that: each 256 KiB chunk is a slice of the read buffer it
/// was cut from and keeps all of it alive, the room read for the next frame included (about
/// 512 KiB). Measured +29 to +34 MiB resident for 4 snapshots of 4 MiB buffered, against
/// 16 MiB + one read each + 4 MiB here (+17 MiB with 16 KiB chunks, +20 MiB with 64 KiB,
/// +23 MiB with 1 MiB).
#[test]
#[ignore = "finding: buffered snapshot chunks hold about twice the bytes they count"]
fn finding_snapshot_buffers_hold_twice_the_bytes_they_count() {
    let cap = MAX_INBOUND_SNAPSHOTS;
    let buffer = SNAPSHOT_BUFFER;
    let mut a = Attack::begin(
        "finding: 4 snapshots, none read",
        ServerSpec {
            hold_snapshots: true,
            ..Default::default()
        },
        LegitKind::Vote,
        LEGIT_TIMEOUT,
        None,
    );
    let results = snapshot_attackers(&a, cap);
    assert_eq!(a.metrics().get("held"), cap);
    let grew = a.peak().rss - a.before.rss;
    let bound = cap * (buffer + ONE_READ) + 4 * MIB;
    a.server.command("release");
    drop(results);
    assert!(
        grew <= bound,
        "{cap} snapshots buffering {} MiB each grew the server by {} MiB (bound {} MiB)",
        buffer / MIB,
        mib(grew),
        mib(bound)
    );
}

/// The mirror image of case 7: a request where the answer to a call belongs is named by its
/// type in the caller's error (found missing at first: "frame type: expected a response on an
/// outbound connection, found msgpack marker 0x01").
#[test]
fn a_request_answering_a_call_is_named_in_the_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let fake = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        // The preamble and the request's header.
        while got.len() < PREAMBLE_LEN + HEADER_LEN {
            let n = s.read(&mut buf).expect("read");
            assert!(n > 0, "the client hung up");
            got.extend_from_slice(&buf[..n]);
        }
        let id = u64::from_be_bytes(got[PREAMBLE_LEN + 8..PREAMBLE_LEN + 16].try_into().unwrap());
        let answer = [PREAMBLE.to_vec(), request(id, Lane::Control, vote(9))].concat();
        s.write_all(&answer).expect("answer");
        let _ = s.read(&mut buf);
    });
    let client = bind(Config::default().timeout(Some(Duration::from_secs(10))));
    let error = client
        .request_vote(
            &common::peers::peer(),
            &ServerAddress::from(addr),
            vote(1),
            CallOptions::default(),
        )
        .wait()
        .expect_err("a request is no answer");
    let text = error.to_string();
    client.close();
    fake.join().expect("the fake server");
    assert!(
        text.contains("RequestVote") && !text.contains("marker"),
        "the error names the message received: {text}"
    );
}

// ---- the report --------------------------------------------------------------------------------

/// Every case, one after another, and the table RELIABILITY.md shows.
#[test]
#[ignore = "prints RELIABILITY.md's table; run with --release --ignored --nocapture report"]
fn report() {
    type Case = fn(Option<u64>) -> Outcome;
    let cases: [Case; 20] = [
        |vm_limit| headers_declaring_64_mib(vm_limit, Security::Plain),
        |vm_limit| headers_declaring_64_mib(vm_limit, Security::tls()),
        |vm_limit| unread_answers(vm_limit, Security::Plain),
        |vm_limit| unread_answers(vm_limit, Security::tls()),
        |vm_limit| flood_to_a_slow_raft_side(vm_limit, Security::Plain),
        |vm_limit| flood_to_a_slow_raft_side(vm_limit, Security::tls()),
        |vm_limit| snapshots_on_one_connection(vm_limit, Security::Plain),
        |vm_limit| snapshots_on_one_connection(vm_limit, Security::tls()),
        |vm_limit| many_snapshots(vm_limit, Security::Plain),
        |vm_limit| many_snapshots(vm_limit, Security::tls()),
        |vm_limit| stalled_snapshot(vm_limit, Security::Plain),
        |vm_limit| stalled_snapshot(vm_limit, Security::tls()),
        |vm_limit| connections_per_address(vm_limit, Security::Plain),
        |vm_limit| connections_per_address(vm_limit, Security::tls()),
        |vm_limit| slowloris(vm_limit, Security::Plain),
        |vm_limit| slowloris(vm_limit, Security::tls()),
        |vm_limit| millions_of_tiny_entries(vm_limit, Security::Plain),
        |vm_limit| millions_of_tiny_entries(vm_limit, Security::tls()),
        one_large_entry,
        response_to_the_serving_side,
    ];
    let memory_cases: [Case; 4] = [
        |vm_limit| headers_declaring_64_mib(vm_limit, Security::Plain),
        |vm_limit| unread_answers(vm_limit, Security::Plain),
        |vm_limit| many_snapshots(vm_limit, Security::Plain),
        |vm_limit| millions_of_tiny_entries(vm_limit, Security::Plain),
    ];
    let limit = address_space_limit();
    let mut rows: Vec<Outcome> = cases.iter().map(|case| case(None)).collect();
    rows.extend(memory_cases.iter().map(|case| case(Some(limit))));
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "\ncommit {commit}, {} build, Linux {}, {cpus} CPUs; the server's normal address space \
         {} MiB, ulimit -v {} MiB\n",
        profile(),
        kernel.trim(),
        mib(normal_address_space()),
        mib(limit)
    );
    println!("{}", Outcome::header());
    for row in &rows {
        println!("{}", row.row());
    }
}
