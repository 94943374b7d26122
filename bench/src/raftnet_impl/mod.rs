//! The scenarios on raftnet's `NetTransport`.
//!
//! Both ends live in this process: a server transport whose "Raft side" is a consumer thread
//! answering at once, taking RPCs in batches and answering each batch together
//! (`Consumer::recv_batch`, `Answers`) as a Raft loop can (and, for heartbeats where the scenario says so, the heartbeat fast-path
//! handler on its reactor), and a client transport driven by load threads.
//!
//! Every answer is checked against what the scenario fixes ([`Answer`]: term, success or
//! granted, `last_log`), and the server checks every snapshot body byte by byte
//! ([`BodyCheck`]) before it answers success, exactly as the tokio baseline does: a wrong
//! answer ends the run with an error. (These drivers used to discard the answers, and the
//! snapshot receiver answered success whatever arrived, so raftnet's rows could not fail
//! where tokio's could.)

use std::net::TcpStream;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use raftnet::message::*;
use raftnet::tls::TlsConfig;
use raftnet::wire::hashicorp::{GoRaftVersion, HashicorpCodecFactory};
use raftnet::{
    Answers, AppendPipeline, CallOptions, Config, Consumer, NetTransport, Rpc, ServerAddress,
    ServerId, SnapshotReader, Transport,
};

use crate::check::{Answer, BodyCheck, Findings, PREV_INDEX, TERM, VOTE_TERM, snapshot_body};
use crate::pin;
use crate::scenario::*;

pub mod driver_calls;
mod fan_in;
use self::fan_in::{client_on, fan_in, fan_in_runtime};

/// The most RPCs the server's Raft loop takes at once.
const CONSUMER_BATCH: usize = 256;

/// raftnet's side of the comparison.
#[derive(Debug, Default, Clone, Copy)]
pub struct RaftnetImpl {
    /// How the server answers.
    pub serve: Serve,
    /// The wire format of both ends.
    pub wire: Wire,
    /// Idle connections held open to the calling transport (`--idle-connections`).
    pub idle_connections: usize,
}

/// The most `--idle-connections` asks for: under the per-address limit of `config()` (they
/// all come from 127.0.0.1), with room for the scenario's own.
pub const MAX_IDLE_CONNECTIONS: usize = 1000;

/// How long the calling transport gets to accept the idle connections.
const IDLE_ACCEPT_WITHIN: Duration = Duration::from_secs(10);

/// TCP connections held open to a transport without sending anything (`--idle-connections`).
/// Dropping them closes them.
struct IdleConnections {
    held: Vec<TcpStream>,
    /// The transport's open connections once it had accepted them.
    accepted: u64,
}

impl IdleConnections {
    /// The transport still holds every one. It closes a connection whose first frame does not
    /// come within its slow-peer deadline (`Config::timeout`, 60 s in `config()`: a run's
    /// warm-up and window must fit in it); a run that lost some says so instead of measuring a
    /// smaller epoll set than it claims.
    fn still_open(&self, transport: &NetTransport) -> Result<(), String> {
        if self.held.is_empty() {
            return Ok(());
        }
        let open = transport.metrics().open_connections;
        if open < self.accepted {
            return Err(format!(
                "{} of the {} idle connections were closed during the run (the slow-peer \
                 deadline, Config::timeout, closes a connection that sends nothing for 60 s): \
                 use a shorter --warmup and --seconds",
                self.accepted - open,
                self.held.len()
            ));
        }
        Ok(())
    }
}

