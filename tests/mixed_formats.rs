//! raftnet in a mixed cluster, over TCP on loopback: one listener that accepts both formats
//! (`SniffingCodecFactory`) answers a native raftnet client and a hashicorp-format raftnet
//! client on the same port, at the same time, on every driver (the mio thread, io_uring, a
//! tokio task), for AppendEntries, RequestVote, a pipeline and an InstallSnapshot, and refuses a
//! first byte that is neither; and one node dials each peer in the peer's format
//! (`PeerCodecFactory`), against servers that each speak only one.
//!
//! A real Go client against the sniffing listener is in `hashicorp_interop.rs`.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;

use common::bodies::{PatternReader, pattern_byte};
use common::net::{EVENTUALLY, bind, bind_on_backend, finish, finish_append, wait_until};
use common::peers::{append, echo_response, peer, vote};
use raftnet::message::*;
use raftnet::wire::hashicorp::{GoRaftVersion, HashicorpCodecFactory};
use raftnet::wire::{CodecFactory, PeerCodecFactory, SniffingCodecFactory};
use raftnet::{Backend, CallOptions, Config, NetTransport, Rpc, ServerAddress, Transport};

const SNAPSHOT_SIZE: u64 = 1 << 20;

fn hashicorp() -> Arc<dyn CodecFactory> {
    Arc::new(HashicorpCodecFactory::new(GoRaftVersion::Latest))
}

fn sniffing() -> Arc<dyn CodecFactory> {
    Arc::new(SniffingCodecFactory::new(GoRaftVersion::Latest))
}

/// Answer every RPC of `server` until it closes: [`echo_response`], except that an
/// InstallSnapshot is answered with its body's length as the term and whether every byte was
/// [`pattern_byte`]'s as its success.
fn serve(server: &NetTransport) {
    let consumer = server.consumer().clone();
    std::thread::spawn(move || {
        while let Ok(rpc) = consumer.recv() {
            answer(rpc);
        }
    });
}

fn answer(mut rpc: Rpc) {
    let Some(mut reader) = rpc.snapshot.take() else {
        let response = echo_response(&rpc.request);
        return rpc.respond_ok(response);
    };
    let mut body = Vec::new();
    if let Err(e) = reader.read_to_end(&mut body) {
        return rpc.respond_err(format!("snapshot body: {e}"));
    }
    let intact = body
        .iter()
        .enumerate()
        .all(|(i, &b)| b == pattern_byte(i as u64));
    rpc.respond_ok(InstallSnapshotResponse {
        term: body.len() as u64,
        success: intact,
        ..Default::default()
    });
}

/// Every kind of call from `client` to `target`, each answer checked against its own request:
/// an AppendEntries, a RequestVote, 32 appends on a pipeline, a 1 MiB InstallSnapshot.
fn every_call(client: &NetTransport, target: &ServerAddress, term: u64) {
    let options = CallOptions::default;
    let request = append(term, 40, 3000);
    let answer = finish(client.append_entries(&peer(), target, request, options())).unwrap();
    assert_eq!((answer.term, answer.last_log), (term, 41));

    let request = vote(term);
    let expected = request.candidate.clone();
    let answer = finish(client.request_vote(&peer(), target, request, options())).unwrap();
    assert_eq!((answer.term, answer.granted), (term, true));
    assert_eq!(answer.peers, expected, "the answer to this very vote");

    let pipeline = client.append_entries_pipeline(&peer(), target).unwrap();
    let futures: Vec<_> = (0..32)
        .map(|prev| pipeline.send(append(term, prev, 100)).unwrap())
        .collect();
    for (prev, future) in (0..32).zip(&futures) {
        let answer = finish_append(future).unwrap();
        assert_eq!((answer.term, answer.last_log), (term, prev + 1));
    }
    pipeline.close();

    let request = InstallSnapshotRequest {
        term,
        size: SNAPSHOT_SIZE as i64,
        ..Default::default()
    };
    let body = Box::new(PatternReader::new(SNAPSHOT_SIZE));
    let answer =
        finish(client.install_snapshot(&peer(), target, request, body, options())).unwrap();
    assert_eq!((answer.term, answer.success), (SNAPSHOT_SIZE, true));
}

