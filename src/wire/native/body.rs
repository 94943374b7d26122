//! The native body format: each message is one msgpack array of its fields in a fixed order
//! (docs/wire.md lists them). The header's three fields come first, flattened. Byte fields are
//! msgpack `bin` or `nil`; integers take their smallest msgpack form; a snapshot chunk's body is
//! raw bytes; an error's body is a msgpack string.
//!
//! Decoding is strict: an array must have exactly its type's number of fields, and the body must
//! end where the message ends. Integers are accepted in any msgpack width that fits.

use bytes::Bytes;

use super::msgpack::{BodySink, Reader};
use crate::message::*;
use crate::wire::{EncodeError, WireError};

/// Fields in a [`Log`]: index, term, kind, data, extensions, and the timestamp's three parts.
const LOG_FIELDS: u32 = 8;
/// The fewest bytes an encoded [`Log`] can take: the array marker and one byte per field. The
/// decoder checks a declared entry count against this before reserving the entries vector.
const MIN_LOG_LEN: usize = 1 + LOG_FIELDS as usize;
/// The most bytes an encoded [`Log`] takes besides its payloads: the array marker, three
/// 9-byte integers and a 3-byte kind, two 5-byte bin headers, and the timestamp's 9 + 5 + 5.
const MAX_LOG_OVERHEAD: usize = 1 + 9 + 9 + 3 + 5 + 5 + 9 + 5 + 5;

/// Write `message`'s body.
pub(crate) fn encode(message: &Message, out: &mut BodySink<'_>) -> Result<(), EncodeError> {
    match message {
        Message::Request(Request::AppendEntries(m)) => encode_append_entries(m, out)?,
        Message::Request(Request::RequestVote(m)) => {
            out.array_len("RequestVoteRequest", 8)?;
            header(&m.header, out)?;
            out.uint(m.term);
            out.opt_bytes("RequestVoteRequest.candidate", &m.candidate)?;
            out.uint(m.last_log_index);
            out.uint(m.last_log_term);
            out.bool(m.leadership_transfer);
        }
        Message::Request(Request::InstallSnapshot(m)) => {
            out.array_len("InstallSnapshotRequest", 12)?;
            header(&m.header, out)?;
            out.sint(m.snapshot_version);
            out.uint(m.term);
            out.opt_bytes("InstallSnapshotRequest.leader", &m.leader)?;
            out.uint(m.last_log_index);
            out.uint(m.last_log_term);
            out.opt_bytes("InstallSnapshotRequest.peers", &m.peers)?;
            out.opt_bytes("InstallSnapshotRequest.configuration", &m.configuration)?;
            out.uint(m.configuration_index);
            out.sint(m.size);
        }
        Message::Request(Request::TimeoutNow(m)) => {
            out.array_len("TimeoutNowRequest", 3)?;
            header(&m.header, out)?;
        }
        Message::Request(Request::RequestPreVote(m)) => {
            out.array_len("RequestPreVoteRequest", 6)?;
            header(&m.header, out)?;
            out.uint(m.term);
            out.uint(m.last_log_index);
            out.uint(m.last_log_term);
        }
        Message::Response(Response::AppendEntries(m)) => {
            out.array_len("AppendEntriesResponse", 7)?;
            header(&m.header, out)?;
            out.uint(m.term);
            out.uint(m.last_log);
            out.bool(m.success);
            out.bool(m.no_retry_backoff);
        }
        Message::Response(Response::RequestVote(m)) => {
            out.array_len("RequestVoteResponse", 6)?;
            header(&m.header, out)?;
            out.uint(m.term);
            out.opt_bytes("RequestVoteResponse.peers", &m.peers)?;
            out.bool(m.granted);
        }
        Message::Response(Response::InstallSnapshot(m)) => {
            out.array_len("InstallSnapshotResponse", 5)?;
            header(&m.header, out)?;
            out.uint(m.term);
            out.bool(m.success);
        }
        Message::Response(Response::TimeoutNow(m)) => {
            out.array_len("TimeoutNowResponse", 3)?;
            header(&m.header, out)?;
        }
        Message::Response(Response::RequestPreVote(m)) => {
            out.array_len("RequestPreVoteResponse", 5)?;
            header(&m.header, out)?;
            out.uint(m.term);
            out.bool(m.granted);
        }
        Message::SnapshotChunk(data) => out.payload(data),
        Message::Error(text) => out.string("Error.text", text)?,
    }
    Ok(())
}

