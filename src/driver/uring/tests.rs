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
    driver_with_or_skip(test, Config::default())
}

/// [`driver_or_skip`] with a configuration.
fn driver_with_or_skip(test: &str, config: Config) -> Option<UringDriver> {
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
    let shared = Shared::new(config, Box::new(waker));
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
    let key = ConnKey::new(5, 1);
    let mut peer = insert_connected(&mut driver, key);
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

/// A connected loopback socket given to `driver` as connection `key`; the peer's end.
fn insert_connected(driver: &mut UringDriver, key: ConnKey) -> TcpStream {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let ours = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (peer, _) = listener.accept().unwrap();
    driver.insert(key, Socket::from(ours), None);
    peer
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
    let old = ConnKey::new(3, 1);
    let _old_peer = insert_connected(&mut driver, old);
    driver.submit_recv(old);
    driver.submit(false, None).unwrap();
    driver.remove(old);
    assert_eq!(
        driver.retired.len(),
        1,
        "the armed receive's memory is kept"
    );

    let new = ConnKey::new(3, 2);
    let mut new_peer = insert_connected(&mut driver, new);
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

/// A buffer ring a test gives the next driver its thread makes (multishot receives whatever
/// `RAFTNET_URING_RECV` says), and what that driver saw.
#[derive(Clone)]
pub(super) struct TestRing {
    pub(super) count: u16,
    pub(super) size: u32,
    /// Ask for incremental consumption (`IOU_PBUF_RING_INC`).
    pub(super) incremental: bool,
    /// Multishot receives `ENOBUFS` ended.
    pub(super) no_buffers: Arc<std::sync::atomic::AtomicU64>,
    /// At shutdown, after the drain: buffers in the ring as the driver counts them, and as
    /// the kernel does.
    pub(super) end: Arc<std::sync::Mutex<Option<(usize, usize)>>>,
}

thread_local! {
    static NEXT_RING: std::cell::RefCell<Option<TestRing>> =
        const { std::cell::RefCell::new(None) };
}

impl TestRing {
    fn new(count: u16, size: u32) -> TestRing {
        TestRing {
            count,
            size,
            incremental: true,
            no_buffers: Arc::default(),
            end: Arc::default(),
        }
    }

    /// For the next driver this thread makes.
    fn install(&self) {
        NEXT_RING.with(|next| *next.borrow_mut() = Some(self.clone()));
    }

    pub(super) fn take() -> Option<TestRing> {
        NEXT_RING.with(|next| next.borrow_mut().take())
    }

    pub(super) fn record_end(&self, bufs: &BufRing, ring: &IoUring) {
        let kernel = bufs.kernel_free(ring).expect("IORING_REGISTER_PBUF_STATUS");
        *self.end.lock().unwrap() = Some((bufs.free(), kernel));
    }
}

/// A driver receiving multishot from a ring of `count` buffers of `size` bytes, consumed
/// incrementally where the kernel can.
fn multishot_driver_or_skip(test: &str, count: u16, size: u32) -> Option<UringDriver> {
    multishot_driver_with(test, TestRing::new(count, size))
}

fn multishot_driver_with(test: &str, knob: TestRing) -> Option<UringDriver> {
    knob.install();
    let driver = driver_or_skip(test)?;
    assert!(
        driver.bufs.is_some(),
        "the buffer ring registers on Linux 6.0+"
    );
    Some(driver)
}

/// A driver whose ring of `count` buffers of `size` bytes is consumed incrementally, or `None`
/// with the reason printed where the kernel (before 6.12) cannot.
fn incremental_driver_or_skip(test: &str, knob: TestRing) -> Option<UringDriver> {
    let driver = multishot_driver_with(test, knob)?;
    if !driver.bufs.as_ref().unwrap().incremental() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: this kernel has no IOU_PBUF_RING_INC (Linux 6.12 has)"
        );
        return None;
    }
    Some(driver)
}

