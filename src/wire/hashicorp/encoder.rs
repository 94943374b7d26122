//! Messages into hashicorp/raft's bytes: each struct a msgpack map keyed by its Go field names
//! in byte-wise sorted order (go-msgpack's order), every field present, the embedded
//! `RPCHeader` flattened into it. What differs between hashicorp/raft generations is in
//! [`GoRaftVersion`].

use super::GoRaftVersion;
use super::gomsgpack::Out;
use crate::message::*;
use crate::wire::EncodeError;

/// Seconds from Go's zero time (January 1, year 1, UTC) to the Unix epoch.
pub(super) const GO_EPOCH_OFFSET: i64 = 62_135_596_800;

/// Write the request or response in `message` (not an error, not a snapshot chunk: the codec
/// frames those itself).
pub(super) fn encode_struct(
    message: &Message,
    v: GoRaftVersion,
    out: &mut dyn Out,
) -> Result<(), EncodeError> {
    let ids = v.has_header_ids();
    let signed = v.signed_markers();
    // Fields in the map besides the header's ID and Addr.
    let map = |out: &mut dyn Out, others: usize| out.map_len(others + if ids { 2 } else { 0 });
    match message {
        Message::Request(Request::AppendEntries(m)) => append_entries(m, v, out)?,
        Message::Request(Request::RequestVote(m)) => {
            map(out, 6);
            addr(&m.header, ids, out)?;
            out.key("Candidate");
            out.opt_bytes("RequestVoteRequest.Candidate", &m.candidate)?;
            id(&m.header, ids, out)?;
            out.key("LastLogIndex");
            out.uint(m.last_log_index);
            out.key("LastLogTerm");
            out.uint(m.last_log_term);
            out.key("LeadershipTransfer");
            out.bool(m.leadership_transfer);
            protocol_version(&m.header, signed, out);
            out.key("Term");
            out.uint(m.term);
        }
        Message::Request(Request::InstallSnapshot(m)) => {
            map(out, 10);
            addr(&m.header, ids, out)?;
            out.key("Configuration");
            out.opt_bytes("InstallSnapshotRequest.Configuration", &m.configuration)?;
            out.key("ConfigurationIndex");
            out.uint(m.configuration_index);
            id(&m.header, ids, out)?;
            out.key("LastLogIndex");
            out.uint(m.last_log_index);
            out.key("LastLogTerm");
            out.uint(m.last_log_term);
            out.key("Leader");
            out.opt_bytes("InstallSnapshotRequest.Leader", &m.leader)?;
            out.key("Peers");
            out.opt_bytes("InstallSnapshotRequest.Peers", &m.peers)?;
            protocol_version(&m.header, signed, out);
            out.key("Size");
            out.sint(m.size, signed);
            out.key("SnapshotVersion");
            out.sint(m.snapshot_version, signed);
            out.key("Term");
            out.uint(m.term);
        }
        Message::Request(Request::TimeoutNow(TimeoutNowRequest { header }))
        | Message::Response(Response::TimeoutNow(TimeoutNowResponse { header })) => {
            map(out, 1);
            addr(header, ids, out)?;
            id(header, ids, out)?;
            protocol_version(header, signed, out);
        }
        Message::Request(Request::RequestPreVote(m)) => {
            map(out, 4);
            addr(&m.header, ids, out)?;
            id(&m.header, ids, out)?;
            out.key("LastLogIndex");
            out.uint(m.last_log_index);
            out.key("LastLogTerm");
            out.uint(m.last_log_term);
            protocol_version(&m.header, signed, out);
            out.key("Term");
            out.uint(m.term);
        }
        Message::Response(Response::AppendEntries(m)) => {
            map(out, 5);
            addr(&m.header, ids, out)?;
            id(&m.header, ids, out)?;
            out.key("LastLog");
            out.uint(m.last_log);
            out.key("NoRetryBackoff");
            out.bool(m.no_retry_backoff);
            protocol_version(&m.header, signed, out);
            out.key("Success");
            out.bool(m.success);
            out.key("Term");
            out.uint(m.term);
        }
        Message::Response(Response::RequestVote(m)) => {
            map(out, 4);
            addr(&m.header, ids, out)?;
            out.key("Granted");
            out.bool(m.granted);
            id(&m.header, ids, out)?;
            out.key("Peers");
            out.opt_bytes("RequestVoteResponse.Peers", &m.peers)?;
            protocol_version(&m.header, signed, out);
            out.key("Term");
            out.uint(m.term);
        }
        Message::Response(Response::InstallSnapshot(m)) => {
            map(out, 3);
            addr(&m.header, ids, out)?;
            id(&m.header, ids, out)?;
            protocol_version(&m.header, signed, out);
            out.key("Success");
            out.bool(m.success);
            out.key("Term");
            out.uint(m.term);
        }
        Message::Response(Response::RequestPreVote(m)) => {
            map(out, 3);
            addr(&m.header, ids, out)?;
            out.key("Granted");
            out.bool(m.granted);
            id(&m.header, ids, out)?;
            protocol_version(&m.header, signed, out);
            out.key("Term");
            out.uint(m.term);
        }
        // The codec writes these itself (an error answer, raw snapshot bytes).
        Message::Error(_) | Message::SnapshotChunk(_) => out.nil(),
    }
    Ok(())
}

