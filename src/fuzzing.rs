//! Fuzz entry points. Each cargo-fuzz target in `fuzz/fuzz_targets/` is a one-line call into
//! this module, and `tests/fuzz_corpus.rs` replays the committed corpus through the same
//! functions on stable Rust, so a crash found once stays a test.
//!
//! Inputs start with a configuration byte so the fuzzer explores the decoder's settings too:
//! bit 0 set means the stream starts after the preamble; bit 1 set means a 64-byte maximum body
//! (to reach the oversize paths with short inputs); bits 2-3 pick the encoder's large-payload
//! threshold (default, 0, 1 or 16 bytes) where a target re-encodes. Assertions here are the
//! properties being fuzzed; any panic is a finding. The TLS target ([`tls_session`], feature
//! `tls`) reads its configuration byte its own way (`fuzzing/tls.rs`).

use bytes::BytesMut;

#[cfg(feature = "tls")]
mod tls;
#[cfg(feature = "tls")]
pub use tls::{oversized_tls_hello, tls_session};

use crate::message::{
    AppendEntriesRequest, InstallSnapshotRequest, Message, MessageType, RequestPreVoteRequest,
    RequestVoteRequest, TimeoutNowRequest,
};
use crate::wire::hashicorp::{GoRaftVersion, HashicorpCodec, HashicorpCodecFactory};
use crate::wire::native::{
    DEFAULT_LARGE_PAYLOAD_THRESHOLD, DEFAULT_MAX_BODY_LEN, Frame, FrameDecoder, FrameEncoder,
    HEADER_LEN, NativeCodec, decode_body,
};
use crate::wire::{
    Codec, CodecContext, FrameHeader, Lane, SendQueue, SniffingCodec, WireError, WireFormat,
};

struct Config {
    decoder: FrameDecoder,
    encoder: FrameEncoder,
}

fn config(byte: u8) -> Config {
    let mut decoder = FrameDecoder::new();
    if byte & 1 != 0 {
        decoder = decoder.without_preamble();
    }
    if byte & 2 != 0 {
        decoder = decoder.with_max_body_len(64);
    }
    let threshold = match (byte >> 2) & 3 {
        0 => DEFAULT_LARGE_PAYLOAD_THRESHOLD,
        1 => 0,
        2 => 1,
        _ => 16,
    };
    Config {
        decoder,
        encoder: FrameEncoder::new().with_large_payload_threshold(threshold),
    }
}

/// Everything a decoder makes of a stream: the frames, then how it ended.
#[derive(Debug, PartialEq)]
struct Outcome {
    frames: Vec<Frame>,
    end: Result<(), WireError>,
}

fn decode_all(mut decoder: FrameDecoder, chunks: &mut dyn Iterator<Item = &[u8]>) -> Outcome {
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => {
                    // A failed decoder stays failed, with the same error.
                    assert_eq!(decoder.decode(&mut buf), Err(e.clone()));
                    return Outcome {
                        frames,
                        end: Err(e),
                    };
                }
            }
        }
    }
    let end = decoder.finish(&buf);
    Outcome { frames, end }
}

/// Target `frame_decoder`: arbitrary bytes through the frame decoder, all at once.
pub fn frame_decoder(data: &[u8]) {
    let Some((&cfg, stream)) = data.split_first() else {
        return;
    };
    let outcome = decode_all(config(cfg).decoder, &mut std::iter::once(stream));
    for frame in &outcome.frames {
        let _ = format!("{frame:?}");
    }
    if let Err(e) = &outcome.end {
        let _ = e.to_string();
    }
}