/// A multishot completion for a connection that closed carries a buffer of the ring: rejected
/// by its generation like any other, and its buffer handed back, so once every operation
/// ended the ring holds every buffer again (as both sides count them).
#[test]
fn a_closed_connections_multishot_completion_returns_its_buffer() {
    let test = "a_closed_connections_multishot_completion_returns_its_buffer";
    let Some(mut driver) = multishot_driver_or_skip(test, 4, 1024) else {
        return;
    };
    let key = ConnKey::new(3, 1);
    let mut peer = insert_connected(&mut driver, key);
    driver.submit_recv(key);
    driver.submit(false, None).unwrap();
    assert!(driver.entry(key).unwrap().recv.armed);
    peer.write_all(b"hello").unwrap();
    // The kernel fills a buffer and posts its completion; none is taken yet.
    let deadline = Instant::now() + Duration::from_secs(30);
    while driver.ring.completion().is_empty() {
        assert!(Instant::now() < deadline, "no completion came");
        driver.ring.submitter().submit().unwrap();
        std::thread::yield_now();
    }
    driver.remove(key);
    assert_eq!(driver.retired.len(), 1);
    run_until(&mut driver, |d| d.in_flight == 0);

    // The bytes' completion and the cancelled multishot's last one.
    assert_eq!(driver.stale_completions, 2);
    assert!(driver.retired.is_empty());
    let bufs = driver.bufs.as_ref().unwrap();
    assert_eq!(bufs.free(), 4);
    assert_eq!(bufs.kernel_free(&driver.ring).unwrap(), 4);

    // The next connection's bytes are its own, not the rejected ones (on an incremental ring
    // they follow them in the same buffer).
    let next = ConnKey::new(3, 2);
    let mut next_peer = insert_connected(&mut driver, next);
    driver.submit_recv(next);
    next_peer.write_all(b"world").unwrap();
    run_until(&mut driver, |d| d.in_flight == 0);
    assert_eq!(&driver.entry(next).unwrap().recv.buf[..], b"world");
}

/// On an incremental ring, small receives share a buffer: three connections' messages, all
/// received before the driver hands anything back, fit in a ring of one buffer, with no
/// receive ending for want of one (taken whole, the first would take the only buffer and the
/// others end `ENOBUFS`). Each connection gets exactly its own bytes, and the buffer, never
/// filled, stays in the ring.
#[test]
fn small_receives_share_one_buffer_of_an_incremental_ring() {
    let test = "small_receives_share_one_buffer_of_an_incremental_ring";
    let knob = TestRing::new(1, 4096);
    let Some(mut driver) = incremental_driver_or_skip(test, knob.clone()) else {
        return;
    };
    let keys = [ConnKey::new(1, 1), ConnKey::new(2, 1), ConnKey::new(3, 1)];
    let mut peers: Vec<TcpStream> = keys
        .iter()
        .map(|&key| insert_connected(&mut driver, key))
        .collect();
    for (i, peer) in peers.iter_mut().enumerate() {
        peer.write_all(format!("message {i} of {}", keys.len()).as_bytes())
            .unwrap();
    }
    // Armed after the bytes are there: the three receives complete as they are submitted.
    for &key in &keys {
        driver.submit_recv(key);
    }
    run_until(&mut driver, |d| d.in_flight == 0);
    for (i, &key) in keys.iter().enumerate() {
        let recv = &driver.entry(key).unwrap().recv;
        assert_eq!(
            std::str::from_utf8(&recv.buf).unwrap(),
            format!("message {i} of {}", keys.len())
        );
    }
    let no_buffers = knob.no_buffers.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(no_buffers, 0, "a receive found the ring empty");
    let bufs = driver.bufs.as_ref().unwrap();
    assert_eq!(bufs.free(), 1);
    assert_eq!(bufs.kernel_free(&driver.ring).unwrap(), 1);
}

/// Receiving while the engine does not want the bytes (its reading paused; here it does not
/// know the connection at all): they are kept in the connection's buffer, the multishot is
/// cancelled, and the ring gets its buffer back at once.
#[test]
fn a_paused_connection_holds_its_bytes_and_no_buffer() {
    let test = "a_paused_connection_holds_its_bytes_and_no_buffer";
    let Some(mut driver) = multishot_driver_or_skip(test, 4, 1024) else {
        return;
    };
    let key = ConnKey::new(2, 1);
    let mut peer = insert_connected(&mut driver, key);
    driver.submit_recv(key);
    peer.write_all(b"hello").unwrap();
    run_until(&mut driver, |d| d.in_flight == 0);
    let recv = &driver.entry(key).unwrap().recv;
    assert_eq!(&recv.buf[..], b"hello");
    assert!(recv.held);
    assert!(!recv.armed, "cancelled");
    assert!(recv.end.is_none(), "the cancel is not the stream's end");
    assert_eq!(driver.bufs.as_ref().unwrap().free(), 4);
    assert_eq!(driver.stale_completions, 0);
}