/// Open `n` TCP connections to `transport` and hold them without sending anything, once its
/// driver has accepted every one: its epoll set then holds `n` more sockets, as a node's with
/// `n` peers does.
fn hold_idle_connections(transport: &NetTransport, n: usize) -> Result<IdleConnections, String> {
    let before = transport.metrics().open_connections;
    if n == 0 {
        return Ok(IdleConnections {
            held: Vec::new(),
            accepted: before,
        });
    }
    let addr = transport.bound_addr();
    let held = (0..n)
        .map(|_| TcpStream::connect(addr))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| format!("idle connections to {addr}: {e}"))?;
    let deadline = Instant::now() + IDLE_ACCEPT_WITHIN;
    while transport.metrics().open_connections < before + n as u64 {
        if Instant::now() >= deadline {
            return Err(format!(
                "the calling transport accepted {} of {n} idle connections within {:?}",
                transport.metrics().open_connections.saturating_sub(before),
                IDLE_ACCEPT_WITHIN
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    Ok(IdleConnections {
        held,
        accepted: before + n as u64,
    })
}

/// The wire format raftnet's transports speak (`Config::codec`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    /// raftnet's own framing (docs/wire.md).
    #[default]
    Native,
    /// hashicorp/raft's, as Go's `NetworkTransport` v1.1.2 writes it (what the Go column's
    /// program speaks, so the `raftnet-hc`, `raftnet-to-go` and `go-to-raftnet` rows all use
    /// the same bytes on the wire).
    Hashicorp,
}

/// How raftnet's server answers (`--raftnet-serve`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Serve {
    /// A [`raftnet::Service`] answers on the transport's own thread (as tokio's server answers
    /// in its connection task); snapshots, whose bodies are read blocking, go to the consumer.
    #[default]
    Service,
    /// A Raft-loop thread takes RPCs in batches from the consumer (heartbeats, where the
    /// scenario says so, through the heartbeat handler).
    Consumer,
}

impl Serve {
    /// The choice `--raftnet-serve` names.
    pub fn from_name(name: &str) -> Option<Serve> {
        match name {
            "service" => Some(Serve::Service),
            "consumer" => Some(Serve::Consumer),
            _ => None,
        }
    }
}

/// What raftnet's transports wait on (`--backend`): epoll unless told, so a run measures what
/// it always did unless it asks for io_uring.
static BACKEND: std::sync::OnceLock<raftnet::Backend> = std::sync::OnceLock::new();

/// Run raftnet's transports on `backend` from now on (once, before any scenario).
pub fn set_backend(backend: raftnet::Backend) {
    let _ = BACKEND.set(backend);
}

/// The backend raftnet's transports run on (`--backend`, epoll by default).
pub fn backend() -> raftnet::Backend {
    BACKEND.get().copied().unwrap_or(raftnet::Backend::Epoll)
}

/// Mutual TLS for every transport of the RPC scenarios (`--tls`), once [`use_tls`] set it.
static TLS: OnceLock<TlsConfig> = OnceLock::new();

/// Run the RPC scenarios over mutual TLS (`--tls`): a CA and one node certificate made now
/// (`crate::tls::Pki`), used by server and client on both implementations, naming the server
/// id every scenario calls (`id()`: a dial checks that the certificate names the call's
/// server), the sender the requests claim (`SENDER`, "n1") and 127.0.0.1.
pub fn use_tls() -> Result<(), String> {
    let pki = crate::tls::use_pki(crate::tls::Pki::generate(&[id().0.as_str(), SENDER])?)?;
    let tls = TlsConfig::from_pem(
        pki.ca_pem.as_bytes(),
        pki.node_pem.as_bytes(),
        pki.key_pem.as_bytes(),
    )
    .map_err(|e| format!("--tls: {e}"))?;
    TLS.set(tls).map_err(|_| "--tls: already set".to_string())
}

fn config(in_flight: usize, wire: Wire) -> Config {
    let config = Config::default()
        .backend(backend())
        .max_rpcs_in_flight(in_flight)
        .max_pool(FAN_IN_CONNECTIONS + 24)
        // fan-in-1000's callers all come from this one address, which a Raft node's peers
        // would not: the per-address limit must let them in.
        .max_connections_per_address(FAN_IN_CONNECTIONS + 24)
        .timeout(Some(Duration::from_secs(60)));
    let config = match wire {
        Wire::Native => config,
        Wire::Hashicorp => config.codec(Arc::new(HashicorpCodecFactory::new(GoRaftVersion::V1_1))),
    };
    match TLS.get() {
        Some(tls) => config.tls(tls.clone()),
        None => config,
    }
}

/// The server id every request's header names as its sender (with `--tls`, the certificate
/// names it too: a claimed sender the certificate does not name is refused).
const SENDER: &str = "n1";

fn header() -> RpcHeader {
    RpcHeader {
        protocol_version: 3,
        id: Some(Bytes::from_static(SENDER.as_bytes())),
        addr: Some(Bytes::from_static(b"127.0.0.1:7000")),
    }
}

fn heartbeat() -> AppendEntriesRequest {
    AppendEntriesRequest {
        header: header(),
        term: TERM,
        leader: Some(Bytes::from_static(b"127.0.0.1:7000")),
        ..Default::default()
    }
}

fn append(entries: usize, size: usize) -> AppendEntriesRequest {
    let data = Bytes::from(vec![0x5a; size]);
    AppendEntriesRequest {
        header: header(),
        term: TERM,
        leader: Some(Bytes::from_static(b"127.0.0.1:7000")),
        prev_log_entry: PREV_INDEX,
        prev_log_term: TERM,
        leader_commit_index: PREV_INDEX - 1,
        entries: (0..entries)
            .map(|i| Log {
                appended_at: Timestamp::now(),
                ..Log::command(PREV_INDEX + 1 + i as u64, TERM, data.clone())
            })
            .collect(),
    }
}

/// The fields of raftnet's answers that the checks compare.
fn append_answer(r: &AppendEntriesResponse) -> Answer {
    Answer::Append {
        term: r.term,
        success: r.success,
        last_log: r.last_log,
    }
}

fn vote_answer(r: &RequestVoteResponse) -> Answer {
    Answer::Vote {
        term: r.term,
        granted: r.granted,
    }
}

fn snapshot_answer(r: &InstallSnapshotResponse) -> Answer {
    Answer::Snapshot {
        term: r.term,
        success: r.success,
    }
}

/// Read a snapshot body to its end and check it: every byte against the pattern, and the
/// length against both the request's `size` and the scenario's [`SNAPSHOT_SIZE`] (as the tokio
/// baseline's server does). `Err` says what was wrong.
fn check_snapshot(reader: Option<SnapshotReader>, declared: i64) -> Result<(), String> {
    let mut reader = reader.ok_or("an InstallSnapshot without a body")?;
    let mut body = BodyCheck::new();
    // The pieces as they arrived, without copying them (a real node would write them to disk).
    while let Some(chunk) = reader
        .next_chunk()
        .map_err(|e| format!("snapshot body: {e}"))?
    {
        body.feed(&chunk);
    }
    if declared != SNAPSHOT_SIZE as i64 {
        return Err(format!(
            "InstallSnapshot declares {declared} bytes, expected {SNAPSHOT_SIZE}"
        ));
    }
    body.finish(SNAPSHOT_SIZE as u64)
}

/// Answers every RPC at once, as a Raft loop whose log is in memory would; a snapshot only
/// after its body checked out (else `success: false`, and the reason goes to `findings`).
fn answer(mut rpc: Rpc, findings: &Findings) {
    let response = response(&mut rpc, findings);
    rpc.respond(Ok(response));
}

/// The answer [`answer`] gives.
fn response(rpc: &mut Rpc, findings: &Findings) -> Response {
    match &rpc.request {
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
            let (term, size) = (s.term, s.size);
            let checked = check_snapshot(rpc.snapshot.take(), size);
            if let Err(e) = &checked {
                findings.report(e.clone());
            }
            Response::InstallSnapshot(InstallSnapshotResponse {
                header: header(),
                term,
                success: checked.is_ok(),
            })
        }
        Request::TimeoutNow(_) => Response::TimeoutNow(TimeoutNowResponse { header: header() }),
        Request::RequestPreVote(p) => Response::RequestPreVote(RequestPreVoteResponse {
            header: header(),
            term: p.term,
            granted: true,
        }),
    }
}

