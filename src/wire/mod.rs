//! The IO-free wire core: messages, native framing, the zero-copy decoder and the encoder.
//!
//! Nothing here touches a socket or a clock, so unit tests, property tests and the fuzzer drive
//! all of it with plain byte buffers. The pieces, in the order bytes flow:
//!
//! - [`message`](self::Message): the RPCs, field for field as hashicorp/raft defines them;
//! - `frame`: the preamble and the 16-byte frame header ([`FrameHeader`], [`MessageType`],
//!   [`Lane`], [`Flags`]);
//! - `body`: each message's msgpack body, written and read by hand with `rmp`;
//! - [`FrameEncoder`] → [`SendQueue`]: frames packed for vectored writes, large payloads as
//!   their own segments;
//! - [`FrameDecoder`]: bytes in, [`RawFrame`]s / [`Frame`]s out, never a panic;
//! - [`Codec`]: the seam through which the connection engine uses a wire format, one codec per
//!   connection; a second format (hashicorp's) plugs in there.
//!
//! The byte layout is specified in `docs/wire.md`.
//!
//! ```
//! use bytes::BytesMut;
//! use raftnet::wire::*;
//!
//! // Encode a preamble and one AppendEntries frame...
//! let encoder = FrameEncoder::new();
//! let mut out = SendQueue::new();
//! encoder.preamble(&mut out);
//! let request = AppendEntriesRequest {
//!     term: 7,
//!     entries: vec![Log::command(1, 7, &b"set x=1"[..])],
//!     ..Default::default()
//! };
//! encoder
//!     .encode(&mut out, 42, Lane::Control, Flags::NONE, &Message::from(Request::from(request.clone())))
//!     .unwrap();
//!
//! // ...and decode it, fed one byte at a time.
//! let mut decoder = FrameDecoder::new();
//! let mut buf = BytesMut::new();
//! let mut frames = Vec::new();
//! for byte in out.to_vec() {
//!     buf.extend_from_slice(&[byte]);
//!     while let Some(frame) = decoder.decode(&mut buf).unwrap() {
//!         frames.push(frame);
//!     }
//! }
//! assert_eq!(frames.len(), 1);
//! assert_eq!(frames[0].request_id, 42);
//! assert_eq!(frames[0].message, Message::Request(Request::AppendEntries(request)));
//! ```

// Unsafe code is denied here; the one exception (`BodySink::commit`, committing bytes written
// into a buffer's spare capacity) is allowed where it stands, with its safety argument, and is
// exercised under Miri by this module's tests.
#![deny(unsafe_code)]

mod body;
mod codec;
mod decoder;
mod encoder;
mod error;
mod frame;
mod message;
mod msgpack;
mod send_queue;

pub use body::{decode as decode_body, message_type};
pub use codec::{Codec, CodecContext, CodecFactory, NativeCodec, NativeCodecFactory};
pub use decoder::{Frame, FrameDecoder, RawFrame};
pub use encoder::{DEFAULT_LARGE_PAYLOAD_THRESHOLD, FrameEncoder};
pub use error::{EncodeError, WireError};
pub use frame::{
    DEFAULT_MAX_BODY_LEN, Flags, FrameHeader, HEADER_LEN, Lane, MAGIC, MessageType, PREAMBLE,
    PREAMBLE_LEN, WIRE_VERSION, check_preamble,
};
pub use message::*;
pub use send_queue::SendQueue;
