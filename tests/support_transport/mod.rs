//! Helpers for the ports of hashicorp/raft's transport test suites (`net_transport_test.go`,
//! `tcp_transport_test.go`, `inmem_transport_test.go`, `transport_test.go`): transports built the
//! way hashicorp's `makeTransport` builds them, the request/response fixtures those tests use, a
//! responder thread, and bounded waits.
//!
//! Timing rule for every test using these helpers: nothing synchronises by sleeping. Waits are
//! bounded polls or blocking receives with generous deadlines ([`EVENTUALLY`]); fixed-length
//! waits only assert that something does *not* happen ([`NOT_WITHIN`]), or give a request that
//! may legitimately never arrive a chance to (transport_generic.rs `per_call_deadline`).
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raftnet::wire::*;
use raftnet::*;

/// hashicorp's `makeTransport` timeout.
pub const HASHICORP_TIMEOUT: Duration = Duration::from_secs(1);

/// The timeout the ported tests actually use: a slow, noisy 2-core CI machine running the test
/// binaries in parallel can stall a responder thread for longer than hashicorp's 1 s, which would
/// turn a passing round trip into a spurious `Error::Timeout`. No test waits for this timeout to
/// expire unless it says so.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long "happens eventually" may take before a test gives up.
pub const EVENTUALLY: Duration = Duration::from_secs(30);

/// How long a test watches for something that must *not* happen (a blocked send returning).
pub const NOT_WITHIN: Duration = Duration::from_millis(100);

/// hashicorp's `makeTransport` config: MaxPool 2, MaxRPCsInFlight 130, Timeout 1 s.
pub fn hashicorp_config() -> Config {
    Config::default()
        .max_pool(2)
        .max_rpcs_in_flight(130)
        .timeout(Some(HASHICORP_TIMEOUT))
}

/// [`hashicorp_config`] with the CI-safe [`TEST_TIMEOUT`].
pub fn test_config() -> Config {
    hashicorp_config().timeout(Some(TEST_TIMEOUT))
}

/// A transport on an ephemeral loopback port.
pub fn bind(config: Config) -> NetTransport {
    NetTransport::bind("127.0.0.1:0", None, config).expect("bind 127.0.0.1:0")
}

/// hashicorp's `testAddrProvider`: every id maps to one fixed address.
#[derive(Debug, Clone)]
pub struct FixedAddress(pub ServerAddress);

impl AddressProvider for FixedAddress {
    fn server_addr(&self, _id: &ServerId) -> Result<ServerAddress, String> {
        Ok(self.0.clone())
    }
}

/// A server ("trans1", the consumer side) and a client ("trans2", the caller), and the target
/// address the client passes on its calls.
#[derive(Debug)]
pub struct NetPair {
    pub server: NetTransport,
    pub client: NetTransport,
    pub target: ServerAddress,
}

/// The id every call in these tests is made with (hashicorp: "id1").
pub fn id() -> ServerId {
    ServerId::from("id1")
}

/// Build a server and a client from `config`. With `use_provider`, the client gets an
/// [`AddressProvider`] pointing at the server (hashicorp's `makeTransport(t, true, addr)`), and
/// the target the client is given is an address nobody listens on: a call can then only
/// succeed if the provider's address is the one dialled.
pub fn net_pair_with(config: Config, use_provider: bool) -> NetPair {
    let server = bind(config.clone());
    let client_config = if use_provider {
        config.address_provider(Arc::new(FixedAddress(server.local_addr())))
    } else {
        config
    };
    let client = bind(client_config);
    let target = if use_provider {
        unused_addr()
    } else {
        server.local_addr()
    };
    NetPair {
        server,
        client,
        target,
    }
}

/// [`net_pair_with`] using [`test_config`].
pub fn net_pair(use_provider: bool) -> NetPair {
    net_pair_with(test_config(), use_provider)
}

/// Two in-memory transports connected both ways (hashicorp's `trans1.Connect(addr2, trans2);
/// trans2.Connect(addr1, trans1)`), returned as (server, client).
pub fn inmem_pair(timeout: Duration) -> (InmemTransport, InmemTransport) {
    let server = InmemTransport::with_timeout("", timeout);
    let client = InmemTransport::with_timeout("", timeout);
    server.connect(&client);
    client.connect(&server);
    (server, client)
}

