//! The programs the docs tell a user to paste, built the way that user builds them: in a crate
//! of their own, with only the dependencies the same page lists.
//!
//! A document (README.md, and `src/openraft.rs`'s module docs) marks a whole program with the
//! code block info string `rust main.rs`, and the dependencies a user adds with `toml
//! Cargo.toml` (one such block per document, a `[dependencies]` table). For each document this
//! test writes a scratch crate under `target/tmp/readme-scratch/`: its `Cargo.toml` holds exactly
//! those dependencies (raftnet's own entry pointed at this checkout, its other keys such as
//! `features` kept), each `main.rs` block becomes a binary, and the workspace's `Cargo.lock` is
//! copied in so every version is the one the rest of the tests use. Then `cargo build --offline`
//! and every binary runs (they talk over loopback only). The doctests (`ReadmeDoctests` in
//! lib.rs, the module's own doctest) compile the same code against raftnet's dev-dependencies,
//! which hide a missing dependency or a program that only compiles inside rustdoc's wrapper;
//! this test is what catches those.
//!
//! The scratch crates share one target directory of their own, so this nested cargo never waits
//! on the lock of the `cargo test` that runs it, and a rerun rebuilds only what changed.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Bounds each program's run; the README's take milliseconds, the openraft example's two-node
/// cluster a second or two.
const RUN_DEADLINE: Duration = Duration::from_secs(120);

/// Info-string word marking a code block as a whole `src/main.rs`.
const MAIN_MARKER: &str = "main.rs";
/// Info-string word marking the `toml` block that lists a document's dependencies.
const MANIFEST_MARKER: &str = "Cargo.toml";

#[test]
fn readme_programs_build_standalone_and_run() {
    let readme = read(&checkout().join("README.md"));
    let outputs = build_and_run("readme", &readme);
    assert_eq!(
        outputs.len(),
        3,
        "README.md has the Quick start's three programs"
    );
    assert!(
        outputs[0].contains("b granted the vote: true"),
        "the Quick start's first program prints the vote it got; it printed {:?}",
        outputs[0]
    );
    assert!(
        outputs[1].contains("b granted the vote for term 7 without a Raft thread"),
        "the service program prints the vote its service gave; it printed {:?}",
        outputs[1]
    );
    assert!(
        outputs[2].contains("decoded frame 1 "),
        "the wire program prints the frame it decoded; it printed {:?}",
        outputs[2]
    );
}

#[test]
fn openraft_module_example_builds_standalone_and_runs() {
    let module_docs = inner_doc_comment(&read(&checkout().join("src/openraft.rs")));
    let outputs = build_and_run("openraft-doc", &module_docs);
    assert_eq!(outputs.len(), 1, "src/openraft.rs's docs have one program");
    assert!(
        outputs[0].contains("node 2 applied"),
        "the openraft example prints the write the follower applied; it printed {:?}",
        outputs[0]
    );
}

#[test]
fn parses_blocks_and_dependencies() {
    let doc = "text\n\n```toml Cargo.toml\n[dependencies]\nraftnet = { path = \"../raftnet\", features = [\"a\", \"b\"] }   # why\nbytes = \"1\"\n```\n\n```sh\nls\n```\n\n```rust main.rs\nfn main() {}\n```\n";
    let blocks = code_blocks(doc);
    assert_eq!(blocks.len(), 3);
    assert_eq!(blocks[0].info, ["toml", "Cargo.toml"]);
    assert_eq!(blocks[0].line, 3);
    assert!(!blocks[1].is_rust());
    assert!(blocks[2].is_rust() && blocks[2].is_main());
    assert_eq!(blocks[2].code, "fn main() {}\n");
    let deps = dependencies(&blocks[0]);
    assert_eq!(
        deps,
        [
            (
                "raftnet".to_string(),
                "{ path = \"../raftnet\", features = [\"a\", \"b\"] }".to_string()
            ),
            ("bytes".to_string(), "\"1\"".to_string()),
        ]
    );
    assert_eq!(
        local_raftnet(&deps[0].1, Path::new("/x")),
        "{ path = \"/x\", features = [\"a\", \"b\"] }"
    );
    assert_eq!(
        local_raftnet("\"0.1\"", Path::new("/x")),
        "{ path = \"/x\" }"
    );
    // rustdoc treats a bare fence as Rust.
    assert!(code_blocks("```\nlet x = 1;\n```\n")[0].is_rust());
}

