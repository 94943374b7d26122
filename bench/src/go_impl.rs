//! The Go column: hashicorp/raft's own `NetworkTransport` (Go, v1.1.2 from Debian's
//! golang-github-hashicorp-raft-dev) on the RPC scenarios, and raftnet speaking hashicorp's
//! format to it, in the same run as the other implementations.
//!
//! The Go side is `interop/hashicorp-bench` (its doc has the modes and the line protocol),
//! built with `go build` in GOPATH mode on first use ([`build`]) next to this executable. Its
//! process is started per run and told, on stdin, when the harness opens and closes the
//! measured window (this module polls [`Control`] every `POLL` (2 ms), so the window's edges reach
//! it within that); it reports its operations, payload bytes and latencies when it drives the
//! load, and its own getrusage CPU time and context switches over the window always, which the
//! run adds to the harness's reading of this process ([`Sample::other_processes`]): CPU per op
//! covers both ends, as in every other row.
//!
//! Four pairings ([`GoPair`]): Go client to Go server in one Go process (`go`), and in two
//! (`go-2proc`: each end a process of its own, as two nodes are, and as the two pairings with
//! raftnet below are, so a round trip pays for waking another process); raftnet's client with
//! the hashicorp codec calling a Go server (`raftnet-to-go`); a Go client calling raftnet's
//! server with the hashicorp codec (`go-to-raftnet`). With `--pin`, the Go process
//! is started from a thread placed as a server (the Go server) or a client (the processes that
//! drive load), and inherits that placement; the `go` pairing has both ends in the client's.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::time::Duration;

use raftnet::ServerAddress;

#[path = "../../interop/go_build.rs"]
mod go_build;
use go_build::go_build_beside_exe;

use crate::measure::{CpuTime, Switches, Usage};
use crate::pin;
use crate::raftnet_impl::{self, Serve, Server, Wire};
use crate::scenario::{Control, Implementation, NOT_APPLICABLE, Sample, Scenario};

/// How often the window's edges are looked for: short against a window of seconds, long
/// enough that the polling thread adds few wake-ups (500 per second).
const POLL: Duration = Duration::from_millis(2);
/// How long the Go process may take to set up, or to report after stop (a snapshot transfer in
/// flight finishes first): far beyond either, short of hanging a run for good.
const REPLY_TIMEOUT: Duration = Duration::from_secs(60);

/// Who calls whom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GoPair {
    /// Go's client calls Go's server (one Go process): hashicorp/raft as Go users run it.
    GoToGo,
    /// Go's client calls Go's server in another Go process: two nodes, as the pairings with
    /// raftnet have them.
    GoToGoProcess,
    /// raftnet's client with the hashicorp codec calls a Go server.
    RaftnetToGo,
    /// A Go client calls raftnet's server with the hashicorp codec.
    GoToRaftnet,
}

/// The Go column's implementation of the scenarios (see the module documentation).
#[derive(Debug, Clone)]
pub struct GoImpl {
    /// Who calls whom.
    pub pair: GoPair,
    /// The built `hashicorp-bench` program ([`build`]).
    pub program: PathBuf,
}

/// The scenarios the Go program runs (the others are not a transport's: openraft clusters,
/// or raftnet-bench's own load shapes).
fn applies(scenario: Scenario) -> bool {
    matches!(
        scenario,
        Scenario::HeartbeatSeq
            | Scenario::HeartbeatPipelined
            | Scenario::Append100bSeq
            | Scenario::Append64x1kPipelined
            | Scenario::Append1mPipelined
            | Scenario::VoteSeq
            | Scenario::Snapshot64m
    )
}

/// Why the Go column cannot run here (no Go, or no hashicorp/raft package), if it cannot.
pub fn go_missing() -> Option<String> {
    go_build::go_missing()
}

/// Build `interop/hashicorp-bench` once per process, next to this executable; `Err` says why
/// not ([`go_missing`], or the build's own error), for the caller to print and skip the Go
/// column.
pub fn build() -> Result<PathBuf, String> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
            go_build_beside_exe(&repo, "hashicorp-bench")
        })
        .clone()
}

