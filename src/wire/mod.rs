//! The wire: how messages become bytes on a connection and back, IO-free. The connection engine
//! uses a format only through the [`Codec`] seam, one codec per connection, made by the
//! [`CodecFactory`] in [`Config::codec`](crate::Config::codec).
//!
//! What every format shares lives here: frames as the engine sees them ([`RawFrame`],
//! [`FrameHeader`], [`Lane`], [`Flags`]), the bytes waiting to go out ([`SendQueue`]) and the
//! errors ([`WireError`], [`EncodeError`]). Each format is a module of its own: [`native`],
//! raftnet's format, and [`hashicorp`], hashicorp/raft's (Go) `NetworkTransport` format. The
//! messages themselves are codec-neutral ([`crate::message`]).
//!
//! For a node in a mixed cluster, two factories combine them: [`SniffingCodecFactory`], a
//! listener that accepts both formats (each serving connection's format is told by its first
//! byte: [`SniffingCodec`]), and [`PeerCodecFactory`], the format of each peer this node dials.
//!
//! Nothing here touches a socket or a clock, so unit tests, property tests and the fuzzer drive
//! all of it with plain byte buffers.

mod codec;
mod error;
mod frame;
pub mod hashicorp;
pub mod native;
mod peers;
mod send_queue;
mod sniff;

pub use codec::{Codec, CodecContext, CodecFactory};
pub use error::{EncodeError, WireError};
pub use frame::{Flags, FrameHeader, Lane, RawFrame};
pub use peers::PeerCodecFactory;
pub use send_queue::SendQueue;
pub use sniff::{SniffingCodec, SniffingCodecFactory, WireFormat};
