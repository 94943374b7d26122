//! `NetTransport::bind_on`: the reactor as a task on a tokio runtime. The generic contract runs
//! in `transport_generic` (`net_on_runtime::*`); these are the ways the task can end: `close`
//! from outside the runtime (waits), from inside it (returns at once), and the runtime shutting
//! down under it. In each, every call resolves exactly once. And while the task waits, a call
//! is written by the task that makes it and an answer by the task that gives it.

mod common;

use std::time::{Duration, Instant};

use common::fixtures::*;
use common::net::*;
use raftnet::message::*;
use raftnet::*;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn on(runtime: &tokio::runtime::Runtime) -> NetTransport {
    NetTransport::bind_on("127.0.0.1:0", None, test_config(), runtime.handle()).unwrap()
}

fn vote() -> RequestVoteRequest {
    RequestVoteRequest {
        term: 4,
        ..Default::default()
    }
}

/// `n` votes from `from` to `to`, which takes them and never answers (`held` keeps them).
fn unanswered_votes(
    from: &NetTransport,
    to: &NetTransport,
    n: usize,
) -> (Vec<Call<RequestVoteResponse>>, Vec<Rpc>) {
    let calls: Vec<_> = (0..n)
        .map(|_| {
            from.request_vote(
                &ServerId::from("to"),
                &to.local_addr(),
                vote(),
                CallOptions::default(),
            )
        })
        .collect();
    let held = (0..n)
        .map(|_| {
            to.consumer()
                .recv_deadline(Instant::now() + TEST_TIMEOUT)
                .unwrap()
                .unwrap()
        })
        .collect();
    (calls, held)
}

#[test]
fn a_runtime_reactor_serves_and_calls() {
    let rt = runtime();
    let a = on(&rt);
    let b = bind(test_config());
    // a's Raft side is a task on the same runtime.
    let consumer = a.consumer().clone();
    rt.spawn(async move {
        while let Ok(rpc) = consumer.recv_async().await {
            let term = match &rpc.request {
                Request::RequestVote(v) => v.term,
                _ => 0,
            };
            rpc.respond_ok(RequestVoteResponse {
                term: term + 1,
                granted: true,
                ..Default::default()
            });
        }
    });
    let answer = b
        .request_vote(
            &ServerId::from("a"),
            &a.local_addr(),
            vote(),
            CallOptions::default(),
        )
        .wait()
        .unwrap();
    assert_eq!((answer.term, answer.granted), (5, true));

    // And a calls out, awaited by a task on its own runtime.
    let b_consumer = b.consumer().clone();
    let server = std::thread::spawn(move || {
        let rpc = b_consumer.recv().unwrap();
        rpc.respond_ok(RequestVoteResponse {
            term: 9,
            ..Default::default()
        });
    });
    let call = a.request_vote(
        &ServerId::from("b"),
        &b.local_addr(),
        vote(),
        CallOptions::default(),
    );
    let answer = rt.block_on(call).unwrap();
    assert_eq!(answer.term, 9);
    server.join().unwrap();
    a.close();
    b.close();
}

#[test]
fn close_from_outside_the_runtime_waits_for_everything() {
    let rt = runtime();
    let a = on(&rt);
    let b = bind(test_config());
    let (calls, _held) = unanswered_votes(&a, &b, 50);
    a.close();
    // close has returned: every call is already resolved, with Shutdown.
    for call in calls {
        match call.try_result() {
            Some(Err(Error::Shutdown)) => {}
            other => panic!("expected Shutdown at once, got {other:?}"),
        }
    }
    assert_eq!(a.open_connections(), 0);
    b.close();
}

#[test]
fn close_from_inside_the_runtime_returns_and_calls_resolve() {
    let rt = runtime();
    let a = on(&rt);
    let b = bind(test_config());
    let (calls, _held) = unanswered_votes(&a, &b, 50);
    let results = rt.block_on(async {
        a.close();
        let mut results = Vec::new();
        for call in calls {
            results.push(tokio::time::timeout(TEST_TIMEOUT, call).await);
        }
        results
    });
    for result in results {
        match result {
            Ok(Err(Error::Shutdown)) => {}
            other => panic!("expected Shutdown, got {other:?}"),
        }
    }
    b.close();
}

#[test]
fn runtime_shutdown_resolves_every_call() {
    let rt = runtime();
    let a = on(&rt);
    let b = bind(test_config());
    let (calls, _held) = unanswered_votes(&a, &b, 50);
    rt.shutdown_timeout(Duration::from_secs(10));
    for call in calls {
        match call.wait_deadline(std::time::Instant::now() + TEST_TIMEOUT) {
            Ok(Err(Error::Shutdown)) => {}
            other => panic!("expected Shutdown, got {other:?}"),
        }
    }
    // With its reactor gone, the transport refuses new calls at once.
    let late = a.request_vote(
        &ServerId::from("b"),
        &b.local_addr(),
        vote(),
        CallOptions::default(),
    );
    assert!(matches!(late.wait(), Err(Error::Shutdown)));
    a.close();
    b.close();
}

/// While the driver task waits, an awaited call is written from the calling task and an answer
/// from the answering task (each runs a turn in the driver task's place) instead of each waking
/// the driver task for a turn of its own.
#[test]
fn calls_and_answers_are_written_by_the_tasks_that_give_them() {
    const CALLS: u64 = 40;
    /// Long enough for a driver task to finish its turn and wait.
    const IDLE: Duration = Duration::from_millis(3);
    let rt = runtime();
    let client = on(&rt);
    let server = on(&rt);
    let consumer = server.consumer().clone();
    let serving = rt.spawn(async move {
        let mut answered = 0u64;
        while let Ok(rpc) = consumer.recv_async().await {
            let response = common::peers::echo_response(&rpc.request);
            rpc.respond(Ok(response));
            answered += 1;
        }
        answered
    });
    let target = server.local_addr();
    rt.block_on(async {
        for term in 1..=CALLS {
            tokio::time::sleep(IDLE).await;
            let request = RequestVoteRequest {
                term,
                ..Default::default()
            };
            let answer = client
                .request_vote(
                    &ServerId::from("server"),
                    &target,
                    request,
                    CallOptions::default(),
                )
                .await
                .expect("vote");
            assert_eq!(answer.term, term, "each answer is its own request's");
        }
    });
    let (c, s) = (client.metrics(), server.metrics());
    eprintln!(
        "{CALLS} calls: client ledTurns {} reactorWakes {}; server ledTurns {} reactorWakes {}",
        c.led_turns, c.reactor_wakes, s.led_turns, s.reactor_wakes
    );
    // Each call found the client's driver task waiting (it had 3 ms), so the calling task ran
    // the turn that wrote it; each answer likewise on the server. Slack for a loaded machine,
    // where a driver task may still hold its driver now and then.
    assert!(
        c.led_turns >= CALLS / 2,
        "{} client turns run by the calling task for {CALLS} calls",
        c.led_turns
    );
    assert!(
        s.led_turns >= CALLS / 2,
        "{} server turns run by the answering task for {CALLS} answers",
        s.led_turns
    );
    // Neither driver task was rung for them (the first dial may need it).
    assert!(
        c.reactor_wakes + s.reactor_wakes <= CALLS / 2,
        "driver tasks rung {} + {} times for {CALLS} calls",
        c.reactor_wakes,
        s.reactor_wakes
    );
    client.close();
    server.close();
    let answered = rt.block_on(serving).expect("the serving task");
    assert_eq!(answered, CALLS);
}