/// A Raft loop taking its RPCs in batches and answering each batch together.
fn serve_batches(consumer: &Consumer, findings: &Findings) {
    let mut batch = Vec::with_capacity(CONSUMER_BATCH);
    let mut answers = Answers::new();
    while consumer.recv_batch(&mut batch, CONSUMER_BATCH).is_ok() {
        for mut rpc in batch.drain(..) {
            let response = response(&mut rpc, findings);
            answers.add(rpc.responder, Ok(response));
        }
        answers.send();
    }
}

pub(crate) struct Server {
    transport: Arc<NetTransport>,
    consumers: Vec<std::thread::JoinHandle<()>>,
    /// What the server found wrong in what it received.
    pub(crate) findings: Findings,
}

impl Server {
    /// A server transport with `consumers` Raft-side threads, and the heartbeat fast path if
    /// `fast_heartbeats`, or answering through a service if `serve` says so.
    pub(crate) fn start(
        in_flight: usize,
        consumers: usize,
        fast_heartbeats: bool,
        serve: Serve,
        wire: Wire,
    ) -> Result<Server, String> {
        pin::as_server(|| {
            let transport = NetTransport::bind("127.0.0.1:0", None, config(in_flight, wire))
                .map(Arc::new)
                .map_err(|e| e.to_string())?;
            driver_calls::count(&transport);
            let findings = Findings::new();
            if serve == Serve::Service {
                let findings = findings.clone();
                transport.set_service(Some(Arc::new(move |mut rpc: Rpc| {
                    if matches!(rpc.request, Request::InstallSnapshot(_)) {
                        return Some(rpc);
                    }
                    let response = response(&mut rpc, &findings);
                    rpc.respond(Ok(response));
                    None
                })));
            } else if fast_heartbeats {
                let findings = findings.clone();
                transport.set_heartbeat_handler(Some(Arc::new(move |rpc| answer(rpc, &findings))));
            }
            let consumers = (0..consumers)
                .map(|_| {
                    let consumer = transport.consumer().clone();
                    let findings = findings.clone();
                    std::thread::spawn(move || {
                        serve_batches(&consumer, &findings);
                    })
                })
                .collect();
            Ok(Server {
                transport,
                consumers,
                findings,
            })
        })
    }

