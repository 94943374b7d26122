//! hashicorp/raft's bytes into messages, as go-msgpack's decoder reads them: keys in any order,
//! unknown keys skipped (a newer Go node's fields), missing keys left at their zero value, a
//! msgpack nil in place of a struct read as the zero struct, any integer width that fits, and
//! both `time.Time` forms. Byte fields are slices of the frame (zero-copy).

use bytes::Bytes;

use super::encoder::GO_EPOCH_OFFSET;
use super::gomsgpack::Reader;
use crate::message::*;
use crate::wire::WireError;

/// Read a map of `what`, handing each key and the reader to `field`, which reads the value of
/// a key it knows and answers `false` for one it does not (that value is skipped). A nil reads
/// as an empty map.
fn map<'a>(
    r: &mut Reader<'a>,
    what: &'static str,
    mut field: impl FnMut(&[u8], &mut Reader<'a>) -> Result<bool, WireError>,
) -> Result<(), WireError> {
    if r.take_nil() {
        return Ok(());
    }
    let pairs = r.map_len(what)?;
    for _ in 0..pairs {
        let key = r.key(what)?;
        if !field(key, r)? {
            r.skip(what)?;
        }
    }
    Ok(())
}

/// Every header field, whichever message it is in; `true` if `key` was one.
fn header(key: &[u8], h: &mut RpcHeader, r: &mut Reader<'_>) -> Result<bool, WireError> {
    match key {
        b"ProtocolVersion" => h.protocol_version = r.i64("RPCHeader.ProtocolVersion")?,
        b"ID" => h.id = r.opt_bytes("RPCHeader.ID")?,
        b"Addr" => h.addr = r.opt_bytes("RPCHeader.Addr")?,
        _ => return Ok(false),
    }
    Ok(true)
}

/// Decode the request of type `kind` in `body` (one msgpack value), taking at most
/// `max_entries` entries in an AppendEntries.
pub(super) fn decode_request(
    kind: MessageType,
    body: &Bytes,
    max_entries: usize,
) -> Result<Request, WireError> {
    let mut r = Reader::new(body);
    let request = match kind {
        MessageType::AppendEntries => {
            let mut m = AppendEntriesRequest::default();
            map(&mut r, "AppendEntriesRequest", |key, r| {
                match key {
                    b"Term" => m.term = r.u64("AppendEntriesRequest.Term")?,
                    b"Leader" => m.leader = r.opt_bytes("AppendEntriesRequest.Leader")?,
                    b"PrevLogEntry" => {
                        m.prev_log_entry = r.u64("AppendEntriesRequest.PrevLogEntry")?
                    }
                    b"PrevLogTerm" => {
                        m.prev_log_term = r.u64("AppendEntriesRequest.PrevLogTerm")?
                    }
                    b"LeaderCommitIndex" => {
                        m.leader_commit_index = r.u64("AppendEntriesRequest.LeaderCommitIndex")?
                    }
                    b"Entries" => m.entries = entries(r, max_entries)?,
                    other => return header(other, &mut m.header, r),
                }
                Ok(true)
            })?;
            Request::AppendEntries(m)
        }
        MessageType::RequestVote => {
            let mut m = RequestVoteRequest::default();
            map(&mut r, "RequestVoteRequest", |key, r| {
                match key {
                    b"Term" => m.term = r.u64("RequestVoteRequest.Term")?,
                    b"Candidate" => m.candidate = r.opt_bytes("RequestVoteRequest.Candidate")?,
                    b"LastLogIndex" => {
                        m.last_log_index = r.u64("RequestVoteRequest.LastLogIndex")?
                    }
                    b"LastLogTerm" => m.last_log_term = r.u64("RequestVoteRequest.LastLogTerm")?,
                    b"LeadershipTransfer" => {
                        m.leadership_transfer = r.bool("RequestVoteRequest.LeadershipTransfer")?
                    }
                    other => return header(other, &mut m.header, r),
                }
                Ok(true)
            })?;
            Request::RequestVote(m)
        }
        MessageType::InstallSnapshot => {
            let mut m = InstallSnapshotRequest::default();
            map(&mut r, "InstallSnapshotRequest", |key, r| {
                const S: &str = "InstallSnapshotRequest";
                match key {
                    b"SnapshotVersion" => m.snapshot_version = r.i64(S)?,
                    b"Term" => m.term = r.u64(S)?,
                    b"Leader" => m.leader = r.opt_bytes(S)?,
                    b"LastLogIndex" => m.last_log_index = r.u64(S)?,
                    b"LastLogTerm" => m.last_log_term = r.u64(S)?,
                    b"Peers" => m.peers = r.opt_bytes(S)?,
                    b"Configuration" => m.configuration = r.opt_bytes(S)?,
                    b"ConfigurationIndex" => m.configuration_index = r.u64(S)?,
                    b"Size" => m.size = r.i64("InstallSnapshotRequest.Size")?,
                    other => return header(other, &mut m.header, r),
                }
                Ok(true)
            })?;
            Request::InstallSnapshot(m)
        }
        MessageType::TimeoutNow => {
            let mut m = TimeoutNowRequest::default();
            map(&mut r, "TimeoutNowRequest", |key, r| {
                header(key, &mut m.header, r)
            })?;
            Request::TimeoutNow(m)
        }
        MessageType::RequestPreVote => {
            let mut m = RequestPreVoteRequest::default();
            map(&mut r, "RequestPreVoteRequest", |key, r| {
                match key {
                    b"Term" => m.term = r.u64("RequestPreVoteRequest.Term")?,
                    b"LastLogIndex" => {
                        m.last_log_index = r.u64("RequestPreVoteRequest.LastLogIndex")?
                    }
                    b"LastLogTerm" => {
                        m.last_log_term = r.u64("RequestPreVoteRequest.LastLogTerm")?
                    }
                    other => return header(other, &mut m.header, r),
                }
                Ok(true)
            })?;
            Request::RequestPreVote(m)
        }
        other => {
            return Err(WireError::UnexpectedMessage {
                expected: "a request",
                found: other,
            });
        }
    };
    finish(&r, kind)?;
    Ok(request)
}

