//! Snapshots: flow control between the reader and the connection, and an oversized chunk.

use super::*;

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
        .submit(Command::Snapshot(Box::new(OutboundSnapshot {
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
        })));
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
fn an_oversized_snapshot_chunk_is_a_protocol_error_and_fails_the_reader() {
    let mut node = Node::new(config());
    let key = node
        .engine
        .handle_accepted(addr(CLIENT_ADDR), *START)
        .expect("admitted");
    // A hand-made InstallSnapshot of 3 bytes followed by a 4-byte chunk.
    let mut out = snapshot_request_bytes(3);
    push_chunk(&mut out, b"four", Flags::END_STREAM);
    node.engine.handle_bytes(key, &out.to_vec(), *START);
    let mut rpc = node.next_rpc();
    let mut reader = rpc.snapshot.take().unwrap();
    let error = reader.next_chunk().unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    assert_eq!(node.metrics().protocol_errors, 1);
    assert!(!node.engine.is_open(key));
}

/// The preamble and a hand-made InstallSnapshot request (id 9) for a body of `size` bytes.
fn snapshot_request_bytes(size: i64) -> SendQueue {
    let mut out = SendQueue::new();
    let encoder = FrameEncoder::new();
    encoder.preamble(&mut out);
    let request = Message::from(Request::from(InstallSnapshotRequest {
        size,
        ..Default::default()
    }));
    encoder
        .encode(&mut out, 9, Lane::Snapshot, Flags::NONE, &request)
        .unwrap();
    out
}

/// A chunk of request 9's body.
fn push_chunk(out: &mut SendQueue, chunk: &'static [u8], flags: Flags) {
    let chunk = Message::SnapshotChunk(Bytes::from_static(chunk));
    FrameEncoder::new()
        .encode(out, 9, Lane::Snapshot, flags, &chunk)
        .unwrap();
}

/// A hand-made InstallSnapshot of 10 bytes, a first chunk of 4, and the start of a second
/// chunk's frame cut 2 bytes into its body: what a receiver has when the sender closes
/// mid-chunk.
fn snapshot_cut_inside_a_chunk() -> Vec<u8> {
    let mut out = snapshot_request_bytes(10);
    push_chunk(&mut out, b"abcd", Flags::NONE);
    let whole = out.len();
    push_chunk(&mut out, b"efghij", Flags::END_STREAM);
    let mut bytes = out.to_vec();
    // The second frame's header, and 2 bytes of what follows it.
    bytes.truncate(whole + crate::wire::native::HEADER_LEN + 2);
    bytes
}

#[test]
fn a_body_cut_inside_a_chunk_after_its_answer_is_no_protocol_error() {
    let mut node = Node::new(config());
    let key = node
        .engine
        .handle_accepted(addr(CLIENT_ADDR), *START)
        .expect("admitted");
    node.engine
        .handle_bytes(key, &snapshot_cut_inside_a_chunk(), *START);
    // The Raft side gives up on the body and answers; the sender, answered, closes.
    let mut rpc = node.next_rpc();
    drop(rpc.snapshot.take());
    rpc.respond_ok(InstallSnapshotResponse {
        term: 9,
        success: false,
        ..Default::default()
    });
    assert!(node.engine.handle_handoff(*START));
    node.engine.handle_eof(key);
    assert_eq!(node.metrics().protocol_errors, 0);
    assert!(!node.engine.is_open(key));
}

#[test]
fn a_body_cut_inside_a_chunk_fails_its_reader_as_a_lost_connection() {
    let mut node = Node::new(config());
    let key = node
        .engine
        .handle_accepted(addr(CLIENT_ADDR), *START)
        .expect("admitted");
    node.engine
        .handle_bytes(key, &snapshot_cut_inside_a_chunk(), *START);
    let mut rpc = node.next_rpc();
    let mut reader = rpc.snapshot.take().unwrap();
    node.engine.handle_eof(key);
    assert_eq!(node.metrics().protocol_errors, 0);
    assert!(!node.engine.is_open(key));
    assert_eq!(&reader.next_chunk().unwrap().unwrap()[..], b"abcd");
    let error = reader.next_chunk().unwrap_err();
    assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
    assert!(error.to_string().contains("connection lost"), "{error}");
}
