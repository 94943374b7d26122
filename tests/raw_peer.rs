//! A peer's end of stream arriving together with its last bytes, seen from the calling side.
//!
//! These tests play the server by hand on a plain `std::net::TcpListener`, and park the client's
//! reactor thread inside a heartbeat handler (which runs on the reactor) while the "server"
//! writes its last bytes and closes. The reactor then sees one readiness event carrying both the
//! data and the end of stream, exactly what happens on a loaded machine when the reactor thread
//! is not scheduled for a moment (that is how hashicorp_net.rs's
//! `server_close_fails_the_callers_call` failed before it waited for the preamble).

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use common::fixtures::*;
use common::net::*;
use common::wire::encode_stream;
use raftnet::message::*;
use raftnet::wire::native::*;
use raftnet::wire::*;
use raftnet::*;

/// Read the preamble and one frame from a raftnet client.
fn read_frame(sock: &mut TcpStream) -> Frame {
    sock.set_read_timeout(Some(EVENTUALLY)).expect("timeout");
    let mut decoder = FrameDecoder::new();
    let mut buf = bytes::BytesMut::new();
    loop {
        if let Some(frame) = decoder.decode(&mut buf).expect("valid frames") {
            return frame;
        }
        let mut chunk = [0u8; 4096];
        let n = sock.read(&mut chunk).expect("read from the client");
        assert!(n > 0, "the client closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A client transport whose reactor can be parked: `park()` returns once the reactor thread is
/// blocked inside the heartbeat handler; `unpark()` releases it.
struct Parkable {
    client: NetTransport,
    helper: NetTransport,
    entered: mpsc::Receiver<()>,
    release: mpsc::Sender<()>,
}

impl Parkable {
    fn new() -> Parkable {
        let client = bind(test_config());
        let helper = bind(test_config());
        let (entered_tx, entered) = mpsc::channel();
        let (release, release_rx) = mpsc::channel::<()>();
        let entered_tx = Mutex::new(entered_tx);
        let release_rx = Mutex::new(release_rx);
        client.set_heartbeat_handler(Some(Arc::new(move |rpc: Rpc| {
            let _ = entered_tx
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .send(());
            let _ = release_rx
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .recv_timeout(EVENTUALLY);
            rpc.respond_ok(append_response());
        })));
        Parkable {
            client,
            helper,
            entered,
            release,
        }
    }

    /// Park the client's reactor; returns the heartbeat call that parked it.
    fn park(&self) -> Call<AppendEntriesResponse> {
        let call = self.helper.append_entries(
            &id(),
            &self.client.local_addr(),
            heartbeat_request(),
            CallOptions::default(),
        );
        recv_eventually(&self.entered, "the client's reactor is parked");
        call
    }

    fn unpark(&self, parked: Call<AppendEntriesResponse>) {
        self.release.send(()).expect("release the reactor");
        assert_eq!(finish(parked), Ok(append_response()));
    }
}

/// A vote from a [`Parkable`] client, waiting on the hand-played server, which has accepted the
/// connection and read the request (`frame`) off it.
struct PendingVote {
    // Held until the test ends, as the listener of a real server would be.
    _listener: TcpListener,
    parkable: Parkable,
    call: Call<RequestVoteResponse>,
    sock: Option<TcpStream>,
    frame: Frame,
}

impl PendingVote {
    fn new() -> PendingVote {
        let raw = TcpListener::bind("127.0.0.1:0").expect("bind");
        let raw_addr = ServerAddress::from(raw.local_addr().expect("address"));
        let parkable = Parkable::new();
        let call =
            parkable
                .client
                .request_vote(&id(), &raw_addr, vote_request(), CallOptions::default());
        let (mut sock, _) = raw.accept().expect("accept");
        let frame = read_frame(&mut sock);
        PendingVote {
            _listener: raw,
            parkable,
            call,
            sock: Some(sock),
            frame,
        }
    }

    /// The server's last words: with the client's reactor parked, write `bytes` and close the
    /// connection, so that the reactor finds both in one readiness event.
    fn last_bytes_then_close(&mut self, bytes: &[u8]) {
        let mut sock = self.sock.take().expect("the connection is still open");
        let parked = self.parkable.park();
        sock.write_all(bytes).expect("write the last bytes");
        drop(sock);
        self.parkable.unpark(parked);
    }
}

/// A peer that sends its preamble and closes at once, while a call waits on the connection:
/// the call must fail with a connection error as soon as the reactor looks, not wait for its
/// deadline.
#[test]
fn eof_after_a_preamble_fails_a_pending_call() {
    let mut pending = PendingVote::new();
    assert_eq!(
        pending.frame.message,
        Message::Request(Request::RequestVote(vote_request()))
    );

    pending.last_bytes_then_close(&PREAMBLE);

    let result = finish(pending.call);
    assert!(
        matches!(result, Err(Error::Io(_))),
        "expected a connection error when the peer closed, got {result:?}"
    );
}

/// A peer that answers and closes at once: the answer is delivered, and the dead connection
/// must not be kept in the pool (where the next call would pick it up and fail).
#[test]
fn eof_right_after_an_answer_drops_the_pooled_connection() {
    let mut pending = PendingVote::new();

    let answer = Frame {
        request_id: pending.frame.request_id,
        lane: pending.frame.lane,
        flags: Flags::NONE,
        message: Message::Response(Response::RequestVote(vote_response())),
    };
    pending.last_bytes_then_close(&encode_stream(&FrameEncoder::new(), &[answer]));

    assert_eq!(finish(pending.call), Ok(vote_response()));
    wait_until("the closed connection leaves the pool", || {
        pending.parkable.client.pooled_connections() == 0
    });
}