/// The ring running dry: 48 connections of a transport on a ring of 2 buffers of 512 bytes,
/// each sending appends of 4 KiB at once. Multishot receives end with `ENOBUFS` (counted:
/// the case was hit) and are armed again; every call gets exactly its own answer, and at
/// shutdown the ring holds all its buffers.
#[test]
fn an_empty_buffer_ring_ends_receives_and_every_call_completes() {
    use crate::message::*;
    use crate::{Backend, CallOptions, NetTransport, Transport};
    const CLIENTS: usize = 48;
    const CALLS: u64 = 20;
    if driver_or_skip("an_empty_buffer_ring_ends_receives_and_every_call_completes").is_none() {
        return;
    }
    let knob = TestRing::new(2, 512);
    knob.install();
    let config = Config::default().timeout(Some(Duration::from_secs(30)));
    let server =
        NetTransport::bind("127.0.0.1:0", None, config.clone().backend(Backend::Uring)).unwrap();
    let consumer = server.consumer().clone();
    let serving = std::thread::spawn(move || {
        for _ in 0..CLIENTS as u64 * CALLS {
            let rpc = consumer.recv().unwrap();
            let Request::AppendEntries(r) = &rpc.request else {
                panic!("an append was sent");
            };
            let (term, last_log) = (r.term, r.entries[0].index);
            let intact = r.entries[0].data.as_deref() == Some(&payload(term)[..]);
            rpc.respond_ok(AppendEntriesResponse {
                term,
                last_log,
                success: intact,
                ..Default::default()
            });
        }
    });
    let target = server.local_addr();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let target = target.clone();
            let config = config.clone().backend(Backend::Epoll);
            std::thread::spawn(move || {
                let client = NetTransport::bind("127.0.0.1:0", None, config).unwrap();
                let calls: Vec<_> = (0..CALLS)
                    .map(|i| {
                        let term = (c as u64 + 1) * 1000 + i;
                        let request = AppendEntriesRequest {
                            term,
                            entries: vec![Log {
                                index: i,
                                term,
                                data: Some(payload(term)),
                                ..Default::default()
                            }],
                            ..Default::default()
                        };
                        client.append_entries(
                            &"server".into(),
                            &target,
                            request,
                            CallOptions::default(),
                        )
                    })
                    .collect();
                for (i, call) in (0..CALLS).zip(calls) {
                    let answer = call.wait().unwrap();
                    assert_eq!(answer.term, (c as u64 + 1) * 1000 + i);
                    assert_eq!(answer.last_log, i);
                    assert!(answer.success, "the payload arrived intact");
                }
                client.close();
            })
        })
        .collect();
    for client in clients {
        client.join().unwrap();
    }
    serving.join().unwrap();
    server.close();
    let no_buffers = knob.no_buffers.load(std::sync::atomic::Ordering::Relaxed);
    assert!(no_buffers > 0, "the ring never ran dry");
    assert_eq!(*knob.end.lock().unwrap(), Some((2, 2)));
}

/// 4 KiB that tell `term`'s append from any other's.
fn payload(term: u64) -> Bytes {
    (0..4096u64)
        .map(|i| (term.wrapping_mul(31).wrapping_add(i) % 251) as u8)
        .collect()
}

/// A stream through a ring far smaller than it, read while the engine does not want it: each
/// completion's bytes are held and the multishot cancelled, or the ring runs dry (`ENOBUFS`)
/// and the receive is armed again; every byte arrives, once, in order.
#[test]
fn a_stream_through_a_small_ring_arrives_whole_and_in_order() {
    let test = "a_stream_through_a_small_ring_arrives_whole_and_in_order";
    if let Some(driver) = incremental_driver_or_skip(test, TestRing::new(4, 4096)) {
        stream_through(driver);
    }
}

/// As above, each receive taking a whole buffer (the ring registered without
/// `IOU_PBUF_RING_INC`, as on kernels before 6.12).
#[test]
fn a_stream_through_a_small_ring_of_whole_buffers_arrives_whole_and_in_order() {
    let test = "a_stream_through_a_small_ring_of_whole_buffers_arrives_whole_and_in_order";
    let mut knob = TestRing::new(4, 4096);
    knob.incremental = false;
    if let Some(driver) = multishot_driver_with(test, knob) {
        assert!(!driver.bufs.as_ref().unwrap().incremental());
        stream_through(driver);
    }
}

