//! A 3-node replicated key-value store: openraft 0.9 over raftnet, over real TCP on loopback.
//!
//! It initialises the cluster, waits for a leader, writes keys from concurrent clients, kills the
//! leader's transport, waits for a new leader, writes more, and checks that every surviving node
//! holds every acknowledged key. It prints writes/s and commit latency, and exits non-zero if a
//! check fails.
//!
//! Run with `cargo run --release --example cluster`. With `--tls DIR`, the nodes speak mutual
//! TLS with the certificates in DIR (make them with `cargo run --example make_certs -- DIR`):
//! each dial accepts only the certificate of the node it meant to reach, and each node serves
//! only the cluster's members (`examples/common/tls.rs`).

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use openraft::{Config, Raft};
use openraft_memstore::{ClientRequest, MemStore, TypeConfig};
use raftnet::openraft::{RaftnetNetworkFactory, serve};
use raftnet::{NetTransport, ServerAddress, Transport};

#[path = "common/tls.rs"]
mod tls;

type NodeId = u64;

/// Concurrent clients writing to the leader.
const CLIENTS: usize = 16;
/// Writes before the leader is killed, and after.
const WRITES_BEFORE: u64 = 20_000;
const WRITES_AFTER: u64 = 10_000;
/// How long any phase may take before the demo gives up (the whole run must stay under 60 s).
const PHASE_TIMEOUT: Duration = Duration::from_secs(15);

struct Node {
    id: NodeId,
    raft: Raft<TypeConfig>,
    store: Arc<MemStore>,
    transport: Arc<NetTransport>,
}

type Failure = Box<dyn std::error::Error + Send + Sync>;

fn fail(message: impl Into<String>) -> Failure {
    message.into().into()
}

async fn start_nodes(
    n: u64,
    config: Arc<Config>,
    tls_dir: Option<&Path>,
) -> Result<Vec<Node>, Failure> {
    // Bind first, so every node knows every address before Raft starts.
    let mut transports = Vec::new();
    for id in 0..n {
        let mut config = raftnet::Config::default().timeout(Some(Duration::from_secs(5)));
        if let Some(dir) = tls_dir {
            // The peers' addresses are known once all are bound: registered below.
            config = config.tls(tls::node_tls(dir, id, &[])?);
        }
        // The transport's driver runs as a task on this runtime, beside openraft's own tasks.
        let runtime = tokio::runtime::Handle::current();
        transports.push(Arc::new(NetTransport::bind_on(
            "127.0.0.1:0",
            None,
            config,
            &runtime,
        )?));
    }
    let addresses: Arc<HashMap<NodeId, ServerAddress>> = Arc::new(
        (0..n)
            .map(|id| (id, transports[id as usize].local_addr()))
            .collect(),
    );
    if let Some(dir) = tls_dir {
        // Every node's address under its name: reloaded into each transport (new connections
        // use it; none is open yet).
        let peers: Vec<(NodeId, SocketAddr)> = (0..n)
            .map(|id| Ok((id, addresses[&id].0.parse()?)))
            .collect::<Result<_, std::net::AddrParseError>>()?;
        for (id, transport) in (0..n).zip(&transports) {
            transport.reload_tls(tls::node_tls(dir, id, &peers)?)?;
        }
        println!("mutual TLS with the certificates in {}", dir.display());
    }
    let mut nodes = Vec::new();
    for (id, transport) in (0..n).zip(transports) {
        let store = Arc::new(MemStore::new());
        let (log_store, state_machine) = openraft::storage::Adaptor::new(store.clone());
        let table = addresses.clone();
        let network = RaftnetNetworkFactory::<TypeConfig>::new(
            id,
            transport.clone(),
            Arc::new(move |target: &NodeId, _: &()| table[target].clone()),
        );
        let raft = Raft::new(id, config.clone(), network, log_store, state_machine).await?;
        tokio::spawn(serve(raft.clone(), transport.consumer().clone()));
        println!("node {id} listening on {}", transport.local_addr());
        nodes.push(Node {
            id,
            raft,
            store,
            transport,
        });
    }
    Ok(nodes)
}

