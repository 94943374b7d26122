//! A real Go hashicorp/raft `NetworkTransport` (the interop program, `interop/hashicorp`)
//! against a raftnet listener that accepts both formats (`SniffingCodecFactory`): each of its
//! client sequences gets, byte for byte, the answers a hashicorp-only raftnet server gives it,
//! and a native raftnet client is answered on the same port in between. Skipped, saying why,
//! without Go (`common::go`).

mod common;

use std::sync::Arc;

use common::go::{interop_binary, run_go};
use common::net::{bind, finish};
use common::peers::{echo_server, peer, vote};
use raftnet::wire::SniffingCodecFactory;
use raftnet::wire::hashicorp::{GoRaftVersion, HashicorpCodecFactory};
use raftnet::{CallOptions, Config, Transport};

/// What the Go program prints running `mode` against a raftnet server of `config` that echoes
/// every request (`common::peers::echo`), failing the test if it exits with an error. With
/// `native_too`, a native raftnet client calls the server after the Go one.
fn go_against(mode: &str, config: Config, native_too: bool) -> Vec<String> {
    let server = bind(config);
    echo_server(server.consumer().clone());
    let lines = run_go(&[mode, &server.local_addr().to_string()]).expect("Go was found");
    if native_too {
        let native = bind(Config::default());
        let call = native.request_vote(
            &peer(),
            &server.local_addr(),
            vote(3),
            CallOptions::default(),
        );
        assert_eq!(finish(call).unwrap().term, 3);
        native.close();
    }
    assert_eq!(server.metrics().protocol_errors, 0, "{mode}");
    server.close();
    lines
}

#[test]
fn go_clients_get_the_same_answers_from_a_sniffing_listener() {
    if interop_binary().is_none() {
        return;
    }
    let version = GoRaftVersion::V1_1;
    for mode in ["client", "pipeline"] {
        let hashicorp_only = Config::default().codec(Arc::new(HashicorpCodecFactory::new(version)));
        let sniffing = Config::default().codec(Arc::new(SniffingCodecFactory::new(version)));
        let expected = go_against(mode, hashicorp_only, false);
        assert!(expected.len() >= 8, "{mode}:\n{expected:#?}");
        assert_eq!(go_against(mode, sniffing, true), expected, "{mode}");
    }
}