/// 16 MiB from a peer through `driver`'s ring of 4 buffers, taken as a paused connection's.
fn stream_through(mut driver: UringDriver) {
    let key = ConnKey::new(2, 1);
    let mut peer = insert_connected(&mut driver, key);
    const TOTAL: usize = 16 << 20;
    let pattern = |i: usize| (i % 251) as u8;
    let writer = std::thread::spawn(move || {
        let data: Vec<u8> = (0..TOTAL).map(pattern).collect();
        peer.write_all(&data).unwrap();
        peer
    });
    let mut got: Vec<u8> = Vec::with_capacity(TOTAL);
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.len() < TOTAL {
        assert!(Instant::now() < deadline, "{} bytes arrived", got.len());
        // What the engine's `ResumeRead` does: take the held bytes, arm again.
        let recv = &mut driver.entry(key).unwrap().recv;
        if recv.held {
            got.extend_from_slice(&recv.buf);
            recv.buf.clear();
            recv.held = false;
        }
        driver.submit_recv(key);
        driver
            .submit(true, Some(Duration::from_millis(10)))
            .unwrap();
        driver.dispatch();
    }
    let _peer = writer.join().unwrap();
    assert_eq!(got.len(), TOTAL);
    if let Some(i) = (0..TOTAL).find(|&i| got[i] != pattern(i)) {
        panic!("byte {i} is {}, not {}", got[i], pattern(i));
    }
    assert_eq!(driver.bufs.as_ref().unwrap().free(), 4);
}

/// A driver whose every send goes zero-copy, or why it cannot (printed as a skip).
fn zero_copy_driver_or_skip(test: &str) -> Option<UringDriver> {
    let driver = driver_with_or_skip(test, Config::default().zero_copy_send(Some(0)))?;
    if driver.zero_copy.is_none() {
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED {test}: this kernel's io_uring has no SEND_ZC (or RAFTNET_URING_SEND_ZC=off)"
        );
        return None;
    }
    Some(driver)
}

