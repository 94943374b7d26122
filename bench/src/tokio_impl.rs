//! The tokio baseline: the scenarios on tokio + tokio-util's `LengthDelimitedCodec` + rmp-serde,
//! written as a competent user would write a Raft transport with them (with batched writes, as
//! the project's performance notes recommend; BENCHMARKS.md, "Transport comparison
//! (raftnet-bench)", describes the baseline). The network (frames, connections, the client, the
//! server and the messages) is `crate::tokio_net`; this module sets up the runtimes and drives
//! the scenarios over it.
//!
//! - Each node (server, client) has its own multi-thread runtime with 2 workers, as two Raft
//!   processes would; the server's is built inside [`pin::as_server`], the client's inside
//!   [`pin::as_client`], and every caller runs as a task on the client runtime.
//! - The callers: one request after another (`sequential`), a fixed number in flight on the
//!   connection (`pipelined`), one snapshot transfer after another (`snapshots`), and for
//!   `fan-in-1000` a task per connection with a `Framed` of its own (`fan_in_connection`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use futures::stream::FuturesUnordered;
use futures::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::runtime::Runtime;
use tokio_util::codec::Framed;

use crate::check::{Answer, Findings};
use crate::pin;
use crate::scenario::{
    BULK_PIPELINE_DEPTH, Control, FAN_IN_CONNECTIONS, Implementation, PIPELINE_DEPTH,
    SNAPSHOT_SIZE, Sample, Scenario,
};
use crate::tokio_net::client::Client;
use crate::tokio_net::frame::{codec, decode, encode};
use crate::tokio_net::messages::Message;
use crate::tokio_net::requests::{Snapshot, append_entries, heartbeat, request_vote};
use crate::tokio_net::server::{Routing, start_server};

/// The tokio baseline.
pub struct TokioImpl;

/// Worker threads per node runtime.
const WORKERS: usize = 2;

/// The fields of an answer that the checks compare (`crate::check`, as on raftnet's side).
fn answer_of(response: &Message) -> Answer {
    match response {
        Message::AppendEntriesResponse(r) => Answer::Append {
            term: r.term,
            success: r.success,
            last_log: r.last_log,
        },
        Message::RequestVoteResponse(r) => Answer::Vote {
            term: r.term,
            granted: r.granted,
        },
        Message::InstallSnapshotResponse(r) => Answer::Snapshot {
            term: r.term,
            success: r.success,
        },
        Message::AppendEntries(_) => Answer::Other("an AppendEntries request"),
        Message::RequestVote(_) => Answer::Other("a RequestVote request"),
        Message::InstallSnapshot(_) => Answer::Other("an InstallSnapshot request"),
        Message::SnapshotChunk { .. } => Answer::Other("a snapshot chunk"),
    }
}

/// One caller: the next request when the previous answer arrived.
async fn sequential(
    client: &Client<Message>,
    request: &Message,
    expected: Answer,
    payload: u64,
    control: &Control,
) -> Result<Sample, String> {
    let mut sample = Sample::default();
    while !control.stopped() {
        let start = Instant::now();
        answer_of(&client.call(request).await?).check(expected)?;
        sample.record(control, start.elapsed(), payload);
    }
    Ok(sample)
}

/// Keep `depth` requests in flight on the connection; latency = time in flight. Every
/// completion is recorded (a `Vec` push is a few ns, well under 1 % of the cheapest op here).
async fn pipelined(
    client: &Client<Message>,
    request: &Message,
    expected: Answer,
    depth: usize,
    payload: u64,
    control: &Control,
) -> Result<Sample, String> {
    let issue = || async {
        let start = Instant::now();
        (start, client.call(request).await)
    };
    let mut sample = Sample::default();
    let mut in_flight: FuturesUnordered<_> = (0..depth).map(|_| issue()).collect();
    while let Some((start, response)) = in_flight.next().await {
        answer_of(&response?).check(expected)?;
        sample.record(control, start.elapsed(), payload);
        if !control.stopped() {
            in_flight.push(issue());
        }
    }
    Ok(sample)
}

