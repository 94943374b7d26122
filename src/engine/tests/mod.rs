//! The engine without sockets, in quinn-proto's `Pair` style: two engines (a client and a
//! server) joined by a scripted in-memory network that the test drives step by step. Time is an
//! input (the test moves it), so deadlines, dial timeouts and the accept back-off are tested
//! exactly, and the edge cases that need luck with real sockets (bytes and end of stream in one
//! delivery, a frame cut at every byte) are one call each.
//!
//! This file is the harness ([`Pair`], [`Node`], the scripted network); the tests are by topic:
//! `calls.rs`, `framing.rs`, `formats.rs`, `pipelines.rs`, `snapshots.rs`, `lifecycle.rs` and
//! `limits.rs`.

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
use crate::transport::pipeline::{
    AppendPipeline, PipelineBackend, PipelineShared, PipelinedRequest, TrySendError,
};
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
        Pair::with_configs(config.clone(), config)
    }

    /// A pair whose sides differ (a client and a server of other wire formats).
    fn with_configs(client: Config, server: Config) -> Pair {
        Pair {
            client: Node::new(client),
            server: Node::new(server),
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
            .submit(Command::Call(Box::new(OutboundCall {
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
            })));
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
    fn send(&self, seq: u64, request: PipelinedRequest) {
        self.shared.handoff.submit(Command::PipelineSend {
            id: self.id,
            seq,
            request,
        });
    }

    fn send_batch(&self, batch: &mut Vec<(u64, PipelinedRequest)>) {
        self.shared.handoff.submit(Command::PipelineSendBatch {
            id: self.id,
            batch: std::mem::take(batch),
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

mod calls;
mod formats;
mod framing;
mod lifecycle;
mod limits;
mod pipelines;
mod snapshots;
