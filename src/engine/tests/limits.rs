//! The limits on what one peer may take of the node (`engine/limits.rs`), each driven as a
//! hostile peer would, byte by byte and with time as an input: a bound that holds, the metric
//! that counts it, and service that goes on.

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};

use super::*;
use crate::engine::conn::Role;
use crate::wire::native::{FrameDecoder, PREAMBLE};

const PEER: &str = "10.0.0.9:4000";

/// A serving connection's view of a hand-played peer: the bytes it sends, framed natively.
struct Peer {
    out: SendQueue,
    encoder: FrameEncoder,
}

impl Peer {
    fn new() -> Peer {
        let encoder = FrameEncoder::new();
        let mut out = SendQueue::new();
        encoder.preamble(&mut out);
        Peer { out, encoder }
    }

    fn request(&mut self, id: u64, lane: Lane, request: impl Into<Request>) -> &mut Peer {
        let message = Message::Request(request.into());
        self.encoder
            .encode(&mut self.out, id, lane, Flags::NONE, &message)
            .unwrap();
        self
    }

    fn chunk(&mut self, id: u64, bytes: &'static [u8], last: bool) -> &mut Peer {
        let flags = if last { Flags::END_STREAM } else { Flags::NONE };
        let message = Message::SnapshotChunk(Bytes::from_static(bytes));
        self.encoder
            .encode(&mut self.out, id, Lane::Snapshot, flags, &message)
            .unwrap();
        self
    }

    /// Everything written so far, taken.
    fn take(&mut self) -> Vec<u8> {
        let bytes = self.out.to_vec();
        self.out.clear();
        bytes
    }
}

fn vote(term: u64) -> RequestVoteRequest {
    RequestVoteRequest {
        term,
        ..Default::default()
    }
}

fn snapshot_request(size: i64) -> InstallSnapshotRequest {
    InstallSnapshotRequest {
        size,
        ..Default::default()
    }
}

impl Node {
    fn accept(&mut self, peer: &str, now: Instant) -> Option<ConnKey> {
        self.engine.handle_accepted(addr(peer), now)
    }

    /// Drain the engine's actions; whether a `ResumeRead` for `key` was among them.
    fn resumed(&mut self, key: ConnKey) -> bool {
        let mut resumed = false;
        while let Some(action) = self.engine.poll_action() {
            resumed |= action == Action::ResumeRead { key };
        }
        resumed
    }

    /// Answer every RPC the consumer holds with an empty vote response, through the
    /// completion queue the engine takes at `now`.
    fn answer_all(&mut self, now: Instant) -> usize {
        let mut answered = 0;
        while let Ok(Some(rpc)) = self.shared.consumer.try_recv() {
            rpc.respond(Ok(Response::RequestVote(Default::default())));
            answered += 1;
        }
        assert!(self.engine.handle_handoff(now));
        answered
    }

    fn recv_capacity(&self, key: ConnKey) -> usize {
        self.engine.conn(key).map_or(0, |c| c.recv.capacity())
    }
}

#[test]
fn connections_over_a_limit_are_refused_and_counted() {
    let now = *START;
    let mut node = Node::new(
        config()
            .max_connections_per_address(2)
            .max_inbound_connections(3),
    );
    let first = node.accept(PEER, now).expect("under the limits");
    node.accept(PEER, now).expect("under the limits");
    assert_eq!(node.accept(PEER, now), None, "a third from one address");
    // Another address still gets in, until the listener's limit.
    node.accept("10.0.0.10:4000", now).expect("another address");
    assert_eq!(node.accept("10.0.0.11:4000", now), None, "a fourth in all");
    assert_eq!(node.metrics().connections_refused, 2);
    // A closed connection frees its place.
    node.engine.handle_eof(first);
    node.accept(PEER, now).expect("a place was freed");
}

