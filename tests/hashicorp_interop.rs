//! raftnet against the real hashicorp/raft (Go, v1.1.2 from Debian's
//! golang-github-hashicorp-raft-dev), over TCP on loopback, both ways: a Go `NetworkTransport`
//! client calling a raftnet server, and a raftnet client calling a Go `NetworkTransport` server,
//! for a heartbeat, AppendEntries with 0, 1 and 3 entries (nil and empty data, extensions, three
//! log types), a RequestVote for a leadership transfer, TimeoutNow, a 1 MiB InstallSnapshot
//! checked by CRC, and an error answer.
//!
//! The Go side is `interop/hashicorp` (its doc has the modes), built here with `go build` in
//! GOPATH mode into this test's target directory. Both sides answer by the same rules
//! (`answer` here, `respond` there) and describe what they received in the same words
//! (`describe`, mirrored from the Go program), so each test checks what the other side saw as
//! well as what it answered. Without Go or the package, each test says why on stderr and returns
//! (`.ci/run` installs both).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::Duration;

use bytes::Bytes;
use raftnet::message::*;
use raftnet::wire::hashicorp::{GoRaftVersion, HashicorpCodecFactory};
use raftnet::{CallOptions, Config, NetTransport, ServerAddress, ServerId, Transport};

const GOPATH: &str = "/usr/share/gocode";
/// A whole exchange takes well under a second; this only stops a hung test.
const WATCHDOG: Duration = Duration::from_secs(120);

/// The interop program, built once per test binary; `None` (and why, on stderr, for each test
/// that asks) without Go.
fn interop_binary() -> Option<&'static Path> {
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
        let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("hashicorp-interop");
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

