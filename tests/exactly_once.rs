//! Every outbound call and pipelined append resolves exactly once, with an error, when the
//! serving transport goes away, when the calling transport closes, or when the pipeline closes;
//! nothing is left waiting.

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::net::*;
use common::peers::*;
use raftnet::message::*;
use raftnet::*;

const THREADS: usize = 8;
/// Per thread: 50 single appends, 50 votes, 25 pipelined appends: 8 × 125 = 1000 calls.
const APPENDS: usize = 50;
const VOTES: usize = 50;
const PIPELINED: usize = 25;
const TOTAL: usize = THREADS * (APPENDS + VOTES + PIPELINED);
const TIMEOUT: Duration = Duration::from_secs(10);
/// Slack on top of a call's deadline for the machine to deliver the result.
const MARGIN: Duration = Duration::from_secs(5);
/// The calling transport's timeout in [`run`]: far beyond anything a test run waits, so no call
/// there can fail by its own deadline, however slow the machine: a call's error can only come
/// from the close.
const CALL_TIMEOUT: Duration = Duration::from_secs(3600);
/// How long after the close every call of [`run`] must have resolved: [`TIMEOUT`] + [`MARGIN`],
/// the bound these calls were held to when [`TIMEOUT`] was their deadline. The close resolves
/// them at once (measured: the last 6–160 ms after it, unloaded).
const RESOLVE_WITHIN: Duration = Duration::from_secs(15);

/// The Raft side of the serving transport: takes every RPC and holds it without answering until
/// the transport closes. Returns the RPCs it held (dropping them is then harmless).
fn holder(consumer: Consumer, held: Arc<AtomicUsize>) -> JoinHandle<Vec<Rpc>> {
    std::thread::spawn(move || {
        let mut rpcs = Vec::new();
        while let Ok(rpc) = consumer.recv() {
            rpcs.push(rpc);
            held.fetch_add(1, Ordering::SeqCst);
        }
        rpcs
    })
}

enum Pending {
    Append(Call<AppendEntriesResponse>),
    Vote(Call<RequestVoteResponse>),
    Piped(AppendFuture),
}

