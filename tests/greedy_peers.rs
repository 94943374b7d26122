//! Greedy, buggy and hostile peers against a real transport over sockets (issue 10): each attack
//! of the issue, the bound the engine's limits (`src/engine/limits.rs`) hold it to, and a
//! legitimate peer whose calls keep succeeding meanwhile. Cases 1 to 6 (all but the control
//! 6c and case 7) also run over mutual TLS (`common::tls::Security`): the server child serves
//! TLS, and the attackers write the same bytes inside TLS sessions of certificates its CA
//! signed, held to the same bounds plus what each TLS connection holds ([`TLS_CONNECTION`]).
//! Over TLS the slowloris peers (5b) complete their handshakes and then dribble a frame (a
//! handshake that stalls is tested in tests/tls.rs:
//! `an_accepted_connection_whose_handshake_stalls_is_closed`). The `ulimit -v` runs are plain
//! only.
//!
//! The attacked server runs in a child process (this binary re-run, `common::child`), so that
//! its memory is its own: tests in one binary are threads of one process. The parent reads the
//! child's `VmRSS`, `VmHWM` and `VmSize` from `/proc/<pid>/status` before, during (every 2 ms,
//! and `VmHWM` reset at the start) and after each attack. The attackers are raw sockets in the
//! parent; the legitimate peer is a raftnet client in the parent (`common::legit`) calling one
//! call after another, its latencies recorded while idle and during the attack.
//!
//! Each case is a function returning an [`Outcome`]; a test runs it and asserts within it, the
//! memory cases run again under `ulimit -v` (`under_an_address_space_limit_*`), and the ignored
//! `report` runs them all one after another and prints the table RELIABILITY.md shows:
//!
//! ```text
//! cargo test --release --test greedy_peers -- --ignored --nocapture report
//! ```
//!
//! No assertion is on timing: latencies are reported, not asserted (a loaded 2-core machine
//! stretches them). What is asserted: memory within the bound plus [`RSS_SLACK`], the limit's
//! metric, the answers or closes the attacker sees, and every legitimate call answered within
//! its call timeout. Deadlines the server must enforce use a 1 s `Config::timeout`, and a
//! closed connection is checked for no earlier than that (a lower bound no load can break).

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use common::child::*;
use common::legit::*;
use common::measure::profile;
use common::net::*;
use common::peers::{append, vote};
use common::tls::{RawPeer, Security};
use common::wire::frame_header;
use raftnet::message::*;
use raftnet::wire::native::*;
use raftnet::wire::*;
use raftnet::*;

/// The child's role: a no-op unless this binary was re-run as a server child.
#[test]
fn server_child() {
    serve_if_child();
}

// ---- bounds ------------------------------------------------------------------------------------

/// KiB in a MiB (memory is counted in KiB, as `/proc` does).
const MIB: u64 = 1024;

/// What the child's resident set may grow by, on top of what a limit lets an attack hold: its
/// own movement (the legitimate peer's calls, the allocator's caches and fragmentation, the log
/// lines it formats). The cases that hold nothing (4a, 4c, 7) grow it by 0.0 to 0.3 MiB; 8 MiB
/// leaves room for the allocator's rounding on top of the larger holdings, and keeps every
/// bound well below what each attack took before its limit (+160 MiB to +860 MiB resident,
/// 2.5 GiB of address space).
const RSS_SLACK: u64 = 8 * MIB;

/// What the child's address space may grow by, on top of what a limit lets an attack hold:
/// glibc reserves 64 MiB of address space for each thread's malloc arena, and a thread that
/// allocates for the first time (a snapshot reader) adds one; four of them. Against the
/// 2.5 GiB of reservations the 40 headers of case 1 made before memory followed bytes received.
const VM_SLACK: u64 = 256 * MIB;

/// The limits' defaults the bounds assume (src/config.rs), written out: the server child runs
/// with the library's defaults, so a default that changes, or a limit that stops acting, fails
/// a bound here instead of moving it.
const MAX_UNANSWERED_REQUESTS: u64 = 256;
/// `DEFAULT_MAX_INBOUND_SNAPSHOTS`.
const MAX_INBOUND_SNAPSHOTS: u64 = 4;
/// `DEFAULT_SNAPSHOT_BUFFER`, in KiB.
const SNAPSHOT_BUFFER: u64 = 4 * MIB;
/// `DEFAULT_MAX_ENTRIES_PER_REQUEST`.
const MAX_ENTRIES_PER_REQUEST: u64 = 65_536;

/// The most the server's driver reads from one connection before it cuts frames out and hands
/// them over (KiB): `READ_BUDGET` (256 KiB, src/driver/mio.rs), whose last read may take
/// `MAX_READ` (256 KiB) more. The limits act after a read's frames are handed over, so each
/// connection may hold one such read beyond them.
const ONE_READ: u64 = 512;

/// What a TLS connection holds in the server on top of a plain one (KiB): the TLS stream's
/// ciphertext buffer (64 KiB, `CIPHERTEXT_READ` in src/driver/tls/mod.rs) once it has read, and
/// rustls' session after its handshake, 32 KiB. The session measured: 500 slowloris sessions
/// (case 5b, each 10 bytes read) grew the server by +16.7 to +17.8 MiB against +4.4 to
/// +4.5 MiB plain in a debug build (+14.8 against +4.3 MiB in a release build), 21 to 27 KiB
/// more per connection, the buffer's touched pages included (it is zeroed memory, resident
/// only where written).
const TLS_CONNECTION: u64 = 64 + 32;

/// What `connections` held at once add to a bound over TLS (KiB), and the bound's words for it:
/// nothing over plain TCP.
fn tls_connections(security: &Security, connections: u64) -> (u64, String) {
    match security.is_tls() {
        true => (
            connections * TLS_CONNECTION,
            format!(
                " + {connections} × a TLS connection's {} KiB (its 64 KiB ciphertext buffer and \
                 rustls' session)",
                TLS_CONNECTION
            ),
        ),
        false => (0, String::new()),
    }
}

/// Calls the legitimate peer makes before an attack: its idle latency.
const IDLE_CALLS: usize = 200;

/// Calls the legitimate peer must get answered during an attack, at its worst.
const ATTACK_CALLS: usize = 100;

/// The legitimate peer's call timeout: a call not answered within it fails the test.
const LEGIT_TIMEOUT: Duration = Duration::from_secs(10);

/// The server's `Config::timeout` where a test waits for a slow-peer deadline.
const SHORT_TIMEOUT_MS: u64 = 1000;

// ---- an attack, measured -----------------------------------------------------------------------

/// One case's numbers: a row of RELIABILITY.md's table.
#[derive(Debug, Clone)]
struct Outcome {
    case: String,
    sent: String,
    bound: String,
    before: Memory,
    peak: Memory,
    after: Memory,
    idle_p99: Duration,
    idle_calls: usize,
    attack_p99: Duration,
    attack_max: Duration,
    attack_calls: usize,
    notes: String,
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

impl Outcome {
    fn header() -> &'static str {
        "| case | sent | bound (asserted) | RSS before / peak / after (MiB) | address space before / peak (MiB) | legit p99 idle → attack (ms) | ratio | notes |\n\
         |---|---|---|---|---|---|---|---|"
    }

    fn row(&self) -> String {
        let ratio = self.attack_p99.as_secs_f64() / self.idle_p99.as_secs_f64().max(1e-9);
        format!(
            "| {} | {} | {} | {} / {} / {} | {} / {} | {} ({} calls) → {} ({} calls, max {}) | {:.1}× | {} |",
            self.case,
            self.sent,
            self.bound,
            mib(self.before.rss),
            mib(self.peak.rss),
            mib(self.after.rss),
            mib(self.before.vm),
            mib(self.peak.vm),
            ms(self.idle_p99),
            self.idle_calls,
            ms(self.attack_p99),
            self.attack_calls,
            ms(self.attack_max),
            ratio,
            self.notes,
        )
    }
}

/// A memory bound: what the limit lets the attack hold (KiB), why, and whether address space
/// is bounded too (it is where the attack reserved without touching).
struct Bound {
    held: u64,
    why: String,
    address_space: bool,
}

impl Bound {
    fn rss_limit(&self) -> u64 {
        self.held + RSS_SLACK
    }

    fn vm_limit(&self) -> u64 {
        self.held + VM_SLACK
    }

