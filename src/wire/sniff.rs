//! One listener for both formats: a serving connection's codec is chosen by the first byte its
//! peer sends, so raftnet nodes and hashicorp/raft (Go) nodes can call the same port.
//!
//! The two formats tell themselves apart at once: a native connection starts with its preamble,
//! whose first byte is `R` ([`MAGIC`]), and a hashicorp request with its rpc type, 0 to 4. So
//! [`SniffingCodec`] waits for one byte, makes the codec that byte names and hands it
//! everything from then on, that byte included; before it, nothing is decoded. Any other first
//! byte is refused ([`WireError::UnknownFormat`]), like any bad input: the engine logs it,
//! counts it and closes the connection.
//!
//! It lives at the codec seam, so the engine and every driver (mio, io_uring, the tokio task)
//! run it unchanged, with the deadlines that already hold for a serving connection's first
//! frame: a peer that connects and sends nothing is closed as before.
//!
//! A native server starts its side with a preamble too, but a sniffing one cannot know it owes
//! one until the peer has spoken: what the chosen codec starts with is queued in front of the
//! first answer instead (native clients read the preamble before the first answer either way;
//! hashicorp's format starts with nothing).

use std::fmt;

use bytes::{Bytes, BytesMut};

use super::hashicorp::{GoRaftVersion, HashicorpCodecFactory, request_type};
use super::native::{MAGIC, NativeCodecFactory, guess_protocol};
use super::{Codec, CodecContext, CodecFactory, EncodeError, Lane, RawFrame, SendQueue, WireError};
use crate::message::{AppendEntriesRequest, Message};

/// A wire format raftnet speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum WireFormat {
    /// raftnet's own format ([`native`](super::native)).
    Native,
    /// hashicorp/raft's `NetworkTransport` format ([`hashicorp`](super::hashicorp)).
    Hashicorp,
}

impl WireFormat {
    /// The format a connection whose first byte is `first` speaks, if either.
    pub fn sniff(first: u8) -> Option<WireFormat> {
        if first == MAGIC[0] {
            Some(WireFormat::Native)
        } else if request_type(first).is_some() {
            Some(WireFormat::Hashicorp)
        } else {
            None
        }
    }
}

impl fmt::Display for WireFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WireFormat::Native => "raftnet's native format",
            WireFormat::Hashicorp => "hashicorp/raft's format",
        })
    }
}

/// A listener that accepts both formats: serving connections get a [`SniffingCodec`], dialled
/// ones raftnet's native format (to dial some peers in hashicorp's format, put it in a
/// [`PeerCodecFactory`](super::PeerCodecFactory)).
///
/// ```
/// use std::sync::Arc;
/// use raftnet::Config;
/// use raftnet::wire::SniffingCodecFactory;
/// use raftnet::wire::hashicorp::GoRaftVersion;
///
/// // Go nodes of v1.1.2 and raftnet nodes may all call this node's port.
/// let config = Config::default().codec(Arc::new(SniffingCodecFactory::new(GoRaftVersion::V1_1)));
/// # let _ = config;
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SniffingCodecFactory {
    hashicorp: HashicorpCodecFactory,
}

impl SniffingCodecFactory {
    /// A factory whose hashicorp connections write what hashicorp/raft `version` writes (its
    /// answers; every version is read).
    pub fn new(version: GoRaftVersion) -> SniffingCodecFactory {
        SniffingCodecFactory {
            hashicorp: HashicorpCodecFactory::new(version),
        }
    }
}

impl CodecFactory for SniffingCodecFactory {
    fn new_codec(&self, context: &CodecContext) -> Box<dyn Codec> {
        if context.inbound {
            Box::new(SniffingCodec::new(self.hashicorp, *context))
        } else {
            NativeCodecFactory.new_codec(context)
        }
    }
}

/// The codec of a serving connection that may speak either format: undecided until the peer's
/// first byte, then that format's codec (see the module doc).
pub struct SniffingCodec {
    hashicorp: HashicorpCodecFactory,
    context: CodecContext,
    chosen: Option<(WireFormat, Box<dyn Codec>)>,
    /// What the chosen codec starts with ([`start`](Codec::start)) is still owed: it goes
    /// before the first answer.
    start_owed: bool,
    /// The refusal of an unknown first byte; every later call returns it again.
    failed: Option<WireError>,
}

