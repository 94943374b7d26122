//! A transport serving in a child process, so that its memory can be measured on its own.
//!
//! Tests in one binary run as threads of one process: a server measured in-process would share
//! its resident set with whatever the other tests allocate at the same moment. So the test
//! binary re-runs itself ([`ServerChild::spawn`]) with [`ENV`] set, selecting its test
//! [`CHILD_TEST`] by name (`--exact`); that test calls [`serve_if_child`], which binds a
//! [`NetTransport`] on 127.0.0.1:0, answers its RPCs as a Raft side would (as the
//! [`ServerSpec`] says: echoing, slowly, holding snapshots unread), and takes commands on its
//! stdin until stdin closes. The parent reads the child's memory from `/proc/<pid>/status`.
//!
//! The child talks back on stderr, one line per message, each starting with [`PREFIX`]:
//! `ready <addr>`, `metrics <n> name=value ...`, `snapshot term=<t> ok <bytes>` or
//! `snapshot term=<t> err <text>`, `released <n>`, and `log <line>` for each warning the library
//! logs. Anything else on stderr (a panic) is kept for failure messages.
//!
//! A test binary using this defines `#[test] fn server_child() { serve_if_child() }`, which is
//! a no-op unless [`ENV`] is set.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use raftnet::message::*;
use raftnet::*;

use super::net::EVENTUALLY;
use super::peers::echo_response;

/// Set in the child's environment: the [`ServerSpec`] it serves with.
pub(crate) const ENV: &str = "RAFTNET_TEST_SERVER_CHILD";

/// The test the child runs (every binary using this module defines it).
pub(crate) const CHILD_TEST: &str = "server_child";

/// Every line the child writes for the parent starts so.
pub(crate) const PREFIX: &str = "server-child:";

/// How the child's transport is configured and how its Raft side answers.
#[derive(Debug, Clone)]
pub(crate) struct ServerSpec {
    /// `Config::timeout`, in milliseconds: the slow-peer deadlines follow it.
    pub timeout_ms: u64,
    /// `Config::max_connections_per_address` (0: the default).
    pub max_connections_per_address: usize,
    /// The Raft side sleeps this long before answering an AppendEntries that carries entries
    /// (a follower writing its log); everything else is answered at once.
    pub append_delay_us: u64,
    /// InstallSnapshots are kept unread and unanswered until the `release` command (a Raft side
    /// that does not keep up); otherwise each body is read to its end on a thread of its own
    /// and the outcome reported.
    pub hold_snapshots: bool,
    /// Serve mutual TLS with the CA, certificate and key in this dir (`ca.pem`, `node.pem`,
    /// `node.key`: `common::tls::Security::pem_dir`).
    pub tls_dir: Option<PathBuf>,
}

impl Default for ServerSpec {
    fn default() -> Self {
        ServerSpec {
            timeout_ms: 10_000,
            max_connections_per_address: 0,
            append_delay_us: 0,
            hold_snapshots: false,
            tls_dir: None,
        }
    }
}

impl ServerSpec {
    fn encode(&self) -> String {
        let mut text = format!(
            "timeout_ms={};max_connections_per_address={};append_delay_us={};hold_snapshots={}",
            self.timeout_ms,
            self.max_connections_per_address,
            self.append_delay_us,
            u8::from(self.hold_snapshots)
        );
        if let Some(dir) = &self.tls_dir {
            // Last: the path may hold any character but a NUL.
            text.push_str(&format!(";tls_dir={}", dir.display()));
        }
        text
    }

    fn decode(text: &str) -> ServerSpec {
        let mut spec = ServerSpec::default();
        let (text, tls_dir) = match text.split_once(";tls_dir=") {
            Some((rest, dir)) => (rest, Some(PathBuf::from(dir))),
            None => (text, None),
        };
        spec.tls_dir = tls_dir;
        for pair in text.split(';') {
            let (key, value) = pair.split_once('=').expect("key=value");
            let n: u64 = value.parse().expect("a number");
            match key {
                "timeout_ms" => spec.timeout_ms = n,
                "max_connections_per_address" => spec.max_connections_per_address = n as usize,
                "append_delay_us" => spec.append_delay_us = n,
                "hold_snapshots" => spec.hold_snapshots = n != 0,
                other => panic!("unknown server setting {other}"),
            }
        }
        spec
    }

