//! A Rust node joins a running Go cluster: three real hashicorp/raft nodes (Debian's v1.1.2,
//! `interop/hashicorp-cluster/`, built here with `go build` in GOPATH mode into `target/`) elect
//! a leader; this process binds a raftnet `NetTransport` in hashicorp's wire format
//! (`HashicorpCodecFactory`, `GoRaftVersion::V1_1`), the Go leader adds it with `AddNonvoter`
//! and applies commands, and the minimal follower below (hashicorp's follower rules for
//! AppendEntries, votes refused) stores and prints every log entry Go replicates to it: the
//! cluster's configuration, the leader's no-op, the configuration that adds this node, and the
//! commands. It exits 0 once it holds them all, 1 if they do not arrive within a minute, and
//! says why and exits 0 on a machine without Go or golang-github-hashicorp-raft-dev.
//!
//! Run with `cargo run --example go_interop`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use raftnet::message::{
    AppendEntriesRequest, AppendEntriesResponse, Log, LogType, Request, RequestVoteResponse,
    Response,
};
use raftnet::wire::hashicorp::{GoRaftVersion, HashicorpCodecFactory};
use raftnet::{Config, NetTransport, Transport};

#[path = "../interop/go_build.rs"]
mod go_build;
use go_build::{go_build_beside_exe, go_missing};

/// How many commands the Go leader applies after adding this node.
const COMMANDS: usize = 10;
/// Far beyond what the exchange takes (seconds, most of it the Go cluster's first election).
const TIMEOUT: Duration = Duration::from_secs(60);
/// This node's server id in the Go cluster's configuration.
const ID: &str = "rust1";

