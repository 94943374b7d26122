//! Golden byte vectors of the native format, checked in under tests/golden/. Each vector is
//! encoded and compared byte for byte, and decoded and compared field for field, so any change
//! to the format (deliberate or not) fails here. Each is also read by another msgpack reader
//! (`rmpv`) and checked against the tables of docs/wire.md, so the vectors do not only agree
//! with the encoder that wrote them. A deliberate change bumps `WIRE_VERSION`, updates
//! docs/wire.md, and rewrites the vectors with `RAFTNET_BLESS=1 cargo test --test golden`.
//!
//! The files: this one holds the tests; the vectors, their files' path and hex format are in
//! [`vectors`], and docs/wire.md's tables read as data in [`spec`]. The directory also holds
//! the vectors' `.hex` files, and hashicorp/raft's under hashicorp/ and hashicorp-latest/
//! (tests/hashicorp_golden.rs).

#[path = "../common/mod.rs"]
mod common;

mod spec;
mod vectors;

use std::collections::{BTreeMap, BTreeSet};

use common::wire::*;
use raftnet::message::*;
use raftnet::wire::native::*;
use raftnet::wire::*;

use spec::*;
use vectors::{golden_dir, parse_hex, render, to_hex, vectors};

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
