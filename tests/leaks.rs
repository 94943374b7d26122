//! Descriptor, thread and memory leak check: 100 cycles of two transports under heavy-ish use
//! (calls, a pipeline, a snapshot), closed; afterwards the process has the descriptors and
//! threads it had before, and its resident memory has not grown with the cycles. Cycles alternate between the epoll and the io_uring driver (where io_uring runs;
//! elsewhere all are epoll, and the test prints why): a ring's descriptor is counted while it is
//! open and must be gone at the end.
//!
//! This binary holds this one test only: tests in one binary run in parallel, and another
//! test's sockets and threads would disturb the counts.

mod common;

use std::io::Read;
use std::time::Duration;

use common::bodies::*;
use common::net::*;
use common::peers::*;
use raftnet::message::*;
use raftnet::*;

const CYCLES: usize = 100;
const CALLS_PER_CYCLE: u64 = 200;
const PIPELINED_PER_CYCLE: u64 = 100;
const SNAPSHOT_BYTES: u64 = 300_000;

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {dir}: {e}"))
        .count()
}

fn fds() -> usize {
    count("/proc/self/fd")
}

fn threads() -> usize {
    count("/proc/self/task")
}

/// The process's resident memory, in KiB (`VmRSS`), which counts the rings' mapped queues and
/// every buffer a connection held.
fn resident_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// Cycles run before resident memory is first read: the allocator's arenas and the first
/// connections' buffers settle by then.
const WARM_UP_CYCLES: usize = 10;
/// How much resident memory may grow from the warm-up to the end: measured under 1 MiB. Keeping
/// the receive buffer of every closed connection (tried by hand) grew it by 170 MiB over the
/// 90 cycles.
const RESIDENT_GROWTH_LIMIT_KIB: u64 = 16 * 1024;

fn fd_list() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| {
            let target = std::fs::read_link(e.path())
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "?".into());
            format!("{} -> {target}", e.file_name().to_string_lossy())
        })
        .collect();
    v.sort();
    v
}

/// Open io_uring instances of this process (`anon_inode:[io_uring]` descriptors).
fn ring_fds() -> usize {
    fd_list().iter().filter(|f| f.contains("io_uring")).count()
}

/// One cycle on `backend`; `baseline` (descriptors, threads) is checked against while the
/// transports are open, to show the counting sees them.
fn cycle(n: usize, backend: Backend, baseline: Option<(usize, usize)>) {
    let cfg = Config::default()
        .timeout(Some(Duration::from_secs(20)))
        .max_rpcs_in_flight(16)
        .max_pool(2)
        .backend(backend);
    let (a, b) = pair(cfg);
    assert_eq!(a.backend(), Some(backend));
    if backend == Backend::Uring && baseline.is_some() {
        assert!(
            ring_fds() >= 2,
            "the descriptor list sees both transports' rings"
        );
    }
    if let Some((fds_before, threads_before)) = baseline {
        // Each transport has a listener, a poll (or a ring) and a waker, and a reactor thread.
        assert!(
            fds() >= fds_before + 6,
            "the descriptor count sees the transports"
        );
        assert!(
            threads() >= threads_before + 2,
            "the thread count sees the reactors"
        );
    }
    let serve_b = echo_server(b.consumer().clone());
    let serve_a = echo_server(a.consumer().clone());
    // Calls both ways, in waves of 50 at once, so each wave dials many connections and all but
    // max_pool of them are closed again when it completes.
    for wave in 0..CALLS_PER_CYCLE / 50 {
        let calls: Vec<_> = (0..50)
            .map(|i| {
                let term = wave * 50 + i + 1;
                (
                    term,
                    a.request_vote(&peer(), &b.local_addr(), vote(term), CallOptions::default()),
                )
            })
            .collect();
        let r = b
            .append_entries(
                &peer(),
                &a.local_addr(),
                heartbeat(wave + 1),
                CallOptions::default(),
            )
            .wait()
            .expect("heartbeat");
        assert_eq!(r.term, wave + 1);
        for (term, c) in calls {
            let v = c
                .wait()
                .unwrap_or_else(|e| panic!("cycle {n} vote {term}: {e}"));
            assert_eq!(v.term, term);
        }
    }
    // A pipeline.
    let pipeline = a.append_entries_pipeline(&peer(), &b.local_addr()).unwrap();
    let futures: Vec<_> = (0..PIPELINED_PER_CYCLE)
        .map(|i| pipeline.send(append(1, i, 64)).unwrap())
        .collect();
    for (i, f) in futures.into_iter().enumerate() {
        assert_eq!(f.wait().unwrap().last_log, i as u64 + 1);
    }
    // A small snapshot, read by a Raft side of its own.
    let snap = a.install_snapshot(
        &peer(),
        &b.local_addr(),
        InstallSnapshotRequest {
            term: 1,
            size: SNAPSHOT_BYTES as i64,
            ..Default::default()
        },
        Box::new(PatternReader::new(SNAPSHOT_BYTES)),
        CallOptions::default(),
    );
    assert!(snap.wait().expect("snapshot").success);
    // A snapshot whose reader fails part-way, and a call to a dead address.
    let failing = a.install_snapshot(
        &peer(),
        &b.local_addr(),
        InstallSnapshotRequest {
            term: 1,
            size: SNAPSHOT_BYTES as i64,
            ..Default::default()
        },
        Box::new(PatternReader::new(SNAPSHOT_BYTES).take(SNAPSHOT_BYTES / 2)),
        CallOptions::default(),
    );
    assert!(failing.wait().is_err());
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let refused = a.request_vote(&peer(), &dead.into(), vote(1), CallOptions::default());
    assert!(refused.wait().is_err());
    drop(pipeline);
    // A pipeline still open, with appends in flight, when the transports close.
    let open = b.append_entries_pipeline(&peer(), &a.local_addr()).unwrap();
    let in_flight: Vec<_> = (0..8)
        .map(|i| open.send(append(1, i, 64)).unwrap())
        .collect();
    a.close();
    b.close();
    for f in in_flight {
        // Answered before the close, or failed by it: never left waiting.
        let _ = f.wait();
    }
    drop(open);
    serve_a.join().unwrap();
    serve_b.join().unwrap();
}

