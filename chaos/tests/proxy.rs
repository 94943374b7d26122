//! Each fault of the proxy, measured on a raw TCP echo server through one [`Link`]: what
//! arrives, when, in what pieces, and how connections end. Time bounds are one-sided where they
//! can be (a delay is never shorter than asked) and generous where they cannot (an upper bound
//! only says the fault ends).

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::mpsc::{Receiver, channel};
use std::time::{Duration, Instant};

use raftnet_chaos::proxy::{Close, Direction, Faults, Link};

/// Upper bound for anything that should happen "soon" on a loaded machine.
const EVENTUALLY: Duration = Duration::from_secs(20);

/// An echo server on 127.0.0.1:0; every read's size is sent on the channel.
fn echo_server() -> (SocketAddr, Receiver<usize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (reads, rx) = channel();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let reads = reads.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 65536];
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            let _ = reads.send(n);
                            if stream.write_all(&buf[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    (addr, rx)
}

fn connect(link: &Link) -> TcpStream {
    let stream = TcpStream::connect(link.addr()).unwrap();
    stream.set_read_timeout(Some(EVENTUALLY)).unwrap();
    stream
}

/// Write `data` and read back as many bytes.
fn round_trip(stream: &mut TcpStream, data: &[u8]) -> Vec<u8> {
    stream.write_all(data).unwrap();
    let mut back = vec![0u8; data.len()];
    stream.read_exact(&mut back).unwrap();
    back
}

/// Whether nothing can be read within `wait` (a timeout, not an end of stream or an error).
fn silent_for(stream: &mut TcpStream, wait: Duration) -> bool {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut byte = [0u8; 1];
    let silent = matches!(
        stream.read(&mut byte),
        Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut
    );
    stream.set_read_timeout(Some(EVENTUALLY)).unwrap();
    silent
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

#[test]
fn without_faults_bytes_pass_unchanged() {
    let (server, _) = echo_server();
    let link = Link::start(server, 1).unwrap();
    let mut stream = connect(&link);
    let data = pattern(200_000);
    assert_eq!(round_trip(&mut stream, &data), data);
    // The proxy counts a chunk after writing it, so the reader can see the last bytes a
    // moment before the count does; the count must reach exactly the bytes sent, no more.
    let deadline = Instant::now() + EVENTUALLY;
    while link.stats().delivered != [200_000, 200_000] && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(link.stats().delivered, [200_000, 200_000]);
    assert_eq!(link.stats().accepted, 1);
}

#[test]
fn delay_holds_every_byte_at_least_that_long() {
    let (server, _) = echo_server();
    let link = Link::start(server, 2).unwrap();
    let mut stream = connect(&link);
    round_trip(&mut stream, b"warm"); // the connection is up; what follows is the delay alone
    link.set(
        Direction::Forward,
        Faults {
            delay: Duration::from_millis(300),
            jitter: Duration::from_millis(100),
            ..Faults::none()
        },
    );
    link.set(
        Direction::Backward,
        Faults {
            delay: Duration::from_millis(200),
            ..Faults::none()
        },
    );
    let start = Instant::now();
    assert_eq!(round_trip(&mut stream, b"ping"), b"ping");
    let rtt = start.elapsed();
    assert!(rtt >= Duration::from_millis(500), "round trip {rtt:?}");
    assert!(rtt < EVENTUALLY, "round trip {rtt:?}");
    link.heal();
    let start = Instant::now();
    round_trip(&mut stream, b"pong");
    assert!(start.elapsed() < Duration::from_millis(500).max(rtt / 2));
}

#[test]
fn bandwidth_limits_bytes_per_second() {
    let (server, _) = echo_server();
    let link = Link::start(server, 3).unwrap();
    let mut stream = connect(&link);
    round_trip(&mut stream, b"warm");
    link.set(
        Direction::Forward,
        Faults {
            bandwidth: Some(64 * 1024),
            ..Faults::none()
        },
    );
    // 128 KiB at 64 KiB/s: two seconds, less one chunk the writer may send before sleeping.
    let data = pattern(128 * 1024);
    let start = Instant::now();
    assert_eq!(round_trip(&mut stream, &data), data);
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(1000), "took {took:?}");
    assert!(took < EVENTUALLY, "took {took:?}");
}

#[test]
fn pieces_split_every_write() {
    let (server, reads) = echo_server();
    let link = Link::start(server, 4).unwrap();
    let mut stream = connect(&link);
    link.set(
        Direction::Forward,
        Faults {
            pieces: Some(3),
            ..Faults::none()
        },
    );
    let data = pattern(300);
    assert_eq!(round_trip(&mut stream, &data), data);
    let sizes: Vec<usize> = reads.try_iter().collect();
    assert_eq!(sizes.iter().sum::<usize>(), 300);
    // Without the fault the 300 bytes arrive in one read. The 3-byte pieces are written one by
    // one, and a reader on a loaded machine may still take a few at once: many reads, not
    // exactly 100.
    assert!(sizes.len() >= 10, "read sizes {sizes:?}");
}

#[test]
fn pause_holds_bytes_and_delivers_them_in_order_at_the_heal() {
    let (server, reads) = echo_server();
    let link = Link::start(server, 5).unwrap();
    let mut stream = connect(&link);
    round_trip(&mut stream, b"warm");
    let _ = reads.try_iter().count();
    link.set_both(Faults {
        paused: true,
        ..Faults::none()
    });
    let data = pattern(10_000);
    stream.write_all(&data).unwrap();
    assert!(silent_for(&mut stream, Duration::from_millis(400)));
    assert_eq!(
        reads.try_iter().count(),
        0,
        "the server read during the pause"
    );
    link.heal();
    let mut back = vec![0u8; data.len()];
    stream.read_exact(&mut back).unwrap();
    assert_eq!(back, data);
}

#[test]
fn blackhole_is_silence_then_a_reset_and_new_connections_work() {
    let (server, reads) = echo_server();
    let link = Link::start(server, 6).unwrap();
    let mut stream = connect(&link);
    round_trip(&mut stream, b"warm");
    let _ = reads.try_iter().count();
    link.set_both(Faults {
        blackhole: true,
        ..Faults::none()
    });
    stream.write_all(b"lost").unwrap();
    // Silence: neither an answer nor an end of stream.
    assert!(silent_for(&mut stream, Duration::from_millis(400)));
    assert_eq!(reads.try_iter().count(), 0);
    assert_eq!(link.stats().discarded[0], 4);
    link.heal();
    // The stream lost bytes: it is reset rather than resumed mid-stream.
    let mut buf = [0u8; 8];
    match stream.read(&mut buf) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset),
        Ok(n) => panic!("read {n} bytes from a connection that lost bytes"),
    }
    let mut fresh = connect(&link);
    assert_eq!(round_trip(&mut fresh, b"again"), b"again");
}