/// One snapshot transfer after another; op = one transfer.
async fn snapshots(client: &Client<Message>, control: &Control) -> Result<Sample, String> {
    let snapshot = Snapshot::new();
    let mut sample = Sample::default();
    while !control.stopped() {
        let start = Instant::now();
        answer_of(&client.install_snapshot(&snapshot).await?).check(Answer::snapshot())?;
        sample.record(control, start.elapsed(), SNAPSHOT_SIZE as u64);
    }
    Ok(sample)
}

/// `fan-in-1000`: each connection is its own task with its own `TcpStream` + `Framed`, doing
/// sequential heartbeats with `Framed::send` (a flush per request) and `Framed::next`.
async fn fan_in_connection(
    addr: SocketAddr,
    request: Arc<Message>,
    control: Control,
) -> Result<Sample, String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect to {addr}: {e}"))?;
    stream
        .set_nodelay(true)
        .map_err(|e| format!("set TCP_NODELAY: {e}"))?;
    let mut framed = Framed::new(stream, codec());
    let mut sample = Sample::default();
    let mut id = 0;
    while !control.stopped() {
        id += 1;
        let start = Instant::now();
        framed
            .send(encode(id, &request))
            .await
            .map_err(|e| format!("send: {e}"))?;
        let frame = framed
            .next()
            .await
            .ok_or("connection closed")?
            .map_err(|e| format!("receive: {e}"))?;
        let envelope = decode::<Message>(&frame)?;
        if envelope.id != id {
            return Err(format!("answer to {} while waiting for {id}", envelope.id));
        }
        answer_of(&envelope.message).check(Answer::heartbeat())?;
        sample.record(&control, start.elapsed(), 0);
    }
    Ok(sample)
}

async fn join(handle: tokio::task::JoinHandle<Result<Sample, String>>) -> Result<Sample, String> {
    handle.await.map_err(|e| format!("task failed: {e}"))?
}

/// The client side of a scenario: runs as a task on the client runtime.
async fn drive(scenario: Scenario, addr: SocketAddr, control: Control) -> Result<Sample, String> {
    if scenario == Scenario::FanIn1000 {
        let request = Arc::new(heartbeat());
        let tasks: Vec<_> = (0..FAN_IN_CONNECTIONS)
            .map(|_| tokio::spawn(fan_in_connection(addr, request.clone(), control.clone())))
            .collect();
        let mut sample = Sample::default();
        let mut failure = None;
        for task in tasks {
            match join(task).await {
                Ok(s) => sample.merge(s),
                Err(e) => failure = failure.or(Some(e)),
            }
        }
        return match failure {
            Some(e) => Err(format!("fan-in-1000: {e}")),
            None => Ok(sample),
        };
    }

    let client = Client::<Message>::connect(addr).await?;
    let payload = |s: Scenario| s.entries().map_or(0, |(n, size)| (n * size) as u64);
    match scenario {
        Scenario::HeartbeatSeq => {
            sequential(&client, &heartbeat(), Answer::heartbeat(), 0, &control).await
        }
        Scenario::VoteSeq => {
            sequential(&client, &request_vote(), Answer::vote(), 0, &control).await
        }
        Scenario::Append100bSeq => {
            let request = append_entries(1, 100);
            let expected = Answer::append(1);
            sequential(&client, &request, expected, payload(scenario), &control).await
        }
        Scenario::HeartbeatPipelined => {
            let expected = Answer::heartbeat();
            pipelined(&client, &heartbeat(), expected, PIPELINE_DEPTH, 0, &control).await
        }
        Scenario::Append64x1kPipelined => {
            let request = append_entries(64, 1024);
            let (expected, depth) = (Answer::append(64), PIPELINE_DEPTH);
            pipelined(
                &client,
                &request,
                expected,
                depth,
                payload(scenario),
                &control,
            )
            .await
        }
        Scenario::Append1mPipelined => {
            let request = append_entries(1, 1 << 20);
            let (expected, depth) = (Answer::append(1), BULK_PIPELINE_DEPTH);
            pipelined(
                &client,
                &request,
                expected,
                depth,
                payload(scenario),
                &control,
            )
            .await
        }
        Scenario::Snapshot64m => snapshots(&client, &control).await,
        Scenario::HeartbeatUnderLoad => {
            // The background load shares the heartbeats' connection: a tokio user has one
            // multiplexed connection per peer, so a heartbeat's frame queues behind snapshot
            // chunks and 1 MiB entries already in the writer channel, the socket buffers and
            // the server's reader task (head-of-line blocking; raftnet's lanes avoid it).
            let snapshot_client = client.clone();
            let snapshot_control = control.clone();
            let snapshot =
                tokio::spawn(async move { snapshots(&snapshot_client, &snapshot_control).await });
            let bulk_client = client.clone();
            let bulk_control = control.clone();
            let bulk = tokio::spawn(async move {
                let request = append_entries(1, 1 << 20);
                let (expected, depth) = (Answer::append(1), BULK_PIPELINE_DEPTH);
                pipelined(
                    &bulk_client,
                    &request,
                    expected,
                    depth,
                    1 << 20,
                    &bulk_control,
                )
                .await
            });
            let heartbeats =
                sequential(&client, &heartbeat(), Answer::heartbeat(), 0, &control).await;
            let background = [join(snapshot).await, join(bulk).await];
            let mut sample = heartbeats?;
            for load in background {
                sample.payload_bytes += load?.payload_bytes;
            }
            Ok(sample)
        }
        Scenario::FanIn1000 => unreachable!("handled above"),
        Scenario::Cluster1 | Scenario::Cluster16 | Scenario::Cluster64 => {
            unreachable!("TokioImpl::run hands these to crate::cluster")
        }
    }
}

