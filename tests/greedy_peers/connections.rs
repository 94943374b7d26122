//! Case 5, connections: more from one address than `max_connections_per_address` (5a), and
//! slowloris peers dribbling a frame (5b). Their tests are in main.rs.

use std::io::{ErrorKind, Read, Write};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use raftnet::wire::native::*;
use raftnet::wire::*;

use crate::attack::*;
use crate::bounds::*;
use crate::common::child::*;
use crate::common::legit::*;
use crate::common::net::*;
use crate::common::peers::vote;
use crate::common::tls::{RawPeer, Security};
use crate::raw::*;

// ---- 5. connections --------------------------------------------------------------------------

/// 200 connections from 127.0.0.2, each sending a vote, to a server that takes 64 per address:
/// 64 are answered and kept, 136 are closed as they are accepted. The legitimate peer, from
/// 127.0.0.1 (raftnet's client dials from the default source), is another address and keeps
/// being served.
pub(crate) fn connections_per_address(vm_limit: Option<u64>, security: Security) -> Outcome {
    const ATTACKERS: u64 = 200;
    const PER_ADDRESS: u64 = 64;
    let attacker_ip = Ipv4Addr::new(127, 0, 0, 2);
    // The refused are closed as they are accepted, before a handshake: only the kept hold TLS.
    let (tls_held, tls_why) = tls_connections(&security, PER_ADDRESS);
    let mut a = Attack::begin_with(
        "5a. 200 connections from one address, 64 allowed",
        ServerSpec {
            max_connections_per_address: PER_ADDRESS as usize,
            ..Default::default()
        },
        LegitKind::Vote,
        LEGIT_TIMEOUT,
        vm_limit,
        security,
    );
    // A connection's state and its buffers: 64 of them, 16 KiB each is generous. Measured
    // +0.3 MiB.
    let bound = Bound {
        held: PER_ADDRESS * 16 + tls_held,
        why: format!("{PER_ADDRESS} connections × 16 KiB{tls_why}"),
        address_space: false,
    };
    let hello = [PREAMBLE.to_vec(), request(1, Lane::Control, vote(1))].concat();
    let mut kept = Vec::new();
    let mut refused = 0;
    for _ in 0..ATTACKERS {
        let mut s = a.security.wrap(connect_from(attacker_ip, a.addr()));
        // Over TLS a refused connection fails its handshake here.
        let _ = s.write_all(&hello).and_then(|()| s.flush());
        // One at a time: each is answered or closed before the next connects.
        match first_answer(&mut s) {
            Some(_) => kept.push(s),
            None => refused += 1,
        }
    }
    assert_eq!(kept.len() as u64, PER_ADDRESS, "answered and kept");
    assert_eq!(refused, ATTACKERS - PER_ADDRESS, "closed at once");
    let m = a.metrics();
    assert_eq!(m.get("connections_refused"), ATTACKERS - PER_ADDRESS);
    let logged = a
        .server
        .lines_matching(|l| l.contains("connections from one address are open already"));
    assert!(!logged.is_empty(), "the refusals are logged");
    a.legit_served_during();
    a.check_memory(&bound);
    // Once they are gone, the address may connect again.
    drop(kept);
    let stopped = Instant::now();
    wait_until("the kept connections closed", || {
        a.metrics().get("open_connections") <= 1
    });
    let mut again = a.security.wrap(connect_from(attacker_ip, a.addr()));
    again.write_all(&hello).expect("send");
    again.flush().expect("send");
    assert!(
        first_answer(&mut again).is_some(),
        "a place was freed for the address"
    );
    drop(again);
    a.end(
        stopped,
        format!("{ATTACKERS} connections from 127.0.0.2, each a preamble and a vote"),
        &bound,
        format!(
            "connections_refused={}; {} refusal log lines (at most one a second)",
            m.get("connections_refused"),
            logged.len()
        ),
    )
}

