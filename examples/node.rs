//! One openraft node per process, over raftnet: run three of them, on one machine or three, to
//! get a replicated key-value store you can type at.
//!
//! ```text
//! cargo run --release --example node -- --id 1 --peer 1=127.0.0.1:7001 --peer 2=127.0.0.1:7002 --peer 3=127.0.0.1:7003 --init
//! cargo run --release --example node -- --id 2 --peer 1=127.0.0.1:7001 --peer 2=127.0.0.1:7002 --peer 3=127.0.0.1:7003
//! cargo run --release --example node -- --id 3 --peer 1=127.0.0.1:7001 --peer 2=127.0.0.1:7002 --peer 3=127.0.0.1:7003
//! ```
//!
//! Every node gets the same `--peer ID=HOST:PORT` list. A node listens on its own entry's port
//! (or on `--listen`, e.g. `0.0.0.0:7001`, while peers keep dialling its `--peer` address). The
//! node started with `--init` waits until every peer accepts connections, then makes them the
//! cluster's voters; the others wait to be contacted. Then type, on any node:
//!
//! ```text
//! set KEY VALUE   replicate a write (only the leader takes it; a follower names the leader)
//! get KEY         read this node's own state machine (a local read: it may lag the leader)
//! status          this node's view of the cluster
//! quit            stop this node
//! ```
//!
//! Leadership changes are printed as they happen. Storage is openraft-memstore, in memory: a
//! stopped node comes back empty, so restart the whole cluster rather than one node.

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::storage::Adaptor;
use openraft::{Config, Raft};
use openraft_memstore::{ClientRequest, MemStore, TypeConfig};
use raftnet::openraft::{RaftnetNetworkFactory, serve};
use raftnet::{NetTransport, ServerAddress, Transport};

type NodeId = u64;
type MemRaft = Raft<TypeConfig>;
type Failure = Box<dyn Error + Send + Sync>;

const USAGE: &str = "usage: node --id ID --peer ID=HOST:PORT... [--listen ADDR:PORT] [--init]";

struct Args {
    id: NodeId,
    peers: BTreeMap<NodeId, String>,
    listen: Option<String>,
    init: bool,
}

fn parse_args() -> Result<Args, String> {
    let (mut id, mut peers, mut listen, mut init) = (None, BTreeMap::new(), None, false);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--id" => id = Some(value()?.parse().map_err(|e| format!("--id: {e}"))?),
            "--peer" => {
                let peer = value()?;
                let (peer_id, addr) = peer
                    .split_once('=')
                    .ok_or(format!("--peer {peer}: expected ID=HOST:PORT"))?;
                let peer_id = peer_id.parse().map_err(|e| format!("--peer {peer}: {e}"))?;
                peers.insert(peer_id, addr.to_string());
            }
            "--listen" => listen = Some(value()?),
            "--init" => init = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let id = id.ok_or("--id is required")?;
    if !peers.contains_key(&id) {
        return Err(format!(
            "--peer {id}=HOST:PORT (this node's own address) is required"
        ));
    }
    Ok(Args {
        id,
        peers,
        listen,
        init,
    })
}

#[tokio::main]
async fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("{e}\n{USAGE}");
        std::process::exit(2);
    });
    if let Err(e) = run(args).await {
        eprintln!("node: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), Failure> {
    // The transport: peers dial this node's --peer address; it listens there or on --listen.
    let me = &args.peers[&args.id];
    let advertise = resolve(me)?;
    let listen = args.listen.as_deref().unwrap_or(me);
    // Its transport's driver runs as a task on this runtime, beside openraft's own tasks.
    let transport = Arc::new(NetTransport::bind_on(
        listen,
        Some(advertise),
        raftnet::Config::default(),
        &tokio::runtime::Handle::current(),
    )?);
    println!(
        "node {}: listening on {}, peers dial {advertise}",
        args.id,
        transport.bound_addr()
    );

    // The network openraft sends through. memstore's `Node` is `()`, so openraft only knows
    // node ids; this table says where each one listens.
    let peers = Arc::new(args.peers.clone());
    let address_of = Arc::new(move |id: &NodeId, _: &()| {
        ServerAddress(peers.get(id).cloned().unwrap_or_default())
    });
    let network = RaftnetNetworkFactory::new(args.id, transport.clone(), address_of);

    let store = Arc::new(MemStore::new());
    let (log_store, state_machine) = Adaptor::new(store.clone());
    let config = Config {
        cluster_name: "raftnet-node".into(),
        heartbeat_interval: 100,
        election_timeout_min: 500,
        election_timeout_max: 1000,
        ..Config::default()
    };
    let raft = Raft::new(
        args.id,
        Arc::new(config.validate()?),
        network,
        log_store,
        state_machine,
    )
    .await?;

    // The serving side: RPCs arriving on the transport are handed to this node's Raft.
    tokio::spawn(serve(raft.clone(), transport.consumer().clone()));
    tokio::spawn(print_leadership_changes(raft.clone()));
    if args.init {
        tokio::spawn(initialize(raft.clone(), args.peers.clone()));
    }

    let mut commands = stdin_lines();
    while let Some(line) = commands.recv().await {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["set", key, value] => set(&raft, &args.peers, key, value).await,
            ["get", key] => {
                let state = store.get_state_machine().await;
                match state.client_status.get(*key) {
                    Some(value) => println!("{key} = {value}"),
                    None => println!("{key} is not set"),
                }
            }
            ["status"] => {
                let m = raft.metrics().borrow().clone();
                println!(
                    "node {}: {:?}, term {}, leader {:?}, last applied {:?}",
                    m.id,
                    m.state,
                    m.current_term,
                    m.current_leader,
                    m.last_applied.map(|l| l.index)
                );
            }
            ["metrics"] => print_metrics(&transport),
            ["quit"] => {
                raft.shutdown().await?;
                transport.close();
                return Ok(());
            }
            [] => {}
            _ => println!("commands: set KEY VALUE | get KEY | status | quit"),
        }
    }
    // stdin is closed (the node runs in the background): keep serving until killed.
    std::future::pending::<()>().await;
    Ok(())
}