impl fmt::Debug for SniffingCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniffingCodec")
            .field("format", &self.format())
            .field("failed", &self.failed)
            .finish_non_exhaustive()
    }
}

impl SniffingCodec {
    /// The codec of a serving connection `context` describes, with hashicorp connections'
    /// codecs made by `hashicorp`.
    pub fn new(hashicorp: HashicorpCodecFactory, context: CodecContext) -> SniffingCodec {
        SniffingCodec {
            hashicorp,
            context,
            chosen: None,
            start_owed: true,
            failed: None,
        }
    }

    /// The format the peer speaks, once its first byte has arrived.
    pub fn format(&self) -> Option<WireFormat> {
        self.chosen.as_ref().map(|(format, _)| *format)
    }

    /// The chosen codec, choosing it from `input`'s first byte if need be: `Ok(None)` while no
    /// byte has arrived.
    fn choose(&mut self, input: &BytesMut) -> Result<Option<&mut Box<dyn Codec>>, WireError> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        if self.chosen.is_none() {
            let Some(&first) = input.first() else {
                return Ok(None);
            };
            let Some(format) = WireFormat::sniff(first) else {
                let e = WireError::UnknownFormat {
                    first,
                    looks_like: guess_protocol(input),
                };
                self.failed = Some(e.clone());
                return Err(e);
            };
            self.chosen = Some(self.make(format));
        }
        Ok(self.chosen.as_mut().map(|(_, codec)| codec))
    }

    fn make(&self, format: WireFormat) -> (WireFormat, Box<dyn Codec>) {
        let codec = match format {
            WireFormat::Native => NativeCodecFactory.new_codec(&self.context),
            WireFormat::Hashicorp => self.hashicorp.new_codec(&self.context),
        };
        (format, codec)
    }

    /// Queue through `encode` with the chosen codec, after what it starts with if that is still
    /// owed. Nothing is queued if `encode` fails. An answer before the peer has spoken cannot
    /// come on a serving connection; were one written, it would be in the native format.
    fn encode_with(
        &mut self,
        out: &mut SendQueue,
        encode: impl FnOnce(&mut dyn Codec, &mut SendQueue) -> Result<(), EncodeError>,
    ) -> Result<(), EncodeError> {
        let chosen = match self.chosen.take() {
            Some(chosen) => chosen,
            None => self.make(WireFormat::Native),
        };
        let (_, codec) = self.chosen.insert(chosen);
        if !self.start_owed {
            return encode(codec.as_mut(), out);
        }
        // Once per connection: the message into a queue of its own, then both in order.
        let mut message = SendQueue::new();
        encode(codec.as_mut(), &mut message)?;
        codec.start(out);
        out.append(message);
        self.start_owed = false;
        Ok(())
    }
}

impl Codec for SniffingCodec {
    fn start(&mut self, _out: &mut SendQueue) {
        // Owed until the format is known (see `encode_with`).
    }

    fn decode_frame(&mut self, input: &mut BytesMut) -> Result<Option<RawFrame>, WireError> {
        match self.choose(input)? {
            Some(codec) => codec.decode_frame(input),
            None => Ok(None),
        }
    }

    fn read_hint(&self, input: &BytesMut) -> Option<usize> {
        self.chosen
            .as_ref()
            .and_then(|(_, codec)| codec.read_hint(input))
    }

    fn decode_body(&mut self, frame: &RawFrame) -> Result<Message, WireError> {
        match &mut self.chosen {
            Some((_, codec)) => codec.decode_body(frame),
            // Frames come only from the chosen codec.
            None => Err(WireError::UnexpectedMessage {
                expected: "no frame before the peer's format is known",
                found: frame.header.kind,
            }),
        }
    }

    fn finish(&mut self, input: &BytesMut) -> Result<(), WireError> {
        match self.choose(input)? {
            Some(codec) => codec.finish(input),
            // Closed before sending anything: a clean end.
            None => Ok(()),
        }
    }

    fn encode(
        &mut self,
        out: &mut SendQueue,
        request_id: u64,
        lane: Lane,
        message: &Message,
    ) -> Result<(), EncodeError> {
        self.encode_with(out, |codec, out| {
            codec.encode(out, request_id, lane, message)
        })
    }