/// A loopback address nobody listens on (a port that was free a moment ago).
pub fn unused_addr() -> ServerAddress {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a probe listener");
    let addr: SocketAddr = listener.local_addr().expect("probe address");
    drop(listener);
    ServerAddress::from(addr)
}

/// Take the next RPC, failing the test if none arrives within [`EVENTUALLY`].
pub fn next_rpc(consumer: &Consumer) -> Rpc {
    match consumer.recv_timeout(EVENTUALLY) {
        Ok(Some(rpc)) => rpc,
        Ok(None) => panic!("no RPC arrived within {EVENTUALLY:?}"),
        Err(e) => panic!("the consumer failed while waiting for an RPC: {e}"),
    }
}

/// A responder thread: takes `n` RPCs from `consumer`, hands each to `handle` (which must
/// answer or drop it), and returns what `handle` returned for each, in arrival order. The
/// thread panics (failing the test at `join`) if an RPC does not arrive within [`EVENTUALLY`].
pub fn serve<R, F>(consumer: &Consumer, n: usize, mut handle: F) -> JoinHandle<Vec<R>>
where
    R: Send + 'static,
    F: FnMut(Rpc) -> R + Send + 'static,
{
    let consumer = consumer.clone();
    std::thread::Builder::new()
        .name("test-responder".into())
        .spawn(move || (0..n).map(|_| handle(next_rpc(&consumer))).collect())
        .expect("spawn the responder thread")
}

/// The common responder: answers `n` RPCs with `answer(&request)` and returns the requests it saw.
pub fn answer_with<F>(consumer: &Consumer, n: usize, mut answer: F) -> JoinHandle<Vec<Request>>
where
    F: FnMut(&Request) -> Result<Response, String> + Send + 'static,
{
    serve(consumer, n, move |rpc| {
        let request = rpc.request.clone();
        let result = answer(&request);
        rpc.respond(result);
        request
    })
}

