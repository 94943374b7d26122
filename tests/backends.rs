//! The io_uring and epoll drivers against each other: a node on each backend, calling each
//! other in both directions in every RPC kind (votes, pre-votes, TimeoutNow, heartbeats, appends
//! with large entries, pipelined appends, a streamed snapshot), every answer checked for being
//! its own request's and every snapshot body for its bytes. Where io_uring cannot run, the test
//! prints why and is skipped.

mod common;

use std::io::Read;
use std::sync::mpsc;

use common::bodies::*;
use common::fixtures::*;
use common::net::*;
use common::peers::*;
use raftnet::message::*;
use raftnet::*;

/// Bytes of the snapshot each direction streams: several of the drivers' 256 KiB receives and
/// sends, so short sends and buffer growth happen.
const SNAPSHOT_BYTES: u64 = 3 << 20;
/// Pipelined appends each direction sends.
const PIPELINED: u64 = 200;

/// Serve `consumer` like [`echo_server`], but hand each snapshot body's checksum to `bodies`.
fn serve_checking_snapshots(
    consumer: Consumer,
    bodies: mpsc::Sender<Checksum>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut n = 0;
        while let Ok(mut rpc) = consumer.recv() {
            if let Some(mut reader) = rpc.snapshot.take() {
                let mut checksum = Checksum::default();
                let mut buf = vec![0; 64 << 10];
                loop {
                    match reader.read(&mut buf) {
                        Ok(0) => break,
                        Ok(k) => checksum.update(&buf[..k]),
                        Err(e) => panic!("snapshot body: {e}"),
                    }
                }
                let _ = bodies.send(checksum);
            }
            let response = echo_response(&rpc.request);
            rpc.respond_ok(response);
            n += 1;
        }
        n
    })
}

/// Every RPC kind from `client` to `server`; `label` names the direction in failures.
fn every_rpc_kind(
    client: &NetTransport,
    server: &NetTransport,
    bodies: &mpsc::Receiver<Checksum>,
    label: &str,
) {
    let target = server.local_addr();
    let options = CallOptions::default;

    let vote_answer = finish(client.request_vote(&peer(), &target, vote(7), options()));
    assert_eq!(
        vote_answer.map(|r| (r.term, r.granted, r.peers)),
        Ok((7, true, vote(7).candidate)),
        "{label}: vote"
    );

    let pre_vote = RequestPreVoteRequest {
        term: 8,
        ..pre_vote_request()
    };
    let pre_vote_answer = finish(client.request_pre_vote(&peer(), &target, pre_vote, options()));
    assert_eq!(
        pre_vote_answer.map(|r| (r.term, r.granted)),
        Ok((8, true)),
        "{label}: pre-vote"
    );

    let timeout_now =
        finish(client.timeout_now(&peer(), &target, timeout_now_request(), options()));
    assert_eq!(
        timeout_now,
        Ok(TimeoutNowResponse::default()),
        "{label}: TimeoutNow"
    );

    for term in 1..=20 {
        let answer = finish(client.append_entries(&peer(), &target, heartbeat(term), options()));
        assert_eq!(
            answer.map(|r| (r.term, r.success)),
            Ok((term, true)),
            "{label}: heartbeat {term}"
        );
    }

    // Entries larger than one receive or send of either driver.
    for (prev, payload) in [(10, 100), (20, 300_000), (30, 1 << 20)] {
        let answer =
            finish(client.append_entries(&peer(), &target, append(3, prev, payload), options()));
        assert_eq!(
            answer.map(|r| (r.term, r.last_log)),
            Ok((3, prev + 1)),
            "{label}: append of {payload} bytes"
        );
    }

    let pipeline = client
        .append_entries_pipeline(&peer(), &target)
        .expect("pipeline");
    let futures: Vec<AppendFuture> = (0..PIPELINED)
        .map(|i| {
            pipeline
                .send(append(4, 1000 + i, 64 + (i as usize % 7) * 1000))
                .expect("pipelined send")
        })
        .collect();
    for (i, future) in (0..).zip(&futures) {
        let answer = finish_append(future);
        assert_eq!(
            answer.map(|r| r.last_log),
            Ok(1000 + i + 1),
            "{label}: pipelined append {i}"
        );
    }
    pipeline.close();

    let body = PatternReader::new(SNAPSHOT_BYTES);
    let sent = body.checksum.clone();
    let request = InstallSnapshotRequest {
        term: 5,
        size: SNAPSHOT_BYTES as i64,
        ..snapshot_request()
    };
    let answer =
        finish(client.install_snapshot(&peer(), &target, request, Box::new(body), options()));
    assert_eq!(
        answer.map(|r| (r.term, r.success)),
        Ok((5, true)),
        "{label}: snapshot"
    );
    let received = recv_eventually(bodies, "the snapshot body was read");
    let sent = *sent.lock().unwrap();
    assert_eq!(
        (received.len, received.state),
        (sent.len, sent.state),
        "{label}: snapshot body"
    );
    assert_eq!(received.len, SNAPSHOT_BYTES);
}

#[test]
fn an_epoll_node_and_a_uring_node_talk_in_every_rpc_kind() {
    let test = "an_epoll_node_and_a_uring_node_talk_in_every_rpc_kind";
    talk_both_ways(test, test_config());
}

