//! The io_uring driver's own cases, against a real ring and real sockets: what the generic
//! suite cannot reach (a short send, a completion for a closed connection).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};

use bytes::Bytes;

use super::*;
use crate::config::Config;
use crate::engine::Shared;

/// A driver with no connection yet, or why io_uring cannot run here (printed as a skip).
fn driver_or_skip(test: &str) -> Option<UringDriver> {
    if let Some(why) = unavailable() {
        // The stderr handle, not eprintln: libtest does not capture it, so the skip shows.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: io_uring cannot run here: {why}"
        );
        return None;
    }
    let (ring, taskrun, wake_fd, waker) = prepare().unwrap();
    enable_on_this_thread(&ring, taskrun).unwrap();
    let shared = Shared::new(Config::default(), Box::new(waker));
    let engine = Engine::new(shared, Instant::now);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    Some(UringDriver::new(ring, taskrun, wake_fd, listener, engine).unwrap())
}

/// Submit what is queued and take completions until `settled`, or fail after a while.
fn run_until(driver: &mut UringDriver, settled: impl Fn(&mut UringDriver) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !settled(driver) {
        assert!(Instant::now() < deadline, "the completions did not arrive");
        driver
            .submit(true, Some(Duration::from_millis(50)))
            .unwrap();
        driver.dispatch();
    }
}

/// A send the kernel completed in part (loopback never does that on its own, so the test
/// reports one): the rest, and only the rest, goes out next, before anything else.
#[test]
fn a_short_send_sends_the_rest_first() {
    let Some(mut driver) = driver_or_skip("a_short_send_sends_the_rest_first") else {
        return;
    };
    let (socket, mut peer) = connected();
    let key = ConnKey::new(5, 1);
    driver.insert(key, socket, None);
    let send = &mut driver.entry(key).unwrap().send;
    send.pieces = vec![Bytes::from_static(b"hello "), Bytes::from_static(b"world")];
    send.in_flight = true;
    driver.in_flight += 1;

    // The kernel took "hel" of the first piece.
    driver.sent(key, 3);
    let send = &driver.entry(key).unwrap().send;
    assert!(send.in_flight, "the rest is submitted at once");
    assert_eq!(send.pieces, [&b"lo "[..], &b"world"[..]]);
    run_until(&mut driver, |d| {
        d.entry(key)
            .is_some_and(|e| !e.send.in_flight && e.send.pieces.is_empty())
    });
    let mut received = [0u8; 8];
    peer.read_exact(&mut received).unwrap();
    assert_eq!(&received, b"lo world");
}

/// A connected socket and its peer, on loopback.
fn connected() -> (Socket, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (peer, _) = listener.accept().unwrap();
    (Socket::from(ours), peer)
}

/// The fault case: a receive still in the kernel when its connection closes, and
/// the slot taken at once by the next connection (the engine reuses slab slots). The late
/// completion must reach neither the new connection nor the engine, and must release the
/// old receive's buffer.
#[test]
fn a_completion_for_a_closed_connection_is_rejected_by_its_generation() {
    let Some(mut driver) =
        driver_or_skip("a_completion_for_a_closed_connection_is_rejected_by_its_generation")
    else {
        return;
    };
    let (old_socket, _old_peer) = connected();
    let old = ConnKey::new(3, 1);
    driver.insert(old, old_socket, None);
    driver.submit_recv(old);
    driver.submit(false, None).unwrap();
    driver.remove(old);
    assert_eq!(
        driver.retired.len(),
        1,
        "the armed receive's memory is kept"
    );

    let (new_socket, mut new_peer) = connected();
    let new = ConnKey::new(3, 2);
    driver.insert(new, new_socket, None);
    driver.submit_recv(new);
    new_peer.write_all(b"hello").unwrap();

    run_until(&mut driver, |d| {
        d.stale_completions == 1
            && d.retired.is_empty()
            && d.entry(new).is_some_and(|e| e.recv.held)
    });
    assert_eq!(driver.stale_completions, 1);
    let entry = driver.entry(new).unwrap();
    assert_eq!(&entry.recv.buf[..], b"hello");
    assert!(
        entry.recv.end.is_none(),
        "the old receive's cancellation is not the new one's"
    );
}

/// The fault case "a ring full of submissions": a turn that queues more operations than
/// the submission queue holds hands the full queue to the kernel and goes on queueing (nothing
/// dropped, nothing waiting for a completion to make room), and every one completes.
#[test]
fn a_full_submission_queue_is_submitted_and_reused() {
    let Some(mut driver) = driver_or_skip("a_full_submission_queue_is_submitted_and_reused") else {
        return;
    };
    let system_calls = |d: &UringDriver| {
        d.engine
            .metrics()
            .system_calls
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let calls_before = system_calls(&driver);
    let operations = 3 * SQ_ENTRIES as usize + 7;
    for _ in 0..operations {
        // No-ops naming no connection: their completions only count down `in_flight`.
        driver.push(
            opcode::Nop::new()
                .build()
                .user_data(Token::new(Op::Cancel, None).0),
        );
    }
    assert_eq!(driver.in_flight, operations, "every operation was queued");
    let calls = system_calls(&driver) - calls_before;
    assert_eq!(
        calls, 3,
        "one submission for each time the queue was full ({SQ_ENTRIES} entries)"
    );
    run_until(&mut driver, |d| d.in_flight == 0);
    assert_eq!(driver.stale_completions, 0);
}
