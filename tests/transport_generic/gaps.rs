//! The gaps: contract behaviour the `Transport` docs promise and hashicorp's suites leave
//! untested (TimeoutNow, pre-votes, remote errors, dropped RPCs, snapshot readers of the wrong
//! length, unreachable targets, per-call deadlines, the ways to wait on a call, closing with
//! calls outstanding), each a function over `T: Fixture` that `for_every_transport!` in
//! main.rs runs on every transport.

use std::io::{self, Read};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use raftnet::message::*;
use raftnet::*;

use crate::common::fixtures::*;
use crate::common::net::*;
use crate::common::peers::*;
use crate::default;
use crate::transport_test::read_body;
use crate::transports::Fixture;

// ---- gaps ---------------------------------------------------------------------------------------

/// Gap: TimeoutNow round trip with equality (no hashicorp test).
pub(crate) fn timeout_now<T: Fixture>() {
    let (server, client) = T::pair();
    let responder = answer_with(server.consumer(), 1, |_| Ok(timeout_now_response().into()));
    let call = client.timeout_now(
        &id(),
        &server.local_addr(),
        timeout_now_request(),
        default(),
    );
    assert_eq!(finish(call), Ok(timeout_now_response()));
    assert_eq!(
        join(responder),
        vec![Request::TimeoutNow(timeout_now_request())]
    );
}

/// Gap: RequestPreVote round trip with equality (no hashicorp test).
pub(crate) fn request_pre_vote<T: Fixture>() {
    let (server, client) = T::pair();
    let responder = answer_with(server.consumer(), 1, |_| Ok(pre_vote_response().into()));
    let call = client.request_pre_vote(&id(), &server.local_addr(), pre_vote_request(), default());
    assert_eq!(finish(call), Ok(pre_vote_response()));
    assert_eq!(
        join(responder),
        vec![Request::RequestPreVote(pre_vote_request())]
    );
}

/// Gap: error-string propagation. The remote's error text reaches the caller unchanged as
/// `Error::Remote(text)`, '%' sequences included (hashicorp #647: before HEAD the text went
/// through a printf-style call and was mangled).
pub(crate) fn remote_error_text_is_verbatim<T: Fixture>() {
    const TEXT: &str = "unsupported snapshot version 100%: %s %d %!v(MISSING) %%";
    let (server, client) = T::pair();
    let responder = answer_with(server.consumer(), 2, |_| Err(TEXT.to_string()));
    let target = server.local_addr();
    let append = client.append_entries(&id(), &target, append_request(), default());
    assert_eq!(finish(append), Err(Error::Remote(TEXT.to_string())));
    let vote = client.request_vote(&id(), &target, vote_request(), default());
    assert_eq!(finish(vote), Err(Error::Remote(TEXT.to_string())));
    join(responder);
}

/// Gap: an RPC the Raft side drops without answering answers itself with
/// [`DROPPED_UNANSWERED`], so the caller is not left waiting for its deadline.
pub(crate) fn dropped_rpc_answers_with_an_error<T: Fixture>() {
    let (server, client) = T::pair();
    let responder = serve(server.consumer(), 1, drop);
    let call = client.request_vote(&id(), &server.local_addr(), vote_request(), default());
    assert_eq!(
        finish(call),
        Err(Error::Remote(DROPPED_UNANSWERED.to_string()))
    );
    join(responder);
}

/// Gap: answering with a response of the wrong type gives the caller an error (not a hang, and
/// not a response of the wrong type).
pub(crate) fn wrong_response_type_is_an_error<T: Fixture>() {
    let (server, client) = T::pair();
    let responder = answer_with(server.consumer(), 1, |_| Ok(vote_response().into()));
    let call = client.append_entries(&id(), &server.local_addr(), append_request(), default());
    match finish(call) {
        Err(Error::Remote(text)) => assert!(
            text.contains("AppendEntries") && text.contains("RequestVoteResponse"),
            "the error should name both types: {text:?}"
        ),
        other => panic!("expected Error::Remote naming the mismatch, got {other:?}"),
    }
    join(responder);
}

/// A snapshot reader that yields `first`, then waits until the test opens `gate` (so the
/// request has certainly reached the receiver first), then ends early.
pub(crate) struct ShortReader {
    pub(crate) first: Option<Vec<u8>>,
    pub(crate) gate: mpsc::Receiver<()>,
}