/// Kill `child` if the test has not finished with it by the deadline.
fn watchdog(child: &Child) -> mpsc::Sender<()> {
    let (done, finished) = mpsc::channel::<()>();
    let pid = child.id();
    std::thread::spawn(move || {
        if finished.recv_timeout(WATCHDOG).is_err() {
            eprintln!("watchdog: killing the Go process {pid}");
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    });
    done
}

fn config() -> Config {
    Config::default().codec(Arc::new(HashicorpCodecFactory::new(GoRaftVersion::V1_1)))
}

fn b(bytes: &[u8]) -> Option<Bytes> {
    Some(Bytes::copy_from_slice(bytes))
}

const PV3: RpcHeader = RpcHeader {
    protocol_version: 3,
    id: None,
    addr: None,
};

/// The snapshot body both sides build: byte i is (i*31 + 7) mod 251.
fn snapshot_body(size: usize) -> Bytes {
    (0..size).map(|i| ((i * 31 + 7) % 251) as u8).collect()
}

/// A `[]byte` as the Go program's `b` prints it.
fn show(v: &Option<Bytes>) -> String {
    match v {
        None => "nil".into(),
        Some(v) if v.len() > 64 => format!("len{}/crc{:08x}", v.len(), crc32fast::hash(v)),
        Some(v) => format!(
            "x{}",
            v.iter().map(|b| format!("{b:02x}")).collect::<String>()
        ),
    }
}

/// A request as the Go program's `describe` prints it (raftnet does not tell a nil entry list
/// from an empty one: both print as `[]` here).
fn describe(request: &Request) -> String {
    match request {
        Request::AppendEntries(r) => {
            let entries: Vec<String> = r
                .entries
                .iter()
                .map(|e| {
                    format!(
                        "{}/{}/{}/{}/{}",
                        e.index,
                        e.term,
                        e.kind.0,
                        show(&e.data),
                        show(&e.extensions)
                    )
                })
                .collect();
            format!(
                "AppendEntries pv={} term={} leader={} prev={}/{} commit={} entries=[{}]",
                r.header.protocol_version,
                r.term,
                show(&r.leader),
                r.prev_log_entry,
                r.prev_log_term,
                r.leader_commit_index,
                entries.join(" ")
            )
        }
        Request::RequestVote(r) => format!(
            "RequestVote pv={} term={} candidate={} last={}/{} transfer={}",
            r.header.protocol_version,
            r.term,
            show(&r.candidate),
            r.last_log_index,
            r.last_log_term,
            r.leadership_transfer
        ),
        Request::InstallSnapshot(r) => format!(
            "InstallSnapshot pv={} version={} term={} leader={} last={}/{} peers={} configuration={}/{} size={}",
            r.header.protocol_version,
            r.snapshot_version,
            r.term,
            show(&r.leader),
            r.last_log_index,
            r.last_log_term,
            show(&r.peers),
            show(&r.configuration),
            r.configuration_index,
            r.size
        ),
        Request::TimeoutNow(r) => format!("TimeoutNow pv={}", r.header.protocol_version),
        Request::RequestPreVote(_) => "RequestPreVote".into(),
    }
}

/// The harness's answer rules (the Go program's `respond`).
fn answer(request: &Request, snapshot: Option<(u32, u64)>) -> Result<Response, String> {
    Ok(match request {
        Request::AppendEntries(r) => AppendEntriesResponse {
            header: PV3,
            term: r.term,
            last_log: r.prev_log_entry + r.entries.len() as u64,
            success: true,
            no_retry_backoff: r.entries.len() == 3,
        }
        .into(),
        Request::RequestVote(r) if r.term == 666 => {
            return Err(format!("vote refused: term {}", r.term));
        }
        Request::RequestVote(r) => RequestVoteResponse {
            header: PV3,
            term: r.term,
            peers: None,
            granted: r.leadership_transfer,
        }
        .into(),
        Request::InstallSnapshot(r) => {
            let (crc, len) = snapshot.unwrap_or_default();
            InstallSnapshotResponse {
                header: PV3,
                term: u64::from(crc),
                success: len == r.size as u64,
            }
            .into()
        }
        Request::TimeoutNow(_) => TimeoutNowResponse { header: PV3 }.into(),
        Request::RequestPreVote(_) => return Err("unexpected command".into()),
    })
}

#[test]
fn a_go_client_calls_a_raftnet_server() {
    let Some(go) = interop_binary() else { return };
    let server = NetTransport::bind("127.0.0.1:0", None, config()).unwrap();
    let received = Arc::new(Mutex::new(Vec::new()));
    let consumer = server.consumer().clone();
    let seen = received.clone();
    std::thread::spawn(move || {
        while let Ok(mut rpc) = consumer.recv() {
            let snapshot = rpc.snapshot.take().map(|mut reader| {
                let mut body = Vec::new();
                reader.read_to_end(&mut body).unwrap();
                (crc32fast::hash(&body), body.len() as u64)
            });
            seen.lock().unwrap().push(describe(&rpc.request));
            let result = answer(&rpc.request, snapshot);
            rpc.respond(result);
        }
    });
    let child = Command::new(go)
        .args(["client", &server.local_addr().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let done = watchdog(&child);
    let output = child.wait_with_output().unwrap();
    let _ = done.send(());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Go client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let crc = crc32fast::hash(&snapshot_body(1 << 20));
    let expected_answers = [
        "RESP heartbeat term=5 lastlog=0 success=true noretry=false".to_string(),
        "RESP append0 term=5 lastlog=7 success=true noretry=false".into(),
        "RESP append1 term=5 lastlog=8 success=true noretry=false".into(),
        "RESP append3 term=5 lastlog=11 success=true noretry=true".into(),
        "RESP vote term=6 granted=true".into(),
        "RESP timeout pv=3".into(),
        format!("RESP snapshot term={crc} success=true crc={crc}"),
        "RESP refused error=\"vote refused: term 666\"".into(),
    ];
    let answers: Vec<&str> = stdout.lines().collect();
    assert_eq!(answers, expected_answers, "what the Go client got");

    let leader = "x676f2d6c6561646572"; // "go-leader"
    let three = show(&b(&b"three".repeat(30)));
    let expected_requests = [
        format!("AppendEntries pv=3 term=5 leader={leader} prev=0/0 commit=0 entries=[]"),
        format!("AppendEntries pv=3 term=5 leader={leader} prev=7/2 commit=7 entries=[]"),
        format!(
            "AppendEntries pv=3 term=5 leader={leader} prev=7/2 commit=7 entries=[8/5/0/x6f6e65/nil]"
        ),
        format!(
            "AppendEntries pv=3 term=5 leader={leader} prev=8/5 commit=8 entries=[9/5/1/nil/nil 10/5/0/x/x657874 11/5/5/{three}/nil]"
        ),
        "RequestVote pv=3 term=6 candidate=x676f2d63616e64 last=11/5 transfer=true".into(),
        "TimeoutNow pv=3".into(),
        format!(
            "InstallSnapshot pv=3 version=1 term=6 leader={leader} last=11/5 peers=nil configuration=x636f6e66/11 size=1048576"
        ),
        "RequestVote pv=3 term=666 candidate=x676f2d63616e64 last=0/0 transfer=false".into(),
    ];
    assert_eq!(
        *received.lock().unwrap(),
        expected_requests,
        "what the raftnet server received"
    );
    server.close();
}

#[test]
fn a_raftnet_client_calls_a_go_server() {
    let Some(go) = interop_binary() else { return };
    let mut child = Command::new(go)
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let done = watchdog(&child);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let listen = lines.next().unwrap().unwrap();
    let addr: ServerAddress = listen
        .strip_prefix("LISTEN ")
        .unwrap_or_else(|| panic!("not a LISTEN line: {listen}"))
        .into();
    let client = NetTransport::bind("127.0.0.1:0", None, config()).unwrap();
    let id = ServerId::from("go");
    let opts = CallOptions::default;
    let leader = b(b"rust-leader");
    let append = |request: AppendEntriesRequest| {
        client
            .append_entries(&id, &addr, request, opts())
            .wait()
            .unwrap()
    };
    let base = || AppendEntriesRequest {
        header: PV3,
        term: 5,
        leader: leader.clone(),
        ..Default::default()
    };
    let expect_append = |term, last_log, no_retry_backoff| AppendEntriesResponse {
        header: PV3,
        term,
        last_log,
        success: true,
        no_retry_backoff,
    };
    assert_eq!(append(base()), expect_append(5, 0, false), "heartbeat");
    let at = |prev, commit| AppendEntriesRequest {
        prev_log_entry: prev,
        prev_log_term: 2,
        leader_commit_index: commit,
        ..base()
    };
    assert_eq!(append(at(7, 7)), expect_append(5, 7, false), "0 entries");
    let one = AppendEntriesRequest {
        entries: vec![Log::command(8, 5, &b"one"[..])],
        ..at(7, 7)
    };
    assert_eq!(append(one), expect_append(5, 8, false), "1 entry");
    let three = AppendEntriesRequest {
        entries: vec![
            Log {
                index: 9,
                term: 5,
                kind: LogType::NOOP,
                ..Default::default()
            },
            Log {
                index: 10,
                term: 5,
                data: Some(Bytes::new()),
                extensions: b(b"ext"),
                ..Default::default()
            },
            Log {
                index: 11,
                term: 5,
                kind: LogType::CONFIGURATION,
                data: b(&b"three".repeat(30)),
                ..Default::default()
            },
        ],
        ..at(8, 8)
    };
    assert_eq!(append(three), expect_append(5, 11, true), "3 entries");
    let vote = RequestVoteRequest {
        header: PV3,
        term: 6,
        candidate: b(b"rust-cand"),
        last_log_index: 11,
        last_log_term: 5,
        leadership_transfer: true,
    };
    let granted = client
        .request_vote(&id, &addr, vote, opts())
        .wait()
        .unwrap();
    assert_eq!((granted.term, granted.granted), (6, true));
    let timeout = client
        .timeout_now(&id, &addr, TimeoutNowRequest { header: PV3 }, opts())
        .wait()
        .unwrap();
    assert_eq!(timeout, TimeoutNowResponse { header: PV3 });
    let body = snapshot_body(1 << 20);
    let snapshot = InstallSnapshotRequest {
        header: PV3,
        snapshot_version: 1,
        term: 6,
        leader: leader.clone(),
        last_log_index: 11,
        last_log_term: 5,
        configuration: b(b"conf"),
        configuration_index: 11,
        size: body.len() as i64,
        ..Default::default()
    };
    let installed = client
        .install_snapshot_bytes(&id, &addr, snapshot, body.clone(), opts())
        .wait()
        .unwrap();
    assert_eq!(
        (installed.term, installed.success),
        (u64::from(crc32fast::hash(&body)), true),
        "the Go server read exactly the body, by its CRC"
    );
    let refused = RequestVoteRequest {
        header: PV3,
        term: 666,
        candidate: b(b"rust-cand"),
        ..Default::default()
    };
    let error = client
        .request_vote(&id, &addr, refused, opts())
        .wait()
        .unwrap_err();
    assert!(
        error.to_string().contains("vote refused: term 666"),
        "the Go server's error text: {error}"
    );
    client.close();

    // What the Go server saw, in order; then it exits.
    drop(child.stdin.take());
    let seen: Vec<String> = lines.map(Result::unwrap).collect();
    let _ = child.wait();
    let _ = done.send(());
    let leader = "x727573742d6c6561646572"; // "rust-leader"
    let three = show(&b(&b"three".repeat(30)));
    let expected = [
        "HEARTBEAT".to_string(),
        // A heartbeat's entries are nil in Go, and those of any other AppendEntries an empty
        // slice: raftnet writes them so.
        format!("RECV AppendEntries pv=3 term=5 leader={leader} prev=0/0 commit=0 entries=nil"),
        format!("RECV AppendEntries pv=3 term=5 leader={leader} prev=7/2 commit=7 entries=[]"),
        format!(
            "RECV AppendEntries pv=3 term=5 leader={leader} prev=7/2 commit=7 entries=[8/5/0/x6f6e65/nil]"
        ),
        // Entry 10's empty data goes out as `a0`, as Go writes it (tests/hashicorp_golden.rs),
        // and v1.1.2's go-msgpack (0.5.5) reads an empty raw string into a nil slice.
        format!(
            "RECV AppendEntries pv=3 term=5 leader={leader} prev=8/2 commit=8 entries=[9/5/1/nil/nil 10/5/0/nil/x657874 11/5/5/{three}/nil]"
        ),
        "RECV RequestVote pv=3 term=6 candidate=x727573742d63616e64 last=11/5 transfer=true".into(),
        "RECV TimeoutNow pv=3".into(),
        format!(
            "RECV InstallSnapshot pv=3 version=1 term=6 leader={leader} last=11/5 peers=nil configuration=x636f6e66/11 size=1048576"
        ),
        "RECV RequestVote pv=3 term=666 candidate=x727573742d63616e64 last=0/0 transfer=false"
            .into(),
    ];
    assert_eq!(seen, expected, "what the Go server received");
    let _ = std::io::stdout().flush();
}

/// 128 AppendEntries in flight at once on one connection to a Go server (hashicorp's pipelining
/// before v1.5 allowed 130): the Go side serves them one at a time, in order, and raftnet matches
/// each answer to its request by that order alone.
#[test]
fn a_raftnet_pipeline_128_deep_to_a_go_server() {
    const DEPTH: u64 = 128;
    let Some(go) = interop_binary() else { return };
    let mut child = Command::new(go)
        .arg("serve")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let done = watchdog(&child);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let listen = lines.next().unwrap().unwrap();
    let addr: ServerAddress = listen.strip_prefix("LISTEN ").unwrap().into();
    let client = NetTransport::bind("127.0.0.1:0", None, config().max_rpcs_in_flight(130)).unwrap();
    let pipeline = client
        .append_entries_pipeline(&ServerId::from("go"), &addr)
        .unwrap();
    for i in 0..DEPTH {
        let request = AppendEntriesRequest {
            header: PV3,
            term: 7,
            leader: b(b"rust-leader"),
            prev_log_entry: i,
            prev_log_term: 7,
            entries: vec![Log::command(i + 1, 7, i.to_be_bytes().to_vec())],
            ..Default::default()
        };
        pipeline.send(request).unwrap();
    }
    for i in 0..DEPTH {
        let future = pipeline.recv().unwrap();
        assert_eq!(future.request().prev_log_entry, i, "completions in order");
        let response = future.wait().unwrap();
        assert_eq!(
            (response.term, response.last_log, response.success),
            (7, i + 1, true),
            "the answer to request {i}"
        );
    }
    pipeline.close();
    client.close();
    drop(child.stdin.take());
    let seen: Vec<String> = lines.map(Result::unwrap).collect();
    let _ = child.wait();
    let _ = done.send(());
    assert_eq!(seen.len(), DEPTH as usize, "{seen:?}");
    for (i, line) in seen.iter().enumerate() {
        let prefix =
            format!("RECV AppendEntries pv=3 term=7 leader=x727573742d6c6561646572 prev={i}/7 ");
        assert!(line.starts_with(&prefix), "request {i} arrived as {line}");
    }
}

/// A Go pipeline 128 deep into a raftnet server whose Raft side answers the 128 requests in
/// reverse: Go reads answers by order alone, so raftnet's serving codec holds each answer back
/// until every earlier request's is written, and Go sees each request's own answer.
#[test]
fn a_go_pipeline_128_deep_into_a_raftnet_server_answered_in_reverse() {
    const DEPTH: usize = 128;
    let Some(go) = interop_binary() else { return };
    let server = NetTransport::bind("127.0.0.1:0", None, config()).unwrap();
    let consumer = server.consumer().clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        while held.len() < DEPTH {
            match consumer.recv() {
                Ok(rpc) => held.push(rpc),
                Err(_) => return,
            }
        }
        for rpc in held.into_iter().rev() {
            let result = answer(&rpc.request, None);
            rpc.respond(result);
        }
    });
    let child = Command::new(go)
        .args(["pipeline", &server.local_addr().to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let done = watchdog(&child);
    let output = child.wait_with_output().unwrap();
    let _ = done.send(());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the Go pipeline failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let expected: Vec<String> = (0..DEPTH)
        .map(|i| format!("PIPE {i} prev={i} lastlog={} success=true", i + 1))
        .collect();
    let seen: Vec<&str> = stdout.lines().collect();
    assert_eq!(seen, expected, "what the Go pipeline got");
    server.close();
}
