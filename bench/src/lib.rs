//! raftnet-bench: the same Raft RPC scenarios run against raftnet's `NetTransport`, a tokio
//! baseline written as a competent user would, and the machine's raw loopback limits, all in
//! one process run so the results can be compared as ratios.
//!
//! - [`scenario`]: the scenarios, and the contract every implementation follows;
//! - [`check`]: what every answer and snapshot body must be, checked alike on both sides;
//! - [`raftnet_impl`]: the scenarios on raftnet, and the count of its drivers' system calls in a
//!   window (`raftnet_impl::driver_calls`);
//! - [`tokio_impl`]: the same on tokio + rmp-serde, in every variant a tokio expert would
//!   pick from (a task per connection answering in place, or reader and writer tasks; each
//!   runtime flavour), the best reported per scenario;
//! - [`go_impl`]: the Go column: hashicorp/raft's own `NetworkTransport` (the
//!   `interop/hashicorp-bench` program), Go to Go, and raftnet with the hashicorp codec
//!   calling it or called by it;
//! - [`cluster`]: a 3-node openraft cluster over raftnet or over the tokio baseline's design
//!   (the `cluster-*` scenarios), on openraft-memstore or on [`bench_store`], an in-memory store
//!   whose log keeps entries without JSON (the `cluster-bench-*` rows);
//! - `tokio_net` (private): the tokio baseline's network (frames, connections, the client, the
//!   server, serde twins of raftnet's messages), which `tokio_impl` and `cluster` share;
//! - [`tls`]: `--tls`'s CA and node certificate, shared by both implementations, and the
//!   tokio baseline's tokio-rustls configurations;
//! - [`tls_open`]: what opening received TLS records costs per byte, raftnet's way (rustls'
//!   buffered API) and in place (its unbuffered API), in memory (`raftnet-tls-open`);
//! - [`raw`]: plain-socket references (bulk bytes per second, 64-byte ping-pong);
//! - [`copy_check`]: whether this machine's `memcpy` falls into the page-offset trap that can
//!   decide the TLS bulk rows (the warning printed before the table);
//! - [`pin`]: thread placement (`same`, `split`, `none`);
//! - [`measure`]: CPU time and context switches, voluntary and involuntary, of every thread
//!   (getrusage `RUSAGE_SELF`).
//!
//! The harness that runs them and reports (command line, runs, results, table, JSON lines, SVG
//! chart) is the `raftnet-bench` binary (`src/main.rs` and its modules). `cargo bench`
//! (`benches/compare.rs`) runs the main scenarios of the same implementations under criterion,
//! by operation count ([`scenario::time_operations`]).

#![forbid(unsafe_code)]

pub mod bench_store;
pub mod check;
pub mod cluster;
pub mod copy_check;
pub mod go_impl;
pub mod measure;
pub mod pin;
pub mod raftnet_impl;
pub mod raw;
pub mod scenario;
pub mod tls;
pub mod tls_open;
pub mod tokio_impl;
mod tokio_net;
