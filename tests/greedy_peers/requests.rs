//! Cases 1 to 3, requests a server must not let pile up: headers declaring 64 MiB bodies
//! (memory follows bytes received), a peer that does not read its answers, and a flood to a
//! slow Raft side. Their tests are in main.rs.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use raftnet::message::*;
use raftnet::wire::native::*;
use raftnet::wire::*;

use crate::attack::*;
use crate::bounds::*;
use crate::common::child::*;
use crate::common::legit::*;
use crate::common::net::*;
use crate::common::peers::{append, vote};
use crate::common::tls::{RawPeer, Security};
use crate::common::wire::frame_header;
use crate::raw::*;

// ---- 1. memory follows bytes received ------------------------------------------------------------

/// 40 connections each send a preamble and a frame header declaring a 64 MiB body, and nothing
/// more. Before memory followed bytes received, each header reserved its 64 MiB: 2.5 GiB of
/// address space. Now each reserves the codec's 64 KiB step.
pub(crate) fn headers_declaring_64_mib(vm_limit: Option<u64>, security: Security) -> Outcome {
    const CONNECTIONS: u64 = 40;
    const DECLARED: u32 = 64 << 20;
    // Over TLS each connection also holds the TLS stream's ciphertext buffer (64 KiB,
    // `CIPHERTEXT_READ` in src/driver/tls/mod.rs) once it has read. Measured +1.6 MiB resident.
    let (tls_held, tls_why) = match security.is_tls() {
        true => (64, " + the TLS stream's 64 KiB ciphertext buffer"),
        false => (0, ""),
    };
    let mut a = Attack::begin_with(
        "1. headers declaring 64 MiB bodies",
        ServerSpec::default(),
        LegitKind::Vote,
        LEGIT_TIMEOUT,
        vm_limit,
        security,
    );
    // The codec makes room for 64 KiB of a body in progress (RESERVE_STEP), and the driver
    // reads into that room: 64 KiB per connection, 2.5 MiB in all. Measured +0.3 MiB resident
    // and no address space (the room comes out of the allocator's arenas); +2.5 GiB of address
    // space before memory followed bytes received.
    let bound = Bound {
        held: CONNECTIONS * (64 + tls_held),
        why: format!("{CONNECTIONS} × (the codec's 64 KiB step{tls_why})"),
        address_space: true,
    };
    let accepted = a.metrics().get("accepted");
    let header = [
        PREAMBLE.to_vec(),
        frame_header(
            DECLARED,
            MessageType::AppendEntries as u8,
            0,
            Lane::Control as u8,
            0,
            1,
        ),
    ]
    .concat();
    let attackers: Vec<RawPeer> = (0..CONNECTIONS)
        .map(|_| {
            let mut s = a.connect();
            s.write_all(&header).expect("send a header");
            s.flush().expect("send a header");
            s
        })
        .collect();
    wait_until("the 40 connections accepted", || {
        a.metrics().get("accepted") >= accepted + CONNECTIONS
    });
    // The headers were written before the accepts; the legitimate peer's answers after them
    // mean the driver has read them.
    a.legit_served_during();
    a.check_memory(&bound);
    let m = a.metrics();
    assert_eq!(
        m.get("open_connections"),
        CONNECTIONS + 1,
        "the attack's connections are held, not refused"
    );
    drop(attackers);
    let stopped = Instant::now();
    a.end(
        stopped,
        format!("{CONNECTIONS} connections × (preamble + 16-byte header declaring 64 MiB)"),
        &bound,
        String::new(),
    )
}

// ---- 2. a peer that does not read its answers ------------------------------------------------