#[test]
fn no_descriptor_thread_or_memory_leaks_over_100_cycles() {
    let backends: &[Backend] = if uring_runs("leaks: the io_uring cycles") {
        &[Backend::Epoll, Backend::Uring]
    } else {
        &[Backend::Epoll]
    };
    let rings_before = ring_fds();
    let fds_before = fds();
    let fd_list_before = fd_list();
    let threads_before = threads();
    let mut resident_after_warm_up = 0;
    for n in 0..CYCLES {
        if n == WARM_UP_CYCLES {
            resident_after_warm_up = resident_kib();
        }
        let backend = backends[n % backends.len()];
        cycle(
            n,
            backend,
            (n < backends.len()).then_some((fds_before, threads_before)),
        );
    }
    let resident_at_end = resident_kib();
    eprintln!(
        "resident memory: {resident_after_warm_up} KiB after {WARM_UP_CYCLES} cycles, {resident_at_end} KiB after {CYCLES}"
    );
    assert!(
        resident_at_end <= resident_after_warm_up + RESIDENT_GROWTH_LIMIT_KIB,
        "resident memory grew by {} KiB over {} cycles (limit {RESIDENT_GROWTH_LIMIT_KIB} KiB)",
        resident_at_end.saturating_sub(resident_after_warm_up),
        CYCLES - WARM_UP_CYCLES
    );
    // Threads that were told to stop may take a moment to be reaped; sockets are closed
    // synchronously, but allow the same grace.
    let settled = (0..600).any(|_| {
        if fds() <= fds_before && threads() <= threads_before {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
        false
    });
    let (fds_after, threads_after) = (fds(), threads());
    eprintln!(
        "descriptors: {fds_before} before, {fds_after} after; threads: {threads_before} before, {threads_after} after"
    );
    if !settled {
        let before: std::collections::BTreeSet<_> = fd_list_before.into_iter().collect();
        let extra: Vec<_> = fd_list()
            .into_iter()
            .filter(|f| !before.contains(f))
            .take(20)
            .collect();
        eprintln!("descriptors not there before (first 20): {extra:#?}");
    }
    assert!(
        fds_after <= fds_before,
        "descriptors leaked: {fds_before} before, {fds_after} after {CYCLES} cycles"
    );
    assert_eq!(ring_fds(), rings_before, "io_uring instances left open");
    assert!(
        threads_after <= threads_before,
        "threads leaked: {threads_before} before, {threads_after} after {CYCLES} cycles"
    );
}