/// Target `split_equivalence`: the same bytes, split at arbitrary points, decode exactly as
/// they do in one piece. After the configuration byte, a count `n` (0-15) and `n` chunk lengths
/// (1-256) cut the rest of the input, cycling through the lengths.
pub fn split_equivalence(data: &[u8]) {
    let Some((&cfg, rest)) = data.split_first() else {
        return;
    };
    let Some((&count, rest)) = rest.split_first() else {
        return;
    };
    let count = usize::from(count % 16).min(rest.len());
    let (lengths, stream) = rest.split_at(count);
    let whole = decode_all(config(cfg).decoder, &mut std::iter::once(stream));

    let lengths: Vec<usize> = if lengths.is_empty() {
        vec![1]
    } else {
        lengths.iter().map(|&b| usize::from(b) + 1).collect()
    };
    let mut pieces = Vec::new();
    let mut at = 0;
    for len in lengths.iter().cycle() {
        if at >= stream.len() {
            break;
        }
        let end = (at + len).min(stream.len());
        pieces.push(&stream[at..end]);
        at = end;
    }
    let split = decode_all(config(cfg).decoder, &mut pieces.into_iter());
    assert_eq!(
        whole, split,
        "split decoding differs from one-piece decoding"
    );
}

/// Target `roundtrip`: every frame that decodes re-encodes to bytes that decode to the same
/// frame, and encoding is stable (the second encoding equals the first) and independent of the
/// large-payload threshold.
pub fn roundtrip(data: &[u8]) {
    let Some((&cfg, stream)) = data.split_first() else {
        return;
    };
    let Config { decoder, encoder } = config(cfg);
    let max = decoder.max_body_len();
    let outcome = decode_all(decoder, &mut std::iter::once(stream));
    let reference = FrameEncoder::new().with_large_payload_threshold(usize::MAX);
    for frame in outcome.frames {
        let first = encode(&encoder.clone().with_max_body_len(max), &frame);
        let again = decode_all(
            FrameDecoder::new()
                .without_preamble()
                .with_max_body_len(max),
            &mut std::iter::once(&first[..]),
        );
        assert_eq!(again.end, Ok(()));
        assert_eq!(
            again.frames,
            vec![frame.clone()],
            "re-encoded frame decodes differently"
        );
        assert_eq!(
            encode(&encoder, &again.frames[0]),
            first,
            "encoding is not stable"
        );
        assert_eq!(
            encode(&reference, &frame),
            first,
            "threshold changed the bytes"
        );
    }
}

fn encode(encoder: &FrameEncoder, frame: &Frame) -> Vec<u8> {
    let mut out = SendQueue::new();
    let result = encoder.encode(
        &mut out,
        frame.request_id,
        frame.lane,
        frame.flags,
        &frame.message,
    );
    assert_eq!(result, Ok(()), "a decoded frame must encode");
    out.to_vec()
}

/// Target `message_body`: the first byte is a message type, the rest a body; whatever decodes
/// must re-encode to a body that decodes to the same message.
pub fn message_body(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let Some(kind) = MessageType::from_u8(kind) else {
        return;
    };
    let body = bytes::Bytes::copy_from_slice(body);
    let Ok(message) = decode_body(kind, &body) else {
        return;
    };
    let frame = Frame {
        request_id: 0,
        lane: Default::default(),
        flags: Default::default(),
        message,
    };
    let bytes = encode(&FrameEncoder::new().with_max_body_len(u32::MAX), &frame);
    let reencoded_body = bytes::Bytes::copy_from_slice(&bytes[HEADER_LEN..]);
    assert_eq!(
        decode_body(kind, &reencoded_body).as_ref(),
        Ok(&frame.message)
    );
}

/// The hashicorp codec for [`hashicorp_decoder`]: the serving or the dialling end, the latter
/// with requests of every kind awaiting answers, so answers of every type decode.
fn hashicorp_codec(serving: bool, small: bool) -> HashicorpCodec {
    let context = codec_context(serving, small);
    let mut codec = HashicorpCodec::for_connection(GoRaftVersion::Latest, &context);
    if !serving {
        let requests: [Message; 5] = [
            AppendEntriesRequest::default().into(),
            RequestVoteRequest::default().into(),
            InstallSnapshotRequest::default().into(),
            TimeoutNowRequest::default().into(),
            RequestPreVoteRequest::default().into(),
        ];
        let mut scratch = SendQueue::new();
        for (id, request) in requests.iter().cycle().take(20).enumerate() {
            // With the 64-byte maximum an InstallSnapshot does not fit: it is not awaited.
            let _ = codec.encode(&mut scratch, id as u64, Lane::Control, request);
        }
    }
    codec
}

