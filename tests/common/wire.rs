//! The wire format seen from outside: proptest strategies for every wire message, frames
//! written byte by byte (including ones the encoder would refuse to write), and encode/decode
//! shortcuts.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use raftnet::message::*;
use raftnet::wire::native::*;
use raftnet::wire::*;

pub(crate) fn go_bytes() -> impl Strategy<Value = Option<Bytes>> {
    option::of(vec(any::<u8>(), 0..40).prop_map(Bytes::from))
}

/// `n` bytes of a pattern that depends on each byte's offset (and `seed`), so a payload put back
/// together from the wrong pieces, or shifted, does not compare equal.
fn patterned(n: usize, seed: u8) -> Bytes {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 8) as u8 ^ seed)
        .collect::<Vec<u8>>()
        .into()
}

/// A payload of a length drawn from `lengths`.
fn sized(lengths: std::ops::Range<usize>) -> impl Strategy<Value = Option<Bytes>> {
    option::of((lengths, any::<u8>()).prop_map(|(n, seed)| patterned(n, seed)))
}

/// Payloads on both sides of the default large-payload threshold
/// ([`DEFAULT_LARGE_PAYLOAD_THRESHOLD`], 8 KiB), so both paths of the default encoder are
/// round-tripped: bytes copied into its buffer below it, payloads queued as segments of their
/// own at or above it. Lengths: short byte strings mostly; up to 5000 bytes; just around the
/// threshold (8190–8194); and up to three times it.
pub(crate) fn payload() -> impl Strategy<Value = Option<Bytes>> {
    const T: usize = DEFAULT_LARGE_PAYLOAD_THRESHOLD;
    prop_oneof![
        4 => go_bytes(),
        1 => sized(0..5000),
        1 => sized(T - 2..T + 3),
        1 => sized(T..3 * T),
    ]
}

pub(crate) fn header() -> impl Strategy<Value = RpcHeader> {
    (any::<i64>(), go_bytes(), go_bytes()).prop_map(|(protocol_version, id, addr)| RpcHeader {
        protocol_version,
        id,
        addr,
    })
}

pub(crate) fn timestamp() -> impl Strategy<Value = Timestamp> {
    (any::<i64>(), 0u32..1_000_000_000, option::of(any::<i32>())).prop_map(
        |(unix_seconds, nanos, utc_offset)| Timestamp {
            unix_seconds,
            nanos,
            utc_offset,
        },
    )
}

pub(crate) fn log() -> impl Strategy<Value = Log> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u8>(),
        payload(),
        go_bytes(),
        timestamp(),
    )
        .prop_map(|(index, term, kind, data, extensions, appended_at)| Log {
            index,
            term,
            kind: LogType(kind),
            data,
            extensions,
            appended_at,
        })
}

pub(crate) fn append_entries() -> impl Strategy<Value = AppendEntriesRequest> {
    (
        header(),
        any::<u64>(),
        go_bytes(),
        any::<u64>(),
        any::<u64>(),
        vec(log(), 0..6),
        any::<u64>(),
    )
        .prop_map(
            |(
                header,
                term,
                leader,
                prev_log_entry,
                prev_log_term,
                entries,
                leader_commit_index,
            )| {
                AppendEntriesRequest {
                    header,
                    term,
                    leader,
                    prev_log_entry,
                    prev_log_term,
                    entries,
                    leader_commit_index,
                }
            },
        )
}

pub(crate) fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        append_entries().prop_map(Request::from),
        (
            header(),
            any::<u64>(),
            go_bytes(),
            any::<u64>(),
            any::<u64>(),
            any::<bool>()
        )
            .prop_map(
                |(header, term, candidate, last_log_index, last_log_term, leadership_transfer)| {
                    RequestVoteRequest {
                        header,
                        term,
                        candidate,
                        last_log_index,
                        last_log_term,
                        leadership_transfer,
                    }
                    .into()
                }
            ),
        (
            header(),
            any::<i64>(),
            any::<u64>(),
            go_bytes(),
            (any::<u64>(), any::<u64>()),
            go_bytes(),
            payload(),
            any::<u64>(),
            any::<i64>()
        )
            .prop_map(
                |(
                    header,
                    snapshot_version,
                    term,
                    leader,
                    (last_log_index, last_log_term),
                    peers,
                    configuration,
                    configuration_index,
                    size,
                )| {
                    InstallSnapshotRequest {
                        header,
                        snapshot_version,
                        term,
                        leader,
                        last_log_index,
                        last_log_term,
                        peers,
                        configuration,
                        configuration_index,
                        size,
                    }
                    .into()
                }
            ),
        header().prop_map(|header| TimeoutNowRequest { header }.into()),
        (header(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            |(header, term, last_log_index, last_log_term)| RequestPreVoteRequest {
                header,
                term,
                last_log_index,
                last_log_term,
            }
            .into()
        ),
    ]
}