/// Build `document`'s programs as a crate named `name` and run each; their outputs, in order.
fn build_and_run(name: &str, document: &str) -> Vec<String> {
    let blocks = code_blocks(document);
    let manifests: Vec<&Block> = blocks.iter().filter(|b| b.is_manifest()).collect();
    assert_eq!(
        manifests.len(),
        1,
        "{name}: exactly one ```toml {MANIFEST_MARKER} block lists the dependencies a user adds"
    );
    let programs: Vec<&Block> = blocks.iter().filter(|b| b.is_rust()).collect();
    assert!(!programs.is_empty(), "{name}: no Rust block to build");
    for program in &programs {
        assert!(
            program.is_main(),
            "{name}, line {}: every Rust block is a whole program a user pastes; mark it \
             ```rust {MAIN_MARKER} and give it a `fn main`",
            program.line
        );
        if let Some(hidden) = program
            .code
            .lines()
            .find(|l| l.trim() == "#" || l.trim_start().starts_with("# "))
        {
            panic!(
                "{name}, line {}: rustdoc hides the line {hidden:?}, so a user pasting the \
                 block would not get it",
                program.line
            );
        }
    }

    let deps = dependencies(manifests[0]);
    assert!(
        deps.iter().any(|(dep, _)| dep == "raftnet"),
        "{name}: the listed dependencies do not include raftnet"
    );
    let checkout = checkout();
    let manifest_deps: String = deps
        .iter()
        .map(|(dep, spec)| match dep.as_str() {
            "raftnet" => format!("raftnet = {}\n", local_raftnet(spec, &checkout)),
            _ => format!("{dep} = {spec}\n"),
        })
        .collect();

    // A crate of its own (its own workspace root, so cargo never takes it for a member of this
    // one), edition 2024 as `cargo new` makes it, warnings denied: a pasted program that warns
    // is a surprise too.
    let scratch = scratch_root();
    let crate_dir = scratch.join(name);
    let bin_dir = crate_dir.join("src/bin");
    let _ = fs::remove_dir_all(crate_dir.join("src"));
    fs::create_dir_all(&bin_dir).unwrap();
    let binaries: Vec<String> = programs
        .iter()
        .map(|p| format!("line_{}", p.line))
        .collect();
    for (program, binary) in programs.iter().zip(&binaries) {
        fs::write(bin_dir.join(format!("{binary}.rs")), &program.code).unwrap();
    }
    fs::write(
        crate_dir.join("Cargo.toml"),
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
             [dependencies]\n{manifest_deps}\n[lints.rust]\nwarnings = \"deny\"\n\n[workspace]\n"
        ),
    )
    .unwrap();
    fs::copy(checkout.join("Cargo.lock"), crate_dir.join("Cargo.lock")).unwrap();

    let target_dir = scratch.join("target");
    let started = Instant::now();
    let build = Command::new(cargo())
        .current_dir(&crate_dir)
        .args(["build", "--offline", "--bins", "--target-dir"])
        .arg(&target_dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        // No debug info: whether the programs compile does not depend on it, and it costs a
        // quarter of the openraft example's build (measured: 90 CPU-s with it, 69 without).
        .env("CARGO_PROFILE_DEV_DEBUG", "0")
        .stdin(Stdio::null())
        .output()
        .expect("run cargo");
    let stderr = String::from_utf8_lossy(&build.stderr);
    if !build.status.success() {
        let offline = [
            "offline",
            "failed to download",
            "no matching package",
            "failed to select a version",
        ];
        let hint = if offline.iter().any(|s| stderr.contains(s)) {
            "\nThe build runs offline: every dependency the document lists must be one this \
             workspace already locks and has downloaded (`cargo fetch` in the workspace), in a \
             version Cargo.lock allows."
        } else {
            ""
        };
        panic!(
            "{name}: the documented programs do not build as a crate of their own with the \
             documented dependencies (scratch crate: {}; src/bin/line_N.rs is the block that \
             opens at line N of the document).{hint}\n{stderr}",
            crate_dir.display()
        );
    }
    eprintln!("{name}: scratch build took {:.1?}", started.elapsed());

    binaries
        .iter()
        .map(|binary| run(&target_dir.join("debug").join(binary), name))
        .collect()
}

