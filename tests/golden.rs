//! Golden byte vectors of the native format, checked in under tests/golden/. Each vector is
//! encoded and compared byte for byte, and decoded and compared field for field, so any change
//! to the format (deliberate or not) fails here. Each is also read by another msgpack reader
//! (`rmpv`) and checked against the tables of docs/wire.md, so the vectors do not only agree
//! with the encoder that wrote them. A deliberate change bumps `WIRE_VERSION`, updates
//! docs/wire.md, and rewrites the vectors with `RAFTNET_BLESS=1 cargo test --test golden`.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use bytes::Bytes;
use common::wire::*;
use raftnet::message::*;
use raftnet::wire::native::*;
use raftnet::wire::*;

fn header(id: &str, addr: &str) -> RpcHeader {
    RpcHeader {
        protocol_version: 3,
        id: Some(Bytes::copy_from_slice(id.as_bytes())),
        addr: Some(Bytes::copy_from_slice(addr.as_bytes())),
    }
}

fn frame(request_id: u64, lane: Lane, flags: Flags, message: impl Into<Message>) -> Frame {
    Frame {
        request_id,
        lane,
        flags,
        message: message.into(),
    }
}

/// The vectors: name, frame.
fn vectors() -> Vec<(&'static str, Frame)> {
    let cartman = || Some(Bytes::from_static(b"cartman"));
    vec![
        (
            "heartbeat",
            frame(
                1,
                Lane::Heartbeat,
                Flags::NONE,
                AppendEntriesRequest {
                    header: header("n1", "cartman"),
                    term: 10,
                    leader: cartman(),
                    ..Default::default()
                },
            ),
        ),
        (
            "append_entries",
            frame(
                2,
                Lane::Pipeline,
                Flags::NONE,
                AppendEntriesRequest {
                    header: header("n1", "cartman"),
                    term: 10,
                    leader: cartman(),
                    prev_log_entry: 100,
                    prev_log_term: 4,
                    leader_commit_index: 90,
                    entries: vec![
                        Log {
                            index: 101,
                            term: 4,
                            kind: LogType::COMMAND,
                            data: Some(Bytes::from_static(b"hi")),
                            extensions: None,
                            // 2024-01-02T03:04:05.000006Z
                            appended_at: Timestamp {
                                unix_seconds: 1_704_164_645,
                                nanos: 6_000,
                                utc_offset: None,
                            },
                        },
                        Log {
                            index: 102,
                            term: 4,
                            kind: LogType(200),
                            data: Some(Bytes::new()),
                            extensions: Some(Bytes::from_static(b"\x01\x02")),
                            appended_at: Timestamp {
                                unix_seconds: -5,
                                nanos: 999_999_999,
                                utc_offset: Some(-5 * 3600),
                            },
                        },
                        Log {
                            index: 103,
                            term: 4,
                            kind: LogType::NOOP,
                            data: None,
                            extensions: None,
                            appended_at: Timestamp::ZERO,
                        },
                    ],
                },
            ),
        ),
        (
            "append_entries_response",
            frame(
                2,
                Lane::Pipeline,
                Flags::NONE,
                AppendEntriesResponse {
                    header: header("n2", "kyle"),
                    term: 10,
                    last_log: 103,
                    success: true,
                    no_retry_backoff: false,
                },
            ),
        ),
        (
            "request_vote",
            frame(
                3,
                Lane::Control,
                Flags::NONE,
                RequestVoteRequest {
                    header: header("n1", "cartman"),
                    term: 11,
                    candidate: cartman(),
                    last_log_index: 103,
                    last_log_term: 10,
                    leadership_transfer: true,
                },
            ),
        ),
        (
            "request_vote_response",
            frame(
                3,
                Lane::Control,
                Flags::NONE,
                RequestVoteResponse {
                    header: header("n2", "kyle"),
                    term: 11,
                    peers: None,
                    granted: true,
                },
            ),
        ),
        (
            "request_pre_vote",
            frame(
                4,
                Lane::Control,
                Flags::NONE,
                RequestPreVoteRequest {
                    header: RpcHeader {
                        protocol_version: 3,
                        id: None,
                        addr: None,
                    },
                    term: 11,
                    last_log_index: 5,
                    last_log_term: 2,
                },
            ),
        ),
        (
            "request_pre_vote_response",
            frame(
                4,
                Lane::Control,
                Flags::NONE,
                RequestPreVoteResponse {
                    header: header("n2", "kyle"),
                    term: 11,
                    granted: false,
                },
            ),
        ),
        (
            "install_snapshot",
            frame(
                5,
                Lane::Snapshot,
                Flags::NONE,
                InstallSnapshotRequest {
                    header: header("n1", "cartman"),
                    snapshot_version: 1,
                    term: 10,
                    leader: Some(Bytes::from_static(b"a")),
                    last_log_index: 100,
                    last_log_term: 9,
                    peers: None,
                    configuration: Some(Bytes::from_static(b"\x81\xa7Servers\x90")),
                    configuration_index: 1,
                    size: 1000,
                },
            ),
        ),
        (
            "snapshot_chunk_end",
            frame(
                5,
                Lane::Snapshot,
                Flags::END_STREAM,
                Message::SnapshotChunk(Bytes::from_static(b"hello")),
            ),
        ),
        (
            "install_snapshot_response",
            frame(
                5,
                Lane::Snapshot,
                Flags::NONE,
                InstallSnapshotResponse {
                    header: RpcHeader::default(),
                    term: 10,
                    success: true,
                },
            ),
        ),
        (
            "timeout_now",
            frame(
                6,
                Lane::Control,
                Flags::NONE,
                TimeoutNowRequest {
                    header: header("n1", "cartman"),
                },
            ),
        ),
        (
            "timeout_now_response",
            frame(6, Lane::Control, Flags::NONE, TimeoutNowResponse::default()),
        ),
        (
            "error",
            frame(
                u64::MAX,
                Lane::Control,
                Flags::NONE,
                Message::Error("operation not supported with current protocol version".into()),
            ),
        ),
    ]
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// Vector files are hex, with `#` comments and free whitespace.
fn parse_hex(text: &str) -> Vec<u8> {
    let digits: String = text
        .lines()
        .map(|l| l.split('#').next().unwrap())
        .flat_map(|l| l.chars().filter(|c| !c.is_whitespace()))
        .collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex"))
        .collect()
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn render(name: &str, bytes: &[u8]) -> String {
    let (head, body) = bytes.split_at(HEADER_LEN);
    let mut out = format!(
        "# raftnet native wire format v{WIRE_VERSION}: {name}\n\
         # header: body_len type flags lane reserved request_id\n\
         {} {} {} {} {} {}\n# body ({} bytes)\n",
        to_hex(&head[0..4]),
        to_hex(&head[4..5]),
        to_hex(&head[5..6]),
        to_hex(&head[6..7]),
        to_hex(&head[7..8]),
        to_hex(&head[8..16]),
        body.len()
    );
    for line in body.chunks(32) {
        out.push_str(&to_hex(line));
        out.push('\n');
    }
    out
}

#[test]
fn golden_vectors() {
    let bless = std::env::var_os("RAFTNET_BLESS").is_some();
    let mut failures = Vec::new();
    for (name, frame) in vectors() {
        let encoded = encode_stream(&FrameEncoder::new(), std::slice::from_ref(&frame))
            [PREAMBLE_LEN..]
            .to_vec();
        let path = golden_dir().join(format!("{name}.hex"));
        if bless {
            std::fs::create_dir_all(golden_dir()).unwrap();
            std::fs::write(&path, render(name, &encoded)).unwrap();
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run with RAFTNET_BLESS=1 to create it)",
                path.display()
            )
        });
        let golden = parse_hex(&text);
        if golden != encoded {
            failures.push(format!(
                "{name}: encoding changed\n  golden:  {}\n  encoded: {}",
                to_hex(&golden),
                to_hex(&encoded)
            ));
        }
        let (frames, end) = decode_stream(FrameDecoder::new().without_preamble(), &golden);
        assert_eq!(end, Ok(()), "{name}");
        if frames != vec![frame] {
            failures.push(format!("{name}: golden bytes decode to {frames:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn golden_preamble() {
    assert_eq!(PREAMBLE, *b"RAFTNET\x01");
    assert_eq!(WIRE_VERSION, 1);
}

/// A few bytes checked by hand against docs/wire.md, so the vectors are not only self-consistent.
#[test]
fn heartbeat_bytes_match_the_spec() {
    let (_, frame) = vectors().remove(0);
    let bytes = encode_stream(&FrameEncoder::new(), &[frame])[PREAMBLE_LEN..].to_vec();
    let expected_body: &[u8] = &[
        0x99, // array of 9 fields
        0x03, // protocol_version 3
        0xc4, 0x02, b'n', b'1', // id: bin8 "n1"
        0xc4, 0x07, b'c', b'a', b'r', b't', b'm', b'a', b'n', // addr
        0x0a, // term 10
        0xc4, 0x07, b'c', b'a', b'r', b't', b'm', b'a', b'n', // leader
        0x00, 0x00, 0x00, // prev_log_entry, prev_log_term, leader_commit_index
        0x90, // no entries
    ];
    let mut expected = vec![
        0,
        0,
        0,
        expected_body.len() as u8,
        0x00,
        0x00,
        0x01,
        0x00,
        0,
        0,
        0,
        0,
        0,
        0,
        0,
        1,
    ];
    expected.extend_from_slice(expected_body);
    assert_eq!(bytes, expected);
}

// ---- the vectors against docs/wire.md, read by another msgpack reader ------------------------
//
// The vectors are written by the encoder they test, so `golden_vectors` alone would bless a
// mistake made in both the encoder and the decoder. Here every vector is read by `rmpv` (a
// general msgpack reader that knows nothing of raftnet) and checked field by field against the
// tables of docs/wire.md, parsed from the document itself: the header layout, the message
// types, lanes and flags, and each message's fields in order with their types.

/// docs/wire.md.
fn wire_doc() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/wire.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The rows (cells trimmed, backticks removed) of the first table after the line `after`, the
/// header row and the separator row left out.
fn doc_table(doc: &str, after: &str) -> Vec<Vec<String>> {
    let start = doc
        .find(after)
        .unwrap_or_else(|| panic!("docs/wire.md has no {after:?}"));
    let rows: Vec<Vec<String>> = doc[start..]
        .lines()
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim()
                .trim_matches('|')
                .split('|')
                .map(|c| c.trim().replace('`', ""))
                .collect()
        })
        .collect();
    assert!(rows.len() > 2, "docs/wire.md: no table after {after:?}");
    rows[2..].to_vec()
}

/// The type of a field as docs/wire.md gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum DocType {
    U64,
    U32,
    U8,
    I64,
    Bool,
    Bytes,
    OptionalI32,
    ArrayOfLog,
}