/// A running `hashicorp-bench` process: its stdin for the commands, its stdout as lines.
struct GoProcess {
    child: Child,
    stdin: ChildStdin,
    lines: Receiver<String>,
}

impl GoProcess {
    /// Start `program args`, from a thread placed as a server or a client.
    fn start(program: &Path, args: &[&str], as_server: bool) -> Result<GoProcess, String> {
        let spawn = || {
            Command::new(program)
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
        };
        let spawned = if as_server {
            pin::as_server(spawn)
        } else {
            pin::as_client(spawn)
        };
        let mut child = spawned.map_err(|e| format!("start {}: {e}", program.display()))?;
        let stdin = child.stdin.take().expect("piped");
        let stdout = BufReader::new(child.stdout.take().expect("piped"));
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in stdout.lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(GoProcess {
            child,
            stdin,
            lines,
        })
    }

    /// The next line, which must start with `word`; what follows it.
    fn expect(&self, word: &str) -> Result<String, String> {
        let line = match self.lines.recv_timeout(REPLY_TIMEOUT) {
            Ok(line) => line,
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!(
                    "the Go process said nothing for {} s (waiting for {word})",
                    REPLY_TIMEOUT.as_secs()
                ));
            }
            Err(RecvTimeoutError::Disconnected) => {
                return Err(format!("the Go process ended (waiting for {word})"));
            }
        };
        match line.split_once(' ').unwrap_or((&line, "")) {
            (w, rest) if w == word => Ok(rest.to_string()),
            ("ERROR", what) => Err(format!("Go: {what}")),
            _ => Err(format!("the Go process said {line:?}, expected {word}")),
        }
    }

    fn send(&mut self, command: &str) -> Result<(), String> {
        writeln!(self.stdin, "{command}")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| format!("telling the Go process {command}: {e}"))
    }

    /// Tell the process when the window opens and closes (polling `control`), then read its
    /// report: `RESULT ops bytes user_us sys_us voluntary involuntary`, and `LAT ns…` if
    /// `latencies`.
    fn relay_window(&mut self, control: &Control, latencies: bool) -> Result<Sample, String> {
        while !control.measuring() && !control.stopped() {
            std::thread::sleep(POLL);
        }
        if control.measuring() {
            self.send("start")?;
            while !control.stopped() {
                std::thread::sleep(POLL);
            }
        }
        self.send("stop")?;
        let mut sample = parse_result(&self.expect("RESULT")?)?;
        if latencies {
            sample.latencies_ns = parse_numbers(&self.expect("LAT")?)?;
        }
        Ok(sample)
    }
}

impl Drop for GoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_numbers(text: &str) -> Result<Vec<u64>, String> {
    text.split_whitespace()
        .map(|n| {
            n.parse()
                .map_err(|_| format!("the Go process reported {n:?}, not a number"))
        })
        .collect()
}

/// `ops bytes user_us sys_us voluntary involuntary` as a sample with the Go process's usage.
fn parse_result(text: &str) -> Result<Sample, String> {
    let n = parse_numbers(text)?;
    let [ops, payload_bytes, user, sys, voluntary, involuntary] = n[..] else {
        return Err(format!(
            "the Go process reported {text:?}: six numbers expected"
        ));
    };
    Ok(Sample {
        ops,
        payload_bytes,
        latencies_ns: Vec::new(),
        other_processes: Some(Usage {
            cpu: CpuTime {
                user: Duration::from_micros(user),
                sys: Duration::from_micros(sys),
            },
            switches: Switches {
                voluntary,
                involuntary,
            },
        }),
    })
}

impl GoImpl {
    /// Go's client calls Go's server, or raftnet's (`to`): the Go process counts the ops.
    fn go_client(
        &self,
        scenario: Scenario,
        to: Option<&ServerAddress>,
        control: &Control,
    ) -> Result<Sample, String> {
        let mut go = match to {
            None => GoProcess::start(&self.program, &["pair", scenario.name()], false)?,
            Some(to) => {
                GoProcess::start(&self.program, &["client", scenario.name(), &to.0], false)?
            }
        };
        go.expect("READY")?;
        go.relay_window(control, true)
    }