impl Pending {
    fn is_done(&self) -> bool {
        match self {
            Pending::Append(c) => c.is_done(),
            Pending::Vote(c) => c.is_done(),
            Pending::Piped(f) => f.is_done(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Pending::Append(_) => "append",
            Pending::Vote(_) => "vote",
            Pending::Piped(_) => "pipelined",
        }
    }

    /// Wait for the result until `deadline`; `None` if it did not come.
    fn wait_until(self, deadline: Instant) -> Option<Result<()>> {
        match self {
            Pending::Append(c) => c.wait_deadline(deadline).ok().map(|r| r.map(drop)),
            Pending::Vote(c) => c.wait_deadline(deadline).ok().map(|r| r.map(drop)),
            Pending::Piped(f) => {
                while !f.is_done() {
                    if Instant::now() >= deadline {
                        return None;
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                Some(f.try_result().expect("done").map(drop))
            }
        }
    }
}

/// One result per call, as recorded by the thread that made it.
struct Outcome {
    kind: &'static str,
    result: Option<Result<()>>,
    /// When it arrived, and the latest moment it was allowed to.
    resolved_at: Instant,
    allowed_until: Instant,
}

struct Run {
    outcomes: Vec<Outcome>,
    /// Per pipeline: its futures' results in the order `recv` gave them, and how `recv` ended.
    recv_orders: Vec<(Vec<u64>, Result<()>)>,
    closed_at: Instant,
}

/// Make 1000 calls from 8 threads against a server that holds them, then run `close` (which
/// closes the server or the client), and collect every call's result.
fn run(close_client: bool) -> Run {
    let server_cfg = Config::default().timeout(Some(TIMEOUT));
    let client_cfg = Config::default()
        .timeout(Some(CALL_TIMEOUT))
        .max_rpcs_in_flight(PIPELINED + 7);
    let server = bind(server_cfg);
    let client = Arc::new(bind(client_cfg));
    let mut server = Some(server);
    let held = Arc::new(AtomicUsize::new(0));
    let holder = holder(server.as_ref().unwrap().consumer().clone(), held.clone());
    let target = server.as_ref().unwrap().local_addr();

    let submitted = Arc::new(Barrier::new(THREADS + 1));
    let all_held = Arc::new(Barrier::new(THREADS + 1));
    let checked = Arc::new(Barrier::new(THREADS + 1));
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let recv_orders = Arc::new(Mutex::new(Vec::new()));

    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let client = client.clone();
            let target = target.clone();
            let (submitted, all_held, checked) =
                (submitted.clone(), all_held.clone(), checked.clone());
            let outcomes = outcomes.clone();
            let recv_orders = recv_orders.clone();
            std::thread::spawn(move || {
                let base = (t * 1000) as u64;
                let pipeline = client
                    .append_entries_pipeline(&peer(), &target)
                    .expect("pipeline");
                let mut pending = Vec::new();
                for i in 0..APPENDS.max(VOTES).max(PIPELINED) {
                    let id = base + i as u64 + 1;
                    if i < APPENDS {
                        pending.push(Pending::Append(client.append_entries(
                            &peer(),
                            &target,
                            append(1, id, 16),
                            CallOptions::default(),
                        )));
                    }
                    if i < VOTES {
                        pending.push(Pending::Vote(client.request_vote(
                            &peer(),
                            &target,
                            vote(id),
                            CallOptions::default(),
                        )));
                    }
                    if i < PIPELINED {
                        match pipeline.try_send(append(1, id, 16)) {
                            Ok(f) => pending.push(Pending::Piped(f)),
                            Err(e) => panic!("pipelined append {i} not sent: {e:?}"),
                        }
                    }
                }
                submitted.wait();
                all_held.wait();
                // The server holds every request: nothing may have resolved yet.
                for p in &pending {
                    assert!(
                        !p.is_done(),
                        "a {} call resolved before the close",
                        p.kind()
                    );
                }
                checked.wait();
                // The close comes right after this barrier; every call must have resolved
                // within RESOLVE_WITHIN of it (its own deadline is an hour away).
                let allowed_until = Instant::now() + RESOLVE_WITHIN;
                let mut mine = Vec::new();
                for p in pending {
                    let kind = p.kind();
                    let result = p.wait_until(allowed_until);
                    mine.push(Outcome {
                        kind,
                        result,
                        resolved_at: Instant::now(),
                        allowed_until,
                    });
                }
                // The pipeline's consumer side: every future once, in send order, then an error.
                let mut order = Vec::new();
                let end = loop {
                    match pipeline.recv() {
                        Ok(f) => {
                            assert!(f.is_done(), "recv gave an unresolved future");
                            order.push(f.request().prev_log_entry - base);
                        }
                        Err(e) => break Err(e),
                    }
                };
                outcomes.lock().unwrap().extend(mine);
                recv_orders.lock().unwrap().push((order, end));
            })
        })
        .collect();

    submitted.wait();
    wait_until("the server to hold all 1000 requests", || {
        held.load(Ordering::SeqCst) >= TOTAL
    });
    assert_eq!(held.load(Ordering::SeqCst), TOTAL);
    all_held.wait();
    checked.wait();
    let closed_at = Instant::now();
    if close_client {
        client.close();
    } else {
        drop(server.take());
    }
    for w in workers {
        w.join().expect("worker thread");
    }
    if close_client {
        // Still open: nothing answered, nothing dropped; now close it too.
        drop(server.take());
    }
    client.close();
    drop(holder.join().expect("holder thread"));
    let outcomes = std::mem::take(&mut *outcomes.lock().unwrap());
    let recv_orders = std::mem::take(&mut *recv_orders.lock().unwrap());
    Run {
        outcomes,
        recv_orders,
        closed_at,
    }
}

fn summarize(run: &Run) -> BTreeMap<String, usize> {
    let mut kinds = BTreeMap::new();
    for o in &run.outcomes {
        let key = match &o.result {
            None => format!("{}: unresolved", o.kind),
            Some(Ok(())) => format!("{}: ok", o.kind),
            Some(Err(e)) => format!("{}: {e}", o.kind),
        };
        *kinds.entry(key).or_insert(0) += 1;
    }
    let slowest = run
        .outcomes
        .iter()
        .map(|o| o.resolved_at.saturating_duration_since(run.closed_at))
        .max()
        .unwrap_or_default();
    eprintln!("results: {kinds:#?}; last result {slowest:?} after the close");
    kinds
}

fn check_common(run: &Run) {
    assert_eq!(run.outcomes.len(), TOTAL, "one recorded result per call");
    for o in &run.outcomes {
        assert!(
            o.result.is_some(),
            "a {} call did not resolve within {RESOLVE_WITHIN:?} of the close",
            o.kind
        );
        assert!(o.resolved_at <= o.allowed_until + Duration::from_secs(1));
        assert!(
            matches!(o.result, Some(Err(_))),
            "a {} call succeeded though nobody answered it",
            o.kind
        );
    }
    assert_eq!(run.recv_orders.len(), THREADS);
    for (order, end) in &run.recv_orders {
        let expected: Vec<u64> = (1..=PIPELINED as u64).collect();
        assert_eq!(
            order, &expected,
            "recv yields each future once, in send order"
        );
        assert!(end.is_err(), "recv ends with an error once drained");
    }
}

#[test]
fn server_gone_resolves_every_call_once_with_an_error() {
    let run = run(false);
    summarize(&run);
    check_common(&run);
    // No call can have reached its own deadline (CALL_TIMEOUT is an hour): every one failed
    // because the connection was lost, and says so.
    for o in &run.outcomes {
        assert_ne!(
            o.result,
            Some(Err(Error::Timeout)),
            "a {} call timed out instead of failing with the lost connection",
            o.kind
        );
        assert!(
            matches!(o.result, Some(Err(Error::Io(_)))),
            "a {} call failed otherwise than with the lost connection: {:?}",
            o.kind,
            o.result
        );
    }
}

#[test]
fn client_close_resolves_every_call_once_with_shutdown() {
    let run = run(true);
    summarize(&run);
    check_common(&run);
    for o in &run.outcomes {
        assert_eq!(
            o.result,
            Some(Err(Error::Shutdown)),
            "a {} call failed otherwise than with Shutdown",
            o.kind
        );
    }
    for (_, end) in &run.recv_orders {
        assert_eq!(end, &Err(Error::Shutdown));
    }
}

/// Calls submitted while the calling transport closes: each resolves once, with Shutdown
/// (the server holds everything it receives, so nothing can succeed).
#[test]
fn calls_racing_close_resolve_with_shutdown() {
    // Up to 1600 calls in flight, each on a connection of its own from this one address: more
    // than the per-address limit lets in by default.
    let server = bind(
        Config::default()
            .timeout(Some(TIMEOUT))
            .max_connections_per_address(2048),
    );
    let held = Arc::new(AtomicUsize::new(0));
    let holder = holder(server.consumer().clone(), held.clone());
    let client = Arc::new(bind(
        Config::default()
            .timeout(Some(TIMEOUT))
            .max_rpcs_in_flight(8),
    ));
    let target = server.local_addr();
    let started = Arc::new(Barrier::new(5));
    let racers: Vec<_> = (0..4u64)
        .map(|t| {
            let client = client.clone();
            let target = target.clone();
            let started = started.clone();
            std::thread::spawn(move || {
                let mut calls = Vec::new();
                let mut after_close = 0;
                let mut i = 0u64;
                started.wait();
                // Keep submitting until some calls were made after the close too (each call
                // opens a connection: at most 400 before the close, then wait for it).
                while after_close < 20 {
                    if client.is_shutdown() {
                        after_close += 1;
                    } else if i >= 400 {
                        std::thread::sleep(Duration::from_millis(1));
                        continue;
                    }
                    i += 1;
                    calls.push(client.request_vote(
                        &peer(),
                        &target,
                        vote(t * 1_000_000 + i),
                        CallOptions::default(),
                    ));
                    if i.is_multiple_of(64) {
                        std::thread::yield_now();
                    }
                }
                let deadline = Instant::now() + TIMEOUT + MARGIN;
                calls
                    .into_iter()
                    .map(|c| c.wait_deadline(deadline).ok())
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    started.wait();
    wait_until("some requests to reach the server", || {
        held.load(Ordering::SeqCst) >= 50
    });
    client.close();
    let mut total = 0;
    for r in racers {
        for result in r.join().expect("racer") {
            total += 1;
            assert_eq!(result, Some(Err(Error::Shutdown)));
        }
    }
    eprintln!(
        "{total} racing calls, {} reached the server",
        held.load(Ordering::SeqCst)
    );
    drop(server);
    drop(holder.join().unwrap());
}

/// How the serving side treats pipelined appends in the pipeline tests: answers those with
/// `prev_log_entry < answered` and holds the rest.
fn partial_server(consumer: Consumer, answered: u64, held: Arc<AtomicUsize>) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let mut kept = Vec::new();
        while let Ok(rpc) = consumer.recv() {
            let Request::AppendEntries(r) = &rpc.request else {
                panic!("unexpected request {:?}", rpc.request);
            };
            if r.prev_log_entry < answered {
                echo(rpc);
            } else {
                kept.push(rpc);
                held.fetch_add(1, Ordering::SeqCst);
            }
        }
    })
}

const PIPE_SENT: u64 = 50;
const PIPE_ANSWERED: u64 = 10;

/// Send 50 pipelined appends; the server answers the first 10 and holds the rest. Returns the
/// futures once the first 10 are answered and the other 40 are held.
fn pipeline_half_answered(
    client: &NetTransport,
    server: &NetTransport,
    held: &AtomicUsize,
) -> (AppendPipeline, Vec<AppendFuture>) {
    let pipeline = client
        .append_entries_pipeline(&peer(), &server.local_addr())
        .unwrap();
    let futures: Vec<AppendFuture> = (0..PIPE_SENT)
        .map(|i| pipeline.send(append(1, i, 8)).unwrap())
        .collect();
    for f in &futures[..PIPE_ANSWERED as usize] {
        let r = f.clone().wait().expect("answered");
        assert_eq!(r.last_log, f.request().prev_log_entry + 1);
    }
    wait_until("the server to hold the other requests", || {
        held.load(Ordering::SeqCst) == (PIPE_SENT - PIPE_ANSWERED) as usize
    });
    for f in &futures[PIPE_ANSWERED as usize..] {
        assert!(!f.is_done(), "an unanswered future resolved");
    }
    (pipeline, futures)
}

/// `recv` yields every future exactly once, in send order, with the same result as the future,
/// then fails with `end`.
fn drain_in_order(pipeline: &AppendPipeline, futures: &[AppendFuture], end: &Error) {
    for (i, f) in futures.iter().enumerate() {
        let got = pipeline.recv().expect("a completed future");
        assert_eq!(got.request().prev_log_entry, i as u64, "send order");
        assert_eq!(got.try_result(), f.try_result());
    }
    assert_eq!(pipeline.recv().err().as_ref(), Some(end));
    assert_eq!(pipeline.try_recv().err().as_ref(), Some(end));
}

#[test]
fn pipeline_close_fails_outstanding_with_pipeline_closed() {
    let cfg = Config::default()
        .timeout(Some(TIMEOUT))
        .max_rpcs_in_flight(64);
    let (client, server) = pair(cfg);
    let held = Arc::new(AtomicUsize::new(0));
    let srv = partial_server(server.consumer().clone(), PIPE_ANSWERED, held.clone());
    let (pipeline, futures) = pipeline_half_answered(&client, &server, &held);

    pipeline.close();
    for (i, f) in futures.iter().enumerate() {
        let r = f.try_result().expect("resolved by close()");
        if (i as u64) < PIPE_ANSWERED {
            assert!(r.is_ok(), "answered future {i} changed to {r:?}");
        } else {
            assert_eq!(r, Err(Error::PipelineClosed), "future {i}");
        }
        // A future keeps its one result.
        assert_eq!(f.clone().wait(), r);
    }
    drain_in_order(&pipeline, &futures, &Error::PipelineClosed);
    assert_eq!(
        pipeline.send(append(1, 99, 8)).err(),
        Some(Error::PipelineClosed)
    );
    pipeline.close(); // idempotent
    drop(pipeline);
    // The transport itself is unaffected.
    let held_before = held.load(Ordering::SeqCst);
    drop(server);
    srv.join().unwrap();
    assert_eq!(held.load(Ordering::SeqCst), held_before);
}

#[test]
fn pipeline_server_killed_fails_outstanding_with_an_error() {
    let cfg = Config::default()
        .timeout(Some(TIMEOUT))
        .max_rpcs_in_flight(64);
    let (client, server) = pair(cfg);
    let held = Arc::new(AtomicUsize::new(0));
    let srv = partial_server(server.consumer().clone(), PIPE_ANSWERED, held.clone());
    let (pipeline, futures) = pipeline_half_answered(&client, &server, &held);

    let killed = Instant::now();
    drop(server);
    srv.join().unwrap();
    let deadline = killed + TIMEOUT + MARGIN;
    let mut error = None;
    for (i, f) in futures.iter().enumerate() {
        while !f.is_done() {
            assert!(Instant::now() < deadline, "future {i} never resolved");
            std::thread::sleep(Duration::from_millis(2));
        }
        let r = f.try_result().unwrap();
        if (i as u64) < PIPE_ANSWERED {
            assert!(r.is_ok(), "answered future {i} changed to {r:?}");
        } else {
            let e = r.expect_err("the server is gone");
            assert_ne!(e, Error::PipelineClosed, "nobody closed the pipeline");
            match &error {
                None => error = Some(e),
                Some(first) => assert_eq!(&e, first, "one error fails them all"),
            }
        }
    }
    let error = error.unwrap();
    eprintln!("outstanding pipelined appends failed with: {error}");
    drain_in_order(&pipeline, &futures, &error);
    assert!(pipeline.send(append(1, 99, 8)).is_err());
}