#[test]
fn a_header_alone_does_not_reserve_its_declared_length() {
    let mut node = Node::new(config());
    let key = node.accept(PEER, *START).unwrap();
    // A valid header declaring a 64 MiB body, and nothing of the body.
    let mut bytes = PREAMBLE.to_vec();
    bytes.extend_from_slice(
        &FrameHeader {
            body_len: 64 << 20,
            kind: MessageType::AppendEntries,
            flags: Flags::NONE,
            lane: Lane::Control,
            request_id: 1,
        }
        .to_bytes(),
    );
    node.engine.handle_bytes(key, &bytes, *START);
    assert!(node.engine.is_open(key));
    let reserved = node.recv_capacity(key);
    assert!(
        reserved <= 256 << 10,
        "{reserved} bytes reserved for 24 received"
    );
}

#[test]
fn a_body_arriving_grows_the_buffer_with_what_arrived() {
    let mut node = Node::new(config());
    let key = node.accept(PEER, *START).unwrap();
    let payload = Bytes::from(vec![7u8; 4 << 20]);
    let bytes = Peer::new()
        .request(
            1,
            Lane::Control,
            AppendEntriesRequest {
                entries: vec![Log::command(1, 1, payload.clone())],
                ..Default::default()
            },
        )
        .take();
    // Fed 64 KiB at a time, the buffer stays within a small factor of what arrived: the codec
    // makes room for at most as much again as it holds, and appending doubles a buffer's
    // capacity when it must grow, so at most four times, never the 4 MiB declared.
    let mut fed = 0;
    for piece in bytes.chunks(64 << 10) {
        node.engine.handle_bytes(key, piece, *START);
        fed += piece.len();
        if fed < bytes.len() {
            let held = node.recv_capacity(key);
            assert!(held <= 4 * fed + (64 << 10), "{held} reserved after {fed}");
        }
    }
    let rpc = node.next_rpc();
    let Request::AppendEntries(a) = &rpc.request else {
        panic!("an append")
    };
    assert_eq!(a.entries[0].data.as_deref(), Some(&payload[..]));
}

#[test]
fn unanswered_requests_pause_reading_until_half_are_answered() {
    let now = *START;
    let mut node = Node::new(config().max_unanswered_requests(4));
    let key = node.accept(PEER, now).unwrap();
    let mut peer = Peer::new();
    let preamble = peer.take();
    node.engine.handle_bytes(key, &preamble, now);
    // The peer pipelines requests one frame at a time, as fast as it may.
    let mut taken = 0;
    for term in 1..=10 {
        if !node.engine.wants_read(key) {
            break;
        }
        let frame = peer.request(term, Lane::Pipeline, vote(term)).take();
        node.engine.handle_bytes(key, &frame, now);
        taken += 1;
    }
    assert_eq!(taken, 4, "reading stops at the limit");
    assert_eq!(node.shared.consumer.len(), 4);
    assert_eq!(node.metrics().reads_paused, 1);
    // One answer is not enough to read again; half of them is.
    let rpc = node.next_rpc();
    rpc.respond(Ok(Response::RequestVote(Default::default())));
    assert!(node.engine.handle_handoff(now));
    assert!(!node.engine.wants_read(key));
    assert!(!node.resumed(key));
    node.next_rpc()
        .respond(Ok(Response::RequestVote(Default::default())));
    assert!(node.engine.handle_handoff(now));
    assert!(node.engine.wants_read(key), "2 of 4 unanswered: read again");
    assert!(node.resumed(key), "the driver is told to read");
}

#[test]
fn unanswered_bytes_pause_reading_but_a_large_request_still_gets_in() {
    let now = *START;
    let mut node = Node::new(config().max_unanswered_bytes(1000));
    let key = node.accept(PEER, now).unwrap();
    let big: &'static [u8] = &[1u8; 5000];
    let bytes = Peer::new()
        .request(
            1,
            Lane::Control,
            AppendEntriesRequest {
                entries: vec![Log::command(1, 1, big)],
                ..Default::default()
            },
        )
        .take();
    node.engine.handle_bytes(key, &bytes, now);
    assert_eq!(
        node.shared.consumer.len(),
        1,
        "larger than the limit, and taken"
    );
    assert!(!node.engine.wants_read(key), "then reading pauses");
    node.answer_all(now);
    assert!(node.engine.wants_read(key));
}