    /// A client calls a Go server (in a process of its own): the client counts the ops, the
    /// Go server reports its usage. The client is raftnet's (hashicorp codec) or, with
    /// `go_client`, the Go program's.
    fn to_go_server(
        &self,
        scenario: Scenario,
        control: &Control,
        go_client: bool,
    ) -> Result<Sample, String> {
        let mut go = GoProcess::start(&self.program, &["serve"], true)?;
        let to = ServerAddress::from(go.expect("LISTEN")?.as_str());
        let client = if go_client {
            None
        } else {
            let depth = raftnet_impl::pipeline_depth(scenario);
            Some(raftnet_impl::client(depth, Wire::Hashicorp)?)
        };
        let (driven, server) = std::thread::scope(|s| {
            let server = s.spawn(|| go.relay_window(control, false));
            let driven = match &client {
                Some(client) => raftnet_impl::drive(client, &to, scenario, control),
                None => self.go_client(scenario, Some(&to), control),
            };
            if driven.is_err() {
                // Let the relay see the end of the run.
                control.stop();
            }
            (driven, server.join())
        });
        let mut sample = driven?;
        let server = server.map_err(|_| "the Go relay panicked".to_string())??;
        if let Some(usage) = server.other_processes {
            sample.add_other_process(usage);
        }
        Ok(sample)
    }
}

impl Implementation for GoImpl {
    fn name(&self) -> &'static str {
        match self.pair {
            GoPair::GoToGo => "go",
            GoPair::GoToGoProcess => "go-2proc",
            GoPair::RaftnetToGo => "raftnet-to-go",
            GoPair::GoToRaftnet => "go-to-raftnet",
        }
    }

    fn run(&self, scenario: Scenario, control: &Control) -> Result<Sample, String> {
        if !applies(scenario) {
            return Err(format!(
                "{NOT_APPLICABLE}: hashicorp-bench runs the RPC scenarios a transport has (not this one)"
            ));
        }
        match self.pair {
            GoPair::GoToGo => self.go_client(scenario, None, control),
            GoPair::GoToGoProcess => self.to_go_server(scenario, control, true),
            GoPair::RaftnetToGo => self.to_go_server(scenario, control, false),
            GoPair::GoToRaftnet => {
                // raftnet's server as in its own rows: the heartbeat fast path, a service.
                let server = Server::start(
                    raftnet_impl::pipeline_depth(scenario),
                    1,
                    true,
                    Serve::Service,
                    Wire::Hashicorp,
                )?;
                let result = self.go_client(scenario, Some(&server.addr()), control);
                let findings = server.findings.clone();
                server.stop();
                findings.explain(result)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_go_programs_report() {
        let sample = parse_result("12 3400 1500 250 7 9").unwrap();
        assert_eq!((sample.ops, sample.payload_bytes), (12, 3400));
        let usage = sample.other_processes.unwrap();
        assert_eq!(usage.cpu.user, Duration::from_micros(1500));
        assert_eq!(usage.cpu.sys, Duration::from_micros(250));
        assert_eq!(
            (usage.switches.voluntary, usage.switches.involuntary),
            (7, 9)
        );
        assert_eq!(parse_numbers(" 5 6  7").unwrap(), [5, 6, 7]);
        assert!(parse_result("12 3400 1500 250 7").is_err());
        assert!(parse_numbers("5 x").unwrap_err().contains("\"x\""));
    }

    #[test]
    fn other_processes_usage_adds_up() {
        let mut sample = parse_result("1 0 10 20 3 4").unwrap();
        sample.merge(parse_result("2 0 1 2 5 6").unwrap());
        let usage = sample.other_processes.unwrap();
        assert_eq!(sample.ops, 3);
        assert_eq!(usage.cpu.total(), Duration::from_micros(33));
        assert_eq!(usage.switches.total(), 18);
    }
}