/// Decode the response of type `kind` in `body` (one msgpack value; nil is the zero response).
pub(super) fn decode_response(kind: MessageType, body: &Bytes) -> Result<Response, WireError> {
    let mut r = Reader::new(body);
    let response = match kind {
        MessageType::AppendEntriesResponse => {
            let mut m = AppendEntriesResponse::default();
            map(&mut r, "AppendEntriesResponse", |key, r| {
                match key {
                    b"Term" => m.term = r.u64("AppendEntriesResponse.Term")?,
                    b"LastLog" => m.last_log = r.u64("AppendEntriesResponse.LastLog")?,
                    b"Success" => m.success = r.bool("AppendEntriesResponse.Success")?,
                    b"NoRetryBackoff" => {
                        m.no_retry_backoff = r.bool("AppendEntriesResponse.NoRetryBackoff")?
                    }
                    other => return header(other, &mut m.header, r),
                }
                Ok(true)
            })?;
            Response::AppendEntries(m)
        }
        MessageType::RequestVoteResponse => {
            let mut m = RequestVoteResponse::default();
            map(&mut r, "RequestVoteResponse", |key, r| {
                match key {
                    b"Term" => m.term = r.u64("RequestVoteResponse.Term")?,
                    b"Peers" => m.peers = r.opt_bytes("RequestVoteResponse.Peers")?,
                    b"Granted" => m.granted = r.bool("RequestVoteResponse.Granted")?,
                    other => return header(other, &mut m.header, r),
                }
                Ok(true)
            })?;
            Response::RequestVote(m)
        }
        MessageType::InstallSnapshotResponse => {
            let mut m = InstallSnapshotResponse::default();
            map(&mut r, "InstallSnapshotResponse", |key, r| {
                match key {
                    b"Term" => m.term = r.u64("InstallSnapshotResponse.Term")?,
                    b"Success" => m.success = r.bool("InstallSnapshotResponse.Success")?,
                    other => return header(other, &mut m.header, r),
                }
                Ok(true)
            })?;
            Response::InstallSnapshot(m)
        }
        MessageType::TimeoutNowResponse => {
            let mut m = TimeoutNowResponse::default();
            map(&mut r, "TimeoutNowResponse", |key, r| {
                header(key, &mut m.header, r)
            })?;
            Response::TimeoutNow(m)
        }
        MessageType::RequestPreVoteResponse => {
            let mut m = RequestPreVoteResponse::default();
            map(&mut r, "RequestPreVoteResponse", |key, r| {
                match key {
                    b"Term" => m.term = r.u64("RequestPreVoteResponse.Term")?,
                    b"Granted" => m.granted = r.bool("RequestPreVoteResponse.Granted")?,
                    other => return header(other, &mut m.header, r),
                }
                Ok(true)
            })?;
            Response::RequestPreVote(m)
        }
        other => {
            return Err(WireError::UnexpectedMessage {
                expected: "a response",
                found: other,
            });
        }
    };
    finish(&r, kind)?;
    Ok(response)
}