fn runtime(name: &str) -> Result<Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        .thread_name(name)
        .enable_all()
        .build()
        .map_err(|e| format!("build the {name} runtime: {e}"))
}

/// File descriptors `fan-in-1000` needs: both ends of every connection live in this process.
fn check_fd_limit() -> Result<(), String> {
    use nix::sys::resource::{Resource, getrlimit};
    let needed = 2 * FAN_IN_CONNECTIONS as u64 + 256;
    let (soft, _hard) =
        getrlimit(Resource::RLIMIT_NOFILE).map_err(|e| format!("getrlimit(NOFILE): {e}"))?;
    if soft < needed {
        return Err(format!(
            "fan-in-1000 needs about {needed} file descriptors, the limit is {soft} (raise ulimit -n)"
        ));
    }
    Ok(())
}

impl Implementation for TokioImpl {
    fn name(&self) -> &'static str {
        "tokio"
    }

    fn run(&self, scenario: Scenario, control: &Control) -> Result<Sample, String> {
        if let Some(clients) = scenario.cluster_clients() {
            return crate::cluster::run(crate::cluster::Network::Tokio, clients, control);
        }
        if scenario == Scenario::FanIn1000 {
            check_fd_limit()?;
        }

        let server = pin::as_server(|| runtime("tokio-server"))?;
        let routing = match scenario {
            Scenario::HeartbeatPipelined
            | Scenario::Append64x1kPipelined
            | Scenario::Append1mPipelined => Some(false),
            // Votes and appends are the Raft loop's to answer, on both sides of the comparison
            // (raftnet hands them to its consumer thread); heartbeats take the fast path.
            Scenario::HeartbeatUnderLoad | Scenario::Append100bSeq | Scenario::VoteSeq => {
                Some(true)
            }
            _ => None,
        };
        let routing = match routing {
            None => Routing::in_connection(),
            Some(heartbeat_fast_path) => Routing::through_consumer(&server, heartbeat_fast_path),
        };
        let findings = Findings::new();
        let addr = server.block_on(start_server(routing, findings.clone()))?;

        let client = pin::as_client(|| runtime("tokio-client"))?;
        // The harness thread only waits here; the callers run on the client's workers. They
        // must be `'static`, so they get a clone of `control` (it shares the harness's phase).
        let result = client.block_on(join(client.spawn(drive(scenario, addr, control.clone()))));
        drop(client);
        drop(server);
        // A refused snapshot shows in its answer (`success: false`); the server says why.
        findings.explain(result)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Threads of this process named like the runtimes' workers.
    fn runtime_threads() -> usize {
        std::fs::read_dir("/proc/self/task")
            .map(|tasks| {
                tasks
                    .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                    .filter(|name| {
                        name.starts_with("tokio-server") || name.starts_with("tokio-client")
                    })
                    .count()
            })
            .unwrap_or(0)
    }

    /// The smoke test of the tokio side: every scenario, warm-up 100 ms, measured 200 ms (or
    /// `TOKIO_SMOKE_MS`), then stop; each must complete operations and shut down. Run with
    /// `--release -- --nocapture` for rough ops/s (`RAFTNET_BENCH_PIN=same|split` to place,
    /// `TOKIO_SMOKE_ONLY=<scenario>` for one scenario).
    #[test]
    fn every_scenario_completes_operations() {
        let measure_ms: u64 = std::env::var("TOKIO_SMOKE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(200);
        if let Some(p) = std::env::var("RAFTNET_BENCH_PIN")
            .ok()
            .and_then(|v| pin::Placement::from_name(&v))
        {
            pin::set_placement(p);
        }
        let only = std::env::var("TOKIO_SMOKE_ONLY").ok();
        for scenario in Scenario::ALL {
            if only.as_deref().is_some_and(|o| o != scenario.name()) {
                continue;
            }
            let control = Control::new();
            let result = std::thread::scope(|s| {
                s.spawn(|| {
                    std::thread::sleep(Duration::from_millis(100));
                    control.start_measuring();
                    std::thread::sleep(Duration::from_millis(measure_ms));
                    control.stop();
                });
                TokioImpl.run(scenario, &control)
            });
            let sample = result.unwrap_or_else(|e| panic!("{}: {e}", scenario.name()));
            assert_eq!(
                runtime_threads(),
                0,
                "{}: runtime threads left",
                scenario.name()
            );
            assert!(
                sample.ops > 0,
                "{}: no operation completed",
                scenario.name()
            );
            assert_eq!(sample.ops as usize, sample.latencies_ns.len());
            let mut latencies = sample.latencies_ns.clone();
            latencies.sort_unstable();
            let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize] as f64 / 1e3;
            let secs = measure_ms as f64 / 1e3;
            println!(
                "tokio {:<24} {:>10.0} ops/s  p50 {:>9.1} µs  p99 {:>9.1} µs  {:>7.2} GB/s",
                scenario.name(),
                sample.ops as f64 / secs,
                at(0.5),
                at(0.99),
                sample.payload_bytes as f64 / secs / 1e9,
            );
        }
    }
}

