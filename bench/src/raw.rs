//! The machine's raw loopback limits, measured in the same run as the implementations and under
//! the same harness (same [`Control`] phases, CPU and wake-up accounting, same `--pin`
//! placement), so the scenario numbers can be read as fractions of them:
//!
//! - [`bulk`] (reference A.c of the project's performance notes): one connection, the client
//!   writes 1 MiB buffers with plain blocking `write(2)`s, a reader thread on the server side
//!   reads and discards. One op = one 1 MiB write; payload = bytes written. No latencies.
//!   ([`bulk_in_writes_of`]: the same with writes of another size.)
//! - [`ping_pong`] (their reference A.a): one connection with `TCP_NODELAY`, the client writes
//!   64 bytes and blocks reading 64 back; an echo thread on the server side does the reverse.
//!   One op = one round trip, with its latency.
//!
//! Both run the client side on the calling thread (the harness places it as a client thread)
//! and spawn their server thread inside [`pin::as_server`].

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::thread::JoinHandle;
use std::time::Instant;

use crate::cluster::{Network, Store};
use crate::pin;
use crate::scenario::{Control, Sample};

/// The bulk reference's write size.
pub const BULK_WRITE: usize = 1 << 20;
/// The ping-pong message size.
pub const PING_SIZE: usize = 64;

/// A raw reference measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Raw {
    /// [`bulk`].
    Bulk,
    /// [`ping_pong`].
    PingPong,
    /// The `cluster-64` cluster with no network ([`crate::cluster::Network::Direct`]): the
    /// ceiling of committed writes/s that any network could reach. Run only with the cluster
    /// scenarios.
    ClusterNoNetwork,
    /// The same on the benchmark store ([`crate::bench_store`]), for `cluster-bench-64`.
    ClusterBenchNoNetwork,
}

impl Raw {
    /// The loopback references, run with every selection, in the order they are run and shown.
    pub const ALL: [Raw; 2] = [Raw::Bulk, Raw::PingPong];
    /// Every reference, in the order they are shown.
    pub const EVERY: [Raw; 4] = [
        Raw::Bulk,
        Raw::PingPong,
        Raw::ClusterNoNetwork,
        Raw::ClusterBenchNoNetwork,
    ];

    /// The name in the output.
    pub fn name(self) -> &'static str {
        match self {
            Raw::Bulk => "raw-bulk-1m",
            Raw::PingPong => "raw-pingpong-64b",
            Raw::ClusterNoNetwork => "cluster-64-no-network",
            Raw::ClusterBenchNoNetwork => "cluster-bench-64-no-network",
        }
    }

    /// What it measures, for the table ("perf-anchors A.c" and "A.a" name the matching
    /// references of the project's performance notes).
    pub fn description(self) -> &'static str {
        match self {
            Raw::Bulk => "1 MiB blocking writes, a reader thread discarding (perf-anchors A.c)",
            Raw::PingPong => "64 B blocking ping-pong, TCP_NODELAY (perf-anchors A.a)",
            Raw::ClusterNoNetwork => {
                "cluster-64 with each openraft call handed straight to the target Raft (no sockets, no encoding): what openraft and memstore allow"
            }
            Raw::ClusterBenchNoNetwork => {
                "cluster-bench-64 with no network: what openraft and the benchmark store allow"
            }
        }
    }

    /// Run it until `control.stopped()`.
    pub fn run(self, control: &Control) -> Result<Sample, String> {
        match self {
            Raw::Bulk => bulk(control),
            Raw::PingPong => ping_pong(control),
            Raw::ClusterNoNetwork => {
                crate::cluster::run(Network::Direct, Store::Memstore, 64, control)
            }
            Raw::ClusterBenchNoNetwork => {
                crate::cluster::run(Network::Direct, Store::Bench, 64, control)
            }
        }
    }
}

fn err(what: &str) -> impl FnOnce(std::io::Error) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Connect a client to a server thread running `serve` on the accepted stream.
fn connect_pair(
    serve: impl FnOnce(TcpStream) -> std::io::Result<()> + Send + 'static,
) -> Result<(TcpStream, JoinHandle<std::io::Result<()>>), String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(err("bind"))?;
    let addr = listener.local_addr().map_err(err("local_addr"))?;
    let server = pin::as_server(|| {
        std::thread::Builder::new()
            .name("raw-server".into())
            .spawn(move || {
                let (stream, _) = listener.accept()?;
                serve(stream)
            })
    })
    .map_err(err("spawn"))?;
    let client = TcpStream::connect(addr).map_err(err("connect"))?;
    Ok((client, server))
}