/// A frame's header and what its body decoded to.
type DecodedFrame = (FrameHeader, Result<Message, WireError>);
/// Every frame of a stream, then how it ended.
type CodecOutcome = (Vec<DecodedFrame>, Result<(), WireError>);

/// What a codec makes of a stream fed in `pieces`: each frame's header and decoded body, then
/// how it ended. A hashicorp snapshot body is cut into chunks as its bytes arrive, so the chunks
/// of one body are joined into one here.
fn codec_decode_all(
    mut codec: impl Codec,
    pieces: &mut dyn Iterator<Item = &[u8]>,
) -> CodecOutcome {
    let mut buf = BytesMut::new();
    let mut frames: Vec<DecodedFrame> = Vec::new();
    for piece in pieces {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode_frame(&mut buf) {
                Ok(Some(frame)) => {
                    let body = codec.decode_body(&frame);
                    if let (
                        Some((last, Ok(Message::SnapshotChunk(joined)))),
                        Ok(Message::SnapshotChunk(more)),
                    ) = (frames.last_mut(), &body)
                        && last.kind == MessageType::SnapshotChunk
                        && last.request_id == frame.header.request_id
                    {
                        let mut bytes = joined.to_vec();
                        bytes.extend_from_slice(more);
                        *joined = bytes.into();
                        last.body_len += frame.header.body_len;
                        last.flags = frame.header.flags;
                        continue;
                    }
                    frames.push((frame.header, body));
                }
                Ok(None) => break,
                Err(e) => {
                    // A failed codec stays failed, with the same error.
                    assert_eq!(codec.decode_frame(&mut buf), Err(e.clone()));
                    return (frames, Err(e));
                }
            }
        }
    }
    let end = codec.finish(&buf);
    (frames, end)
}

/// Target `hashicorp_decoder`: arbitrary bytes through the hashicorp codec (`wire::hashicorp`).
/// The configuration byte: bit 0 set reads answers (the dialling end), clear reads requests;
/// bit 1 set makes the maximum body 64 bytes; bits 2-7 are a piece length (1-64). Properties:
/// no panic; the stream decodes the same fed in pieces as in one; and every request or answer
/// that decodes and re-encodes decodes again to the same message.
pub fn hashicorp_decoder(data: &[u8]) {
    let Some((&cfg, stream)) = data.split_first() else {
        return;
    };
    let (serving, small) = (cfg & 1 == 0, cfg & 2 != 0);
    let whole = codec_decode_all(
        hashicorp_codec(serving, small),
        &mut std::iter::once(stream),
    );
    let piece = usize::from(cfg >> 2) + 1;
    let split = codec_decode_all(hashicorp_codec(serving, small), &mut stream.chunks(piece));
    assert_eq!(whole, split, "decoding in pieces differs from one piece");
    if let Err(e) = &whole.1 {
        let _ = e.to_string();
    }
    for (header, body) in whole.0 {
        let Ok(message) = body else { continue };
        if matches!(message, Message::SnapshotChunk(_)) {
            continue;
        }
        // Re-encode on the side that wrote it, decode on the side that reads it.
        let mut writer = hashicorp_codec(!serving, false);
        let mut out = SendQueue::new();
        if writer
            .encode(&mut out, header.request_id, Lane::Control, &message)
            .is_err()
        {
            continue; // a value Go itself refuses to write (a zone offset of -1 minute)
        }
        let mut reader = HashicorpCodec::new(GoRaftVersion::Latest, serving);
        if !serving {
            // Await an answer of this one's type.
            let request: Message = match header.kind {
                MessageType::RequestVoteResponse => RequestVoteRequest::default().into(),
                MessageType::InstallSnapshotResponse => InstallSnapshotRequest::default().into(),
                MessageType::TimeoutNowResponse => TimeoutNowRequest::default().into(),
                MessageType::RequestPreVoteResponse => RequestPreVoteRequest::default().into(),
                _ => AppendEntriesRequest::default().into(),
            };
            reader
                .encode(
                    &mut SendQueue::new(),
                    header.request_id,
                    Lane::Control,
                    &request,
                )
                .expect("a default request encodes");
        }
        let mut buf = BytesMut::from(&out.to_vec()[..]);
        let frame = reader
            .decode_frame(&mut buf)
            .expect("re-encoded bytes decode")
            .expect("re-encoded bytes are a whole frame");
        assert_eq!(
            reader.decode_body(&frame).expect("re-encoded body decodes"),
            message,
            "re-encoding changed the message"
        );
    }
}

