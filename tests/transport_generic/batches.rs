//! Batches and services (the speed issue's hand-offs): `Consumer::recv_batch` and `Answers`,
//! services answering in place, panicking, blocking or keeping RPCs, pipeline batches, and
//! snapshot bodies read and sent asynchronously, each a function over `T: Fixture` that
//! `for_every_transport!` in main.rs runs on every transport.

use std::io;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raftnet::message::*;
use raftnet::*;

use crate::common::fixtures::*;
use crate::common::net::*;
use crate::common::peers::*;
use crate::default;
use crate::transport_test::read_body;
use crate::transports::Fixture;

// ---- batches and services (the speed issue's hand-offs) --------------------------------------

/// `Consumer::recv_batch` takes what waits, in arrival order (a pipeline's appends in send
/// order), never more than asked; `Answers` sends a batch's answers back together, each to its
/// own request, and an `Answers` dropped unsent still sends them.
pub(crate) fn batches_keep_order_and_answers_go_back_together<T: Fixture>() {
    const N: u64 = 40;
    let (server, client) = T::pair();
    let pipeline = client
        .append_entries_pipeline(&id(), &server.local_addr())
        .expect("pipeline");
    let request = |i: u64| AppendEntriesRequest {
        prev_log_entry: 1000 + i,
        ..append_request()
    };
    let consumer = server.consumer().clone();
    let mut batch = Vec::new();
    assert_eq!(consumer.try_recv_batch(&mut batch, 0), Ok(0));
    assert_eq!(consumer.recv_batch(&mut batch, 0), Ok(0));
    assert_eq!(
        consumer.try_recv_batch(&mut batch, 7),
        Ok(0),
        "nothing waits yet"
    );
    // The Raft loop: batches of at most 7, each answered together (every other one by
    // dropping the `Answers` unsent), echoing the request's `prev_log_entry`.
    let raft_loop = std::thread::spawn(move || {
        let mut prevs = Vec::new();
        let mut batches = 0;
        while (prevs.len() as u64) < N {
            let before = batch.len();
            let n = consumer.recv_batch(&mut batch, 7).expect("open");
            assert!((1..=7).contains(&n), "took {n} with a maximum of 7");
            assert_eq!(
                batch.len(),
                before + n,
                "appended after what the batch held"
            );
            let mut answers = Answers::new();
            for rpc in batch.drain(..) {
                let Request::AppendEntries(r) = &rpc.request else {
                    panic!("unexpected {:?}", rpc.request);
                };
                prevs.push(r.prev_log_entry);
                let response = AppendEntriesResponse {
                    last_log: r.prev_log_entry,
                    ..append_response()
                };
                answers.add(rpc.responder, Ok(response.into()));
            }
            assert_eq!(answers.len(), n);
            batches += 1;
            if batches % 2 == 0 {
                answers.send();
                assert!(answers.is_empty());
            }
        }
        prevs
    });
    let sent: Vec<AppendFuture> = (0..N)
        .map(|i| pipeline.send(request(i)).expect("send"))
        .collect();
    assert_eq!(
        join(raft_loop),
        (0..N).map(|i| 1000 + i).collect::<Vec<_>>(),
        "taken in send order"
    );
    for (i, future) in (0..).zip(sent) {
        assert_eq!(future.wait().map(|r| r.last_log), Ok(1000 + i));
    }
    pipeline.close();
}

