//! What the integration tests share, one file per kind of help:
//!
//! - [`wire`]: proptest strategies for every wire message, frames written byte by byte, and
//!   encode/decode shortcuts;
//! - [`net`]: transports on loopback ports, and bounded waits ([`net::EVENTUALLY`]);
//! - [`fixtures`]: hashicorp/raft's transport test setup (`makeTransport`) and the requests and
//!   responses its tests send;
//! - [`peers`]: the serving side played by a test: responder threads, and an echo server with
//!   the numbered requests it answers;
//! - [`bodies`]: deterministic snapshot bodies, counted and checksummed;
//! - [`measure`]: percentiles and the build profile, for tests that print timings;
//! - [`child`]: a transport serving in a child process (the test binary re-run), measured from
//!   the parent through `/proc`;
//! - [`legit`]: a legitimate peer calling an attacked server, its latencies recorded;
//! - [`tls`]: a test CA and node certificates (rcgen), TLS configurations from them, and a
//!   server and raw peers plain or over TLS ([`tls::Security`]);
//! - [`go`]: the Go interop program (`interop/hashicorp`) built and run in one of its modes.
//!
//! Each test binary says `mod common;` and imports the files it needs.
// Every test binary compiles all of this but uses only part of it; the allowance covers the
// files below too.
#![allow(dead_code)]

pub(crate) mod bodies;
pub(crate) mod child;
pub(crate) mod fixtures;
pub(crate) mod go;
pub(crate) mod legit;
pub(crate) mod measure;
pub(crate) mod net;
pub(crate) mod peers;
pub(crate) mod tls;
pub(crate) mod wire;
