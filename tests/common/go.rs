//! The Go side of interop tests: `interop/hashicorp`, a program over the real hashicorp/raft
//! (Debian's golang-github-hashicorp-raft-dev, GOPATH mode), built once per test binary, and
//! run with a watchdog. Without Go or the package a test says why on stderr and skips
//! (`.ci/run` installs both).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{OnceLock, mpsc};
use std::time::Duration;

const GOPATH: &str = "/usr/share/gocode";
/// A whole exchange takes well under a second; this only stops a hung test.
const WATCHDOG: Duration = Duration::from_secs(120);

/// The interop program, built once per test binary (into a directory of its own, so test
/// binaries building it at once do not race); `None`, and why on stderr, without Go.
pub(crate) fn interop_binary() -> Option<&'static Path> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        if Command::new("go").arg("version").output().is_err() {
            return Err(
                "no `go` on PATH (apt-get install golang-go golang-github-hashicorp-raft-dev)"
                    .into(),
            );
        }
        let package = Path::new(GOPATH).join("src/github.com/hashicorp/raft");
        if !package.is_dir() {
            return Err(format!(
                "hashicorp/raft is not at {} (apt-get install golang-github-hashicorp-raft-dev)",
                package.display()
            ));
        }
        let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("hashicorp-interop-{}", env!("CARGO_CRATE_NAME")));
        let binary = out_dir.join("hashicorp-interop");
        let built = Command::new("go")
            .args(["build", "-o"])
            .arg(&binary)
            .arg("./interop/hashicorp")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("GO111MODULE", "off")
            .env("GOPATH", GOPATH)
            .env("GOFLAGS", "")
            .env("GOCACHE", out_dir.join("go-cache"))
            .output()
            .expect("run go build");
        // Go and the package are here: a failing build is a failure, not a skip.
        assert!(
            built.status.success(),
            "go build failed:\n{}",
            String::from_utf8_lossy(&built.stderr)
        );
        Ok(binary)
    });
    match built {
        Ok(binary) => Some(binary),
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            None
        }
    }
}

/// Run the interop program `go` with `args` to its end, killed if it outlives the watchdog.
pub(crate) fn run(go: &Path, args: &[&str]) -> Output {
    let child = Command::new(go)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the interop program");
    let (done, finished) = mpsc::channel::<()>();
    let pid = child.id();
    std::thread::spawn(move || {
        if finished.recv_timeout(WATCHDOG).is_err() {
            eprintln!("watchdog: killing the Go process {pid}");
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    });
    let output = child
        .wait_with_output()
        .expect("wait for the interop program");
    let _ = done.send(());
    output
}
