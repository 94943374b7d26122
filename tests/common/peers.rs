//! The serving side of a call, played by the test: responder threads that take a given number
//! of RPCs off a consumer (the hashicorp ports), and an echo server that answers every RPC with
//! values derived from the request (the robustness tests), with the numbered requests it echoes.

use std::io::Read;
use std::thread::JoinHandle;
use std::time::Instant;

use bytes::Bytes;
use raftnet::message::*;
use raftnet::*;

use super::net::EVENTUALLY;

/// Take the next RPC, failing the test if none arrives within [`EVENTUALLY`].
pub(crate) fn next_rpc(consumer: &Consumer) -> Rpc {
    match consumer.recv_deadline(Instant::now() + EVENTUALLY) {
        Ok(Some(rpc)) => rpc,
        Ok(None) => panic!("no RPC arrived within {EVENTUALLY:?}"),
        Err(e) => panic!("the consumer failed while waiting for an RPC: {e}"),
    }
}

/// A responder thread: takes `n` RPCs from `consumer`, hands each to `handle` (which must
/// answer or drop it), and returns what `handle` returned for each, in arrival order. The
/// thread panics (failing the test at `join`) if an RPC does not arrive within [`EVENTUALLY`].
pub(crate) fn serve<R, F>(consumer: &Consumer, n: usize, mut handle: F) -> JoinHandle<Vec<R>>
where
    R: Send + 'static,
    F: FnMut(Rpc) -> R + Send + 'static,
{
    let consumer = consumer.clone();
    std::thread::Builder::new()
        .name("test-responder".into())
        .spawn(move || (0..n).map(|_| handle(next_rpc(&consumer))).collect())
        .expect("spawn the responder thread")
}

/// The common responder: answers `n` RPCs with `answer(&request)` and returns the requests it saw.
pub(crate) fn answer_with<F>(
    consumer: &Consumer,
    n: usize,
    mut answer: F,
) -> JoinHandle<Vec<Request>>
where
    F: FnMut(&Request) -> Result<Response, String> + Send + 'static,
{
    serve(consumer, n, move |rpc| {
        let request = rpc.request.clone();
        let result = answer(&request);
        rpc.respond(result);
        request
    })
}

/// Join a responder thread, propagating its panic.
pub(crate) fn join<R>(handle: JoinHandle<R>) -> R {
    match handle.join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

// ---- the echo server -------------------------------------------------------------------------

/// The id the robustness tests call their peer by.
pub(crate) fn peer() -> ServerId {
    ServerId::from("peer")
}

/// A vote numbered by `term`: the candidate and the last log index are derived from it.
pub(crate) fn vote(term: u64) -> RequestVoteRequest {
    RequestVoteRequest {
        term,
        candidate: Some(Bytes::from(format!("candidate-{term}"))),
        last_log_index: term.wrapping_mul(3),
        ..Default::default()
    }
}

/// A heartbeat by hashicorp's rule: term, a leader address, nothing else.
pub(crate) fn heartbeat(term: u64) -> AppendEntriesRequest {
    AppendEntriesRequest {
        term,
        leader: Some(Bytes::from_static(b"leader")),
        ..Default::default()
    }
}

/// An AppendEntries that is not a heartbeat: `prev` identifies it, `payload` bytes of entry.
pub(crate) fn append(term: u64, prev: u64, payload: usize) -> AppendEntriesRequest {
    AppendEntriesRequest {
        term,
        leader: Some(Bytes::from_static(b"leader")),
        prev_log_entry: prev,
        prev_log_term: term,
        entries: vec![Log::command(
            prev + 1,
            term,
            vec![(prev & 0xFF) as u8; payload],
        )],
        leader_commit_index: prev,
        ..Default::default()
    }
}

/// The answer the echo side gives: values derived from the request, so a test can tell that an
/// answer belongs to its own request.
pub(crate) fn echo_response(request: &Request) -> Response {
    match request {
        Request::AppendEntries(r) => AppendEntriesResponse {
            term: r.term,
            last_log: r.prev_log_entry + r.entries.len() as u64,
            success: true,
            ..Default::default()
        }
        .into(),
        Request::RequestVote(r) => RequestVoteResponse {
            term: r.term,
            peers: r.candidate.clone(),
            granted: true,
            ..Default::default()
        }
        .into(),
        Request::RequestPreVote(r) => RequestPreVoteResponse {
            term: r.term,
            granted: true,
            ..Default::default()
        }
        .into(),
        Request::InstallSnapshot(r) => InstallSnapshotResponse {
            term: r.term,
            success: true,
            ..Default::default()
        }
        .into(),
        Request::TimeoutNow(_) => TimeoutNowResponse::default().into(),
    }
}

/// Answer one RPC with [`echo_response`], reading a snapshot body to its end first.
pub(crate) fn echo(mut rpc: Rpc) {
    if let Some(mut reader) = rpc.snapshot.take() {
        let mut sink = Vec::new();
        if let Err(e) = reader.read_to_end(&mut sink) {
            rpc.respond_err(format!("snapshot body: {e}"));
            return;
        }
    }
    let response = echo_response(&rpc.request);
    rpc.respond_ok(response);
}

/// A thread answering every RPC of `consumer` with [`echo`] until the transport closes.
/// Returns how many it answered.
pub(crate) fn echo_server(consumer: Consumer) -> JoinHandle<u64> {
    std::thread::Builder::new()
        .name("echo-server".into())
        .spawn(move || {
            let mut n = 0;
            while let Ok(rpc) = consumer.recv() {
                echo(rpc);
                n += 1;
            }
            n
        })
        .expect("spawn echo server")
}