/// A native client and a hashicorp one call `server` at once, every kind of call; then a
/// connection whose first bytes are HTTP is refused, and the server still answers.
fn both_formats_on_one_port(server: NetTransport) {
    serve(&server);
    let target = server.local_addr();
    let native = bind(Config::default());
    let go_like = bind(Config::default().codec(hashicorp()));
    std::thread::scope(|s| {
        s.spawn(|| every_call(&native, &target, 5));
        s.spawn(|| every_call(&go_like, &target, 6));
    });
    assert_eq!(server.metrics().protocol_errors, 0);

    let mut http = TcpStream::connect(server.bound_addr()).unwrap();
    http.set_read_timeout(Some(EVENTUALLY)).unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: raftnet\r\n\r\n")
        .unwrap();
    // Closed without an answer.
    let mut rest = Vec::new();
    let _ = http.read_to_end(&mut rest);
    assert_eq!(rest, b"");
    wait_until("the refusal counted", || {
        server.metrics().protocol_errors == 1
    });
    every_call(&native, &target, 7);
    every_call(&go_like, &target, 8);
    for t in [server, native, go_like] {
        t.close();
    }
}

#[test]
fn a_sniffing_listener_serves_both_formats_on_the_mio_thread() {
    let config = Config::default().codec(sniffing());
    let test = "a_sniffing_listener_serves_both_formats_on_the_mio_thread";
    both_formats_on_one_port(bind_on_backend(Backend::Epoll, config, test).unwrap());
}

#[test]
fn a_sniffing_listener_serves_both_formats_on_io_uring() {
    let config = Config::default().codec(sniffing());
    let test = "a_sniffing_listener_serves_both_formats_on_io_uring";
    if let Some(server) = bind_on_backend(Backend::Uring, config, test) {
        both_formats_on_one_port(server);
    }
}

#[test]
fn a_sniffing_listener_serves_both_formats_on_a_tokio_task() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = Config::default().codec(sniffing());
    let server = NetTransport::bind_on("127.0.0.1:0", None, config, runtime.handle()).unwrap();
    both_formats_on_one_port(server);
}

/// Without its peer table, a native client cannot call a server that speaks only hashicorp's
/// format, nor a hashicorp one a native server: the formats really differ on the wire (so the
/// tests above would fail if a format were not chosen per connection).
#[test]
fn a_single_format_server_refuses_the_other_format() {
    let native_only = bind(Config::default());
    let hashicorp_only = bind(Config::default().codec(hashicorp()));
    let native = bind(Config::default());
    let go_like = bind(Config::default().codec(hashicorp()));
    let call = |client: &NetTransport, server: &NetTransport| {
        let target = server.local_addr();
        finish(client.request_vote(&peer(), &target, vote(1), CallOptions::default()))
    };
    // The hashicorp server reads the native preamble's `R` as an rpc type it does not know.
    assert!(call(&native, &hashicorp_only).is_err());
    wait_until("the refusal counted", || {
        hashicorp_only.metrics().protocol_errors == 1
    });
    // The native server's preamble reaches the hashicorp client as its answer, or the server
    // refuses the request first: either way the call fails.
    assert!(call(&go_like, &native_only).is_err());
}

/// One node dials a native-only server natively and a hashicorp-only server in hashicorp's
/// format, by its peer table, and accepts both formats itself.
#[test]
fn a_node_dials_each_peer_in_its_format() {
    let native_only = bind(Config::default());
    let hashicorp_only = bind(Config::default().codec(hashicorp()));
    serve(&native_only);
    serve(&hashicorp_only);
    let go_addr: SocketAddr = hashicorp_only.bound_addr();
    let formats = Arc::new(PeerCodecFactory::new(sniffing()).peer(go_addr, hashicorp()));
    let node = bind(Config::default().codec(formats.clone()));
    std::thread::scope(|s| {
        s.spawn(|| every_call(&node, &native_only.local_addr(), 3));
        s.spawn(|| every_call(&node, &hashicorp_only.local_addr(), 4));
    });
    assert_eq!(native_only.metrics().protocol_errors, 0);
    assert_eq!(hashicorp_only.metrics().protocol_errors, 0);

    // Both peers call the node, each in its own format.
    serve(&node);
    every_call(&native_only, &node.local_addr(), 9);
    every_call(&hashicorp_only, &node.local_addr(), 10);
    assert_eq!(node.metrics().protocol_errors, 0);
    for t in [node, native_only, hashicorp_only] {
        t.close();
    }
}