impl Read for ShortReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(mut first) = self.first.take() {
            let n = first.len().min(buf.len());
            buf[..n].copy_from_slice(&first[..n]);
            if n < first.len() {
                self.first = Some(first.split_off(n));
            }
            return Ok(n);
        }
        let _ = self.gate.recv_timeout(EVENTUALLY);
        Ok(0)
    }
}

/// Gap: a snapshot whose sender's reader ends before `size` bytes. The call fails, and the
/// receiver's reader reports an error (`UnexpectedEof`) instead of hanging or ending cleanly.
/// The receiver answers "short read", as hashicorp's Raft does; whether the caller sees that
/// answer (in memory) or the transport's own verdict (network: the sender knows and aborts the
/// stream) depends on the transport.
pub(crate) fn snapshot_reader_shorter_than_size<T: Fixture>() {
    let (server, client) = T::pair();
    let (open_gate, gate) = mpsc::channel();
    let responder = serve(server.consumer(), 1, move |mut rpc| {
        let _ = open_gate.send(());
        let mut reader = rpc
            .snapshot
            .take()
            .expect("an InstallSnapshot carries a reader");
        let (body, end) = read_body(&mut reader);
        rpc.respond_err("short read");
        (body, end.map_err(|e| e.kind()))
    });
    let call = client.install_snapshot(
        &id(),
        &server.local_addr(),
        snapshot_request(),
        Box::new(ShortReader {
            first: Some(b"01234".to_vec()),
            gate,
        }),
        default(),
    );
    let result = finish(call);
    if T::SENDER_DETECTS_SHORT_SNAPSHOT {
        assert!(
            matches!(&result, Err(Error::Snapshot(text)) if text.contains("5 of 10")),
            "expected Error::Snapshot about 5 of 10 bytes, got {result:?}"
        );
    } else {
        assert_eq!(result, Err(Error::Remote("short read".into())));
    }
    let mut seen = join(responder);
    let (body, end) = seen.pop().expect("one rpc");
    assert_eq!(end, Err(io::ErrorKind::UnexpectedEof));
    assert!(
        b"01234".starts_with(&body),
        "the receiver got bytes that were never sent: {body:?}"
    );
}

/// Gap: a snapshot whose reader holds more than `size` bytes: exactly `size` are sent, the
/// receiver's reader ends there, and the call succeeds.
pub(crate) fn snapshot_reader_longer_than_size<T: Fixture>() {
    let (server, client) = T::pair();
    let responder = serve(server.consumer(), 1, |mut rpc| {
        let mut reader = rpc
            .snapshot
            .take()
            .expect("an InstallSnapshot carries a reader");
        let (body, end) = read_body(&mut reader);
        rpc.respond_ok(snapshot_response());
        (body, end.map_err(|e| e.to_string()))
    });
    let call = client.install_snapshot(
        &id(),
        &server.local_addr(),
        snapshot_request(),
        Box::new(io::Cursor::new(b"0123456789ABCDEF".to_vec())),
        default(),
    );
    assert_eq!(finish(call), Ok(snapshot_response()));
    assert_eq!(join(responder), vec![(SNAPSHOT_BODY.to_vec(), Ok(10))]);
}

pub(crate) fn assert_unreachable<R: std::fmt::Debug>(
    result: raftnet::Result<R>,
    target: &ServerAddress,
) {
    match result {
        Err(Error::Unreachable { addr, .. }) => assert_eq!(addr, target.0),
        other => panic!("expected Error::Unreachable for {target}, got {other:?}"),
    }
}

/// Gap: every kind of call to an address nobody listens on (network) or that is not
/// connected (memory) fails with `Error::Unreachable` naming that address.
pub(crate) fn unreachable_target<T: Fixture>() {
    let (_server, client) = T::pair();
    let target = T::unreachable();
    assert_unreachable(
        finish(client.append_entries(&id(), &target, append_request(), default())),
        &target,
    );
    assert_unreachable(
        finish(client.request_vote(&id(), &target, vote_request(), default())),
        &target,
    );
    assert_unreachable(
        finish(client.request_pre_vote(&id(), &target, pre_vote_request(), default())),
        &target,
    );
    assert_unreachable(
        finish(client.timeout_now(&id(), &target, timeout_now_request(), default())),
        &target,
    );
    assert_unreachable(
        finish(client.install_snapshot(
            &id(),
            &target,
            snapshot_request(),
            Box::new(io::Cursor::new(SNAPSHOT_BODY.to_vec())),
            default(),
        )),
        &target,
    );
}