/// One field of a message: its name and type, in the order the docs list them.
#[derive(Debug, Clone)]
struct DocField {
    name: String,
    ty: DocType,
}

/// A field's type, from what follows its name: `u64`, `bytes`, `array of Log`, or a note in
/// parentheses ending in the type, as in `(nil = UTC, else seconds east of UTC, i32)`.
fn doc_type(spec: &str) -> DocType {
    let spec = spec.trim();
    let (word, note) = match spec.split_once('(') {
        Some((before, note)) => (before.trim(), note.trim_end_matches(')')),
        None => (spec, ""),
    };
    match word {
        "u64" => DocType::U64,
        "u32" => DocType::U32,
        "u8" => DocType::U8,
        "i64" => DocType::I64,
        "bool" => DocType::Bool,
        "bytes" => DocType::Bytes,
        "array of Log" => DocType::ArrayOfLog,
        "" if note.contains("nil") && note.trim().ends_with("i32") => DocType::OptionalI32,
        other => panic!("docs/wire.md: unknown field type {other:?} in {spec:?}"),
    }
}

/// Split at commas outside parentheses.
fn split_top_level(list: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in list.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(list[start..i].trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(list[start..].trim());
    parts
}

/// Each message's fields in order (and Log's), from the "fields in order" table; the flattened
/// `RpcHeader` fields take their types from the sentence that introduces them.
fn doc_fields(doc: &str) -> BTreeMap<String, Vec<DocField>> {
    // "`protocol_version` (i64), `id` (bytes), `addr` (bytes)."
    let sentence = doc
        .lines()
        .find(|l| l.starts_with("`protocol_version` ("))
        .expect("docs/wire.md: the RpcHeader sentence");
    let header_types: BTreeMap<String, DocType> = split_top_level(sentence.trim_end_matches('.'))
        .into_iter()
        .map(|part| {
            let (name, ty) = part.split_once(' ').expect("`name` (type)");
            let ty = ty.trim().trim_start_matches('(').trim_end_matches(')');
            (name.replace('`', ""), doc_type(ty))
        })
        .collect();
    let mut messages = BTreeMap::new();
    for row in doc_table(doc, "| message | fields in order |") {
        // "AppendEntriesRequest (9)" or "Log (8, nested array)"
        let (name, count) = row[0].split_once(" (").expect("name (count)");
        let count: usize = count
            .trim_end_matches(')')
            .split(',')
            .next()
            .unwrap()
            .parse()
            .expect("a field count");
        let fields: Vec<DocField> = split_top_level(&row[1])
            .into_iter()
            .map(|spec| match spec.split_once(' ') {
                Some((name, ty)) => DocField {
                    name: name.to_string(),
                    ty: doc_type(ty),
                },
                None => DocField {
                    name: spec.to_string(),
                    ty: header_types
                        .get(spec)
                        .unwrap_or_else(|| panic!("docs/wire.md: {spec} has no type"))
                        .clone(),
                },
            })
            .collect();
        assert_eq!(
            fields.len(),
            count,
            "docs/wire.md: {name} lists {count} fields"
        );
        messages.insert(name.to_string(), fields);
    }
    messages
}

/// docs/wire.md's name for a message, as its tables use it.
fn doc_name(message: &Message) -> &'static str {
    match message {
        Message::Request(Request::AppendEntries(_)) => "AppendEntriesRequest",
        Message::Request(Request::RequestVote(_)) => "RequestVoteRequest",
        Message::Request(Request::InstallSnapshot(_)) => "InstallSnapshotRequest",
        Message::Request(Request::TimeoutNow(_)) => "TimeoutNowRequest",
        Message::Request(Request::RequestPreVote(_)) => "RequestPreVoteRequest",
        Message::Response(Response::AppendEntries(_)) => "AppendEntriesResponse",
        Message::Response(Response::RequestVote(_)) => "RequestVoteResponse",
        Message::Response(Response::InstallSnapshot(_)) => "InstallSnapshotResponse",
        Message::Response(Response::TimeoutNow(_)) => "TimeoutNowResponse",
        Message::Response(Response::RequestPreVote(_)) => "RequestPreVoteResponse",
        Message::SnapshotChunk(_) => "SnapshotChunk",
        Message::Error(_) => "Error",
    }
}

