//! A caller that blocks on a call (or on a pipeline's answers or room) runs the transport's
//! driver itself while the driver's thread sleeps (leader/follower, `Placement::Thread`): its
//! request is written from its own thread, its answer wakes it and nobody else, and
//! everything the driver thread would have done meanwhile still happens (other connections
//! served, timers fired), on whichever thread runs the driver.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::net::{finish, pair, wait_until};
use common::peers::{append, echo_response, peer, vote};
use raftnet::*;

/// Leader/follower is the epoll driver's (whatever `RAFTNET_BACKEND` says).
fn config() -> Config {
    Config::default()
        .timeout(Some(Duration::from_secs(10)))
        .backend(Backend::Epoll)
}

/// Answers every RPC on the spot (on the thread that runs the server's driver).
fn echo_service() -> Arc<dyn Service> {
    Arc::new(|rpc: Rpc| {
        let response = echo_response(&rpc.request);
        rpc.respond(Ok(response));
        None
    })
}

/// Long enough for a driver thread to finish its turn and its short spin, and go to sleep.
const IDLE: Duration = Duration::from_millis(3);

#[test]
fn sequential_calls_are_sent_and_awaited_on_the_callers_thread() {
    const CALLS: u64 = 40;
    let (client, server) = pair(config());
    server.set_service(Some(echo_service()));
    let target = server.local_addr();
    for term in 1..=CALLS {
        std::thread::sleep(IDLE);
        let answer = client
            .request_vote(&peer(), &target, vote(term), CallOptions::default())
            .wait()
            .expect("vote");
        assert_eq!(answer.term, term, "each answer is its own request's");
    }
    let m = client.metrics();
    eprintln!(
        "{CALLS} calls: ledTurns {}, reactorWakes {}, reactorSleeps {}, reactorTurns {}",
        m.led_turns, m.reactor_wakes, m.reactor_sleeps, m.reactor_turns
    );
    assert_eq!(server.metrics().rpcs_received[RpcType::RequestVote], CALLS);
    // Each call found the driver asleep (it had 3 ms to get there), so its caller sent it and
    // waited for it by running the driver: at least a turn to send and one for the answer.
    // Slack for a loaded machine on which the driver thread was still awake now and then.
    assert!(
        m.led_turns >= CALLS,
        "{} turns run by callers for {CALLS} calls",
        m.led_turns
    );
    // Nobody had to ring the driver thread's waker for a request (the connection's first dial
    // may need it, and a timer armed by a caller that is due before the thread planned to wake).
    assert!(
        m.reactor_wakes <= CALLS / 4,
        "the driver thread was rung {} times for {CALLS} calls",
        m.reactor_wakes
    );
}

#[test]
fn pipelined_appends_are_sent_and_collected_on_the_callers_thread() {
    const ROUNDS: u64 = 30;
    const BATCH: u64 = 16;
    let (client, server) = pair(config());
    server.set_service(Some(echo_service()));
    let pipeline = client
        .append_entries_pipeline(&peer(), &server.local_addr())
        .expect("pipeline");
    let (mut requests, mut futures, mut done) = (Vec::new(), Vec::new(), Vec::new());
    let mut next_prev = 0;
    for _ in 0..ROUNDS {
        std::thread::sleep(IDLE);
        requests.extend((0..BATCH).map(|i| append(7, next_prev + i, 8)));
        pipeline
            .send_batch(&mut requests, &mut futures)
            .expect("sent");
        // Collect the round's answers in blocking batches, each checked against its request.
        while done.len() < BATCH as usize {
            pipeline
                .recv_batch(&mut done, BATCH as usize)
                .expect("answers");
        }
        for (i, future) in done.drain(..).enumerate() {
            let answer = future.try_result().expect("completed").expect("answered");
            assert_eq!(
                answer.last_log,
                next_prev + i as u64 + 1,
                "answers in send order"
            );
        }
        futures.clear();
        next_prev += BATCH;
    }
    let m = client.metrics();
    eprintln!(
        "{ROUNDS} rounds of {BATCH}: ledTurns {}, reactorWakes {}, reactorSleeps {}, reactorTurns {}",
        m.led_turns, m.reactor_wakes, m.reactor_sleeps, m.reactor_turns
    );
    assert_eq!(
        server.metrics().rpcs_received[RpcType::AppendEntries],
        ROUNDS * BATCH
    );
    // Each round found the driver asleep: the caller wrote the batch from its own thread and
    // collected the answers by running the driver (a turn to send, at least one to read).
    assert!(
        m.led_turns >= 2 * ROUNDS,
        "{} turns run by the caller for {ROUNDS} rounds",
        m.led_turns
    );
    // Nobody rang the driver thread for a batch (opening the pipeline rings it once); slack
    // for a loaded machine on which the thread was still awake now and then.
    assert!(
        m.reactor_wakes <= ROUNDS / 4,
        "the driver thread was rung {} times for {ROUNDS} rounds",
        m.reactor_wakes
    );
}