/// Write an AppendEntries request (also from a request shared with a pipeline's futures).
pub(super) fn append_entries(
    m: &AppendEntriesRequest,
    v: GoRaftVersion,
    out: &mut dyn Out,
) -> Result<(), EncodeError> {
    let ids = v.has_header_ids();
    out.map_len(7 + if ids { 2 } else { 0 });
    addr(&m.header, ids, out)?;
    out.key("Entries");
    if m.entries.is_empty() && m.is_heartbeat() {
        // Go's Raft sends a heartbeat with a nil Entries slice and every other AppendEntries
        // with a non-nil one (`setNewLogs` makes it), so an empty request that is not a
        // heartbeat is written as the empty array Go writes.
        out.nil();
    } else {
        out.array_len("AppendEntriesRequest.Entries", m.entries.len())?;
        for log in &m.entries {
            entry(log, v, out)?;
        }
    }
    id(&m.header, ids, out)?;
    out.key("Leader");
    out.opt_bytes("AppendEntriesRequest.Leader", &m.leader)?;
    out.key("LeaderCommitIndex");
    out.uint(m.leader_commit_index);
    out.key("PrevLogEntry");
    out.uint(m.prev_log_entry);
    out.key("PrevLogTerm");
    out.uint(m.prev_log_term);
    protocol_version(&m.header, v.signed_markers(), out);
    out.key("Term");
    out.uint(m.term);
    Ok(())
}

fn entry(log: &Log, v: GoRaftVersion, out: &mut dyn Out) -> Result<(), EncodeError> {
    let appended_at = v.has_appended_at();
    out.map_len(5 + usize::from(appended_at));
    if appended_at {
        out.key("AppendedAt");
        time(&log.appended_at, out)?;
    }
    out.key("Data");
    out.opt_bytes("Log.Data", &log.data)?;
    out.key("Extensions");
    out.opt_bytes("Log.Extensions", &log.extensions)?;
    out.key("Index");
    out.uint(log.index);
    out.key("Term");
    out.uint(log.term);
    out.key("Type");
    out.uint(u64::from(log.kind.0));
    Ok(())
}

/// A `time.Time` as go-msgpack writes it by default (hashicorp/raft's
/// `MsgpackUseNewTimeFormat` off): Go's `MarshalBinary` bytes as a raw string. Version 1 is 15
/// bytes: the version, seconds since Go's zero time (i64), nanoseconds (i32), the zone offset in
/// minutes (i16, -1 for UTC); version 2 adds the offset's leftover seconds (a byte), for zones
/// whose offset is not whole minutes.
fn time(t: &Timestamp, out: &mut dyn Out) -> Result<(), EncodeError> {
    const FIELD: &str = "Log.AppendedAt";
    if t.nanos >= 1_000_000_000 {
        return Err(EncodeError::OutOfRange { field: FIELD });
    }
    let seconds = t
        .unix_seconds
        .checked_add(GO_EPOCH_OFFSET)
        .ok_or(EncodeError::OutOfRange { field: FIELD })?;
    let (minutes, leftover) = match t.utc_offset {
        None => (-1i16, 0i8),
        Some(offset) => {
            let minutes = i16::try_from(offset / 60)
                .ok()
                // Go refuses an offset of -1 minute: it would read back as UTC.
                .filter(|&m| m != -1)
                .ok_or(EncodeError::OutOfRange { field: FIELD })?;
            (minutes, (offset % 60) as i8)
        }
    };
    let mut bytes = [0u8; 16];
    bytes[1..9].copy_from_slice(&seconds.to_be_bytes());
    bytes[9..13].copy_from_slice(&(t.nanos as i32).to_be_bytes());
    bytes[13..15].copy_from_slice(&minutes.to_be_bytes());
    let len = if leftover == 0 {
        bytes[0] = 1;
        15
    } else {
        bytes[0] = 2;
        bytes[15] = leftover as u8;
        16
    };
    out.raw_len(FIELD, len)?;
    out.put(&bytes[..len]);
    Ok(())
}

fn addr(h: &RpcHeader, ids: bool, out: &mut dyn Out) -> Result<(), EncodeError> {
    if ids {
        out.key("Addr");
        out.opt_bytes("RPCHeader.Addr", &h.addr)?;
    }
    Ok(())
}

fn id(h: &RpcHeader, ids: bool, out: &mut dyn Out) -> Result<(), EncodeError> {
    if ids {
        out.key("ID");
        out.opt_bytes("RPCHeader.ID", &h.id)?;
    }
    Ok(())
}

fn protocol_version(h: &RpcHeader, signed: bool, out: &mut dyn Out) {
    out.key("ProtocolVersion");
    out.sint(h.protocol_version, signed);
}

/// An error answer's first value: the error text (`""` for none).
pub(super) fn error_text(text: &str, out: &mut dyn Out) -> Result<(), EncodeError> {
    out.str("error", text)
}
