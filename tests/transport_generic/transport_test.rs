//! The ports of hashicorp/raft's generic `transport_test.go` (#19 to #24), each a function
//! over `T: Fixture` that `for_every_transport!` in main.rs runs on every transport.

use std::io::{self, Read};

use bytes::Bytes;
use raftnet::message::*;
use raftnet::*;

use crate::common::fixtures::*;
use crate::common::net::*;
use crate::common::peers::*;
use crate::default;
use crate::transports::Fixture;

// ---- transport_test.go ------------------------------------------------------------------------

/// #19 `TestTransport_StartStop`: create and close. Added: `close` is idempotent and afterwards
/// calls, pipelines and the consumer report `Error::Shutdown`.
pub(crate) fn start_stop<T: Fixture>() {
    let (server, client) = T::pair();
    client.close();
    client.close();
    let call = client.request_vote(&id(), &server.local_addr(), vote_request(), default());
    assert_eq!(finish(call), Err(Error::Shutdown));
    assert!(matches!(
        client.append_entries_pipeline(&id(), &server.local_addr()),
        Err(Error::Shutdown)
    ));
    assert!(matches!(client.consumer().try_recv(), Err(Error::Shutdown)));
}

/// #20 `TestTransport_AppendEntries`.
pub(crate) fn append_entries<T: Fixture>() {
    let (server, client) = T::pair();
    let responder = answer_with(server.consumer(), 1, |_| Ok(append_response().into()));
    let call = client.append_entries(&id(), &server.local_addr(), append_request(), default());
    assert_eq!(finish(call), Ok(append_response()));
    assert_eq!(
        join(responder),
        vec![Request::AppendEntries(append_request())]
    );
}

/// #21 `TestTransport_AppendEntriesPipeline`: ten pipelined appends, ten equal responses,
/// delivered in send order.
pub(crate) fn append_entries_pipeline<T: Fixture>() {
    let (server, client) = T::pair();
    let responder = answer_with(server.consumer(), 10, |request| {
        let Request::AppendEntries(r) = request else {
            return Err(format!("unexpected {request:?}"));
        };
        // Echo the sequence number so the order of completions can be checked.
        Ok(AppendEntriesResponse {
            last_log: r.prev_log_entry,
            ..append_response()
        }
        .into())
    });
    let pipeline = client
        .append_entries_pipeline(&id(), &server.local_addr())
        .expect("pipeline");
    let request = |i: u64| AppendEntriesRequest {
        prev_log_entry: 100 + i,
        ..append_request()
    };
    let sent: Vec<AppendFuture> = (0..10)
        .map(|i| pipeline.send(request(i)).expect("send"))
        .collect();
    for i in 0..10 {
        let mut ready = None;
        wait_until("a pipelined append completes", || {
            ready = pipeline.try_recv().expect("pipeline open");
            ready.is_some()
        });
        let ready = ready.expect("completed");
        assert_eq!(ready.request(), &request(i));
        assert_eq!(
            ready.try_result(),
            Some(Ok(AppendEntriesResponse {
                last_log: 100 + i,
                ..append_response()
            }))
        );
    }
    for (i, future) in (0..).zip(sent) {
        assert_eq!(future.wait().map(|r| r.last_log), Ok(100 + i));
    }
    let seen = join(responder);
    assert_eq!(
        seen,
        (0..10)
            .map(|i| Request::AppendEntries(request(i)))
            .collect::<Vec<_>>()
    );
    pipeline.close();
}

/// #22 `TestTransport_RequestVote`.
pub(crate) fn request_vote<T: Fixture>() {
    let (server, client) = T::pair();
    let responder = answer_with(server.consumer(), 1, |_| Ok(vote_response().into()));
    let call = client.request_vote(&id(), &server.local_addr(), vote_request(), default());
    assert_eq!(finish(call), Ok(vote_response()));
    assert_eq!(join(responder), vec![Request::RequestVote(vote_request())]);
}

/// Read a snapshot body to its end: the bytes, then how it ended.
pub(crate) fn read_body(reader: &mut SnapshotReader) -> (Vec<u8>, io::Result<usize>) {
    let mut body = Vec::new();
    let result = reader.read_to_end(&mut body);
    (body, result)
}

/// #23 `TestTransport_InstallSnapshot`: size 10 and "0123456789"; the receiver's reader yields
/// exactly those bytes and then ends; the response round-trips.
pub(crate) fn install_snapshot<T: Fixture>() {
    let (server, client) = T::pair();
    let responder = serve(server.consumer(), 1, |mut rpc| {
        let mut reader = rpc
            .snapshot
            .take()
            .expect("an InstallSnapshot carries a reader");
        let (body, end) = read_body(&mut reader);
        let request = rpc.request.clone();
        rpc.respond_ok(snapshot_response());
        (request, body, end.map_err(|e| e.to_string()))
    });
    let call = client.install_snapshot(
        &id(),
        &server.local_addr(),
        snapshot_request(),
        Box::new(io::Cursor::new(SNAPSHOT_BODY.to_vec())),
        default(),
    );
    assert_eq!(finish(call), Ok(snapshot_response()));
    assert_eq!(
        join(responder),
        vec![(
            Request::InstallSnapshot(snapshot_request()),
            SNAPSHOT_BODY.to_vec(),
            Ok(10)
        )]
    );
}

/// #24 `TestTransport_EncodeDecode`.
pub(crate) fn encode_decode<T: Fixture>() {
    let (server, _client) = T::pair();
    let local = server.local_addr();
    let encoded = server.encode_peer(&ServerId::from("aaaa"), &local);
    assert_eq!(encoded, Bytes::from(local.0.clone()));
    assert_eq!(server.decode_peer(&encoded), local);
}