/// A field's value as the test's own `Frame` holds it, by the docs' field name.
#[derive(Debug, Clone, PartialEq)]
enum Expected {
    /// An unsigned integer field, with its Rust type's docs name.
    Unsigned(u64, DocType),
    Signed(i64),
    Bool(bool),
    Bytes(Option<Bytes>),
    OptionalI32(Option<i32>),
    Logs(Vec<Log>),
}

impl Expected {
    /// The docs type this Rust value must be documented as.
    fn doc_type(&self) -> DocType {
        match self {
            Expected::Unsigned(_, ty) => ty.clone(),
            Expected::Signed(_) => DocType::I64,
            Expected::Bool(_) => DocType::Bool,
            Expected::Bytes(_) => DocType::Bytes,
            Expected::OptionalI32(_) => DocType::OptionalI32,
            Expected::Logs(_) => DocType::ArrayOfLog,
        }
    }
}

fn header_field(header: &RpcHeader, name: &str) -> Option<Expected> {
    Some(match name {
        "protocol_version" => Expected::Signed(header.protocol_version),
        "id" => Expected::Bytes(header.id.clone()),
        "addr" => Expected::Bytes(header.addr.clone()),
        _ => return None,
    })
}

/// The field `name` of `message` (written out by hand for every message, so that a field the
/// docs name but the message lacks, or the other way round, shows).
fn message_field(message: &Message, name: &str) -> Expected {
    use Expected::{Bool, Bytes as B, Logs, Signed};
    let u64 = |v: u64| Expected::Unsigned(v, DocType::U64);
    let found = match message {
        Message::Request(Request::AppendEntries(r)) => {
            header_field(&r.header, name).or(match name {
                "term" => Some(u64(r.term)),
                "leader" => Some(B(r.leader.clone())),
                "prev_log_entry" => Some(u64(r.prev_log_entry)),
                "prev_log_term" => Some(u64(r.prev_log_term)),
                "leader_commit_index" => Some(u64(r.leader_commit_index)),
                "entries" => Some(Logs(r.entries.clone())),
                _ => None,
            })
        }
        Message::Request(Request::RequestVote(r)) => header_field(&r.header, name).or(match name {
            "term" => Some(u64(r.term)),
            "candidate" => Some(B(r.candidate.clone())),
            "last_log_index" => Some(u64(r.last_log_index)),
            "last_log_term" => Some(u64(r.last_log_term)),
            "leadership_transfer" => Some(Bool(r.leadership_transfer)),
            _ => None,
        }),
        Message::Request(Request::InstallSnapshot(r)) => {
            header_field(&r.header, name).or(match name {
                "snapshot_version" => Some(Signed(r.snapshot_version)),
                "term" => Some(u64(r.term)),
                "leader" => Some(B(r.leader.clone())),
                "last_log_index" => Some(u64(r.last_log_index)),
                "last_log_term" => Some(u64(r.last_log_term)),
                "peers" => Some(B(r.peers.clone())),
                "configuration" => Some(B(r.configuration.clone())),
                "configuration_index" => Some(u64(r.configuration_index)),
                "size" => Some(Signed(r.size)),
                _ => None,
            })
        }
        Message::Request(Request::TimeoutNow(r)) => header_field(&r.header, name),
        Message::Request(Request::RequestPreVote(r)) => {
            header_field(&r.header, name).or(match name {
                "term" => Some(u64(r.term)),
                "last_log_index" => Some(u64(r.last_log_index)),
                "last_log_term" => Some(u64(r.last_log_term)),
                _ => None,
            })
        }
        Message::Response(Response::AppendEntries(r)) => {
            header_field(&r.header, name).or(match name {
                "term" => Some(u64(r.term)),
                "last_log" => Some(u64(r.last_log)),
                "success" => Some(Bool(r.success)),
                "no_retry_backoff" => Some(Bool(r.no_retry_backoff)),
                _ => None,
            })
        }
        Message::Response(Response::RequestVote(r)) => {
            header_field(&r.header, name).or(match name {
                "term" => Some(u64(r.term)),
                "peers" => Some(B(r.peers.clone())),
                "granted" => Some(Bool(r.granted)),
                _ => None,
            })
        }
        Message::Response(Response::InstallSnapshot(r)) => {
            header_field(&r.header, name).or(match name {
                "term" => Some(u64(r.term)),
                "success" => Some(Bool(r.success)),
                _ => None,
            })
        }
        Message::Response(Response::TimeoutNow(r)) => header_field(&r.header, name),
        Message::Response(Response::RequestPreVote(r)) => {
            header_field(&r.header, name).or(match name {
                "term" => Some(u64(r.term)),
                "granted" => Some(Bool(r.granted)),
                _ => None,
            })
        }
        Message::SnapshotChunk(_) | Message::Error(_) => None,
    };
    found.unwrap_or_else(|| {
        panic!(
            "docs/wire.md names a field {name} that {} does not have",
            doc_name(message)
        )
    })
}