/// Slowloris: 500 connections each dribbling a vote a byte every 100 ms. A frame must arrive at
/// no less than `timeout_scale` bytes per `timeout` (1 s here), so each is closed about a second
/// after it was accepted; before that deadline they were held forever. Over TLS each completes
/// its handshake first, then dribbles the frame a byte to a record (a handshake that stalls is
/// closed at the same deadline: tests/tls.rs,
/// `an_accepted_connection_whose_handshake_stalls_is_closed`).
pub(crate) fn slowloris(vm_limit: Option<u64>, security: Security) -> Outcome {
    const CONNECTIONS: usize = 500;
    let (tls_held, tls_why) = tls_connections(&security, CONNECTIONS as u64);
    let mut a = Attack::begin_with(
        "5b. slowloris: 500 connections, a byte every 100 ms each",
        ServerSpec {
            timeout_ms: SHORT_TIMEOUT_MS,
            ..Default::default()
        },
        LegitKind::Vote,
        LEGIT_TIMEOUT,
        vm_limit,
        security,
    );
    // A connection's state and its first 4 KiB read buffer: 16 KiB each is generous. Measured
    // +4.2 MiB.
    let bound = Bound {
        held: CONNECTIONS as u64 * 16 + tls_held,
        why: format!("{CONNECTIONS} connections × 16 KiB{tls_why}"),
        address_space: false,
    };
    let bytes = [PREAMBLE.to_vec(), request(1, Lane::Control, vote(1))].concat();
    struct Dribbler {
        stream: RawPeer,
        connected: Instant,
        sent: usize,
        closed: Option<Instant>,
    }
    let mut conns: Vec<Dribbler> = (0..CONNECTIONS)
        .map(|_| {
            let connected = Instant::now();
            let mut stream = a.connect();
            stream.handshake().expect("a TLS handshake");
            stream.socket().set_nonblocking(true).expect("nonblocking");
            Dribbler {
                stream,
                connected,
                sent: 0,
                closed: None,
            }
        })
        .collect();
    // Held forever before the deadline: 30 s is 30 timeouts.
    let give_up = Instant::now() + Duration::from_secs(30);
    let mut piece = [0u8; 64];
    while conns.iter().any(|c| c.closed.is_none()) {
        assert!(
            Instant::now() < give_up,
            "{} of {CONNECTIONS} slowloris connections still open after 30 s (timeout 1 s)",
            conns.iter().filter(|c| c.closed.is_none()).count()
        );
        for c in conns.iter_mut().filter(|c| c.closed.is_none()) {
            // Closed by the server: the read sees the end (or a reset), or the write fails.
            let gone = match c.stream.read(&mut piece) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => e.kind() != ErrorKind::WouldBlock,
            };
            let gone = gone
                || (c.sent < bytes.len()
                    && match c.stream.try_write(&bytes[c.sent..c.sent + 1]) {
                        Ok(n) => {
                            c.sent += n;
                            false
                        }
                        Err(e) => e.kind() != ErrorKind::WouldBlock,
                    });
            if gone {
                c.closed = Some(Instant::now());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let stopped = Instant::now();
    let timeout = Duration::from_millis(SHORT_TIMEOUT_MS);
    let held: Vec<Duration> = conns
        .iter()
        .map(|c| c.closed.expect("closed") - c.connected)
        .collect();
    let shortest = *held.iter().min().expect("some");
    let longest = *held.iter().max().expect("some");
    assert!(
        shortest >= timeout,
        "a connection was closed {shortest:?} after it connected, before the timeout"
    );
    let most_sent = conns.iter().map(|c| c.sent).max().unwrap_or(0);
    assert!(most_sent < bytes.len(), "no frame completed");
    let m = a.metrics();
    assert_eq!(m.get("slow_peers_closed"), CONNECTIONS as u64);
    a.check_memory(&bound);
    a.legit_served_during();
    drop(conns);
    a.end(
        stopped,
        format!("{CONNECTIONS} connections, a byte of a vote every 100 ms each"),
        &bound,
        format!(
            "slow_peers_closed={}; each closed {shortest:.1?} to {longest:.1?} after it \
             connected, after {most_sent} bytes at most",
            m.get("slow_peers_closed")
        ),
    )
}
