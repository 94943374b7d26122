//! `examples/node.rs` as a user runs it: three processes on loopback, one started with `--init`;
//! a `set` typed at the leader is readable with `get` on every node, and `quit` ends each
//! process cleanly. (Cargo builds examples before it runs integration tests.)

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
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
    // Write on the leader; if leadership moved meanwhile, follow the node's redirect.
    let index = loop {
        let node = &mut nodes[leader as usize - 1];
        node.send("set color blue");
        let outcome = node.wait_for("answer to set", |line| {
            if line.starts_with("ok: color = blue") {
                Some(Ok(()))
            } else if let Some(rest) = line.strip_prefix("not the leader: node ") {
                Some(Err(rest.split(' ').next().and_then(|id| id.parse().ok())))
            } else if line.starts_with("no leader") || line.starts_with("write failed") {
                Some(Err(None))
            } else {
                None
            }
        });
        match outcome {
            Ok(()) => break leader,
            Err(Some(other)) => leader = other,
            Err(None) => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    assert!((1..=3).contains(&index));

    // Every node's state machine gets the write (a follower may apply it a moment later).
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
            if value {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "node {} never applied the write",
                node.id
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    for node in &mut nodes {
        node.send("quit");
    }
    for mut node in nodes {
        let status = node.child.wait().expect("the node exits");
        assert!(status.success(), "node {} exited with {status}", node.id);
    }
}