/// Pin this thread to one of the CPUs it may use; the threads it starts from now on (the
/// transports' driver threads) inherit that.
fn pin_to_one_cpu() {
    use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
    use nix::unistd::Pid;
    let allowed = sched_getaffinity(Pid::from_raw(0)).expect("affinity");
    let cpu = (0..CpuSet::count())
        .find(|&cpu| allowed.is_set(cpu).unwrap_or(false))
        .expect("a CPU");
    let mut one = CpuSet::new();
    one.set(cpu).expect("a CPU in the set");
    sched_setaffinity(Pid::from_raw(0), &one).expect("pinned");
}

#[test]
fn on_one_cpu_a_caller_takes_the_driver_from_a_thread_that_only_looks_for_events() {
    const CALLS: u64 = 300;
    // Caller, client driver and server driver on one CPU: when calls come back to back, the
    // client's driver thread keeps looking for events between them (its spin), so it holds
    // the driver whenever the caller comes to wait. It steps aside for the waiting caller.
    let handle = std::thread::spawn(|| {
        pin_to_one_cpu();
        let (client, server) = pair(config());
        server.set_service(Some(echo_service()));
        let target = server.local_addr();
        for term in 1..=CALLS {
            let answer = client
                .request_vote(&peer(), &target, vote(term), CallOptions::default())
                .wait()
                .expect("vote");
            assert_eq!(answer.term, term, "each answer is its own request's");
        }
        client.metrics()
    });
    let m = handle.join().expect("calls");
    eprintln!(
        "{CALLS} calls on one CPU: ledTurns {}, reactorWakes {}, reactorSleeps {}, reactorTurns {}",
        m.led_turns, m.reactor_wakes, m.reactor_sleeps, m.reactor_turns
    );
    // Every turn counts in `reactor_turns`, a caller's in `led_turns` too. The driver's own
    // thread stayed out of the way: it ran a few turns (the first dial, a timer), not a turn
    // or two per call as when it kept the driver and the caller handed its calls over (541
    // and 357 of 634 and 725 turns in two of three runs before it stepped aside). Slack for a
    // loaded machine, on which a step aside may come too late now and then.
    let thread_turns = m.reactor_turns - m.led_turns;
    assert!(
        thread_turns <= CALLS / 4,
        "the driver's thread ran {thread_turns} of {} turns for {CALLS} calls",
        m.reactor_turns
    );
}

#[test]
fn a_receiving_thread_runs_the_driver_and_writes_its_answers_itself() {
    const CALLS: u64 = 40;
    let (client, server) = pair(config());
    // The server's Raft side is a thread that receives and answers (hashicorp's shape).
    let consumer = server.consumer().clone();
    let raft = std::thread::spawn(move || {
        let mut answered = 0;
        while let Ok(rpc) = consumer.recv() {
            let response = echo_response(&rpc.request);
            rpc.respond(Ok(response));
            answered += 1;
        }
        answered
    });
    let target = server.local_addr();
    for term in 1..=CALLS {
        std::thread::sleep(IDLE);
        let answer =
            finish(client.request_vote(&peer(), &target, vote(term), CallOptions::default()))
                .expect("vote");
        assert_eq!(answer.term, term);
    }
    let m = server.metrics();
    eprintln!(
        "server, {CALLS} calls: ledTurns {}, reactorWakes {}, consumerWakes {}",
        m.led_turns, m.reactor_wakes, m.consumer_wakes
    );
    // The receiving thread waited for each request by running the server's driver (the
    // request woke it, and nobody else), and wrote each answer from its own thread.
    assert!(
        m.led_turns >= CALLS,
        "{} server turns run by the receiving thread for {CALLS} requests",
        m.led_turns
    );
    assert!(
        m.consumer_wakes <= CALLS / 4,
        "the receiving thread was woken {} times for {CALLS} requests",
        m.consumer_wakes
    );
    server.close();
    assert_eq!(raft.join().expect("raft thread"), CALLS);
}

