//! Framing at the edges: a frame cut at every byte, bytes and the end of stream in one
//! delivery, an end of stream inside a frame, a wrong frame on a serving connection.

use super::*;

#[test]
fn a_frame_cut_at_every_byte_boundary_decodes_the_same() {
    // The client's first bytes (preamble and request) reach the server one piece at a time,
    // for every piece size from 1 byte to the whole: exactly one RPC each time. Under Miri
    // (which runs this for the codec's unsafe writes, about 100x slower) a spread of sizes:
    // 1-byte pieces alone already cut at every boundary.
    let pieces: Vec<usize> = if cfg!(miri) {
        vec![1, 2, 3, 5, 8, 13, 21, 34, 64]
    } else {
        (1..=64).collect()
    };
    for piece in pieces {
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
