//! Calls: a round trip, answers given in place, deadlines, the pool, and a closed key that
//! never reaches the connection that reuses its slot.

use super::*;

#[test]
fn the_engine_can_move_between_threads() {
    fn is_send<T: Send>() {}
    is_send::<Engine>();
}

#[test]
fn a_call_round_trips_and_its_connection_is_pooled() {
    let mut pair = Pair::new(config());
    let vote = pair.vote(3, None);
    pair.drive();
    assert!(vote.try_result().is_none(), "no answer yet");
    assert_eq!(pair.answer_votes(), 1);
    pair.drive();
    assert_eq!(vote.try_result().unwrap().unwrap().term, 3);
    assert_eq!(
        pair.client
            .shared
            .gauges
            .idle_pooled
            .load(Ordering::Relaxed),
        1
    );
    assert_eq!(pair.client.metrics().dials, 1);
    assert_eq!(pair.server.metrics().rpcs_received[RpcType::RequestVote], 1);
}

/// A service's answer given while the engine serves is written with the read that brought its
/// request (no completion queue, no turn in between); one given later from elsewhere takes the
/// completion queue. Both reach their callers.
#[test]
fn a_service_answer_given_in_place_is_written_with_the_read() {
    let mut pair = Pair::new(config());
    let kept = Arc::new(std::sync::Mutex::new(Vec::new()));
    let keep = kept.clone();
    pair.server
        .shared
        .handlers
        .set_service(Some(Arc::new(move |rpc: Rpc| {
            let Request::RequestVote(v) = &rpc.request else {
                return Some(rpc);
            };
            if v.term == 4 {
                keep.lock().unwrap().push(rpc);
                return None;
            }
            let term = v.term;
            rpc.respond_ok(RequestVoteResponse {
                term,
                granted: true,
                ..Default::default()
            });
            None
        })));
    let in_place = pair.vote(3, None);
    // The client's turn sends the vote, and the delivery is the server's read.
    pair.step(Side::Client);
    let server = &mut pair.server;
    assert!(server.shared.handoff.completions.is_empty());
    let mut dirty = Vec::new();
    server.engine.take_dirty(&mut dirty);
    assert_eq!(
        dirty.len(),
        1,
        "the answer is queued on its connection already"
    );
    let (queue, _) = server.engine.send_queue(dirty[0]).expect("open");
    assert!(!queue.is_empty());
    pair.server.engine.mark_dirty(dirty[0]);
    pair.drive();
    assert_eq!(in_place.try_result().unwrap().unwrap().term, 3);

    let later = pair.vote(4, None);
    pair.drive();
    let rpc = kept.lock().unwrap().pop().expect("kept");
    rpc.respond_ok(RequestVoteResponse {
        term: 4,
        ..Default::default()
    });
    assert_eq!(pair.server.shared.handoff.completions.len(), 1);
    pair.drive();
    assert_eq!(later.try_result().unwrap().unwrap().term, 4);
    assert!(pair.server.shared.consumer.is_empty());
    // Both were taken by the service: each timed once, from decoding to handled.
    assert_eq!(
        pair.server.metrics().rpc_enqueue[RpcType::RequestVote].count,
        2
    );
}

#[test]
fn a_deadline_fails_the_call_and_a_late_answer_never_reaches_a_later_call() {
    let mut pair = Pair::new(config());
    let first = pair.vote(1, Some(pair.now + Duration::from_secs(1)));
    pair.drive();
    assert_eq!(pair.server.shared.consumer.len(), 1);
    // Not yet due.
    pair.advance(Duration::from_millis(999));
    pair.drive();
    assert!(first.try_result().is_none());
    pair.advance(Duration::from_millis(1));
    pair.drive();
    assert_eq!(first.try_result().unwrap().unwrap_err(), Error::Timeout);
    // The connection went with the call; the answer arrives late and goes nowhere.
    assert_eq!(pair.client.closed.len(), 1);
    assert_eq!(pair.answer_votes(), 1);
    pair.drive();
    // The next call dials afresh and gets its own answer, not the late one.
    let second = pair.vote(2, None);
    pair.drive();
    assert_eq!(pair.answer_votes(), 1);
    pair.drive();
    assert_eq!(second.try_result().unwrap().unwrap().term, 2);
    assert_eq!(pair.client.metrics().dials, 2);
}

