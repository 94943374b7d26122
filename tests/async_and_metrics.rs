//! Calls, consumers and pipelines under async executors (tokio, futures' executors); the
//! metrics a transport reports; thread wake-ups per RPC under pipelined load.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::bodies::*;
use common::measure::*;
use common::net::*;
use common::peers::*;
use futures::AsyncReadExt;
use futures::task::LocalSpawnExt;
use raftnet::message::*;
use raftnet::*;

fn config() -> Config {
    Config::default()
        .timeout(Some(Duration::from_secs(30)))
        .max_rpcs_in_flight(32)
}

/// A Raft side in a tokio task, driven by `recv_async`: answers everything, reading snapshot
/// bodies with `AsyncRead`. Returns how many RPCs it answered.
async fn async_echo(consumer: Consumer) -> u64 {
    let mut n = 0;
    while let Ok(mut rpc) = consumer.recv_async().await {
        if let Some(mut reader) = rpc.snapshot.take() {
            let mut body = Vec::new();
            reader.read_to_end(&mut body).await.expect("snapshot body");
            assert_eq!(body.len() as u64, reader.size());
            assert!(
                body.iter()
                    .enumerate()
                    .all(|(i, b)| *b == pattern_byte(i as u64))
            );
        }
        let response = echo_response(&rpc.request);
        rpc.respond_ok(response);
        n += 1;
    }
    n
}

