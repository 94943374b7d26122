//! Property tests of the wire core: every message round-trips with arbitrary field values, the
//! decoder gives the same frames however the bytes are split, and the encoder's output depends
//! only on the frames (not on its large-payload threshold or on what was queued before).

mod common;

use bytes::{Bytes, BytesMut};
use common::wire::*;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use raftnet::message::*;
use raftnet::wire::native::*;
use raftnet::wire::*;

fn roundtrip(message: Message) {
    let frame = Frame {
        request_id: 7,
        lane: Lane::Control,
        flags: Flags::NONE,
        message,
    };
    let bytes = encode_stream(&FrameEncoder::new(), std::slice::from_ref(&frame));
    let (frames, end) = decode_stream(FrameDecoder::new(), &bytes);
    assert_eq!(end, Ok(()));
    assert_eq!(frames, vec![frame]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn append_entries_roundtrip(m in append_entries()) {
        roundtrip(Request::from(m).into());
    }

    #[test]
    fn every_request_roundtrips(m in request()) {
        roundtrip(m.into());
    }

    #[test]
    fn every_response_roundtrips(m in response()) {
        roundtrip(m.into());
    }

    #[test]
    fn snapshot_chunks_and_errors_roundtrip(data in payload(), text in "\\PC{0,60}") {
        roundtrip(Message::SnapshotChunk(data.unwrap_or_default()));
        roundtrip(Message::Error(text));
    }

    /// Frames decode the same whether the stream arrives whole or cut at arbitrary points.
    #[test]
    fn split_anywhere_equivalence(
        frames in vec(frame(), 0..6),
        cuts in vec(any::<prop::sample::Index>(), 0..12),
    ) {
        let bytes = encode_stream(&FrameEncoder::new(), &frames);
        let mut cuts: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        cuts.push(0);
        cuts.push(bytes.len());
        cuts.sort_unstable();

        let mut decoder = FrameDecoder::new();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for w in cuts.windows(2) {
            buf.extend_from_slice(&bytes[w[0]..w[1]]);
            while let Some(f) = decoder.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        prop_assert_eq!(decoder.finish(&buf), Ok(()));
        prop_assert_eq!(got, frames);
    }

    /// One byte at a time is the extreme split.
    #[test]
    fn byte_at_a_time(frames in vec(frame(), 0..4)) {
        let bytes = encode_stream(&FrameEncoder::new(), &frames);
        let mut decoder = FrameDecoder::new();
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for b in &bytes {
            buf.extend_from_slice(std::slice::from_ref(b));
            while let Some(f) = decoder.decode(&mut buf).unwrap() {
                got.push(f);
            }
        }
        prop_assert_eq!(got, frames);
    }

    /// The threshold decides only how bytes are handed to the kernel, never which bytes.
    #[test]
    fn threshold_does_not_change_bytes(frames in vec(frame(), 0..6)) {
        let reference = encode_stream(&FrameEncoder::new().with_large_payload_threshold(usize::MAX), &frames);
        for threshold in [0, 1, 16, DEFAULT_LARGE_PAYLOAD_THRESHOLD] {
            let bytes = encode_stream(&FrameEncoder::new().with_large_payload_threshold(threshold), &frames);
            prop_assert_eq!(&bytes, &reference, "threshold {}", threshold);
        }
    }

    /// Encoding is canonical: decoding then re-encoding gives the same bytes.
    #[test]
    fn reencoding_is_stable(frames in vec(frame(), 0..6)) {
        let bytes = encode_stream(&FrameEncoder::new(), &frames);
        let (decoded, end) = decode_stream(FrameDecoder::new(), &bytes);
        prop_assert_eq!(end, Ok(()));
        prop_assert_eq!(encode_stream(&FrameEncoder::new(), &decoded), bytes);
    }

    /// A frame that fails to encode leaves the queue exactly as it was, whatever was queued
    /// before it and however its payloads were split into segments.
    #[test]
    fn failed_encode_queues_nothing(
        before in vec(frame(), 0..4),
        big in append_entries(),
        threshold in prop_oneof![Just(0usize), Just(1), Just(DEFAULT_LARGE_PAYLOAD_THRESHOLD)],
    ) {
        let encoder = FrameEncoder::new().with_large_payload_threshold(threshold);
        let mut queue = SendQueue::new();
        for f in &before {
            encoder.encode(&mut queue, f.request_id, f.lane, f.flags, &f.message).unwrap();
        }
        let expected = queue.to_vec();
        let mut big = big;
        big.entries.push(Log::command(1, 1, vec![0u8; 300]));
        let tight = encoder.clone().with_max_body_len(200);
        let result = tight.encode(&mut queue, 1, Lane::Control, Flags::NONE, &big.into());
        prop_assert!(
            matches!(result, Err(EncodeError::FrameTooLarge { max: 200, .. })),
            "got {:?}",
            result
        );
        prop_assert_eq!(queue.to_vec(), expected);
    }

    /// Arbitrary bytes never panic the decoder, and split decoding agrees with whole decoding
    /// on garbage too (errors included).
    #[test]
    fn garbage_is_an_error_not_a_panic(
        bytes in vec(any::<u8>(), 0..300),
        cut in any::<prop::sample::Index>(),
    ) {
        let whole = decode_stream(FrameDecoder::new().without_preamble(), &bytes);
        let cut = cut.index(bytes.len() + 1);
        let mut decoder = FrameDecoder::new().without_preamble();
        let mut buf = BytesMut::new();
        let mut frames = Vec::new();
        let mut end = None;
        'outer: for piece in [&bytes[..cut], &bytes[cut..]] {
            buf.extend_from_slice(piece);
            loop {
                match decoder.decode(&mut buf) {
                    Ok(Some(f)) => frames.push(f),
                    Ok(None) => break,
                    Err(e) => {
                        end = Some(Err(e));
                        break 'outer;
                    }
                }
            }
        }
        let end = end.unwrap_or_else(|| decoder.finish(&buf));
        prop_assert_eq!(whole, (frames, end));
    }
}

/// The properties above are only as good as the values they are given: the strategies must
/// reach both paths of the default encoder, payloads copied into its buffer (below
/// `DEFAULT_LARGE_PAYLOAD_THRESHOLD`) and payloads queued as segments of their own (at or above
/// it), and so must the messages that `roundtrip` encodes with `FrameEncoder::new()`.
#[test]
fn strategies_reach_both_paths_of_the_default_encoder() {
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let encoder = FrameEncoder::new();
    let (mut segmented, mut copied) = (0, 0);
    const SAMPLES: usize = 1000;
    for _ in 0..SAMPLES {
        let message = message().new_tree(&mut runner).unwrap().current();
        let mut queue = SendQueue::new();
        encoder
            .encode(&mut queue, 1, Lane::Control, Flags::NONE, &message)
            .expect("encodes");
        // All copied: the frame is one piece. A queued payload adds segments.
        if queue.segment_count() > 1 {
            segmented += 1;
        } else {
            copied += 1;
        }
    }
    eprintln!(
        "{SAMPLES} messages: {segmented} with a payload queued as a segment, {copied} copied whole"
    );
    // The runner is deterministic, so these counts are the same on every run: 47 segmented and
    // 953 copied when this was written (payloads of 8 KiB or more in about one message in 20,
    // one append_entries in 4). Before the strategies reached the threshold: 0 segmented.
    assert!(
        segmented >= 20,
        "only {segmented} of {SAMPLES} generated messages take the default encoder's segment path"
    );
    assert!(
        copied >= SAMPLES / 2,
        "only {copied} of {SAMPLES} generated messages are copied whole by the default encoder"
    );
}

#[test]
fn send_queue_partial_writes_deliver_every_byte_once() {
    // Frames with large payloads make several segments; drain them with odd-sized writes.
    let encoder = FrameEncoder::new().with_large_payload_threshold(64);
    let mut queue = SendQueue::new();
    encoder.preamble(&mut queue);
    let entries = (0..5)
        .map(|i| Log::command(i, 1, Bytes::from(vec![i as u8; 100 + i as usize * 50])))
        .collect();
    let m: Message = AppendEntriesRequest {
        term: 1,
        entries,
        ..Default::default()
    }
    .into();
    encoder
        .encode(&mut queue, 1, Lane::Pipeline, Flags::NONE, &m)
        .unwrap();
    encoder
        .encode(&mut queue, 2, Lane::Pipeline, Flags::NONE, &m)
        .unwrap();
    let expected = queue.to_vec();
    assert!(
        queue.segment_count() > 4,
        "large payloads should be separate segments"
    );

    let mut written = Vec::new();
    let mut step = 1;
    while !queue.is_empty() {
        let mut slices = [std::io::IoSlice::new(&[]); 8];
        let n = queue.io_slices(&mut slices);
        assert!(n > 0);
        // Write at most `step` bytes, like a socket taking a short write.
        let mut budget = step;
        for s in &slices[..n] {
            let take = s.len().min(budget);
            written.extend_from_slice(&s[..take]);
            budget -= take;
            if budget == 0 {
                break;
            }
        }
        let wrote = step - budget;
        queue.advance(wrote);
        step = step * 3 % 251 + 1;
    }
    assert_eq!(written, expected);
    assert_eq!(queue.len(), 0);
}
