//! Loopback round trips through `NetTransport`, for tracking over time with criterion
//! (`cargo bench --bench loopback`). The full comparison with a tokio baseline, per scenario and
//! placement, is `cargo run --release --bin raftnet-bench` (BENCHMARKS.md); these are the
//! scenarios stable enough on a shared machine to show a regression.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use raftnet::message::*;
use raftnet::{CallOptions, Config, NetTransport, Rpc, ServerId, Transport};

fn answer(rpc: Rpc) {
    let response = match &rpc.request {
        Request::AppendEntries(a) => Response::AppendEntries(AppendEntriesResponse {
            term: a.term,
            success: true,
            ..Default::default()
        }),
        Request::RequestVote(v) => Response::RequestVote(RequestVoteResponse {
            term: v.term,
            granted: true,
            ..Default::default()
        }),
        _ => return rpc.respond_err("not in this bench"),
    };
    rpc.respond(Ok(response));
}

fn pair() -> (NetTransport, NetTransport, std::thread::JoinHandle<()>) {
    let config = Config::default()
        .max_rpcs_in_flight(128)
        .timeout(Some(Duration::from_secs(30)));
    let client = NetTransport::bind("127.0.0.1:0", None, config.clone()).expect("bind");
    let server = NetTransport::bind("127.0.0.1:0", None, config).expect("bind");
    server.set_heartbeat_handler(Some(Arc::new(answer)));
    let consumer = server.consumer().clone();
    let raft = std::thread::spawn(move || {
        while let Ok(rpc) = consumer.recv() {
            answer(rpc);
        }
    });
    (client, server, raft)
}

fn heartbeat() -> AppendEntriesRequest {
    AppendEntriesRequest {
        term: 7,
        leader: Some(Bytes::from_static(b"127.0.0.1:7000")),
        ..Default::default()
    }
}

fn loopback(c: &mut Criterion) {
    let (client, server, raft) = pair();
    let (id, to) = (ServerId::from("server"), server.local_addr());

    c.bench_function("loopback/heartbeat_round_trip", |b| {
        b.iter(|| {
            client
                .append_entries(&id, &to, heartbeat(), CallOptions::default())
                .wait()
                .expect("answer")
        })
    });

    c.bench_function("loopback/vote_round_trip", |b| {
        let vote = RequestVoteRequest {
            term: 8,
            ..Default::default()
        };
        b.iter(|| {
            client
                .request_vote(&id, &to, vote.clone(), CallOptions::default())
                .wait()
                .expect("answer")
        })
    });

    let pipeline = client.append_entries_pipeline(&id, &to).expect("pipeline");
    let mut group = c.benchmark_group("loopback/pipelined");
    // Through the pipeline and answered by the consumer thread (no fast path: not heartbeats).
    let small = AppendEntriesRequest {
        term: 7,
        prev_log_entry: 1,
        ..Default::default()
    };
    group.throughput(Throughput::Elements(1000));
    group.bench_function("append_x1000", |b| {
        b.iter(|| {
            for _ in 0..1000 {
                pipeline.send(small.clone()).expect("send");
            }
            for _ in 0..1000 {
                pipeline.recv().expect("completion").wait().expect("answer");
            }
        })
    });
    let data = Bytes::from(vec![1u8; 1024]);
    let batch = AppendEntriesRequest {
        term: 7,
        prev_log_entry: 1,
        entries: (0..64)
            .map(|i| Log::command(i + 2, 7, data.clone()))
            .collect(),
        ..Default::default()
    };
    group.throughput(Throughput::Bytes(100 * 64 * 1024));
    group.bench_function("append_64x1KiB_x100", |b| {
        b.iter(|| {
            for _ in 0..100 {
                pipeline.send(batch.clone()).expect("send");
            }
            for _ in 0..100 {
                pipeline.recv().expect("completion").wait().expect("answer");
            }
        })
    });
    group.finish();
    drop(pipeline);
    drop(client);
    drop(server);
    raft.join().expect("raft loop");
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(3));
    targets = loopback
}
criterion_main!(benches);