/// The frame must end with its value (the scanner cut it so; this guards decoding a body that
/// did not come from it).
fn finish(r: &Reader<'_>, kind: MessageType) -> Result<(), WireError> {
    if r.at_end() {
        Ok(())
    } else {
        Err(WireError::TrailingBytes { kind, count: 1 })
    }
}

fn entries(r: &mut Reader<'_>, max_entries: usize) -> Result<Vec<Log>, WireError> {
    let count = r.array_len("AppendEntriesRequest.Entries")?;
    if count > max_entries as u64 {
        return Err(WireError::TooManyEntries {
            declared: u32::try_from(count).unwrap_or(u32::MAX),
            max: max_entries,
        });
    }
    // `array_len` checked the count against the bytes left (an entry takes one at least), so
    // the reservation below follows the bytes received.
    let mut entries = Vec::new();
    if count > 0 {
        entries.reserve_exact(count as usize);
        for _ in 0..count {
            entries.push(entry(r)?);
        }
    }
    Ok(entries)
}

fn entry(r: &mut Reader<'_>) -> Result<Log, WireError> {
    let mut log = Log::default();
    map(r, "Log", |key, r| {
        match key {
            b"Index" => log.index = r.u64("Log.Index")?,
            b"Term" => log.term = r.u64("Log.Term")?,
            b"Type" => log.kind = LogType(r.u8("Log.Type")?),
            b"Data" => log.data = r.opt_bytes("Log.Data")?,
            b"Extensions" => log.extensions = r.opt_bytes("Log.Extensions")?,
            b"AppendedAt" => log.appended_at = time(r)?,
            _ => return Ok(false),
        }
        Ok(true)
    })?;
    Ok(log)
}

/// A `time.Time` in any form go-msgpack writes: nil (the zero time), Go's `MarshalBinary`
/// bytes (15 or 16, as a raw string), or a msgpack timestamp payload (4, 8 or 12 bytes, as a
/// raw string, or as an ext of type -1).
fn time(r: &mut Reader<'_>) -> Result<Timestamp, WireError> {
    const FIELD: &str = "Log.AppendedAt";
    let bad = || WireError::OutOfRange { field: FIELD };
    let Some(bytes) = r.time_bytes(FIELD)? else {
        return Ok(Timestamp::ZERO);
    };
    let be = |s: &[u8]| s.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
    let (unix_seconds, nanos, utc_offset) = match bytes.len() {
        15 | 16 if bytes[0] == 1 || bytes[0] == 2 => {
            if (bytes[0] == 1) != (bytes.len() == 15) {
                return Err(bad());
            }
            let seconds = be(&bytes[1..9]) as i64;
            let nanos = be(&bytes[9..13]) as u32;
            let minutes = be(&bytes[13..15]) as u16 as i16;
            let leftover = if bytes.len() == 16 {
                i32::from(bytes[15] as i8)
            } else {
                0
            };
            let offset = if minutes == -1 {
                None
            } else {
                Some(i32::from(minutes) * 60 + leftover)
            };
            (
                seconds.checked_sub(GO_EPOCH_OFFSET).ok_or_else(bad)?,
                nanos,
                offset,
            )
        }
        4 => (be(bytes) as i64, 0, None),
        8 => {
            let v = be(bytes);
            ((v & 0x3_ffff_ffff) as i64, (v >> 34) as u32, None)
        }
        12 => (be(&bytes[4..12]) as i64, be(&bytes[..4]) as u32, None),
        _ => return Err(bad()),
    };
    if nanos >= 1_000_000_000 {
        return Err(bad());
    }
    Ok(Timestamp {
        unix_seconds,
        nanos,
        utc_offset,
    })
}
