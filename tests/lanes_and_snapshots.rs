//! Lanes and snapshot streaming: heartbeats keep flowing past a bulk snapshot and bulk
//! appends; inbound snapshots are back-pressured; snapshot deadlines scale with size; a
//! sender never sends more than `size` bytes; a receiver may stop reading and still answer.

mod common;

use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::bodies::*;
use common::measure::*;
use common::net::*;
use common::peers::*;
use raftnet::message::*;
use raftnet::*;

const MIB: u64 = 1 << 20;

fn snapshot_request(size: u64) -> InstallSnapshotRequest {
    InstallSnapshotRequest {
        term: 3,
        leader: Some(Bytes::from_static(b"leader")),
        last_log_index: 100,
        last_log_term: 3,
        size: size as i64,
        ..Default::default()
    }
}

/// Read a snapshot body chunk by chunk, checksumming it, sleeping `pause` after every 256 KiB.
fn read_slowly(reader: &mut SnapshotReader, pause: Duration) -> std::io::Result<Checksum> {
    read_slowly_counting(reader, pause, &AtomicU64::new(0))
}

/// [`read_slowly`], publishing in `progress` how many bytes of the body have been read.
fn read_slowly_counting(
    reader: &mut SnapshotReader,
    pause: Duration,
    progress: &AtomicU64,
) -> std::io::Result<Checksum> {
    let mut sum = Checksum::default();
    let mut since_pause = 0u64;
    while let Some(chunk) = reader.next_chunk()? {
        sum.update(&chunk);
        progress.fetch_add(chunk.len() as u64, Ordering::SeqCst);
        since_pause += chunk.len() as u64;
        while since_pause >= 256 * 1024 {
            since_pause -= 256 * 1024;
            std::thread::sleep(pause);
        }
    }
    Ok(sum)
}

// ---- 7. the heartbeat lane ----------------------------------------------------------------

/// The longest one heartbeat may take while the snapshot streams. Measured on the 2-core test
/// machine (debug build, the whole file's tests running in parallel), the slowest heartbeat
/// completed during the snapshot: 32–105 ms in 6 runs unloaded, 31–651 ms in 15 runs with both
/// cores busy (`yes > /dev/null` twice; p99 12–43 ms), with 20 ms read pauses; 18–66 ms in 3
/// runs with both cores busy at the 40 ms pauses below. A heartbeat queued behind the snapshot
/// would take the rest of its transfer instead: the transfer lasts over 10 s
/// ([`SNAPSHOT_READ_PAUSE`]).
const HEARTBEAT_BOUND: Duration = Duration::from_secs(2);

/// The follower pauses this long after every 256 KiB it reads, so reading the 64 MiB body takes
/// at least 256 pauses (10.2 s): five times [`HEARTBEAT_BOUND`], whatever the machine's speed.
const SNAPSHOT_READ_PAUSE: Duration = Duration::from_millis(40);

/// Heartbeats that must complete while the body streams. Measured (same runs as
/// [`HEARTBEAT_BOUND`]): with 20 ms pauses (a 6–9 s window) 19,972 or more unloaded, 952 or more
/// with both cores busy; with 40 ms pauses (11 s) and both cores busy, 9,587 or more. Heartbeats
/// stuck behind the snapshot complete at most one in the window.
const HEARTBEATS_DURING_SNAPSHOT: usize = 20;