#[test]
fn the_driver_thread_serves_what_arrives_after_a_caller_ran_it() {
    let (a, b) = pair(config());
    b.set_service(Some(echo_service()));
    // a's Raft side answers on a thread of its own, through the consumer.
    let consumer = a.consumer().clone();
    let served = Arc::new(AtomicU64::new(0));
    let raft = {
        let served = served.clone();
        std::thread::spawn(move || {
            while let Ok(rpc) = consumer.recv() {
                let response = echo_response(&rpc.request);
                served.fetch_add(1, Ordering::SeqCst);
                rpc.respond(Ok(response));
            }
        })
    };
    for round in 1..=5 {
        // A call from a: its caller runs a's driver until the answer comes, then hands it back.
        std::thread::sleep(IDLE);
        let answer = finish(a.request_vote(
            &peer(),
            &b.local_addr(),
            vote(round),
            CallOptions::default(),
        ))
        .expect("a's call");
        assert_eq!(answer.term, round);
        // Then nobody calls from a: what b sends a now must wake a's driver thread.
        std::thread::sleep(IDLE);
        let back = finish(b.request_vote(
            &peer(),
            &a.local_addr(),
            vote(100 + round),
            CallOptions::default(),
        ))
        .expect("b's call, served by a's driver thread");
        assert_eq!(back.term, 100 + round);
        assert_eq!(served.load(Ordering::SeqCst), round);
    }
    assert!(a.metrics().led_turns > 0, "a's callers ran its driver");
    a.close();
    raft.join().expect("a's Raft thread");
}

#[test]
fn a_deadline_armed_by_a_caller_fires_while_the_driver_thread_sleeps() {
    // Calls time out after a minute unless they say otherwise: the driver thread plans its
    // sleep around that.
    let (client, server) = pair(config().timeout(Some(Duration::from_secs(60))));
    // The server answers the first request and keeps the others unanswered until the end.
    let consumer = server.consumer().clone();
    let holder = std::thread::spawn(move || {
        let first = consumer.recv().expect("the first request");
        let response = echo_response(&first.request);
        first.respond(Ok(response));
        let mut held = Vec::new();
        while let Ok(rpc) = consumer.recv() {
            held.push(rpc);
        }
        held.len()
    });
    let target = server.local_addr();
    // The connection is up, and the client's driver thread sleeps with the first call's
    // timer (a minute away) as its next.
    finish(client.request_vote(&peer(), &target, vote(1), CallOptions::default())).expect("vote");
    std::thread::sleep(IDLE);
    let deadline = Instant::now() + Duration::from_millis(200);
    // Sent by this thread, which then never blocks on it: the deadline's timer was armed by a
    // caller, and the sleeping driver thread must be told to fire it.
    let call = client.request_vote(&peer(), &target, vote(2), CallOptions::deadline(deadline));
    wait_until("the call to time out", || call.is_done());
    let resolved_at = Instant::now();
    assert!(resolved_at >= deadline, "resolved before its deadline");
    assert!(
        resolved_at < deadline + Duration::from_secs(20),
        "resolved {:?} after its deadline",
        resolved_at - deadline
    );
    match call.try_result() {
        Some(Err(Error::Timeout)) => {}
        other => panic!("expected a timeout, got {other:?}"),
    }
    assert!(
        client.metrics().led_turns > 0,
        "the call was sent by its caller"
    );
    client.close();
    server.close();
    assert_eq!(holder.join().expect("holder"), 1);
}