/// Wait until every peer accepts TCP connections, then initialize the cluster with all of them
/// as voters. Doing it again (another `--init`, a rerun) is refused harmlessly.
async fn initialize(raft: MemRaft, peers: BTreeMap<NodeId, String>) {
    loop {
        let addresses = peers.clone();
        let down: Vec<NodeId> = tokio::task::spawn_blocking(move || {
            addresses
                .iter()
                .filter(|(_, addr)| {
                    let reachable = resolve(addr)
                        .and_then(|a| Ok(TcpStream::connect_timeout(&a, Duration::from_secs(1))?));
                    reachable.is_err()
                })
                .map(|(id, _)| *id)
                .collect()
        })
        .await
        .expect("the reachability probe does not panic");
        if down.is_empty() {
            break;
        }
        println!("init: waiting for nodes {down:?} to listen");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let members: BTreeSet<NodeId> = peers.keys().copied().collect();
    match raft.initialize(members.clone()).await {
        Ok(()) => println!("init: cluster initialized with voters {members:?}"),
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
            println!("init: already initialized")
        }
        Err(e) => println!("init: failed: {e}"),
    }
}

async fn set(raft: &MemRaft, peers: &BTreeMap<NodeId, String>, key: &str, value: &str) {
    // memstore ignores a write whose serial equals the key's previous one (a client's retry);
    // the clock makes every new write's serial distinct.
    let serial = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let request = ClientRequest {
        client: key.to_string(),
        serial,
        status: value.to_string(),
    };
    match raft.client_write(request).await {
        Ok(response) => println!(
            "ok: {key} = {value} (log index {}, was {:?})",
            response.log_id.index, response.data.0
        ),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
            match forward.leader_id {
                Some(leader) => println!(
                    "not the leader: node {leader} ({}) is; send writes there",
                    peers.get(&leader).map_or("?", String::as_str)
                ),
                None => println!("no leader right now; try again shortly"),
            }
        }
        Err(e) => println!("write failed: {e}"),
    }
}

/// The transport's metrics in Prometheus' text format: what a scrape would return from a node
/// that installed `metrics_exporter_prometheus`'s exporter and published on a timer.
fn print_metrics(transport: &NetTransport) {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    metrics::with_local_recorder(&recorder, || transport.metrics().publish());
    print!("{}", recorder.handle().render());
}

async fn print_leadership_changes(raft: MemRaft) {
    let mut metrics = raft.metrics();
    let mut last = None;
    loop {
        let (leader, term, state) = {
            let m = metrics.borrow_and_update();
            (m.current_leader, m.current_term, m.state)
        };
        if last != Some((leader, term)) {
            match leader {
                Some(leader) => {
                    println!("term {term}: node {leader} leads; this node is {state:?}")
                }
                None => println!("term {term}: no leader; this node is {state:?}"),
            }
            last = Some((leader, term));
        }
        if metrics.changed().await.is_err() {
            return; // Raft shut down
        }
    }
}

/// stdin, line by line, read on a thread of its own.
fn stdin_lines() -> tokio::sync::mpsc::Receiver<String> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    std::thread::spawn(move || {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    rx
}

fn resolve(addr: &str) -> Result<SocketAddr, Failure> {
    addr.to_socket_addrs()?
        .next()
        .ok_or_else(|| format!("{addr} does not resolve").into())
}