    fn encode_append_entries(
        &mut self,
        out: &mut SendQueue,
        request_id: u64,
        lane: Lane,
        request: &AppendEntriesRequest,
    ) -> Result<(), EncodeError> {
        self.encode_with(out, |codec, out| {
            codec.encode_append_entries(out, request_id, lane, request)
        })
    }

    fn encode_snapshot_chunk(
        &mut self,
        out: &mut SendQueue,
        request_id: u64,
        chunk: Bytes,
        last: bool,
    ) -> Result<(), EncodeError> {
        self.encode_with(out, |codec, out| {
            codec.encode_snapshot_chunk(out, request_id, chunk, last)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use super::*;
    use crate::message::{RequestVoteRequest, RequestVoteResponse};
    use crate::wire::hashicorp::HashicorpCodec;
    use crate::wire::native::{DEFAULT_LARGE_PAYLOAD_THRESHOLD, NativeCodec, PREAMBLE};

    fn context(max_body_len: u32) -> CodecContext {
        CodecContext {
            peer: SocketAddr::from(([127, 0, 0, 1], 1)),
            inbound: true,
            max_body_len,
            large_payload_threshold: DEFAULT_LARGE_PAYLOAD_THRESHOLD,
            max_entries_per_request: 64,
        }
    }

    fn sniffing() -> SniffingCodec {
        SniffingCodec::new(
            HashicorpCodecFactory::new(GoRaftVersion::Latest),
            context(1 << 20),
        )
    }

    fn vote(term: u64) -> Message {
        RequestVoteRequest {
            term,
            ..Default::default()
        }
        .into()
    }

    /// Two votes as a client of `client` writes them.
    fn two_votes(client: &mut dyn Codec) -> Vec<u8> {
        let mut out = SendQueue::new();
        client.start(&mut out);
        for id in [1, 2] {
            client
                .encode(&mut out, id, Lane::Control, &vote(id))
                .unwrap();
        }
        out.to_vec()
    }

    /// What a sniffing codec makes of `bytes` delivered `piece` bytes at a time: its format and
    /// the messages it decoded.
    fn decode_in_pieces(bytes: &[u8], piece: usize) -> (Option<WireFormat>, Vec<Message>) {
        let mut codec = sniffing();
        let mut input = BytesMut::new();
        let mut messages = Vec::new();
        for chunk in bytes.chunks(piece) {
            input.extend_from_slice(chunk);
            while let Some(frame) = codec.decode_frame(&mut input).unwrap() {
                messages.push(codec.decode_body(&frame).unwrap());
            }
        }
        assert_eq!(codec.finish(&input), Ok(()));
        (codec.format(), messages)
    }

    #[test]
    fn the_first_byte_picks_the_format_whole_or_a_byte_at_a_time() {
        let native = two_votes(&mut NativeCodec::new());
        let hashicorp = two_votes(&mut HashicorpCodec::new(GoRaftVersion::Latest, false));
        assert_eq!(native[..PREAMBLE.len()], PREAMBLE);
        assert_eq!(hashicorp[0], 1, "hashicorp's RequestVote rpc type");
        for piece in [native.len(), 1, 2, 5] {
            let expected = vec![vote(1), vote(2)];
            assert_eq!(
                decode_in_pieces(&native, piece),
                (Some(WireFormat::Native), expected.clone())
            );
            assert_eq!(
                decode_in_pieces(&hashicorp, piece),
                (Some(WireFormat::Hashicorp), expected)
            );
        }
    }

    #[test]
    fn every_rpc_type_is_hashicorp_and_only_r_is_native() {
        for byte in 0..=u8::MAX {
            let expected = match byte {
                0..=4 => Some(WireFormat::Hashicorp),
                b'R' => Some(WireFormat::Native),
                _ => None,
            };
            assert_eq!(WireFormat::sniff(byte), expected, "{byte:#04x}");
        }
    }

    #[test]
    fn an_unknown_first_byte_is_refused_and_stays_refused() {
        let mut codec = sniffing();
        let mut input = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
        let refused = WireError::UnknownFormat {
            first: b'G',
            looks_like: Some("an HTTP client"),
        };
        assert_eq!(codec.decode_frame(&mut input), Err(refused.clone()));
        assert_eq!(codec.decode_frame(&mut input), Err(refused.clone()));
        assert_eq!(codec.finish(&input), Err(refused.clone()));
        assert_eq!(codec.format(), None);
        assert_eq!(
            refused.to_string(),
            "neither a raftnet nor a hashicorp/raft connection: its first byte is 47 (\"G\"), \
             which looks like an HTTP client"
        );
        // One byte alone: refused at once, with no guess.
        let mut alone = sniffing();
        assert_eq!(
            alone.decode_frame(&mut BytesMut::from(&[0x99][..])),
            Err(WireError::UnknownFormat {
                first: 0x99,
                looks_like: None
            })
        );
    }

    #[test]
    fn nothing_received_is_nothing_decoded_and_a_clean_end() {
        let mut codec = sniffing();
        assert_eq!(codec.decode_frame(&mut BytesMut::new()), Ok(None));
        assert_eq!(codec.finish(&BytesMut::new()), Ok(()));
        assert_eq!(codec.format(), None);
    }

    /// The first answer of `request`'s connection, as the sniffing codec writes it.
    fn first_answer(request: &[u8]) -> (Vec<u8>, SniffingCodec) {
        let mut codec = sniffing();
        let mut input = BytesMut::from(request);
        let frame = codec.decode_frame(&mut input).unwrap().unwrap();
        let mut out = SendQueue::new();
        codec.start(&mut out);
        assert!(out.is_empty(), "nothing before the format is known");
        let granted: Message = RequestVoteResponse {
            term: 1,
            granted: true,
            ..Default::default()
        }
        .into();
        codec
            .encode(&mut out, frame.header.request_id, Lane::Control, &granted)
            .unwrap();
        (out.to_vec(), codec)
    }

    #[test]
    fn a_native_connection_gets_its_preamble_before_the_first_answer_only() {
        let (answer, mut codec) = first_answer(&two_votes(&mut NativeCodec::new()));
        let mut client = NativeCodec::new();
        let mut input = BytesMut::from(&answer[..]);
        let frame = client.decode_frame(&mut input).unwrap().unwrap();
        assert!(matches!(
            client.decode_body(&frame),
            Ok(Message::Response(_))
        ));
        assert!(input.is_empty());
        // The second answer has no preamble.
        let mut out = SendQueue::new();
        codec
            .encode(&mut out, 2, Lane::Control, &Message::Error("no".into()))
            .unwrap();
        assert!(!out.to_vec().starts_with(&PREAMBLE[..1]));
        let mut input = BytesMut::from(&out.to_vec()[..]);
        let frame = client.decode_frame(&mut input).unwrap().unwrap();
        assert_eq!(client.decode_body(&frame), Ok(Message::Error("no".into())));
    }

    #[test]
    fn a_hashicorp_connection_gets_nothing_before_its_answers() {
        let mut client = HashicorpCodec::new(GoRaftVersion::Latest, false);
        let (answer, _) = first_answer(&two_votes(&mut client));
        // go-msgpack's empty error string first.
        assert_eq!(answer[0], 0xa0);
        let mut input = BytesMut::from(&answer[..]);
        let frame = client.decode_frame(&mut input).unwrap().unwrap();
        assert_eq!(frame.header.request_id, 1);
        assert!(matches!(
            client.decode_body(&frame),
            Ok(Message::Response(_))
        ));
    }

    #[test]
    fn a_first_answer_that_fails_to_encode_queues_nothing_and_the_preamble_stays_owed() {
        let mut codec = SniffingCodec::new(HashicorpCodecFactory::default(), context(16));
        let mut input = BytesMut::from(&PREAMBLE[..]);
        assert_eq!(codec.decode_frame(&mut input), Ok(None));
        assert_eq!(codec.format(), Some(WireFormat::Native));
        let mut out = SendQueue::new();
        let too_long = Message::Error("x".repeat(100));
        assert!(codec.encode(&mut out, 1, Lane::Control, &too_long).is_err());
        assert!(out.is_empty());
        codec
            .encode(&mut out, 1, Lane::Control, &Message::Error("x".into()))
            .unwrap();
        assert!(out.to_vec().starts_with(&PREAMBLE));
    }
}
