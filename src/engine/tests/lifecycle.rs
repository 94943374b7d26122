//! The node's life: the accept back-off, closing serving connections after their answers, and
//! shutdown resolving everything in flight exactly once.

use super::*;

#[test]
fn accepting_backs_off_doubling_and_resets_after_a_success() {
    let mut node = Node::new(config());
    let now = *START;
    let error = || io::Error::other("too many open files");
    node.engine.handle_accept_failed(error(), now);
    assert_eq!(node.engine.poll_action(), Some(Action::PauseAccept));
    assert_eq!(
        node.engine.poll_timeout(),
        Some(now + Duration::from_millis(5))
    );
    node.engine.handle_timeout(now + Duration::from_millis(4));
    assert_eq!(node.engine.poll_action(), None, "not due yet");
    let resumed = now + Duration::from_millis(5);
    node.engine.handle_timeout(resumed);
    assert_eq!(node.engine.poll_action(), Some(Action::ResumeAccept));
    // A second failure in a row waits twice as long.
    node.engine.handle_accept_failed(error(), resumed);
    assert_eq!(node.engine.poll_action(), Some(Action::PauseAccept));
    assert_eq!(
        node.engine.poll_timeout(),
        Some(resumed + Duration::from_millis(10))
    );
    node.engine
        .handle_timeout(resumed + Duration::from_millis(10));
    assert_eq!(node.engine.poll_action(), Some(Action::ResumeAccept));
    // An accepted connection resets it.
    node.engine
        .handle_accepted(addr(CLIENT_ADDR), *START)
        .expect("admitted");
    let later = resumed + Duration::from_secs(1);
    node.engine.handle_accept_failed(error(), later);
    assert_eq!(
        node.engine.poll_timeout(),
        Some(later + Duration::from_millis(5))
    );
}

#[test]
fn close_streams_closes_idle_serving_connections_after_their_answers() {
    let mut pair = Pair::new(config());
    let vote = pair.vote(1, None);
    pair.drive();
    // The server is asked to close its streams with one request unanswered: it waits.
    pair.server.shared.handoff.submit(Command::CloseStreams);
    pair.drive();
    assert!(pair.server.closed.is_empty());
    assert_eq!(pair.answer_votes(), 1);
    pair.drive();
    assert_eq!(vote.try_result().unwrap().unwrap().term, 1);
    assert_eq!(pair.server.closed.len(), 1, "closed once answered");
}

#[test]
fn shutdown_resolves_everything_in_flight_exactly_once() {
    let mut pair = Pair::new(config());
    let mut calls: Vec<_> = (1..=5).map(|t| pair.vote(t, None)).collect();
    let pipeline = pair.pipeline(1, 8);
    let futures: Vec<_> = (1..=3)
        .map(|t| pipeline.try_send(append(t, b"x")).unwrap())
        .collect();
    pair.drive();
    // The server holds 8 unanswered RPCs; one more call waits in the queue, unsent.
    assert_eq!(pair.server.shared.consumer.len(), 8);
    let mut queued = pair.vote(6, None);
    pair.client.engine.shutdown();
    pair.apply_actions(Side::Client);
    for call in calls.iter_mut().chain(std::iter::once(&mut queued)) {
        assert_eq!(call.try_result().unwrap().unwrap_err(), Error::Shutdown);
    }
    for future in &futures {
        assert_eq!(future.try_result().unwrap().unwrap_err(), Error::Shutdown);
    }
    assert_eq!(pair.client.metrics().calls_failed[RpcType::RequestVote], 5);
    // Nothing is left open, and new submissions fail at once.
    assert!(pair.client.engine.conns.is_empty());
    let late = pair.vote(7, None);
    assert_eq!(late.try_result().unwrap().unwrap_err(), Error::Shutdown);
    assert!(
        pair.client.shared.consumer.try_recv().is_err(),
        "consumer closed"
    );
    // The server sees every connection end and closes them; its unanswered RPCs can still be
    // answered (dropping one answers it), and the answers go nowhere.
    pair.drive();
    assert_eq!(pair.server.engine.conns.len(), 0);
    while let Ok(Some(rpc)) = pair.server.shared.consumer.try_recv() {
        drop(rpc);
    }
    pair.drive();
    assert_eq!(
        pair.server.closed.len(),
        6,
        "five call connections and the pipeline's"
    );
}
