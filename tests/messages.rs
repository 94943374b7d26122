//! Behaviour of the message types themselves: hashicorp's heartbeat rule, timestamps, log types.

use bytes::Bytes;
use raftnet::message::*;

fn heartbeat() -> AppendEntriesRequest {
    AppendEntriesRequest {
        header: RpcHeader {
            protocol_version: 3,
            id: Some(Bytes::from_static(b"n1")),
            addr: Some(Bytes::from_static(b"cartman")),
        },
        term: 10,
        leader: Some(Bytes::from_static(b"cartman")),
        ..Default::default()
    }
}

#[test]
fn heartbeat_rule_follows_hashicorp() {
    assert!(heartbeat().is_heartbeat());

    // Any of these makes it an ordinary AppendEntries.
    let not = [
        AppendEntriesRequest {
            term: 0,
            ..heartbeat()
        },
        AppendEntriesRequest {
            prev_log_entry: 1,
            ..heartbeat()
        },
        AppendEntriesRequest {
            prev_log_term: 1,
            ..heartbeat()
        },
        AppendEntriesRequest {
            leader_commit_index: 1,
            ..heartbeat()
        },
        AppendEntriesRequest {
            entries: vec![Log::command(1, 10, &b"x"[..])],
            ..heartbeat()
        },
    ];
    for request in not {
        assert!(!request.is_heartbeat(), "{request:?}");
    }
}

#[test]
fn heartbeat_leader_address_nil_versus_empty() {
    // The header's Addr wins when it is non-empty, whatever Leader holds.
    let mut hb = heartbeat();
    hb.leader = None;
    assert!(hb.is_heartbeat());

    // An empty Addr falls back to Leader: an empty but non-nil Leader is a heartbeat (Go: a0)...
    hb.header.addr = Some(Bytes::new());
    hb.leader = Some(Bytes::new());
    assert!(hb.is_heartbeat());
    // ...a nil Leader is not (Go: c0), with Addr empty or nil.
    hb.leader = None;
    assert!(!hb.is_heartbeat());
    hb.header.addr = None;
    assert!(!hb.is_heartbeat());
    // A v1.1.2 leader sends no Addr at all, only Leader.
    hb.leader = Some(Bytes::from_static(b"cartman"));
    assert!(hb.is_heartbeat());
}

#[test]
fn timestamps() {
    assert!(Timestamp::ZERO.is_zero());
    assert_eq!(Timestamp::default(), Timestamp::ZERO);
    let now = Timestamp::now();
    assert!(!now.is_zero());
    assert!(now.unix_seconds > 1_700_000_000);
    assert!(now.nanos < 1_000_000_000);
    assert_eq!(now.utc_offset, None);

    let before_epoch = std::time::UNIX_EPOCH - std::time::Duration::from_millis(1500);
    assert_eq!(
        Timestamp::from(before_epoch),
        Timestamp {
            unix_seconds: -2,
            nanos: 500_000_000,
            utc_offset: None
        }
    );
    let exact = std::time::UNIX_EPOCH - std::time::Duration::from_secs(3);
    assert_eq!(Timestamp::from(exact).unix_seconds, -3);
    assert_eq!(Timestamp::from(exact).nanos, 0);
}

#[test]
fn log_types_keep_unknown_values() {
    assert_eq!(format!("{:?}", LogType::CONFIGURATION), "LogConfiguration");
    assert_eq!(format!("{:?}", LogType(42)), "LogType(42)");
    assert_eq!(LogType(42).name(), None);
    assert_eq!(LogType::BARRIER.name(), Some("LogBarrier"));
}

#[test]
fn message_conversions_and_types() {
    let m: Message = heartbeat().into();
    assert_eq!(Message::message_type(&m), MessageType::AppendEntries);
    let Message::Request(r) = &m else { panic!() };
    assert_eq!(r.header().protocol_version, 3);
    let m: Message = RequestPreVoteResponse::default().into();
    assert_eq!(
        Message::message_type(&m),
        MessageType::RequestPreVoteResponse
    );
    assert_eq!(
        Message::message_type(&Message::Error(String::new())),
        MessageType::Error
    );
    // docs/wire.md's table of message types: these twelve bytes, and no other, name a type.
    let documented = [
        (0x00, MessageType::AppendEntries),
        (0x01, MessageType::RequestVote),
        (0x02, MessageType::InstallSnapshot),
        (0x03, MessageType::TimeoutNow),
        (0x04, MessageType::RequestPreVote),
        (0x05, MessageType::SnapshotChunk),
        (0x80, MessageType::AppendEntriesResponse),
        (0x81, MessageType::RequestVoteResponse),
        (0x82, MessageType::InstallSnapshotResponse),
        (0x83, MessageType::TimeoutNowResponse),
        (0x84, MessageType::RequestPreVoteResponse),
        (0xFF, MessageType::Error),
    ];
    for (byte, kind) in documented {
        assert_eq!(kind as u8, byte, "{kind:?}'s byte");
        // Exhaustive: a new variant does not compile here until it joins the table above (and
        // docs/wire.md).
        match kind {
            MessageType::AppendEntries
            | MessageType::RequestVote
            | MessageType::InstallSnapshot
            | MessageType::TimeoutNow
            | MessageType::RequestPreVote
            | MessageType::SnapshotChunk
            | MessageType::AppendEntriesResponse
            | MessageType::RequestVoteResponse
            | MessageType::InstallSnapshotResponse
            | MessageType::TimeoutNowResponse
            | MessageType::RequestPreVoteResponse
            | MessageType::Error => {}
        }
    }
    for byte in 0..=255u8 {
        let expected = documented
            .iter()
            .find(|(b, _)| *b == byte)
            .map(|&(_, kind)| kind);
        assert_eq!(
            MessageType::from_u8(byte),
            expected,
            "type byte {byte:#04x}"
        );
    }
}
