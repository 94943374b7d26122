//! `raftnet-uring-task-work`: can a thread that did not submit an io_uring operation see it
//! complete without the submitting thread waking? The question behind a leader/follower
//! io_uring driver (issue 12): the epoll driver lets a blocked caller run the loop while the
//! driver's thread sleeps, and socket events then wake only the caller. On io_uring the
//! kernel finishes a socket operation in "task work" of the thread that submitted it.
//!
//! ```text
//! cargo run --release -p raftnet-bench --bin raftnet-uring-task-work
//! ```
//!
//! Thread A (the driver's thread) arms a single-shot receive on each of `EVENTS` connections,
//! then sleeps. Thread B (a would-be leader) writes to the connections one at a time and,
//! after each write, looks at the completion queue (memory shared with the kernel; B makes no
//! system call on the ring) until the receive's completion shows. Printed per task-run mode:
//! the completions B saw, how long each took to show, and how many times A was woken while it
//! slept (its voluntary context switches beyond the one its sleep itself makes).

use std::io::Write;
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use io_uring::{IoUring, opcode, types};

/// Connections, and so receives armed and events sent.
const EVENTS: usize = 10;
/// How long A sleeps: longer than B's whole run.
const A_SLEEPS: Duration = Duration::from_millis(600);
/// How long B looks for one completion before giving up on it.
const B_LOOKS: Duration = Duration::from_millis(40);

#[derive(Clone, Copy, Debug)]
enum Mode {
    /// No flag: task work interrupts the submitter (io_uring's default).
    Interrupting,
    /// `IORING_SETUP_COOP_TASKRUN` with `TASKRUN_FLAG` (raftnet's driver's default).
    Cooperative,
    /// `IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN`: task work only in the submitter's
    /// `io_uring_enter`.
    Deferred,
}

fn voluntary_switches_of_this_thread() -> i64 {
    let usage = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_THREAD)
        .expect("getrusage");
    usage.voluntary_context_switches()
}

/// One run: `events` writes (0: none, the baseline of A's own sleep).
fn run(mode: Mode, events: usize) -> (Vec<Duration>, i64) {
    let mut builder: io_uring::Builder = IoUring::builder();
    match mode {
        Mode::Interrupting => {}
        Mode::Cooperative => {
            builder.setup_coop_taskrun().setup_taskrun_flag();
        }
        Mode::Deferred => {
            builder
                .setup_single_issuer()
                .setup_defer_taskrun()
                .setup_r_disabled();
        }
    }
    let ring: Arc<Mutex<IoUring>> = Arc::new(Mutex::new(builder.build(64).expect("a ring")));
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let mut pairs: Vec<(TcpStream, TcpStream)> = (0..EVENTS)
        .map(|_| {
            let writer = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
            let (reader, _) = listener.accept().unwrap();
            (writer, reader)
        })
        .collect();
    let fds: Vec<i32> = pairs.iter().map(|(_, r)| r.as_raw_fd()).collect();
    let (armed_tx, armed) = std::sync::mpsc::channel();
    let ring_a = ring.clone();
    let a = std::thread::spawn(move || {
        let mut bufs = vec![[0u8; 64]; EVENTS];
        {
            let mut ring = ring_a.lock().unwrap();
            if let Mode::Deferred = mode {
                ring.submitter().register_enable_rings().expect("enable");
            }
            for (i, fd) in fds.iter().enumerate() {
                let recv = opcode::Recv::new(types::Fd(*fd), bufs[i].as_mut_ptr(), 64)
                    .build()
                    .user_data(i as u64);
                // SAFETY: `bufs` outlives the receives: this thread keeps it until after its
                // sleep, by which time B has seen every completion or stopped looking, and the
                // ring is dropped (cancelling what is left) before `bufs` is.
                unsafe { ring.submission().push(&recv).expect("room") };
            }
            ring.submit().expect("submit");
        }
        let before = voluntary_switches_of_this_thread();
        armed_tx.send(()).unwrap();
        std::thread::sleep(A_SLEEPS);
        let woken = voluntary_switches_of_this_thread() - before - 1;
        (woken, bufs)
    });
    armed.recv().unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let mut seen = Vec::new();
    for (writer, _) in pairs.iter_mut().take(events) {
        writer.write_all(b"hello").unwrap();
        let wrote = Instant::now();
        while wrote.elapsed() < B_LOOKS {
            let mut ring = ring.lock().unwrap();
            let completion = ring.completion().next();
            if completion.is_some() {
                seen.push(wrote.elapsed());
                break;
            }
        }
    }
    let (woken, _bufs) = a.join().unwrap();
    drop(ring);
    (seen, woken)
}

fn main() {
    println!(
        "{:<13} {:>6} {:>10} {:>22} {:>16}",
        "mode", "events", "B saw", "time to show (median)", "A woken (sleep)"
    );
    for mode in [Mode::Interrupting, Mode::Cooperative, Mode::Deferred] {
        for events in [0, EVENTS] {
            let (mut seen, woken) = run(mode, events);
            seen.sort();
            let median = seen
                .get(seen.len() / 2)
                .map_or("-".to_owned(), |d| format!("{d:?}"));
            println!(
                "{:<13} {:>6} {:>10} {:>22} {:>16}",
                format!("{mode:?}"),
                events,
                seen.len(),
                median,
                woken
            );
        }
    }
}
