//! raftnet against the real hashicorp/raft (Go, v1.1.2 from Debian's
//! golang-github-hashicorp-raft-dev), over TCP on loopback, both ways: a Go `NetworkTransport`
//! client calling a raftnet server, and a raftnet client calling a Go `NetworkTransport` server.
//! Each way:
//!
//! - a heartbeat, AppendEntries with 0, 1 and 3 entries, a RequestVote for a leadership
//!   transfer, TimeoutNow, a 1 MiB InstallSnapshot checked by CRC, and an error answer;
//! - an AppendEntries of 1,000 entries (every log type v1.1.2 has, nil and empty data and
//!   extensions, data of 1 MiB and of 70,000 bytes) and a 64 MiB InstallSnapshot checked by CRC;
//! - appends pipelined 128 deep on one connection, every 16th answered with an error;
//! - a node gone mid-pipeline: a Go client that exits with requests unanswered, or with
//!   answers on their way, leaves the raftnet server serving the next client; a Go server
//!   that exits with a raftnet pipeline in flight fails every call in flight exactly once,
//!   none left hanging.
//!
//! The Go side is `interop/hashicorp` (its doc has the modes), built with `go build` in GOPATH
//! mode into this test's target directory and run by `GoProcess` (`tests/common/go.rs`). Both
//! sides answer by the same rules (`answer` here, `respond` there), build the same requests
//! (`bulk_entries`, `pipeline_request`, `pattern`) and describe what they received in the same
//! words (`describe`, mirrored from the Go program), so each test checks what the other side
//! saw as well as what it answered. Without Go or the package, each test says why on stderr
//! and returns (`.ci/run` installs both).

mod common;

use std::io::{ErrorKind, Read};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::Instant;

use bytes::Bytes;
use common::go::{GoProcess, run_go};
use common::net::{EVENTUALLY, bind, finish, wait_until};
use raftnet::message::*;
use raftnet::wire::hashicorp::{GoRaftVersion, HashicorpCodecFactory};
use raftnet::{CallOptions, Config, Error, NetTransport, Rpc, ServerId, Transport};

/// `seen` equals `expected`, line for line; a line that differs is reported by its first
/// differing word (a 1,000-entry line is too long to read whole).
#[track_caller]
fn assert_lines(seen: &[String], expected: &[String], what: &str) {
    for (i, (seen, expected)) in seen.iter().zip(expected).enumerate() {
        if seen != expected {
            let words = seen.split(' ').zip(expected.split(' '));
            let (word, (got, wanted)) = words
                .enumerate()
                .find(|(_, (a, b))| a != b)
                .unwrap_or((0, ("(same words)", "(more words)")));
            panic!(
                "{what}: line {i} differs at word {word}: {got:?} where {wanted:?} was expected\n\
                 line: {seen:.300}\nwanted: {expected:.300}"
            );
        }
    }
    let short = |lines: &[String]| {
        lines
            .iter()
            .map(|l| format!("{l:.200}\n"))
            .collect::<String>()
    };
    assert_eq!(
        seen.len(),
        expected.len(),
        "{what}: lines\n{}instead of\n{}",
        short(seen),
        short(expected)
    );
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

/// The term whose requests both sides' servers refuse with an error answer.
const REFUSED_TERM: u64 = 666;

/// The bytes both sides build for a snapshot body or an entry's data (the Go program's
/// `pattern`): byte j is ((j + seed) * 31 + 7) mod 251.
fn pattern(size: usize, seed: usize) -> Bytes {
    (0..size)
        .map(|j| (((j + seed) * 31 + 7) % 251) as u8)
        .collect()
}

/// The 64 MiB snapshot body (`pattern(64 MiB, 0)`) and its CRC-32, made once per test binary
/// (seconds in a debug build).
fn snapshot_64_mib() -> &'static (Bytes, u32) {
    static BODY: OnceLock<(Bytes, u32)> = OnceLock::new();
    BODY.get_or_init(|| {
        let body = pattern(64 << 20, 0);
        let crc = crc32fast::hash(&body);
        (body, crc)
    })
}