#[test]
fn a_peer_that_does_not_take_its_answers_stops_being_read() {
    let now = *START;
    let mut node = Node::new(config().max_queued_answer_bytes(200));
    let key = node.accept(PEER, now).unwrap();
    let mut peer = Peer::new();
    let preamble = peer.take();
    node.engine.handle_bytes(key, &preamble, now);
    // Requests keep coming and are answered, but nothing is written (the peer does not read).
    let mut sent = 0;
    while node.engine.wants_read(key) && sent < 100 {
        sent += 1;
        let frame = peer.request(sent, Lane::Control, vote(sent)).take();
        node.engine.handle_bytes(key, &frame, now);
        node.answer_all(now);
    }
    let queued = node.engine.conn(key).unwrap().send.len();
    assert!(
        sent < 100 && (200..300).contains(&queued),
        "{sent} requests, {queued} bytes of answers queued"
    );
    assert_eq!(node.metrics().reads_paused, 1);
    // The peer reads: once half is written, reading goes on.
    let (queue, _) = node.engine.send_queue(key).unwrap();
    let all = queue.len();
    queue.advance(all);
    node.engine.handle_flushed(key, Ok(Flushed::All), now);
    assert!(node.engine.wants_read(key));
    assert!(node.resumed(key));
}

#[test]
fn a_second_snapshot_on_a_connection_is_a_protocol_error_that_ends_the_first() {
    let now = *START;
    let mut node = Node::new(config());
    let key = node.accept(PEER, now).unwrap();
    let bytes = Peer::new()
        .request(1, Lane::Snapshot, snapshot_request(10))
        .chunk(1, b"12345", false)
        .request(1, Lane::Snapshot, snapshot_request(10))
        .take();
    node.engine.handle_bytes(key, &bytes, now);
    let mut first = node.next_rpc();
    assert!(node.shared.consumer.is_empty(), "no second reader");
    assert_eq!(node.metrics().protocol_errors, 1);
    assert!(!node.engine.is_open(key));
    let mut reader = first.snapshot.take().unwrap();
    assert_eq!(reader.next_chunk().unwrap().as_deref(), Some(&b"12345"[..]));
    let error = reader.next_chunk().unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof, "{error}");
}

#[test]
fn snapshots_over_the_limit_are_answered_with_an_error_and_their_body_dropped() {
    let now = *START;
    let mut node = Node::new(config().max_inbound_snapshots(1));
    let a = node.accept(PEER, now).unwrap();
    let b = node.accept("10.0.0.10:4000", now).unwrap();
    let first = Peer::new()
        .request(1, Lane::Snapshot, snapshot_request(3))
        .take();
    node.engine.handle_bytes(a, &first, now);
    let mut taken = node.next_rpc();
    // A second one, on another connection, with its body right behind it.
    let second = Peer::new()
        .request(7, Lane::Snapshot, snapshot_request(3))
        .chunk(7, b"abc", true)
        .take();
    node.engine.handle_bytes(b, &second, now);
    assert!(node.shared.consumer.is_empty(), "refused, not handed over");
    assert_eq!(node.metrics().snapshots_refused, 1);
    assert_eq!(
        node.metrics().protocol_errors,
        0,
        "its body is dropped quietly"
    );
    assert!(!node.engine.wants_read(b), "no more of it is read");
    // The error answer is queued; the connection closes once it is written.
    let (queue, _) = node.engine.send_queue(b).unwrap();
    let mut received = BytesMut::from(&queue.to_vec()[..]);
    let all = queue.len();
    queue.advance(all);
    let mut decoder = FrameDecoder::new();
    let answer = decoder.decode(&mut received).unwrap().unwrap();
    assert_eq!(answer.request_id, 7);
    let Message::Error(text) = answer.message else {
        panic!("an error answer, not {:?}", answer.message)
    };
    assert!(text.contains("snapshots are being received"), "{text}");
    node.engine.handle_flushed(b, Ok(Flushed::All), now);
    assert!(!node.engine.is_open(b));
    // The first snapshot's buffer still counts until its reader lets go of it.
    let c = node.accept("10.0.0.11:4000", now).unwrap();
    node.engine.handle_bytes(
        c,
        &Peer::new()
            .request(1, Lane::Snapshot, snapshot_request(3))
            .take(),
        now,
    );
    assert_eq!(node.metrics().snapshots_refused, 2);
    // The first body arrives in full, its reader is done with it, and the RPC is answered:
    // the permit goes back.
    let body = Peer::new().chunk(1, b"xyz", true).take();
    node.engine.handle_bytes(a, &body[PREAMBLE.len()..], now);
    let mut reader = taken.snapshot.take().unwrap();
    assert_eq!(reader.next_chunk().unwrap().as_deref(), Some(&b"xyz"[..]));
    drop(reader);
    drop(taken);
    let d = node.accept("10.0.0.12:4000", now).unwrap();
    node.engine.handle_bytes(
        d,
        &Peer::new()
            .request(1, Lane::Snapshot, snapshot_request(3))
            .take(),
        now,
    );
    assert_eq!(node.shared.consumer.len(), 1, "the permit was given back");
}

