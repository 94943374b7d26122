//! raftnet-chaos: fault injection for raftnet, kept out of the library's dependency tree (the
//! root package uses it as a dev-dependency, for `examples/chaos.rs` and `tests/chaos.rs`).
//!
//! - [`proxy`]: a TCP proxy per link and direction that delays, throttles, splits, pauses,
//!   blackholes and drops connections (FIN or RST), and heals.
//! - [`script`]: faults on a timeline, from text (the `raftnet-chaos proxy` CLI).
//! - [`soak`]: three transports calling each other through the proxy under random faults, with
//!   exactly-once, own-answer, snapshot-integrity and resource invariants.
//! - [`cluster`]: node processes of the node example (openraft over raftnet, data on disk)
//!   under network and process faults (`SIGKILL` and restart, `SIGSTOP`), clients recording
//!   every operation, and the history checked by [`checker`].
//! - [`held_port`]: a loopback port held for a node process across its restarts, passed to
//!   each of its processes, refusing dials while none runs.
//! - [`checker`]: a per-key linearizability checker (Wing-Gong-Lowe, porcupine's shape).
//! - [`measure`]: throughput with and without faults, recovery after heals, resources.
//!
//! Every run is fixed by its seed: the faults, when they come and how long they hold, and the
//! workload. (The timing of threads and sockets is not, so a replay repeats the faults, not
//! every interleaving.)

pub mod checker;
pub mod cluster;
pub mod held_port;
pub mod measure;
pub mod proxy;
pub mod script;
pub mod soak;
