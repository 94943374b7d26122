//! `Config` from the outside: every value its setters accept builds a transport that works (a
//! zero that would mean nothing stands for the default, a zero or unreachable timeout for no
//! deadline), and `InmemTransport::with_config` honours the settings it lists, after `connect`
//! too.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::bodies::PatternReader;
use common::fixtures::FixedAddress;
use common::net::*;
use common::peers::*;
use raftnet::message::*;
use raftnet::*;

/// A snapshot of this many bytes: several default chunks, and more than a 1-byte buffer.
const SNAPSHOT: u64 = 1 << 20;

/// One append with a 64 KiB entry, one pipelined append and one snapshot, from `a` to `b`.
fn exercise(a: &NetTransport, b: &NetTransport) {
    let server = echo_server(b.consumer().clone());
    let target = b.local_addr();
    let answer = finish(a.append_entries(
        &peer(),
        &target,
        append(1, 0, 64 << 10),
        CallOptions::default(),
    ));
    assert_eq!(answer.map(|r| r.last_log), Ok(1));

    let pipeline = a
        .append_entries_pipeline(&peer(), &target)
        .expect("pipelining is on");
    let future = pipeline.send(append(1, 1, 16)).expect("send");
    assert_eq!(finish_append(&future).map(|r| r.last_log), Ok(2));
    pipeline.close();

    let request = InstallSnapshotRequest {
        term: 1,
        size: SNAPSHOT as i64,
        ..Default::default()
    };
    let body = Box::new(PatternReader::new(SNAPSHOT));
    let snapshot =
        finish(a.install_snapshot(&peer(), &target, request, body, CallOptions::default()));
    assert!(snapshot.expect("snapshot").success);
    a.close();
    b.close();
    join(server);
}

/// Zeros with no meaning of their own stand for the defaults: the frame limit (0 would refuse
/// every frame), the pipeline depth (0 would disable pipelining), the snapshot chunk and buffer
/// (0 would move no bytes), the timeout scale (0 would divide by zero) and the timeout (0 would
/// fail every call at once).
#[test]
fn zeros_that_would_mean_nothing_build_a_working_transport() {
    let config = Config::default()
        .max_frame_body(0)
        .max_rpcs_in_flight(0)
        .snapshot_chunk(0)
        .snapshot_buffer(0)
        .timeout_scale(0)
        .timeout(Some(Duration::ZERO));
    let (a, b) = pair(config);
    exercise(&a, &b);
}

/// A timeout too long for an `Instant` to hold means no deadline, for calls and for snapshot
/// budgets (`timeout × size / scale`) that grow past [`MAX_TIMEOUT`]. (`Instant + Duration::MAX`
/// panics, and on the transport's thread that would have failed every call.)
#[test]
fn timeouts_beyond_what_an_instant_holds_mean_no_deadline() {
    for config in [
        Config::default().timeout(Some(Duration::MAX)),
        Config::default()
            .timeout(Some(MAX_TIMEOUT))
            .timeout_scale(1),
    ] {
        let (a, b) = pair(config);
        exercise(&a, &b);
    }
}

// ---- InmemTransport::with_config --------------------------------------------------------------

/// (server, client) connected both ways; the client built from `config`. Connecting gives the
/// server a reference to the client, so the client's settings are tested as they hold once it
/// is shared.
fn inmem_pair(config: Config) -> (InmemTransport, InmemTransport) {
    let server = InmemTransport::new("");
    let client = InmemTransport::with_config("", config);
    server.connect(&client);
    client.connect(&server);
    (server, client)
}

#[test]
fn inmem_pipeline_depth_comes_from_the_config() {
    let (server, client) = inmem_pair(Config::default().max_rpcs_in_flight(5));
    let pipeline = client
        .append_entries_pipeline(&peer(), &server.local_addr())
        .expect("pipelining is on");
    let sent: Vec<AppendFuture> = (0..5)
        .map(|i| pipeline.try_send(append(1, i, 8)).expect("room for 5"))
        .collect();
    assert_eq!(pipeline.in_flight(), 5);
    assert!(matches!(
        pipeline.try_send(append(1, 5, 8)),
        Err(TrySendError::Full(_))
    ));

    // One answer makes room for exactly one more.
    echo(next_rpc(server.consumer()));
    assert_eq!(finish_append(&sent[0]).map(|r| r.last_log), Ok(1));
    wait_until("the answered append leaves the window", || {
        pipeline.in_flight() == 4
    });
    pipeline.try_send(append(1, 5, 8)).expect("room again");
    assert!(matches!(
        pipeline.try_send(append(1, 6, 8)),
        Err(TrySendError::Full(_))
    ));
    pipeline.close();
}

#[test]
fn inmem_depth_1_disables_pipelining() {
    let (server, client) = inmem_pair(Config::default().max_rpcs_in_flight(1));
    assert!(matches!(
        client.append_entries_pipeline(&peer(), &server.local_addr()),
        Err(Error::PipelineNotSupported)
    ));
}

/// `new` keeps hashicorp's in-memory timeout: a lost request fails with `Timeout`, not before
/// 500 ms.
#[test]
fn inmem_new_times_out_after_the_inmem_default() {
    let a = InmemTransport::new("");
    let b = InmemTransport::new("");
    a.connect(&b);
    a.set_link(&b.local_addr(), inmem::Link::Lossy);
    let started = Instant::now();
    let call = a.request_vote(&peer(), &b.local_addr(), vote(1), CallOptions::default());
    assert_eq!(finish(call), Err(Error::Timeout));
    assert!(started.elapsed() >= inmem::DEFAULT_INMEM_TIMEOUT);
}

/// Without a timeout a lost request waits, until the transport closes.
#[test]
fn inmem_without_timeout_waits_until_close() {
    let (server, client) = inmem_pair(Config::default().timeout(None));
    client.set_link(&server.local_addr(), inmem::Link::Lossy);
    let call = client.request_vote(
        &peer(),
        &server.local_addr(),
        vote(1),
        CallOptions::default(),
    );
    std::thread::sleep(NOT_WITHIN);
    assert!(
        call.try_result().is_none(),
        "a call without a deadline timed out"
    );
    client.close();
    assert_eq!(finish(call), Err(Error::Shutdown));
}

/// The address provider routes calls and pipelines, and is what `encode_peer` reports: the
/// target the caller gives leads nowhere.
#[test]
fn inmem_address_provider_routes_calls() {
    let server = InmemTransport::new("");
    let provider = Arc::new(FixedAddress(server.local_addr()));
    let client = InmemTransport::with_config("", Config::default().address_provider(provider));
    client.connect(&server);
    let nowhere = ServerAddress::from("inmem-nobody-is-connected-here");
    let responder = echo_server(server.consumer().clone());

    let call = client.request_vote(&peer(), &nowhere, vote(3), CallOptions::default());
    assert_eq!(finish(call).map(|r| r.term), Ok(3));
    let pipeline = client
        .append_entries_pipeline(&peer(), &nowhere)
        .expect("the provider's address is connected");
    let future = pipeline.send(append(1, 0, 8)).expect("send");
    assert_eq!(finish_append(&future).map(|r| r.last_log), Ok(1));
    assert_eq!(
        client.encode_peer(&peer(), &nowhere),
        bytes::Bytes::from(server.local_addr().0)
    );

    // Disconnecting the provider's address ends the pipeline opened through it.
    client.disconnect(&server.local_addr());
    assert!(matches!(
        pipeline.send(append(1, 1, 8)),
        Err(Error::PipelineClosed)
    ));
    server.close();
    join(responder);
}