/// A service answers every RPC kind where it arrives, without the consumer; what it gives back
/// (here: the snapshot) reaches the consumer as without a service; removing it sends
/// everything to the consumer again.
pub(crate) fn a_service_answers_in_place_and_gives_back_what_it_does_not_take<T: Fixture>() {
    let (server, client) = T::pair();
    let to = server.local_addr();
    server.set_service(Some(std::sync::Arc::new(|rpc: Rpc| {
        let response: Response = match &rpc.request {
            Request::AppendEntries(_) => append_response().into(),
            Request::RequestVote(_) => vote_response().into(),
            Request::RequestPreVote(_) => pre_vote_response().into(),
            Request::TimeoutNow(_) => timeout_now_response().into(),
            Request::InstallSnapshot(_) => return Some(rpc),
        };
        rpc.respond_ok(response);
        None
    })));
    let append = client.append_entries(&id(), &to, append_request(), default());
    let heartbeat = client.append_entries(&id(), &to, heartbeat_request(), default());
    let vote = client.request_vote(&id(), &to, vote_request(), default());
    let pre_vote = client.request_pre_vote(&id(), &to, pre_vote_request(), default());
    let timeout_now = client.timeout_now(&id(), &to, timeout_now_request(), default());
    assert_eq!(finish(append), Ok(append_response()));
    assert_eq!(finish(heartbeat), Ok(append_response()));
    assert_eq!(finish(vote), Ok(vote_response()));
    assert_eq!(finish(pre_vote), Ok(pre_vote_response()));
    assert_eq!(finish(timeout_now), Ok(timeout_now_response()));
    assert!(
        matches!(server.consumer().try_recv(), Ok(None)),
        "the service took them all"
    );

    let body = Bytes::from_static(b"a snapshot the service gives back");
    let request = InstallSnapshotRequest {
        size: body.len() as i64,
        ..snapshot_request()
    };
    let responder = serve(server.consumer(), 1, |mut rpc: Rpc| {
        let (bytes, _) = read_body(rpc.snapshot.as_mut().expect("a body"));
        rpc.respond_ok(snapshot_response());
        bytes
    });
    let data: SnapshotData = Box::new(io::Cursor::new(body.clone()));
    let call = client.install_snapshot(&id(), &to, request, data, default());
    assert_eq!(finish(call), Ok(snapshot_response()));
    assert_eq!(join(responder), vec![body.to_vec()]);

    server.set_service(None);
    let responder = answer_with(server.consumer(), 1, |_| Ok(vote_response().into()));
    let vote = client.request_vote(&id(), &to, vote_request(), default());
    assert_eq!(finish(vote), Ok(vote_response()));
    assert_eq!(join(responder), vec![Request::RequestVote(vote_request())]);
}

/// A service that panics, or that blocks on something only the transport could deliver (here:
/// the consumer), does not take the transport down or hang it: that RPC is answered with
/// [`DROPPED_UNANSWERED`], and the next one is served.
pub(crate) fn a_service_that_panics_or_blocks_answers_with_an_error<T: Fixture>() {
    let (server, client) = T::pair();
    let to = server.local_addr();
    let consumer = server.consumer().clone();
    server.set_service(Some(std::sync::Arc::new(move |rpc: Rpc| {
        let Request::RequestVote(r) = &rpc.request else {
            return Some(rpc);
        };
        match r.term {
            1 => panic!("a service bug"),
            2 => {
                let far = Instant::now() + Duration::from_secs(3600);
                let _ = consumer.recv_deadline(far);
                unreachable!("a blocking wait on the transport's thread returned");
            }
            term => {
                rpc.respond_ok(RequestVoteResponse {
                    term,
                    ..vote_response()
                });
                None
            }
        }
    })));
    for term in [1, 2] {
        let call = client.request_vote(&id(), &to, vote(term), default());
        assert_eq!(
            finish(call),
            Err(Error::Remote(DROPPED_UNANSWERED.to_string())),
            "term {term}"
        );
    }
    let call = client.request_vote(&id(), &to, vote(3), default());
    assert_eq!(finish(call).map(|r| r.term), Ok(3));
}