#[test]
fn heartbeats_complete_while_a_snapshot_and_bulk_appends_stream() {
    const SNAPSHOT: u64 = 64 * MIB;
    let cfg = Config::default()
        .timeout(Some(Duration::from_secs(30)))
        .max_rpcs_in_flight(8);
    let (leader, follower) = pair(cfg);

    // The follower: heartbeats on the fast path, everything else on the consumer.
    let fast_path = Arc::new(AtomicU64::new(0));
    {
        let fast_path = fast_path.clone();
        follower.set_heartbeat_handler(Some(Arc::new(move |rpc: Rpc| {
            fast_path.fetch_add(1, Ordering::SeqCst);
            let response = echo_response(&rpc.request);
            rpc.respond_ok(response);
        })));
    }
    let (snap_tx, snap_rx) = mpsc::channel();
    // How much of the snapshot body the follower has read: the snapshot is in flight from its
    // first byte read to its last.
    let body_read = Arc::new(AtomicU64::new(0));
    let consumer = follower.consumer().clone();
    let raft = {
        let body_read = body_read.clone();
        std::thread::spawn(move || {
            let mut heartbeats_on_consumer = 0;
            let mut appends = 0;
            let mut readers = Vec::new();
            while let Ok(mut rpc) = consumer.recv() {
                match &rpc.request {
                    Request::InstallSnapshot(_) => {
                        let snap_tx = snap_tx.clone();
                        let body_read = body_read.clone();
                        readers.push(std::thread::spawn(move || {
                            let mut reader = rpc.snapshot.take().expect("a body");
                            let started = Instant::now();
                            let sum =
                                read_slowly_counting(&mut reader, SNAPSHOT_READ_PAUSE, &body_read);
                            let ok = sum.is_ok();
                            snap_tx
                                .send((sum.map_err(|e| e.to_string()), started.elapsed()))
                                .unwrap();
                            rpc.respond_ok(InstallSnapshotResponse {
                                term: 3,
                                success: ok,
                                ..Default::default()
                            });
                        }));
                    }
                    Request::AppendEntries(r) => {
                        if r.is_heartbeat() {
                            heartbeats_on_consumer += 1;
                        } else {
                            appends += 1;
                        }
                        echo(rpc);
                    }
                    _ => echo(rpc),
                }
            }
            for r in readers {
                r.join().unwrap();
            }
            (heartbeats_on_consumer, appends)
        })
    };

    let target = follower.local_addr();
    let leader = Arc::new(leader);
    // The snapshot.
    let source = PatternReader::new(SNAPSHOT);
    let sent_sum = source.checksum.clone();
    let snapshot_done = Arc::new(AtomicBool::new(false));
    let snapshot = {
        let (leader, target, done) = (leader.clone(), target.clone(), snapshot_done.clone());
        std::thread::spawn(move || {
            let r = leader
                .install_snapshot(
                    &peer(),
                    &target,
                    snapshot_request(SNAPSHOT),
                    Box::new(source),
                    CallOptions::default(),
                )
                .wait();
            done.store(true, Ordering::SeqCst);
            r
        })
    };
    // 1 MiB appends, pipelined, for as long as the snapshot streams (at most 64 of them).
    let appender = {
        let (leader, target, done) = (leader.clone(), target.clone(), snapshot_done.clone());
        std::thread::spawn(move || {
            let payload = Bytes::from(vec![0xA5u8; MIB as usize]);
            let pipeline = leader.append_entries_pipeline(&peer(), &target).unwrap();
            let mut futures = Vec::new();
            for i in 0..64u64 {
                if done.load(Ordering::SeqCst) && i >= 4 {
                    break;
                }
                let request = AppendEntriesRequest {
                    term: 3,
                    leader: Some(Bytes::from_static(b"leader")),
                    prev_log_entry: i,
                    prev_log_term: 3,
                    entries: vec![Log::command(i + 1, 3, payload.clone())],
                    leader_commit_index: i,
                    ..Default::default()
                };
                futures.push(pipeline.send(request).unwrap());
            }
            for (i, f) in futures.iter().enumerate() {
                assert_eq!(f.clone().wait().expect("append").last_log, i as u64 + 1);
            }
            futures.len()
        })
    };
    // Heartbeats, one after another, until the snapshot is through (and at least 50). One
    // counts as sent during the snapshot if the follower had read part of the body when it was
    // sent and not yet all of it when its answer came.
    let mut rtts = Vec::new();
    let mut during_snapshot = Vec::new();
    let mut term = 0;
    while !snapshot_done.load(Ordering::SeqCst) || rtts.len() < 50 {
        term += 1;
        let read_before = body_read.load(Ordering::SeqCst);
        let started = Instant::now();
        let r = leader
            .append_entries(&peer(), &target, heartbeat(term), CallOptions::default())
            .wait()
            .unwrap_or_else(|e| panic!("heartbeat {term} failed: {e}"));
        let rtt = started.elapsed();
        let read_after = body_read.load(Ordering::SeqCst);
        rtts.push(rtt);
        assert_eq!(r.term, term, "heartbeat {term} got another's answer");
        if read_before > 0 && read_after < SNAPSHOT {
            during_snapshot.push(rtt);
        }
    }
    let snapshot_result = snapshot.join().unwrap();
    let appends = appender.join().unwrap();
    let (received, streamed_for) = snap_rx
        .recv_timeout(EVENTUALLY)
        .expect("the follower read the snapshot");

    assert!(
        snapshot_result.expect("snapshot call").success,
        "snapshot installed"
    );
    let received = received.expect("snapshot body read");
    let sent = *sent_sum.lock().unwrap();
    assert_eq!(received.len, SNAPSHOT);
    assert_eq!(sent.len, SNAPSHOT);
    assert_eq!(received.state, sent.state, "snapshot checksum");

    let m = follower.metrics();
    let heartbeats = rtts.len() as u64;
    assert_eq!(fast_path.load(Ordering::SeqCst), heartbeats);
    assert_eq!(m.heartbeats_fast_path, heartbeats);
    assert_eq!(m.rpcs_received[RpcType::Heartbeat], heartbeats);
    drop(leader);
    drop(follower);
    let (heartbeats_on_consumer, appends_seen) = raft.join().unwrap();
    assert_eq!(
        heartbeats_on_consumer, 0,
        "every heartbeat took the fast path"
    );
    assert_eq!(appends_seen, appends as u64);

    rtts.sort();
    during_snapshot.sort();
    eprintln!(
        "[{}] heartbeat RTT while a 64 MiB snapshot and {appends} × 1 MiB pipelined appends streamed: \
         {heartbeats} heartbeats, p50 {:?}, p99 {:?}, max {:?}; {} during the snapshot \
         (streamed for {streamed_for:?}), p50 {:?}, p99 {:?}, max {:?}",
        profile(),
        percentile(&rtts, 0.50),
        percentile(&rtts, 0.99),
        rtts.last().unwrap(),
        during_snapshot.len(),
        percentile(&during_snapshot, 0.50),
        percentile(&during_snapshot, 0.99),
        during_snapshot.last().copied().unwrap_or_default(),
    );
    // The lane's claim: heartbeats do not wait for the snapshot. They complete while it streams,
    // each far faster than the transfer.
    assert!(
        during_snapshot.len() >= HEARTBEATS_DURING_SNAPSHOT,
        "only {} heartbeats completed while the snapshot streamed (at least \
         {HEARTBEATS_DURING_SNAPSHOT} expected): heartbeats wait for the snapshot",
        during_snapshot.len()
    );
    let slowest = *during_snapshot.last().unwrap();
    assert!(
        slowest <= HEARTBEAT_BOUND,
        "a heartbeat took {slowest:?} while the snapshot streamed (bound {HEARTBEAT_BOUND:?})"
    );
    // The bound means something only if the snapshot took far longer (true by construction: the
    // follower's pauses alone take 10.2 s of the time it spends reading the body).
    assert!(
        streamed_for >= 4 * HEARTBEAT_BOUND,
        "the snapshot streamed for only {streamed_for:?}"
    );
}