    pub(crate) fn addr(&self) -> ServerAddress {
        self.transport.local_addr()
    }

    pub(crate) fn stop(self) {
        self.transport.close();
        for c in self.consumers {
            let _ = c.join();
        }
    }
}

pub(crate) fn client(in_flight: usize, wire: Wire) -> Result<Arc<NetTransport>, String> {
    client_with(config(in_flight, wire))
}

fn client_with(config: Config) -> Result<Arc<NetTransport>, String> {
    let transport = pin::as_client(|| NetTransport::bind("127.0.0.1:0", None, config))
        .map(Arc::new)
        .map_err(|e| e.to_string())?;
    driver_calls::count(&transport);
    Ok(transport)
}

fn id() -> ServerId {
    ServerId::from("server")
}

/// Sequential calls of one kind until stopped; each answer must be `expected`.
fn sequential(
    client: &NetTransport,
    to: &ServerAddress,
    control: &Control,
    request: Request,
    expected: Answer,
    payload: u64,
) -> Result<Sample, String> {
    pin::pin_client_thread();
    let mut sample = Sample::default();
    while !control.stopped() {
        let start = Instant::now();
        let answer = match request.clone() {
            Request::AppendEntries(a) => client
                .append_entries(&id(), to, a, CallOptions::default())
                .wait()
                .map(|r| append_answer(&r)),
            Request::RequestVote(v) => client
                .request_vote(&id(), to, v, CallOptions::default())
                .wait()
                .map(|r| vote_answer(&r)),
            other => {
                return Err(format!(
                    "no sequential scenario sends {:?}",
                    other.message_type()
                ));
            }
        };
        answer.map_err(|e| e.to_string())?.check(expected)?;
        sample.record(control, start.elapsed(), payload);
    }
    Ok(sample)
}

/// Keep `depth` appends in flight through a pipeline until stopped.
fn pipelined(
    pipeline: &AppendPipeline,
    control: &Control,
    request: &AppendEntriesRequest,
    expected: Answer,
    depth: usize,
) -> Result<Sample, String> {
    let payload: u64 = request
        .entries
        .iter()
        .map(|e| e.data.as_ref().map_or(0, |d| d.len() as u64))
        .sum();
    let mut sample = Sample::default();
    let mut in_flight = 0usize;
    // Refill the pipeline in batches (one hand-off to the transport per refill), and drain its
    // completions in batches.
    let mut requests = Vec::with_capacity(depth);
    let mut sent = Vec::with_capacity(depth);
    loop {
        if !control.stopped() {
            requests.extend((in_flight..depth).map(|_| request.clone()));
            in_flight += pipeline
                .try_send_batch(&mut requests, &mut sent)
                .map_err(|e| e.to_string())?;
            requests.clear();
            sent.clear();
        } else if in_flight == 0 {
            return Ok(sample);
        }
        // Take every completion that is ready; block for one if none is.
        pipeline
            .recv_batch(&mut sent, depth)
            .map_err(|e| e.to_string())?;
        for future in sent.drain(..) {
            in_flight -= 1;
            let response = future
                .try_result()
                .unwrap_or(Err(raftnet::Error::Shutdown))
                .map_err(|e| e.to_string())?;
            append_answer(&response).check(expected)?;
            sample.record(control, future.start().elapsed(), payload);
        }
    }
}

