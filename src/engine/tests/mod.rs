//! The engine without sockets, in quinn-proto's `Pair` style: two engines (a client and a
//! server) joined by a scripted in-memory network that the test drives step by step. Time is an
//! input (the test moves it), so deadlines, dial timeouts and the accept back-off are tested
//! exactly, and the edge cases that need luck with real sockets (bytes and end of stream in one
//! delivery, a frame cut at every byte) are one call each.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, LazyLock};
use std::time::{Duration, Instant};

use bytes::Bytes;

use super::feed::{SnapshotFeed, pump};
use super::handoff::{AnyResolver, Command, OutboundCall, OutboundSnapshot, Wake};
use super::{Action, ConnKey, Engine, Flushed, Shared};
use crate::config::Config;
use crate::error::Error;
use crate::message::*;
use crate::metrics::{Metrics, RpcType};
use crate::transport::call::{Call, call};
use crate::transport::pipeline::{AppendPipeline, PipelineBackend, PipelineShared, TrySendError};
use crate::transport::rpc::Rpc;
use crate::wire::native::FrameEncoder;
use crate::wire::*;

static START: LazyLock<Instant> = LazyLock::new(Instant::now);

/// The engines' clock for their decode metric: frozen, so nothing depends on real time.
fn frozen_clock() -> Instant {
    *START
}

/// The engines sleep in no driver here: ringing them does nothing.
struct NoWake;

impl Wake for NoWake {
    fn wake(&self) -> io::Result<()> {
        Ok(())
    }
}

const CLIENT_ADDR: &str = "10.0.0.1:5000";
const SERVER_ADDR: &str = "10.0.0.2:7000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Side {
    Client,
    Server,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }
}

/// One side's engine and what the test scripted for its sockets.
struct Node {
    engine: Engine,
    shared: Arc<Shared>,
    /// Bytes delivered while the engine did not want reads, with a pending end of stream.
    held: HashMap<ConnKey, (VecDeque<Bytes>, bool)>,
    /// Keys the engine closed (its `Close` actions), in order.
    closed: Vec<ConnKey>,
    /// Dials the engine asked for and the test has not answered yet (with `auto_connect` off).
    dials: Vec<(ConnKey, SocketAddr)>,
    accepting: bool,
}

impl Node {
    fn new(config: Config) -> Node {
        let shared = Shared::new(config, Box::new(NoWake));
        Node {
            engine: Engine::new(shared.clone(), frozen_clock),
            shared,
            held: HashMap::new(),
            closed: Vec::new(),
            dials: Vec::new(),
            accepting: true,
        }
    }

    /// The counters and timers (the gauges are `NetTransport::metrics`'s to fill in).
    fn metrics(&self) -> Metrics {
        self.shared.metrics.snapshot(0)
    }

    /// The next RPC the consumer holds.
    fn next_rpc(&self) -> Rpc {
        self.shared
            .consumer
            .try_recv()
            .expect("consumer open")
            .expect("an RPC waits")
    }
}

/// Two engines and the in-memory network between them.
struct Pair {
    client: Node,
    server: Node,
    now: Instant,
    /// Each established connection's key on one side → its key on the other.
    links: HashMap<(Side, ConnKey), ConnKey>,
    /// Answer dials at once by connecting them to the server (otherwise the test does).
    auto_connect: bool,
    /// Cut every delivery into pieces of at most this many bytes (0: whole).
    piece: usize,
}

impl Pair {
    fn new(config: Config) -> Pair {
        Pair {
            client: Node::new(config.clone()),
            server: Node::new(config),
            now: *START,
            links: HashMap::new(),
            auto_connect: true,
            piece: 0,
        }
    }

    fn node(&mut self, side: Side) -> &mut Node {
        match side {
            Side::Client => &mut self.client,
            Side::Server => &mut self.server,
        }
    }

    fn advance(&mut self, by: Duration) {
        self.now += by;
    }

    /// Run both engines until neither has anything left to do at `now`.
    fn drive(&mut self) {
        for _ in 0..1000 {
            let mut busy = false;
            for side in [Side::Client, Side::Server] {
                busy |= self.step(side);
            }
            if !busy {
                return;
            }
        }
        panic!("the engines did not settle");
    }

    /// One turn of one side; whether it did anything.
    fn step(&mut self, side: Side) -> bool {
        let now = self.now;
        let node = self.node(side);
        let had_work = node.engine.has_queued_work();
        assert!(node.engine.handle_handoff(now), "no shutdown in this test");
        if node.engine.poll_timeout().is_some_and(|at| at <= now) {
            node.engine.handle_timeout(now);
        }
        let acted = self.apply_actions(side);
        let wrote = self.transmit(side);
        had_work || acted || wrote
    }