    fn config(&self) -> Config {
        let config = Config::default()
            .timeout(Some(Duration::from_millis(self.timeout_ms)))
            .max_connections_per_address(self.max_connections_per_address);
        match &self.tls_dir {
            Some(dir) => config.tls(
                raftnet::tls::TlsConfig::from_pem_files(
                    dir.join("ca.pem"),
                    dir.join("node.pem"),
                    dir.join("node.key"),
                )
                .expect("the server's PEM files"),
            ),
            None => config,
        }
    }
}

// ---- the parent's side -------------------------------------------------------------------------

/// A process's memory, in KiB, as `/proc/<pid>/status` reports it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Memory {
    /// `VmRSS`: resident now.
    pub rss: u64,
    /// `VmHWM`: the most resident since the start or the last [`ServerChild::reset_peak`].
    pub hwm: u64,
    /// `VmSize`: address space now.
    pub vm: u64,
    /// `VmPeak`: the most address space since the start.
    pub vm_peak: u64,
}

/// Read `/proc/<pid>/status`; `None` once the process is gone.
pub(crate) fn memory_of(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()
    };
    Some(Memory {
        rss: field("VmRSS:")?,
        hwm: field("VmHWM:")?,
        vm: field("VmSize:")?,
        vm_peak: field("VmPeak:")?,
    })
}

/// The largest resident set and address space a process reached while it was sampled, every
/// 2 ms: the fallback where `VmHWM` cannot be reset, and the only measure of address space
/// (`VmPeak` cannot be reset).
pub(crate) struct Sampler {
    stop: Arc<AtomicBool>,
    most: Arc<Mutex<Memory>>,
    handle: Option<JoinHandle<()>>,
}