pub(crate) fn response() -> impl Strategy<Value = Response> {
    prop_oneof![
        (
            header(),
            any::<u64>(),
            any::<u64>(),
            any::<bool>(),
            any::<bool>()
        )
            .prop_map(|(header, term, last_log, success, no_retry_backoff)| {
                AppendEntriesResponse {
                    header,
                    term,
                    last_log,
                    success,
                    no_retry_backoff,
                }
                .into()
            }),
        (header(), any::<u64>(), go_bytes(), any::<bool>()).prop_map(
            |(header, term, peers, granted)| RequestVoteResponse {
                header,
                term,
                peers,
                granted,
            }
            .into()
        ),
        (header(), any::<u64>(), any::<bool>()).prop_map(|(header, term, success)| {
            InstallSnapshotResponse {
                header,
                term,
                success,
            }
            .into()
        }),
        header().prop_map(|header| TimeoutNowResponse { header }.into()),
        (header(), any::<u64>(), any::<bool>()).prop_map(|(header, term, granted)| {
            RequestPreVoteResponse {
                header,
                term,
                granted,
            }
            .into()
        }),
    ]
}

pub(crate) fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        4 => request().prop_map(Message::Request),
        3 => response().prop_map(Message::Response),
        1 => payload().prop_map(|p| Message::SnapshotChunk(p.unwrap_or_default())),
        1 => ".{0,40}".prop_map(Message::Error),
    ]
}

pub(crate) fn lane() -> impl Strategy<Value = Lane> {
    prop_oneof![
        Just(Lane::Control),
        Just(Lane::Heartbeat),
        Just(Lane::Pipeline),
        Just(Lane::Snapshot)
    ]
}

/// A frame with arbitrary id and lane; END_STREAM set on some snapshot chunks.
pub(crate) fn frame() -> impl Strategy<Value = Frame> {
    (any::<u64>(), lane(), any::<bool>(), message()).prop_map(|(request_id, lane, end, message)| {
        let flags = match message {
            Message::SnapshotChunk(_) if end => Flags::END_STREAM,
            _ => Flags::NONE,
        };
        Frame {
            request_id,
            lane,
            flags,
            message,
        }
    })
}

/// Encode frames (after a preamble) with `encoder`.
pub(crate) fn encode_stream(encoder: &FrameEncoder, frames: &[Frame]) -> Vec<u8> {
    let mut out = SendQueue::new();
    encoder.preamble(&mut out);
    for f in frames {
        encoder
            .encode(&mut out, f.request_id, f.lane, f.flags, &f.message)
            .expect("encodes");
    }
    out.to_vec()
}

/// Encode one frame on the control lane, without a preamble.
pub(crate) fn encode_frame(request_id: u64, message: &Message) -> Vec<u8> {
    let mut out = SendQueue::new();
    FrameEncoder::new()
        .encode(&mut out, request_id, Lane::Control, Flags::NONE, message)
        .expect("encodes");
    out.to_vec()
}

/// Decode a whole stream in one piece: the frames and how it ended.
pub(crate) fn decode_stream(
    mut decoder: FrameDecoder,
    bytes: &[u8],
) -> (Vec<Frame>, Result<(), WireError>) {
    let mut buf = BytesMut::from(bytes);
    let mut frames = Vec::new();
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => return (frames, decoder.finish(&buf)),
            Err(e) => return (frames, Err(e)),
        }
    }
}

/// Decode one frame body-only stream (no preamble) and expect exactly one error.
pub(crate) fn decode_error(bytes: &[u8]) -> WireError {
    let (frames, end) = decode_stream(FrameDecoder::new().without_preamble(), bytes);
    assert!(
        frames.is_empty(),
        "expected no frame before the error, got {frames:?}"
    );
    end.expect_err("expected an error")
}

/// A raw frame header: fields as given, so `body_len` may claim a body that never follows.
pub(crate) fn frame_header(
    body_len: u32,
    kind: u8,
    flags: u8,
    lane: u8,
    reserved: u8,
    id: u64,
) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend_from_slice(&body_len.to_be_bytes());
    v.extend_from_slice(&[kind, flags, lane, reserved]);
    v.extend_from_slice(&id.to_be_bytes());
    v
}

/// A raw frame: header fields as given, `body` as is (its length is the declared one).
pub(crate) fn raw_frame(
    kind: u8,
    flags: u8,
    lane: u8,
    reserved: u8,
    id: u64,
    body: &[u8],
) -> Vec<u8> {
    let mut v = frame_header(body.len() as u32, kind, flags, lane, reserved, id);
    v.extend_from_slice(body);
    v
}