#[test]
fn a_call_past_its_deadline_fails_before_anything_is_sent() {
    let mut pair = Pair::new(config());
    let vote = pair.vote(1, Some(pair.now));
    pair.drive();
    assert_eq!(vote.try_result().unwrap().unwrap_err(), Error::Timeout);
    assert_eq!(pair.client.metrics().dials, 0);
}

#[test]
fn a_dial_that_does_not_complete_in_time_is_unreachable() {
    let mut pair = Pair::new(config());
    pair.auto_connect = false;
    let vote = pair.vote(1, None);
    pair.drive();
    assert_eq!(pair.client.dials.len(), 1);
    pair.advance(Duration::from_secs(10));
    pair.drive();
    let error = vote.try_result().unwrap().unwrap_err();
    assert!(error.is_unreachable(), "{error:?}");
    assert_eq!(pair.client.metrics().dial_failures, 1);
}

#[test]
fn pooled_connections_are_reused_most_recent_first_and_the_pool_is_bounded() {
    let mut pair = Pair::new(config().max_pool(2));
    // Three calls at once: three connections.
    let mut calls: Vec<_> = (1..=3).map(|t| pair.vote(t, None)).collect();
    pair.drive();
    assert_eq!(pair.client.metrics().dials, 3);
    // Answer them in order; the first two go back to the pool, the third is closed.
    assert_eq!(pair.answer_votes(), 3);
    pair.drive();
    for (i, call) in calls.iter_mut().enumerate() {
        assert_eq!(call.try_result().unwrap().unwrap().term, i as u64 + 1);
    }
    assert_eq!(
        pair.client
            .shared
            .gauges
            .idle_pooled
            .load(Ordering::Relaxed),
        2
    );
    assert_eq!(pair.client.closed.len(), 1);
    // The next call takes the connection returned last (the second call's).
    let pooled = pair.client.engine.pools.values().next().unwrap().clone();
    let next = pair.vote(9, None);
    pair.drive();
    assert_eq!(pair.client.metrics().dials, 3, "no new dial");
    assert_eq!(
        pair.client.engine.pools.values().next().unwrap(),
        &pooled[..1],
        "the most recently returned connection was taken"
    );
    assert_eq!(pair.answer_votes(), 1);
    pair.drive();
    assert_eq!(next.try_result().unwrap().unwrap().term, 9);
}

#[test]
fn a_closed_key_never_reaches_the_connection_that_reuses_its_slot() {
    let mut node = Node::new(config());
    let first = node
        .engine
        .handle_accepted(addr(CLIENT_ADDR), *START)
        .expect("admitted");
    node.engine.handle_eof(first);
    let second = node
        .engine
        .handle_accepted(addr(CLIENT_ADDR), *START)
        .expect("admitted");
    assert_eq!(first.index(), second.index(), "the slot is reused");
    assert_ne!(first, second);
    // Input for the old key is ignored; the new connection is untouched.
    node.engine.handle_bytes(first, b"garbage", *START);
    node.engine.handle_eof(first);
    assert!(node.engine.is_open(second));
    assert_eq!(node.metrics().protocol_errors, 0);
}

/// Churn: calls to a peer that refuses, each dial failing long before its timeout and its
/// call's deadline. Their timer entries outlive the connections; the engine sweeps them out, so
/// the heap stays within a bound of the connections open (one at a time here) instead of growing with
/// every call (2,000 entries for these 1,000 calls without the sweep).
#[test]
fn timers_of_closed_connections_are_swept_under_churn() {
    let mut pair = Pair::new(config());
    pair.auto_connect = false;
    let deadline = Some(pair.now + Duration::from_secs(60));
    let mut most = 0;
    // Fewer under Miri (still 160 entries without the sweep, over the 66 it allows).
    let calls = if cfg!(miri) { 80 } else { 1000 };
    for term in 1..=calls {
        let vote = pair.vote(term, deadline);
        pair.drive();
        let (key, _) = pair.client.dials.pop().expect("a dial per call");
        pair.client
            .engine
            .handle_connect_failed(key, io::ErrorKind::ConnectionRefused.into());
        pair.drive();
        let error = vote.try_result().unwrap().unwrap_err();
        assert!(error.is_unreachable(), "{error:?}");
        most = most.max(pair.client.engine.timers.len());
    }
    assert_eq!(pair.client.metrics().dial_failures, calls);
    // At most one connection is open at a time (the one dialling): two entries it may hold,
    // and the slack the sweep allows.
    assert!(
        most <= 2 + crate::engine::TIMER_SLACK,
        "{most} timer entries with at most one connection open"
    );
}
