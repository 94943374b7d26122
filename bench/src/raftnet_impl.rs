//! The scenarios on raftnet's `NetTransport`.
//!
//! Both ends live in this process: a server transport whose "Raft side" is a consumer thread
//! answering at once (and, for heartbeats where the scenario says so, the heartbeat fast-path
//! handler on its reactor), and a client transport driven by load threads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use raftnet::message::*;
use raftnet::{
    AppendPipeline, CallOptions, Config, NetTransport, Rpc, ServerAddress, ServerId, Transport,
};

use crate::pin;
use crate::scenario::*;

/// raftnet's side of the comparison.
#[derive(Debug, Default)]
pub struct RaftnetImpl;

fn config(in_flight: usize) -> Config {
    Config::default()
        .max_rpcs_in_flight(in_flight)
        .max_pool(FAN_IN_CONNECTIONS + 24)
        // fan-in-1000's callers all come from this one address, which a Raft node's peers
        // would not: the per-address limit must let them in.
        .max_connections_per_address(FAN_IN_CONNECTIONS + 24)
        .timeout(Some(Duration::from_secs(60)))
}

fn header() -> RpcHeader {
    RpcHeader {
        protocol_version: 3,
        id: Some(Bytes::from_static(b"n1")),
        addr: Some(Bytes::from_static(b"127.0.0.1:7000")),
    }
}

fn heartbeat() -> AppendEntriesRequest {
    AppendEntriesRequest {
        header: header(),
        term: 7,
        leader: Some(Bytes::from_static(b"127.0.0.1:7000")),
        ..Default::default()
    }
}

fn append(entries: usize, size: usize) -> AppendEntriesRequest {
    let data = Bytes::from(vec![0x5a; size]);
    AppendEntriesRequest {
        header: header(),
        term: 7,
        leader: Some(Bytes::from_static(b"127.0.0.1:7000")),
        prev_log_entry: 1000,
        prev_log_term: 7,
        leader_commit_index: 999,
        entries: (0..entries)
            .map(|i| Log {
                appended_at: Timestamp::now(),
                ..Log::command(1001 + i as u64, 7, data.clone())
            })
            .collect(),
    }
}

/// Answers every RPC at once, as a Raft loop whose log is in memory would.
fn answer(mut rpc: Rpc) {
    let response = match &rpc.request {
        Request::AppendEntries(a) => Response::AppendEntries(AppendEntriesResponse {
            header: header(),
            term: a.term,
            last_log: a.entries.last().map_or(a.prev_log_entry, |e| e.index),
            success: true,
            no_retry_backoff: false,
        }),
        Request::RequestVote(v) => Response::RequestVote(RequestVoteResponse {
            header: header(),
            term: v.term,
            peers: None,
            granted: true,
        }),
        Request::InstallSnapshot(s) => {
            let term = s.term;
            if let Some(mut reader) = rpc.snapshot.take() {
                // Read the whole body without copying it (a real node would write it to disk).
                while let Ok(Some(_chunk)) = reader.next_chunk() {}
            }
            Response::InstallSnapshot(InstallSnapshotResponse {
                header: header(),
                term,
                success: true,
            })
        }
        Request::TimeoutNow(_) => Response::TimeoutNow(TimeoutNowResponse { header: header() }),
        Request::RequestPreVote(p) => Response::RequestPreVote(RequestPreVoteResponse {
            header: header(),
            term: p.term,
            granted: true,
        }),
    };
    rpc.respond(Ok(response));
}

struct Server {
    transport: NetTransport,
    consumers: Vec<std::thread::JoinHandle<()>>,
}

impl Server {
    /// A server transport with `consumers` Raft-side threads, and the heartbeat fast path if
    /// `fast_heartbeats`.
    fn start(in_flight: usize, consumers: usize, fast_heartbeats: bool) -> Result<Server, String> {
        pin::as_server(|| {
            let transport = NetTransport::bind("127.0.0.1:0", None, config(in_flight))
                .map_err(|e| e.to_string())?;
            if fast_heartbeats {
                transport.set_heartbeat_handler(Some(Arc::new(answer)));
            }
            let consumers = (0..consumers)
                .map(|_| {
                    let consumer = transport.consumer().clone();
                    std::thread::spawn(move || {
                        while let Ok(rpc) = consumer.recv() {
                            answer(rpc);
                        }
                    })
                })
                .collect();
            Ok(Server {
                transport,
                consumers,
            })
        })
    }

    fn addr(&self) -> ServerAddress {
        self.transport.local_addr()
    }

    fn stop(self) {
        self.transport.close();
        for c in self.consumers {
            let _ = c.join();
        }
    }
}

