//! A tour of raftnet's wire core, with no sockets: encode a few RPCs, look at their bytes,
//! decode them back from a stream cut into awkward pieces, and see what happens when an HTTP
//! client or a hashicorp/raft node dials a raftnet port.
//!
//! Run with `cargo run --example wire_tour`.

use bytes::{Bytes, BytesMut};
use raftnet::message::*;
use raftnet::wire::native::*;
use raftnet::wire::*;

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let leader = RpcHeader {
        protocol_version: 3,
        id: Some(Bytes::from_static(b"n1")),
        addr: Some(Bytes::from_static(b"10.0.0.1:7000")),
    };
    let heartbeat = AppendEntriesRequest {
        header: leader.clone(),
        term: 10,
        leader: leader.addr.clone(),
        ..Default::default()
    };
    let big = Bytes::from(vec![7u8; 64 * 1024]);
    let append = AppendEntriesRequest {
        header: leader.clone(),
        term: 10,
        prev_log_entry: 41,
        prev_log_term: 10,
        leader_commit_index: 40,
        entries: vec![
            Log::command(42, 10, &b"set x=1"[..]),
            Log::command(43, 10, big.clone()),
        ],
        ..Default::default()
    };
    println!(
        "heartbeat by hashicorp's rule: {}",
        heartbeat.is_heartbeat()
    );
    println!("append by hashicorp's rule:    {}", append.is_heartbeat());

    // Encode: preamble, a heartbeat on its lane, a pipelined append, a vote answered with an error.
    let encoder = FrameEncoder::new();
    let mut out = SendQueue::new();
    encoder.preamble(&mut out);
    let before = out.len();
    encoder.encode(
        &mut out,
        1,
        Lane::Heartbeat,
        Flags::NONE,
        &heartbeat.clone().into(),
    )?;
    let heartbeat_bytes = &out.to_vec()[before..];
    println!(
        "\nheartbeat frame, {} bytes:\n  {}",
        heartbeat_bytes.len(),
        hex(heartbeat_bytes)
    );
    encoder.encode(
        &mut out,
        2,
        Lane::Pipeline,
        Flags::NONE,
        &append.clone().into(),
    )?;
    encoder.encode(
        &mut out,
        3,
        Lane::Control,
        Flags::NONE,
        &Message::Error("no leader".into()),
    )?;
    println!(
        "\nqueued {} bytes in {} segments for one vectored write; the 64 KiB entry was not copied: {}",
        out.len(),
        out.segment_count(),
        {
            let mut slices = [std::io::IoSlice::new(&[]); 8];
            let n = out.io_slices(&mut slices);
            slices[..n].iter().any(|s| s.as_ptr() == big.as_ptr())
        }
    );

    // Decode the stream as it might arrive from a socket: in 1000-byte reads.
    let stream = out.to_vec();
    let mut decoder = FrameDecoder::new();
    let mut buf = BytesMut::new();
    println!();
    for piece in stream.chunks(1000) {
        buf.extend_from_slice(piece);
        while let Some(frame) = decoder.decode(&mut buf)? {
            let what = match &frame.message {
                Message::Request(Request::AppendEntries(a)) if a.is_heartbeat() => {
                    "a heartbeat".to_string()
                }
                Message::Request(Request::AppendEntries(a)) => {
                    format!("AppendEntries with {} entries", a.entries.len())
                }
                Message::Error(text) => format!("a remote error: {text:?}"),
                other => format!("{other:?}"),
            };
            println!(
                "decoded request {} on the {:?} lane: {what}",
                frame.request_id, frame.lane
            );
        }
    }
    decoder.finish(&buf)?;

    // Stray traffic is rejected with an error that says what it saw.
    println!();
    for (who, bytes) in [
        ("curl", &b"GET /metrics HTTP/1.1\r\n\r\n"[..]),
        (
            "a hashicorp/raft node",
            &[0x00, 0x89, 0xa4, b'A', b'd', b'd', b'r', 0xa7][..],
        ),
    ] {
        let mut decoder = FrameDecoder::new();
        let err = decoder.decode(&mut BytesMut::from(bytes)).unwrap_err();
        println!("{who}: {err}");
    }
    Ok(())
}
