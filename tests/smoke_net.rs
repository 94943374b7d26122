//! The first tests a new `NetTransport` must pass: one round trip of each kind (a vote, a
//! snapshot, pipelined appends), and snapshots back to back at full speed.

mod common;

use std::time::Duration;

use common::net::pair;
use raftnet::message::*;
use raftnet::*;

fn config() -> Config {
    Config::default().timeout(Some(Duration::from_secs(5)))
}

#[test]
fn vote_roundtrip() {
    let (a, b) = pair(config());
    let consumer = b.consumer().clone();
    let server = std::thread::spawn(move || {
        for _ in 0..3 {
            let rpc = consumer.recv().unwrap();
            match &rpc.request {
                Request::RequestVote(r) => {
                    let term = r.term;
                    rpc.respond_ok(RequestVoteResponse {
                        term,
                        granted: true,
                        ..Default::default()
                    })
                }
                _ => rpc.respond_err("unexpected"),
            }
        }
    });
    for term in 1..=3 {
        let r = a
            .request_vote(
                &"b".into(),
                &b.local_addr(),
                RequestVoteRequest {
                    term,
                    ..Default::default()
                },
                CallOptions::default(),
            )
            .wait()
            .unwrap();
        assert_eq!(r.term, term);
    }
    server.join().unwrap();
    assert_eq!(a.pooled_connections(), 1);
}

#[test]
fn snapshot_roundtrip() {
    use std::io::Read;
    let (a, b) = pair(config());
    let consumer = b.consumer().clone();
    let server = std::thread::spawn(move || {
        let mut rpc = consumer.recv().unwrap();
        let mut reader = rpc.snapshot.take().unwrap();
        let mut body = Vec::new();
        reader.read_to_end(&mut body).unwrap();
        rpc.respond_ok(InstallSnapshotResponse {
            term: 1,
            success: true,
            ..Default::default()
        });
        body
    });
    let data: Vec<u8> = (0..3_000_000u32).map(|i| i as u8).collect();
    let req = InstallSnapshotRequest {
        size: data.len() as i64,
        term: 1,
        ..Default::default()
    };
    let r = a
        .install_snapshot(
            &"b".into(),
            &b.local_addr(),
            req,
            Box::new(std::io::Cursor::new(data.clone())),
            CallOptions::default(),
        )
        .wait()
        .unwrap();
    assert!(r.success);
    assert_eq!(server.join().unwrap(), data);
}

#[test]
fn pipeline_roundtrip() {
    let cfg = Config::default().max_rpcs_in_flight(16);
    let (a, b) = pair(cfg);
    let consumer = b.consumer().clone();
    let server = std::thread::spawn(move || {
        for _ in 0..100 {
            let rpc = consumer.recv().unwrap();
            let Request::AppendEntries(r) = &rpc.request else {
                panic!()
            };
            let last = r.prev_log_entry;
            rpc.respond_ok(AppendEntriesResponse {
                last_log: last,
                success: true,
                ..Default::default()
            });
        }
    });
    let p = a
        .append_entries_pipeline(&"b".into(), &b.local_addr())
        .unwrap();
    let mut futures = Vec::new();
    for i in 0..100u64 {
        futures.push(
            p.send(AppendEntriesRequest {
                term: 1,
                prev_log_entry: i,
                ..Default::default()
            })
            .unwrap(),
        );
    }
    for (i, f) in futures.into_iter().enumerate() {
        assert_eq!(f.wait().unwrap().last_log, i as u64);
        assert_eq!(p.recv().unwrap().request().prev_log_entry, i as u64);
    }
    server.join().unwrap();
}

/// Regression: a snapshot whose receiver keeps up stalled forever once the sender's socket took a
/// whole refill at once (the reactor slept with a connection still marked for writing).
#[test]
fn fast_snapshots_back_to_back_never_stall() {
    let (a, b) = pair(config());
    let consumer = b.consumer().clone();
    let server = std::thread::spawn(move || {
        let mut total = 0;
        for _ in 0..3 {
            let mut rpc = consumer.recv().unwrap();
            let mut reader = rpc.snapshot.take().unwrap();
            while let Some(chunk) = reader.next_chunk().unwrap() {
                total += chunk.len();
            }
            rpc.respond_ok(InstallSnapshotResponse {
                success: true,
                ..Default::default()
            });
        }
        total
    });
    let data = vec![7u8; 32 << 20];
    for _ in 0..3 {
        let req = InstallSnapshotRequest {
            size: data.len() as i64,
            ..Default::default()
        };
        let call = a.install_snapshot(
            &"b".into(),
            &b.local_addr(),
            req,
            Box::new(std::io::Cursor::new(data.clone())),
            CallOptions::default(),
        );
        let answer = call
            .wait_deadline(std::time::Instant::now() + Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("the snapshot stalled"));
        assert!(answer.unwrap().success);
    }
    assert_eq!(server.join().unwrap(), 3 * (32 << 20));
}
