//! A tour of raftnet's transport on loopback: a "leader" and a "follower" NetTransport.
//! The leader votes, pipelines AppendEntries, streams a snapshot while heartbeats keep flowing
//! on their own lane (answered on the follower's driver thread by a heartbeat handler), and
//! the follower shrugs off an HTTP client that dialled the wrong port. Ends with metrics.
//!
//! Run with `cargo run --release --example transport_tour`.

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use raftnet::message::*;
use raftnet::{CallOptions, Config, NetTransport, ServerId, Transport};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::default()
        .max_rpcs_in_flight(64)
        .timeout(Some(Duration::from_secs(10)));
    let leader = NetTransport::bind("127.0.0.1:0", None, config.clone())?;
    let follower = NetTransport::bind("127.0.0.1:0", None, config)?;
    let (id, addr) = (ServerId::from("follower"), follower.local_addr());
    println!("leader {} -> follower {}", leader.local_addr(), addr);

    // Heartbeats are answered on the follower's driver thread, ahead of every queued RPC.
    follower.set_heartbeat_handler(Some(Arc::new(|rpc: raftnet::Rpc| {
        let term = match &rpc.request {
            Request::AppendEntries(a) => a.term,
            _ => 0,
        };
        rpc.respond_ok(AppendEntriesResponse {
            term,
            success: true,
            ..Default::default()
        });
    })));

    // The follower's Raft loop.
    let consumer = follower.consumer().clone();
    let raft = std::thread::spawn(move || {
        let mut snapshot_bytes = 0u64;
        while let Ok(mut rpc) = consumer.recv() {
            let answer = match &rpc.request {
                Request::RequestVote(v) => Ok(Response::RequestVote(RequestVoteResponse {
                    term: v.term,
                    granted: true,
                    ..Default::default()
                })),
                Request::AppendEntries(a) => Ok(Response::AppendEntries(AppendEntriesResponse {
                    term: a.term,
                    last_log: a.entries.last().map_or(a.prev_log_entry, |e| e.index),
                    success: true,
                    ..Default::default()
                })),
                Request::InstallSnapshot(s) => {
                    let mut reader = rpc.snapshot.take().expect("a snapshot has a body");
                    let mut buf = vec![0u8; 256 * 1024];
                    loop {
                        match reader.read(&mut buf) {
                            Ok(0) => break,
                            Ok(n) => snapshot_bytes += n as u64,
                            Err(e) => panic!("snapshot body: {e}"),
                        }
                    }
                    Ok(Response::InstallSnapshot(InstallSnapshotResponse {
                        term: s.term,
                        success: true,
                        ..Default::default()
                    }))
                }
                _ => Err("not handled in this tour".to_string()),
            };
            rpc.respond(answer);
        }
        snapshot_bytes
    });

    // 1. An election.
    let vote = leader
        .request_vote(
            &id,
            &addr,
            RequestVoteRequest {
                term: 1,
                ..Default::default()
            },
            CallOptions::default(),
        )
        .wait()?;
    println!("vote granted: {}", vote.granted);

    // 2. Pipelined replication: 20 000 batches of 16 x 128-byte entries.
    let pipeline = leader.append_entries_pipeline(&id, &addr)?;
    let start = Instant::now();
    let batches = 20_000u64;
    let mut acked = 0;
    for b in 0..batches {
        let entries = (0..16)
            .map(|i| Log::command(b * 16 + i + 1, 1, vec![7u8; 128]))
            .collect();
        let request = AppendEntriesRequest {
            term: 1,
            prev_log_entry: b * 16,
            entries,
            ..Default::default()
        };
        pipeline.send(request)?; // blocks while the pipeline is full (back-pressure)
        while let Some(done) = pipeline.try_recv()? {
            done.wait()?;
            acked += 1;
        }
    }
    while acked < batches {
        pipeline.recv()?.wait()?;
        acked += 1;
    }
    let elapsed = start.elapsed();
    println!(
        "pipelined {} entries in {:.0?}: {:.0} batches/s, {:.0} MB/s of entry data",
        batches * 16,
        elapsed,
        batches as f64 / elapsed.as_secs_f64(),
        (batches * 16 * 128) as f64 / elapsed.as_secs_f64() / 1e6
    );

    // 3. A 64 MiB snapshot, with heartbeats on their own lane meanwhile.
    let size = 64 << 20;
    let data: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let snapshot = leader.install_snapshot(
        &id,
        &addr,
        InstallSnapshotRequest {
            term: 1,
            size: size as i64,
            ..Default::default()
        },
        Box::new(std::io::Cursor::new(data)),
        CallOptions::default(),
    );
    let heartbeat = AppendEntriesRequest {
        term: 1,
        leader: Some(addr.0.clone().into()),
        ..Default::default()
    };
    let mut rtts = Vec::new();
    let snapshot_start = Instant::now();
    while !snapshot.is_done() {
        let t = Instant::now();
        leader
            .append_entries(&id, &addr, heartbeat.clone(), CallOptions::default())
            .wait()?;
        rtts.push(t.elapsed());
        std::thread::sleep(Duration::from_millis(1));
    }
    let snapshot = snapshot.wait()?;
    rtts.sort();
    let pct = |p: f64| {
        rtts.get(((rtts.len() as f64 * p) as usize).min(rtts.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    println!(
        "snapshot of 64 MiB installed ({}), {:.0} MB/s; {} heartbeats meanwhile, RTT p50 {:?} p99 {:?}",
        snapshot.success,
        size as f64 / snapshot_start.elapsed().as_secs_f64() / 1e6,
        rtts.len(),
        pct(0.50),
        pct(0.99)
    );

    // 4. Stray traffic: an HTTP client on the raft port is cut off; everything else goes on.
    let mut http = std::net::TcpStream::connect(follower.bound_addr())?;
    http.write_all(b"GET /metrics HTTP/1.1\r\nHost: raft\r\n\r\n")?;
    let mut sink = Vec::new();
    let _ = http.read_to_end(&mut sink);
    let vote = leader
        .request_vote(
            &id,
            &addr,
            RequestVoteRequest {
                term: 2,
                ..Default::default()
            },
            CallOptions::default(),
        )
        .wait()?;
    println!(
        "an HTTP client was disconnected; the next vote still works: granted {}",
        vote.granted
    );

    // 5. Metrics.
    let lm = leader.metrics();
    let fm = follower.metrics();
    println!(
        "leader: {} calls, {} reactor sleeps; follower: {} RPCs via the consumer, {} heartbeats on the fast path, {} protocol errors",
        lm.calls_sent.total(),
        lm.reactor_sleeps,
        fm.rpcs_received.total() - fm.heartbeats_fast_path,
        fm.heartbeats_fast_path,
        fm.protocol_errors,
    );
    drop(follower);
    let received = raft.join().expect("raft loop");
    println!(
        "follower's Raft loop read {received} snapshot bytes and stopped when its transport closed"
    );
    Ok(())
}