// ---- 8. snapshot back-pressure -------------------------------------------------------------

#[test]
fn an_unread_snapshot_holds_back_the_sender() {
    const SNAPSHOT: u64 = 32 * MIB;
    const BUFFER: u64 = MIB;
    let client = bind(Config::default().timeout(Some(Duration::from_secs(60))));
    let server = bind(
        Config::default()
            .timeout(Some(Duration::from_secs(60)))
            .snapshot_buffer(BUFFER as usize),
    );
    let (rpc_tx, rpc_rx) = mpsc::channel();
    let consumer = server.consumer().clone();
    let raft = std::thread::spawn(move || {
        while let Ok(rpc) = consumer.recv() {
            rpc_tx.send(rpc).unwrap();
        }
    });
    let source = PatternReader::new(SNAPSHOT);
    let pulled = source.read.clone();
    let sent_sum = source.checksum.clone();
    let call = client.install_snapshot(
        &peer(),
        &server.local_addr(),
        snapshot_request(SNAPSHOT),
        Box::new(source),
        CallOptions::default(),
    );
    let mut rpc: Rpc = rpc_rx.recv_timeout(EVENTUALLY).expect("the request");
    // The receiver reads nothing. The server fills its buffer and must then stop reading.
    let server_read = || server.metrics().bytes_read;
    wait_until("the server to buffer the first MiB", || {
        server_read() >= BUFFER
    });
    // Give a missing pause the time to show: ~200 ms of nobody reading.
    std::thread::sleep(Duration::from_millis(200));
    let buffered_at_server = server_read();
    let pulled_from_sender = pulled.load(Ordering::SeqCst);
    eprintln!(
        "with nothing read for 200 ms: the server read {buffered_at_server} bytes off the socket \
         (snapshot_buffer {BUFFER}); the sender's reader gave {pulled_from_sender} of {SNAPSHOT}"
    );
    // At most the buffer plus one turn's read budget (and a little framing) is taken in.
    assert!(
        buffered_at_server <= BUFFER + 4 * MIB,
        "the server kept reading: {buffered_at_server} bytes with a {BUFFER}-byte buffer"
    );
    assert!(
        pulled_from_sender < SNAPSHOT,
        "the sender read its whole snapshot though nothing was consumed"
    );
    assert!(
        !call.is_done(),
        "the sender finished though nothing was read"
    );

    // Now read it all: exactly the bytes sent.
    let mut reader = rpc.snapshot.take().unwrap();
    let mut sum = Checksum::default();
    let mut buf = vec![0u8; 100_000];
    loop {
        let n = reader.read(&mut buf).expect("snapshot body");
        if n == 0 {
            break;
        }
        sum.update(&buf[..n]);
    }
    rpc.respond_ok(InstallSnapshotResponse {
        term: 3,
        success: true,
        ..Default::default()
    });
    assert!(call.wait().expect("snapshot call").success);
    let sent = *sent_sum.lock().unwrap();
    assert_eq!(sum.len, SNAPSHOT);
    assert_eq!((sum.len, sum.state), (sent.len, sent.state));
    drop(reader);
    drop(client);
    drop(server);
    raft.join().unwrap();
}