#[test]
fn a_stalled_snapshot_body_closes_its_connection_and_fails_its_reader() {
    let now = *START;
    let mut node = Node::new(config().timeout(Some(Duration::from_secs(10))));
    let key = node.accept(PEER, now).unwrap();
    let bytes = Peer::new()
        .request(1, Lane::Snapshot, snapshot_request(10))
        .chunk(1, b"12345", false)
        .take();
    node.engine.handle_bytes(key, &bytes, now);
    let mut rpc = node.next_rpc();
    // More arrives after 8 s: the clock restarts.
    let later = now + Duration::from_secs(8);
    node.engine.handle_bytes(
        key,
        &Peer::new().chunk(1, b"67", false).take()[PREAMBLE.len()..],
        later,
    );
    node.engine.handle_timeout(now + Duration::from_secs(10));
    assert!(node.engine.is_open(key), "the body moved 2 s ago");
    // Then nothing for 10 s.
    node.engine.handle_timeout(later + Duration::from_secs(10));
    assert!(!node.engine.is_open(key));
    assert_eq!(node.metrics().slow_peers_closed, 1);
    let mut reader = rpc.snapshot.take().unwrap();
    assert_eq!(reader.next_chunk().unwrap().as_deref(), Some(&b"12345"[..]));
    assert_eq!(reader.next_chunk().unwrap().as_deref(), Some(&b"67"[..]));
    assert!(
        reader.next_chunk().is_err(),
        "the reader learns the body ended early"
    );
}

#[test]
fn a_frame_trickling_in_is_closed_after_the_timeout() {
    let now = *START;
    let timeout = Duration::from_secs(10);
    let mut node = Node::new(config().timeout(Some(timeout)));
    let key = node.accept(PEER, now).unwrap();
    // Slowloris: a byte every 100 ms, the preamble and then a frame that never completes.
    let bytes = Peer::new().request(1, Lane::Control, vote(1)).take();
    let mut at = now;
    for byte in bytes.iter().take(bytes.len() - 1) {
        node.engine
            .handle_bytes(key, std::slice::from_ref(byte), at);
        node.engine.handle_timeout(at);
        if !node.engine.is_open(key) {
            break;
        }
        at += Duration::from_millis(100);
    }
    for _ in 0..200 {
        if !node.engine.is_open(key) {
            break;
        }
        at += Duration::from_millis(100);
        node.engine.handle_timeout(at);
    }
    assert!(!node.engine.is_open(key), "closed");
    // The preamble and the first frame are one unit: the clock started at the accept.
    assert!(
        at <= now + timeout + Duration::from_millis(100),
        "after {:?}",
        at - now
    );
    assert_eq!(node.metrics().slow_peers_closed, 1);
    assert!(node.shared.consumer.is_empty());
}