fn log_field(log: &Log, name: &str) -> Expected {
    match name {
        "index" => Expected::Unsigned(log.index, DocType::U64),
        "term" => Expected::Unsigned(log.term, DocType::U64),
        "kind" => Expected::Unsigned(u64::from(log.kind.0), DocType::U8),
        "data" => Expected::Bytes(log.data.clone()),
        "extensions" => Expected::Bytes(log.extensions.clone()),
        "appended_at.unix_seconds" => Expected::Signed(log.appended_at.unix_seconds),
        "appended_at.nanos" => Expected::Unsigned(u64::from(log.appended_at.nanos), DocType::U32),
        "appended_at.utc_offset" => Expected::OptionalI32(log.appended_at.utc_offset),
        _ => panic!("docs/wire.md names a Log field {name} that Log does not have"),
    }
}

/// Check the msgpack `value` read at `path` against the docs' `field` and the frame's value.
fn check_field(
    path: &str,
    field: &DocField,
    value: &rmpv::Value,
    expected: &Expected,
    docs: &BTreeMap<String, Vec<DocField>>,
) {
    use rmpv::Value;
    assert_eq!(
        expected.doc_type(),
        field.ty,
        "{path}: docs/wire.md gives its type as {:?}, the message holds {expected:?}",
        field.ty
    );
    let unsigned = |max: u64| match value {
        Value::Integer(i) => i
            .as_u64()
            .filter(|&v| v <= max)
            .unwrap_or_else(|| panic!("{path}: {value} is out of range for {:?}", field.ty)),
        other => panic!(
            "{path}: expected an integer ({:?}), read {other:?}",
            field.ty
        ),
    };
    match (&field.ty, expected) {
        (DocType::U64, Expected::Unsigned(v, _)) => assert_eq!(unsigned(u64::MAX), *v, "{path}"),
        (DocType::U32, Expected::Unsigned(v, _)) => {
            assert_eq!(unsigned(u64::from(u32::MAX)), *v, "{path}")
        }
        (DocType::U8, Expected::Unsigned(v, _)) => {
            assert_eq!(unsigned(u64::from(u8::MAX)), *v, "{path}")
        }
        (DocType::I64, Expected::Signed(v)) => match value {
            Value::Integer(i) => assert_eq!(i.as_i64(), Some(*v), "{path}"),
            other => panic!("{path}: expected an integer (i64), read {other:?}"),
        },
        (DocType::Bool, Expected::Bool(v)) => {
            assert_eq!(value, &Value::Boolean(*v), "{path}")
        }
        (DocType::Bytes, Expected::Bytes(v)) => match (value, v) {
            (Value::Nil, None) => {}
            (Value::Binary(read), Some(v)) => assert_eq!(read.as_slice(), &v[..], "{path}"),
            (read, v) => panic!("{path}: read {read:?}, the message holds {v:?} (nil or bin)"),
        },
        (DocType::OptionalI32, Expected::OptionalI32(v)) => match (value, v) {
            (Value::Nil, None) => {}
            (Value::Integer(read), Some(v)) => {
                assert_eq!(read.as_i64(), Some(i64::from(*v)), "{path}")
            }
            (read, v) => panic!("{path}: read {read:?}, the message holds {v:?} (nil or int)"),
        },
        (DocType::ArrayOfLog, Expected::Logs(logs)) => {
            let Value::Array(entries) = value else {
                panic!("{path}: expected an array of Log, read {value:?}");
            };
            assert_eq!(entries.len(), logs.len(), "{path}: number of entries");
            let log_fields = &docs["Log"];
            for (i, (entry, log)) in entries.iter().zip(logs).enumerate() {
                let Value::Array(values) = entry else {
                    panic!("{path}[{i}]: a Log is a nested array, read {entry:?}");
                };
                assert_eq!(
                    values.len(),
                    log_fields.len(),
                    "{path}[{i}]: a Log has {} fields",
                    log_fields.len()
                );
                for (f, v) in log_fields.iter().zip(values) {
                    let path = format!("{path}[{i}].{}", f.name);
                    check_field(&path, f, v, &log_field(log, &f.name), docs);
                }
            }
        }
        (ty, expected) => unreachable!("{path}: {ty:?} against {expected:?}"),
    }
    if field.name == "appended_at.nanos" {
        assert!(unsigned(u64::MAX) < 1_000_000_000, "{path}: nanos < 10^9");
    }
}

