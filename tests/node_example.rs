//! `examples/node.rs` as a user runs it: three processes on loopback, one started with `--init`;
//! a `set` typed at the leader is readable with `get` on every node, and `quit` ends each
//! process cleanly. (Cargo builds examples before it runs integration tests.)

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

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

    /// The highest log index this node has applied, as its `status` command reports it.
    fn last_applied(&mut self) -> Option<u64> {
        self.send("status");
        // "node 2: Follower, term 1, leader Some(1), last applied Some(3)"
        self.wait_for("status", |line| {
            let applied = line.split_once(", last applied ")?.1;
            Some(
                applied
                    .strip_prefix("Some(")
                    .and_then(|rest| rest.strip_suffix(')'))
                    .map(|n| n.parse::<u64>().expect("a log index")),
            )
        })
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
                    "node {} did not exit within {DEADLINE:?} of `quit`; its output:\n{}",
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

fn example_binary() -> PathBuf {
    // target/<profile>/deps/node_example-<hash> → target/<profile>/examples/node
    let mut path = std::env::current_exe().unwrap();
    path.pop();
    path.pop();
    path.push("examples");
    path.push(format!("node{}", std::env::consts::EXE_SUFFIX));
    if !path.exists() {
        // `cargo test` builds examples first; `cargo test --test node_example` does not.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "--example", "node"]);
        if path.components().any(|c| c.as_os_str() == "release") {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build --example node");
        assert!(
            status.success() && path.exists(),
            "{} is not built",
            path.display()
        );
    }
    path
}

/// Three loopback ports the OS has just handed out (bound to port 0, then released for the
/// nodes to bind).
fn free_ports() -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").unwrap())
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().unwrap().port())
        .collect()
}

fn start(id: u64, peers: &[String], init: bool) -> NodeProcess {
    let mut command = Command::new(example_binary());
    command.args(["--id", &id.to_string()]);
    for peer in peers {
        command.args(["--peer", peer]);
    }
    if init {
        command.arg("--init");
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the node example");
    let stdin = child.stdin.take().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    NodeProcess {
        id,
        child,
        stdin,
        lines,
        seen: Vec::new(),
    }
}

/// "term 1: node 2 leads; ..." → 2
fn leader_in(line: &str) -> Option<u64> {
    let rest = line.split_once(": node ")?.1;
    let (id, tail) = rest.split_once(' ')?;
    tail.starts_with("leads").then(|| id.parse().ok())?
}

/// What a node answered to `set`.
enum SetOutcome {
    /// "ok: color = blue (log index 4, was None)": the index, and the value it replaced.
    Ok { index: u64, was: String },
    /// "not the leader: node 2 (...) is; send writes there".
    Redirect(u64),
    /// "no leader right now; try again shortly".
    NoLeader,
    /// "write failed: ...": the write may or may not have been committed.
    Failed,
}

fn set_outcome(line: &str) -> Option<SetOutcome> {
    if let Some(rest) = line.strip_prefix("ok: color = blue (log index ") {
        let (index, was) = rest.split_once(", was ")?;
        Some(SetOutcome::Ok {
            index: index.parse().expect("a log index"),
            was: was.strip_suffix(')')?.to_string(),
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

#[test]
fn three_processes_replicate_a_write() {
    let ports = free_ports();
    let peers: Vec<String> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| format!("{}=127.0.0.1:{port}", i + 1))
        .collect();
    let mut nodes: Vec<NodeProcess> = (1..=3).map(|id| start(id, &peers, id == 1)).collect();

    let mut leader = nodes[0].wait_for("leader", leader_in);
    // Write on the leader; if leadership moved meanwhile, follow the node's redirect, until the
    // deadline.
    let deadline = Instant::now() + DEADLINE;
    let mut attempts = 0;
    let mut maybe_committed = false;
    let (index, was) = loop {
        assert!(
            Instant::now() < deadline,
            "`set color blue` not acknowledged within {DEADLINE:?} ({attempts} attempts)"
        );
        attempts += 1;
        let node = &mut nodes[leader as usize - 1];
        node.send("set color blue");
        match node.wait_for("answer to set", set_outcome) {
            SetOutcome::Ok { index, was } => break (index, was),
            SetOutcome::Redirect(other) => {
                assert!((1..=3).contains(&other), "redirected to node {other}");
                leader = other;
            }
            SetOutcome::NoLeader => std::thread::sleep(Duration::from_millis(100)),
            SetOutcome::Failed => {
                maybe_committed = true;
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    eprintln!(
        "set acknowledged by node {leader} at log index {index} (was {was}), attempt {attempts}"
    );
    // The key was never set before, unless an earlier attempt failed after its entry was
    // proposed (then it may have been committed, and this write replaced its value).
    if !maybe_committed {
        assert_eq!(was, "None", "the first write of color replaced a value");
    }
    // The write's entry follows the cluster's own: the initial membership (index 0) and the
    // blank entry each leader appends on taking office (index 1 for the first).
    assert!(
        index >= 2,
        "the write was acknowledged at log index {index}"
    );

    // Every node's state machine gets the write, and the node reports its log applied up to the
    // write's index (a follower may apply it a moment later, and a node's status may lag its
    // state machine by a moment too).
    for node in &mut nodes {
        let deadline = Instant::now() + DEADLINE;
        loop {
            node.send("get color");
            let value = node.wait_for("answer to get", |line| {
                if line == "color = blue" {
                    Some(true)
                } else if line == "color is not set" {
                    Some(false)
                } else {
                    None
                }
            });
            let applied = node.last_applied();
            if value && applied.is_some_and(|applied| applied >= index) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {} never applied the write at index {index} within {DEADLINE:?}: color \
                 {}, last applied {applied:?}",
                node.id,
                if value { "= blue" } else { "not set" },
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    for node in &mut nodes {
        node.send("quit");
    }
    let deadline = Instant::now() + DEADLINE;
    for node in &mut nodes {
        let status = node.wait_exit(deadline);
        assert!(status.success(), "node {} exited with {status}", node.id);
    }
}