#[test]
fn one_way_cut_stops_one_direction_only() {
    let (server, reads) = echo_server();
    let link = Link::start(server, 7).unwrap();
    let mut stream = connect(&link);
    round_trip(&mut stream, b"warm");
    let _ = reads.try_iter().count();
    // Answers cut: the server still reads the request, the client hears nothing back.
    link.set(
        Direction::Backward,
        Faults {
            blackhole: true,
            ..Faults::none()
        },
    );
    stream.write_all(b"hello").unwrap();
    assert_eq!(reads.recv_timeout(EVENTUALLY), Ok(5));
    assert!(silent_for(&mut stream, Duration::from_millis(400)));
    link.heal();
    // Requests cut: the server reads nothing.
    let mut stream = connect(&link);
    round_trip(&mut stream, b"warm");
    let _ = reads.try_iter().count();
    link.set(
        Direction::Forward,
        Faults {
            blackhole: true,
            ..Faults::none()
        },
    );
    stream.write_all(b"hello").unwrap();
    assert!(silent_for(&mut stream, Duration::from_millis(400)));
    assert_eq!(reads.try_iter().count(), 0);
}

#[test]
fn drop_ends_connections_with_a_fin_or_a_reset() {
    let (server, _) = echo_server();
    let link = Link::start(server, 8).unwrap();
    let mut stream = connect(&link);
    round_trip(&mut stream, b"warm");
    assert_eq!(link.open_connections(), 1);
    assert_eq!(link.drop_connections(Close::Fin), 1);
    let mut buf = [0u8; 8];
    assert_eq!(
        stream.read(&mut buf).unwrap(),
        0,
        "a FIN reads as end of stream"
    );

    let mut stream = connect(&link);
    round_trip(&mut stream, b"warm");
    assert_eq!(link.drop_connections(Close::Rst), 1);
    match stream.read(&mut buf) {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset),
        Ok(n) => panic!("read {n} from a reset connection"),
    }
    let deadline = Instant::now() + EVENTUALLY;
    while link.open_connections() > 0 {
        assert!(Instant::now() < deadline, "the dropped connections linger");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(link.stats().closed_by_proxy, 2);
}

#[test]
fn a_target_that_is_down_closes_the_connection() {
    // A port that was free a moment ago: nothing listens there.
    let free = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let link = Link::start(free, 9).unwrap();
    let mut stream = connect(&link);
    let mut buf = [0u8; 8];
    match stream.read(&mut buf) {
        Ok(0) => {}
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset),
        Ok(n) => panic!("read {n} bytes from nowhere"),
    }
}
