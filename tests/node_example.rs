//! `examples/node` as a user runs it: three processes on loopback, one started with `--init`,
//! each keeping its data in a dir of its own (in a temp dir removed at the end).
//!
//! - `three_processes_replicate_a_write`: a `set` typed at the leader is readable with `get` on
//!   every node, `status` reports it applied, and `quit` ends each process cleanly.
//! - `killed_nodes_rejoin_with_their_data`: a follower, then the leader, is killed with SIGKILL
//!   while writes go on without it; started again on its data dir, each catches up and reads
//!   every value exactly (values with spaces too). Then all three are killed and each is started
//!   alone, with no cluster to catch it up: it reads every value from its own dir.
//! - `three_processes_over_tls_replicate_a_write`: `--tls DIR` with the certificates
//!   `examples/make_certs.rs` writes: the nodes replicate a write over mutual TLS, and a node's
//!   port fails a plaintext peer's call in the connection.
//!

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use raftnet_chaos::held_port::HeldPort;
use tempfile::TempDir;

/// Bounds every wait; a healthy cluster needs about a second.
const DEADLINE: Duration = Duration::from_secs(60);

struct NodeProcess {
    id: u64,
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl NodeProcess {
    fn send(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to the node's stdin");
        self.stdin.flush().unwrap();
    }

    /// The next line of output that `pick` maps to a value, within the deadline.
    fn wait_for<T>(&mut self, what: &str, mut pick: impl FnMut(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let picked = pick(&line);
                    self.seen.push(line);
                    if let Some(value) = picked {
                        return value;
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => panic!(
                    "node {}: no {what} within {DEADLINE:?}; its output:\n{}",
                    self.id,
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Whether the node has printed a line starting with `prefix` (already or within the
    /// deadline).
    fn wait_for_line(&mut self, prefix: &str) {
        if !self.seen.iter().any(|line| line.starts_with(prefix)) {
            self.wait_for(&format!("\"{prefix}...\""), |line| {
                line.starts_with(prefix).then_some(())
            });
        }
    }

    /// `key`'s value in this node's state machine, as its `get` command prints it.
    fn get(&mut self, key: &str) -> Option<String> {
        self.send(&format!("get {key}"));
        let (set, unset) = (format!("{key} = "), format!("{key} is not set"));
        self.wait_for(&format!("answer to get {key}"), |line| {
            if let Some(value) = line.strip_prefix(&set) {
                Some(Some(value.to_string()))
            } else {
                (line == unset).then_some(None)
            }
        })
    }

    /// Wait until `get` prints every `(key, value)` of `expected` exactly.
    fn wait_for_values(&mut self, expected: &[(&str, &str)]) {
        let deadline = Instant::now() + DEADLINE;
        for &(key, value) in expected {
            loop {
                let got = self.get(key);
                if got.as_deref() == Some(value) {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {}: {key} is {got:?}, not {value:?}, after {DEADLINE:?}; its output:\n{}",
                    self.id,
                    self.seen.join("\n")
                );
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }

    /// The highest log index this node has applied, as its `status` command reports it.
    fn last_applied(&mut self) -> Option<u64> {
        self.send("status");
        // "node 2: follower, term 1, leader 1, last log index 3, applied index 3, ..."
        self.wait_for("status", |line| {
            let applied = line.split_once(", applied index ")?.1;
            let applied = applied.split(',').next()?;
            Some((applied != "none").then(|| applied.parse::<u64>().expect("a log index")))
        })
    }

    /// Wait until this node has applied the log up to `index`.
    fn wait_applied(&mut self, index: u64) {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let applied = self.last_applied();
            if applied.is_some_and(|applied| applied >= index) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} applied up to {applied:?}, not {index}, within {DEADLINE:?}",
                self.id
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// What the node says it found in its data dir when it started ("empty (a new node)", or
    /// "vote in term ..., log entries ..., committed up to index N").
    fn restored(&mut self) -> String {
        let prefix = format!("node {}: data dir ", self.id);
        self.wait_for("data dir line", |line| {
            let rest = line.strip_prefix(&prefix)?;
            Some(rest.split_once(": ")?.1.to_string())
        })
    }

    /// Kill the process as a crash would (SIGKILL: no clean shutdown, no flush by the node).
    fn kill(mut self) {
        self.child.kill().expect("kill the node");
        self.child.wait().expect("reap the node");
    }

    /// Wait for the process to exit, at the latest at `deadline`; one still running then is
    /// killed and fails the test.
    fn wait_exit(&mut self, deadline: Instant) -> ExitStatus {
        loop {
            if let Some(status) = self.child.try_wait().expect("poll the node's process") {
                return status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!(
                    "node {} did not exit within {DEADLINE:?}; its output:\n{}",
                    self.id,
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for NodeProcess {
    /// A test that fails part-way leaves no node behind (one whose stdin closes serves on until
    /// killed).
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The example's binary, built once per run of this file: `cargo test` builds examples before
/// it runs tests, but `cargo test --test node_example` does not, and would otherwise run a
/// binary built before the example's last change (a no-op build costs well under a second).
fn example_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT.get_or_init(|| build_example("node")).clone()
}

/// Build example `name` (as [`example_binary`] says why) and return its path.
fn build_example(name: &str) -> PathBuf {
    // target/<profile>/deps/node_example-<hash> → target/<profile>/examples/<name>
    let mut path = std::env::current_exe().unwrap();
    path.pop();
    path.pop();
    path.push("examples");
    path.push(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build.args(["build", "--example", name]);
    if path.components().any(|c| c.as_os_str() == "release") {
        build.arg("--release");
    }
    let status = build
        .status()
        .unwrap_or_else(|e| panic!("run cargo build --example {name}: {e}"));
    assert!(
        status.success() && path.exists(),
        "{} is not built",
        path.display()
    );
    path
}

/// Nodes on loopback ports this test holds until it ends, with a data dir each under one temp
/// dir. Nodes are numbered from 1. Each node process serves on its port inherited
/// (`--listen-fd`), and the port refuses dials while the node is down ([`HeldPort`]: a port
/// released for the node to bind could go to another test's socket first, as CI saw).
struct Cluster {
    /// Declared before `dirs`: the processes are gone before their dirs are removed.
    nodes: Vec<Option<NodeProcess>>,
    /// Node `i + 1`'s port.
    ports: Vec<HeldPort>,
    peers: Vec<String>,
    dirs: TempDir,
    extra_args: Vec<String>,
}

impl Cluster {
    fn new(size: usize, extra_args: &[&str]) -> Cluster {
        let ports: Vec<HeldPort> = (0..size)
            .map(|_| HeldPort::reserve().expect("hold a loopback port"))
            .collect();
        let peers = ports
            .iter()
            .enumerate()
            .map(|(i, port)| format!("{}={}", i + 1, port.addr()))
            .collect();
        Cluster {
            nodes: (0..size).map(|_| None).collect(),
            ports,
            peers,
            dirs: tempfile::tempdir().expect("a temp dir for the nodes' data"),
            extra_args: extra_args.iter().map(|a| a.to_string()).collect(),
        }
    }

    /// Start node `id` on its data dir (the same dir every time).
    fn start(&mut self, id: u64, init: bool) -> &mut NodeProcess {
        assert!(
            self.nodes[id as usize - 1].is_none(),
            "node {id} runs already"
        );
        let mut command = Command::new(example_binary());
        command.args(["--id", &id.to_string()]);
        for peer in &self.peers {
            command.args(["--peer", peer]);
        }
        command
            .arg("--data-dir")
            .arg(self.dirs.path().join(format!("node-{id}")));
        command.args(&self.extra_args);
        if init {
            command.arg("--init");
        }
        self.ports[id as usize - 1]
            .pass_to(&mut command)
            .expect("pass the node its port");
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the node example");
        let stdin = child.stdin.take().unwrap();
        // Both streams, line by line, into one channel (a failed test shows them together).
        let (tx, lines) = channel();
        let stdout: Box<dyn Read + Send> = Box::new(child.stdout.take().unwrap());
        let stderr: Box<dyn Read + Send> = Box::new(child.stderr.take().unwrap());
        for stream in [stdout, stderr] {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        self.nodes[id as usize - 1].insert(NodeProcess {
            id,
            child,
            stdin,
            lines,
            seen: Vec::new(),
        })
    }

    fn node(&mut self, id: u64) -> &mut NodeProcess {
        self.nodes[id as usize - 1]
            .as_mut()
            .unwrap_or_else(|| panic!("node {id} is not running"))
    }

    /// Kill node `id` (SIGKILL) and reap it; its port refuses dials until it is started again.
    fn kill(&mut self, id: u64) {
        let node = self.nodes[id as usize - 1].take();
        node.unwrap_or_else(|| panic!("node {id} is not running"))
            .kill();
        self.ports[id as usize - 1].refuse();
    }

    fn running(&self) -> impl Iterator<Item = u64> + '_ {
        self.nodes.iter().flatten().map(|node| node.id)
    }

    /// `set key value` at `leader` until a node takes it: a follower's redirect is followed, a
    /// node with no leader (or pointing at one that is down) is asked again shortly, all within
    /// the deadline. `leader` ends as the node that took the write.
    fn write(&mut self, leader: &mut u64, key: &str, value: &str) -> Written {
        let deadline = Instant::now() + DEADLINE;
        let mut attempts = 0;
        let mut maybe_committed = false;
        loop {
            assert!(
                Instant::now() < deadline,
                "`set {key} {value}` not acknowledged within {DEADLINE:?} ({attempts} attempts)"
            );
            attempts += 1;
            if self.nodes[*leader as usize - 1].is_none() {
                *leader = self.running().next().expect("a node runs");
            }
            let node = self.node(*leader);
            node.send(&format!("set {key} {value}"));
            match node.wait_for(&format!("answer to set {key}"), |l| {
                set_outcome(l, key, value)
            }) {
                SetOutcome::Ok { index, was } => {
                    return Written {
                        index,
                        was,
                        maybe_committed,
                    };
                }
                SetOutcome::Redirect(other) => {
                    assert!((1..=3).contains(&other), "redirected to node {other}");
                    if self.nodes[other as usize - 1].is_none() {
                        // It has not noticed yet that its leader is gone.
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    *leader = other;
                }
                SetOutcome::NoLeader => std::thread::sleep(Duration::from_millis(100)),
                SetOutcome::Failed => {
                    maybe_committed = true;
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// `quit` on node `id`; it must exit cleanly.
    fn stop(&mut self, id: u64) {
        let node = self.node(id);
        node.send("quit");
        let status = node.wait_exit(Instant::now() + DEADLINE);
        assert!(status.success(), "node {id} exited with {status}");
        self.nodes[id as usize - 1] = None;
        self.ports[id as usize - 1].refuse();
    }

    /// `quit` on every running node; each must exit cleanly.
    fn quit_all(&mut self) {
        for node in self.nodes.iter_mut().flatten() {
            node.send("quit");
        }
        let deadline = Instant::now() + DEADLINE;
        for node in self.nodes.iter_mut().flatten() {
            let status = node.wait_exit(deadline);
            assert!(status.success(), "node {} exited with {status}", node.id);
        }
    }
}

/// A write a node acknowledged.
struct Written {
    index: u64,
    /// The value it replaced, as the node put it: `None` for a key that was not set.
    was: Option<String>,
    /// An earlier attempt failed after its entry may have been proposed (so it may have been
    /// committed too, and this write replaced its value).
    maybe_committed: bool,
}

/// "term 1: node 2 leads; ..." → 2
fn leader_in(line: &str) -> Option<u64> {
    let rest = line.split_once(": node ")?.1;
    let (id, tail) = rest.split_once(' ')?;
    tail.starts_with("leads").then(|| id.parse().ok())?
}

/// What a node answered to `set`.
enum SetOutcome {
    /// "ok: color = blue (log index 4; color was not set)" or "(log index 5; color was blue)":
    /// the index, and the value it replaced.
    Ok { index: u64, was: Option<String> },
    /// "not the leader: node 2 (...) is; send writes there".
    Redirect(u64),
    /// "no leader right now; try again shortly".
    NoLeader,
    /// "write failed: ...": the write may or may not have been committed.
    Failed,
}

fn set_outcome(line: &str, key: &str, value: &str) -> Option<SetOutcome> {
    if let Some(rest) = line.strip_prefix(&format!("ok: {key} = {value} (log index ")) {
        let (index, was) = rest.split_once(&format!("; {key} was "))?;
        let was = was.strip_suffix(')')?;
        Some(SetOutcome::Ok {
            index: index.parse().expect("a log index"),
            was: (was != "not set").then(|| was.to_string()),
        })
    } else if let Some(rest) = line.strip_prefix("not the leader: node ") {
        rest.split(' ')
            .next()
            .and_then(|id| id.parse().ok())
            .map(SetOutcome::Redirect)
    } else if line.starts_with("no leader") {
        Some(SetOutcome::NoLeader)
    } else if line.starts_with("write failed") {
        Some(SetOutcome::Failed)
    } else {
        None
    }
}

/// "..., a snapshot up to index 8, ..." → 8
fn snapshot_in(restored: &str) -> Option<u64> {
    let rest = restored.split_once("a snapshot up to index ")?.1;
    rest.split(',').next()?.parse().ok()
}

/// "..., committed up to index 9" → 9
fn committed_in(restored: &str) -> Option<u64> {
    let rest = restored.split_once("committed up to index ")?.1;
    rest.split(',').next()?.parse().ok()
}

#[test]
fn three_processes_replicate_a_write() {
    let mut cluster = Cluster::new(3, &[]);
    for id in 1..=3 {
        let node = cluster.start(id, id == 1);
        assert_eq!(node.restored(), "empty (a new node)");
    }

    let mut leader = cluster.node(1).wait_for("leader", leader_in);
    let written = cluster.write(&mut leader, "color", "blue");
    eprintln!(
        "set acknowledged by node {leader} at log index {} (was {:?})",
        written.index, written.was
    );
    if !written.maybe_committed {
        assert_eq!(
            written.was, None,
            "the first write of color replaced a value"
        );
    }
    // The write's entry follows the cluster's own: the initial membership (index 0) and the
    // blank entry each leader appends on taking office (index 1 for the first).
    assert!(
        written.index >= 2,
        "the write was acknowledged at log index {}",
        written.index
    );

    // Every node's state machine gets the write, and the node reports its log applied up to the
    // write's index (a follower may apply it a moment later).
    for id in 1..=3 {
        let node = cluster.node(id);
        node.wait_for_values(&[("color", "blue")]);
        node.wait_applied(written.index);
    }

    // `metrics` prints the transport's metrics in Prometheus' text format: the leader has sent
    // AppendEntries (the write's, at least) and its followers have received them.
    let leader_node = cluster.node(leader);
    leader_node.send("metrics");
    let sent: u64 = leader_node.wait_for("the leader's AppendEntries sent", |line| {
        line.strip_prefix("raftnet_callsSent{rpcType=\"AppendEntries\"} ")?
            .parse()
            .ok()
    });
    assert!(sent >= 1, "the leader sent {sent} AppendEntries");
    let follower = if leader == 1 { 2 } else { 1 };
    let follower_node = cluster.node(follower);
    follower_node.send("metrics");
    let received: u64 = follower_node.wait_for("a follower's AppendEntries received", |line| {
        line.strip_prefix("raftnet_rpcsReceived{rpcType=\"AppendEntries\"} ")?
            .parse()
            .ok()
    });
    assert!(
        received >= 1,
        "node {follower} received {received} AppendEntries"
    );
    cluster.quit_all();
}

/// Every key written, with its last value.
type Expected = Vec<(&'static str, &'static str)>;

/// `cluster.write`, remembering the value in `expected`; the write's log index.
fn write(
    cluster: &mut Cluster,
    leader: &mut u64,
    expected: &mut Expected,
    key: &'static str,
    value: &'static str,
) -> u64 {
    let index = cluster.write(leader, key, value).index;
    expected.retain(|&(k, _)| k != key);
    expected.push((key, value));
    index
}

#[test]
fn killed_nodes_rejoin_with_their_data() {
    // A snapshot every 4 entries, keeping 4 behind it: the nodes build snapshots and purge
    // their logs as the test writes, so a restart starts from a snapshot file plus a log tail,
    // and a node that missed more than the leader kept is sent a snapshot.
    let mut cluster = Cluster::new(3, &["--snapshot-every", "4"]);
    for id in 1..=3 {
        cluster.start(id, id == 1);
    }
    let mut leader = cluster.node(1).wait_for("leader", leader_in);
    let mut expected = Expected::new();

    // Before any node is lost, applied on every node.
    write(&mut cluster, &mut leader, &mut expected, "plain", "one");
    write(
        &mut cluster,
        &mut leader,
        &mut expected,
        "spaced",
        "a value  with   spaces, kept exactly ",
    );
    let applied_everywhere = write(
        &mut cluster,
        &mut leader,
        &mut expected,
        "replaced",
        "before the crash",
    );
    for id in 1..=3 {
        cluster.node(id).wait_applied(applied_everywhere);
    }

    // A follower is killed; the other two go on. Its port refuses dials while it is down, as
    // a dead host's does.
    let follower = (1..=3).find(|&id| id != leader).unwrap();
    cluster.kill(follower);
    let port = cluster.ports[follower as usize - 1].addr();
    assert_eq!(
        TcpStream::connect(port).map_err(|e| e.kind()).err(),
        Some(std::io::ErrorKind::ConnectionRefused),
        "node {follower}'s port {port} while the node is down"
    );
    write(
        &mut cluster,
        &mut leader,
        &mut expected,
        "replaced",
        "after the crash",
    );
    write(
        &mut cluster,
        &mut leader,
        &mut expected,
        "while_down",
        "written while a follower was down",
    );
    let mut last = 0;
    for key in ["k0", "k1", "k2", "k3", "k4", "k5", "k6", "k7"] {
        last = write(&mut cluster, &mut leader, &mut expected, key, "x y");
    }

    // Started again on its dir (with --init, which must leave the cluster as it is), it finds
    // what it had and catches up on the rest.
    let node = cluster.start(follower, true);
    let restored = node.restored();
    assert!(
        committed_in(&restored).is_some_and(|committed| committed >= applied_everywhere),
        "node {follower} found \"{restored}\" in its dir; it had applied up to {applied_everywhere}"
    );
    node.wait_for("init line", |line| {
        line.starts_with("init: ").then(|| {
            assert_eq!(
                line,
                "init: already initialized (the data dir holds a cluster)"
            );
        })
    });
    node.wait_for_values(&expected);
    node.wait_applied(last);
    // It missed more than the leader's log kept after its snapshots: it got a snapshot.
    let installed = "snapshot: installed the leader's, up to log index ";
    node.wait_for_line(installed);
    let installed: u64 = node
        .seen
        .iter()
        .find_map(|line| line.strip_prefix(installed)?.parse().ok())
        .expect("the installed snapshot's index");
    // The snapshot it was sent is on its disk: killed again, it starts from it (or from a
    // later one it built itself, had it applied --snapshot-every entries since).
    cluster.kill(follower);
    let node = cluster.start(follower, false);
    let restored = node.restored();
    assert!(
        snapshot_in(&restored).is_some_and(|index| index >= installed),
        "node {follower} was sent a snapshot up to {installed} but found \"{restored}\" in its dir"
    );
    node.wait_for_values(&expected);

    // The leader is killed (it had applied everything: it acknowledged the last write); the
    // other two elect one of themselves and go on.
    let old_leader = leader;
    cluster.kill(old_leader);
    write(
        &mut cluster,
        &mut leader,
        &mut expected,
        "after_leader_loss",
        "the new leader's write",
    );
    assert_ne!(
        leader, old_leader,
        "the write was acknowledged by a new leader"
    );
    write(
        &mut cluster,
        &mut leader,
        &mut expected,
        "spaced",
        "replaced  by the  new leader",
    );
    let node = cluster.start(old_leader, true);
    let restored = node.restored();
    assert!(
        committed_in(&restored).is_some_and(|committed| committed >= last),
        "node {old_leader} (the old leader) found \"{restored}\" in its dir; it had applied up to {last}"
    );
    node.wait_for_values(&expected);

    // Every node killed at once, once all have applied everything; each started alone, with no
    // leader to send it anything, has every value from its own dir.
    let last = cluster
        .node(leader)
        .last_applied()
        .expect("the leader applied its writes");
    for id in 1..=3 {
        cluster.node(id).wait_applied(last);
    }
    for id in 1..=3 {
        cluster.kill(id);
    }
    for id in 1..=3 {
        let node = cluster.start(id, false);
        let restored = node.restored();
        assert!(
            committed_in(&restored).is_some_and(|committed| committed >= last),
            "node {id} found \"{restored}\" in its dir; it had applied up to {last}"
        );
        for &(key, value) in &expected {
            assert_eq!(
                node.get(key).as_deref(),
                Some(value),
                "node {id}, alone, reads {key} from its dir"
            );
        }
        // openraft publishes the applied index in its metrics a moment after it re-applied the
        // committed log at start-up (the reads above can come first): wait for it, bounded.
        node.wait_applied(last);
        cluster.stop(id);
    }
}

#[test]
fn a_cut_short_append_is_dropped_and_a_damaged_log_stops_the_node() {
    // One node is a cluster of one: its writes commit at once.
    let mut cluster = Cluster::new(1, &[]);
    cluster.start(1, true).wait_for("leader", leader_in);
    let mut leader = 1;
    let mut expected = Expected::new();
    write(&mut cluster, &mut leader, &mut expected, "a", "first value");
    write(
        &mut cluster,
        &mut leader,
        &mut expected,
        "b",
        "second  value",
    );
    cluster.kill(1);
    let log = cluster.dirs.path().join("node-1").join("log");
    let append = |bytes: &[u8]| {
        let mut file = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        file.write_all(bytes).unwrap();
    };

    // A crash in the middle of an append: a record's header (a 100-byte body, checksum 0) and
    // 10 bytes of its body. The node drops them, says so, and goes on after its last whole
    // record.
    append(&[&100u32.to_le_bytes()[..], &[0; 4], b"{\"log_id\":"].concat());
    let node = cluster.start(1, false);
    node.wait_for_line(&format!(
        "{}: dropping the last 18 bytes, an append cut short by a crash",
        log.display()
    ));
    node.wait_for_values(&expected);
    write(
        &mut cluster,
        &mut leader,
        &mut expected,
        "c",
        "after the cut",
    );
    cluster.stop(1);

    // A crash that left the end of the file zero-filled.
    append(&[0; 512]);
    let node = cluster.start(1, false);
    node.wait_for_line(&format!(
        "{}: dropping the last 512 bytes, an append cut short by a crash",
        log.display()
    ));
    node.wait_for_values(&expected);
    cluster.stop(1);

    // One byte of the first record's body changed, with whole records after it: not a cut-short
    // append but a damaged disk. The node refuses to start rather than drop or guess entries.
    let mut bytes = std::fs::read(&log).unwrap();
    let first_body = 8 + 8; // the file's magic, the record's header
    bytes[first_body + 2] ^= 0x20;
    std::fs::write(&log, bytes).unwrap();
    let node = cluster.start(1, false);
    let status = node.wait_exit(Instant::now() + DEADLINE);
    assert_eq!(
        status.code(),
        Some(1),
        "a node on a damaged log exited with {status}"
    );
    node.wait_for_line(&format!(
        "node: data dir {}: {} at byte 8: a record's checksum does not match",
        log.parent().unwrap().display(),
        log.display()
    ));
}

/// `--tls DIR` with the certificates `make_certs` writes: the three processes elect a leader and
/// replicate a write over mutual TLS, and a node's port refuses a plaintext raftnet peer.
#[test]
fn three_processes_over_tls_replicate_a_write() {
    use raftnet::Transport as _;
    let certs = tempfile::tempdir().expect("a temp dir for the certificates");
    let made = Command::new(build_example("make_certs"))
        .arg(certs.path())
        .args(["1", "2", "3"])
        .output()
        .expect("run make_certs");
    assert!(made.status.success(), "make_certs: {made:?}");
    for file in [
        "ca.pem",
        "node-1.pem",
        "node-1.key",
        "node-3.pem",
        "node-3.key",
    ] {
        assert!(
            certs.path().join(file).exists(),
            "make_certs wrote no {file}"
        );
    }
    let dir = certs.path().to_str().expect("a UTF-8 temp dir");
    let mut cluster = Cluster::new(3, &["--tls", dir]);
    for id in 1..=3 {
        let node = cluster.start(id, id == 1);
        node.wait_for("the TLS line", |line| {
            line.contains("mutual TLS with the certificates in")
                .then_some(())
        });
    }
    let mut leader = cluster.node(1).wait_for("leader", leader_in);
    cluster.write(&mut leader, "color", "green");
    for id in 1..=3 {
        cluster.node(id).wait_for_values(&[("color", "green")]);
    }
    // The port speaks TLS only: a plaintext raftnet peer's vote fails in the connection (a node
    // without TLS would answer it: openraft's side refuses a vote it cannot decode).
    let plain = raftnet::NetTransport::bind("127.0.0.1:0", None, raftnet::Config::default())
        .expect("bind a plaintext transport");
    let node_1 = cluster.peers[0].split_once('=').unwrap().1.to_string();
    let vote = plain.request_vote(
        &raftnet::ServerId::from("1"),
        &raftnet::ServerAddress(node_1),
        raftnet::message::RequestVoteRequest::default(),
        raftnet::CallOptions::default(),
    );
    let answer = vote
        .wait_deadline(Instant::now() + DEADLINE)
        .expect("the plaintext vote resolves");
    assert!(
        matches!(
            answer,
            Err(raftnet::Error::Io(_) | raftnet::Error::Protocol(_))
        ),
        "a plaintext vote was answered: {answer:?}"
    );
}