fn join(server: JoinHandle<std::io::Result<()>>) -> Result<(), String> {
    match server.join() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("server thread: {e}")),
        Err(_) => Err("server thread panicked".into()),
    }
}

/// Bulk one-way bytes with 1 MiB writes (see the module documentation).
pub fn bulk(control: &Control) -> Result<Sample, String> {
    bulk_in_writes_of(BULK_WRITE, control)
}

/// [`bulk`] with writes of `write_size` bytes (one op = one write): the criterion benches'
/// reference for a scenario that moves that many bytes per RPC (64 KiB for
/// `append-64x1k-pipelined`).
pub fn bulk_in_writes_of(write_size: usize, control: &Control) -> Result<Sample, String> {
    let (mut client, server) = connect_pair(|mut stream| {
        let mut buf = vec![0u8; BULK_WRITE];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    })?;
    let buf = vec![0x5au8; write_size];
    let mut sample = Sample::default();
    let mut result = Ok(());
    while !control.stopped() {
        if let Err(e) = client.write_all(&buf) {
            result = Err(format!("write: {e}"));
            break;
        }
        sample.count(control, write_size as u64);
    }
    let _ = client.shutdown(Shutdown::Write);
    drop(client);
    let joined = join(server);
    result?;
    joined?;
    Ok(sample)
}

/// A 64-byte blocking ping-pong (see the module documentation).
pub fn ping_pong(control: &Control) -> Result<Sample, String> {
    let (mut client, server) = connect_pair(|mut stream| {
        stream.set_nodelay(true)?;
        let mut buf = [0u8; PING_SIZE];
        loop {
            match stream.read_exact(&mut buf) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(e),
            }
            stream.write_all(&buf)?;
        }
    })?;
    client.set_nodelay(true).map_err(err("set_nodelay"))?;
    let mut buf = [0x5au8; PING_SIZE];
    let mut sample = Sample::default();
    let mut result = Ok(());
    while !control.stopped() {
        let t = Instant::now();
        if let Err(e) = client
            .write_all(&buf)
            .and_then(|_| client.read_exact(&mut buf))
        {
            result = Err(format!("round trip: {e}"));
            break;
        }
        sample.record(control, t.elapsed(), 0);
    }
    let _ = client.shutdown(Shutdown::Both);
    drop(client);
    let joined = join(server);
    result?;
    joined?;
    Ok(sample)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn run_briefly(raw: Raw) -> Sample {
        let control = Control::new();
        std::thread::scope(|s| {
            let h = s.spawn(|| raw.run(&control));
            std::thread::sleep(Duration::from_millis(20));
            control.start_measuring();
            std::thread::sleep(Duration::from_millis(50));
            control.stop();
            h.join().unwrap().unwrap()
        })
    }

    #[test]
    fn bulk_moves_bytes() {
        let _load = crate::measure::test_lock::loading();
        let s = run_briefly(Raw::Bulk);
        assert!(s.ops > 0);
        assert_eq!(s.payload_bytes, s.ops * BULK_WRITE as u64);
        assert!(s.latencies_ns.is_empty());
    }

    #[test]
    fn bulk_writes_the_size_asked_for() {
        let _load = crate::measure::test_lock::loading();
        let control = Control::with_budget(3, 10);
        let s = bulk_in_writes_of(64 << 10, &control).unwrap();
        assert_eq!(s.ops, 10);
        assert_eq!(s.payload_bytes, 10 * (64 << 10));
        assert!(s.latencies_ns.is_empty());
        assert!(control.measured_window().is_some());
    }

    #[test]
    fn ping_pong_round_trips() {
        let _load = crate::measure::test_lock::loading();
        let s = run_briefly(Raw::PingPong);
        assert!(s.ops > 0);
        assert_eq!(s.latencies_ns.len() as u64, s.ops);
        assert_eq!(s.payload_bytes, 0);
    }
}
