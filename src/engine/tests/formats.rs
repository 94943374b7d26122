//! Wire formats side by side: a server that accepts both (`SniffingCodecFactory`) answering a
//! native client and a hashicorp one, whole or a byte at a time; an unknown first byte; a
//! connection that sends nothing; a client that dials each peer in the peer's format
//! (`PeerCodecFactory`).

use std::time::Duration;

use super::*;
use crate::wire::hashicorp::{GoRaftVersion, HashicorpCodecFactory};
use crate::wire::native::{NativeCodecFactory, PREAMBLE};

fn sniffing() -> Config {
    config().codec(Arc::new(SniffingCodecFactory::new(GoRaftVersion::Latest)))
}

fn hashicorp() -> Arc<dyn CodecFactory> {
    Arc::new(HashicorpCodecFactory::new(GoRaftVersion::Latest))
}

/// A vote and three pipelined appends from a client of `client_config` to a sniffing server,
/// its bytes delivered in pieces of `piece` (0: whole): every call answered with its own
/// answer, no protocol error.
fn calls_answered(client_config: Config, piece: usize) {
    let mut pair = Pair::with_configs(client_config, sniffing());
    pair.piece = piece;
    let vote = pair.vote(7, None);
    pair.drive();
    assert_eq!(pair.answer_votes(), 1, "piece {piece}");
    pair.drive();
    assert_eq!(vote.try_result().unwrap().unwrap().term, 7);

    let pipeline = pair.pipeline(1, 8);
    let futures: Vec<_> = (1..=3)
        .map(|t| pipeline.try_send(append(t, b"entry")).unwrap())
        .collect();
    pair.drive();
    for rpc in (0..3).map(|_| pair.server.next_rpc()) {
        let Request::AppendEntries(request) = &rpc.request else {
            panic!("expected an append, got {:?}", rpc.request);
        };
        assert_eq!(request.entries[0].data.as_deref(), Some(&b"entry"[..]));
        let term = request.term;
        rpc.respond_ok(AppendEntriesResponse {
            term,
            last_log: term * 10,
            ..Default::default()
        });
    }
    pair.drive();
    for (t, future) in (1..=3).zip(&futures) {
        let answer = future.try_result().expect("answered").unwrap();
        assert_eq!((answer.term, answer.last_log), (t, t * 10), "piece {piece}");
    }
    assert_eq!(pair.server.metrics().protocol_errors, 0);
    assert_eq!(pair.client.metrics().protocol_errors, 0);
}

#[test]
fn a_sniffing_server_answers_a_native_client_whole_and_a_byte_at_a_time() {
    for piece in [0, 1, 3] {
        calls_answered(config(), piece);
    }
}

#[test]
fn a_sniffing_server_answers_a_hashicorp_client_whole_and_a_byte_at_a_time() {
    for piece in [0, 1, 3] {
        calls_answered(config().codec(hashicorp()), piece);
    }
}

/// A node of `config` and the connection it accepted at the start of time.
fn accepted(config: Config) -> (Node, ConnKey) {
    let mut node = Node::new(config);
    let key = node
        .engine
        .handle_accepted(addr(CLIENT_ADDR), *START)
        .expect("admitted");
    (node, key)
}

#[test]
fn a_sniffing_server_sends_nothing_before_the_peer_speaks() {
    let (mut node, key) = accepted(sniffing());
    // A native server would owe its preamble now; a sniffing one does not know its format yet.
    let (queue, _) = node.engine.send_queue(key).unwrap();
    assert!(queue.is_empty(), "{:?}", queue.to_vec());
}

#[test]
fn an_unknown_first_byte_is_a_protocol_error() {
    let (mut node, key) = accepted(sniffing());
    node.engine
        .handle_bytes(key, b"GET / HTTP/1.1\r\n\r\n", *START);
    assert_eq!(node.metrics().protocol_errors, 1);
    assert!(!node.engine.is_open(key));
    assert_eq!(node.engine.poll_action(), Some(Action::Close { key }));
    assert!(node.shared.consumer.is_empty());
}

#[test]
fn a_sniffing_connection_that_sends_nothing_is_closed_after_the_timeout() {
    let timeout = Duration::from_secs(10);
    let (mut node, key) = accepted(sniffing().timeout(Some(timeout)));
    node.engine
        .handle_timeout(*START + timeout - Duration::from_millis(1));
    assert!(node.engine.is_open(key));
    node.engine.handle_timeout(*START + timeout);
    assert!(!node.engine.is_open(key));
    assert_eq!(node.metrics().slow_peers_closed, 1);
}

/// A client whose peer table names the server's address dials it in hashicorp's format; one
/// whose table names another address dials it natively. Both are answered by the sniffing
/// server.
#[test]
fn a_peer_table_picks_each_dialled_peers_format() {
    let other: SocketAddr = "10.0.0.3:7000".parse().unwrap();
    for (listed, first_bytes) in [(addr(SERVER_ADDR), &[1u8][..]), (other, &PREAMBLE[..])] {
        let table = PeerCodecFactory::new(Arc::new(NativeCodecFactory)).peer(listed, hashicorp());
        let client = config().codec(Arc::new(table));
        let mut pair = Pair::with_configs(client.clone(), sniffing());
        let (_, bytes) = pair.vote_bytes_by_hand();
        // hashicorp's RequestVote rpc type, or the native preamble.
        assert!(bytes.starts_with(first_bytes), "{listed}: {bytes:02x?}");
        calls_answered(client, 0);
    }
}
