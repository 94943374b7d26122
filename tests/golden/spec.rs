//! docs/wire.md read as data, for the tests that check the vectors against it: its tables
//! (header layout, message types, lanes, flags, each message's fields and their types), what
//! each field of a message holds ([`Expected`]), and each field checked in a body read by
//! `rmpv`, a general msgpack reader that knows nothing of raftnet ([`check_field`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;
use raftnet::message::*;

use crate::vectors::to_hex;

/// docs/wire.md.
pub(crate) fn wire_doc() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("docs/wire.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The rows (cells trimmed, backticks removed) of the first table after the line `after`, the
/// header row and the separator row left out.
pub(crate) fn doc_table(doc: &str, after: &str) -> Vec<Vec<String>> {
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
pub(crate) enum DocType {
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
pub(crate) struct DocField {
    pub(crate) name: String,
    pub(crate) ty: DocType,
}

/// A field's type, from what follows its name: `u64`, `bytes`, `array of Log`, or a note in
/// parentheses ending in the type, as in `(nil = UTC, else seconds east of UTC, i32)`.
pub(crate) fn doc_type(spec: &str) -> DocType {
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
pub(crate) fn split_top_level(list: &str) -> Vec<&str> {
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
pub(crate) fn doc_fields(doc: &str) -> BTreeMap<String, Vec<DocField>> {
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
pub(crate) fn doc_name(message: &Message) -> &'static str {
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
pub(crate) enum Expected {
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
    pub(crate) fn doc_type(&self) -> DocType {
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

pub(crate) fn header_field(header: &RpcHeader, name: &str) -> Option<Expected> {
    Some(match name {
        "protocol_version" => Expected::Signed(header.protocol_version),
        "id" => Expected::Bytes(header.id.clone()),
        "addr" => Expected::Bytes(header.addr.clone()),
        _ => return None,
    })
}

/// The field `name` of `message` (written out by hand for every message, so that a field the
/// docs name but the message lacks, or the other way round, shows).
pub(crate) fn message_field(message: &Message, name: &str) -> Expected {
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

pub(crate) fn log_field(log: &Log, name: &str) -> Expected {
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
pub(crate) fn check_field(
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
pub(crate) fn read_one_value(name: &str, body: &[u8]) -> rmpv::Value {
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