fn main() {
    // Errors end the demo here, after `run` has dropped (killed) the Go process.
    if let Err(error) = run() {
        eprintln!("go_interop: {error}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    if let Some(why) = go_missing() {
        println!("SKIPPED: {why}");
        return Ok(());
    }
    // Go and the package are here: a failing build is an error, not a skip.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let program = go_build_beside_exe(repo, "hashicorp-cluster")?;
    let mut go = GoCluster::start(&program)?;
    let leader = go.next_line()?;
    println!("go: {leader}");

    let config = Config::default().codec(Arc::new(HashicorpCodecFactory::new(GoRaftVersion::V1_1)));
    let node = NetTransport::bind("127.0.0.1:0", None, config)?;
    println!(
        "{ID} listens on {} in hashicorp's format",
        node.local_addr()
    );
    go.send(&format!("{ID} {}", node.local_addr()))?;

    let mut follower = Follower::default();
    let deadline = Instant::now() + TIMEOUT;
    let mut stdin_closed = false;
    let status = loop {
        while let Some(line) = go.try_line() {
            println!("go: {line}");
        }
        if !stdin_closed && follower.commands() == COMMANDS {
            println!(
                "{ID} holds all {COMMANDS} commands: log up to index {} in term {}",
                follower.log.len(),
                follower.term
            );
            // Closing its stdin ends the Go cluster; this node answers until it has.
            go.close_stdin();
            stdin_closed = true;
        }
        if let Some(status) = go.exited()? {
            break status;
        }
        let now = Instant::now();
        if now >= deadline {
            return Err(format!(
                "timed out: {} of {COMMANDS} commands arrived within {TIMEOUT:?} (Go's output above)",
                follower.commands()
            )
            .into());
        }
        // Wake now and then to look at the Go process.
        let wake = deadline.min(now + Duration::from_millis(100));
        let Some(rpc) = node.consumer().recv_deadline(wake)? else {
            continue;
        };
        let answer = match &rpc.request {
            Request::AppendEntries(append) => {
                Response::AppendEntries(follower.append_entries(append))
            }
            // A non-voter never votes; it only tells a candidate its term.
            Request::RequestVote(vote) => {
                follower.term = follower.term.max(vote.term);
                Response::RequestVote(RequestVoteResponse {
                    term: follower.term,
                    granted: false,
                    ..Default::default()
                })
            }
            other => {
                let kind = other.message_type();
                rpc.respond_err(format!("{kind:?} is not handled by this demo"));
                continue;
            }
        };
        rpc.respond_ok(answer);
    };
    while let Some(line) = go.try_line() {
        println!("go: {line}");
    }
    if !status.success() || !stdin_closed {
        return Err(
            format!("the Go cluster exited with {status} before {ID} had every command").into(),
        );
    }
    Ok(())
}

/// What a hashicorp follower keeps: its term and its log (index `i` at `log[i - 1]`).
#[derive(Default)]
struct Follower {
    term: u64,
    log: Vec<Log>,
}

impl Follower {
    /// hashicorp/raft's `appendEntries` (raft.go) for a follower: refuse a stale term; refuse,
    /// with its last index so the leader backs up, entries whose predecessor it does not hold
    /// (or holds from another term); drop its entries from the first conflicting one; append
    /// the rest. Prints each entry it stores.
    fn append_entries(&mut self, append: &AppendEntriesRequest) -> AppendEntriesResponse {
        let mut answer = AppendEntriesResponse {
            term: self.term,
            last_log: self.log.len() as u64,
            success: false,
            ..Default::default()
        };
        if append.term < self.term {
            return answer;
        }
        self.term = append.term;
        answer.term = append.term;
        if append.prev_log_entry > 0 {
            let held = self.entry(append.prev_log_entry).map(|e| e.term);
            if held != Some(append.prev_log_term) {
                answer.no_retry_backoff = true;
                return answer;
            }
        }
        for entry in &append.entries {
            match self.entry(entry.index) {
                Some(held) if held.term == entry.term => continue,
                Some(_) => self.log.truncate(entry.index as usize - 1),
                None => {}
            }
            if entry.index != self.log.len() as u64 + 1 {
                // Not the next index: a leader never sends that after a matching prev entry.
                answer.last_log = self.log.len() as u64;
                return answer;
            }
            print_entry(entry);
            self.log.push(entry.clone());
        }
        answer.last_log = self.log.len() as u64;
        answer.success = true;
        answer
    }

    fn entry(&self, index: u64) -> Option<&Log> {
        let position = usize::try_from(index).ok()?.checked_sub(1)?;
        self.log.get(position)
    }

    /// How many of "command 1" .. "command COMMANDS" it holds.
    fn commands(&self) -> usize {
        (1..=COMMANDS)
            .filter(|i| {
                let text = format!("command {i}");
                self.log.iter().any(|e| {
                    e.kind == LogType::COMMAND && e.data.as_deref() == Some(text.as_bytes())
                })
            })
            .count()
    }
}

/// One line per entry: index, term, type, and the data as text (or its size, if it is binary,
/// as the msgpack of a configuration is).
fn print_entry(entry: &Log) {
    let data = match entry.data.as_deref().map(std::str::from_utf8) {
        None => "no data".to_string(),
        Some(Ok(text)) if !text.chars().any(char::is_control) => format!("{text:?}"),
        Some(_) => format!("{} bytes", entry.data.as_ref().map_or(0, |d| d.len())),
    };
    println!(
        "entry index={} term={} type={:?} data={data}",
        entry.index, entry.term, entry.kind
    );
}

/// The Go cluster's process: its stdin, its stdout as lines (read on a thread of their own),
/// its stderr (raft's warnings) passed through. Killed if dropped before [`GoCluster::finish`].
struct GoCluster {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl GoCluster {
    fn start(program: &Path) -> std::io::Result<GoCluster> {
        let mut child = Command::new(program)
            .arg(COMMANDS.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(GoCluster { child, lines })
    }

    /// The next line it prints; an error if it ends or says nothing within [`TIMEOUT`].
    fn next_line(&mut self) -> std::io::Result<String> {
        self.lines.recv_timeout(TIMEOUT).map_err(|_| {
            std::io::Error::other("the Go cluster ended or printed nothing (its stderr above)")
        })
    }

    /// A line it has printed, if there is one.
    fn try_line(&self) -> Option<String> {
        self.lines.try_recv().ok()
    }

    fn send(&mut self, line: &str) -> std::io::Result<()> {
        let stdin = self.child.stdin.as_mut().expect("piped");
        writeln!(stdin, "{line}")?;
        stdin.flush()
    }

    /// Close its stdin, which ends it.
    fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    /// How it exited, once it has.
    fn exited(&mut self) -> std::io::Result<Option<std::process::ExitStatus>> {
        self.child.try_wait()
    }
}

impl Drop for GoCluster {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