/// Write an AppendEntries body (also used to encode from a shared request without a clone).
pub(crate) fn encode_append_entries(
    m: &AppendEntriesRequest,
    out: &mut BodySink<'_>,
) -> Result<(), EncodeError> {
    // One reservation for everything this message copies: the array and integer markers of
    // each entry take at most `MAX_LOG_OVERHEAD` bytes.
    if !m.entries.is_empty() {
        let mut need = 64
            + out.copied_len(&m.header.id)
            + out.copied_len(&m.header.addr)
            + out.copied_len(&m.leader);
        for log in &m.entries {
            need += MAX_LOG_OVERHEAD + out.copied_len(&log.data) + out.copied_len(&log.extensions);
        }
        out.reserve(need);
    }
    out.array_len("AppendEntriesRequest", 9)?;
    header(&m.header, out)?;
    out.uint(m.term);
    out.opt_bytes("AppendEntriesRequest.leader", &m.leader)?;
    out.uint(m.prev_log_entry);
    out.uint(m.prev_log_term);
    out.uint(m.leader_commit_index);
    out.array_len("AppendEntriesRequest.entries", m.entries.len())?;
    for log in &m.entries {
        if log.appended_at.nanos >= 1_000_000_000 {
            return Err(EncodeError::OutOfRange {
                field: "Log.appended_at.nanos",
            });
        }
        out.array_len("Log", LOG_FIELDS as usize)?;
        out.uint(log.index);
        out.uint(log.term);
        out.uint(u64::from(log.kind.0));
        out.opt_bytes("Log.data", &log.data)?;
        out.opt_bytes("Log.extensions", &log.extensions)?;
        out.sint(log.appended_at.unix_seconds);
        out.uint(u64::from(log.appended_at.nanos));
        out.opt_i32(log.appended_at.utc_offset);
    }
    Ok(())
}

fn header(h: &RpcHeader, out: &mut BodySink<'_>) -> Result<(), EncodeError> {
    out.sint(h.protocol_version);
    out.opt_bytes("RpcHeader.id", &h.id)?;
    out.opt_bytes("RpcHeader.addr", &h.addr)
}

/// Decode a body of type `kind`. Byte fields and snapshot chunks are slices of `body`. The
/// entries of an AppendEntries are bounded only by the body's length; a transport also bounds
/// their number (`Config::max_entries_per_request`), so a body declaring more is an error before
/// anything is reserved for them.
pub fn decode(kind: MessageType, body: &Bytes) -> Result<Message, WireError> {
    decode_limited(kind, body, usize::MAX)
}