/// One connection pipelines up to 1,000,000 votes and never reads an answer. Before the answer
/// backlog paused it, the server read them all and queued every answer (+200 MiB). Now it stops
/// reading once `max_queued_answer_bytes` (1 MiB) of answers wait: the attacker's writes block
/// in the kernel's buffers, which are not the server's memory.
pub(crate) fn unread_answers(vm_limit: Option<u64>, security: Security) -> Outcome {
    const VOTES: u64 = 1_000_000;
    const BATCH: u64 = 10_000;
    let mut a = Attack::begin_with(
        "2. 1,000,000 pipelined votes, answers never read",
        ServerSpec::default(),
        LegitKind::Vote,
        LEGIT_TIMEOUT,
        vm_limit,
        security,
    );
    // 1 MiB of answers queued (DEFAULT_MAX_QUEUED_ANSWER_BYTES), packed in a buffer that
    // doubles as it grows: 2 MiB. The requests: at most 256 handed over unanswered, and the
    // rest of the read that reached the limit held back decoded (up to 512 KiB of 37-byte
    // votes, 14,200, each about 700 bytes decoded): 10 MiB at most. Measured +6.6 to +12.6 MiB
    // when the whole read was handed over at once; +200 MiB before the limit.
    let bound = Bound {
        held: 12 * MIB,
        why: "a 1 MiB answer backlog in a doubling buffer + one read of votes held back".into(),
        address_space: false,
    };
    let template = request(0, Lane::Control, vote(1));
    let mut s = a.connect();
    s.socket()
        .set_write_timeout(Some(Duration::from_secs(2)))
        .expect("write timeout");
    s.write_all(&PREAMBLE).expect("preamble");
    let give_up = Instant::now() + Duration::from_secs(20);
    let mut sent = 0;
    let mut blocked = false;
    let mut batch = Vec::with_capacity(BATCH as usize * template.len());
    while sent < VOTES && Instant::now() < give_up {
        batch.clear();
        let n = BATCH.min(VOTES - sent);
        for id in sent..sent + n {
            with_id(&template, id + 1, &mut batch);
        }
        match s.write_all(&batch) {
            Ok(()) => sent += n,
            Err(e) if is_blocked(&e) => {
                blocked = true;
                break;
            }
            Err(e) => panic!("the flood's write failed: {e}"),
        }
        a.check_memory(&bound);
    }
    // The server pauses the connection once its answers back up (they may all still be
    // sitting in the kernel's buffers when the writes end).
    wait_until("the flooder's reads paused", || {
        a.check_memory(&bound);
        a.metrics().get("reads_paused") >= 1
    });
    a.legit_served_during();
    a.check_memory(&bound);
    let m = a.metrics();
    let notes = format!(
        "{} of the votes reached the Raft side; reads_paused={}; most queued for the Raft side: {}",
        m.get("rpcs_received"),
        m.get("reads_paused"),
        m.get("max_queue")
    );
    drop(s);
    let stopped = Instant::now();
    a.end(
        stopped,
        format!(
            "{sent} votes ({} bytes each) on one connection{}",
            template.len(),
            if blocked {
                ", then its writes blocked for 2 s"
            } else {
                ""
            }
        ),
        &bound,
        notes,
    )
}

// ---- 3. a flood to a slow Raft side --------------------------------------------------------------