/// Run a built program to completion within [`RUN_DEADLINE`]; its stdout.
fn run(path: &Path, name: &str) -> String {
    let mut child = Command::new(path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{name}: start {}: {e}", path.display()));
    let deadline = Instant::now() + RUN_DEADLINE;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name}: {} ran past {RUN_DEADLINE:?}", path.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{name}: {} failed ({}):\n{stdout}\n{}",
        path.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// One fenced code block of a markdown text.
#[derive(Debug)]
struct Block {
    /// The info string's words (split as rustdoc splits them: on commas and whitespace).
    info: Vec<String>,
    code: String,
    /// The line of the opening fence, 1-based.
    line: usize,
}

impl Block {
    /// Whether rustdoc takes the block for Rust: no info string, or `rust` or one of rustdoc's
    /// own words first.
    fn is_rust(&self) -> bool {
        match self.info.first().map(String::as_str) {
            None => true,
            Some(word) => {
                [
                    "rust",
                    "no_run",
                    "ignore",
                    "should_panic",
                    "compile_fail",
                    "test_harness",
                    "standalone_crate",
                ]
                .contains(&word)
                    || word.starts_with("edition")
            }
        }
    }

    fn is_main(&self) -> bool {
        self.info.iter().any(|w| w == MAIN_MARKER)
    }

    fn is_manifest(&self) -> bool {
        self.info.first().is_some_and(|w| w == "toml")
            && self.info.iter().any(|w| w == MANIFEST_MARKER)
    }
}

/// The fenced (```) code blocks of `markdown`, in order.
fn code_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (index, line) in markdown.lines().enumerate() {
        let trimmed = line.trim();
        match open.as_mut() {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    open = Some(Block {
                        info: info
                            .split(|c: char| c == ',' || c.is_whitespace())
                            .filter(|w| !w.is_empty())
                            .map(str::to_string)
                            .collect(),
                        code: String::new(),
                        line: index + 1,
                    });
                }
            }
            Some(block) => {
                if trimmed == "```" {
                    blocks.push(open.take().unwrap());
                } else {
                    block.code.push_str(line);
                    block.code.push('\n');
                }
            }
        }
    }
    assert!(open.is_none(), "a code block is never closed");
    blocks
}

/// The `[dependencies]` of a manifest block: (name, value as written), comments dropped. Only
/// the one-line `name = value` form: anything else fails, rather than being built wrong.
fn dependencies(manifest: &Block) -> Vec<(String, String)> {
    let mut lines = manifest
        .code
        .lines()
        .map(|l| strip_comment(l).trim())
        .filter(|l| !l.is_empty());
    assert_eq!(
        lines.next(),
        Some("[dependencies]"),
        "line {}: the manifest block starts with [dependencies]",
        manifest.line
    );
    lines
        .map(|line| {
            let (name, value) = line.split_once('=').unwrap_or_else(|| {
                panic!(
                    "line {}: {line:?} is not `name = value` (one dependency a line)",
                    manifest.line
                )
            });
            (name.trim().to_string(), value.trim().to_string())
        })
        .collect()
}

/// `line` without a trailing `# comment` (a `#` outside a string).
fn strip_comment(line: &str) -> &str {
    let mut in_string = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '#' if !in_string => return &line[..i],
            _ => {}
        }
    }
    line
}

/// raftnet's dependency value with its source replaced by this checkout: the keys that say
/// where raftnet comes from (`path`, `git`, `version`, ...) go, the others (`features`,
/// `default-features`) stay.
fn local_raftnet(spec: &str, checkout: &Path) -> String {
    let mut keys = vec![format!("path = {:?}", checkout.display().to_string())];
    if let Some(table) = spec.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
        for entry in split_top_level(table) {
            let key = entry.split('=').next().unwrap().trim();
            if !["path", "git", "version", "branch", "tag", "rev", "registry"].contains(&key) {
                keys.push(entry.trim().to_string());
            }
        }
    } else {
        assert!(
            spec.starts_with('"'),
            "raftnet's dependency is a version string or an inline table, not {spec}"
        );
    }
    format!("{{ {} }}", keys.join(", "))
}

/// `text` split at commas outside brackets and strings.
fn split_top_level(text: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut in_string, mut start) = (Vec::new(), 0, false, 0);
    for (i, c) in text.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '[' | '{' if !in_string => depth += 1,
            ']' | '}' if !in_string => depth -= 1,
            ',' if !in_string && depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// The `//!` block at the top of a source file, as markdown.
fn inner_doc_comment(source: &str) -> String {
    source
        .lines()
        .map_while(|l| l.strip_prefix("//!"))
        .map(|l| format!("{}\n", l.strip_prefix(' ').unwrap_or(l)))
        .collect()
}

fn checkout() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn scratch_root() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("readme-scratch")
}

/// The cargo that runs this test (the same toolchain), else the one on PATH.
fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}