/// [`decode`], taking at most `max_entries` entries in an AppendEntries: a body declaring more
/// is an error before anything is reserved for them, so the work and memory of one frame stay
/// bounded however its bytes are spent.
pub(crate) fn decode_limited(
    kind: MessageType,
    body: &Bytes,
    max_entries: usize,
) -> Result<Message, WireError> {
    let mut r = Reader::new(body);
    let message = match kind {
        MessageType::AppendEntries => {
            r.fields("AppendEntriesRequest", 9)?;
            let header = read_header(&mut r)?;
            let term = r.u64("AppendEntriesRequest.term")?;
            let leader = r.opt_bytes("AppendEntriesRequest.leader")?;
            let prev_log_entry = r.u64("AppendEntriesRequest.prev_log_entry")?;
            let prev_log_term = r.u64("AppendEntriesRequest.prev_log_term")?;
            let leader_commit_index = r.u64("AppendEntriesRequest.leader_commit_index")?;
            let count = r.list_len("AppendEntriesRequest.entries", MIN_LOG_LEN)?;
            if count > max_entries {
                return Err(WireError::TooManyEntries {
                    declared: u32::try_from(count).unwrap_or(u32::MAX),
                    max: max_entries,
                });
            }
            let mut entries = Vec::new();
            if count > 0 {
                entries.reserve_exact(count);
                for _ in 0..count {
                    entries.push(read_log(&mut r)?);
                }
            }
            AppendEntriesRequest {
                header,
                term,
                leader,
                prev_log_entry,
                prev_log_term,
                entries,
                leader_commit_index,
            }
            .into()
        }
        MessageType::RequestVote => {
            r.fields("RequestVoteRequest", 8)?;
            RequestVoteRequest {
                header: read_header(&mut r)?,
                term: r.u64("RequestVoteRequest.term")?,
                candidate: r.opt_bytes("RequestVoteRequest.candidate")?,
                last_log_index: r.u64("RequestVoteRequest.last_log_index")?,
                last_log_term: r.u64("RequestVoteRequest.last_log_term")?,
                leadership_transfer: r.bool("RequestVoteRequest.leadership_transfer")?,
            }
            .into()
        }
        MessageType::InstallSnapshot => {
            r.fields("InstallSnapshotRequest", 12)?;
            InstallSnapshotRequest {
                header: read_header(&mut r)?,
                snapshot_version: r.i64("InstallSnapshotRequest.snapshot_version")?,
                term: r.u64("InstallSnapshotRequest.term")?,
                leader: r.opt_bytes("InstallSnapshotRequest.leader")?,
                last_log_index: r.u64("InstallSnapshotRequest.last_log_index")?,
                last_log_term: r.u64("InstallSnapshotRequest.last_log_term")?,
                peers: r.opt_bytes("InstallSnapshotRequest.peers")?,
                configuration: r.opt_bytes("InstallSnapshotRequest.configuration")?,
                configuration_index: r.u64("InstallSnapshotRequest.configuration_index")?,
                size: r.i64("InstallSnapshotRequest.size")?,
            }
            .into()
        }
        MessageType::TimeoutNow => {
            r.fields("TimeoutNowRequest", 3)?;
            TimeoutNowRequest {
                header: read_header(&mut r)?,
            }
            .into()
        }
        MessageType::RequestPreVote => {
            r.fields("RequestPreVoteRequest", 6)?;
            RequestPreVoteRequest {
                header: read_header(&mut r)?,
                term: r.u64("RequestPreVoteRequest.term")?,
                last_log_index: r.u64("RequestPreVoteRequest.last_log_index")?,
                last_log_term: r.u64("RequestPreVoteRequest.last_log_term")?,
            }
            .into()
        }
        MessageType::AppendEntriesResponse => {
            r.fields("AppendEntriesResponse", 7)?;
            AppendEntriesResponse {
                header: read_header(&mut r)?,
                term: r.u64("AppendEntriesResponse.term")?,
                last_log: r.u64("AppendEntriesResponse.last_log")?,
                success: r.bool("AppendEntriesResponse.success")?,
                no_retry_backoff: r.bool("AppendEntriesResponse.no_retry_backoff")?,
            }
            .into()
        }
        MessageType::RequestVoteResponse => {
            r.fields("RequestVoteResponse", 6)?;
            RequestVoteResponse {
                header: read_header(&mut r)?,
                term: r.u64("RequestVoteResponse.term")?,
                peers: r.opt_bytes("RequestVoteResponse.peers")?,
                granted: r.bool("RequestVoteResponse.granted")?,
            }
            .into()
        }
        MessageType::InstallSnapshotResponse => {
            r.fields("InstallSnapshotResponse", 5)?;
            InstallSnapshotResponse {
                header: read_header(&mut r)?,
                term: r.u64("InstallSnapshotResponse.term")?,
                success: r.bool("InstallSnapshotResponse.success")?,
            }
            .into()
        }
        MessageType::TimeoutNowResponse => {
            r.fields("TimeoutNowResponse", 3)?;
            TimeoutNowResponse {
                header: read_header(&mut r)?,
            }
            .into()
        }
        MessageType::RequestPreVoteResponse => {
            r.fields("RequestPreVoteResponse", 5)?;
            RequestPreVoteResponse {
                header: read_header(&mut r)?,
                term: r.u64("RequestPreVoteResponse.term")?,
                granted: r.bool("RequestPreVoteResponse.granted")?,
            }
            .into()
        }
        MessageType::Error => Message::Error(r.string("Error.text")?),
        // Raw bytes, not msgpack: the whole body is the chunk.
        MessageType::SnapshotChunk => return Ok(Message::SnapshotChunk(body.clone())),
    };
    r.finish(kind)?;
    Ok(message)
}

fn read_header(r: &mut Reader<'_>) -> Result<RpcHeader, WireError> {
    Ok(RpcHeader {
        protocol_version: r.i64("RpcHeader.protocol_version")?,
        id: r.opt_bytes("RpcHeader.id")?,
        addr: r.opt_bytes("RpcHeader.addr")?,
    })
}

fn read_log(r: &mut Reader<'_>) -> Result<Log, WireError> {
    r.fields("Log", LOG_FIELDS)?;
    let index = r.u64("Log.index")?;
    let term = r.u64("Log.term")?;
    let kind = LogType(r.u8("Log.kind")?);
    let data = r.opt_bytes("Log.data")?;
    let extensions = r.opt_bytes("Log.extensions")?;
    let unix_seconds = r.i64("Log.appended_at.unix_seconds")?;
    let nanos = r.u32("Log.appended_at.nanos")?;
    if nanos >= 1_000_000_000 {
        return Err(WireError::OutOfRange {
            field: "Log.appended_at.nanos",
        });
    }
    let utc_offset = r.opt_i32("Log.appended_at.utc_offset")?;
    Ok(Log {
        index,
        term,
        kind,
        data,
        extensions,
        appended_at: Timestamp {
            unix_seconds,
            nanos,
            utc_offset,
        },
    })
}