// ---- 9. snapshot deadlines scale with size --------------------------------------------------

/// Send a 4 MiB snapshot from a transport with a 200 ms timeout and `scale`; the receiver takes
/// about 0.8 s to read it.
fn slow_snapshot(scale: u64) -> Result<InstallSnapshotResponse> {
    const SNAPSHOT: u64 = 4 * MIB;
    let sender = bind(
        Config::default()
            .timeout(Some(Duration::from_millis(200)))
            .timeout_scale(scale),
    );
    let receiver = bind(Config::default().timeout(Some(Duration::from_secs(30))));
    let consumer = receiver.consumer().clone();
    let raft = std::thread::spawn(move || {
        let mut rpc = consumer.recv().expect("the request");
        let mut reader = rpc.snapshot.take().unwrap();
        // 16 chunks of 256 KiB, 50 ms each.
        match read_slowly(&mut reader, Duration::from_millis(50)) {
            Ok(sum) => {
                assert_eq!(sum.len, SNAPSHOT);
                rpc.respond_ok(InstallSnapshotResponse {
                    term: 3,
                    success: true,
                    ..Default::default()
                });
            }
            // The sender gave up: the body broke off.
            Err(e) => rpc.respond_err(e.to_string()),
        }
    });
    let started = Instant::now();
    let result = sender
        .install_snapshot(
            &peer(),
            &receiver.local_addr(),
            snapshot_request(SNAPSHOT),
            Box::new(PatternReader::new(SNAPSHOT)),
            CallOptions::default(),
        )
        .wait();
    eprintln!(
        "timeout 200 ms, timeout_scale {scale}: {:?} after {:?}",
        result.as_ref().map(|r| r.success),
        started.elapsed()
    );
    raft.join().unwrap();
    result
}

#[test]
fn snapshot_deadline_scales_with_size() {
    // 4 MiB / 256 KiB = 16 timeouts: 3.2 s for a ~0.8 s transfer.
    let scaled = slow_snapshot(256 * 1024);
    assert!(scaled.expect("a scaled deadline is long enough").success);
    // One timeout only: 200 ms.
    let unscaled = slow_snapshot(1 << 40);
    assert_eq!(unscaled.err(), Some(Error::Timeout));
}

// ---- 10. exactly `size` bytes; receivers that stop early ------------------------------------

