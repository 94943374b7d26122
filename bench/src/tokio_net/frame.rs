//! A frame: the request id and a message (an envelope), rmp-serde-encoded, delimited by
//! `LengthDelimitedCodec`. The envelope is generic over the message, so the openraft cluster's
//! tokio network (`crate::cluster`) frames openraft's messages the same way.

use bytes::Bytes;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_util::codec::LengthDelimitedCodec;

use super::messages::Message;

/// The largest frame either end accepts (a 1 MiB entry plus its envelope fits easily).
const MAX_FRAME: usize = 16 << 20;

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

/// Encode a frame into a buffer of `hint` bytes to start with.
pub(crate) fn encode_frame<M: Serialize>(
    id: u64,
    message: &M,
    hint: usize,
) -> Result<Bytes, String> {
    let mut out = Vec::with_capacity(hint);
    rmp_serde::encode::write(&mut out, &EnvelopeRef { id, message })
        .map_err(|e| format!("encode: {e}"))?;
    Ok(Bytes::from(out))
}

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

pub(crate) fn decode<M: DeserializeOwned>(frame: &[u8]) -> Result<Envelope<M>, String> {
    rmp_serde::from_slice(frame).map_err(|e| format!("decode: {e}"))
}

pub(crate) fn codec() -> LengthDelimitedCodec {
    LengthDelimitedCodec::builder()
        .max_frame_length(MAX_FRAME)
        .new_codec()
}