fn snapshots(
    client: &NetTransport,
    to: &ServerAddress,
    control: &Control,
) -> Result<Sample, String> {
    pin::pin_client_thread();
    // The snapshot: the pattern the server checks (`crate::check`), one shared buffer in
    // memory, sent as slices of it (`install_snapshot_bytes`: no copy, no reader thread), as
    // the tokio baseline writes it from the same buffer.
    let data = snapshot_body();
    let mut sample = Sample::default();
    while !control.stopped() {
        let start = Instant::now();
        let request = InstallSnapshotRequest {
            header: header(),
            snapshot_version: 1,
            term: TERM,
            leader: Some(Bytes::from_static(b"127.0.0.1:7000")),
            last_log_index: PREV_INDEX,
            last_log_term: TERM,
            size: SNAPSHOT_SIZE as i64,
            ..Default::default()
        };
        let response = client
            .install_snapshot_bytes(&id(), to, request, data.clone(), CallOptions::default())
            .wait()
            .map_err(|e| e.to_string())?;
        snapshot_answer(&response).check(Answer::snapshot())?;
        sample.record(control, start.elapsed(), SNAPSHOT_SIZE as u64);
    }
    Ok(sample)
}

impl Implementation for RaftnetImpl {
    fn name(&self) -> &'static str {
        match self.wire {
            Wire::Native => "raftnet",
            Wire::Hashicorp => "raftnet-hc",
        }
    }

    fn run(&self, scenario: Scenario, control: &Control) -> Result<Sample, String> {
        if let (Some(clients), Some(store)) = (scenario.cluster_clients(), scenario.cluster_store())
        {
            if self.wire == Wire::Hashicorp {
                return Err(format!(
                    "{NOT_APPLICABLE}: the cluster runs openraft over raftnet's native format"
                ));
            }
            return crate::cluster::run(crate::cluster::Network::Raftnet, store, clients, control);
        }
        if scenario == Scenario::FanIn1000 && self.idle_connections > 0 {
            // Its client's driver runs only while the callers do, so it could not accept idle
            // connections before them; and its thousand connections are the point already.
            return Err(format!(
                "{NOT_APPLICABLE}: fan-in-1000 opens {FAN_IN_CONNECTIONS} connections of its own (no --idle-connections)"
            ));
        }
        let fast_heartbeats = matches!(
            scenario,
            Scenario::HeartbeatSeq
                | Scenario::HeartbeatUnderLoad
                | Scenario::FanIn1000
                | Scenario::HandshakeSeq
        );
        let depth = pipeline_depth(scenario);
        let consumers = if scenario == Scenario::HeartbeatUnderLoad {
            2
        } else {
            1
        };
        let server = Server::start(depth, consumers, fast_heartbeats, self.serve, self.wire)?;
        let runtime = match scenario {
            Scenario::FanIn1000 => Some(fan_in_runtime()?),
            _ => None,
        };
        let client = match (scenario, &runtime) {
            // No pool: every call dials (and handshakes), and its connection closes after the
            // answer.
            (Scenario::HandshakeSeq, _) => client_with(config(depth, self.wire).max_pool(0))?,
            (_, Some(runtime)) => client_on(config(depth, self.wire), runtime)?,
            _ => client(depth, self.wire)?,
        };
        let idle = hold_idle_connections(&client, self.idle_connections)?;
        let result = match &runtime {
            Some(runtime) => fan_in(&client, &server.addr(), control, runtime),
            None => drive(&client, &server.addr(), scenario, control),
        }
        .and_then(|sample| {
            idle.still_open(&client)?;
            Ok(sample)
        });
        drop(idle);
        // The runtime first: the client's driver is its task, and a transport dropped outside
        // its runtime waits for that task to close every connection, which only the runtime's
        // `block_on` would run. With the runtime gone the task is gone and its sockets closed.
        drop(runtime);
        drop(client);
        let findings = server.findings.clone();
        server.stop();
        // A refused snapshot shows in its answer (`success: false`); the server says why.
        findings.explain(result)
    }
}