impl Sampler {
    pub(crate) fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let most: Arc<Mutex<Memory>> = Arc::default();
        let handle = {
            let (stop, most) = (stop.clone(), most.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if let Some(m) = memory_of(pid) {
                        let mut most = most.lock().unwrap_or_else(|e| e.into_inner());
                        most.rss = most.rss.max(m.rss);
                        most.hwm = most.hwm.max(m.hwm);
                        most.vm = most.vm.max(m.vm);
                        most.vm_peak = most.vm_peak.max(m.vm_peak);
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
            })
        };
        Sampler {
            stop,
            most,
            handle: Some(handle),
        }
    }

    /// The maxima seen so far.
    pub(crate) fn most(&self) -> Memory {
        *self.most.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

/// The child's metrics line, by name.
#[derive(Debug, Clone)]
pub(crate) struct ChildMetrics(pub HashMap<String, u64>);

impl ChildMetrics {
    pub(crate) fn get(&self, name: &str) -> u64 {
        *self
            .0
            .get(name)
            .unwrap_or_else(|| panic!("no metric {name} in {:?}", self.0))
    }
}

type Lines = Arc<(Mutex<Vec<String>>, Condvar)>;

/// A transport serving in a child process (see the module doc). Dropping it closes the child's
/// stdin, which ends it; one that does not end within [`EVENTUALLY`] is killed, by its pid.
pub(crate) struct ServerChild {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: Lines,
    addr: SocketAddr,
    asked: u64,
}

impl ServerChild {
    /// Start the child serving as `spec` says; with `vm_limit_kib`, under `ulimit -v` of that
    /// many KiB. Returns once it listens.
    pub(crate) fn spawn(spec: &ServerSpec, vm_limit_kib: Option<u64>) -> ServerChild {
        let exe = std::env::current_exe().expect("the test binary");
        let mut command = match vm_limit_kib {
            Some(kib) => {
                let mut c = Command::new("sh");
                c.arg("-c")
                    .arg(format!("ulimit -v {kib} && exec \"$0\" \"$@\""))
                    .arg(exe);
                c
            }
            None => Command::new(exe),
        };
        let mut child = command
            .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
            .env(ENV, spec.encode())
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the server child");
        let stdin = child.stdin.take();
        let stderr = child.stderr.take().expect("the child's stderr");
        let lines: Lines = Arc::new((Mutex::new(Vec::new()), Condvar::new()));
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else { break };
                    let (all, arrived) = &*lines;
                    all.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                    arrived.notify_all();
                }
                // The child is gone: wake any waiter so it can say so.
                let (all, arrived) = &*lines;
                all.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(format!("{PREFIX} stderr closed"));
                arrived.notify_all();
            });
        }
        let mut server = ServerChild {
            child,
            stdin,
            lines,
            addr: "0.0.0.0:0".parse().unwrap(),
            asked: 0,
        };
        let ready = server.wait_line("the child listens", |l| l.starts_with("ready "));
        server.addr = ready["ready ".len()..].parse().expect("an address");
        server
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub(crate) fn target(&self) -> ServerAddress {
        ServerAddress::from(self.addr)
    }

    /// Its memory now (fails the test if the child is gone).
    pub(crate) fn memory(&self) -> Memory {
        memory_of(self.pid())
            .unwrap_or_else(|| panic!("the server child is gone:\n{}", self.output()))
    }

    /// Reset `VmHWM` to the resident set now (`/proc/<pid>/clear_refs`, Linux 4.0 and later);
    /// false where that is refused, and the [`Sampler`] is the only peak measure.
    pub(crate) fn reset_peak(&self) -> bool {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), b"5").is_ok()
    }

    /// Send a command line.
    pub(crate) fn command(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is open");
        if let Err(e) = writeln!(stdin, "{line}").and_then(|()| stdin.flush()) {
            panic!(
                "the server child did not take {line:?} ({e}):\n{}",
                self.output()
            );
        }
    }

    /// The child's metrics now.
    pub(crate) fn metrics(&mut self) -> ChildMetrics {
        self.asked += 1;
        let n = self.asked;
        self.command(&format!("metrics {n}"));
        let head = format!("metrics {n} ");
        let line = self.wait_line("the child's metrics", |l| l.starts_with(&head));
        ChildMetrics(
            line[head.len()..]
                .split_whitespace()
                .map(|pair| {
                    let (k, v) = pair.split_once('=').expect("name=value");
                    (k.to_string(), v.parse().expect("a number"))
                })
                .collect(),
        )
    }

    /// Wait for a message from the child matching `matches` (the prefix taken off), failing the
    /// test after [`EVENTUALLY`] or if the child ends first.
    pub(crate) fn wait_line(&self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + EVENTUALLY;
        let (all, arrived) = &*self.lines;
        let mut lines = all.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(found) = lines
                .iter()
                .filter_map(|l| l.strip_prefix(PREFIX).map(str::trim_start))
                .find(|l| matches(l))
            {
                return found.to_string();
            }
            if lines
                .iter()
                .any(|l| l == &format!("{PREFIX} stderr closed"))
            {
                drop(lines);
                panic!("{what}: the server child ended first:\n{}", self.output());
            }
            let now = Instant::now();
            if now >= deadline {
                drop(lines);
                panic!("{what}: not within {EVENTUALLY:?}:\n{}", self.output());
            }
            lines = arrived
                .wait_timeout(lines, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The messages so far (the prefix taken off) that match `matches`.
    pub(crate) fn lines_matching(&self, matches: impl Fn(&str) -> bool) -> Vec<String> {
        let (all, _) = &*self.lines;
        all.lock()
            .unwrap()
            .iter()
            .filter_map(|l| l.strip_prefix(PREFIX).map(str::trim_start))
            .filter(|l| matches(l))
            .map(str::to_string)
            .collect()
    }

    /// Everything the child wrote on stderr so far, for failure messages (the log lines of a
    /// flood of connections are summarised).
    pub(crate) fn output(&self) -> String {
        let (all, _) = &*self.lines;
        let lines = all.lock().unwrap_or_else(|e| e.into_inner());
        let logs = lines.iter().filter(|l| l.contains(" log ")).count();
        let mut text: Vec<&str> = lines
            .iter()
            .filter(|l| !l.contains(" log "))
            .map(String::as_str)
            .collect();
        let summary = format!("({logs} log lines, the last: {:?})", {
            lines.iter().rev().find(|l| l.contains(" log "))
        });
        text.push(&summary);
        text.join("\n")
    }

    /// Whether the child still runs.
    pub(crate) fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        // Closing stdin ends the child.
        drop(self.stdin.take());
        let deadline = Instant::now() + EVENTUALLY;
        while Instant::now() < deadline {
            if !matches!(self.child.try_wait(), Ok(None)) {
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        // Only the child we spawned, by its pid.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---- the child's side --------------------------------------------------------------------------

/// Each warning the library logs goes to the parent as a `log` line.
struct ForwardLog;

impl log::Log for ForwardLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            eprintln!("{PREFIX} log {}", record.args());
        }
    }

    fn flush(&self) {}
}

static FORWARD_LOG: ForwardLog = ForwardLog;

/// The child's part: serve as the [`ServerSpec`] in [`ENV`] says until stdin closes. Returns
/// at once when [`ENV`] is not set (in the parent).
pub(crate) fn serve_if_child() {
    let Some(spec) = std::env::var_os(ENV) else {
        return;
    };
    let spec = ServerSpec::decode(&spec.to_string_lossy());
    log::set_logger(&FORWARD_LOG).expect("install the forwarding logger");
    log::set_max_level(log::LevelFilter::Warn);
    let server = NetTransport::bind("127.0.0.1:0", None, spec.config()).expect("bind 127.0.0.1:0");
    let held: Arc<Mutex<Vec<Rpc>>> = Arc::default();
    // The most RPCs seen waiting in the consumer queue behind the one just taken.
    let max_queue = Arc::new(AtomicU64::new(0));
    let raft = {
        let consumer = server.consumer().clone();
        let (held, max_queue) = (held.clone(), max_queue.clone());
        let spec = spec.clone();
        std::thread::Builder::new()
            .name("raft-side".into())
            .spawn(move || raft_side(consumer, spec, held, max_queue))
            .expect("spawn the Raft side")
    };
    eprintln!("{PREFIX} ready {}", server.bound_addr());
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let mut words = line.split_whitespace();
        match words.next() {
            Some("metrics") => {
                let n = words.next().unwrap_or("0");
                let m = server.metrics();
                eprintln!(
                    "{PREFIX} metrics {n} accepted={} open_connections={} protocol_errors={} \
                     connections_refused={} reads_paused={} snapshots_refused={} \
                     slow_peers_closed={} bytes_read={} rpcs_received={} consumer_queue={} \
                     max_queue={} held={}",
                    m.accepted,
                    server.open_connections(),
                    m.protocol_errors,
                    m.connections_refused,
                    m.reads_paused,
                    m.snapshots_refused,
                    m.slow_peers_closed,
                    m.bytes_read,
                    m.rpcs_received.total(),
                    m.consumer_queue,
                    max_queue.load(Ordering::SeqCst),
                    held.lock().unwrap_or_else(|e| e.into_inner()).len(),
                );
            }
            Some("release") => {
                // Dropping an unanswered RPC answers it with an error, and its reader lets go
                // of the snapshot's buffer.
                let released = std::mem::take(&mut *held.lock().unwrap_or_else(|e| e.into_inner()));
                let n = released.len();
                drop(released);
                eprintln!("{PREFIX} released {n}");
            }
            other => panic!("unknown command {other:?}"),
        }
    }
    server.close();
    raft.join().expect("the Raft side");
}