/// The CRC-32 (IEEE) of everything `reader` yields, and its length.
fn crc_of(reader: &mut impl Read) -> (u32, u64) {
    let mut crc = crc32fast::Hasher::new();
    let mut buffer = vec![0; 64 << 10];
    let mut len = 0;
    loop {
        let n = reader.read(&mut buffer).expect("read the snapshot body");
        if n == 0 {
            return (crc.finalize(), len);
        }
        crc.update(&buffer[..n]);
        len += n as u64;
    }
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

/// The harness's answer rules (the Go program's `respond`): term 666 is refused.
fn answer(request: &Request, snapshot: Option<(u32, u64)>) -> Result<Response, String> {
    Ok(match request {
        Request::AppendEntries(r) if r.term == REFUSED_TERM => {
            return Err(format!("append refused: term {}", r.term));
        }
        Request::AppendEntries(r) => AppendEntriesResponse {
            header: PV3,
            term: r.term,
            last_log: r.prev_log_entry + r.entries.len() as u64,
            success: true,
            no_retry_backoff: r.entries.len() == 3,
        }
        .into(),
        Request::RequestVote(r) if r.term == REFUSED_TERM => {
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

/// The 1,000 entries both sides build (the Go program's `bulkEntries`), indexes 101 to 1100:
/// every log type v1.1.2 has, in turn (Command, Noop, AddPeerDeprecated,
/// RemovePeerDeprecated, Barrier, Configuration); data nil, empty, of 1 MiB, of 70,000 bytes
/// (past go-msgpack's 16-bit lengths) or of up to 299 bytes; extensions nil, empty or up to
/// 39 bytes.
fn bulk_entries() -> Vec<Log> {
    (0..1000usize)
        .map(|k| Log {
            index: 101 + k as u64,
            term: 9,
            kind: LogType((k % 6) as u8),
            data: match k {
                500 => Some(pattern(1 << 20, k)),
                501 => Some(pattern(70_000, k)),
                _ if k % 5 == 0 => None,
                _ if k % 5 == 1 => Some(Bytes::new()),
                _ => Some(pattern(k * 37 % 300, k)),
            },
            extensions: match k % 3 {
                0 => None,
                1 => Some(Bytes::new()),
                _ => Some(pattern(k % 40, k)),
            },
            ..Default::default()
        })
        .collect()
}

/// The 1,000-entry AppendEntries (the Go program's `runBulk`).
fn bulk_request(leader: &[u8]) -> AppendEntriesRequest {
    AppendEntriesRequest {
        header: PV3,
        term: 9,
        leader: b(leader),
        prev_log_entry: 100,
        prev_log_term: 9,
        leader_commit_index: 100,
        entries: bulk_entries(),
    }
}

/// Whether the Go program reads an empty raw string into a nil slice: hashicorp/raft v1.1.2's
/// go-msgpack (0.5.5) does; the newest's go-msgpack/v2 keeps it empty (the program is built
/// against the newest where `RAFTNET_GO_RAFT_LATEST_GOPATH` names it: `interop/go_build.rs`).
fn go_reads_empty_as_nil() -> bool {
    std::env::var_os("RAFTNET_GO_RAFT_LATEST_GOPATH").is_none_or(|v| v.is_empty())
}

/// `request` as the Go program decodes it: with v1.1.2, empty data and extensions arrive as
/// nil ([`go_reads_empty_as_nil`]).
fn as_go_reads(mut request: AppendEntriesRequest) -> AppendEntriesRequest {
    if !go_reads_empty_as_nil() {
        return request;
    }
    let nil_if_empty = |v: &mut Option<Bytes>| {
        if v.as_ref().is_some_and(Bytes::is_empty) {
            *v = None;
        }
    };
    for entry in &mut request.entries {
        nil_if_empty(&mut entry.data);
        nil_if_empty(&mut entry.extensions);
    }
    request
}

/// Request `i` of a 128-deep pipeline (the Go program's `pipelineRequest`): one entry each,
/// every 16th refused (term 666).
fn pipeline_request(i: u64, leader: &[u8]) -> AppendEntriesRequest {
    AppendEntriesRequest {
        header: PV3,
        term: if i % 16 == 15 { REFUSED_TERM } else { 9 },
        leader: b(leader),
        prev_log_entry: i,
        prev_log_term: 9,
        entries: vec![Log::command(i + 1, 9, vec![i as u8])],
        ..Default::default()
    }
}

/// What the Go program's `runPipeline` prints for completion `i` answered by the rules.
fn pipe_line(i: u64) -> String {
    match i % 16 {
        15 => format!("PIPE {i} prev={i} error=\"append refused: term 666\""),
        _ => format!("PIPE {i} prev={i} lastlog={} success=true", i + 1),
    }
}

/// The InstallSnapshot both sides send, as `describe` prints it.
fn snapshot_line(leader_hex: &str, size: usize) -> String {
    format!(
        "InstallSnapshot pv=3 version=1 term=6 leader={leader_hex} last=11/5 peers=nil configuration=x636f6e66/11 size={size}"
    )
}

/// The InstallSnapshot both sides send (the Go program's `snapshotRequest`).
fn snapshot_request(leader: &[u8], size: usize) -> InstallSnapshotRequest {
    InstallSnapshotRequest {
        header: PV3,
        snapshot_version: 1,
        term: 6,
        leader: b(leader),
        last_log_index: 11,
        last_log_term: 5,
        configuration: b(b"conf"),
        configuration_index: 11,
        size: size as i64,
        ..Default::default()
    }
}

const GO_LEADER: &str = "x676f2d6c6561646572"; // "go-leader"
const RUST_LEADER: &str = "x727573742d6c6561646572"; // "rust-leader"

/// The Raft side of a raftnet server by the harness's rules: a snapshot's body read to its end
/// and checked by CRC, the request noted in `received` as `describe` prints it, the answer by
/// `answer`.
fn serve_rpc(mut rpc: Rpc, received: &Mutex<Vec<String>>) {
    let snapshot = rpc.snapshot.take().map(|mut body| crc_of(&mut body));
    received.lock().unwrap().push(describe(&rpc.request));
    let result = answer(&rpc.request, snapshot);
    rpc.respond(result);
}

/// A raftnet server in hashicorp's format whose Raft side is `handle`, called with each RPC on
/// a thread of its own until the transport closes.
fn raftnet_server(mut handle: impl FnMut(Rpc) + Send + 'static) -> NetTransport {
    let server = bind(config());
    let consumer = server.consumer().clone();
    std::thread::spawn(move || {
        while let Ok(rpc) = consumer.recv() {
            handle(rpc);
        }
    });
    server
}

/// A raftnet server answering every RPC by [`serve_rpc`], and what it received.
fn recording_server() -> (NetTransport, Arc<Mutex<Vec<String>>>) {
    let received = Arc::new(Mutex::new(Vec::new()));
    let seen = received.clone();
    (raftnet_server(move |rpc| serve_rpc(rpc, &seen)), received)
}

/// What the Go `client` mode prints, answered by the rules.
fn go_client_answers() -> Vec<String> {
    let crc = crc32fast::hash(&pattern(1 << 20, 0));
    vec![
        "RESP heartbeat term=5 lastlog=0 success=true noretry=false".into(),
        "RESP append0 term=5 lastlog=7 success=true noretry=false".into(),
        "RESP append1 term=5 lastlog=8 success=true noretry=false".into(),
        "RESP append3 term=5 lastlog=11 success=true noretry=true".into(),
        "RESP vote term=6 granted=true".into(),
        "RESP timeout pv=3".into(),
        format!("RESP snapshot term={crc} success=true crc={crc}"),
        "RESP refused error=\"vote refused: term 666\"".into(),
    ]
}

/// What the Go `client` mode sends, as a raftnet server receives it.
fn go_client_requests() -> Vec<String> {
    let three = show(&b(&b"three".repeat(30)));
    vec![
        format!("AppendEntries pv=3 term=5 leader={GO_LEADER} prev=0/0 commit=0 entries=[]"),
        format!("AppendEntries pv=3 term=5 leader={GO_LEADER} prev=7/2 commit=7 entries=[]"),
        format!(
            "AppendEntries pv=3 term=5 leader={GO_LEADER} prev=7/2 commit=7 entries=[8/5/0/x6f6e65/nil]"
        ),
        format!(
            "AppendEntries pv=3 term=5 leader={GO_LEADER} prev=8/5 commit=8 entries=[9/5/1/nil/nil 10/5/0/x/x657874 11/5/5/{three}/nil]"
        ),
        "RequestVote pv=3 term=6 candidate=x676f2d63616e64 last=11/5 transfer=true".into(),
        "TimeoutNow pv=3".into(),
        snapshot_line(GO_LEADER, 1 << 20),
        "RequestVote pv=3 term=666 candidate=x676f2d63616e64 last=0/0 transfer=false".into(),
    ]
}

/// Run the Go client in `mode` against a raftnet server answering by the rules, and check what
/// the Go client got and what the server received.
#[track_caller]
fn go_client_to_raftnet(mode: &str, expected_answers: &[String], expected_requests: &[String]) {
    let (server, received) = recording_server();
    let Some(answers) = run_go(&[mode, &server.local_addr().to_string()]) else {
        return;
    };
    assert_lines(&answers, expected_answers, "what the Go client got");
    let received = received.lock().unwrap().clone();
    assert_lines(
        &received,
        expected_requests,
        "what the raftnet server received",
    );
    server.close();
}

#[test]
fn a_go_client_calls_a_raftnet_server() {
    go_client_to_raftnet("client", &go_client_answers(), &go_client_requests());
}

#[test]
fn a_raftnet_client_calls_a_go_server() {
    let Some((mut go, addr)) = GoProcess::serve(&[]) else {
        return;
    };
    let client = bind(config());
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
    let body = pattern(1 << 20, 0);
    let snapshot = snapshot_request(b"rust-leader", body.len());
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
        term: REFUSED_TERM,
        candidate: b(b"rust-cand"),
        ..Default::default()
    };
    let error = client
        .request_vote(&id, &addr, refused, opts())
        .wait()
        .unwrap_err();
    assert_eq!(error, Error::Remote("vote refused: term 666".into()));
    client.close();

    // What the Go server saw, in order.
    let seen = go.finish().succeeded("the Go server");
    let three = show(&b(&b"three".repeat(30)));
    let expected = [
        "HEARTBEAT".to_string(),
        // A heartbeat's entries are nil in Go, and those of any other AppendEntries an empty
        // slice: raftnet writes them so.
        format!(
            "RECV AppendEntries pv=3 term=5 leader={RUST_LEADER} prev=0/0 commit=0 entries=nil"
        ),
        format!("RECV AppendEntries pv=3 term=5 leader={RUST_LEADER} prev=7/2 commit=7 entries=[]"),
        format!(
            "RECV AppendEntries pv=3 term=5 leader={RUST_LEADER} prev=7/2 commit=7 entries=[8/5/0/x6f6e65/nil]"
        ),
        // Entry 10's empty data goes out as `a0`, as Go writes it (tests/hashicorp_golden.rs),
        // and v1.1.2's go-msgpack (0.5.5) reads an empty raw string into a nil slice.
        format!(
            "RECV AppendEntries pv=3 term=5 leader={RUST_LEADER} prev=8/2 commit=8 entries=[9/5/1/nil/nil 10/5/0/{empty}/x657874 11/5/5/{three}/nil]",
            empty = if go_reads_empty_as_nil() { "nil" } else { "x" },
        ),
        "RECV RequestVote pv=3 term=6 candidate=x727573742d63616e64 last=11/5 transfer=true".into(),
        "RECV TimeoutNow pv=3".into(),
        format!("RECV {}", snapshot_line(RUST_LEADER, 1 << 20)),
        "RECV RequestVote pv=3 term=666 candidate=x727573742d63616e64 last=0/0 transfer=false"
            .into(),
    ];
    assert_lines(&seen, &expected, "what the Go server received");
}

/// The Go `bulk` mode into a raftnet server: 1,000 entries in one AppendEntries, then a 64 MiB
/// snapshot body, each seen by raftnet exactly as Go wrote it.
#[test]
fn a_go_client_sends_1000_entries_and_a_64_mib_snapshot_to_a_raftnet_server() {
    let (_, crc) = snapshot_64_mib();
    let expected_answers = [
        "RESP append1000 term=9 lastlog=1100 success=true noretry=false".to_string(),
        format!("RESP snapshot64 term={crc} success=true crc={crc}"),
    ];
    let expected_requests = [
        describe(&bulk_request(b"go-leader").into()),
        snapshot_line(GO_LEADER, 64 << 20),
    ];
    go_client_to_raftnet("bulk", &expected_answers, &expected_requests);
}

/// 1,000 entries in one AppendEntries and a 64 MiB snapshot body from raftnet to a Go server.
#[test]
fn a_raftnet_client_sends_1000_entries_and_a_64_mib_snapshot_to_a_go_server() {
    let Some((mut go, addr)) = GoProcess::serve(&[]) else {
        return;
    };
    let client = bind(config());
    let id = ServerId::from("go");
    let request = bulk_request(b"rust-leader");
    let answer = client
        .append_entries(&id, &addr, request.clone(), CallOptions::default())
        .wait()
        .unwrap();
    let expected = AppendEntriesResponse {
        header: PV3,
        term: 9,
        last_log: 1100,
        success: true,
        no_retry_backoff: false,
    };
    assert_eq!(answer, expected, "the answer to 1,000 entries");
    let (body, crc) = snapshot_64_mib();
    let snapshot = snapshot_request(b"rust-leader", body.len());
    let installed = client
        .install_snapshot_bytes(&id, &addr, snapshot, body.clone(), CallOptions::default())
        .wait()
        .unwrap();
    assert_eq!(
        (installed.term, installed.success),
        (u64::from(*crc), true),
        "the Go server read exactly the 64 MiB body, by its CRC"
    );
    client.close();
    let seen = go.finish().succeeded("the Go server");
    let expected = [
        format!("RECV {}", describe(&as_go_reads(request).into())),
        format!("RECV {}", snapshot_line(RUST_LEADER, 64 << 20)),
    ];
    assert_lines(&seen, &expected, "what the Go server received");
}

/// 128 AppendEntries in flight at once on one connection to a Go server (hashicorp's pipelining
/// before v1.5 allowed 130): the Go side serves them one at a time, in order, and raftnet matches
/// each answer, error answers included, to its request by that order alone.
#[test]
fn a_raftnet_pipeline_128_deep_to_a_go_server() {
    const DEPTH: u64 = 128;
    let Some((mut go, addr)) = GoProcess::serve(&[]) else {
        return;
    };
    let client = bind(config().max_rpcs_in_flight(130));
    let pipeline = client
        .append_entries_pipeline(&ServerId::from("go"), &addr)
        .unwrap();
    for i in 0..DEPTH {
        pipeline.send(pipeline_request(i, b"rust-leader")).unwrap();
    }
    for i in 0..DEPTH {
        let future = pipeline.recv().unwrap();
        assert_eq!(future.request().prev_log_entry, i, "completions in order");
        let expected = answer(&pipeline_request(i, b"").into(), None).map_err(Error::Remote);
        let got = future.wait().map(Response::from);
        assert_eq!(got, expected, "the answer to request {i}");
    }
    pipeline.close();
    client.close();
    let seen = go.finish().succeeded("the Go server");
    let expected: Vec<String> = (0..DEPTH)
        .map(|i| {
            format!(
                "RECV {}",
                describe(&pipeline_request(i, b"rust-leader").into())
            )
        })
        .collect();
    assert_lines(&seen, &expected, "what the Go server received");
}

/// A Go pipeline 128 deep into a raftnet server whose Raft side answers the 128 requests in
/// reverse: Go reads answers by order alone, so raftnet's serving codec holds each answer back
/// until every earlier request's is written, and Go sees each request's own answer, error
/// answers included.
#[test]
fn a_go_pipeline_128_deep_into_a_raftnet_server_answered_in_reverse() {
    const DEPTH: usize = 128;
    let mut held = Vec::new();
    let server = raftnet_server(move |rpc| {
        held.push(rpc);
        if held.len() == DEPTH {
            for rpc in held.drain(..).rev() {
                let result = answer(&rpc.request, None);
                rpc.respond(result);
            }
        }
    });
    let Some(seen) = run_go(&["pipeline", &server.local_addr().to_string()]) else {
        return;
    };
    let expected: Vec<String> = (0..DEPTH as u64).map(pipe_line).collect();
    assert_lines(&seen, &expected, "what the Go pipeline got");
    server.close();
}

/// A Go node gone mid-pipeline: it sends 128 appends, reads the 32 answers the raftnet Raft
/// side gives at once, and exits with the rest unanswered. The server closes the connection;
/// the other 96 are answered after that (and dropped, harmlessly), and the server serves the
/// next Go client in full.
#[test]
fn a_go_client_gone_with_requests_unanswered_leaves_the_raftnet_server_serving() {
    const DEPTH: usize = 128;
    const READ: usize = 32;
    let received = Arc::new(Mutex::new(Vec::new()));
    let (release, released) = mpsc::channel::<()>();
    let seen = received.clone();
    let mut held = Vec::new();
    let server = raftnet_server(move |rpc| {
        let count = seen.lock().unwrap().len();
        if !(READ..DEPTH).contains(&count) {
            serve_rpc(rpc, &seen);
            return;
        }
        seen.lock().unwrap().push(describe(&rpc.request));
        held.push(rpc);
        if held.len() == DEPTH - READ {
            // Answered once the Go process has exited.
            let _ = released.recv_timeout(EVENTUALLY);
            for rpc in held.drain(..) {
                let result = answer(&rpc.request, None);
                rpc.respond(result);
            }
        }
    });
    if !go_pipeline_leaves_after(&server, READ) {
        return;
    }
    wait_until("the raftnet server has all 128 requests", || {
        received.lock().unwrap().len() == DEPTH
    });
    wait_until("the connection of the Go process is closed", || {
        server.metrics().open_connections == 0
    });
    // Answers for a connection that is gone.
    release.send(()).unwrap();
    let pipelined = the_next_go_client_is_served(&server, &received);
    assert_eq!(
        pipelined, DEPTH,
        "the pipeline's requests the Raft side received"
    );
}

/// Run the Go `pipeline` mode against `server`, leaving after `read` completions, and check
/// what it read; `false` without Go.
#[track_caller]
fn go_pipeline_leaves_after(server: &NetTransport, read: usize) -> bool {
    let addr = server.local_addr().to_string();
    let Some(got) = run_go(&["pipeline", &addr, &read.to_string()]) else {
        return false;
    };
    let mut expected: Vec<String> = (0..read as u64).map(pipe_line).collect();
    expected.push("EXIT".into());
    assert_lines(&got, &expected, "what the Go pipeline read before exiting");
    true
}

/// After a Go client that sent the pipeline and left: the next Go client (`client` mode) gets
/// every answer by the rules, the server received a first part of the pipeline's requests, in
/// order, then the client's, and none of the connections was a protocol error. How many of
/// the pipeline's requests it received.
#[track_caller]
fn the_next_go_client_is_served(server: &NetTransport, received: &Mutex<Vec<String>>) -> usize {
    let Some(answers) = run_go(&["client", &server.local_addr().to_string()]) else {
        return 0;
    };
    assert_lines(
        &answers,
        &go_client_answers(),
        "what the next Go client got",
    );
    let received = received.lock().unwrap().clone();
    let pipelined = received.len().saturating_sub(go_client_requests().len());
    let mut expected_requests: Vec<String> = (0..pipelined as u64)
        .map(|i| describe(&pipeline_request(i, b"go-leader").into()))
        .collect();
    expected_requests.extend(go_client_requests());
    assert_lines(
        &received,
        &expected_requests,
        "what the raftnet server received",
    );
    let metrics = server.metrics();
    // The pipeline's connection, then the client's two: Go closes a connection after an
    // InstallSnapshot and dials a new one for the next call.
    assert_eq!(
        (metrics.accepted, metrics.protocol_errors),
        (3, 0),
        "three connections, none a protocol error"
    );
    server.close();
    pipelined
}

/// A Go node gone mid-pipeline with answers on their way: the raftnet Raft side answers each
/// request at once, and the Go client exits after taking 32, the others written to a
/// connection whose reader is gone (or going: a reset can end it before raftnet has read
/// every request). The connection is closed, and the server serves the next Go client in
/// full.
#[test]
fn a_go_client_gone_with_answers_unread_leaves_the_raftnet_server_serving() {
    const READ: usize = 32;
    let (server, received) = recording_server();
    if !go_pipeline_leaves_after(&server, READ) {
        return;
    }
    wait_until("the connection of the Go process is closed", || {
        server.metrics().open_connections == 0
    });
    // How many of the 128 reach the Raft side before the connection ends is up to the race
    // with the reset: at least those answered.
    let pipelined = the_next_go_client_is_served(&server, &received);
    assert!(
        pipelined >= READ,
        "{pipelined} of the pipeline's requests received"
    );
}

/// A Go node gone with a raftnet pipeline in flight: 128 appends are sent; the Go server
/// answers 39, holds the 40th (and so reads no further), and once those 39 answers are in,
/// its process exits. Every one of the 89 calls in flight ends exactly once, with the
/// connection's error, none hangs, and the next call to the dead address fails.
#[test]
fn a_go_server_gone_mid_pipeline_fails_each_call_in_flight_once() {
    const DEPTH: u64 = 128;
    const HOLD_AT: u64 = 40;
    let Some((mut go, addr)) = GoProcess::serve(&[&HOLD_AT.to_string()]) else {
        return;
    };
    let client = bind(config().max_rpcs_in_flight(130));
    let id = ServerId::from("go");
    let pipeline = client.append_entries_pipeline(&id, &addr).unwrap();
    for i in 0..DEPTH {
        pipeline.send(pipeline_request(i, b"rust-leader")).unwrap();
    }
    let answered = HOLD_AT - 1;
    let mut seen: Vec<String> = (0..HOLD_AT).map(|_| go.next_line()).collect();
    seen.push(go.next_line());
    let mut expected: Vec<String> = (0..HOLD_AT)
        .map(|i| {
            format!(
                "RECV {}",
                describe(&pipeline_request(i, b"rust-leader").into())
            )
        })
        .collect();
    expected.push("HOLD".into());
    assert_lines(&seen, &expected, "what the Go server received");
    // Its answers to the first 39 are in before it goes (a write failing after a peer's
    // reset closes the connection at once, with any answers still unread in the socket).
    wait_until("39 answers are in", || {
        pipeline.in_flight() == (DEPTH - answered) as usize
    });
    let gone = go.finish().succeeded("the Go server");
    assert!(gone.is_empty(), "the Go server printed {gone:?} as it went");

    let mut failures = Vec::new();
    for i in 0..DEPTH {
        let future = match pipeline.recv_deadline(Instant::now() + EVENTUALLY) {
            Ok(Some(future)) => future,
            Ok(None) => panic!("call {i} is still unresolved after {EVENTUALLY:?}"),
            Err(closed) => panic!("the pipeline closed ({closed}) with call {i} not handed out"),
        };
        assert_eq!(
            future.request().prev_log_entry,
            i,
            "each call ends once, in order"
        );
        let result = future.wait();
        if i < answered {
            let expected = answer(&pipeline_request(i, b"").into(), None).map_err(Error::Remote);
            assert_eq!(
                result.map(Response::from),
                expected,
                "the answer to call {i}"
            );
        } else {
            failures.push((i, result.expect_err("answered by a Go server that is gone")));
        }
    }
    assert!(
        pipeline.recv_deadline(Instant::now() + EVENTUALLY).is_err(),
        "no call ends twice: the pipeline is closed, and empty"
    );
    assert_eq!(failures.len() as u64, DEPTH - answered);
    // One connection's end, the same for every call: a reset (the Go process left requests
    // unread), or the end of the stream.
    let lost = &failures[0].1;
    assert!(
        matches!(lost, Error::Io(e) if matches!(
            e.kind(),
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
        )),
        "the calls fail with the connection: {lost:?}"
    );
    for (i, failure) in &failures {
        assert_eq!(failure, lost, "call {i} fails as the others do");
    }
    let after = client.append_entries(&id, &addr, pipeline_request(0, b"x"), Default::default());
    assert!(finish(after).is_err(), "a call to the dead address fails");
    pipeline.close();
    client.close();
}