/// Requests in flight for `scenario`'s pipelines.
pub(crate) fn pipeline_depth(scenario: Scenario) -> usize {
    match scenario {
        Scenario::Append1mPipelined => BULK_PIPELINE_DEPTH,
        _ => PIPELINE_DEPTH,
    }
}

/// The client side of an RPC `scenario`: `client` calls the server at `to` until stopped
/// (raftnet's own server, or the Go column's).
pub(crate) fn drive(
    client: &Arc<NetTransport>,
    to: &ServerAddress,
    scenario: Scenario,
    control: &Control,
) -> Result<Sample, String> {
    let depth = pipeline_depth(scenario);
    match scenario {
        Scenario::HeartbeatSeq | Scenario::HandshakeSeq => sequential(
            client,
            to,
            control,
            heartbeat().into(),
            Answer::heartbeat(),
            0,
        ),
        Scenario::Append100bSeq => sequential(
            client,
            to,
            control,
            append(1, 100).into(),
            Answer::append(1),
            100,
        ),
        Scenario::VoteSeq => sequential(
            client,
            to,
            control,
            RequestVoteRequest {
                header: header(),
                term: VOTE_TERM,
                candidate: Some(Bytes::from_static(b"127.0.0.1:7000")),
                last_log_index: PREV_INDEX,
                last_log_term: TERM,
                leadership_transfer: false,
            }
            .into(),
            Answer::vote(),
            0,
        ),
        Scenario::HeartbeatPipelined
        | Scenario::Append64x1kPipelined
        | Scenario::Append1mPipelined => {
            let (request, expected) = match scenario.entries() {
                Some((n, size)) => (append(n, size), Answer::append(n)),
                None => (heartbeat(), Answer::heartbeat()),
            };
            pin::pin_client_thread();
            let pipeline = client
                .append_entries_pipeline(&id(), to)
                .map_err(|e| e.to_string())?;
            pipelined(&pipeline, control, &request, expected, depth)
        }
        Scenario::Snapshot64m => snapshots(client, to, control),
        Scenario::HeartbeatUnderLoad => std::thread::scope(|s| {
            let bulk_client = client.clone();
            let bulk_to = to.clone();
            let appends = s.spawn(move || -> Result<Sample, String> {
                pin::pin_client_thread();
                let pipeline = bulk_client
                    .append_entries_pipeline(&id(), &bulk_to)
                    .map_err(|e| e.to_string())?;
                let request = append(1, 1 << 20);
                pipelined(
                    &pipeline,
                    control,
                    &request,
                    Answer::append(1),
                    BULK_PIPELINE_DEPTH,
                )
            });
            let snapshot = s.spawn(|| snapshots(client, to, control));
            let mut heartbeats = sequential(
                client,
                to,
                control,
                heartbeat().into(),
                Answer::heartbeat(),
                0,
            )?;
            let background = [appends.join(), snapshot.join()];
            heartbeats.payload_bytes = 0;
            for b in background {
                let b = b.map_err(|_| "a load thread panicked".to_string())??;
                heartbeats.payload_bytes += b.payload_bytes;
            }
            Ok(heartbeats)
        }),
        Scenario::FanIn1000 => fan_in(client, to, control, &fan_in_runtime()?),
        Scenario::Cluster1
        | Scenario::Cluster16
        | Scenario::Cluster64
        | Scenario::ClusterBench1
        | Scenario::ClusterBench16
        | Scenario::ClusterBench64 => Err(format!("{} is not an RPC scenario", scenario.name())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every scenario runs and completes operations, with either way of serving (a smoke test;
    /// no timing assertions).
    /// `cargo test --release -p raftnet-bench raftnet_impl -- --nocapture` prints rough rates.
    ///
    /// The windows widen when a run completes nothing: on a loaded machine, setting up
    /// fan-in-1000's thousand connections in a debug build can outlast a short warm-up and
    /// window, which says nothing about the transport; no operation in the widest window does.
    #[test]
    fn every_scenario_completes_operations() {
        let _load = crate::measure::test_lock::loading();
        let runs = Scenario::ALL.into_iter().flat_map(|scenario| {
            // The cluster scenarios run openraft's own serving, whatever `serve` says.
            let serves: &[Serve] = if scenario.cluster_clients().is_some() {
                &[Serve::Service]
            } else {
                &[Serve::Service, Serve::Consumer]
            };
            serves.iter().map(move |&serve| (scenario, serve))
        });
        for (scenario, serve) in runs {
            let imp = RaftnetImpl {
                serve,
                ..Default::default()
            };
            let mut windows = crate::scenario::SMOKE_WINDOWS.iter().peekable();
            while let Some(&(warmup, window)) = windows.next() {
                let control = Control::new();
                let started = Instant::now();
                let sample = std::thread::scope(|s| {
                    let run = s.spawn(|| imp.run(scenario, &control));
                    std::thread::sleep(warmup);
                    control.start_measuring();
                    std::thread::sleep(window);
                    control.stop();
                    run.join().expect("no panic")
                });
                let sample = sample.unwrap_or_else(|e| panic!("{}: {e}", scenario.name()));
                if sample.ops == 0 && windows.peek().is_some() {
                    eprintln!(
                        "{}: nothing completed in {window:?}; widening",
                        scenario.name()
                    );
                    continue;
                }
                assert!(
                    sample.ops > 0,
                    "{}: no operation completed",
                    scenario.name()
                );
                eprintln!(
                    "{:<24} {:<8?} {:>10.0} ops/s {:>8.1} MB/s (run took {:?})",
                    scenario.name(),
                    serve,
                    sample.ops as f64 / window.as_secs_f64(),
                    sample.payload_bytes as f64 / window.as_secs_f64() / 1e6,
                    started.elapsed()
                );
                break;
            }
        }
    }
}

/// The checks catch what they are there for: a wrong answer ends the driver, a damaged
/// snapshot body is refused and says where.
#[cfg(test)]
mod checks {
    use super::*;

    #[test]
    fn a_wrong_term_ends_the_driver() {
        let _load = crate::measure::test_lock::loading();
        let server = Server::start(1, 1, true, Serve::Consumer, Wire::Native).unwrap();
        let to = server.addr();
        let client = client(1, Wire::Native).unwrap();
        let control = Control::new();
        control.start_measuring();
        // The server echoes the request's term; the driver expects the scenario's.
        let mut request = heartbeat();
        request.term = TERM - 1;
        let err = sequential(
            &client,
            &to,
            &control,
            request.into(),
            Answer::heartbeat(),
            0,
        )
        .unwrap_err();
        assert!(
            err.starts_with("wrong answer: AppendEntries(term 6"),
            "{err}"
        );
        drop(client);
        server.stop();
    }

    #[test]
    fn a_flipped_snapshot_byte_is_refused() {
        let _load = crate::measure::test_lock::loading();
        let server = Server::start(1, 1, false, Serve::Consumer, Wire::Native).unwrap();
        let to = server.addr();
        let client = client(1, Wire::Native).unwrap();
        let mut body = snapshot_body().to_vec();
        body[12_345_678] ^= 0x20;
        let request = InstallSnapshotRequest {
            header: header(),
            snapshot_version: 1,
            term: TERM,
            size: SNAPSHOT_SIZE as i64,
            ..Default::default()
        };
        let response = client
            .install_snapshot(
                &id(),
                &to,
                request,
                Box::new(std::io::Cursor::new(body)),
                CallOptions::default(),
            )
            .wait()
            .unwrap();
        let result = server
            .findings
            .explain(snapshot_answer(&response).check(Answer::snapshot()));
        let err = result.unwrap_err();
        assert!(
            err.contains("success false") && err.contains("byte 12345678 is"),
            "{err}"
        );
        drop(client);
        server.stop();
    }
}