#[test]
fn a_large_frame_arriving_steadily_outlives_the_timeout() {
    let now = *START;
    let timeout = Duration::from_secs(10);
    // 1 KiB per timeout is the rate floor here.
    let mut node = Node::new(config().timeout(Some(timeout)).timeout_scale(1024));
    let key = node.accept(PEER, now).unwrap();
    let payload: &'static [u8] = &[3u8; 20_000];
    let bytes = Peer::new()
        .request(
            1,
            Lane::Control,
            AppendEntriesRequest {
                entries: vec![Log::command(1, 1, payload)],
                ..Default::default()
            },
        )
        .take();
    // 2 KiB every 10 s: twice the floor, so it takes 100 s, ten timeouts, and is not cut.
    let mut at = now;
    for piece in bytes.chunks(2048) {
        node.engine.handle_bytes(key, piece, at);
        at += timeout;
        node.engine.handle_timeout(at);
        assert!(node.engine.is_open(key), "closed at {:?}", at - now);
    }
    assert_eq!(node.shared.consumer.len(), 1);
    assert_eq!(node.metrics().slow_peers_closed, 0);
}

#[test]
fn a_connection_that_sends_nothing_is_closed_after_the_timeout() {
    let now = *START;
    let timeout = Duration::from_secs(10);
    let mut node = Node::new(config().timeout(Some(timeout)));
    let key = node.accept(PEER, now).unwrap();
    node.engine
        .handle_timeout(now + timeout - Duration::from_millis(1));
    assert!(node.engine.is_open(key));
    node.engine.handle_timeout(now + timeout);
    assert!(!node.engine.is_open(key));
    assert_eq!(node.metrics().slow_peers_closed, 1);
}

#[test]
fn an_idle_connection_between_frames_has_no_deadline() {
    let now = *START;
    let mut node = Node::new(config().timeout(Some(Duration::from_secs(10))));
    let key = node.accept(PEER, now).unwrap();
    let bytes = Peer::new().request(1, Lane::Control, vote(1)).take();
    node.engine.handle_bytes(key, &bytes, now);
    node.answer_all(now);
    // A pooled connection waits between calls for as long as it likes.
    node.engine.handle_timeout(now + Duration::from_secs(3600));
    assert!(node.engine.is_open(key));
    assert_eq!(node.metrics().slow_peers_closed, 0);
}

#[test]
fn a_paused_connection_is_not_a_slow_peer() {
    let now = *START;
    let timeout = Duration::from_secs(10);
    let mut node = Node::new(config().timeout(Some(timeout)).max_unanswered_requests(1));
    let key = node.accept(PEER, now).unwrap();
    // One request fills the connection's share; half of a second one is buffered.
    let mut peer = Peer::new();
    let mut bytes = peer.request(1, Lane::Control, vote(1)).take();
    let second = peer.request(2, Lane::Control, vote(2)).take();
    bytes.extend_from_slice(&second[..second.len() / 2]);
    node.engine.handle_bytes(key, &bytes, now);
    assert!(!node.engine.wants_read(key));
    // The Raft side takes its time: the frame's clock does not run meanwhile.
    let later = now + 3 * timeout;
    node.engine.handle_timeout(later);
    assert!(node.engine.is_open(key));
    node.answer_all(later);
    assert!(node.engine.wants_read(key));
    node.engine
        .handle_timeout(later + timeout - Duration::from_millis(1));
    assert!(
        node.engine.is_open(key),
        "its clock restarted when reading resumed"
    );
    node.engine.handle_bytes(
        key,
        &second[second.len() / 2..],
        later + Duration::from_secs(1),
    );
    assert_eq!(node.shared.consumer.len(), 1);
    assert_eq!(node.metrics().slow_peers_closed, 0);
}

#[test]
fn an_append_with_too_many_entries_is_a_protocol_error_before_decoding_them() {
    let now = *START;
    let mut node = Node::new(config().max_entries_per_request(2));
    let key = node.accept(PEER, now).unwrap();
    let append = |n: u64| AppendEntriesRequest {
        entries: (1..=n).map(|i| Log::command(i, 1, &b"x"[..])).collect(),
        ..Default::default()
    };
    let bytes = Peer::new()
        .request(1, Lane::Control, append(2))
        .request(2, Lane::Control, append(3))
        .take();
    node.engine.handle_bytes(key, &bytes, now);
    assert_eq!(node.shared.consumer.len(), 1, "the first, within the limit");
    assert_eq!(node.metrics().protocol_errors, 1);
    assert!(!node.engine.is_open(key));
}