    fn apply_actions(&mut self, side: Side) -> bool {
        let mut acted = false;
        while let Some(action) = self.node(side).engine.poll_action() {
            acted = true;
            match action {
                Action::Dial { key, addr } => {
                    assert_eq!(side, Side::Client, "only the client dials here");
                    assert_eq!(addr, self::addr(SERVER_ADDR));
                    if self.auto_connect {
                        self.connect(key);
                    } else {
                        self.client.dials.push((key, addr));
                    }
                }
                Action::Close { key } => {
                    self.node(side).closed.push(key);
                    self.node(side).held.remove(&key);
                    // The peer sees the end of the stream after what it was sent.
                    if let Some(peer_key) = self.links.remove(&(side, key)) {
                        self.links.remove(&(side.other(), peer_key));
                        self.deliver(side.other(), peer_key, Bytes::new(), true);
                    }
                }
                Action::ResumeRead { key } => self.deliver(side, key, Bytes::new(), false),
                Action::PauseAccept => self.node(side).accepting = false,
                Action::ResumeAccept => self.node(side).accepting = true,
            }
        }
        acted
    }

    /// Complete the dial of client `key`: the server accepts it.
    fn connect(&mut self, key: ConnKey) {
        let server_key = self
            .server
            .engine
            .handle_accepted(addr(CLIENT_ADDR), self.now)
            .expect("admitted");
        self.links.insert((Side::Client, key), server_key);
        self.links.insert((Side::Server, server_key), key);
        self.client.engine.handle_connected(key);
    }

    /// Write every connection's queue of `side` whole, delivering it to the peer.
    fn transmit(&mut self, side: Side) -> bool {
        let mut keys = Vec::new();
        self.node(side).engine.take_dirty(&mut keys);
        let mut wrote = false;
        for key in keys {
            let Some((queue, _)) = self.node(side).engine.send_queue(key) else {
                continue;
            };
            let bytes = Bytes::from(queue.to_vec());
            queue.clear();
            let now = self.now;
            self.node(side)
                .engine
                .handle_flushed(key, Ok(Flushed::All), now);
            if let Some(&peer_key) = self.links.get(&(side, key))
                && !bytes.is_empty()
            {
                wrote = true;
                self.deliver(side.other(), peer_key, bytes, false);
            }
            self.apply_actions(side);
        }
        wrote
    }

    /// Hand `bytes` (then, with `eof`, the end of the stream) to `side`'s `key`, in pieces of
    /// `self.piece` bytes, holding them while the engine does not want reads.
    fn deliver(&mut self, side: Side, key: ConnKey, bytes: Bytes, eof: bool) {
        let piece = self.piece;
        let now = self.now;
        let node = self.node(side);
        let held = node.held.entry(key).or_default();
        if !bytes.is_empty() {
            held.0.push_back(bytes);
        }
        held.1 |= eof;
        loop {
            let node = self.node(side);
            if !node.engine.is_open(key) {
                node.held.remove(&key);
                break;
            }
            if !node.engine.wants_read(key) {
                break;
            }
            let Some(held) = node.held.get_mut(&key) else {
                break;
            };
            match held.0.pop_front() {
                Some(mut bytes) => {
                    if piece > 0 && bytes.len() > piece {
                        let rest = bytes.split_off(piece);
                        held.0.push_front(rest);
                    }
                    node.engine.handle_bytes(key, &bytes, now);
                }
                None => {
                    if std::mem::take(&mut held.1) {
                        node.engine.handle_eof(key);
                    }
                    break;
                }
            }
            self.apply_actions(side);
        }
        self.apply_actions(side);
    }

    /// Submit a vote and carry the dial out by hand: the server accepts, and the client's first
    /// bytes (preamble and request) are taken from its queue, not delivered. Returns the
    /// server's key for the connection and those bytes.
    fn vote_bytes_by_hand(&mut self) -> (ConnKey, Vec<u8>) {
        self.auto_connect = false;
        // Only the bytes matter here, not the caller's half of the call.
        drop(self.vote(5, None));
        self.drive();
        let (key, _) = self.client.dials.pop().expect("a dial");
        let server_key = self
            .server
            .engine
            .handle_accepted(addr(CLIENT_ADDR), self.now)
            .expect("admitted");
        self.client.engine.handle_connected(key);
        let mut dirty = Vec::new();
        self.client.engine.take_dirty(&mut dirty);
        assert_eq!(dirty, [key]);
        let bytes = self.client.engine.send_queue(key).unwrap().0.to_vec();
        (server_key, bytes)
    }

    /// The server's key of the only connection between the two.
    fn only_server_key(&self) -> ConnKey {
        let mut keys = self
            .links
            .iter()
            .filter(|((side, _), _)| *side == Side::Client)
            .map(|(_, server_key)| *server_key);
        let key = keys.next().expect("a connection");
        assert!(keys.next().is_none(), "only one connection");
        key
    }

