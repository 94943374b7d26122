//! raftnet's own wire format (specified byte by byte in `docs/wire.md`): a preamble, then
//! frames of a fixed 16-byte header and a msgpack body written and read by hand.
//!
//! The pieces, in the order bytes flow:
//! - `frame`: the preamble and the header layout ([`PREAMBLE`], [`HEADER_LEN`],
//!   [`FrameHeader::parse`](crate::wire::FrameHeader::parse));
//! - `body`: each message's msgpack body ([`decode_body`]);
//! - `msgpack`: the zero-copy reader and the segmenting writer the bodies use;
//! - [`FrameEncoder`] → [`SendQueue`](crate::wire::SendQueue): frames packed for vectored
//!   writes, large payloads as their own segments;
//! - [`FrameDecoder`]: bytes in, [`RawFrame`](crate::wire::RawFrame)s / [`Frame`]s out, never a
//!   panic;
//! - [`NativeCodec`]: all of it behind the [`Codec`](crate::wire::Codec) seam.
//!
//! ```
//! use bytes::BytesMut;
//! use raftnet::message::*;
//! use raftnet::wire::native::{FrameDecoder, FrameEncoder};
//! use raftnet::wire::{Flags, Lane, SendQueue};
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

// Unsafe code is denied here but for `msgpack::BodySink`'s three blocks (the spare-capacity
// writes and their commit), each allowed where it stands with its safety argument, and
// exercised under Miri by that module's tests.

mod body;
mod codec;
mod decoder;
mod encoder;
mod frame;
mod msgpack;

pub use body::decode as decode_body;
pub use codec::{NativeCodec, NativeCodecFactory};
pub use decoder::{Frame, FrameDecoder};
pub use encoder::{DEFAULT_LARGE_PAYLOAD_THRESHOLD, FrameEncoder};
pub(crate) use frame::guess_protocol;
pub use frame::{
    DEFAULT_MAX_BODY_LEN, HEADER_LEN, MAGIC, PREAMBLE, PREAMBLE_LEN, WIRE_VERSION, check_preamble,
};