#[test]
fn a_reader_longer_than_size_sends_exactly_size_bytes() {
    const SIZE: u64 = MIB + 7;
    let (client, server) = pair(Config::default().timeout(Some(Duration::from_secs(30))));
    let consumer = server.consumer().clone();
    let raft = std::thread::spawn(move || {
        let mut rpc = consumer.recv().unwrap();
        let mut reader = rpc.snapshot.take().unwrap();
        assert_eq!(reader.size(), SIZE);
        let mut body = Vec::new();
        reader.read_to_end(&mut body).expect("body");
        rpc.respond_ok(InstallSnapshotResponse {
            term: 3,
            success: true,
            ..Default::default()
        });
        body
    });
    // An endless reader.
    let source = PatternReader::new(u64::MAX);
    let pulled = source.read.clone();
    let r = client
        .install_snapshot(
            &peer(),
            &server.local_addr(),
            snapshot_request(SIZE),
            Box::new(source),
            CallOptions::default(),
        )
        .wait()
        .expect("snapshot");
    assert!(r.success);
    let body = raft.join().unwrap();
    assert_eq!(body.len() as u64, SIZE);
    assert!(
        body.iter()
            .enumerate()
            .all(|(i, b)| *b == pattern_byte(i as u64)),
        "the body is the reader's first `size` bytes"
    );
    assert_eq!(
        pulled.load(Ordering::SeqCst),
        SIZE,
        "bytes beyond size are not read"
    );
    assert_eq!(server.metrics().protocol_errors, 0);
}

#[test]
fn a_reader_shorter_than_size_fails_both_sides() {
    const SIZE: u64 = 3 * MIB;
    let (client, server) = pair(Config::default().timeout(Some(Duration::from_secs(30))));
    let consumer = server.consumer().clone();
    let raft = std::thread::spawn(move || {
        let mut rpc = consumer.recv().unwrap();
        let mut reader = rpc.snapshot.take().unwrap();
        let mut body = Vec::new();
        let read = reader.read_to_end(&mut body);
        rpc.respond_err("short body");
        (read.map_err(|e| e.kind()), body.len())
    });
    let r = client
        .install_snapshot(
            &peer(),
            &server.local_addr(),
            snapshot_request(SIZE),
            Box::new(PatternReader::new(SIZE - 1000)),
            CallOptions::default(),
        )
        .wait();
    assert!(
        matches!(r, Err(Error::Snapshot(_))),
        "the sender's call fails with a snapshot error: {r:?}"
    );
    let (read, got) = raft.join().unwrap();
    assert_eq!(
        read,
        Err(std::io::ErrorKind::UnexpectedEof),
        "the receiver's reader fails instead of hanging (got {got} bytes)"
    );
    assert!((got as u64) < SIZE);
}

#[test]
fn a_receiver_that_stops_reading_and_answers_is_heard() {
    const SIZE: u64 = 16 * MIB;
    let (client, server) = pair(Config::default().timeout(Some(Duration::from_secs(30))));
    let consumer = server.consumer().clone();
    let raft = std::thread::spawn(move || {
        let mut rpc = consumer.recv().unwrap();
        let mut reader = rpc.snapshot.take().unwrap();
        let mut first = vec![0u8; 100_000];
        reader
            .read_exact(&mut first)
            .expect("the start of the body");
        assert!(
            first
                .iter()
                .enumerate()
                .all(|(i, b)| *b == pattern_byte(i as u64))
        );
        drop(reader);
        rpc.respond_ok(InstallSnapshotResponse {
            term: 9,
            success: false,
            ..Default::default()
        });
        // The Raft side goes on serving.
        while let Ok(rpc) = consumer.recv() {
            echo(rpc);
        }
    });
    let r = client
        .install_snapshot(
            &peer(),
            &server.local_addr(),
            snapshot_request(SIZE),
            Box::new(PatternReader::new(SIZE)),
            CallOptions::default(),
        )
        .wait()
        .expect("the receiver's answer");
    assert_eq!((r.term, r.success), (9, false));
    // Both transports are still fine.
    let v = client
        .request_vote(
            &peer(),
            &server.local_addr(),
            vote(5),
            CallOptions::default(),
        )
        .wait()
        .expect("a vote after the snapshot");
    assert_eq!(v.term, 5);
    // The sender closes the snapshot connection once answered (hashicorp never reuses it), with
    // the body unfinished. Wait until the server has seen that close (only the vote's pooled
    // connection is left open), so its count below is final.
    wait_until(
        "the server closes the abandoned snapshot's connection",
        || server.metrics().open_connections == 1,
    );
    eprintln!(
        "after an abandoned snapshot: server protocolErrors = {}, client protocolErrors = {}",
        server.metrics().protocol_errors,
        client.metrics().protocol_errors,
    );
    // Neither side sent anything invalid: a body given up by its receiver, and the connection
    // closed behind it, is no protocol error on either side.
    assert_eq!(
        server.metrics().protocol_errors,
        0,
        "the server counted the abandoned snapshot as a protocol error"
    );
    assert_eq!(client.metrics().protocol_errors, 0);
    drop(client);
    drop(server);
    raft.join().unwrap();
}