    fn describe(&self) -> String {
        let mut text = format!(
            "RSS +≤ {} MiB ({} + {} slack)",
            mib(self.rss_limit()),
            self.why,
            mib(RSS_SLACK)
        );
        if self.address_space {
            text.push_str(&format!("; address space +≤ {} MiB", mib(self.vm_limit())));
        }
        text
    }
}

/// A server child under attack, the legitimate peer calling it, and its memory watched.
struct Attack {
    case: String,
    /// Plain TCP, or mutual TLS: the server's, the legitimate peer's and the attackers'.
    security: Security,
    server: ServerChild,
    legit: Legit,
    idle_from: Instant,
    started: Instant,
    before: Memory,
    hwm_reset: bool,
    sampler: Sampler,
}

impl Attack {
    /// Start a server child as `spec` says (under `ulimit -v` of `vm_limit` KiB if given), the
    /// legitimate peer, its idle calls; the attack starts when this returns.
    fn begin(
        case: &str,
        spec: ServerSpec,
        kind: LegitKind,
        legit_timeout: Duration,
        vm_limit: Option<u64>,
    ) -> Attack {
        Attack::begin_with(case, spec, kind, legit_timeout, vm_limit, Security::Plain)
    }

    /// [`begin`](Self::begin), over TLS if `security` says so: the server child serves it,
    /// the legitimate peer and the attackers ([`connect`](Self::connect)) dial with it.
    fn begin_with(
        case: &str,
        spec: ServerSpec,
        kind: LegitKind,
        legit_timeout: Duration,
        vm_limit: Option<u64>,
        security: Security,
    ) -> Attack {
        let case = match vm_limit {
            Some(kib) => format!(
                "{case}{}, under ulimit -v {} MiB",
                security.suffix(),
                kib / MIB
            ),
            None => format!("{case}{}", security.suffix()),
        };
        let spec = ServerSpec {
            tls_dir: security.pem_dir().map(Path::to_path_buf),
            ..spec
        };
        let server = ServerChild::spawn(&spec, vm_limit);
        if let Some(kib) = vm_limit {
            let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid()))
                .expect("the child's limits");
            let line = limits
                .lines()
                .find(|l| l.starts_with("Max address space"))
                .expect("an address-space line");
            assert!(
                line.split_whitespace()
                    .any(|w| w == (kib * 1024).to_string()),
                "the child runs under ulimit -v {kib}: {line}"
            );
        }
        let idle_from = Instant::now();
        let legit = Legit::start_with(
            server.target(),
            kind,
            security.client(Config::default().timeout(Some(legit_timeout))),
        );
        let before = server.memory();
        let sampler = Sampler::start(server.pid());
        let mut attack = Attack {
            case,
            security,
            server,
            legit,
            idle_from,
            started: idle_from,
            before,
            hwm_reset: false,
            sampler,
        };
        attack.legit_answered(IDLE_CALLS, idle_from);
        attack.before = attack.server.memory();
        attack.hwm_reset = attack.server.reset_peak();
        attack.sampler = Sampler::start(attack.server.pid());
        attack.started = Instant::now();
        attack
    }

    /// Wait until the legitimate peer has been answered `n` times since `since`, failing the
    /// test at its first failed call (saying so if the server child died).
    fn legit_answered(&mut self, n: usize, since: Instant) {
        if let Err(failed) = self.legit.wait_answered(n, since) {
            if !self.server.is_running() {
                panic!(
                    "{}: the server child died; the legitimate peer's calls failed: {failed:?}\n\
                     the child's stderr:\n{}",
                    self.case,
                    self.server.output()
                );
            }
            panic!(
                "{}: the legitimate peer's calls failed: {failed:?}",
                self.case
            );
        }
    }

    fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// An attacker's raw connection to the server (inside a TLS session over TLS).
    fn connect(&self) -> RawPeer {
        self.security.connect(self.addr())
    }

    fn metrics(&mut self) -> ChildMetrics {
        self.server.metrics()
    }

    /// The most resident memory and address space since the attack began.
    fn peak(&self) -> Memory {
        let mut most = self.sampler.most();
        let now = self.server.memory();
        most.rss = most.rss.max(now.rss);
        most.vm = most.vm.max(now.vm);
        if self.hwm_reset {
            most.rss = most.rss.max(now.hwm);
        }
        most
    }

    /// Fail the test if the attack has taken more than `bound` allows.
    fn check_memory(&self, bound: &Bound) {
        let peak = self.peak();
        let grew = peak.rss.saturating_sub(self.before.rss);
        assert!(
            grew <= bound.rss_limit(),
            "{}: the server's resident set grew by {} MiB (from {} to {} MiB), over its bound: {}",
            self.case,
            mib(grew),
            mib(self.before.rss),
            mib(peak.rss),
            bound.describe()
        );
        if bound.address_space {
            let grew = peak.vm.saturating_sub(self.before.vm);
            assert!(
                grew <= bound.vm_limit(),
                "{}: the server's address space grew by {} MiB (from {} to {} MiB), over its \
                 bound: {}",
                self.case,
                mib(grew),
                mib(self.before.vm),
                mib(peak.vm),
                bound.describe()
            );
        }
    }

    /// Wait until the legitimate peer has been answered [`ATTACK_CALLS`] times from now on: the
    /// attack is at its worst, and the server serves others (each answer also means the
    /// server's driver went round its loop since, handling whatever the attack sent before).
    fn legit_served_during(&mut self) {
        self.legit_answered(ATTACK_CALLS, Instant::now());
    }

    /// The attack stopped at `stopped` (the attacker's sockets are closed): wait until the
    /// server holds only the legitimate peer's connection, check that it still serves, and
    /// return the numbers.
    fn end(mut self, stopped: Instant, sent: String, bound: &Bound, notes: String) -> Outcome {
        wait_until(
            &format!("{}: the attack's connections closed", self.case),
            || self.server.metrics().get("open_connections") <= 1,
        );
        // Still up, still serving.
        assert!(
            self.server.is_running(),
            "{}: the server child ended",
            self.case
        );
        self.legit_answered(10, Instant::now());
        let after = self.server.memory();
        let peak = self.peak();
        let samples = self.legit.stop();
        let failures = samples.failures();
        assert!(
            failures.is_empty(),
            "{}: the legitimate peer's calls failed: {failures:?}",
            self.case
        );
        let (idle_p99, idle_calls) = samples.p99(self.idle_from, self.started);
        let (attack_p99, attack_calls) = samples.p99(self.started, stopped);
        let attack_max = samples
            .window(self.started, stopped)
            .last()
            .copied()
            .unwrap_or_default();
        let outcome = Outcome {
            case: self.case.clone(),
            sent,
            bound: bound.describe(),
            before: self.before,
            peak,
            after,
            idle_p99,
            idle_calls,
            attack_p99,
            attack_max,
            attack_calls,
            notes,
        };
        eprintln!("{}\n{}", Outcome::header(), outcome.row());
        outcome
    }
}

// ---- raw peers ---------------------------------------------------------------------------------

/// A raw connection to `addr`.
fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).expect("connect");
    s.set_nodelay(true).expect("nodelay");
    s
}