    /// Submit a vote request from the client; its call.
    fn vote(&mut self, term: u64, deadline: Option<Instant>) -> Call<RequestVoteResponse> {
        let (call, resolver) = call();
        self.client
            .shared
            .handoff
            .submit(Command::Call(OutboundCall {
                server: None,
                addr: addr(SERVER_ADDR),
                lane: Lane::Control,
                request: RequestVoteRequest {
                    term,
                    ..Default::default()
                }
                .into(),
                resolver: AnyResolver::RequestVote(resolver),
                deadline,
                kind: RpcType::RequestVote,
            }));
        call
    }

    /// Answer every RPC the server's consumer holds with a vote of its own term.
    fn answer_votes(&mut self) -> usize {
        let mut answered = 0;
        while let Ok(Some(rpc)) = self.server.shared.consumer.try_recv() {
            let term = match &rpc.request {
                Request::RequestVote(v) => v.term,
                other => panic!("expected a vote, got {other:?}"),
            };
            rpc.respond_ok(RequestVoteResponse {
                term,
                granted: true,
                ..Default::default()
            });
            answered += 1;
        }
        answered
    }

    /// The client's pipeline `id` to the server.
    fn pipeline(&mut self, id: u64, depth: usize) -> AppendPipeline {
        let shared = PipelineShared::new(depth);
        self.client.shared.handoff.submit(Command::OpenPipeline {
            server: None,
            id,
            addr: addr(SERVER_ADDR),
            shared: shared.clone(),
        });
        AppendPipeline::new(
            shared,
            Box::new(TestPipeline {
                id,
                shared: self.client.shared.clone(),
            }),
        )
    }
}

struct TestPipeline {
    id: u64,
    shared: Arc<Shared>,
}

impl PipelineBackend for TestPipeline {
    fn send(&self, seq: u64, request: Arc<AppendEntriesRequest>) {
        self.shared.handoff.submit(Command::PipelineSend {
            id: self.id,
            seq,
            request,
        });
    }

    fn close(&self) {
        self.shared
            .handoff
            .submit(Command::ClosePipeline { id: self.id });
    }
}

fn config() -> Config {
    Config::default().timeout(Some(Duration::from_secs(10)))
}

fn append(term: u64, data: &'static [u8]) -> AppendEntriesRequest {
    AppendEntriesRequest {
        term,
        entries: vec![Log::command(1, term, data)],
        ..Default::default()
    }
}

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
fn a_frame_cut_at_every_byte_boundary_decodes_the_same() {
    // The client's first bytes (preamble and request) reach the server one piece at a time,
    // for every piece size from 1 byte to the whole: exactly one RPC each time.
    for piece in 1..=64 {
        let mut pair = Pair::new(config());
        pair.piece = piece;
        let vote = pair.vote(piece as u64, None);
        pair.drive();
        assert_eq!(pair.answer_votes(), 1, "piece size {piece}");
        pair.drive();
        assert_eq!(vote.try_result().unwrap().unwrap().term, piece as u64);
        assert_eq!(pair.server.metrics().protocol_errors, 0);
    }
}

#[test]
fn a_request_and_the_end_of_stream_in_one_delivery_are_both_handled() {
    let mut pair = Pair::new(config());
    // The client's bytes reach the server together with the end of the stream.
    let (server_key, bytes) = pair.vote_bytes_by_hand();
    pair.server
        .engine
        .handle_bytes(server_key, &bytes, pair.now);
    pair.server.engine.handle_eof(server_key);
    // The request reached the consumer; the connection then closed cleanly (no protocol error).
    let rpc = pair.server.next_rpc();
    assert_eq!(rpc.request.message_type(), MessageType::RequestVote);
    assert_eq!(pair.server.metrics().protocol_errors, 0);
    assert_eq!(
        pair.server.engine.poll_action(),
        Some(Action::Close { key: server_key })
    );
    // Its answer finds the connection gone and is dropped without harm.
    rpc.respond_ok(RequestVoteResponse::default());
    assert!(pair.server.engine.handle_handoff(pair.now));
    assert_eq!(pair.server.engine.poll_action(), None);
}