/// Join a responder thread, propagating its panic.
pub fn join<R>(handle: JoinHandle<R>) -> R {
    match handle.join() {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Poll `condition` until it holds, failing the test after [`EVENTUALLY`].
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + EVENTUALLY;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "{what}: still not true after {EVENTUALLY:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Wait for a call's result, failing the test after [`EVENTUALLY`] (a hang is a failure, not a
/// stuck test run).
pub fn finish<T>(call: Call<T>) -> raftnet::Result<T> {
    match call.wait_deadline(Instant::now() + EVENTUALLY) {
        Ok(result) => result,
        Err(_) => panic!("the call was not resolved within {EVENTUALLY:?}"),
    }
}

/// Wait for a pipelined append's result, failing the test after [`EVENTUALLY`].
pub fn finish_append(future: &AppendFuture) -> raftnet::Result<AppendEntriesResponse> {
    wait_until("the append future resolves", || future.is_done());
    future.try_response().expect("resolved")
}

/// Assert that nothing arrives on `rx` within [`NOT_WITHIN`].
pub fn assert_nothing_within<T: std::fmt::Debug>(rx: &Receiver<T>, what: &str) {
    match rx.recv_timeout(NOT_WITHIN) {
        Err(RecvTimeoutError::Timeout) => {}
        Ok(v) => panic!("{what}: happened within {NOT_WITHIN:?} ({v:?})"),
        Err(RecvTimeoutError::Disconnected) => panic!("{what}: the sender went away"),
    }
}

/// Receive from `rx`, failing the test after [`EVENTUALLY`].
pub fn recv_eventually<T>(rx: &Receiver<T>, what: &str) -> T {
    rx.recv_timeout(EVENTUALLY)
        .unwrap_or_else(|e| panic!("{what}: {e:?} after {EVENTUALLY:?}"))
}

// ---- hashicorp's fixtures -------------------------------------------------------------------

fn b(s: &str) -> Option<Bytes> {
    Some(Bytes::copy_from_slice(s.as_bytes()))
}

/// hashicorp's `makeAppendRPC`.
pub fn append_request() -> AppendEntriesRequest {
    AppendEntriesRequest {
        header: RpcHeader {
            addr: b("cartman"),
            ..Default::default()
        },
        term: 10,
        prev_log_entry: 100,
        prev_log_term: 4,
        entries: vec![Log {
            index: 101,
            term: 4,
            kind: LogType::NOOP,
            ..Default::default()
        }],
        leader_commit_index: 90,
        ..Default::default()
    }
}

/// hashicorp's `makeAppendRPCResponse`.
pub fn append_response() -> AppendEntriesResponse {
    AppendEntriesResponse {
        term: 4,
        last_log: 90,
        success: true,
        ..Default::default()
    }
}

/// hashicorp's `ProtocolVersionMax`.
pub const PROTOCOL_VERSION_MAX: i64 = 3;

/// The heartbeat of `TestNetworkTransport_Heartbeat_FastPath`.
pub fn heartbeat_request() -> AppendEntriesRequest {
    AppendEntriesRequest {
        header: RpcHeader {
            protocol_version: PROTOCOL_VERSION_MAX,
            addr: b("cartman"),
            ..Default::default()
        },
        term: 10,
        leader: b("cartman"),
        ..Default::default()
    }
}

/// `TestNetworkTransport_RequestVote`'s request.
pub fn vote_request() -> RequestVoteRequest {
    RequestVoteRequest {
        header: RpcHeader {
            addr: b("butters"),
            ..Default::default()
        },
        term: 20,
        last_log_index: 100,
        last_log_term: 19,
        ..Default::default()
    }
}

/// `TestNetworkTransport_RequestVote`'s response.
pub fn vote_response() -> RequestVoteResponse {
    RequestVoteResponse {
        term: 100,
        granted: false,
        ..Default::default()
    }
}

/// `TestNetworkTransport_InstallSnapshot`'s request (the body is [`SNAPSHOT_BODY`]).
pub fn snapshot_request() -> InstallSnapshotRequest {
    InstallSnapshotRequest {
        header: RpcHeader {
            addr: b("kyle"),
            ..Default::default()
        },
        term: 10,
        last_log_index: 100,
        last_log_term: 9,
        peers: b("blah blah"),
        size: 10,
        ..Default::default()
    }
}

/// The snapshot body hashicorp streams.
pub const SNAPSHOT_BODY: &[u8] = b"0123456789";

/// `TestNetworkTransport_InstallSnapshot`'s response.
pub fn snapshot_response() -> InstallSnapshotResponse {
    InstallSnapshotResponse {
        term: 10,
        success: true,
        ..Default::default()
    }
}

/// A pre-vote request with every field set (no hashicorp test: a gap §5 lists).
pub fn pre_vote_request() -> RequestPreVoteRequest {
    RequestPreVoteRequest {
        header: RpcHeader {
            protocol_version: PROTOCOL_VERSION_MAX,
            id: b("id2"),
            addr: b("butters"),
        },
        term: 21,
        last_log_index: 100,
        last_log_term: 19,
    }
}

/// The answer to [`pre_vote_request`].
pub fn pre_vote_response() -> RequestPreVoteResponse {
    RequestPreVoteResponse {
        header: RpcHeader {
            protocol_version: PROTOCOL_VERSION_MAX,
            id: b("id1"),
            addr: b("cartman"),
        },
        term: 21,
        granted: true,
    }
}

/// A TimeoutNow request with its header set (no hashicorp test: a gap §5 lists).
pub fn timeout_now_request() -> TimeoutNowRequest {
    TimeoutNowRequest {
        header: RpcHeader {
            protocol_version: PROTOCOL_VERSION_MAX,
            id: b("id2"),
            addr: b("kenny"),
        },
    }
}

/// The answer to [`timeout_now_request`].
pub fn timeout_now_response() -> TimeoutNowResponse {
    TimeoutNowResponse {
        header: RpcHeader {
            protocol_version: PROTOCOL_VERSION_MAX,
            id: b("id1"),
            addr: b("cartman"),
        },
    }
}