/// A service may keep an RPC and answer it later from another thread; closing the server with
/// kept RPCs unanswered resolves every call exactly once (the answered ones with their own
/// answer, the rest with an error).
pub(crate) fn a_service_keeps_rpcs_and_answers_them_later_exactly_once<T: Fixture>() {
    const N: u64 = 20;
    let (server, client) = T::pair();
    let to = server.local_addr();
    let (kept, later) = mpsc::channel::<Rpc>();
    let kept = std::sync::Mutex::new(kept);
    server.set_service(Some(std::sync::Arc::new(move |rpc: Rpc| {
        kept.lock().unwrap().send(rpc).unwrap();
        None
    })));
    let calls: Vec<_> = (1..=N)
        .map(|term| client.request_vote(&id(), &to, vote(term), default()))
        .collect();
    // Answer the odd terms from this thread; keep the even ones until the server closes.
    let mut unanswered = Vec::new();
    for _ in 0..N {
        let rpc = later
            .recv_timeout(EVENTUALLY)
            .expect("the service got every RPC");
        let Request::RequestVote(r) = &rpc.request else {
            panic!("unexpected {:?}", rpc.request);
        };
        let term = r.term;
        if term % 2 == 1 {
            rpc.respond_ok(RequestVoteResponse {
                term,
                ..vote_response()
            });
        } else {
            unanswered.push(rpc);
        }
    }
    // The odd answers are on their way: let them arrive before closing the server.
    wait_until("the answered calls resolve", || {
        calls.iter().step_by(2).all(|call| call.is_done())
    });
    server.close();
    drop(unanswered);
    for (term, call) in (1..=N).zip(calls) {
        let result = finish(call);
        if term % 2 == 1 {
            assert_eq!(result.map(|r| r.term), Ok(term));
        } else {
            assert!(result.is_err(), "term {term}: {result:?}");
        }
    }
}

/// `AppendPipeline::try_send_batch` sends what fits and hands the rest back; `send_batch`
/// blocks while the pipeline is full until every request is sent; each future gets the answer
/// to its own request, in send order; a closed pipeline refuses a batch.
pub(crate) fn pipeline_batches_send_in_order_and_wait_for_room<T: Fixture>() {
    // More than any fixture's `max_rpcs_in_flight`.
    const N: u64 = 300;
    let (server, client) = T::pair();
    let pipeline = client
        .append_entries_pipeline(&id(), &server.local_addr())
        .expect("pipeline");
    let request = |i: u64| AppendEntriesRequest {
        prev_log_entry: 5000 + i,
        ..append_request()
    };
    // Nobody answers yet: a batch larger than the pipeline sends only what fits.
    let mut requests: Vec<_> = (0..N).map(request).collect();
    let mut futures = Vec::new();
    let fitted = pipeline
        .try_send_batch(&mut requests, &mut futures)
        .expect("open");
    assert!(fitted >= 1 && (fitted as u64) < N, "sent {fitted} of {N}");
    assert_eq!(requests.len() as u64, N - fitted as u64);
    assert_eq!(
        pipeline.try_send_batch(&mut requests, &mut futures),
        Ok(0),
        "full"
    );
    // The server answers everything; the rest goes as room frees up.
    let responder = answer_with(server.consumer(), N as usize, |request| {
        let Request::AppendEntries(r) = request else {
            return Err(format!("unexpected {request:?}"));
        };
        Ok(AppendEntriesResponse {
            last_log: r.prev_log_entry,
            ..append_response()
        }
        .into())
    });
    pipeline
        .send_batch(&mut requests, &mut futures)
        .expect("every request sent");
    assert!(requests.is_empty());
    assert_eq!(futures.len() as u64, N);
    for (i, future) in (0..).zip(&futures) {
        assert_eq!(future.request().prev_log_entry, 5000 + i);
        assert_eq!(finish_append(future).map(|r| r.last_log), Ok(5000 + i));
    }
    // The completions, drained in batches of at most 64, come in send order.
    let mut done = Vec::new();
    assert_eq!(pipeline.recv_batch(&mut done, 0), Ok(0));
    while (done.len() as u64) < N {
        let before = done.len();
        let n = pipeline.recv_batch(&mut done, 64).expect("open");
        assert!((1..=64).contains(&n) && done.len() == before + n);
    }
    assert_eq!(pipeline.try_recv_batch(&mut done, 64), Ok(0));
    let order: Vec<u64> = done.iter().map(|f| f.request().prev_log_entry).collect();
    assert_eq!(order, (0..N).map(|i| 5000 + i).collect::<Vec<_>>());
    let seen = join(responder);
    assert_eq!(
        seen,
        (0..N)
            .map(|i| Request::AppendEntries(request(i)))
            .collect::<Vec<_>>()
    );
    pipeline.close();
    let mut more = vec![request(N)];
    assert!(pipeline.try_send_batch(&mut more, &mut futures).is_err());
    assert_eq!(more.len(), 1, "a refused batch stays with the caller");
}

