//! Pipelines: answers in order, a lost connection or a bad frame after good answers, close and
//! deadline, batches (in order, counted per kind, one that cannot be encoded).

use super::*;

#[test]
fn pipeline_answers_complete_in_order_and_a_lost_connection_fails_the_rest() {
    let mut pair = Pair::new(config());
    let pipeline = pair.pipeline(1, 8);
    let futures: Vec<_> = (1..=3)
        .map(|t| pipeline.try_send(append(t, b"x")).unwrap())
        .collect();
    pair.drive();
    assert_eq!(pair.server.shared.consumer.len(), 3);
    // Answer the second request first: it waits for the first.
    let rpcs: Vec<Rpc> = (0..3).map(|_| pair.server.next_rpc()).collect();
    let mut rpcs = rpcs.into_iter();
    let first = rpcs.next().unwrap();
    let second = rpcs.next().unwrap();
    second.respond_ok(AppendEntriesResponse {
        term: 2,
        ..Default::default()
    });
    pair.drive();
    assert!(!futures[1].is_done(), "an answer that overtakes waits");
    first.respond_ok(AppendEntriesResponse {
        term: 1,
        ..Default::default()
    });
    pair.drive();
    assert_eq!(futures[0].try_result().unwrap().unwrap().term, 1);
    assert_eq!(futures[1].try_result().unwrap().unwrap().term, 2);
    // The server's connection goes away with the third unanswered.
    let server_key = pair.only_server_key();
    pair.server.engine.handle_eof(server_key);
    pair.apply_actions(Side::Server);
    pair.drive();
    let error = futures[2].try_result().unwrap().unwrap_err();
    assert!(matches!(error, Error::Io(_)), "{error:?}");
    assert!(matches!(
        pipeline.try_send(append(4, b"y")),
        Err(TrySendError::Closed(_))
    ));
}

/// The answers of one read complete together; a frame that is not an answer after them closes
/// the connection as a protocol error, but the answers before it still reach their futures.
#[test]
fn a_reads_pipeline_answers_complete_before_a_bad_frame_after_them_closes_the_connection() {
    let mut pair = Pair::new(config());
    let pipeline = pair.pipeline(1, 8);
    let futures: Vec<_> = (1..=3)
        .map(|t| pipeline.try_send(append(t, b"x")).unwrap())
        .collect();
    pair.drive();
    for term in 1..=2 {
        pair.server.next_rpc().respond_ok(AppendEntriesResponse {
            term,
            ..Default::default()
        });
    }
    // The server writes both answers; a request (wrong on a dialled connection) follows them,
    // all in one delivery to the client.
    let now = pair.now;
    assert!(pair.server.engine.handle_handoff(now));
    let server_key = pair.only_server_key();
    let client_key = pair.links[&(Side::Server, server_key)];
    let mut keys = Vec::new();
    pair.server.engine.take_dirty(&mut keys);
    assert_eq!(keys, vec![server_key]);
    let (queue, _) = pair.server.engine.send_queue(server_key).unwrap();
    let mut bytes = queue.to_vec();
    queue.clear();
    let mut out = SendQueue::new();
    FrameEncoder::new()
        .encode(
            &mut out,
            9,
            Lane::Control,
            Flags::NONE,
            &Message::Request(RequestVoteRequest::default().into()),
        )
        .unwrap();
    bytes.extend_from_slice(&out.to_vec());
    pair.client.engine.handle_bytes(client_key, &bytes, now);
    assert_eq!(futures[0].try_result().unwrap().unwrap().term, 1);
    assert_eq!(futures[1].try_result().unwrap().unwrap().term, 2);
    let error = futures[2].try_result().expect("failed").unwrap_err();
    assert!(matches!(error, Error::Protocol(_)), "{error:?}");
    assert_eq!(pair.client.metrics().protocol_errors, 1);
    assert!(!pair.client.engine.is_open(client_key));
}

#[test]
fn pipeline_close_fails_what_is_outstanding_and_closes_its_connection() {
    let mut pair = Pair::new(config());
    let pipeline = pair.pipeline(7, 4);
    let future = pipeline.try_send(append(1, b"x")).unwrap();
    pair.drive();
    pipeline.close();
    assert_eq!(
        future.try_result().unwrap().unwrap_err(),
        Error::PipelineClosed
    );
    pair.drive();
    assert_eq!(pair.client.closed.len(), 1, "its connection closed");
    // The server's answer to the request finds its connection gone.
    pair.server
        .next_rpc()
        .respond_ok(AppendEntriesResponse::default());
    pair.drive();
}

