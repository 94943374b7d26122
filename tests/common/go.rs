//! The Go interop program (`interop/hashicorp`, over Debian's hashicorp/raft v1.1.2), built
//! once per test binary with `go build` in GOPATH mode and run in one of its modes
//! ([`GoProcess`], [`run_go`]): its stdout read line by line, its stderr kept for failure
//! messages, killed by a watchdog if a test hangs. Without Go or the package, [`GoProcess::start`]
//! says why on stderr (a skip that shows in a passing run's output) and returns `None`.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, ExitStatus, Stdio};
use std::sync::{OnceLock, mpsc};
use std::thread::JoinHandle;
use std::time::Duration;

use raftnet::ServerAddress;

#[path = "../../interop/go_build.rs"]
mod go_build;
use go_build::{go_build, go_missing};

/// A whole exchange takes seconds at most; this only stops a hung test.
const WATCHDOG: Duration = Duration::from_secs(120);

/// The interop program, built once per test binary; `None` (and why, on stderr, for each test
/// that asks) without Go.
pub(crate) fn interop_binary() -> Option<&'static Path> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        if let Some(why) = go_missing() {
            return Err(why);
        }
        // A directory per test binary: binaries building it at once do not race.
        let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("hashicorp-interop-{}", env!("CARGO_CRATE_NAME")));
        let binary = out_dir.join("hashicorp-interop");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("interop/hashicorp");
        // Go and the package are here: a failing build is a failure, not a skip.
        if let Err(failed) = go_build(&source, &binary, &out_dir.join("go-cache")) {
            panic!("{failed}");
        }
        Ok(binary)
    });
    match built {
        Ok(binary) => Some(binary),
        Err(why) => {
            // Straight to the stderr handle, which libtest does not capture: the skip shows in
            // the output of a passing run (CI's log).
            let _ = writeln!(std::io::stderr(), "SKIPPED: {why}");
            None
        }
    }
}

/// The interop program running in one mode: its stdout read line by line, its stderr kept
/// for failure messages, killed if the test has not finished with it within [`WATCHDOG`] (or
/// when the test drops it early, failing).
pub(crate) struct GoProcess {
    child: Child,
    stdout: std::io::Lines<BufReader<ChildStdout>>,
    stderr: Option<JoinHandle<String>>,
    finished: mpsc::Sender<()>,
}

/// How a [`GoProcess`] ended and the lines it printed.
pub(crate) struct GoOutput {
    pub status: ExitStatus,
    pub lines: Vec<String>,
    pub stderr: String,
}

impl GoProcess {
    /// Start the interop program with `args` (a mode and its arguments); `None` without Go.
    pub(crate) fn start(args: &[&str]) -> Option<GoProcess> {
        let mut child = Command::new(interop_binary()?)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the interop program");
        let (finished, done) = mpsc::channel::<()>();
        let pid = child.id();
        std::thread::spawn(move || {
            if done.recv_timeout(WATCHDOG) == Err(mpsc::RecvTimeoutError::Timeout) {
                let _ = writeln!(std::io::stderr(), "watchdog: killing the Go process {pid}");
                let _ = Command::new("kill").arg(pid.to_string()).status();
            }
        });
        let stdout = BufReader::new(child.stdout.take().expect("piped")).lines();
        let mut stderr = child.stderr.take().expect("piped");
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        Some(GoProcess {
            child,
            stdout,
            stderr: Some(stderr),
            finished,
        })
    }

    /// Start `serve` with `args` after it; the process and the address it listens on.
    pub(crate) fn serve(args: &[&str]) -> Option<(GoProcess, ServerAddress)> {
        let mut go = GoProcess::start(&[&["serve"], args].concat())?;
        let listen = go.next_line();
        let addr = listen
            .strip_prefix("LISTEN ")
            .unwrap_or_else(|| panic!("not a LISTEN line: {listen:?}"));
        let addr = ServerAddress::from(addr);
        Some((go, addr))
    }

    /// The next line it prints (the test fails if it ends first).
    pub(crate) fn next_line(&mut self) -> String {
        match self.stdout.next() {
            Some(Ok(line)) => line,
            other => {
                let output = self.finish();
                panic!(
                    "the Go program ended ({other:?}); stderr:\n{}",
                    output.stderr
                )
            }
        }
    }

    /// Close its stdin (which ends `serve`), read the lines it prints until it exits.
    pub(crate) fn finish(&mut self) -> GoOutput {
        drop(self.child.stdin.take());
        let lines = self.stdout.by_ref().map(Result::unwrap).collect();
        let status = self.child.wait().expect("wait for the Go process");
        let _ = self.finished.send(());
        let stderr = self.stderr.take().map(|t| t.join().unwrap_or_default());
        GoOutput {
            status,
            lines,
            stderr: stderr.unwrap_or_default(),
        }
    }
}

impl Drop for GoProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = self.finished.send(());
    }
}

impl GoOutput {
    /// The lines, after checking that the process exited with success.
    pub(crate) fn succeeded(self, what: &str) -> Vec<String> {
        assert!(
            self.status.success(),
            "{what} failed ({}):\n{}\n{}",
            self.status,
            self.lines.join("\n"),
            self.stderr
        );
        self.lines
    }
}

/// Run the interop program with `args` to its end; the lines it printed (`None` without Go).
pub(crate) fn run_go(args: &[&str]) -> Option<Vec<String>> {
    let mut go = GoProcess::start(args)?;
    Some(
        go.finish()
            .succeeded(&format!("the Go program ({})", args.join(" "))),
    )
}