fn client(in_flight: usize) -> Result<Arc<NetTransport>, String> {
    pin::as_client(|| NetTransport::bind("127.0.0.1:0", None, config(in_flight)))
        .map(Arc::new)
        .map_err(|e| e.to_string())
}

fn id() -> ServerId {
    ServerId::from("server")
}

/// Sequential calls of one kind until stopped.
fn sequential(
    client: &NetTransport,
    to: &ServerAddress,
    control: &Control,
    request: Request,
    payload: u64,
) -> Result<Sample, String> {
    pin::pin_client_thread();
    let mut sample = Sample::default();
    while !control.stopped() {
        let start = Instant::now();
        let result = match request.clone() {
            Request::AppendEntries(a) => client
                .append_entries(&id(), to, a, CallOptions::default())
                .wait()
                .map(|_| ()),
            Request::RequestVote(v) => client
                .request_vote(&id(), to, v, CallOptions::default())
                .wait()
                .map(|_| ()),
            other => {
                return Err(format!(
                    "no sequential scenario sends {:?}",
                    other.message_type()
                ));
            }
        };
        result.map_err(|e| e.to_string())?;
        sample.record(control, start.elapsed(), payload);
    }
    Ok(sample)
}

/// Keep `depth` appends in flight through a pipeline until stopped.
fn pipelined(
    pipeline: &AppendPipeline,
    control: &Control,
    request: &AppendEntriesRequest,
    depth: usize,
) -> Result<Sample, String> {
    let payload: u64 = request
        .entries
        .iter()
        .map(|e| e.data.as_ref().map_or(0, |d| d.len() as u64))
        .sum();
    let mut sample = Sample::default();
    let mut in_flight = 0usize;
    loop {
        if !control.stopped() {
            while in_flight < depth {
                match pipeline.try_send(request.clone()) {
                    Ok(_) => in_flight += 1,
                    Err(raftnet::TrySendError::Full(_)) => break,
                    Err(raftnet::TrySendError::Closed(e)) => return Err(e.to_string()),
                }
            }
        } else if in_flight == 0 {
            return Ok(sample);
        }
        // Take every completion that is ready; block for one if none is.
        let first = pipeline.recv().map_err(|e| e.to_string())?;
        let mut done = Some(first);
        while let Some(future) = done {
            in_flight -= 1;
            future
                .try_result()
                .unwrap_or(Err(raftnet::Error::Shutdown))
                .map_err(|e| e.to_string())?;
            sample.record(control, future.start().elapsed(), payload);
            done = pipeline.try_recv().map_err(|e| e.to_string())?;
        }
    }
}

/// The snapshot "file": one shared buffer, read through a `Cursor` per transfer (a cursor lets
/// the sender fill its chunks without zeroing them first, as a file would).
#[derive(Clone)]
struct SharedBytes(Arc<Vec<u8>>);

impl AsRef<[u8]> for SharedBytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

fn snapshots(
    client: &NetTransport,
    to: &ServerAddress,
    control: &Control,
) -> Result<Sample, String> {
    pin::pin_client_thread();
    let data = SharedBytes(Arc::new(vec![0xa5u8; SNAPSHOT_SIZE]));
    let mut sample = Sample::default();
    while !control.stopped() {
        let start = Instant::now();
        let request = InstallSnapshotRequest {
            header: header(),
            snapshot_version: 1,
            term: 7,
            leader: Some(Bytes::from_static(b"127.0.0.1:7000")),
            last_log_index: 1000,
            last_log_term: 7,
            size: SNAPSHOT_SIZE as i64,
            ..Default::default()
        };
        let reader = std::io::Cursor::new(data.clone());
        client
            .install_snapshot(&id(), to, request, Box::new(reader), CallOptions::default())
            .wait()
            .map_err(|e| e.to_string())?;
        sample.record(control, start.elapsed(), SNAPSHOT_SIZE as u64);
    }
    Ok(sample)
}

/// `FAN_IN_CONNECTIONS` sequential callers as futures polled by one client thread (any executor
/// will do; here `futures`' `block_on` over a `FuturesUnordered`): every call in flight holds its
/// own pooled connection, so there are that many connections.
fn fan_in(client: &NetTransport, to: &ServerAddress, control: &Control) -> Result<Sample, String> {
    use futures::StreamExt;
    use futures::stream::FuturesUnordered;
    pin::pin_client_thread();
    futures::executor::block_on(async {
        let mut callers: FuturesUnordered<_> = (0..FAN_IN_CONNECTIONS)
            .map(|_| async {
                let mut sample = Sample::default();
                while !control.stopped() {
                    let start = Instant::now();
                    client
                        .append_entries(&id(), to, heartbeat(), CallOptions::default())
                        .await
                        .map_err(|e| e.to_string())?;
                    sample.record(control, start.elapsed(), 0);
                }
                Ok::<Sample, String>(sample)
            })
            .collect();
        let mut total = Sample::default();
        while let Some(sample) = callers.next().await {
            total.merge(sample?);
        }
        Ok(total)
    })
}