/// The checks catch what they are there for, as on raftnet's side: a wrong answer ends the
/// driver, a damaged snapshot body is refused and says where.
#[cfg(test)]
mod checks {
    use super::*;
    use crate::check::TERM;

    fn server_and_client(findings: &Findings) -> (Runtime, Client<Message>) {
        let runtime = runtime("tokio-check").unwrap();
        let addr = runtime
            .block_on(start_server(Routing::in_connection(), findings.clone()))
            .unwrap();
        let client = runtime.block_on(Client::<Message>::connect(addr)).unwrap();
        (runtime, client)
    }

    #[test]
    fn a_wrong_term_ends_the_driver() {
        let findings = Findings::new();
        let (runtime, client) = server_and_client(&findings);
        let control = Control::new();
        control.start_measuring();
        let Message::AppendEntries(mut request) = heartbeat() else {
            unreachable!()
        };
        request.term = TERM - 1;
        let request = Message::AppendEntries(request);
        let err = runtime
            .block_on(sequential(
                &client,
                &request,
                Answer::heartbeat(),
                0,
                &control,
            ))
            .unwrap_err();
        assert!(
            err.starts_with("wrong answer: AppendEntries(term 6"),
            "{err}"
        );
    }

    #[test]
    fn a_flipped_snapshot_byte_is_refused() {
        let findings = Findings::new();
        let (runtime, client) = server_and_client(&findings);
        let mut snapshot = Snapshot::new();
        // Byte 12,345,678 of the body: chunk 47 (256 KiB chunks), offset 24,910 in it.
        let Message::SnapshotChunk { data, .. } = &mut snapshot.chunks[47] else {
            unreachable!()
        };
        data[24_910] ^= 0x20;
        let response = runtime
            .block_on(client.install_snapshot(&snapshot))
            .unwrap();
        let err = findings
            .explain(answer_of(&response).check(Answer::snapshot()))
            .unwrap_err();
        assert!(
            err.contains("success false") && err.contains("byte 12345678 is"),
            "{err}"
        );
    }
}