/// The serving end of a connection whose first byte picks its format, for
/// [`sniffing_decoder`].
fn sniffing_codec(small: bool) -> SniffingCodec {
    SniffingCodec::new(
        HashicorpCodecFactory::new(GoRaftVersion::Latest),
        codec_context(true, small),
    )
}

/// The connection a fuzzed codec serves (`inbound`) or dials, with a 64-byte maximum body if
/// `small`.
fn codec_context(inbound: bool, small: bool) -> CodecContext {
    CodecContext {
        peer: std::net::SocketAddr::from(([127, 0, 0, 1], 1)),
        inbound,
        max_body_len: if small { 64 } else { DEFAULT_MAX_BODY_LEN },
        large_payload_threshold: DEFAULT_LARGE_PAYLOAD_THRESHOLD,
        max_entries_per_request: 64,
    }
}

/// Target `sniffing_decoder`: arbitrary bytes into a listener that accepts both formats
/// ([`SniffingCodec`]). The configuration byte: bit 1 set makes the maximum body 64 bytes;
/// bits 2-7 are a piece length (1-64). Properties: no panic; the stream decodes the same fed in
/// pieces as in one; and exactly as the serving codec of the format its first byte names
/// decodes it, or, for a byte naming neither, as an [`WireError::UnknownFormat`] and nothing
/// else.
pub fn sniffing_decoder(data: &[u8]) {
    let Some((&cfg, stream)) = data.split_first() else {
        return;
    };
    let small = cfg & 2 != 0;
    let whole = codec_decode_all(sniffing_codec(small), &mut std::iter::once(stream));
    let piece = usize::from(cfg >> 2) + 1;
    let split = codec_decode_all(sniffing_codec(small), &mut stream.chunks(piece));
    // A refusal's guess at what the peer is reads the bytes that came with its first: more in
    // one piece than in several.
    let unguessed = |outcome: &CodecOutcome| match outcome {
        (frames, Err(WireError::UnknownFormat { first, .. })) => (
            frames.clone(),
            Err(WireError::UnknownFormat {
                first: *first,
                looks_like: None,
            }),
        ),
        other => other.clone(),
    };
    assert_eq!(
        unguessed(&whole),
        unguessed(&split),
        "decoding in pieces differs from one piece"
    );
    let context = codec_context(true, small);
    let alone = match stream
        .first()
        .map(|&first| (first, WireFormat::sniff(first)))
    {
        None => (Vec::new(), Ok(())),
        Some((_, Some(WireFormat::Hashicorp))) => codec_decode_all(
            HashicorpCodec::for_connection(GoRaftVersion::Latest, &context),
            &mut std::iter::once(stream),
        ),
        Some((_, Some(_))) => codec_decode_all(
            NativeCodec::for_connection(&context),
            &mut std::iter::once(stream),
        ),
        Some((first, None)) => {
            let Err(WireError::UnknownFormat { first: refused, .. }) = &whole.1 else {
                panic!("first byte {first:#04x} was not refused: {whole:?}");
            };
            assert_eq!(*refused, first);
            assert!(whole.0.is_empty());
            return;
        }
    };
    assert_eq!(whole, alone, "sniffing differs from the format's own codec");
}
