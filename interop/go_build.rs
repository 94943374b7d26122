//! How Rust code builds the Go programs under `interop/`: `go build` in GOPATH mode against
//! Debian's hashicorp/raft (golang-github-hashicorp-raft-dev, v1.1.2). One file, included with
//! `#[path]` by each user (`tests/common/go.rs`, `bench/src/go_impl.rs`,
//! `examples/go_interop.rs`), which lie in different packages and targets.
//!
//! With [`LATEST_GOPATH_VAR`] set to a GOPATH holding the newest hashicorp/raft and the
//! dependencies Debian lacks (assembled from sources: `interop/hashicorp/gopath-latest.sh`),
//! the programs are built against it instead, with the build tag `raftlatest` (Debian's
//! GOPATH still after it for the rest). Only a developer sets it: Debian ships only v1.1.2.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Where Debian's golang-github-hashicorp-raft-dev puts hashicorp/raft (GOPATH mode).
const GOPATH: &str = "/usr/share/gocode";

/// The environment variable naming a GOPATH with the newest hashicorp/raft to build against
/// instead of Debian's v1.1.2 (see the module doc).
pub(super) const LATEST_GOPATH_VAR: &str = "RAFTNET_GO_RAFT_LATEST_GOPATH";

/// The GOPATH with the newest hashicorp/raft, if [`LATEST_GOPATH_VAR`] names one.
fn latest_gopath() -> Option<PathBuf> {
    std::env::var_os(LATEST_GOPATH_VAR)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// Why the Go programs cannot be built here (no Go, or no hashicorp/raft package), if they
/// cannot.
pub(super) fn go_missing() -> Option<String> {
    if Command::new("go").arg("version").output().is_err() {
        return Some(
            "no `go` on PATH (apt-get install golang-go golang-github-hashicorp-raft-dev)".into(),
        );
    }
    if let Some(latest) = latest_gopath() {
        let package = latest.join("src/github.com/hashicorp/raft");
        return (!package.is_dir()).then(|| {
            format!(
                "{LATEST_GOPATH_VAR} is set but hashicorp/raft is not at {} \
                 (interop/hashicorp/gopath-latest.sh assembles it)",
                package.display()
            )
        });
    }
    let package = Path::new(GOPATH).join("src/github.com/hashicorp/raft");
    (!package.is_dir()).then(|| {
        format!(
            "hashicorp/raft is not at {} (apt-get install golang-github-hashicorp-raft-dev)",
            package.display()
        )
    })
}

/// Build the Go package in directory `source` into the executable `program`, with Go's build
/// cache in `cache` (a directory per user, so builds running at once do not race); `Err` has
/// the build's own error.
pub(super) fn go_build(source: &Path, program: &Path, cache: &Path) -> Result<(), String> {
    let mut command = Command::new("go");
    command.arg("build");
    let mut gopath = std::ffi::OsString::new();
    if let Some(latest) = latest_gopath() {
        command.args(["-tags", "raftlatest"]);
        gopath.push(latest);
        gopath.push(":");
    }
    gopath.push(GOPATH);
    let built = command
        .arg("-o")
        .arg(program)
        .arg(".")
        .current_dir(source)
        .env("GO111MODULE", "off")
        .env("GOPATH", gopath)
        .env("GOFLAGS", "")
        .env("GOCACHE", cache)
        .output()
        .map_err(|e| format!("go build: {e}"))?;
    if !built.status.success() {
        return Err(format!(
            "go build of {} failed:\n{}",
            source.display(),
            String::from_utf8_lossy(&built.stderr)
        ));
    }
    Ok(())
}

/// Build the program `interop/NAME` of the repository at `repo` into `NAME/NAME` beside the
/// running executable (in `target/`), its build cache beside it; the program's path, or why it
/// cannot be built ([`go_missing`], or the build's own error).
pub(super) fn go_build_beside_exe(repo: &Path, name: &str) -> Result<PathBuf, String> {
    if let Some(why) = go_missing() {
        return Err(why);
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let out_dir = exe
        .parent()
        .ok_or("the executable has no directory")?
        .join(name);
    let program = out_dir.join(name);
    let source = repo.join("interop").join(name);
    go_build(&source, &program, &out_dir.join("go-cache"))?;
    Ok(program)
}