/// Gap: calls to a transport that was closed fail as unreachable (network: its listener is
/// gone; memory: the peer is closed).
pub(crate) fn calls_to_a_closed_transport_are_unreachable<T: Fixture>() {
    let (server, client) = T::pair();
    let target = server.local_addr();
    server.close();
    assert_unreachable(
        finish(client.request_vote(&id(), &target, vote_request(), default())),
        &target,
    );
}

pub(crate) fn term_of(rpc: &Rpc) -> u64 {
    match &rpc.request {
        Request::AppendEntries(r) => r.term,
        other => panic!("unexpected {other:?}"),
    }
}

pub(crate) fn answer_term(rpc: Rpc) {
    let term = term_of(&rpc);
    rpc.respond_ok(AppendEntriesResponse {
        term,
        ..append_response()
    });
}

/// Gap: a per-call deadline. With `CallOptions::timeout(50 ms)` and a server that does not
/// answer, the call fails with exactly `Error::Timeout`; the server's late answer goes nowhere;
/// a later call on the same transport works and gets its own answer, not the late one.
pub(crate) fn per_call_deadline<T: Fixture>() {
    let (server, client) = T::pair();
    let consumer = server.consumer().clone();
    let target = server.local_addr();
    let call = |term: u64, options: CallOptions| {
        let request = AppendEntriesRequest {
            term,
            ..append_request()
        };
        client.append_entries(&id(), &target, request, options)
    };
    let response = |term: u64| AppendEntriesResponse {
        term,
        ..append_response()
    };

    // Warm up, so the deadline call does not race a dial (network).
    let warm = call(1, default());
    answer_term(next_rpc(&consumer));
    assert_eq!(finish(warm), Ok(response(1)));

    let late = call(2, CallOptions::timeout(Duration::from_millis(50)));
    assert_eq!(finish(late), Err(Error::Timeout));
    // Answer it late. (If the request had not even reached the server when its deadline
    // passed, there is nothing to answer here; it is answered below if it shows up later.)
    if let Ok(Some(rpc)) = consumer.recv_deadline(Instant::now() + Duration::from_secs(2)) {
        assert_eq!(term_of(&rpc), 2);
        answer_term(rpc);
    }

    let next = call(3, default());
    loop {
        let rpc = next_rpc(&consumer);
        let term = term_of(&rpc);
        answer_term(rpc);
        if term == 3 {
            break;
        }
        assert_eq!(term, 2, "only the late request may come first");
    }
    assert_eq!(finish(next), Ok(response(3)));
}

/// Using a call (1/4): `.wait()` blocks until the answer.
pub(crate) fn call_wait<T: Fixture>() {
    let (server, client) = T::pair();
    let responder = answer_with(server.consumer(), 1, |_| Ok(vote_response().into()));
    let call = client.request_vote(&id(), &server.local_addr(), vote_request(), default());
    assert_eq!(call.wait(), Ok(vote_response()));
    join(responder);
}

/// Using a call (2/4): `.try_result()` polling: `None` while unanswered, then the result, and
/// the same result again on every later look (it peeks; a taken result never turns into
/// `Err(Shutdown)`).
pub(crate) fn call_try_result<T: Fixture>() {
    let (server, client) = T::pair();
    let call = client.request_vote(&id(), &server.local_addr(), vote_request(), default());
    let rpc = next_rpc(server.consumer());
    assert_eq!(call.try_result(), None);
    assert!(!call.is_done());
    rpc.respond_ok(vote_response());
    let mut result = None;
    wait_until("the call resolves", || {
        result = call.try_result();
        result.is_some()
    });
    assert_eq!(result, Some(Ok(vote_response())));
    assert!(call.is_done());
    assert_eq!(call.try_result(), Some(Ok(vote_response())));
}

