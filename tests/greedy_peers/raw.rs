//! The attackers' raw side: sockets (from a loopback address of their own if need be), native
//! frames built once and copied with new ids, and the server's answers read back.

use std::io::{ErrorKind, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use raftnet::message::*;
use raftnet::wire::native::*;
use raftnet::wire::*;

use crate::common::net::*;
use crate::common::tls::RawPeer;

// ---- raw peers ---------------------------------------------------------------------------------

/// A raw connection to `addr`.
pub(crate) fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// A raw connection to `addr` from the loopback address `ip` (Linux answers on all of
/// 127.0.0.0/8): a peer with an address of its own.
pub(crate) fn connect_from(ip: Ipv4Addr, addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).expect("a socket");
    socket
        .bind(&SocketAddr::new(IpAddr::V4(ip), 0).into())
        .unwrap_or_else(|e| panic!("bind to {ip}: {e}"));
    socket.connect(&addr.into()).expect("connect");
    socket.set_tcp_nodelay(true).expect("nodelay");
    socket.into()
}

/// One native frame.
pub(crate) fn frame(id: u64, lane: Lane, flags: Flags, message: &Message) -> Vec<u8> {
    let mut out = SendQueue::new();
    FrameEncoder::new()
        .encode(&mut out, id, lane, flags, message)
        .expect("encodes");
    out.to_vec()
}

pub(crate) fn request(id: u64, lane: Lane, request: impl Into<Request>) -> Vec<u8> {
    frame(id, lane, Flags::NONE, &Message::Request(request.into()))
}

pub(crate) fn snapshot_request(id: u64, term: u64, size: u64) -> Vec<u8> {
    let r = InstallSnapshotRequest {
        term,
        size: size as i64,
        ..Default::default()
    };
    request(id, Lane::Snapshot, r)
}

pub(crate) fn chunk(id: u64, body: &[u8], last: bool) -> Vec<u8> {
    let flags = if last { Flags::END_STREAM } else { Flags::NONE };
    let message = Message::SnapshotChunk(Bytes::copy_from_slice(body));
    frame(id, Lane::Snapshot, flags, &message)
}

/// `frame` with its request id set to `id` (header bytes 8 to 16), appended to `out`: floods
/// are a frame encoded once and copied.
pub(crate) fn with_id(frame: &[u8], id: u64, out: &mut Vec<u8>) {
    let at = out.len();
    out.extend_from_slice(frame);
    out[at + 8..at + 16].copy_from_slice(&id.to_be_bytes());
}

/// What the server sends on `stream` until it closes it or `within` passes: the frames after
/// its preamble, and whether it closed.
pub(crate) fn read_answers(stream: &mut RawPeer, within: Duration) -> (Vec<Frame>, bool) {
    let deadline = Instant::now() + within;
    let mut decoder = FrameDecoder::new();
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut piece = vec![0u8; 64 << 10];
    let closed = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break false;
        }
        stream
            .socket()
            .set_read_timeout(Some(left.min(Duration::from_millis(100))))
            .expect("read timeout");
        match stream.read(&mut piece) {
            Ok(0) => break true,
            Ok(n) => {
                buf.extend_from_slice(&piece[..n]);
                while let Ok(Some(f)) = decoder.decode(&mut buf) {
                    frames.push(f);
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            // Reset: closed too.
            Err(_) => break true,
        }
    };
    (frames, closed)
}

/// The server's first answer on `stream` (`None`: it closed the connection instead).
pub(crate) fn first_answer(stream: &mut RawPeer) -> Option<Frame> {
    next_answer(stream, &mut FrameDecoder::new(), &mut BytesMut::new())
}

/// The server's next answer on `stream`, decoded by the connection's `decoder` from what it
/// sent so far (`buf`); `None`: it closed the connection instead. Fails the test if neither
/// comes within [`EVENTUALLY`], or if the server sends what is not a frame.
pub(crate) fn next_answer(
    stream: &mut RawPeer,
    decoder: &mut FrameDecoder,
    buf: &mut BytesMut,
) -> Option<Frame> {
    let deadline = Instant::now() + EVENTUALLY;
    let mut piece = [0u8; 4096];
    stream
        .socket()
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    loop {
        if let Some(frame) = decoder.decode(buf).expect("the server sends frames") {
            return Some(frame);
        }
        assert!(
            Instant::now() < deadline,
            "neither answered nor closed within {EVENTUALLY:?}"
        );
        match stream.read(&mut piece) {
            Ok(0) => return None,
            Ok(n) => buf.extend_from_slice(&piece[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                ) => {}
            // Reset: closed too.
            Err(_) => return None,
        }
    }
}

/// A write timed out: the server stopped reading, and the kernel's buffers are full.
pub(crate) fn is_blocked(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}