/// A raw connection to `addr` from the loopback address `ip` (Linux answers on all of
/// 127.0.0.0/8): a peer with an address of its own.
fn connect_from(ip: Ipv4Addr, addr: SocketAddr) -> TcpStream {
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
fn frame(id: u64, lane: Lane, flags: Flags, message: &Message) -> Vec<u8> {
    let mut out = SendQueue::new();
    FrameEncoder::new()
        .encode(&mut out, id, lane, flags, message)
        .expect("encodes");
    out.to_vec()
}

fn request(id: u64, lane: Lane, request: impl Into<Request>) -> Vec<u8> {
    frame(id, lane, Flags::NONE, &Message::Request(request.into()))
}

fn snapshot_request(id: u64, term: u64, size: u64) -> Vec<u8> {
    let r = InstallSnapshotRequest {
        term,
        size: size as i64,
        ..Default::default()
    };
    request(id, Lane::Snapshot, r)
}

fn chunk(id: u64, body: &[u8], last: bool) -> Vec<u8> {
    let flags = if last { Flags::END_STREAM } else { Flags::NONE };
    let message = Message::SnapshotChunk(Bytes::copy_from_slice(body));
    frame(id, Lane::Snapshot, flags, &message)
}

/// `frame` with its request id set to `id` (header bytes 8 to 16), appended to `out`: floods
/// are a frame encoded once and copied.
fn with_id(frame: &[u8], id: u64, out: &mut Vec<u8>) {
    let at = out.len();
    out.extend_from_slice(frame);
    out[at + 8..at + 16].copy_from_slice(&id.to_be_bytes());
}

/// What the server sends on `stream` until it closes it or `within` passes: the frames after
/// its preamble, and whether it closed.
fn read_answers(stream: &mut RawPeer, within: Duration) -> (Vec<Frame>, bool) {
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
fn first_answer(stream: &mut RawPeer) -> Option<Frame> {
    next_answer(stream, &mut FrameDecoder::new(), &mut BytesMut::new())
}

/// The server's next answer on `stream`, decoded by the connection's `decoder` from what it
/// sent so far (`buf`); `None`: it closed the connection instead. Fails the test if neither
/// comes within [`EVENTUALLY`], or if the server sends what is not a frame.
fn next_answer(
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
fn is_blocked(e: &std::io::Error) -> bool {
    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)
}

// ---- 1. memory follows bytes received ------------------------------------------------------------

/// 40 connections each send a preamble and a frame header declaring a 64 MiB body, and nothing
/// more. Before memory followed bytes received, each header reserved its 64 MiB: 2.5 GiB of
/// address space. Now each reserves the codec's 64 KiB step.
fn headers_declaring_64_mib(vm_limit: Option<u64>, security: Security) -> Outcome {
    const CONNECTIONS: u64 = 40;
    const DECLARED: u32 = 64 << 20;
    // Over TLS each connection also holds the TLS stream's ciphertext buffer (64 KiB,
    // `CIPHERTEXT_READ` in src/driver/tls/mod.rs) once it has read. Measured +1.6 MiB resident.
    let (tls_held, tls_why) = match security.is_tls() {
        true => (64, " + the TLS stream's 64 KiB ciphertext buffer"),
        false => (0, ""),
    };
    let mut a = Attack::begin_with(
        "1. headers declaring 64 MiB bodies",
        ServerSpec::default(),
        LegitKind::Vote,
        LEGIT_TIMEOUT,
        vm_limit,
        security,
    );
    // The codec makes room for 64 KiB of a body in progress (RESERVE_STEP), and the driver
    // reads into that room: 64 KiB per connection, 2.5 MiB in all. Measured +0.3 MiB resident
    // and no address space (the room comes out of the allocator's arenas); +2.5 GiB of address
    // space before memory followed bytes received.
    let bound = Bound {
        held: CONNECTIONS * (64 + tls_held),
        why: format!("{CONNECTIONS} × (the codec's 64 KiB step{tls_why})"),
        address_space: true,
    };
    let accepted = a.metrics().get("accepted");
    let header = [
        PREAMBLE.to_vec(),
        frame_header(
            DECLARED,
            MessageType::AppendEntries as u8,
            0,
            Lane::Control as u8,
            0,
            1,
        ),
    ]
    .concat();
    let attackers: Vec<RawPeer> = (0..CONNECTIONS)
        .map(|_| {
            let mut s = a.connect();
            s.write_all(&header).expect("send a header");
            s.flush().expect("send a header");
            s
        })
        .collect();
    wait_until("the 40 connections accepted", || {
        a.metrics().get("accepted") >= accepted + CONNECTIONS
    });
    // The headers were written before the accepts; the legitimate peer's answers after them
    // mean the driver has read them.
    a.legit_served_during();
    a.check_memory(&bound);
    let m = a.metrics();
    assert_eq!(
        m.get("open_connections"),
        CONNECTIONS + 1,
        "the attack's connections are held, not refused"
    );
    drop(attackers);
    let stopped = Instant::now();
    a.end(
        stopped,
        format!("{CONNECTIONS} connections × (preamble + 16-byte header declaring 64 MiB)"),
        &bound,
        String::new(),
    )
}

#[test]
fn headers_declaring_64_mib_reserve_only_what_arrives() {
    headers_declaring_64_mib(None, Security::Plain);
}

#[test]
fn headers_declaring_64_mib_inside_tls_sessions_reserve_only_what_arrives() {
    headers_declaring_64_mib(None, Security::tls());
}

// ---- 2. a peer that does not read its answers ------------------------------------------------

/// One connection pipelines up to 1,000,000 votes and never reads an answer. Before the answer
/// backlog paused it, the server read them all and queued every answer (+200 MiB). Now it stops
/// reading once `max_queued_answer_bytes` (1 MiB) of answers wait: the attacker's writes block
/// in the kernel's buffers, which are not the server's memory.
fn unread_answers(vm_limit: Option<u64>, security: Security) -> Outcome {
    const VOTES: u64 = 1_000_000;
    const BATCH: u64 = 10_000;
    let mut a = Attack::begin_with(
        "2. 1,000,000 pipelined votes, answers never read",
        ServerSpec::default(),
        LegitKind::Vote,
        LEGIT_TIMEOUT,
        vm_limit,
        security,
    );
    // 1 MiB of answers queued (DEFAULT_MAX_QUEUED_ANSWER_BYTES), packed in a buffer that
    // doubles as it grows: 2 MiB. The requests: at most 256 handed over unanswered, and the
    // rest of the read that reached the limit held back decoded (up to 512 KiB of 37-byte
    // votes, 14,200, each about 700 bytes decoded): 10 MiB at most. Measured +6.6 to +12.6 MiB
    // when the whole read was handed over at once; +200 MiB before the limit.
    let bound = Bound {
        held: 12 * MIB,
        why: "a 1 MiB answer backlog in a doubling buffer + one read of votes held back".into(),
        address_space: false,
    };
    let template = request(0, Lane::Control, vote(1));
    let mut s = a.connect();
    s.socket()
        .set_write_timeout(Some(Duration::from_secs(2)))
        .expect("write timeout");
    s.write_all(&PREAMBLE).expect("preamble");
    let give_up = Instant::now() + Duration::from_secs(20);
    let mut sent = 0;
    let mut blocked = false;
    let mut batch = Vec::with_capacity(BATCH as usize * template.len());
    while sent < VOTES && Instant::now() < give_up {
        batch.clear();
        let n = BATCH.min(VOTES - sent);
        for id in sent..sent + n {
            with_id(&template, id + 1, &mut batch);
        }
        match s.write_all(&batch) {
            Ok(()) => sent += n,
            Err(e) if is_blocked(&e) => {
                blocked = true;
                break;
            }
            Err(e) => panic!("the flood's write failed: {e}"),
        }
        a.check_memory(&bound);
    }
    // The server pauses the connection once its answers back up (they may all still be
    // sitting in the kernel's buffers when the writes end).
    wait_until("the flooder's reads paused", || {
        a.check_memory(&bound);
        a.metrics().get("reads_paused") >= 1
    });
    a.legit_served_during();
    a.check_memory(&bound);
    let m = a.metrics();
    let notes = format!(
        "{} of the votes reached the Raft side; reads_paused={}; most queued for the Raft side: {}",
        m.get("rpcs_received"),
        m.get("reads_paused"),
        m.get("max_queue")
    );
    drop(s);
    let stopped = Instant::now();
    a.end(
        stopped,
        format!(
            "{sent} votes ({} bytes each) on one connection{}",
            template.len(),
            if blocked {
                ", then its writes blocked for 2 s"
            } else {
                ""
            }
        ),
        &bound,
        notes,
    )
}

#[test]
fn a_peer_that_does_not_read_its_answers_stops_being_read() {
    unread_answers(None, Security::Plain);
}

#[test]
fn a_tls_peer_that_does_not_read_its_answers_stops_being_read() {
    unread_answers(None, Security::tls());
}

// ---- 3. a flood to a slow Raft side --------------------------------------------------------------

/// One connection sends 10,000 appends of 16 KiB while the Raft side takes 1 ms for each. Before
/// `max_unanswered_requests`, all of them queued for the Raft side and other peers' calls waited
/// behind them (10 s: they timed out). Now the flooder's share of the queue is 256 requests
/// (and one read more): another peer's call waits behind at most that many appends (measured
/// p99 313 ms, within its 5 s timeout 16 times over).
fn flood_to_a_slow_raft_side(vm_limit: Option<u64>, security: Security) -> Outcome {
    const APPENDS: u64 = 10_000;
    const PAYLOAD: usize = 16 << 10;
    let limit = MAX_UNANSWERED_REQUESTS;
    let (tls_held, tls_why) = tls_connections(&security, 1);
    let mut a = Attack::begin_with(
        "3. 10,000 appends of 16 KiB to a Raft side taking 1 ms each",
        ServerSpec {
            append_delay_us: 1000,
            ..Default::default()
        },
        LegitKind::Vote,
        Duration::from_secs(5),
        vm_limit,
        security,
    );
    // 256 appends of 16 KiB unanswered (4 MiB), and the rest of the read that reached the
    // limit (512 KiB). Measured +5.4 MiB; before the limit, all 10,000 could be read
    // (10,000 × 16 KiB = 160 MiB). Over TLS, +7.9 to +8.2 MiB against +6.3 to +6.5 MiB plain
    // in a debug build (+7.8 against +5.5 MiB in a release build), within the slack; most likely because reads come as much as rustls
    // opened at a time (at most a 64 KiB ciphertext read's worth), so the appends held spread
    // over more read buffers, each kept whole by the appends sliced from it (as snapshot
    // chunks are: `finding_snapshot_buffers_hold_twice_the_bytes_they_count`).
    let bound = Bound {
        held: limit * 16 + ONE_READ + tls_held,
        why: format!("256 unanswered appends of 16 KiB + one read{tls_why}"),
        address_space: false,
    };
    // The requests of the read that reaches the limit wait until answers make room: the
    // queue never holds more than the limit. (Measured 270 and 271 when the whole read was
    // handed over at once; with the limits' defaults at usize::MAX the check tripped at 353,
    // on the way to 10,000.)
    let queue_bound = limit;
    let mut s = a.connect();
    s.write_all(&PREAMBLE).expect("preamble");
    s.flush().expect("preamble");
    let answers = s.socket().try_clone().expect("clone");
    let template = request(0, Lane::Pipeline, append(1, 1, PAYLOAD));
    // The flooder writes as fast as the server takes the appends, and reads its answers as
    // they come: it is the unanswered requests that must hold it back. One thread over a
    // non-blocking socket (a TLS session is not split between a writer and a reader), until
    // the socket is shut down.
    let flooder = std::thread::spawn(move || {
        s.socket().set_nonblocking(true).expect("nonblocking");
        let mut sent = 0;
        let (mut one, mut at) = (Vec::with_capacity(template.len()), 0);
        let mut sink = vec![0u8; 64 << 10];
        loop {
            let mut moved = match s.read(&mut sink) {
                Ok(0) => return sent,
                Ok(_) => true,
                Err(e) if is_blocked(&e) => false,
                Err(_) => return sent,
            };
            if at == one.len() && sent < APPENDS {
                one.clear();
                with_id(&template, sent + 1, &mut one);
                at = 0;
            }
            if at < one.len() {
                match s.try_write(&one[at..]) {
                    Ok(n) => {
                        moved = true;
                        at += n;
                        if at == one.len() {
                            sent += 1;
                        }
                    }
                    Err(e) if is_blocked(&e) => {}
                    Err(_) => return sent,
                }
            }
            if !moved {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    });
    let check_queue = |m: &ChildMetrics| {
        let most = m.get("max_queue");
        assert!(
            most <= queue_bound,
            "the consumer queue held {most} RPCs, more than max_unanswered_requests ({limit}) \
             ({queue_bound})"
        );
    };
    wait_until("the flooder's reads paused", || {
        let m = a.metrics();
        check_queue(&m);
        m.get("reads_paused") >= 1
    });
    // Another peer is answered, each of its calls within its 5 s timeout.
    a.legit_answered(20, Instant::now());
    a.check_memory(&bound);
    let m = a.metrics();
    check_queue(&m);
    let notes = format!(
        "most queued for the Raft side: {} (max_unanswered_requests {limit}); reads_paused={}; \
         {} appends taken",
        m.get("max_queue"),
        m.get("reads_paused"),
        m.get("rpcs_received"),
    );
    answers.shutdown(Shutdown::Both).expect("shutdown");
    let stopped = Instant::now();
    let sent = flooder.join().expect("the flooder");
    a.end(
        stopped,
        format!("{sent} of {APPENDS} appends of 16 KiB written before the attack ended"),
        &bound,
        notes,
    )
}

#[test]
fn a_flood_to_a_slow_raft_side_leaves_room_for_other_peers() {
    flood_to_a_slow_raft_side(None, Security::Plain);
}

#[test]
fn a_tls_flood_to_a_slow_raft_side_leaves_room_for_other_peers() {
    flood_to_a_slow_raft_side(None, Security::tls());
}

// ---- 4. snapshots ------------------------------------------------------------------------------

/// One connection starts a snapshot and, before its body ends, others (new ids, then the same
/// id again on a second connection): a protocol error; the first snapshot's reader ends with an
/// error, not a hang; no second reader is handed over.
fn snapshots_on_one_connection(vm_limit: Option<u64>, security: Security) -> Outcome {
    let (tls_held, tls_why) = tls_connections(&security, 1);
    let mut a = Attack::begin_with(
        "4a. one connection, a second snapshot before the first body ends",
        ServerSpec::default(),
        LegitKind::Vote,
        LEGIT_TIMEOUT,
        vm_limit,
        security,
    );
    let bound = Bound {
        held: tls_held,
        why: format!("nothing held{tls_why}"),
        address_space: false,
    };
    let part = vec![7u8; 100];
    // Many snapshots, new ids: InstallSnapshot 1 (term 101) and part of its body, then 2, 3, ...
    let mut many = PREAMBLE.to_vec();
    for id in 1..=50u64 {
        many.extend(snapshot_request(id, 100 + id, 1000));
        many.extend(chunk(id, &part, false));
    }
    // The same id twice: InstallSnapshot 7 (term 201) and part of its body, then 7 again.
    let duplicate = [
        PREAMBLE.to_vec(),
        snapshot_request(7, 201, 1000),
        chunk(7, &part, false),
        snapshot_request(7, 202, 1000),
        chunk(7, &part, false),
    ]
    .concat();
    let mut endings = Vec::new();
    for (bytes, first, second) in [(many, 101, 102), (duplicate, 201, 202)] {
        let errors = a.metrics().get("protocol_errors");
        let mut s = a.connect();
        let _ = s.write_all(&bytes).and_then(|()| s.flush());
        let (_, closed) = read_answers(&mut s, EVENTUALLY);
        assert!(closed, "term {first}: the server closed the connection");
        let ended = a
            .server
            .wait_line(&format!("the reader of snapshot {first} ends"), |l| {
                l.starts_with(&format!("snapshot term={first} "))
            });
        assert!(
            ended.contains(" err "),
            "snapshot {first}'s reader ended with an error: {ended}"
        );
        endings.push(ended);
        let m = a.metrics();
        assert_eq!(m.get("protocol_errors"), errors + 1, "one protocol error");
        assert_eq!(m.get("held"), 0);
        assert!(
            a.server
                .lines_matching(|l| l.starts_with(&format!("snapshot term={second} ")))
                .is_empty(),
            "no reader for the second snapshot"
        );
    }
    let logged = a.server.lines_matching(|l| {
        l.starts_with("log ")
            && l.contains(
                "an InstallSnapshot arrived before the previous snapshot's body on the connection ended",
            )
    });
    assert_eq!(logged.len(), 2, "each named in the log: {logged:?}");
    a.legit_served_during();
    let stopped = Instant::now();
    a.end(
        stopped,
        "50 InstallSnapshots each before the previous body ended; the same id twice".into(),
        &bound,
        format!("protocol_errors=2; the first snapshots' readers ended: {endings:?}"),
    )
}

#[test]
fn a_connection_carries_one_snapshot_at_a_time() {
    snapshots_on_one_connection(None, Security::Plain);
}

#[test]
fn a_tls_session_carries_one_snapshot_at_a_time() {
    snapshots_on_one_connection(None, Security::tls());
}

/// A snapshot attacker's end: its socket, the body bytes it wrote, what the server answered,
/// and whether the server closed the connection.
struct SnapshotAttacker {
    stream: RawPeer,
    sent: u64,
    answers: Vec<Frame>,
    closed: bool,
}

/// `n` connections (the attack's, plain or TLS) each start a 64 MiB snapshot (terms 1000 and
/// on) and write its body in 256 KiB chunks (raftnet's own chunk size) until the server stops
/// reading (a write blocks for 1 s) or closes; then read what the server answers within 2 s.
fn snapshot_attackers(a: &Attack, n: u64) -> Vec<SnapshotAttacker> {
    const SIZE: u64 = 64 << 20;
    const CHUNK: usize = DEFAULT_SNAPSHOT_CHUNK;
    let body = chunk(1, &vec![5u8; CHUNK], false);
    let attackers: Vec<_> = (0..n)
        .map(|i| {
            let body = body.clone();
            let mut stream = a.connect();
            std::thread::spawn(move || {
                stream
                    .socket()
                    .set_write_timeout(Some(Duration::from_secs(1)))
                    .expect("write timeout");
                let start = [PREAMBLE.to_vec(), snapshot_request(1, 1000 + i, SIZE)].concat();
                let mut sent = 0u64;
                if stream.write_all(&start).is_ok() {
                    while sent < SIZE && stream.write_all(&body).is_ok() {
                        sent += CHUNK as u64;
                    }
                }
                let (answers, closed) = read_answers(&mut stream, Duration::from_secs(2));
                SnapshotAttacker {
                    stream,
                    sent,
                    answers,
                    closed,
                }
            })
        })
        .collect();
    attackers
        .into_iter()
        .map(|t| t.join().expect("an attacker"))
        .collect()
}

/// What `max_inbound_snapshots` snapshots that nobody reads hold in the server (KiB): each
/// buffers `snapshot_buffer` (4 MiB) of chunks before its connection pauses, and one read more.
/// The resident memory is twice the bytes (a finding: a 256 KiB chunk keeps alive the whole
/// read buffer it was cut from, about 512 KiB; see
/// `finding_snapshot_buffers_hold_twice_the_bytes_they_count`), so the bound is twice the
/// buffers. Measured +29 to +34 MiB for 4 snapshots, with 4 or 20 attackers; +159 MiB with
/// the cap at usize::MAX (all 20 taken).
/// Over TLS, each of the `connections` attacking holds a TLS connection's buffers too.
fn held_snapshots_bound(security: &Security, connections: u64) -> Bound {
    let cap = MAX_INBOUND_SNAPSHOTS;
    let buffer = SNAPSHOT_BUFFER;
    let (tls_held, tls_why) = tls_connections(security, connections);
    Bound {
        held: cap * (2 * buffer + ONE_READ) + tls_held,
        why: format!("{cap} snapshots × (2 × the 4 MiB snapshot_buffer + one read){tls_why}"),
        address_space: false,
    }
}

/// 20 connections each start a 64 MiB snapshot and send its body as fast as they can, to a Raft
/// side that reads none of them. `max_inbound_snapshots` (4) are taken, each buffering up to
/// `snapshot_buffer` (4 MiB) before its connection pauses; the other 16 get an error answer and
/// are closed. Without the cap all 20 are taken (+159 MiB).
fn many_snapshots(vm_limit: Option<u64>, security: Security) -> Outcome {
    const ATTACKERS: u64 = 20;
    let cap = MAX_INBOUND_SNAPSHOTS;
    let bound = held_snapshots_bound(&security, ATTACKERS);
    let mut a = Attack::begin_with(
        "4b. 20 connections each starting a 64 MiB snapshot, none read",
        ServerSpec {
            hold_snapshots: true,
            ..Default::default()
        },
        LegitKind::Vote,
        LEGIT_TIMEOUT,
        vm_limit,
        security,
    );
    let results = snapshot_attackers(&a, ATTACKERS);
    a.check_memory(&bound);
    let refused: Vec<&SnapshotAttacker> = results.iter().filter(|r| r.closed).collect();
    let m = a.metrics();
    assert_eq!(m.get("snapshots_refused"), ATTACKERS - cap, "{m:?}");
    assert_eq!(m.get("held"), cap, "the Raft side holds {cap} snapshots");
    assert_eq!(
        refused.len() as u64,
        ATTACKERS - cap,
        "the refused are closed"
    );
    for r in &refused {
        let text = match r.answers.first().map(|f| &f.message) {
            Some(Message::Error(text)) => text,
            other => panic!("a refused snapshot is answered with an error, not {other:?}"),
        };
        assert!(
            text.contains("snapshots are being received already"),
            "{text}"
        );
    }
    a.legit_served_during();
    a.check_memory(&bound);
    let taken: u64 = results.iter().filter(|r| !r.closed).map(|r| r.sent).sum();
    let notes = format!(
        "snapshots_refused={}, each answered with an error; the {cap} taken had {} MiB written \
         to them (the server's buffers and the kernel's) when their writes blocked",
        m.get("snapshots_refused"),
        taken >> 20
    );
    a.server.command("release");
    a.server
        .wait_line("released", |l| l.starts_with("released "));
    drop(results.into_iter().map(|r| r.stream).collect::<Vec<_>>());
    let stopped = Instant::now();
    a.end(
        stopped,
        format!("{ATTACKERS} × (InstallSnapshot of 64 MiB + its body until the writes block)"),
        &bound,
        notes,
    )
}

#[test]
fn snapshots_over_the_cap_are_refused_and_buffers_stay_bounded() {
    many_snapshots(None, Security::Plain);
}

#[test]
fn tls_snapshots_over_the_cap_are_refused_and_buffers_stay_bounded() {
    many_snapshots(None, Security::tls());
}

/// A snapshot body that stops arriving while its connection stays open: after the timeout (1 s
/// here) the connection is closed as a slow peer and the reader ends with an error.
fn stalled_snapshot(vm_limit: Option<u64>, security: Security) -> Outcome {
    let (tls_held, tls_why) = tls_connections(&security, 1);
    let mut a = Attack::begin_with(
        "4c. a snapshot body that stops arriving, its connection open",
        ServerSpec {
            timeout_ms: SHORT_TIMEOUT_MS,
            ..Default::default()
        },
        LegitKind::Vote,
        LEGIT_TIMEOUT,
        vm_limit,
        security,
    );
    let bound = Bound {
        held: tls_held,
        why: format!("nothing held{tls_why}"),
        address_space: false,
    };
    let mut s = a.connect();
    let bytes = [
        PREAMBLE.to_vec(),
        snapshot_request(1, 301, 1000),
        chunk(1, &[9u8; 100], false),
    ]
    .concat();
    // Before the write: over TLS the write completes the handshake first, and the server may
    // read the bytes within the turn that finished it, its progress dated at that turn's start.
    let sent = Instant::now();
    s.write_all(&bytes).expect("send");
    s.flush().expect("send");
    let ended = a
        .server
        .wait_line("the stalled snapshot's reader ends", |l| {
            l.starts_with("snapshot term=301 ")
        });
    let after = sent.elapsed();
    assert!(
        ended.contains(" err "),
        "the reader ends with an error: {ended}"
    );
    assert!(
        after >= Duration::from_millis(SHORT_TIMEOUT_MS),
        "the reader failed {after:?} after the last bytes, before the timeout"
    );
    let (_, closed) = read_answers(&mut s, EVENTUALLY);
    assert!(closed, "the server closed the connection");
    let m = a.metrics();
    assert_eq!(m.get("slow_peers_closed"), 1);
    let logged = a
        .server
        .lines_matching(|l| l.contains("its snapshot body stalled"));
    assert_eq!(logged.len(), 1, "{logged:?}");
    a.legit_served_during();
    drop(s);
    let stopped = Instant::now();
    a.end(
        stopped,
        "InstallSnapshot of 1000 bytes, 100 of them, then nothing".into(),
        &bound,
        format!("slow_peers_closed=1; the reader ended after {after:?}: {ended}"),
    )
}

#[test]
fn a_stalled_snapshot_body_ends_its_reader_after_the_timeout() {
    stalled_snapshot(None, Security::Plain);
}

#[test]
fn a_stalled_snapshot_body_inside_a_tls_session_ends_its_reader_after_the_timeout() {
    stalled_snapshot(None, Security::tls());
}

// ---- 5. connections --------------------------------------------------------------------------

/// 200 connections from 127.0.0.2, each sending a vote, to a server that takes 64 per address:
/// 64 are answered and kept, 136 are closed as they are accepted. The legitimate peer, from
/// 127.0.0.1 (raftnet's client dials from the default source), is another address and keeps
/// being served.
fn connections_per_address(vm_limit: Option<u64>, security: Security) -> Outcome {
    const ATTACKERS: u64 = 200;
    const PER_ADDRESS: u64 = 64;
    let attacker_ip = Ipv4Addr::new(127, 0, 0, 2);
    // The refused are closed as they are accepted, before a handshake: only the kept hold TLS.
    let (tls_held, tls_why) = tls_connections(&security, PER_ADDRESS);
    let mut a = Attack::begin_with(
        "5a. 200 connections from one address, 64 allowed",
        ServerSpec {
            max_connections_per_address: PER_ADDRESS as usize,
            ..Default::default()
        },
        LegitKind::Vote,
        LEGIT_TIMEOUT,
        vm_limit,
        security,
    );
    // A connection's state and its buffers: 64 of them, 16 KiB each is generous. Measured
    // +0.3 MiB.
    let bound = Bound {
        held: PER_ADDRESS * 16 + tls_held,
        why: format!("{PER_ADDRESS} connections × 16 KiB{tls_why}"),
        address_space: false,
    };
    let hello = [PREAMBLE.to_vec(), request(1, Lane::Control, vote(1))].concat();
    let mut kept = Vec::new();
    let mut refused = 0;
    for _ in 0..ATTACKERS {
        let mut s = a.security.wrap(connect_from(attacker_ip, a.addr()));
        // Over TLS a refused connection fails its handshake here.
        let _ = s.write_all(&hello).and_then(|()| s.flush());
        // One at a time: each is answered or closed before the next connects.
        match first_answer(&mut s) {
            Some(_) => kept.push(s),
            None => refused += 1,
        }
    }
    assert_eq!(kept.len() as u64, PER_ADDRESS, "answered and kept");
    assert_eq!(refused, ATTACKERS - PER_ADDRESS, "closed at once");
    let m = a.metrics();
    assert_eq!(m.get("connections_refused"), ATTACKERS - PER_ADDRESS);
    let logged = a
        .server
        .lines_matching(|l| l.contains("connections from one address are open already"));
    assert!(!logged.is_empty(), "the refusals are logged");
    a.legit_served_during();
    a.check_memory(&bound);
    // Once they are gone, the address may connect again.
    drop(kept);
    let stopped = Instant::now();
    wait_until("the kept connections closed", || {
        a.metrics().get("open_connections") <= 1
    });
    let mut again = a.security.wrap(connect_from(attacker_ip, a.addr()));
    again.write_all(&hello).expect("send");
    again.flush().expect("send");
    assert!(
        first_answer(&mut again).is_some(),
        "a place was freed for the address"
    );
    drop(again);
    a.end(
        stopped,
        format!("{ATTACKERS} connections from 127.0.0.2, each a preamble and a vote"),
        &bound,
        format!(
            "connections_refused={}; {} refusal log lines (at most one a second)",
            m.get("connections_refused"),
            logged.len()
        ),
    )
}

#[test]
fn connections_over_the_per_address_limit_are_refused() {
    connections_per_address(None, Security::Plain);
}

#[test]
fn tls_connections_over_the_per_address_limit_are_refused() {
    connections_per_address(None, Security::tls());
}

/// Slowloris: 500 connections each dribbling a vote a byte every 100 ms. A frame must arrive at
/// no less than `timeout_scale` bytes per `timeout` (1 s here), so each is closed about a second
/// after it was accepted; before that deadline they were held forever. Over TLS each completes
/// its handshake first, then dribbles the frame a byte to a record (a handshake that stalls is
/// closed at the same deadline: tests/tls.rs,
/// `an_accepted_connection_whose_handshake_stalls_is_closed`).
fn slowloris(vm_limit: Option<u64>, security: Security) -> Outcome {
    const CONNECTIONS: usize = 500;
    let (tls_held, tls_why) = tls_connections(&security, CONNECTIONS as u64);
    let mut a = Attack::begin_with(
        "5b. slowloris: 500 connections, a byte every 100 ms each",
        ServerSpec {
            timeout_ms: SHORT_TIMEOUT_MS,
            ..Default::default()
        },
        LegitKind::Vote,
        LEGIT_TIMEOUT,
        vm_limit,
        security,
    );
    // A connection's state and its first 4 KiB read buffer: 16 KiB each is generous. Measured
    // +4.2 MiB.
    let bound = Bound {
        held: CONNECTIONS as u64 * 16 + tls_held,
        why: format!("{CONNECTIONS} connections × 16 KiB{tls_why}"),
        address_space: false,
    };
    let bytes = [PREAMBLE.to_vec(), request(1, Lane::Control, vote(1))].concat();
    struct Dribbler {
        stream: RawPeer,
        connected: Instant,
        sent: usize,
        closed: Option<Instant>,
    }
    let mut conns: Vec<Dribbler> = (0..CONNECTIONS)
        .map(|_| {
            let connected = Instant::now();
            let mut stream = a.connect();
            stream.handshake().expect("a TLS handshake");
            stream.socket().set_nonblocking(true).expect("nonblocking");
            Dribbler {
                stream,
                connected,
                sent: 0,
                closed: None,
            }
        })
        .collect();
    // Held forever before the deadline: 30 s is 30 timeouts.
    let give_up = Instant::now() + Duration::from_secs(30);
    let mut piece = [0u8; 64];
    while conns.iter().any(|c| c.closed.is_none()) {
        assert!(
            Instant::now() < give_up,
            "{} of {CONNECTIONS} slowloris connections still open after 30 s (timeout 1 s)",
            conns.iter().filter(|c| c.closed.is_none()).count()
        );
        for c in conns.iter_mut().filter(|c| c.closed.is_none()) {
            // Closed by the server: the read sees the end (or a reset), or the write fails.
            let gone = match c.stream.read(&mut piece) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => e.kind() != ErrorKind::WouldBlock,
            };
            let gone = gone
                || (c.sent < bytes.len()
                    && match c.stream.try_write(&bytes[c.sent..c.sent + 1]) {
                        Ok(n) => {
                            c.sent += n;
                            false
                        }
                        Err(e) => e.kind() != ErrorKind::WouldBlock,
                    });
            if gone {
                c.closed = Some(Instant::now());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let stopped = Instant::now();
    let timeout = Duration::from_millis(SHORT_TIMEOUT_MS);
    let held: Vec<Duration> = conns
        .iter()
        .map(|c| c.closed.expect("closed") - c.connected)
        .collect();
    let shortest = *held.iter().min().expect("some");
    let longest = *held.iter().max().expect("some");
    assert!(
        shortest >= timeout,
        "a connection was closed {shortest:?} after it connected, before the timeout"
    );
    let most_sent = conns.iter().map(|c| c.sent).max().unwrap_or(0);
    assert!(most_sent < bytes.len(), "no frame completed");
    let m = a.metrics();
    assert_eq!(m.get("slow_peers_closed"), CONNECTIONS as u64);
    a.check_memory(&bound);
    a.legit_served_during();
    drop(conns);
    a.end(
        stopped,
        format!("{CONNECTIONS} connections, a byte of a vote every 100 ms each"),
        &bound,
        format!(
            "slow_peers_closed={}; each closed {shortest:.1?} to {longest:.1?} after it \
             connected, after {most_sent} bytes at most",
            m.get("slow_peers_closed")
        ),
    )
}

#[test]
fn slowloris_connections_are_closed_after_the_timeout() {
    slowloris(None, Security::Plain);
}

#[test]
fn slowloris_tls_sessions_are_closed_after_the_timeout() {
    slowloris(None, Security::tls());
}

// ---- 6. decoding bounded -----------------------------------------------------------------------

/// The body of an AppendEntries of `n` entries of 9 bytes (the smallest a log entry encodes
/// in: an array marker and eight zero fields), written without building `n` entries.
fn tiny_entries_body(n: u32) -> Vec<u8> {
    let entries = |k: usize| {
        request(
            0,
            Lane::Control,
            AppendEntriesRequest {
                entries: vec![
                    Log {
                        appended_at: Timestamp {
                            unix_seconds: 0,
                            nanos: 0,
                            utc_offset: None,
                        },
                        ..Default::default()
                    };
                    k
                ],
                ..Default::default()
            },
        )
    };
    let (two, three) = (entries(2), entries(3));
    assert_eq!(three.len() - two.len(), 9, "an entry of nine bytes");
    let body = &two[HEADER_LEN..];
    let entry = &body[body.len() - 9..];
    assert_eq!(body[body.len() - 19], 0x92, "a fixarray of two entries");
    let prefix = &body[..body.len() - 19];
    let mut out = Vec::with_capacity(prefix.len() + 5 + 9 * n as usize);
    out.extend_from_slice(prefix);
    out.push(0xdd); // array 32
    out.extend_from_slice(&n.to_be_bytes());
    out.extend_from_slice(&entry.repeat(n as usize));
    out
}

/// One legal frame of the maximum size made of the smallest entries: 64 MiB of 9-byte entries,
/// 7.5 million of them. Before `max_entries_per_request` the server decoded them (860 MiB and a
/// 0.7 to 1.8 s stall of its driver); now the count is refused before any entry is decoded. The
/// frame itself is received in full first: memory for its 64 MiB, grown by doubling.
fn millions_of_tiny_entries(vm_limit: Option<u64>, security: Security) -> Outcome {
    let max_body = DEFAULT_MAX_BODY_LEN as usize;
    let n = ((max_body - 64) / 9) as u32;
    let body = tiny_entries_body(n);
    assert!(body.len() <= max_body);
    let (tls_held, tls_why) = tls_connections(&security, 1);
    let mut a = Attack::begin_with(
        "6. one 64 MiB AppendEntries of 7.5 million 9-byte entries",
        ServerSpec::default(),
        LegitKind::Heartbeat,
        LEGIT_TIMEOUT,
        vm_limit,
        security,
    );
    // The frame's 64 MiB, in a buffer that doubles as it fills: while it grows from 32 to
    // 64 MiB both may be held, so twice the frame. Measured +64 MiB (the allocator grew the
    // buffer in place); 860 MiB of decoded entries before the limit.
    let bound = Bound {
        held: 2 * 64 * MIB + tls_held,
        why: format!("a 64 MiB frame buffer, twice while it doubles{tls_why}"),
        address_space: false,
    };
    let frame = [
        PREAMBLE.to_vec(),
        frame_header(
            body.len() as u32,
            MessageType::AppendEntries as u8,
            0,
            Lane::Control as u8,
            0,
            1,
        ),
        body,
    ]
    .concat();
    // Again and again on new connections, until the legitimate peer's heartbeats have been
    // measured during it (at least twice, at most 20 times).
    let during = Instant::now();
    let mut frames = 0;
    let mut errors = a.metrics().get("protocol_errors");
    while frames < 2 || (a.legit.answered_since(during) < ATTACK_CALLS && frames < 20) {
        let mut s = a.connect();
        let _ = s.write_all(&frame).and_then(|()| s.flush());
        // Until the server closes the connection, its memory watched meanwhile.
        let deadline = Instant::now() + EVENTUALLY;
        while !read_answers(&mut s, Duration::from_millis(100)).1 {
            a.check_memory(&bound);
            assert!(
                Instant::now() < deadline,
                "the server did not close the connection within {EVENTUALLY:?}"
            );
        }
        frames += 1;
        let m = a.metrics();
        assert_eq!(m.get("protocol_errors"), errors + 1, "one protocol error");
        errors += 1;
        assert_eq!(m.get("held"), 0);
        a.check_memory(&bound);
    }
    let stopped = Instant::now();
    let expected = format!(
        "AppendEntries declares {n} entries, more than the maximum of {MAX_ENTRIES_PER_REQUEST}"
    );
    let logged = a.server.lines_matching(|l| l.contains(&expected));
    assert_eq!(logged.len(), frames, "each named in the log: {expected}");
    a.legit_served_during();
    a.end(
        stopped,
        format!("{frames} × one frame: {n} entries of 9 bytes (64 MiB)"),
        &bound,
        format!("protocol_errors={frames}, each \"{expected}\""),
    )
}

#[test]
fn an_append_of_millions_of_tiny_entries_is_refused_before_decoding() {
    millions_of_tiny_entries(None, Security::Plain);
}

#[test]
fn a_tls_append_of_millions_of_tiny_entries_is_refused_before_decoding() {
    millions_of_tiny_entries(None, Security::tls());
}

/// The control for case 6's latency (report only): the same 64 MiB, legal and taken, as one
/// AppendEntries of one 64 MiB entry on one connection, answered by the Raft side. What the
/// legitimate peer's heartbeats pay here is the cost of receiving a frame of the maximum size,
/// which case 6 pays too before the entry count is read.
fn one_large_entry(vm_limit: Option<u64>) -> Outcome {
    let mut a = Attack::begin(
        "6c. control: one legal 64 MiB AppendEntries of one entry",
        ServerSpec::default(),
        LegitKind::Heartbeat,
        LEGIT_TIMEOUT,
        vm_limit,
    );
    // As case 6: the frame's buffer, twice while it doubles (the entry is a slice of it).
    let bound = Bound {
        held: 2 * 64 * MIB,
        why: "a 64 MiB frame buffer, twice while it doubles".into(),
        address_space: false,
    };
    let payload = DEFAULT_MAX_BODY_LEN as usize - 1024;
    let template = request(0, Lane::Control, append(1, 1, payload));
    let mut s = a.connect();
    s.write_all(&PREAMBLE).expect("preamble");
    let (mut decoder, mut received) = (FrameDecoder::new(), BytesMut::new());
    let during = Instant::now();
    let mut frames = 0u64;
    let mut one = Vec::with_capacity(template.len());
    while frames < 2 || (a.legit.answered_since(during) < ATTACK_CALLS && frames < 20) {
        frames += 1;
        one.clear();
        with_id(&template, frames, &mut one);
        s.write_all(&one).expect("send");
        match next_answer(&mut s, &mut decoder, &mut received) {
            Some(f) => assert!(
                matches!(f.message, Message::Response(Response::AppendEntries(_))),
                "answered: {:?}",
                f.message
            ),
            None => panic!("the server closed the connection"),
        }
        a.check_memory(&bound);
    }
    let stopped = Instant::now();
    drop(s);
    a.legit_served_during();
    let errors = a.metrics().get("protocol_errors");
    a.end(
        stopped,
        format!("{frames} × one frame: one entry of {} MiB", payload >> 20),
        &bound,
        format!("each answered; protocol_errors={errors}"),
    )
}

// ---- 7. error texts ----------------------------------------------------------------------------

/// A response sent where a request belongs: the server's log names the message it received,
/// not a msgpack marker.
fn response_to_the_serving_side(vm_limit: Option<u64>) -> Outcome {
    let mut a = Attack::begin(
        "7. a response sent where a request belongs",
        ServerSpec::default(),
        LegitKind::Vote,
        LEGIT_TIMEOUT,
        vm_limit,
    );
    let bound = Bound {
        held: 0,
        why: "nothing held".into(),
        address_space: false,
    };
    let mut s = a.connect();
    let port = s.socket().local_addr().expect("local address").port();
    let response = Message::Response(RequestVoteResponse::default().into());
    let _ = s.write_all(
        &[
            PREAMBLE.to_vec(),
            frame(3, Lane::Control, Flags::NONE, &response),
        ]
        .concat(),
    );
    let (_, closed) = read_answers(&mut s, EVENTUALLY);
    assert!(closed, "the server closed the connection");
    let m = a.metrics();
    assert_eq!(m.get("protocol_errors"), 1);
    let logged = a
        .server
        .lines_matching(|l| l.contains(&format!("127.0.0.1:{port}")));
    assert_eq!(logged.len(), 1, "one line about the connection: {logged:?}");
    assert!(
        logged[0].contains(
            "expected a request on a serving connection, received a RequestVoteResponse message"
        ) && !logged[0].contains("marker"),
        "the log names the message: {}",
        logged[0]
    );
    a.legit_served_during();
    let stopped = Instant::now();
    a.end(
        stopped,
        "a RequestVoteResponse frame after the preamble".into(),
        &bound,
        format!("logged: {}", logged[0]),
    )
}

#[test]
fn a_response_on_a_serving_connection_is_named_in_the_log() {
    response_to_the_serving_side(None);
}

// ---- 8. under an address-space limit ---------------------------------------------------------

/// The server child's address space when it serves the legitimate peer with nothing attacking
/// it (KiB), measured once per run.
fn normal_address_space() -> u64 {
    static NORMAL: OnceLock<u64> = OnceLock::new();
    *NORMAL.get_or_init(|| {
        let server = ServerChild::spawn(&ServerSpec::default(), None);
        let legit = Legit::start(server.target(), LegitKind::Vote, LEGIT_TIMEOUT);
        legit
            .wait_answered(IDLE_CALLS, Instant::now())
            .expect("the legitimate peer is answered");
        let vm = server.memory().vm;
        drop(legit.stop());
        vm
    })
}

/// `ulimit -v` for the memory cases: about 5 × the server's normal address space. Case 1's
/// 2.5 GiB of reservations before the fix did not fit in it.
fn address_space_limit() -> u64 {
    5 * normal_address_space()
}

#[test]
fn under_an_address_space_limit_headers_declaring_64_mib() {
    headers_declaring_64_mib(Some(address_space_limit()), Security::Plain);
}

#[test]
fn under_an_address_space_limit_unread_answers() {
    unread_answers(Some(address_space_limit()), Security::Plain);
}

#[test]
fn under_an_address_space_limit_many_snapshots() {
    many_snapshots(Some(address_space_limit()), Security::Plain);
}

#[test]
fn under_an_address_space_limit_millions_of_tiny_entries() {
    millions_of_tiny_entries(Some(address_space_limit()), Security::Plain);
}

// ---- bounds found missing, and kept ----------------------------------------------------------

/// The issue's case 3 bound, per request: "the consumer queue holds at most
/// `max_unanswered_requests` of the flooder's". A flood of small requests arrives many to a
/// read; the ones past the limit wait until answers make room. (Found missing at first: the
/// whole read was handed over, 3,566 to 8,562 votes queued at once in case 2, 5,450 here.)
#[test]
fn one_read_of_requests_is_handed_over_no_further_than_max_unanswered_requests() {
    const VOTES: u64 = 100_000;
    let limit = MAX_UNANSWERED_REQUESTS;
    let mut server = ServerChild::spawn(&ServerSpec::default(), None);
    let mut s = connect(server.addr());
    let mut answers = s.try_clone().expect("clone");
    let reader = std::thread::spawn(move || {
        let mut sink = vec![0u8; 64 << 10];
        while matches!(answers.read(&mut sink), Ok(n) if n > 0) {}
    });
    let template = request(0, Lane::Control, vote(1));
    let mut flood = PREAMBLE.to_vec();
    for id in 1..=VOTES {
        with_id(&template, id, &mut flood);
    }
    s.write_all(&flood).expect("the flood");
    wait_until("every vote taken", || {
        server.metrics().get("rpcs_received") >= VOTES
    });
    let most = server.metrics().get("max_queue");
    s.shutdown(Shutdown::Both).expect("shutdown");
    reader.join().expect("the reader");
    assert!(
        most <= limit,
        "{most} of one connection's requests waited for the Raft side at once; \
         max_unanswered_requests is {limit}"
    );
}

// ---- findings: where the library does not hold the issue's bound -----------------------------
//
// Each is ignored so that the suite passes, and fails when run (`-- --ignored finding_`) until
// the library holds the bound; the tests above assert the bound the library holds today.

/// The issue's case 4 bound: "buffered snapshot bytes stay below `max_inbound_snapshots` ×
/// `snapshot_buffer`". The bytes counted do (`SnapshotStream::push` pauses at 4 MiB), but the
/// memory they hold is about twice that: each 256 KiB chunk is a slice of the read buffer it
/// was cut from and keeps all of it alive, the room read for the next frame included (about
/// 512 KiB). Measured +29 to +34 MiB resident for 4 snapshots of 4 MiB buffered, against
/// 16 MiB + one read each + 4 MiB here (+17 MiB with 16 KiB chunks, +20 MiB with 64 KiB,
/// +23 MiB with 1 MiB).
#[test]
#[ignore = "finding: buffered snapshot chunks hold about twice the bytes they count"]
fn finding_snapshot_buffers_hold_twice_the_bytes_they_count() {
    let cap = MAX_INBOUND_SNAPSHOTS;
    let buffer = SNAPSHOT_BUFFER;
    let mut a = Attack::begin(
        "finding: 4 snapshots, none read",
        ServerSpec {
            hold_snapshots: true,
            ..Default::default()
        },
        LegitKind::Vote,
        LEGIT_TIMEOUT,
        None,
    );
    let results = snapshot_attackers(&a, cap);
    assert_eq!(a.metrics().get("held"), cap);
    let grew = a.peak().rss - a.before.rss;
    let bound = cap * (buffer + ONE_READ) + 4 * MIB;
    a.server.command("release");
    drop(results);
    assert!(
        grew <= bound,
        "{cap} snapshots buffering {} MiB each grew the server by {} MiB (bound {} MiB)",
        buffer / MIB,
        mib(grew),
        mib(bound)
    );
}

/// The mirror image of case 7: a request where the answer to a call belongs is named by its
/// type in the caller's error (found missing at first: "frame type: expected a response on an
/// outbound connection, found msgpack marker 0x01").
#[test]
fn a_request_answering_a_call_is_named_in_the_error() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");
    let fake = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().expect("accept");
        let mut buf = vec![0u8; 4096];
        let mut got = Vec::new();
        // The preamble and the request's header.
        while got.len() < PREAMBLE_LEN + HEADER_LEN {
            let n = s.read(&mut buf).expect("read");
            assert!(n > 0, "the client hung up");
            got.extend_from_slice(&buf[..n]);
        }
        let id = u64::from_be_bytes(got[PREAMBLE_LEN + 8..PREAMBLE_LEN + 16].try_into().unwrap());
        let answer = [PREAMBLE.to_vec(), request(id, Lane::Control, vote(9))].concat();
        s.write_all(&answer).expect("answer");
        let _ = s.read(&mut buf);
    });
    let client = bind(Config::default().timeout(Some(Duration::from_secs(10))));
    let error = client
        .request_vote(
            &common::peers::peer(),
            &ServerAddress::from(addr),
            vote(1),
            CallOptions::default(),
        )
        .wait()
        .expect_err("a request is no answer");
    let text = error.to_string();
    client.close();
    fake.join().expect("the fake server");
    assert!(
        text.contains("RequestVote") && !text.contains("marker"),
        "the error names the message received: {text}"
    );
}

// ---- the report --------------------------------------------------------------------------------

/// Every case, one after another, and the table RELIABILITY.md shows.
#[test]
#[ignore = "prints RELIABILITY.md's table; run with --release --ignored --nocapture report"]
fn report() {
    type Case = fn(Option<u64>) -> Outcome;
    let cases: [Case; 20] = [
        |vm_limit| headers_declaring_64_mib(vm_limit, Security::Plain),
        |vm_limit| headers_declaring_64_mib(vm_limit, Security::tls()),
        |vm_limit| unread_answers(vm_limit, Security::Plain),
        |vm_limit| unread_answers(vm_limit, Security::tls()),
        |vm_limit| flood_to_a_slow_raft_side(vm_limit, Security::Plain),
        |vm_limit| flood_to_a_slow_raft_side(vm_limit, Security::tls()),
        |vm_limit| snapshots_on_one_connection(vm_limit, Security::Plain),
        |vm_limit| snapshots_on_one_connection(vm_limit, Security::tls()),
        |vm_limit| many_snapshots(vm_limit, Security::Plain),
        |vm_limit| many_snapshots(vm_limit, Security::tls()),
        |vm_limit| stalled_snapshot(vm_limit, Security::Plain),
        |vm_limit| stalled_snapshot(vm_limit, Security::tls()),
        |vm_limit| connections_per_address(vm_limit, Security::Plain),
        |vm_limit| connections_per_address(vm_limit, Security::tls()),
        |vm_limit| slowloris(vm_limit, Security::Plain),
        |vm_limit| slowloris(vm_limit, Security::tls()),
        |vm_limit| millions_of_tiny_entries(vm_limit, Security::Plain),
        |vm_limit| millions_of_tiny_entries(vm_limit, Security::tls()),
        one_large_entry,
        response_to_the_serving_side,
    ];
    let memory_cases: [Case; 4] = [
        |vm_limit| headers_declaring_64_mib(vm_limit, Security::Plain),
        |vm_limit| unread_answers(vm_limit, Security::Plain),
        |vm_limit| many_snapshots(vm_limit, Security::Plain),
        |vm_limit| millions_of_tiny_entries(vm_limit, Security::Plain),
    ];
    let limit = address_space_limit();
    let mut rows: Vec<Outcome> = cases.iter().map(|case| case(None)).collect();
    rows.extend(memory_cases.iter().map(|case| case(Some(limit))));
    let commit = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "\ncommit {commit}, {} build, Linux {}, {cpus} CPUs; the server's normal address space \
         {} MiB, ulimit -v {} MiB\n",
        profile(),
        kernel.trim(),
        mib(normal_address_space()),
        mib(limit)
    );
    println!("{}", Outcome::header());
    for row in &rows {
        println!("{}", row.row());
    }
}