#[test]
fn calls_consumer_and_pipeline_under_tokio() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_time()
        .build()
        .unwrap();
    let (client, server) = pair(config());
    let client = Arc::new(client);
    let target = server.local_addr();
    let raft = rt.spawn(async_echo(server.consumer().clone()));

    rt.block_on(async {
        // 64 tasks, each awaiting a sequence of calls of every kind.
        let tasks: Vec<_> = (0..64u64)
            .map(|t| {
                let (client, target) = (client.clone(), target.clone());
                tokio::spawn(async move {
                    for i in 0..10u64 {
                        let term = t * 100 + i + 1;
                        let v = client
                            .request_vote(&peer(), &target, vote(term), CallOptions::default())
                            .await
                            .expect("vote");
                        assert_eq!(v.term, term);
                        let hb = client
                            .append_entries(
                                &peer(),
                                &target,
                                heartbeat(term),
                                CallOptions::default(),
                            )
                            .await
                            .expect("heartbeat");
                        assert_eq!(hb.term, term);
                        let a = client
                            .append_entries(
                                &peer(),
                                &target,
                                append(term, i, 100),
                                CallOptions::default(),
                            )
                            .await
                            .expect("append");
                        assert_eq!(a.last_log, i + 1);
                        let p = client
                            .request_pre_vote(
                                &peer(),
                                &target,
                                RequestPreVoteRequest {
                                    term,
                                    ..Default::default()
                                },
                                CallOptions::default(),
                            )
                            .await
                            .expect("pre-vote");
                        assert_eq!(p.term, term);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.expect("task");
        }

        // Calls raced against a tokio timer: dropping an unfinished Call is harmless.
        for i in 0..20u64 {
            let call =
                client.request_vote(&peer(), &target, vote(10_000 + i), CallOptions::default());
            tokio::select! {
                r = call => assert_eq!(r.expect("vote").term, 10_000 + i),
                _ = tokio::time::sleep(Duration::from_secs(30)) => panic!("vote {i} not answered"),
            }
        }

        // A snapshot, read on the far side with AsyncRead.
        const SIZE: u64 = 3 * 1024 * 1024 + 11;
        let snap = client
            .install_snapshot(
                &peer(),
                &target,
                InstallSnapshotRequest {
                    term: 2,
                    size: SIZE as i64,
                    ..Default::default()
                },
                Box::new(PatternReader::new(SIZE)),
                CallOptions::default(),
            )
            .await
            .expect("snapshot");
        assert!(snap.success);

        // A pipeline: one task sends with send_async, another takes completions
        // with recv_async, in send order.
        const PIPELINED: u64 = 2000;
        let pipeline = Arc::new(client.append_entries_pipeline(&peer(), &target).unwrap());
        let receiver = {
            let pipeline = pipeline.clone();
            tokio::spawn(async move {
                for i in 0..PIPELINED {
                    let f = pipeline.recv_async().await.expect("a completion");
                    assert_eq!(f.request().prev_log_entry, i, "send order");
                    assert_eq!(f.await.expect("append").last_log, i + 1);
                }
            })
        };
        let mut last = None;
        for i in 0..PIPELINED {
            last = Some(pipeline.send_async(append(1, i, 32)).await.expect("send"));
        }
        assert_eq!(last.unwrap().await.expect("last").last_log, PIPELINED);
        receiver.await.expect("receiver task");
        pipeline.close();
        assert_eq!(
            pipeline.recv_async().await.err(),
            Some(Error::PipelineClosed)
        );
    });

    client.close();
    drop(server);
    let answered = rt.block_on(raft).expect("raft task");
    assert_eq!(answered, 64 * 10 * 4 + 20 + 1 + 2000);
}

#[test]
fn calls_under_futures_executors() {
    let (client, server) = pair(config());
    let client = Arc::new(client);
    let target = server.local_addr();
    let raft = echo_server(server.consumer().clone());

    // block_on from several threads at once.
    let threads: Vec<_> = (0..4u64)
        .map(|t| {
            let (client, target) = (client.clone(), target.clone());
            std::thread::spawn(move || {
                for i in 0..50u64 {
                    let term = t * 1000 + i + 1;
                    let v = futures::executor::block_on(client.request_vote(
                        &peer(),
                        &target,
                        vote(term),
                        CallOptions::default(),
                    ))
                    .expect("vote");
                    assert_eq!(v.term, term);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }

    // Many calls in flight at once on a single-threaded executor: each wake-up must reach its
    // task although the transport resolves calls from its own thread.
    let mut pool = futures::executor::LocalPool::new();
    let spawner = pool.spawner();
    let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
    for t in 0..100u64 {
        let (client, target, done) = (client.clone(), target.clone(), done.clone());
        spawner
            .spawn_local(async move {
                for i in 0..5u64 {
                    let term = 100_000 + t * 10 + i;
                    let v = client
                        .request_vote(&peer(), &target, vote(term), CallOptions::default())
                        .await
                        .expect("vote");
                    assert_eq!(v.term, term);
                }
                done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            })
            .unwrap();
    }
    pool.run();
    assert_eq!(done.load(std::sync::atomic::Ordering::SeqCst), 100);

    // A pipeline driven by block_on.
    let pipeline = client.append_entries_pipeline(&peer(), &target).unwrap();
    futures::executor::block_on(async {
        for i in 0..200u64 {
            pipeline.send_async(append(1, i, 8)).await.unwrap();
        }
        for i in 0..200u64 {
            let f = pipeline.recv_async().await.unwrap();
            assert_eq!(f.request().prev_log_entry, i);
            assert_eq!(f.await.unwrap().last_log, i + 1);
        }
    });
    drop(pipeline);
    client.close();
    drop(server);
    raft.join().unwrap();
}

// ---- 12. metrics ----------------------------------------------------------------------------

#[test]
fn metrics_count_calls_receptions_decodes_and_fast_path() {
    const VOTES: u64 = 37;
    const HEARTBEATS: u64 = 23;
    let (client, server) = pair(config());
    server.set_heartbeat_handler(Some(Arc::new(|rpc: Rpc| {
        let response = echo_response(&rpc.request);
        rpc.respond_ok(response);
    })));
    let raft = echo_server(server.consumer().clone());
    let target = server.local_addr();
    for i in 0..VOTES.max(HEARTBEATS) {
        if i < VOTES {
            client
                .request_vote(&peer(), &target, vote(i + 1), CallOptions::default())
                .wait()
                .expect("vote");
        }
        if i < HEARTBEATS {
            client
                .append_entries(&peer(), &target, heartbeat(i + 1), CallOptions::default())
                .wait()
                .expect("heartbeat");
        }
    }
    let c = client.metrics();
    let s = server.metrics();
    eprintln!("client metrics: {c:#?}");
    eprintln!("server metrics: {s:#?}");

    assert_eq!(c.calls_sent[RpcType::RequestVote], VOTES);
    assert_eq!(c.calls_sent[RpcType::Heartbeat], HEARTBEATS);
    assert_eq!(c.calls_sent[RpcType::AppendEntries], 0);
    assert_eq!(c.calls_failed[RpcType::RequestVote], 0);
    assert_eq!(c.call_latency[RpcType::RequestVote].count, VOTES);
    assert_eq!(c.call_latency[RpcType::Heartbeat].count, HEARTBEATS);
    assert_eq!(c.rpcs_received[RpcType::RequestVote], 0);

    assert_eq!(s.rpcs_received[RpcType::Heartbeat], HEARTBEATS);
    assert_eq!(s.rpcs_received[RpcType::RequestVote], VOTES);
    assert_eq!(s.rpcs_received[RpcType::AppendEntries], 0);
    assert_eq!(s.rpc_decode[RpcType::RequestVote].count, VOTES);
    assert_eq!(s.rpc_decode[RpcType::Heartbeat].count, HEARTBEATS);
    assert_eq!(s.rpc_enqueue[RpcType::RequestVote].count, VOTES);
    assert_eq!(s.rpc_respond[RpcType::RequestVote].count, VOTES);
    assert_eq!(s.heartbeats_fast_path, HEARTBEATS);
    assert_eq!(s.calls_sent[RpcType::RequestVote], 0);
    assert_eq!(s.protocol_errors, 0);
    // One pooled connection per lane: control and heartbeat.
    assert_eq!(c.dials, 2);
    assert_eq!(s.accepted, 2);
    // On epoll every socket read and write is a system call of its own (io_uring's are
    // submissions, which its `io_uring_enter`s carry in batches); each side also waited.
    for (side, m) in [("client", &c), ("server", &s)] {
        if client.backend() == Some(Backend::Epoll) {
            assert!(
                m.system_calls > m.reads + m.writes,
                "{side}: {} system calls, {} reads and {} writes",
                m.system_calls,
                m.reads,
                m.writes
            );
        } else {
            assert!(
                m.system_calls > 0,
                "{side}: io_uring_enter is a system call"
            );
        }
    }
    client.close();
    drop(server);
    assert_eq!(
        raft.join().unwrap(),
        VOTES,
        "only the votes reached the consumer"
    );
}

// ---- 13. wake-ups per RPC under pipelined load ------------------------------------------------

/// The most thread wake-ups per pipelined RPC the hand-off may cost, leader and follower
/// together (reactor wakes plus consumer wakes). Measured on the 2-core test machine: 0.0147 to
/// 0.0180 per RPC (about one reactor wake per side per 128 RPCs, the in-flight window), in debug
/// and release builds, alone and with the file's other tests, idle and with both cores busy
/// (`yes > /dev/null` twice); 31 runs in all. The bound is over five times that; a hand-off that
/// woke a thread for every RPC would cost 1 or more.
const WAKES_PER_RPC_BOUND: f64 = 0.1;

#[test]
fn wakes_per_rpc_under_pipelined_load() {
    const RPCS: u64 = 100_000;
    let cfg = Config::default()
        .timeout(Some(Duration::from_secs(60)))
        .max_rpcs_in_flight(128);
    let (leader, follower) = pair(cfg);
    let raft = echo_server(follower.consumer().clone());
    let pipeline = Arc::new(
        leader
            .append_entries_pipeline(&peer(), &follower.local_addr())
            .unwrap(),
    );
    let started = Instant::now();
    let completions = {
        let pipeline = pipeline.clone();
        std::thread::spawn(move || {
            for i in 0..RPCS {
                let f = pipeline.recv().expect("a completion");
                assert_eq!(f.request().prev_log_entry, i, "send order");
                let r = f.try_result().expect("resolved").expect("answered");
                assert_eq!(r.last_log, i + 1);
            }
        })
    };
    let data = Bytes::from_static(b"x=1");
    for i in 0..RPCS {
        pipeline
            .send(AppendEntriesRequest {
                term: 1,
                leader: Some(Bytes::from_static(b"leader")),
                prev_log_entry: i,
                prev_log_term: 1,
                entries: vec![Log::command(i + 1, 1, data.clone())],
                leader_commit_index: i,
                ..Default::default()
            })
            .expect("send");
    }
    completions.join().expect("every completion, in order");
    let elapsed = started.elapsed();
    let wakes = |m: &Metrics| (m.reactor_wakes, m.consumer_wakes);
    let (lm, fm) = (leader.metrics(), follower.metrics());
    let (lr, lc) = wakes(&lm);
    let (fr, fc) = wakes(&fm);
    let per = |n: u64| n as f64 / RPCS as f64;
    eprintln!(
        "[{}] {RPCS} pipelined appends (max_rpcs_in_flight 128) in {elapsed:?}: \
         leader reactorWakes {lr} + consumerWakes {lc} = {:.4}/RPC; \
         follower reactorWakes {fr} + consumerWakes {fc} = {:.4}/RPC; both {:.4}/RPC",
        profile(),
        per(lr + lc),
        per(fr + fc),
        per(lr + lc + fr + fc),
    );
    // Reported alongside where the transport counts them (not part of the ratio above).
    for (side, m) in [("leader", &lm), ("follower", &fm)] {
        eprintln!(
            "[{}] {side}: callerWakes {}, reactorSleeps {}, reactorTurns {}, systemCalls {} \
             ({:.4}/RPC)",
            profile(),
            m.caller_wakes,
            m.reactor_sleeps,
            m.reactor_turns,
            m.system_calls,
            per(m.system_calls),
        );
    }
    assert_eq!(
        follower.metrics().rpcs_received[RpcType::AppendEntries],
        RPCS
    );
    // The hand-off is the transport's main cost under load: it must stay batched.
    let both = per(lr + lc + fr + fc);
    assert!(
        both <= WAKES_PER_RPC_BOUND,
        "{both:.4} wake-ups per pipelined RPC (leader {:.4}, follower {:.4}); bound \
         {WAKES_PER_RPC_BOUND}",
        per(lr + lc),
        per(fr + fc),
    );
    drop(pipeline);
    leader.close();
    drop(follower);
    assert_eq!(raft.join().unwrap(), RPCS);
}

/// `Metrics::iter` lists every metric exactly once, under hashicorp's or raftnet's name, with
/// the `rpcType` label on exactly the per-type ones, and the values the fields hold.
#[test]
fn metrics_export_every_value_once_by_name() {
    const VOTES: u64 = 3;
    let (client, server) = pair(config());
    let raft = echo_server(server.consumer().clone());
    let target = server.local_addr();
    for i in 0..VOTES {
        client
            .request_vote(&peer(), &target, vote(i + 1), CallOptions::default())
            .wait()
            .expect("vote");
    }
    let m = server.metrics();
    let exported: Vec<Metric> = m.iter().collect();

    let mut keys = std::collections::BTreeSet::new();
    for metric in &exported {
        assert!(
            keys.insert((metric.name, metric.labels)),
            "{} {:?} is exported twice",
            metric.name,
            metric.labels
        );
    }
    let per_type = [
        "raft.net.rpcDecode",
        "raft.net.rpcEnqueue",
        "raft.net.rpcRespond",
        "raftnet.call",
        "raftnet.rpcsReceived",
        "raftnet.callsSent",
        "raftnet.callsFailed",
    ];
    let counters = [
        "raftnet.bytesRead",
        "raftnet.bytesWritten",
        "raftnet.reads",
        "raftnet.writes",
        "raftnet.reactorTurns",
        "raftnet.reactorWakes",
        "raftnet.reactorSleeps",
        "raftnet.ledTurns",
        "raftnet.systemCalls",
        "raftnet.callerWakes",
        "raftnet.consumerWakes",
        "raftnet.dials",
        "raftnet.dialFailures",
        "raftnet.accepted",
        "raftnet.protocolErrors",
        "raftnet.heartbeatsFastPath",
        "raftnet.connectionsRefused",
        "raftnet.readsPaused",
        "raftnet.snapshotsRefused",
        "raftnet.slowPeersClosed",
        "raftnet.zeroCopySends",
        "raftnet.zeroCopyCopied",
    ];
    let gauges = [
        "raftnet.consumerQueue",
        "raftnet.submissionQueue",
        "raftnet.completionQueue",
        "raftnet.openConnections",
        "raftnet.idlePooledConnections",
        "raftnet.timers",
    ];
    let types = [
        "AppendEntries",
        "Heartbeat",
        "RequestVote",
        "RequestPreVote",
        "InstallSnapshot",
        "TimeoutNow",
    ];
    let mut expected = std::collections::BTreeSet::new();
    for name in counters.iter().chain(&gauges) {
        expected.insert((*name, vec![]));
    }
    for name in per_type {
        for t in types {
            expected.insert((name, vec![("rpcType", t)]));
        }
    }
    let listed: std::collections::BTreeSet<_> = exported
        .iter()
        .map(|metric| (metric.name, metric.labels.to_vec()))
        .collect();
    assert_eq!(listed, expected);
    assert_eq!(exported.len(), expected.len());

    // The kinds, and the values the fields hold.
    let value = |name: &str, labels: &[(&str, &str)]| {
        exported
            .iter()
            .find(|metric| metric.name == name && metric.labels == labels)
            .map(|metric| metric.value)
    };
    let vote_label = [("rpcType", "RequestVote")];
    assert_eq!(
        value("raftnet.rpcsReceived", &vote_label),
        Some(MetricValue::Counter(VOTES))
    );
    assert_eq!(m.rpcs_received[RpcType::RequestVote], VOTES);
    assert_eq!(
        value("raft.net.rpcDecode", &vote_label),
        Some(MetricValue::Histogram(m.rpc_decode[RpcType::RequestVote]))
    );
    assert_eq!(m.rpc_decode[RpcType::RequestVote].count, VOTES);
    assert_eq!(
        value("raftnet.accepted", &[]),
        Some(MetricValue::Counter(m.accepted))
    );
    for name in gauges {
        assert!(
            matches!(value(name, &[]), Some(MetricValue::Gauge(_))),
            "{name} is a gauge"
        );
    }
    for name in counters {
        assert!(
            matches!(value(name, &[]), Some(MetricValue::Counter(_))),
            "{name} is a counter"
        );
    }
    assert_eq!(
        value("raftnet.openConnections", &[]),
        Some(MetricValue::Gauge(m.open_connections))
    );

    client.close();
    drop(server);
    raft.join().unwrap();
}