#[test]
fn a_response_on_a_serving_connection_is_named_in_the_error() {
    let error = WireError::UnexpectedMessage {
        expected: "a request on a serving connection",
        found: MessageType::RequestVoteResponse,
    };
    assert_eq!(
        error.to_string(),
        "expected a request on a serving connection, received a RequestVoteResponse message"
    );
    // The engine reports it so.
    let mut node = Node::new(config());
    let key = node.accept(PEER, *START).unwrap();
    let mut out = SendQueue::new();
    let encoder = FrameEncoder::new();
    encoder.preamble(&mut out);
    let response = Message::Response(Response::RequestVote(Default::default()));
    encoder
        .encode(&mut out, 1, Lane::Control, Flags::NONE, &response)
        .unwrap();
    node.engine.handle_bytes(key, &out.to_vec(), *START);
    assert!(!node.engine.is_open(key));
    let _ = Role::Inbound; // the connection was a serving one
}

#[test]
fn a_connection_that_sends_only_its_preamble_is_closed_after_the_timeout() {
    let now = *START;
    let timeout = Duration::from_secs(10);
    let mut node = Node::new(config().timeout(Some(timeout)));
    let key = node.accept(PEER, now).unwrap();
    node.engine
        .handle_bytes(key, &PREAMBLE, now + Duration::from_secs(1));
    node.engine.handle_timeout(now + timeout);
    assert!(
        !node.engine.is_open(key),
        "the first frame is due with the preamble"
    );
    assert_eq!(node.metrics().slow_peers_closed, 1);
}

#[test]
fn a_peer_that_never_takes_its_answers_is_closed_in_the_end() {
    let now = *START;
    let timeout = Duration::from_secs(10);
    let mut node = Node::new(config().timeout(Some(timeout)).max_queued_answer_bytes(200));
    let key = node.accept(PEER, now).unwrap();
    let mut peer = Peer::new();
    let preamble = peer.take();
    node.engine.handle_bytes(key, &preamble, now);
    let mut sent = 0;
    while node.engine.wants_read(key) && sent < 100 {
        sent += 1;
        let frame = peer.request(sent, Lane::Control, vote(sent)).take();
        node.engine.handle_bytes(key, &frame, now);
        node.answer_all(now);
    }
    assert!(!node.engine.wants_read(key));
    // Its answers wait in our memory for as long as a frame of their size may take to travel.
    node.engine
        .handle_timeout(now + timeout - Duration::from_millis(1));
    assert!(node.engine.is_open(key));
    node.engine.handle_timeout(now + timeout);
    assert!(!node.engine.is_open(key));
    assert_eq!(node.metrics().slow_peers_closed, 1);
}

#[test]
fn one_read_of_requests_is_handed_over_no_further_than_the_limit() {
    let now = *START;
    let mut node = Node::new(config().max_unanswered_requests(4));
    let key = node.accept(PEER, now).unwrap();
    // Ten requests in one read: the Raft side gets its share, the rest waits in order.
    let mut peer = Peer::new();
    for term in 1..=10 {
        peer.request(term, Lane::Pipeline, vote(term));
    }
    node.engine.handle_bytes(key, &peer.take(), now);
    assert_eq!(node.shared.consumer.len(), 4);
    assert!(!node.engine.wants_read(key));
    let mut terms = Vec::new();
    let mut take = |node: &mut Node, n: usize| {
        for _ in 0..n {
            let rpc = node.next_rpc();
            let Request::RequestVote(v) = &rpc.request else {
                panic!("a vote")
            };
            terms.push(v.term);
            rpc.respond(Ok(Response::RequestVote(Default::default())));
        }
        assert!(node.engine.handle_handoff(now));
    };
    // Two answered (half): two more are handed over, filling the share again.
    take(&mut node, 2);
    assert_eq!(node.shared.consumer.len(), 4);
    // Four answered: the held four follow, two by two, and fill it once more.
    take(&mut node, 4);
    assert_eq!(node.shared.consumer.len(), 4);
    assert!(!node.engine.wants_read(key));
    take(&mut node, 4);
    assert!(node.shared.consumer.is_empty());
    assert!(node.engine.wants_read(key), "nothing held: reading goes on");
    assert_eq!(terms, (1..=10).collect::<Vec<_>>(), "in the order sent");
}