/// Wait until one of `nodes` is leader and the others agree on it.
async fn wait_for_leader(nodes: &[&Node], not: Option<NodeId>) -> Result<NodeId, Failure> {
    let deadline = Instant::now() + PHASE_TIMEOUT;
    loop {
        let leaders: Vec<Option<NodeId>> = nodes
            .iter()
            .map(|n| n.raft.metrics().borrow().current_leader)
            .collect();
        if let Some(Some(leader)) = leaders.first()
            && leaders.iter().all(|l| *l == Some(*leader))
            && Some(*leader) != not
            && nodes.iter().any(|n| n.id == *leader)
        {
            return Ok(*leader);
        }
        if Instant::now() > deadline {
            return Err(fail(format!(
                "no agreed leader after {PHASE_TIMEOUT:?}: {leaders:?}"
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Write `count` keys through `leader` from `CLIENTS` concurrent tasks; returns the acknowledged
/// key → value pairs and each write's commit latency.
async fn write_keys(
    leader: &Raft<TypeConfig>,
    first: u64,
    count: u64,
    progress: Arc<AtomicU64>,
) -> Result<(BTreeMap<String, String>, Vec<Duration>), Failure> {
    let next = Arc::new(AtomicU64::new(first));
    let end = first + count;
    let mut tasks = Vec::new();
    for _ in 0..CLIENTS {
        let (raft, next, progress) = (leader.clone(), next.clone(), progress.clone());
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    return Ok::<_, String>((acked, latencies));
                }
                let (key, value) = (format!("key-{i:06}"), format!("value-{i}"));
                let request = ClientRequest {
                    client: key.clone(),
                    serial: i,
                    status: value.clone(),
                };
                let start = Instant::now();
                raft.client_write(request)
                    .await
                    .map_err(|e| format!("write {key}: {e}"))?;
                latencies.push(start.elapsed());
                acked.push((key, value));
                progress.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let mut acked = BTreeMap::new();
    let mut latencies = Vec::new();
    for task in tasks {
        let (pairs, lats) = task.await?.map_err(fail)?;
        acked.extend(pairs);
        latencies.extend(lats);
    }
    Ok((acked, latencies))
}

/// Show `done / total` on one line until `done` reaches `total`.
fn progress_line(
    label: &'static str,
    done: Arc<AtomicU64>,
    total: u64,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let start = Instant::now();
        loop {
            let n = done.load(Ordering::Relaxed);
            let rate = n as f64 / start.elapsed().as_secs_f64().max(1e-3);
            print!("\r  {label}: {n}/{total} writes acknowledged ({rate:.0}/s)   ");
            let _ = std::io::stdout().flush();
            if n >= total {
                println!();
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Wait until every node in `nodes` has applied every acknowledged key.
async fn check_every_key(nodes: &[&Node], acked: &BTreeMap<String, String>) -> Result<(), Failure> {
    let deadline = Instant::now() + PHASE_TIMEOUT;
    for node in nodes {
        loop {
            let sm = node.store.get_state_machine().await;
            let missing = acked
                .iter()
                .filter(|(k, v)| sm.client_status.get(*k) != Some(*v))
                .count();
            if missing == 0 {
                println!(
                    "  node {} holds all {} acknowledged keys",
                    node.id,
                    acked.len()
                );
                break;
            }
            if Instant::now() > deadline {
                return Err(fail(format!(
                    "node {} is missing {missing} acknowledged keys",
                    node.id
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted
        .get(((sorted.len() as f64 * p) as usize).min(sorted.len().saturating_sub(1)))
        .copied()
        .unwrap_or_default()
}

async fn run(tls_dir: Option<PathBuf>) -> Result<(), Failure> {
    let started = Instant::now();
    let config = Arc::new(
        Config {
            heartbeat_interval: 50,
            election_timeout_min: 150,
            election_timeout_max: 300,
            ..Default::default()
        }
        .validate()?,
    );
    println!("starting 3 nodes");
    let nodes = start_nodes(3, config, tls_dir.as_deref()).await?;
    nodes[0]
        .raft
        .initialize(
            nodes
                .iter()
                .map(|n| n.id)
                .collect::<std::collections::BTreeSet<_>>(),
        )
        .await?;
    let all: Vec<&Node> = nodes.iter().collect();
    let leader = wait_for_leader(&all, None).await?;
    println!("node {leader} is the leader");

    // Phase 1: concurrent writes.
    let progress = Arc::new(AtomicU64::new(0));
    let shown = progress_line("phase 1", progress.clone(), WRITES_BEFORE);
    let phase = Instant::now();
    let (mut acked, mut latencies) =
        write_keys(&nodes[leader as usize].raft, 0, WRITES_BEFORE, progress).await?;
    let phase1 = phase.elapsed();
    shown.await?;

    // Kill the leader: its transport closes (every peer sees its connections drop) and its
    // Raft stops.
    println!("killing the leader, node {leader}");
    nodes[leader as usize].transport.close();
    nodes[leader as usize].raft.shutdown().await?;
    let survivors: Vec<&Node> = nodes.iter().filter(|n| n.id != leader).collect();
    let failover = Instant::now();
    let new_leader = wait_for_leader(&survivors, Some(leader)).await?;
    println!(
        "node {new_leader} is the new leader, elected {:?} after the kill",
        failover.elapsed()
    );

    // Phase 2: more writes through the new leader.
    let progress = Arc::new(AtomicU64::new(0));
    let shown = progress_line("phase 2", progress.clone(), WRITES_AFTER);
    let phase = Instant::now();
    let (more, lats) = write_keys(
        &nodes[new_leader as usize].raft,
        WRITES_BEFORE,
        WRITES_AFTER,
        progress,
    )
    .await?;
    let phase2 = phase.elapsed();
    shown.await?;
    acked.extend(more);
    latencies.extend(lats);

    println!("checking every surviving node");
    check_every_key(&survivors, &acked).await?;
    if acked.len() as u64 != WRITES_BEFORE + WRITES_AFTER {
        return Err(fail(format!(
            "{} writes acknowledged, expected {}",
            acked.len(),
            WRITES_BEFORE + WRITES_AFTER
        )));
    }

    latencies.sort();
    println!(
        "{} writes from {CLIENTS} clients: {:.0} writes/s before the failover, {:.0} after; commit latency p50 {:?}, p99 {:?}",
        acked.len(),
        WRITES_BEFORE as f64 / phase1.as_secs_f64(),
        WRITES_AFTER as f64 / phase2.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
    );
    for node in &survivors {
        node.raft.shutdown().await?;
        node.transport.close();
    }
    println!("all checks passed in {:?}", started.elapsed());
    Ok(())
}

fn main() {
    let tls_dir = match std::env::args().skip(1).collect::<Vec<_>>().as_slice() {
        [] => None,
        [flag, dir] if flag == "--tls" => Some(PathBuf::from(dir)),
        _ => {
            eprintln!(
                "usage: cluster [--tls DIR]  (DIR: certificates from `cargo run --example make_certs -- DIR`)"
            );
            std::process::exit(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(run(tls_dir)) {
        Ok(()) => {}
        Err(e) => {
            eprintln!("FAILED: {e}");
            std::process::exit(1);
        }
    }
}