/// `len` pattern bytes whose memory tells when it is freed (the flag is set then).
fn tracked_piece(len: usize) -> (Bytes, Arc<std::sync::atomic::AtomicBool>) {
    struct Tracked(Vec<u8>, Arc<std::sync::atomic::AtomicBool>);
    impl AsRef<[u8]> for Tracked {
        fn as_ref(&self) -> &[u8] {
            &self.0
        }
    }
    impl Drop for Tracked {
        fn drop(&mut self) {
            self.1.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
    let freed = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let data = (0..len).map(|i| (i % 251) as u8).collect();
    (Bytes::from_owner(Tracked(data, freed.clone())), freed)
}

/// Give `key`'s send `piece`, as taken from the engine's queue, and submit it.
fn send_piece(driver: &mut UringDriver, key: ConnKey, piece: Bytes) {
    let entry = driver.entry(key).unwrap();
    let fd = entry.socket.as_raw_fd();
    entry.send.pieces = vec![piece];
    driver.submit_send(key, fd);
}

/// Connection `key`, closed with a zero-copy send of 32 MiB still lent to the kernel (more
/// than loopback's socket buffers hold, and the peer reads nothing): once the send's result
/// came back, rejected as stale, and the connection's memory was released, the buffer is still
/// held and not freed. Returns the peer's end and the flag set when the buffer is freed.
fn close_with_a_send_lent(
    driver: &mut UringDriver,
    key: ConnKey,
) -> (TcpStream, Arc<std::sync::atomic::AtomicBool>) {
    let peer = insert_connected(driver, key);
    let (piece, freed) = tracked_piece(32 << 20);
    send_piece(driver, key, piece);
    driver.submit(false, None).unwrap();
    driver.remove(key);
    run_until(driver, |d| d.stale_completions == 1 && d.retired.is_empty());
    assert_eq!(driver.zero_copy.as_ref().unwrap().held(), 1);
    assert!(
        !freed.load(std::sync::atomic::Ordering::SeqCst),
        "held while the kernel has it"
    );
    (peer, freed)
}

fn zero_copy_counts(driver: &UringDriver) -> (u64, u64) {
    let metrics = driver.engine.metrics();
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    (
        load(&metrics.zero_copy_sends),
        load(&metrics.zero_copy_copied),
    )
}

/// A zero-copy send's result comes first, then its notification; its buffer is freed only
/// after the notification (never with the result, when the kernel may still read it), and the
/// peer gets the bytes exactly.
#[test]
fn a_zero_copy_send_frees_its_buffer_only_after_the_notification() {
    let test = "a_zero_copy_send_frees_its_buffer_only_after_the_notification";
    let Some(mut driver) = zero_copy_driver_or_skip(test) else {
        return;
    };
    const LEN: usize = 64 << 10;
    let key = ConnKey::new(4, 1);
    let mut peer = insert_connected(&mut driver, key);
    let (piece, freed) = tracked_piece(LEN);
    send_piece(&mut driver, key, piece);
    let send = &driver.entry(key).unwrap().send;
    assert!(send.in_flight && send.zero_copy.is_some(), "sent zero-copy");
    assert_eq!(driver.zero_copy.as_ref().unwrap().held(), 1);

    let reader = std::thread::spawn(move || {
        let mut received = vec![0u8; LEN];
        peer.read_exact(&mut received).unwrap();
        received
    });
    run_until(&mut driver, |d| {
        let notified = zero_copy_counts(d).0 == 1;
        assert!(
            notified || !freed.load(std::sync::atomic::Ordering::SeqCst),
            "the buffer was freed before the kernel's notification"
        );
        notified && d.in_flight == 0
    });
    let (sends, copied) = zero_copy_counts(&driver);
    assert_eq!(sends, 1);
    // Over loopback the kernel copies, and says so.
    assert_eq!(copied, 1, "loopback's copy is reported");
    assert_eq!(driver.zero_copy.as_ref().unwrap().held(), 0);
    let send = &driver.entry(key).unwrap().send;
    assert!(!send.in_flight && send.zero_copy.is_none() && send.pieces.is_empty());
    assert!(
        freed.load(std::sync::atomic::Ordering::SeqCst),
        "freed after it"
    );
    let received = reader.join().unwrap();
    if let Some(i) = (0..LEN).find(|&i| received[i] != (i % 251) as u8) {
        panic!("byte {i} arrived altered");
    }
}

/// The fault case "SEND_ZC notifications after close": a connection closes with a
/// zero-copy send in the kernel (its peer does not read, so most of it cannot go). Its result
/// reaches no connection (rejected, counted stale) and the closed connection's memory is
/// released; the buffer stays held, since the closed socket still owns the bytes it queued
/// (TCP keeps sending them after `close`), until the peer goes too and the notification comes.
#[test]
fn a_zero_copy_sends_notification_after_close_frees_its_buffer() {
    let test = "a_zero_copy_sends_notification_after_close_frees_its_buffer";
    let Some(mut driver) = zero_copy_driver_or_skip(test) else {
        return;
    };
    let (peer, freed) = close_with_a_send_lent(&mut driver, ConnKey::new(6, 1));

    // The peer closes with the bytes unread: a reset, and the socket's queue is dropped.
    drop(peer);
    run_until(&mut driver, |d| {
        d.in_flight == 0 && d.zero_copy.as_ref().unwrap().held() == 0
    });
    assert_eq!(driver.stale_completions, 1, "the send's result, rejected");
    assert_eq!(zero_copy_counts(&driver).0, 1, "its notification, counted");
    assert!(
        freed.load(std::sync::atomic::Ordering::SeqCst),
        "the buffer is freed"
    );
}

/// A zero-copy send still lent to the kernel when the driver ends (its connection closed, its
/// peer reads nothing, so the closed socket keeps sending): the buffer is leaked, never freed
/// while the kernel may still transmit from it.
#[test]
fn a_zero_copy_send_still_lent_when_the_driver_ends_is_never_freed() {
    let test = "a_zero_copy_send_still_lent_when_the_driver_ends_is_never_freed";
    let Some(mut driver) = zero_copy_driver_or_skip(test) else {
        return;
    };
    let (peer, freed) = close_with_a_send_lent(&mut driver, ConnKey::new(7, 1));
    drop(driver);
    assert!(
        !freed.load(std::sync::atomic::Ordering::SeqCst),
        "freed while the kernel may still send from it"
    );
    drop(peer);
}

/// A zero-copy send the kernel refuses (here with a flag it does not know, as a kernel before
/// `REPORT_USAGE` would): zero-copy is turned off for the driver, and the send goes again,
/// copying, so the peer still gets every byte.
#[test]
fn a_refused_zero_copy_send_goes_again_copying() {
    let test = "a_refused_zero_copy_send_goes_again_copying";
    let Some(mut driver) = zero_copy_driver_or_skip(test) else {
        return;
    };
    driver.zero_copy.as_mut().unwrap().zc_flags = 1 << 15;
    let key = ConnKey::new(8, 1);
    let mut peer = insert_connected(&mut driver, key);
    send_piece(
        &mut driver,
        key,
        Bytes::from_static(b"refused, then copied"),
    );
    assert!(driver.entry(key).unwrap().send.zero_copy.is_some());
    run_until(&mut driver, |d| {
        d.in_flight == 0
            && d.entry(key)
                .is_some_and(|e| !e.send.in_flight && e.send.pieces.is_empty())
    });
    assert_eq!(driver.zero_copy.as_ref().unwrap().held(), 0);
    assert!(driver.zero_copy.as_ref().unwrap().refused());
    assert_eq!(
        zero_copy_counts(&driver),
        (0, 0),
        "no zero-copy send was made"
    );
    let mut received = [0u8; 20];
    peer.read_exact(&mut received).unwrap();
    assert_eq!(&received, b"refused, then copied");
}