#[test]
fn a_pipeline_deadline_closes_its_connection() {
    let mut pair = Pair::new(config().timeout(Some(Duration::from_secs(2))));
    let pipeline = pair.pipeline(1, 4);
    let future = pipeline.try_send(append(1, b"x")).unwrap();
    pair.drive();
    // Deadlines run from the request's start (a real instant) with the configured timeout.
    pair.now = future.start() + Duration::from_secs(2);
    pair.drive();
    assert_eq!(future.try_result().unwrap().unwrap_err(), Error::Timeout);
}

fn heartbeat(term: u64) -> AppendEntriesRequest {
    AppendEntriesRequest {
        term,
        leader: Some(Bytes::from_static(b"127.0.0.1:7000")),
        ..Default::default()
    }
}

/// Every request of `requests` sent with one `try_send_batch` (the pipeline has room for all).
fn send_batch(
    pipeline: &AppendPipeline,
    mut requests: Vec<AppendEntriesRequest>,
) -> Vec<crate::AppendFuture> {
    let (n, mut futures) = (requests.len(), Vec::new());
    assert_eq!(
        pipeline
            .try_send_batch(&mut requests, &mut futures)
            .unwrap(),
        n
    );
    futures
}

/// A batch is one command to the engine: its requests go out in order, and the calls sent are
/// counted by kind.
#[test]
fn a_batch_goes_out_in_order_and_is_counted_by_kind() {
    let mut pair = Pair::new(config());
    let pipeline = pair.pipeline(1, 8);
    send_batch(&pipeline, vec![heartbeat(1), append(2, b"x"), heartbeat(3)]);
    pair.drive();
    let terms: Vec<u64> = (0..3)
        .map(|_| match &pair.server.next_rpc().request {
            Request::AppendEntries(r) => r.term,
            other => panic!("expected an AppendEntries, got {other:?}"),
        })
        .collect();
    assert_eq!(terms, [1, 2, 3]);
    let sent = pair.client.metrics().calls_sent;
    assert_eq!(
        (sent[RpcType::Heartbeat], sent[RpcType::AppendEntries]),
        (2, 1)
    );
}

/// A request of a batch that cannot be encoded closes the pipeline's connection: every future
/// of the batch fails with the encoding error (the requests before it were not written either:
/// their connection is gone), and only the requests encoded before it were counted.
#[test]
fn a_request_of_a_batch_that_cannot_be_encoded_fails_the_pipeline() {
    let mut pair = Pair::new(config());
    let pipeline = pair.pipeline(1, 8);
    let mut bad = append(2, b"y");
    bad.entries[0].appended_at.nanos = 1_000_000_000;
    let futures = send_batch(&pipeline, vec![append(1, b"x"), bad, append(3, b"z")]);
    pair.drive();
    let expected = Error::Encode(EncodeError::OutOfRange {
        field: "Log.appended_at.nanos",
    });
    for future in &futures {
        assert_eq!(future.try_result().unwrap().unwrap_err(), expected);
    }
    assert_eq!(pair.client.closed.len(), 1, "its connection closed");
    assert_eq!(
        pair.server.shared.consumer.len(),
        0,
        "nothing reached the server"
    );
    assert_eq!(pair.client.metrics().calls_sent[RpcType::AppendEntries], 1);
}

/// The appends of one batch, read at once and served by a service, share their decoding time
/// and are timed as one run (`record_served`): each still counts once in the enqueue histogram;
/// their answers, read at once by the caller, share the batch's start and count once each in
/// its call latency.
#[test]
fn every_append_of_a_read_is_timed_once() {
    let mut pair = Pair::new(config());
    pair.server
        .shared
        .handlers
        .set_service(Some(Arc::new(|rpc: Rpc| {
            let Request::AppendEntries(a) = &rpc.request else {
                return Some(rpc);
            };
            let term = a.term;
            rpc.respond_ok(AppendEntriesResponse {
                term,
                ..Default::default()
            });
            None
        })));
    let pipeline = pair.pipeline(1, 8);
    let futures = send_batch(&pipeline, (1..=5).map(|t| append(t, b"x")).collect());
    pair.drive();
    for (future, term) in futures.iter().zip(1..) {
        assert_eq!(future.try_result().unwrap().unwrap().term, term);
    }
    let metrics = pair.server.metrics();
    assert_eq!(metrics.rpcs_received[RpcType::AppendEntries], 5);
    assert_eq!(metrics.rpc_enqueue[RpcType::AppendEntries].count, 5);
    let latency = pair.client.metrics().call_latency[RpcType::AppendEntries];
    assert_eq!(latency.count, 5);
}