impl Implementation for RaftnetImpl {
    fn name(&self) -> &'static str {
        "raftnet"
    }

    fn run(&self, scenario: Scenario, control: &Control) -> Result<Sample, String> {
        if let Some(clients) = scenario.cluster_clients() {
            return crate::cluster::run(crate::cluster::Network::Raftnet, clients, control);
        }
        let fast_heartbeats = matches!(
            scenario,
            Scenario::HeartbeatSeq | Scenario::HeartbeatUnderLoad | Scenario::FanIn1000
        );
        let depth = match scenario {
            Scenario::Append1mPipelined => BULK_PIPELINE_DEPTH,
            _ => PIPELINE_DEPTH,
        };
        let consumers = if scenario == Scenario::HeartbeatUnderLoad {
            2
        } else {
            1
        };
        let server = Server::start(depth, consumers, fast_heartbeats)?;
        let to = server.addr();
        let client = client(depth)?;
        let result = match scenario {
            Scenario::HeartbeatSeq => sequential(&client, &to, control, heartbeat().into(), 0),
            Scenario::Append100bSeq => {
                sequential(&client, &to, control, append(1, 100).into(), 100)
            }
            Scenario::VoteSeq => sequential(
                &client,
                &to,
                control,
                RequestVoteRequest {
                    header: header(),
                    term: 8,
                    candidate: Some(Bytes::from_static(b"127.0.0.1:7000")),
                    last_log_index: 1000,
                    last_log_term: 7,
                    leadership_transfer: false,
                }
                .into(),
                0,
            ),
            Scenario::HeartbeatPipelined
            | Scenario::Append64x1kPipelined
            | Scenario::Append1mPipelined => {
                let request = match scenario.entries() {
                    Some((n, size)) => append(n, size),
                    None => heartbeat(),
                };
                pin::pin_client_thread();
                let pipeline = client
                    .append_entries_pipeline(&id(), &to)
                    .map_err(|e| e.to_string())?;
                pipelined(&pipeline, control, &request, depth)
            }
            Scenario::Snapshot64m => snapshots(&client, &to, control),
            Scenario::HeartbeatUnderLoad => std::thread::scope(|s| {
                let bulk_client = client.clone();
                let bulk_to = to.clone();
                let appends = s.spawn(move || -> Result<Sample, String> {
                    pin::pin_client_thread();
                    let pipeline = bulk_client
                        .append_entries_pipeline(&id(), &bulk_to)
                        .map_err(|e| e.to_string())?;
                    pipelined(&pipeline, control, &append(1, 1 << 20), BULK_PIPELINE_DEPTH)
                });
                let snapshot = s.spawn(|| snapshots(&client, &to, control));
                let mut heartbeats = sequential(&client, &to, control, heartbeat().into(), 0)?;
                let background = [appends.join(), snapshot.join()];
                heartbeats.payload_bytes = 0;
                for b in background {
                    let b = b.map_err(|_| "a load thread panicked".to_string())??;
                    heartbeats.payload_bytes += b.payload_bytes;
                }
                Ok(heartbeats)
            }),
            Scenario::FanIn1000 => fan_in(&client, &to, control),
            Scenario::Cluster1 | Scenario::Cluster16 | Scenario::Cluster64 => {
                unreachable!("handled above")
            }
        };
        drop(client);
        server.stop();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every scenario runs and completes operations (a smoke test; no timing assertions).
    /// `cargo test --release -p raftnet-bench raftnet_impl -- --nocapture` prints rough rates.
    #[test]
    fn every_scenario_completes_operations() {
        for scenario in Scenario::ALL {
            let control = Control::new();
            let started = Instant::now();
            let sample = std::thread::scope(|s| {
                let run = s.spawn(|| RaftnetImpl.run(scenario, &control));
                std::thread::sleep(Duration::from_millis(100));
                control.start_measuring();
                std::thread::sleep(Duration::from_millis(300));
                control.stop();
                run.join().expect("no panic")
            });
            let sample = sample.unwrap_or_else(|e| panic!("{}: {e}", scenario.name()));
            assert!(
                sample.ops > 0,
                "{}: no operation completed",
                scenario.name()
            );
            eprintln!(
                "{:<24} {:>10.0} ops/s {:>8.1} MB/s (run took {:?})",
                scenario.name(),
                sample.ops as f64 / 0.3,
                sample.payload_bytes as f64 / 0.3 / 1e6,
                started.elapsed()
            );
        }
    }
}
