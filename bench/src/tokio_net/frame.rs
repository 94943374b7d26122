//! A frame: a 4-byte big-endian length, then the request id and a message (an envelope),
//! rmp-serde-encoded; `LengthDelimitedCodec` (default settings) reads them. The envelope is
//! generic over the message, so the openraft cluster's tokio network (`crate::cluster`) frames
//! openraft's messages the same way.
//!
//! Copies, because the baseline must not pay for copies raftnet does not make (raftnet copies a
//! payload at most once, into its frame buffer, below 8 KiB, and never on receipt):
//! - **Sending: one copy.** [`encode_frame`] serializes the envelope straight after a
//!   placeholder for the length and patches the length in, so the frame is built in one buffer
//!   with each payload copied into it once; the connection's writer hands the frames to the
//!   socket with vectored writes (`super::connection`), not through `LengthDelimitedCodec`'s
//!   encoder, which would copy every frame again into its write buffer. (The baseline used to
//!   do both: serialize into a `Vec`, then let the codec copy it.)
//! - **Receiving: no copy.** `LengthDelimitedCodec` hands out each frame as a slice of its read
//!   buffer; [`Wire::decode`] for the scenarios' [`Message`] first decodes with every byte
//!   field borrowed from the frame, then turns each into a `Bytes` slice of it
//!   (`Bytes::slice_ref`), so payloads reach the consumer, and snapshot chunks the checker,
//!   without a copy. (The baseline used to decode into `ByteBuf`s, a copy of every field.)

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_util::codec::LengthDelimitedCodec;

use super::{Message, Payload};

/// The largest frame either end accepts (a 1 MiB entry plus its envelope fits easily).
const MAX_FRAME: usize = 16 << 20;

/// The length prefix.
const PREFIX: usize = 4;

/// A frame as sent: the request id and a borrowed message, so a request prepared once is
/// encoded straight from where it lives (no clone of its payloads per operation). (Also the
/// frames of the openraft cluster's tokio network, `crate::cluster`, with openraft's messages.)
#[derive(Serialize)]
struct EnvelopeRef<'a, M> {
    id: u64,
    message: &'a M,
}

/// A frame as received (same encoding as [`EnvelopeRef`]).
#[derive(Deserialize)]
pub(crate) struct Envelope<M> {
    pub(crate) id: u64,
    pub(crate) message: M,
}

/// Encode a whole frame, length prefix included, into a buffer of `hint` bytes (plus the
/// prefix) to start with.
pub(crate) fn encode_frame<M: Serialize>(
    id: u64,
    message: &M,
    hint: usize,
) -> Result<Bytes, String> {
    let mut out = Vec::with_capacity(PREFIX + hint);
    out.extend_from_slice(&[0; PREFIX]);
    rmp_serde::encode::write(&mut out, &EnvelopeRef { id, message })
        .map_err(|e| format!("encode: {e}"))?;
    let len = out.len() - PREFIX;
    if len > MAX_FRAME {
        return Err(format!("encode: a {len}-byte frame is over {MAX_FRAME}"));
    }
    out[..PREFIX].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(Bytes::from(out))
}

/// Append a whole frame, length prefix included, to `out` (the direct design's write buffer,
/// `super::direct`: many frames, one write).
pub(crate) fn encode_into<M: Serialize>(
    out: &mut Vec<u8>,
    id: u64,
    message: &M,
) -> Result<(), String> {
    let start = out.len();
    out.extend_from_slice(&[0; PREFIX]);
    rmp_serde::encode::write(out, &EnvelopeRef { id, message })
        .map_err(|e| format!("encode: {e}"))?;
    let len = out.len() - start - PREFIX;
    if len > MAX_FRAME {
        out.truncate(start);
        return Err(format!("encode: a {len}-byte frame is over {MAX_FRAME}"));
    }
    out[start..start + PREFIX].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// The length of the frame at the front of `buffered`, if its prefix is there; `Err` if it is
/// over [`MAX_FRAME`].
pub(crate) fn frame_len(buffered: &[u8]) -> Result<Option<usize>, String> {
    let Some(prefix) = buffered.get(..PREFIX) else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(prefix.try_into().expect("4 bytes")) as usize;
    if len > MAX_FRAME {
        return Err(format!("a {len}-byte frame is over {MAX_FRAME}"));
    }
    Ok(Some(PREFIX + len))
}

/// The length prefix's size.
pub(crate) const PREFIX_LEN: usize = PREFIX;

pub(crate) fn encode(id: u64, message: &Message) -> Bytes {
    let hint = match message {
        Message::AppendEntries(m) => {
            128 + m
                .entries
                .iter()
                .map(|e| 64 + e.data.as_ref().map_or(0, |d| d.len()))
                .sum::<usize>()
        }
        Message::SnapshotChunk { data, .. } => 32 + data.len(),
        _ => 128,
    };
    encode_frame(id, message, hint).expect("rmp-serde encodes these messages")
}

/// Decode a frame's envelope with serde (every byte field copied into the message).
pub(crate) fn decode<M: DeserializeOwned>(frame: &[u8]) -> Result<Envelope<M>, String> {
    rmp_serde::from_slice(frame).map_err(|e| format!("decode: {e}"))
}

/// What a connection's reader decodes its frames into.
pub(crate) trait Wire: Sized {
    /// Decode one frame (without its length prefix).
    fn decode(frame: Bytes) -> Result<Envelope<Self>, String>;
}

/// The scenarios' messages: byte fields become `Bytes` slices of the frame (no copy).
impl Wire for Message {
    fn decode(frame: Bytes) -> Result<Envelope<Message>, String> {
        let view: Envelope<super::messages::Message<&serde_bytes::Bytes>> =
            rmp_serde::from_slice(&frame).map_err(|e| format!("decode: {e}"))?;
        Ok(Envelope {
            id: view.id,
            message: view
                .message
                .map_bytes(&mut |field: &serde_bytes::Bytes| Payload(frame.slice_ref(field))),
        })
    }
}

pub(crate) fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokio_net::requests::{Snapshot, append_entries};

    /// A frame read back: the prefix says its length, and the decoded payloads are slices of
    /// the frame, not copies.
    #[test]
    fn frames_carry_their_length_and_decode_without_copies() {
        let request = append_entries(2, 3000);
        let frame = encode(42, &request);
        let len = u32::from_be_bytes(frame[..PREFIX].try_into().unwrap()) as usize;
        assert_eq!(len, frame.len() - PREFIX);
        let body = frame.slice(PREFIX..);
        let Envelope { id, message } = <Message as Wire>::decode(body.clone()).unwrap();
        assert_eq!((id, &message), (42, &request));
        let Message::AppendEntries(m) = message else {
            unreachable!()
        };
        let data = m.entries[1].data.as_ref().unwrap();
        let inside = body.as_ptr_range();
        assert!(inside.contains(&data.as_ptr()), "a copy, not a slice");

        let snapshot = Snapshot::new();
        let frame = encode(7, &snapshot.chunks[3]).slice(PREFIX..);
        let Envelope { message, .. } = <Message as Wire>::decode(frame.clone()).unwrap();
        assert_eq!(message, snapshot.chunks[3]);
        let Message::SnapshotChunk { data, .. } = message else {
            unreachable!()
        };
        assert!(frame.as_ptr_range().contains(&data.as_ptr()));
    }
}
