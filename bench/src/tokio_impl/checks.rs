//! The checks catch what they are there for, as on raftnet's side: a wrong answer ends the
//! driver, a damaged snapshot body is refused and says where.

use super::tasks::sequential;
use super::*;
use crate::check::TERM;
use crate::tokio_net::Payload;
use crate::tokio_net::client::Client;
use crate::tokio_net::requests::{Snapshot, heartbeat};

fn server_and_client(findings: &Findings) -> (Runtime, Client<Message>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let addr = runtime
        .block_on(start_server(Routing::in_connection(), findings.clone()))
        .unwrap();
    let client = runtime.block_on(Client::<Message>::connect(addr)).unwrap();
    (runtime, client)
}

#[test]
fn a_wrong_term_ends_the_driver() {
    let _load = crate::measure::test_lock::loading();
    let findings = Findings::new();
    let (runtime, client) = server_and_client(&findings);
    let control = Control::new();
    control.start_measuring();
    let Message::AppendEntries(mut request) = heartbeat() else {
        unreachable!()
    };
    request.term = TERM - 1;
    let request = Message::AppendEntries(request);
    let err = runtime
        .block_on(sequential(
            &client,
            &request,
            Answer::heartbeat(),
            0,
            &control,
        ))
        .unwrap_err();
    assert!(
        err.starts_with("wrong answer: AppendEntries(term 6"),
        "{err}"
    );
}

#[test]
fn a_flipped_snapshot_byte_is_refused() {
    let _load = crate::measure::test_lock::loading();
    let findings = Findings::new();
    let (runtime, client) = server_and_client(&findings);
    let mut snapshot = Snapshot::new();
    // Byte 12,345,678 of the body: chunk 47 (256 KiB chunks), offset 24,910 in it.
    let Message::SnapshotChunk { data, .. } = &mut snapshot.chunks[47] else {
        unreachable!()
    };
    let mut flipped = data.to_vec();
    flipped[24_910] ^= 0x20;
    *data = Payload(flipped.into());
    let response = runtime
        .block_on(client.install_snapshot(&snapshot))
        .unwrap();
    let err = findings
        .explain(answer_of(&response).check(Answer::snapshot()))
        .unwrap_err();
    assert!(
        err.contains("success false") && err.contains("byte 12345678 is"),
        "{err}"
    );
}
