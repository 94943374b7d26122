//! One transport serving 1000 concurrent connections, each doing round trips; raw blocking
//! sockets speaking the native wire format, so there are exactly 1000 connections.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use common::net::*;
use common::peers::*;
use raftnet::message::*;
use raftnet::wire::native::*;
use raftnet::wire::*;
use raftnet::*;

const THREADS: usize = 20;
const CONNS_PER_THREAD: usize = 50;
const CONNECTIONS: usize = THREADS * CONNS_PER_THREAD;
const ROUNDS: u64 = 5;

/// A blocking native-protocol client on one TCP connection.
struct RawClient {
    stream: TcpStream,
    decoder: FrameDecoder,
    buf: BytesMut,
    encoder: FrameEncoder,
}

impl RawClient {
    fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).expect("connect");
        stream.set_nodelay(true).unwrap();
        stream.set_read_timeout(Some(EVENTUALLY)).unwrap();
        let encoder = FrameEncoder::new();
        let mut out = SendQueue::new();
        encoder.preamble(&mut out);
        let mut client = RawClient {
            stream,
            decoder: FrameDecoder::new(),
            buf: BytesMut::new(),
            encoder,
        };
        client.stream.write_all(&out.to_vec()).unwrap();
        client
    }

    fn send(&mut self, request_id: u64, request: Request) {
        let mut out = SendQueue::new();
        self.encoder
            .encode(
                &mut out,
                request_id,
                Lane::Control,
                Flags::NONE,
                &Message::Request(request),
            )
            .unwrap();
        self.stream.write_all(&out.to_vec()).expect("write request");
    }

    fn recv(&mut self) -> Frame {
        loop {
            if let Some(frame) = self.decoder.decode(&mut self.buf).expect("valid frames") {
                return frame;
            }
            let mut chunk = [0u8; 4096];
            let n = self.stream.read(&mut chunk).expect("read response");
            assert!(n > 0, "the server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// The value a request carries, unique per connection and round.
fn term_of(conn: usize, round: u64) -> u64 {
    (conn as u64 + 1) * 1_000 + round
}

#[test]
fn thousand_concurrent_connections_each_get_their_own_answers() {
    let server = Arc::new(bind(
        Config::default().timeout(Some(Duration::from_secs(30))),
    ));
    // Two threads answer, as a Raft side with a worker pool might.
    let answerers: Vec<_> = (0..2)
        .map(|_| echo_server(server.consumer().clone()))
        .collect();
    let addr = server.bound_addr();
    let connected = Arc::new(Barrier::new(THREADS + 1));
    let checked = Arc::new(Barrier::new(THREADS + 1));
    let round_trips = Arc::new(AtomicU64::new(0));

    let clients: Vec<_> = (0..THREADS)
        .map(|t| {
            let (connected, checked) = (connected.clone(), checked.clone());
            let round_trips = round_trips.clone();
            std::thread::spawn(move || {
                let mut conns: Vec<RawClient> = (0..CONNS_PER_THREAD)
                    .map(|_| RawClient::connect(addr))
                    .collect();
                for round in 0..ROUNDS {
                    // One request in flight on each of this thread's 50 connections at once.
                    for (i, c) in conns.iter_mut().enumerate() {
                        let conn = t * CONNS_PER_THREAD + i;
                        let term = term_of(conn, round);
                        c.send((round << 32) | conn as u64, vote(term).into());
                    }
                    for (i, c) in conns.iter_mut().enumerate() {
                        let conn = t * CONNS_PER_THREAD + i;
                        let term = term_of(conn, round);
                        let frame = c.recv();
                        assert_eq!(frame.request_id, (round << 32) | conn as u64);
                        assert_eq!(frame.lane, Lane::Control);
                        let Message::Response(Response::RequestVote(r)) = frame.message else {
                            panic!(
                                "connection {conn}: not a vote response: {:?}",
                                frame.message
                            );
                        };
                        assert_eq!(r.term, term, "connection {conn} got another's answer");
                        assert_eq!(
                            r.peers,
                            Some(Bytes::from(format!("candidate-{term}"))),
                            "connection {conn}"
                        );
                        assert!(r.granted);
                        round_trips.fetch_add(1, Ordering::Relaxed);
                    }
                    if round == 0 {
                        // Every connection of every thread is open and answered once.
                        connected.wait();
                    }
                }
                checked.wait();
                drop(conns);
            })
        })
        .collect();

    connected.wait();
    wait_until("the server to count 1000 open connections", || {
        server.open_connections() >= CONNECTIONS
    });
    eprintln!(
        "server: {} open connections, {} accepted",
        server.open_connections(),
        server.metrics().accepted
    );
    checked.wait();
    for c in clients {
        c.join().expect("client thread");
    }
    assert_eq!(
        round_trips.load(Ordering::Relaxed),
        CONNECTIONS as u64 * ROUNDS
    );
    let m = server.metrics();
    assert_eq!(m.accepted, CONNECTIONS as u64);
    assert_eq!(
        m.rpcs_received[RpcType::RequestVote],
        CONNECTIONS as u64 * ROUNDS
    );
    assert_eq!(m.protocol_errors, 0);
    // The clients hung up: the server lets go of every connection.
    wait_until("the server to close the 1000 connections", || {
        server.open_connections() == 0
    });
    let server = Arc::into_inner(server).expect("sole owner");
    drop(server);
    let answered: u64 = answerers.into_iter().map(|a| a.join().unwrap()).sum();
    assert_eq!(answered, CONNECTIONS as u64 * ROUNDS);
}

/// A burst of 600 dials that arrive while the reactor is busy: the listen backlog holds them
/// (the transport promises a backlog of 1024, "so bursts of dials are not dropped and retried a
/// second later"), and every one is then accepted and served, although no later connection
/// arrives to announce the ones left over after a turn's accept limit (the listener is
/// edge-triggered).
#[test]
fn burst_of_dials_while_reactor_busy_is_held_and_fully_accepted() {
    const BURST: usize = 600;
    let server = bind(Config::default().timeout(Some(Duration::from_secs(30))));
    let answerer = echo_server(server.consumer().clone());
    // A heartbeat handler that blocks the reactor thread until released: a tool to keep the
    // reactor busy while the burst queues up in the listen backlog.
    let release = Arc::new(AtomicBool::new(false));
    let entered = Arc::new(AtomicBool::new(false));
    {
        let (release, entered) = (release.clone(), entered.clone());
        server.set_heartbeat_handler(Some(Arc::new(move |rpc: Rpc| {
            entered.store(true, Ordering::SeqCst);
            while !release.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(1));
            }
            let response = echo_response(&rpc.request);
            rpc.respond_ok(response);
        })));
    }
    let client = bind(Config::default().timeout(Some(Duration::from_secs(30))));
    let hb = client.append_entries(
        &peer(),
        &server.local_addr(),
        heartbeat(1),
        CallOptions::default(),
    );
    wait_until("the heartbeat handler to run", || {
        entered.load(Ordering::SeqCst)
    });
    // The reactor is stuck in the handler: the handshakes complete in the kernel's backlog.
    let connected = Arc::new(AtomicU64::new(0));
    let addr = server.bound_addr();
    let dialer = {
        let connected = connected.clone();
        std::thread::spawn(move || {
            (0..BURST)
                .map(|_| {
                    let c = RawClient::connect(addr);
                    connected.fetch_add(1, Ordering::SeqCst);
                    c
                })
                .collect::<Vec<_>>()
        })
    };
    // A dial the backlog does not hold has its SYN dropped and blocks for a retransmission
    // (1 s, then 3 s, ...): give the burst a generous while, then let the reactor go anyway.
    let limit = std::time::Instant::now() + Duration::from_secs(10);
    while connected.load(Ordering::SeqCst) < BURST as u64 && std::time::Instant::now() < limit {
        std::thread::sleep(Duration::from_millis(5));
    }
    let held_while_busy = connected.load(Ordering::SeqCst);
    release.store(true, Ordering::SeqCst);
    assert!(hb.wait().is_ok());
    let mut conns = dialer.join().expect("dialer");
    for (i, c) in conns.iter_mut().enumerate() {
        c.stream
            .set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        c.send(i as u64 + 1, vote(i as u64 + 1).into());
    }
    // Every queued connection is accepted and answered.
    for (i, c) in conns.iter_mut().enumerate() {
        let frame = c.recv();
        assert_eq!(frame.request_id, i as u64 + 1, "connection {i}");
    }
    eprintln!("{held_while_busy} of {BURST} dials completed while the reactor was busy");
    assert_eq!(
        held_while_busy, BURST as u64,
        "the listen backlog held only {held_while_busy} dials"
    );
    drop(conns);
    drop(client);
    drop(server);
    answerer.join().unwrap();
}