/// `SnapshotReader::next_chunk_async` yields the body exactly (every byte, in order, then the
/// end), in pieces as they arrived.
pub(crate) fn snapshot_chunks_read_async_are_the_body_exactly<T: Fixture>() {
    let (server, client) = T::pair();
    let body: Bytes = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    let request = InstallSnapshotRequest {
        size: body.len() as i64,
        ..snapshot_request()
    };
    let responder = serve(server.consumer(), 1, |mut rpc: Rpc| {
        let mut reader = rpc.snapshot.take().expect("a body");
        let (received, pieces) = futures::executor::block_on(async {
            let mut received = Vec::new();
            let mut pieces = 0;
            while let Some(chunk) = reader.next_chunk_async().await.expect("the whole body") {
                assert!(!chunk.is_empty(), "no empty piece");
                received.extend_from_slice(&chunk);
                pieces += 1;
            }
            (received, pieces)
        });
        assert_eq!(reader.remaining(), 0);
        rpc.respond_ok(snapshot_response());
        (received, pieces)
    });
    let data: SnapshotData = Box::new(io::Cursor::new(body.clone()));
    let call = client.install_snapshot(&id(), &server.local_addr(), request, data, default());
    assert_eq!(finish(call), Ok(snapshot_response()));
    let (received, pieces) = join(responder).pop().unwrap();
    assert!(received == body, "the body read differs from the one sent");
    assert!(pieces >= 1);
}

/// `install_snapshot_bytes`: the receiver reads exactly `size` bytes of the `Bytes` given (the
/// rest is not sent); `Bytes` shorter than `size` fail the call (the network transport refuses
/// it before sending anything; in memory the receiver sees the short body).
pub(crate) fn snapshot_bytes_send_exactly_size_bytes_or_fail<T: Fixture>() {
    let (server, client) = T::pair();
    let to = server.local_addr();
    let data: Bytes = (0..600_000u32).map(|i| (i % 241) as u8).collect();
    let size = 500_000;
    let request = InstallSnapshotRequest {
        size: size as i64,
        ..snapshot_request()
    };
    let responder = serve(server.consumer(), 1, |mut rpc: Rpc| {
        let (body, end) = read_body(rpc.snapshot.as_mut().expect("a body"));
        rpc.respond_ok(snapshot_response());
        (body, end.map_err(|e| e.kind()))
    });
    let call = client.install_snapshot_bytes(&id(), &to, request.clone(), data.clone(), default());
    assert_eq!(finish(call), Ok(snapshot_response()));
    let (body, end) = join(responder).pop().unwrap();
    assert_eq!(end, Ok(size), "the body ended cleanly after size bytes");
    assert!(body[..] == data[..size], "the first {size} bytes, exactly");

    let short = data.slice(..1000);
    let responder = (!T::SENDER_DETECTS_SHORT_SNAPSHOT).then(|| {
        serve(server.consumer(), 1, |mut rpc: Rpc| {
            let (_, end) = read_body(rpc.snapshot.as_mut().expect("a body"));
            assert!(end.is_err(), "a short body ends with an error");
            rpc.respond_err("short read");
        })
    });
    let call = client.install_snapshot_bytes(&id(), &to, request, short, default());
    let result = finish(call);
    assert!(result.is_err(), "{result:?}");
    match responder {
        Some(responder) => {
            join(responder);
        }
        None => {
            assert!(
                matches!(&result, Err(Error::Snapshot(text)) if text.contains("1000 bytes given"))
            );
            assert!(server.consumer().is_empty(), "nothing was sent");
        }
    }
}