/// The same with every send of the io_uring node zero-copy (`Config::zero_copy_send`, from 0
/// bytes): what it sends arrives whole in every RPC kind, and every send it made was one the
/// kernel notified it of (so each lent buffer was held to the end, and none is left held).
#[test]
fn zero_copy_sends_on_io_uring_arrive_whole_in_every_rpc_kind() {
    let test = "zero_copy_sends_on_io_uring_arrive_whole_in_every_rpc_kind";
    let Some(uring) = talk_both_ways(test, test_config().zero_copy_send(Some(0))) else {
        return;
    };
    // The close waited for the kernel's notifications.
    let metrics = uring.metrics();
    if !linux_at_least(6, 1) || std::env::var_os("RAFTNET_URING_SEND_ZC").is_some() {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}'s counts: a kernel before 6.1 has no SENDMSG_ZC, or \
             RAFTNET_URING_SEND_ZC overrides the configuration"
        );
        return;
    }
    assert_eq!(
        metrics.zero_copy_sends, metrics.writes,
        "every send was zero-copy, and notified"
    );
    assert!(metrics.zero_copy_copied <= metrics.zero_copy_sends);
}

/// An io_uring node bound with `uring_config` and an epoll node call each other in every RPC
/// kind, both ways, and close; the io_uring node (closed) is returned, or `None` where io_uring
/// cannot run (the skip printed).
fn talk_both_ways(test: &str, uring_config: Config) -> Option<NetTransport> {
    let uring = bind_on_backend(Backend::Uring, uring_config, test)?;
    let epoll =
        bind_on_backend(Backend::Epoll, test_config(), test).expect("epoll runs everywhere");
    let (uring_bodies_tx, uring_bodies) = mpsc::channel();
    let (epoll_bodies_tx, epoll_bodies) = mpsc::channel();
    let uring_server = serve_checking_snapshots(uring.consumer().clone(), uring_bodies_tx);
    let epoll_server = serve_checking_snapshots(epoll.consumer().clone(), epoll_bodies_tx);

    every_rpc_kind(
        &epoll,
        &uring,
        &uring_bodies,
        &format!("{test}: epoll -> uring"),
    );
    every_rpc_kind(
        &uring,
        &epoll,
        &epoll_bodies,
        &format!("{test}: uring -> epoll"),
    );

    epoll.close();
    uring.close();
    // 3 + 20 heartbeats + 3 appends + the pipeline + 1 snapshot, each way.
    let per_direction = 3 + 20 + 3 + PIPELINED + 1;
    assert_eq!(join(uring_server), per_direction);
    assert_eq!(join(epoll_server), per_direction);
    Some(uring)
}

/// Whether the running kernel is Linux `major.minor` or later.
fn linux_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(['.', '-'])
        .map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}

/// Asking for io_uring with the placement it does not run on (a thread per connection) is an
/// error at bind, never a panic or a quiet fallback; `Auto` there runs what the placement has,
/// and on a runtime `Auto` is the epoll task (`RAFTNET_BACKEND=uring` leaves it be).
#[test]
fn uring_with_another_placement_is_a_start_error_at_bind() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let config = test_config().backend(Backend::Uring);
    match NetTransport::bind_with(
        "127.0.0.1:0",
        None,
        config.clone(),
        Placement::ThreadPerConnection,
    ) {
        Err(Error::Start { what, reason }) => {
            assert_eq!(what, "the io_uring driver");
            assert!(
                reason
                    .to_string()
                    .contains("Placement::Thread or Placement::Runtime"),
                "{reason}"
            );
        }
        other => panic!("expected a start error, got {other:?}"),
    }
    let on_runtime = NetTransport::bind_on("127.0.0.1:0", None, test_config(), runtime.handle())
        .expect("Auto on a runtime");
    assert_eq!(on_runtime.backend(), Some(Backend::Epoll));
    on_runtime.close();
    let blocking = NetTransport::bind_with(
        "127.0.0.1:0",
        None,
        test_config(),
        Placement::ThreadPerConnection,
    )
    .expect("Auto on the blocking driver");
    assert_eq!(blocking.backend(), None);
    blocking.close();
}

/// io_uring named for a transport on a runtime (`bind_on`): the driver runs on a thread of its
/// own beside the runtime, and the runtime's tasks call through it and serve from it as they do
/// through the epoll task: awaited calls, a consumer task, and a close from outside.
#[test]
fn uring_on_a_runtime_runs_beside_it_and_serves_its_tasks() {
    let test = "uring_on_a_runtime_runs_beside_it_and_serves_its_tasks";
    if !uring_runs(test) {
        return;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let bind = || {
        let t = NetTransport::bind_on(
            "127.0.0.1:0",
            None,
            test_config().backend(Backend::Uring),
            runtime.handle(),
        )
        .expect("io_uring on a runtime binds");
        assert_eq!(t.backend(), Some(Backend::Uring));
        t
    };
    let (server, client) = (bind(), bind());
    let consumer = server.consumer().clone();
    let served = runtime.spawn(async move {
        let mut n = 0u64;
        while let Ok(rpc) = consumer.recv_async().await {
            echo(rpc);
            n += 1;
        }
        n
    });
    let target = server.local_addr();
    let terms = runtime.block_on(async {
        let mut terms = Vec::new();
        for term in 1..=5 {
            let answer = client
                .append_entries(&peer(), &target, heartbeat(term), CallOptions::default())
                .await
                .expect("a heartbeat from a task");
            terms.push(answer.term);
        }
        terms
    });
    assert_eq!(terms, [1, 2, 3, 4, 5]);
    client.close();
    server.close();
    assert_eq!(runtime.block_on(served).unwrap(), 5);
}
