//! Helpers shared by the robustness tests (exactly_once, many_connections, leaks, bad_input,
//! lanes_and_snapshots, async_and_metrics): transports on loopback, request builders, an echo
//! "Raft side", bounded polling, and deterministic snapshot bodies.
#![allow(dead_code)]

use std::io::{self, Read};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raftnet::wire::*;
use raftnet::*;

/// A generous bound for "eventually" on a slow, noisy 2-core machine.
pub const EVENTUALLY: Duration = Duration::from_secs(60);

pub fn bind(config: Config) -> NetTransport {
    NetTransport::bind("127.0.0.1:0", None, config).expect("bind 127.0.0.1:0")
}

pub fn pair(config: Config) -> (NetTransport, NetTransport) {
    (bind(config.clone()), bind(config))
}

pub fn peer() -> ServerId {
    ServerId::from("peer")
}

/// Poll `f` until it is true; panic with `what` if `limit` passes first.
pub fn wait_until(limit: Duration, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    let mut pause = Duration::from_micros(200);
    loop {
        if f() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for: {what}"
        );
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

pub fn vote(term: u64) -> RequestVoteRequest {
    RequestVoteRequest {
        term,
        candidate: Some(Bytes::from(format!("candidate-{term}"))),
        last_log_index: term.wrapping_mul(3),
        ..Default::default()
    }
}

/// A heartbeat by hashicorp's rule: term, a leader address, nothing else.
pub fn heartbeat(term: u64) -> AppendEntriesRequest {
    AppendEntriesRequest {
        term,
        leader: Some(Bytes::from_static(b"leader")),
        ..Default::default()
    }
}

/// An AppendEntries that is not a heartbeat: `prev` identifies it, `payload` bytes of entry.
pub fn append(term: u64, prev: u64, payload: usize) -> AppendEntriesRequest {
    AppendEntriesRequest {
        term,
        leader: Some(Bytes::from_static(b"leader")),
        prev_log_entry: prev,
        prev_log_term: term,
        entries: vec![Log::command(
            prev + 1,
            term,
            vec![(prev & 0xFF) as u8; payload],
        )],
        leader_commit_index: prev,
        ..Default::default()
    }
}

/// The answer the echo side gives: values derived from the request, so a test can tell that an
/// answer belongs to its own request.
pub fn echo_response(request: &Request) -> Response {
    match request {
        Request::AppendEntries(r) => AppendEntriesResponse {
            term: r.term,
            last_log: r.prev_log_entry + r.entries.len() as u64,
            success: true,
            ..Default::default()
        }
        .into(),
        Request::RequestVote(r) => RequestVoteResponse {
            term: r.term,
            peers: r.candidate.clone(),
            granted: true,
            ..Default::default()
        }
        .into(),
        Request::RequestPreVote(r) => RequestPreVoteResponse {
            term: r.term,
            granted: true,
            ..Default::default()
        }
        .into(),
        Request::InstallSnapshot(r) => InstallSnapshotResponse {
            term: r.term,
            success: true,
            ..Default::default()
        }
        .into(),
        Request::TimeoutNow(_) => TimeoutNowResponse::default().into(),
    }
}

/// Answer one RPC with [`echo_response`], reading a snapshot body to its end first.
pub fn echo(mut rpc: Rpc) {
    if let Some(mut reader) = rpc.snapshot.take() {
        let mut sink = Vec::new();
        if let Err(e) = reader.read_to_end(&mut sink) {
            rpc.respond_err(format!("snapshot body: {e}"));
            return;
        }
    }
    let response = echo_response(&rpc.request);
    rpc.respond_ok(response);
}

/// A thread answering every RPC of `consumer` with [`echo`] until the transport closes.
/// Returns how many it answered.
pub fn echo_server(consumer: Consumer) -> JoinHandle<u64> {
    std::thread::Builder::new()
        .name("echo-server".into())
        .spawn(move || {
            let mut n = 0;
            while let Ok(rpc) = consumer.recv() {
                echo(rpc);
                n += 1;
            }
            n
        })
        .expect("spawn echo server")
}

/// The byte at `offset` of a deterministic snapshot body.
pub fn pattern_byte(offset: u64) -> u8 {
    let x = offset.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 56) as u8 ^ (offset as u8)
}

/// A running checksum (FNV-1a over 64 bits) that can be fed in pieces.
#[derive(Debug, Clone, Copy)]
pub struct Checksum {
    pub state: u64,
    pub len: u64,
}

impl Default for Checksum {
    fn default() -> Self {
        Checksum {
            state: 0xcbf2_9ce4_8422_2325,
            len: 0,
        }
    }
}

impl Checksum {
    pub fn update(&mut self, bytes: &[u8]) {
        let mut h = self.state;
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01B3);
        }
        self.state = h;
        self.len += bytes.len() as u64;
    }
}

/// A reader that produces `limit` bytes of [`pattern_byte`] (`u64::MAX`: without end),
/// counting what was read out of it and checksumming it.
pub struct PatternReader {
    pub offset: u64,
    pub limit: u64,
    pub read: Arc<AtomicU64>,
    pub checksum: Arc<std::sync::Mutex<Checksum>>,
}

impl PatternReader {
    pub fn new(limit: u64) -> PatternReader {
        PatternReader {
            offset: 0,
            limit,
            read: Arc::new(AtomicU64::new(0)),
            checksum: Arc::new(std::sync::Mutex::new(Checksum::default())),
        }
    }
}

impl Read for PatternReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (self.limit - self.offset).min(buf.len() as u64) as usize;
        for (i, b) in buf[..n].iter_mut().enumerate() {
            *b = pattern_byte(self.offset + i as u64);
        }
        self.offset += n as u64;
        self.read.fetch_add(n as u64, Ordering::SeqCst);
        self.checksum.lock().unwrap().update(&buf[..n]);
        Ok(n)
    }
}

/// Percentile of sorted durations.
pub fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((sorted.len() as f64) * q).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}