/// The appends of one read taken from the consumer in batches share their decoding time and
/// are timed per run (`Consumer::stamp_taken`): each counts once in the enqueue histogram of its
/// kind, across batches and beside an RPC of another kind.
#[test]
fn every_rpc_a_consumer_batch_takes_is_timed_once() {
    let mut pair = Pair::new(config());
    let vote = pair.vote(1, None);
    let pipeline = pair.pipeline(1, 8);
    let futures = send_batch(&pipeline, (1..=5).map(|t| append(t, b"x")).collect());
    pair.drive();
    let consumer = &pair.server.shared.consumer;
    assert_eq!(consumer.len(), 6);
    let mut batch = Vec::new();
    assert_eq!(consumer.try_recv_batch(&mut batch, 4).unwrap(), 4);
    assert_eq!(consumer.try_recv_batch(&mut batch, 4).unwrap(), 2);
    let metrics = pair.server.metrics();
    assert_eq!(metrics.rpc_enqueue[RpcType::RequestVote].count, 1);
    assert_eq!(metrics.rpc_enqueue[RpcType::AppendEntries].count, 5);
    for rpc in batch {
        match &rpc.request {
            Request::AppendEntries(a) => {
                let term = a.term;
                rpc.respond_ok(AppendEntriesResponse {
                    term,
                    ..Default::default()
                })
            }
            _ => rpc.respond_ok(RequestVoteResponse {
                term: 7,
                ..Default::default()
            }),
        }
    }
    pair.drive();
    assert_eq!(vote.try_result().unwrap().unwrap().term, 7);
    for (future, term) in futures.iter().zip(1..) {
        assert_eq!(future.try_result().unwrap().unwrap().term, term);
    }
}

/// The RPCs of one read are counted per run of one kind (`record_served`), and the answers of
/// one batch per run of one kind (`record_responded`): every RPC counts once in
/// `rpcs_received` and in the decode histogram of its kind (before the Raft side sees it), and
/// every answer once in the respond histogram of its kind, however the kinds interleave.
#[test]
fn every_rpc_of_a_read_and_every_answer_of_a_batch_is_counted_once_by_kind() {
    let mut pair = Pair::new(config());
    let vote = pair.vote(1, None);
    let pipeline = pair.pipeline(1, 8);
    let batch = vec![
        heartbeat(1),
        heartbeat(2),
        append(3, b"x"),
        heartbeat(4),
        append(5, b"y"),
    ];
    let futures = send_batch(&pipeline, batch);
    pair.drive();
    let consumer = &pair.server.shared.consumer;
    assert_eq!(consumer.len(), 6);
    let expected = [
        (RpcType::Heartbeat, 3),
        (RpcType::AppendEntries, 2),
        (RpcType::RequestVote, 1),
    ];
    let metrics = pair.server.metrics();
    for (kind, n) in expected {
        assert_eq!(metrics.rpcs_received[kind], n, "{kind:?} received");
        assert_eq!(metrics.rpc_decode[kind].count, n, "{kind:?} decoded");
        assert_eq!(metrics.rpc_respond[kind].count, 0, "{kind:?} answered");
    }

    let mut rpcs = Vec::new();
    assert_eq!(consumer.try_recv_batch(&mut rpcs, 8).unwrap(), 6);
    let mut answers = crate::Answers::new();
    for rpc in rpcs {
        let response: Response = match &rpc.request {
            Request::AppendEntries(a) => AppendEntriesResponse {
                term: a.term,
                ..Default::default()
            }
            .into(),
            _ => RequestVoteResponse {
                term: 7,
                ..Default::default()
            }
            .into(),
        };
        answers.add(rpc.responder, Ok(response));
    }
    answers.send();
    pair.drive();
    assert_eq!(vote.try_result().unwrap().unwrap().term, 7);
    for (future, term) in futures.iter().zip(1..) {
        assert_eq!(future.try_result().unwrap().unwrap().term, term);
    }
    // A heartbeat's answer is an AppendEntries response, but is timed as a heartbeat's.
    let metrics = pair.server.metrics();
    for (kind, n) in expected {
        assert_eq!(metrics.rpc_respond[kind].count, n, "{kind:?} answered");
    }
}
