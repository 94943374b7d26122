//! hashicorp/raft's transport test fixtures, for the ports of its suites
//! (`net_transport_test.go`, `tcp_transport_test.go`, `inmem_transport_test.go`,
//! `transport_test.go`): transports built the way its `makeTransport` builds them, and the
//! requests and responses those tests send.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use raftnet::message::*;
use raftnet::*;

use super::net::{bind, unused_addr};

/// hashicorp's `makeTransport` timeout.
pub(crate) const HASHICORP_TIMEOUT: Duration = Duration::from_secs(1);

/// The timeout the ported tests actually use: a slow, noisy 2-core CI machine running the test
/// binaries in parallel can stall a responder thread for longer than hashicorp's 1 s, which would
/// turn a passing round trip into a spurious `Error::Timeout`. No test waits for this timeout to
/// expire unless it says so.
pub(crate) const TEST_TIMEOUT: Duration = Duration::from_secs(10);

/// hashicorp's `makeTransport` config: MaxPool 2, MaxRPCsInFlight 130, Timeout 1 s.
pub(crate) fn hashicorp_config() -> Config {
    Config::default()
        .max_pool(2)
        .max_rpcs_in_flight(130)
        .timeout(Some(HASHICORP_TIMEOUT))
}

/// [`hashicorp_config`] with the CI-safe [`TEST_TIMEOUT`].
pub(crate) fn test_config() -> Config {
    hashicorp_config().timeout(Some(TEST_TIMEOUT))
}

/// hashicorp's `testAddrProvider`: every id maps to one fixed address.
#[derive(Debug, Clone)]
pub(crate) struct FixedAddress(pub ServerAddress);

impl AddressProvider for FixedAddress {
    fn server_addr(&self, _id: &ServerId) -> Result<ServerAddress, String> {
        Ok(self.0.clone())
    }
}

/// A server ("trans1", the consumer side) and a client ("trans2", the caller), and the target
/// address the client passes on its calls.
#[derive(Debug)]
pub(crate) struct NetPair {
    pub server: NetTransport,
    pub client: NetTransport,
    pub target: ServerAddress,
}

/// The id every call in these tests is made with (hashicorp: "id1").
pub(crate) fn id() -> ServerId {
    ServerId::from("id1")
}

/// Build a server and a client from `config`. With `use_provider`, the client gets an
/// [`AddressProvider`] pointing at the server (hashicorp's `makeTransport(t, true, addr)`), and
/// the target the client is given is an address nobody listens on: a call can then only
/// succeed if the provider's address is the one dialled.
pub(crate) fn net_pair_with(config: Config, use_provider: bool) -> NetPair {
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
pub(crate) fn net_pair(use_provider: bool) -> NetPair {
    net_pair_with(test_config(), use_provider)
}

/// Two in-memory transports connected both ways (hashicorp's `trans1.Connect(addr2, trans2);
/// trans2.Connect(addr1, trans1)`), returned as (server, client).
pub(crate) fn inmem_pair(timeout: Duration) -> (InmemTransport, InmemTransport) {
    let config = Config::default().timeout(Some(timeout));
    let server = InmemTransport::with_config("", config.clone());
    let client = InmemTransport::with_config("", config);
    server.connect(&client);
    client.connect(&server);
    (server, client)
}

// ---- the requests and responses ------------------------------------------------------------

fn b(s: &str) -> Option<Bytes> {
    Some(Bytes::copy_from_slice(s.as_bytes()))
}

/// hashicorp's `makeAppendRPC`.
pub(crate) fn append_request() -> AppendEntriesRequest {
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
pub(crate) fn append_response() -> AppendEntriesResponse {
    AppendEntriesResponse {
        term: 4,
        last_log: 90,
        success: true,
        ..Default::default()
    }
}

/// hashicorp's `ProtocolVersionMax`.
pub(crate) const PROTOCOL_VERSION_MAX: i64 = 3;

/// The heartbeat of `TestNetworkTransport_Heartbeat_FastPath`.
pub(crate) fn heartbeat_request() -> AppendEntriesRequest {
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
pub(crate) fn vote_request() -> RequestVoteRequest {
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
pub(crate) fn vote_response() -> RequestVoteResponse {
    RequestVoteResponse {
        term: 100,
        granted: false,
        ..Default::default()
    }
}

/// `TestNetworkTransport_InstallSnapshot`'s request (the body is [`SNAPSHOT_BODY`]).
pub(crate) fn snapshot_request() -> InstallSnapshotRequest {
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
pub(crate) const SNAPSHOT_BODY: &[u8] = b"0123456789";

/// `TestNetworkTransport_InstallSnapshot`'s response.
pub(crate) fn snapshot_response() -> InstallSnapshotResponse {
    InstallSnapshotResponse {
        term: 10,
        success: true,
        ..Default::default()
    }
}

/// A pre-vote request with every field set (no hashicorp test sends one).
pub(crate) fn pre_vote_request() -> RequestPreVoteRequest {
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
pub(crate) fn pre_vote_response() -> RequestPreVoteResponse {
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

/// A TimeoutNow request with its header set (no hashicorp test sends one).
pub(crate) fn timeout_now_request() -> TimeoutNowRequest {
    TimeoutNowRequest {
        header: RpcHeader {
            protocol_version: PROTOCOL_VERSION_MAX,
            id: b("id2"),
            addr: b("kenny"),
        },
    }
}

/// The answer to [`timeout_now_request`].
pub(crate) fn timeout_now_response() -> TimeoutNowResponse {
    TimeoutNowResponse {
        header: RpcHeader {
            protocol_version: PROTOCOL_VERSION_MAX,
            id: b("id1"),
            addr: b("cartman"),
        },
    }
}