/// Using a call (3/4): `.await` under tokio, on a current-thread runtime (the server side runs
/// as a task on the same thread, taking RPCs with `recv_async`, so every wake-up must work) and
/// on a multi-thread runtime.
pub(crate) fn call_await_tokio<T: Fixture>() {
    let current = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");
    let multi = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("runtime");
    for runtime in [current, multi] {
        let (server, client) = T::pair();
        let consumer = server.consumer().clone();
        let target = server.local_addr();
        runtime.block_on(async move {
            let responder = tokio::spawn(async move {
                let rpc = consumer.recv_async().await.expect("an rpc");
                let request = rpc.request.clone();
                rpc.respond_ok(vote_response());
                request
            });
            let call = client.request_vote(&id(), &target, vote_request(), default());
            let result = tokio::time::timeout(EVENTUALLY, call)
                .await
                .expect("the call resolves");
            assert_eq!(result, Ok(vote_response()));
            let seen = tokio::time::timeout(EVENTUALLY, responder)
                .await
                .expect("the responder finishes")
                .expect("the responder task");
            assert_eq!(seen, Request::RequestVote(vote_request()));
        });
    }
}

/// Using a call (4/4): `.await` under `futures::executor::block_on`.
pub(crate) fn call_await_block_on<T: Fixture>() {
    let (server, client) = T::pair();
    let responder = answer_with(server.consumer(), 1, |_| Ok(vote_response().into()));
    let call = client.request_vote(&id(), &server.local_addr(), vote_request(), default());
    assert_eq!(futures::executor::block_on(call), Ok(vote_response()));
    assert_eq!(join(responder), vec![Request::RequestVote(vote_request())]);
}

/// Gap: "pipeline close with undecoded futures". hashicorp's `Close()` leaves futures that were
/// not decoded yet unresolved forever (#96, #612); raftnet fails each with
/// `Error::PipelineClosed`, and the pipeline refuses new appends.
pub(crate) fn pipeline_close_fails_outstanding_futures<T: Fixture>() {
    let (server, client) = T::pair();
    let pipeline = client
        .append_entries_pipeline(&id(), &server.local_addr())
        .expect("pipeline");
    let future = pipeline.send(append_request()).expect("send");
    let held = next_rpc(server.consumer());
    pipeline.close();
    assert_eq!(finish_append(&future), Err(Error::PipelineClosed));
    assert!(matches!(
        pipeline.send(append_request()),
        Err(Error::PipelineClosed)
    ));
    let completed = pipeline
        .try_recv()
        .expect("the failed future")
        .expect("one");
    assert_eq!(completed.try_result(), Some(Err(Error::PipelineClosed)));
    assert!(matches!(pipeline.try_recv(), Err(Error::PipelineClosed)));
    // The server answering afterwards changes nothing.
    held.respond_ok(append_response());
    assert_eq!(future.try_result(), Some(Err(Error::PipelineClosed)));
}

/// Gap: "Close semantics", the caller's side, as `Transport::close` documents it: "every
/// outstanding call ... fails with `Error::Shutdown`". A call whose request the server holds
/// unanswered fails with `Error::Shutdown` when the caller's transport closes.
pub(crate) fn close_fails_outstanding_calls<T: Fixture>() {
    let (server, client) = T::pair();
    let call = client.request_vote(&id(), &server.local_addr(), vote_request(), default());
    let held = next_rpc(server.consumer());
    let closed_at = Instant::now();
    client.close();
    let result = call.wait_deadline(closed_at + Duration::from_secs(5));
    let result = result
        .unwrap_or_else(|_| panic!("the call was still pending 5 s after its transport closed"));
    assert_eq!(result, Err(Error::Shutdown));
    drop(held);
}

/// Gap: "Close semantics" for pipelines, as `Transport::close` documents it: every outstanding
/// pipeline future fails with `Error::Shutdown` when the transport closes.
pub(crate) fn close_fails_outstanding_pipeline_futures<T: Fixture>() {
    let (server, client) = T::pair();
    let pipeline = client
        .append_entries_pipeline(&id(), &server.local_addr())
        .expect("pipeline");
    let future = pipeline.send(append_request()).expect("send");
    let held = next_rpc(server.consumer());
    client.close();
    assert_eq!(finish_append(&future), Err(Error::Shutdown));
    drop(held);
}