/// Decode exactly one msgpack value from `body` with rmpv, and check it is written in the
/// smallest form (rmpv writes every integer, length and bin/str header in its smallest form, so
/// writing the value back must give the same bytes).
fn read_one_value(name: &str, body: &[u8]) -> rmpv::Value {
    let mut rest = body;
    let value = rmpv::decode::read_value(&mut rest)
        .unwrap_or_else(|e| panic!("{name}: rmpv cannot read the body: {e}"));
    assert!(
        rest.is_empty(),
        "{name}: {} bytes follow the body's msgpack value",
        rest.len()
    );
    let mut again = Vec::new();
    rmpv::encode::write_value(&mut again, &value).unwrap();
    assert_eq!(
        to_hex(&again),
        to_hex(body),
        "{name}: the body is not in msgpack's smallest forms"
    );
    value
}

#[test]
fn golden_vectors_match_the_spec_read_independently() {
    let doc = wire_doc();

    // The preamble table: magic and version.
    let preamble: Vec<u8> = doc_table(&doc, "### Preamble")
        .iter()
        .flat_map(|row| {
            // "ASCII RAFTNET (52 41 46 54 4e 45 54)" or "01"
            let hex = row[3].rsplit('(').next().unwrap().trim_end_matches(')');
            hex.split_whitespace()
                .map(|b| u8::from_str_radix(b, 16).expect("hex"))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(preamble, PREAMBLE, "docs/wire.md's preamble");

    // The header layout: field → (offset, size), adding up to the 16 bytes.
    let layout: BTreeMap<String, (usize, usize)> = doc_table(&doc, "### Header (16 bytes)")
        .iter()
        .map(|row| {
            (
                row[2].clone(),
                (row[0].parse().unwrap(), row[1].parse().unwrap()),
            )
        })
        .collect();
    assert_eq!(
        layout.values().map(|(_, size)| size).sum::<usize>(),
        16,
        "docs/wire.md's header fields add up to 16 bytes"
    );
    assert_eq!(HEADER_LEN, 16);
    // Type byte → (message, body), lane value → lane, flag bit → (name, valid on).
    let types: BTreeMap<u8, (String, String)> = doc_table(&doc, "### Message types")
        .iter()
        .map(|row| {
            let byte = u8::from_str_radix(&row[0], 16).expect("a type byte");
            let name = row[1].split_whitespace().next().unwrap().to_string();
            (byte, (name, row[2].clone()))
        })
        .collect();
    let lanes: BTreeMap<u8, String> = doc_table(&doc, "### Lanes")
        .iter()
        .map(|row| (row[0].parse().unwrap(), row[1].clone()))
        .collect();
    let flags: BTreeMap<u8, (String, String)> = doc_table(&doc, "### Flags")
        .iter()
        .map(|row| {
            let bit = u8::from_str_radix(&row[0], 16).expect("a flag bit");
            (bit, (row[1].clone(), row[2].clone()))
        })
        .collect();
    let fields = doc_fields(&doc);

    let mut types_seen = BTreeSet::new();
    for (name, frame) in vectors() {
        let text = std::fs::read_to_string(golden_dir().join(format!("{name}.hex"))).unwrap();
        let bytes = parse_hex(&text);
        assert!(bytes.len() >= 16, "{name}: shorter than a header");
        // Big-endian, as the docs say of every multi-byte integer in a header.
        let header = |field: &str| -> u64 {
            let (offset, size) = layout[field];
            bytes[offset..offset + size]
                .iter()
                .fold(0, |n, &b| n << 8 | u64::from(b))
        };
        let body = &bytes[16..];
        assert_eq!(header("body_len"), body.len() as u64, "{name}: body_len");
        assert_eq!(header("reserved"), 0, "{name}: the reserved byte");
        assert_eq!(header("request_id"), frame.request_id, "{name}: request_id");

        let type_byte = header("type") as u8;
        types_seen.insert(type_byte);
        let (message_name, body_kind) = types
            .get(&type_byte)
            .unwrap_or_else(|| panic!("{name}: type byte {type_byte:02x} is not in the docs"));
        assert_eq!(
            message_name,
            doc_name(&frame.message),
            "{name}: the type byte"
        );

        let lane = lanes
            .get(&(header("lane") as u8))
            .unwrap_or_else(|| panic!("{name}: lane {} is not in the docs", header("lane")));
        let expected_lane = match frame.lane {
            Lane::Control => "Control",
            Lane::Heartbeat => "Heartbeat",
            Lane::Pipeline => "Pipeline",
            Lane::Snapshot => "Snapshot",
        };
        assert_eq!(lane, expected_lane, "{name}: the lane byte");

        let flag_byte = header("flags") as u8;
        for bit in (0..8).map(|i| 1u8 << i).filter(|bit| flag_byte & bit != 0) {
            let (flag, valid_on) = flags
                .get(&bit)
                .unwrap_or_else(|| panic!("{name}: flag bit {bit:02x} is not in the docs"));
            assert!(
                valid_on.split(',').any(|m| m.trim() == message_name),
                "{name}: {flag} set on a {message_name}, valid on {valid_on}"
            );
        }
        let expected_flags = if frame.flags == Flags::END_STREAM {
            "END_STREAM"
        } else {
            assert_eq!(frame.flags, Flags::NONE);
            ""
        };
        let set: Vec<&str> = flags
            .iter()
            .filter(|(bit, _)| flag_byte & **bit != 0)
            .map(|(_, (flag, _))| flag.as_str())
            .collect();
        assert_eq!(set.join(","), expected_flags, "{name}: the flags byte");

        match &frame.message {
            Message::SnapshotChunk(chunk) => {
                assert!(body_kind.starts_with("raw bytes"), "{name}: {body_kind}");
                assert_eq!(body, &chunk[..], "{name}: the chunk's bytes");
            }
            Message::Error(text) => {
                assert!(
                    body_kind.starts_with("msgpack string"),
                    "{name}: {body_kind}"
                );
                let value = read_one_value(name, body);
                assert_eq!(
                    value.as_str(),
                    Some(text.as_str()),
                    "{name}: the error text"
                );
            }
            message => {
                // "msgpack array, 9 fields"
                let count: usize = body_kind
                    .strip_prefix("msgpack array, ")
                    .and_then(|rest| rest.strip_suffix(" fields"))
                    .unwrap_or_else(|| panic!("{name}: body {body_kind:?}"))
                    .parse()
                    .unwrap();
                let message_fields = &fields[message_name];
                assert_eq!(
                    message_fields.len(),
                    count,
                    "docs/wire.md: {message_name}'s field count, in its two tables"
                );
                let rmpv::Value::Array(values) = read_one_value(name, body) else {
                    panic!("{name}: the body is not a msgpack array");
                };
                assert_eq!(values.len(), count, "{name}: fields in the array");
                for (field, value) in message_fields.iter().zip(&values) {
                    let path = format!("{name}.{}", field.name);
                    let expected = message_field(message, &field.name);
                    check_field(&path, field, value, &expected, &fields);
                }
            }
        }
    }
    assert_eq!(
        types_seen,
        types.keys().copied().collect(),
        "the vectors cover every message type of docs/wire.md"
    );

    // Go's zero time, as the docs give it: "`unix_seconds = -62135596800, nanos = 0,
    // utc_offset = nil`".
    let zero = doc
        .lines()
        .find(|l| l.starts_with("Go's zero `time.Time`"))
        .expect("docs/wire.md: Go's zero time");
    let zero = zero
        .split('`')
        .rev()
        .nth(1)
        .expect("the values in backticks");
    let values: BTreeMap<&str, &str> = zero
        .split(", ")
        .map(|kv| kv.split_once(" = ").expect("name = value"))
        .collect();
    assert_eq!(
        values["unix_seconds"].parse::<i64>(),
        Ok(Timestamp::ZERO.unix_seconds)
    );
    assert_eq!(values["nanos"].parse::<u32>(), Ok(Timestamp::ZERO.nanos));
    assert_eq!(
        (values["utc_offset"], Timestamp::ZERO.utc_offset),
        ("nil", None)
    );
}

/// docs/wire.md's worked example is the heartbeat vector, byte for byte.
#[test]
fn worked_example_is_the_heartbeat_vector() {
    let doc = wire_doc();
    let start = doc.find("## Worked example").expect("the worked example");
    let block = doc[start..]
        .split("```")
        .nth(1)
        .expect("the example's code block");
    // Each line: hex bytes, then what they mean.
    let bytes: Vec<u8> = block
        .lines()
        .flat_map(|line| {
            line.split_whitespace()
                .take_while(|t| t.len() == 2 && t.chars().all(|c| c.is_ascii_hexdigit()))
                .map(|t| u8::from_str_radix(t, 16).unwrap())
                .collect::<Vec<_>>()
        })
        .collect();
    let golden = parse_hex(&std::fs::read_to_string(golden_dir().join("heartbeat.hex")).unwrap());
    assert_eq!(to_hex(&bytes), to_hex(&golden));
}