/// One connection sends 10,000 appends of 16 KiB while the Raft side takes 1 ms for each. Before
/// `max_unanswered_requests`, all of them queued for the Raft side and other peers' calls waited
/// behind them (10 s: they timed out). Now the flooder's share of the queue is 256 requests
/// (and one read more): another peer's call waits behind at most that many appends (measured
/// p99 313 ms, within its 5 s timeout 16 times over).
pub(crate) fn flood_to_a_slow_raft_side(vm_limit: Option<u64>, security: Security) -> Outcome {
    const APPENDS: u64 = 10_000;
    const PAYLOAD: usize = 16 << 10;
    let limit = MAX_UNANSWERED_REQUESTS;
    let (tls_held, tls_why) = tls_connections(&security, 1);
    let mut a = Attack::begin_with(
        "3. 10,000 appends of 16 KiB to a Raft side taking 1 ms each",
        ServerSpec {
            append_delay_us: 1000,
            ..Default::default()
        },
        LegitKind::Vote,
        Duration::from_secs(5),
        vm_limit,
        security,
    );
    // 256 appends of 16 KiB unanswered (4 MiB), and the rest of the read that reached the
    // limit (512 KiB). Measured +5.4 MiB; before the limit, all 10,000 could be read
    // (10,000 × 16 KiB = 160 MiB). Over TLS, +7.9 to +8.2 MiB against +6.3 to +6.5 MiB plain
    // in a debug build (+7.8 against +5.5 MiB in a release build), within the slack; most likely because reads come as much as rustls
    // opened at a time (at most a 64 KiB ciphertext read's worth), so the appends held spread
    // over more read buffers, each kept whole by the appends sliced from it (as snapshot
    // chunks are: `finding_snapshot_buffers_hold_twice_the_bytes_they_count`).
    let bound = Bound {
        held: limit * 16 + ONE_READ + tls_held,
        why: format!("256 unanswered appends of 16 KiB + one read{tls_why}"),
        address_space: false,
    };
    // The requests of the read that reaches the limit wait until answers make room: the
    // queue never holds more than the limit. (Measured 270 and 271 when the whole read was
    // handed over at once; with the limits' defaults at usize::MAX the check tripped at 353,
    // on the way to 10,000.)
    let queue_bound = limit;
    let mut s = a.connect();
    s.write_all(&PREAMBLE).expect("preamble");
    s.flush().expect("preamble");
    let answers = s.socket().try_clone().expect("clone");
    let template = request(0, Lane::Pipeline, append(1, 1, PAYLOAD));
    // The flooder writes as fast as the server takes the appends, and reads its answers as
    // they come: it is the unanswered requests that must hold it back. One thread over a
    // non-blocking socket (a TLS session is not split between a writer and a reader), until
    // the socket is shut down.
    let flooder = std::thread::spawn(move || {
        s.socket().set_nonblocking(true).expect("nonblocking");
        let mut sent = 0;
        let (mut one, mut at) = (Vec::with_capacity(template.len()), 0);
        let mut sink = vec![0u8; 64 << 10];
        loop {
            let mut moved = match s.read(&mut sink) {
                Ok(0) => return sent,
                Ok(_) => true,
                Err(e) if is_blocked(&e) => false,
                Err(_) => return sent,
            };
            if at == one.len() && sent < APPENDS {
                one.clear();
                with_id(&template, sent + 1, &mut one);
                at = 0;
            }
            if at < one.len() {
                match s.try_write(&one[at..]) {
                    Ok(n) => {
                        moved = true;
                        at += n;
                        if at == one.len() {
                            sent += 1;
                        }
                    }
                    Err(e) if is_blocked(&e) => {}
                    Err(_) => return sent,
                }
            }
            if !moved {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    let check_queue = |m: &ChildMetrics| {
        let most = m.get("max_queue");
        assert!(
            most <= queue_bound,
            "the consumer queue held {most} RPCs, more than max_unanswered_requests ({limit}) \
             ({queue_bound})"
        );
    };
    wait_until("the flooder's reads paused", || {
        let m = a.metrics();
        check_queue(&m);
        m.get("reads_paused") >= 1
    });
    // Another peer is answered, each of its calls within its 5 s timeout.
    a.legit_answered(20, Instant::now());
    a.check_memory(&bound);
    let m = a.metrics();
    check_queue(&m);
    let notes = format!(
        "most queued for the Raft side: {} (max_unanswered_requests {limit}); reads_paused={}; \
         {} appends taken",
        m.get("max_queue"),
        m.get("reads_paused"),
        m.get("rpcs_received"),
    );
    answers.shutdown(Shutdown::Both).expect("shutdown");
    let stopped = Instant::now();
    let sent = flooder.join().expect("the flooder");
    a.end(
        stopped,
        format!("{sent} of {APPENDS} appends of 16 KiB written before the attack ended"),
        &bound,
        notes,
    )
}