/// The Raft side of the child: answer every RPC as the spec says, until the transport closes.
fn raft_side(
    consumer: Consumer,
    spec: ServerSpec,
    held: Arc<Mutex<Vec<Rpc>>>,
    max_queue: Arc<AtomicU64>,
) {
    while let Ok(mut rpc) = consumer.recv() {
        max_queue.fetch_max(consumer.len() as u64, Ordering::SeqCst);
        match &rpc.request {
            Request::InstallSnapshot(_) if spec.hold_snapshots => {
                held.lock().unwrap_or_else(|e| e.into_inner()).push(rpc)
            }
            Request::InstallSnapshot(r) => {
                let term = r.term;
                let mut reader = rpc.snapshot.take().expect("a snapshot body");
                std::thread::spawn(move || {
                    match std::io::copy(&mut reader, &mut std::io::sink()) {
                        Ok(n) => {
                            eprintln!("{PREFIX} snapshot term={term} ok {n}");
                            let response = echo_response(&rpc.request);
                            rpc.respond_ok(response);
                        }
                        Err(e) => {
                            eprintln!("{PREFIX} snapshot term={term} err {e}");
                            rpc.respond_err(format!("snapshot body: {e}"));
                        }
                    }
                });
            }
            Request::AppendEntries(a) if !a.entries.is_empty() && spec.append_delay_us > 0 => {
                std::thread::sleep(Duration::from_micros(spec.append_delay_us));
                let response = echo_response(&rpc.request);
                rpc.respond_ok(response);
            }
            _ => {
                let response = echo_response(&rpc.request);
                rpc.respond_ok(response);
            }
        }
    }
}