#[test]
fn an_end_of_stream_inside_a_frame_is_a_protocol_error() {
    let mut pair = Pair::new(config());
    let (server_key, bytes) = pair.vote_bytes_by_hand();
    // All but the request's last byte, then the end.
    pair.server
        .engine
        .handle_bytes(server_key, &bytes[..bytes.len() - 1], pair.now);
    pair.server.engine.handle_eof(server_key);
    assert_eq!(pair.server.metrics().protocol_errors, 1);
    assert!(pair.server.shared.consumer.is_empty());
    assert!(!pair.server.engine.is_open(server_key));
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

#[test]
fn snapshot_flow_control_pauses_reading_until_the_reader_catches_up() {
    let config = config().snapshot_chunk(1000).snapshot_buffer(2500);
    let mut pair = Pair::new(config);
    // Deliveries of half a chunk frame, so the server can stop taking them mid-body.
    pair.piece = 512;
    let size = 10_000u64;
    let data: Vec<u8> = (0..size).map(|i| i as u8).collect();
    let handoff = pair.client.shared.handoff.clone();
    let feed = SnapshotFeed::new(size as usize, move || {
        handoff.submit(Command::SnapshotReady { id: 1 })
    });
    // The pump reads the whole body into the feed (its window holds it all), on this thread.
    pump(
        Box::new(io::Cursor::new(data.clone())),
        size,
        1000,
        feed.clone(),
    );
    let (call, resolver) = call();
    pair.client
        .shared
        .handoff
        .submit(Command::Snapshot(OutboundSnapshot {
            server: None,
            id: 1,
            addr: addr(SERVER_ADDR),
            request: InstallSnapshotRequest {
                size: size as i64,
                ..Default::default()
            },
            resolver: AnyResolver::InstallSnapshot(resolver),
            deadline: None,
            feed,
        }));
    pair.drive();
    let mut rpc = pair.server.next_rpc();
    let server_key = pair.only_server_key();
    // The reader took nothing yet: 3 chunks (3000 ≥ 2500 bytes) are buffered and reading
    // paused, with the rest of the body held back in the network.
    assert!(!pair.server.engine.wants_read(server_key));
    let held: usize = pair.server.held[&server_key].0.iter().map(Bytes::len).sum();
    assert!(held > 6000, "{held} bytes held back");
    let mut reader = rpc.snapshot.take().unwrap();
    let mut body = Vec::new();
    while (body.len() as u64) < size {
        // Reading resumes once the reader drains to half the buffer; the pair delivers more.
        pair.drive();
        let chunk = reader.next_chunk().unwrap().expect("more body");
        body.extend_from_slice(&chunk);
    }
    assert_eq!(reader.next_chunk().unwrap(), None);
    assert_eq!(body, data);
    rpc.respond_ok(InstallSnapshotResponse {
        term: 1,
        success: true,
        ..Default::default()
    });
    pair.drive();
    assert!(call.try_result().unwrap().unwrap().success);
    assert_eq!(
        pair.client.closed.len(),
        1,
        "a snapshot connection is never reused"
    );
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

#[test]
fn a_wrong_frame_on_a_serving_connection_is_a_protocol_error() {
    let mut node = Node::new(config());
    let key = node
        .engine
        .handle_accepted(addr(CLIENT_ADDR), *START)
        .expect("admitted");
    // A response where a request must be.
    let mut out = SendQueue::new();
    let encoder = FrameEncoder::new();
    encoder.preamble(&mut out);
    encoder
        .encode(
            &mut out,
            1,
            Lane::Control,
            Flags::NONE,
            &Message::Response(Response::RequestVote(Default::default())),
        )
        .unwrap();
    node.engine.handle_bytes(key, &out.to_vec(), *START);
    assert_eq!(node.metrics().protocol_errors, 1);
    assert!(!node.engine.is_open(key));
    assert_eq!(node.engine.poll_action(), Some(Action::Close { key }));
    assert!(node.shared.consumer.is_empty());
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
fn an_oversized_snapshot_chunk_is_a_protocol_error_and_fails_the_reader() {
    let mut node = Node::new(config());
    let key = node
        .engine
        .handle_accepted(addr(CLIENT_ADDR), *START)
        .expect("admitted");
    // A hand-made InstallSnapshot of 3 bytes followed by a 4-byte chunk.
    let mut out = SendQueue::new();
    let encoder = FrameEncoder::new();
    encoder.preamble(&mut out);
    let request = InstallSnapshotRequest {
        size: 3,
        ..Default::default()
    };
    let request = Message::from(Request::from(request));
    encoder
        .encode(&mut out, 9, Lane::Snapshot, Flags::NONE, &request)
        .unwrap();
    let chunk = Message::SnapshotChunk(Bytes::from_static(b"four"));
    encoder
        .encode(&mut out, 9, Lane::Snapshot, Flags::END_STREAM, &chunk)
        .unwrap();
    node.engine.handle_bytes(key, &out.to_vec(), *START);
    let mut rpc = node.next_rpc();
    let mut reader = rpc.snapshot.take().unwrap();
    let error = reader.next_chunk().unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    assert_eq!(node.metrics().protocol_errors, 1);
    assert!(!node.engine.is_open(key));
}
mod limits;
