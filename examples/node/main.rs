//! One openraft node per process, over raftnet: run three of them, on one machine or three, to
//! get a replicated key-value store you can type at, whose nodes keep their data on disk.
//!
//! ```text
//! cargo run --release --example node -- --id 1 --peer 1=127.0.0.1:7001 --peer 2=127.0.0.1:7002 --peer 3=127.0.0.1:7003 --init
//! cargo run --release --example node -- --id 2 --peer 1=127.0.0.1:7001 --peer 2=127.0.0.1:7002 --peer 3=127.0.0.1:7003
//! cargo run --release --example node -- --id 3 --peer 1=127.0.0.1:7001 --peer 2=127.0.0.1:7002 --peer 3=127.0.0.1:7003
//! ```
//!
//! Every node gets the same `--peer ID=HOST:PORT` list. A node listens on its own entry's port
//! (or on `--listen`, e.g. `0.0.0.0:7001`, while peers keep dialling its `--peer` address; or
//! on a listening socket it inherited, `--listen-fd`, from a supervisor that holds the port
//! while the node is down, as `tests/node_example.rs` does). The node started with `--init`
//! waits until every peer accepts connections, then makes them the cluster's voters; the others
//! wait to be contacted. Then type, on any node:
//!
//! ```text
//! set KEY VALUE   replicate a write; VALUE is the rest of the line, spaces and all (only the
//!                 leader takes it; a follower names the leader)
//! get KEY         read this node's own state machine (a local read: it may lag the leader)
//! status          this node's view: role, term, leader, log and applied index, voters
//! metrics         this node's transport metrics, in Prometheus' text format
//! quit            stop this node
//! ```
//!
//! With `--client ADDR` the node also serves programs (the chaos harness, `examples/chaos.rs`)
//! on a TCP port of their own, one line per request, one line per answer:
//!
//! ```text
//! write KEY VALUE           → ok PREVIOUS
//! cas KEY EXPECTED VALUE    → ok PREVIOUS   (it wrote if and only if PREVIOUS is EXPECTED)
//! read KEY                  → ok VALUE      (a linearizable read: openraft's ensure_linearizable)
//! ```
//!
//! `-` stands for a key that is not set. A request that was not carried out answers `refused
//! LEADER REASON` (LEADER: the leader's id if known, else `-`): a write refused before it was
//! proposed, or a read that could not confirm leadership. A write whose fate the node does not
//! know (proposed, then leadership lost, or an error) answers `unknown LEADER REASON`.
//!
//! Leadership changes are printed as they happen. Each node keeps its log, vote and snapshots
//! in `--data-dir` (by default `raftnet-node-ID` in the system's temp dir; the node prints
//! which, and what it found there). A node that is stopped or killed and started again with the
//! same dir rejoins with its data and catches up on what it missed; `--init` on a dir that
//! already holds a cluster does nothing. To start a cluster over, stop every node and delete
//! their dirs. What the storage survives is in `store.rs`.
//!
//! With `--tls DIR` (every node, the same CA), the nodes speak mutual TLS with the
//! certificates in DIR: `cargo run --example make_certs -- DIR 1 2 3` makes them (add `--ip
//! ADDR` for each address other than 127.0.0.1 the nodes are dialled at). A dial accepts only
//! the certificate of the node it meant to reach, and a node serves only the `--peer` nodes
//! (`examples/common/tls.rs`).

mod store;
#[path = "../common/tls.rs"]
mod tls;

use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::fmt::Display;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{CheckIsLeaderError, ClientWriteError, InitializeError, RaftError};
use openraft::storage::Adaptor;
use openraft::{Config, Raft, ServerState, SnapshotPolicy};
use raftnet::openraft::{RaftnetNetworkFactory, serve};
use raftnet::{NetTransport, Placement, ServerAddress, Transport};

use crate::store::{FileStore, NodeId, Previous, Set, TypeConfig};

type NodeRaft = Raft<TypeConfig>;
type Failure = Box<dyn Error + Send + Sync>;

/// What the commands are, printed for a line that is none of them.
const COMMANDS: &str = "commands: set KEY VALUE | get KEY | status | metrics | quit";

/// The default of `--snapshot-every`.
const SNAPSHOT_EVERY: u64 = 1000;

fn usage() -> String {
    format!(
        "usage: node --id ID --peer ID=HOST:PORT... [--listen ADDR:PORT | --listen-fd FD] [--data-dir DIR] [--init] [--snapshot-every N] [--client ADDR:PORT] [--tls DIR]
  --id ID              this node's id, a number
  --peer ID=HOST:PORT  every node of the cluster, this one included: the same list on every node
  --listen ADDR:PORT   listen here rather than on this node's own --peer address (e.g. 0.0.0.0:7001)
  --listen-fd FD       serve on FD, a listening TCP socket this process inherited (a supervisor
                       that binds the node's port once and keeps it across restarts; Linux)
  --data-dir DIR       where this node keeps its log, vote and snapshots; started again with
                       the same DIR, a node rejoins with its data (default: {})
  --init               make the --peer nodes a cluster once all of them listen (does nothing on a
                       DIR that already holds a cluster)
  --snapshot-every N   snapshot the state machine every N log entries, keeping N entries of log
                       behind the snapshot for followers that lag (default {SNAPSHOT_EVERY})
  --client ADDR:PORT   also serve programs on this TCP address, a line per request (write, cas,
                       read; see the module docs); port 0 picks one, printed at start
  --tls DIR            mutual TLS with DIR/ca.pem and this node's DIR/node-ID.pem, DIR/node-ID.key
                       (cargo run --example make_certs -- DIR 1 2 3)",
        default_data_dir("ID").display()
    )
}

/// Where a node keeps its data unless told: the temp dir, so that trying the example leaves
/// nothing in the checkout, and one dir per id, so three nodes on one machine do not collide.
fn default_data_dir(id: impl Display) -> PathBuf {
    std::env::temp_dir().join(format!("raftnet-node-{id}"))
}

struct Args {
    id: NodeId,
    peers: BTreeMap<NodeId, String>,
    listen: Option<String>,
    /// A listening socket inherited from whoever started this process (`--listen-fd`).
    listen_fd: Option<i32>,
    data_dir: PathBuf,
    init: bool,
    snapshot_every: u64,
    client: Option<String>,
    tls: Option<PathBuf>,
}

/// `None` for `--help`.
fn parse_args() -> Result<Option<Args>, String> {
    let (mut id, mut peers, mut listen, mut data_dir, mut init) =
        (None, BTreeMap::new(), None, None, false);
    let mut snapshot_every = SNAPSHOT_EVERY;
    let mut listen_fd = None;
    let mut client = None;
    let mut tls = None;
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
            "--listen-fd" => {
                listen_fd =
                    Some(
                        value()?.parse().ok().filter(|&fd| fd > 2).ok_or(
                            "--listen-fd: expected a file descriptor above 2 (0-2 are stdio)",
                        )?,
                    )
            }
            "--data-dir" => data_dir = Some(PathBuf::from(value()?)),
            "--init" => init = true,
            "--client" => client = Some(value()?),
            "--tls" => tls = Some(PathBuf::from(value()?)),
            "--snapshot-every" => {
                snapshot_every = value()?
                    .parse()
                    .ok()
                    .filter(|&n| n > 0)
                    .ok_or("--snapshot-every: expected a number above 0")?
            }
            "--help" | "-h" => return Ok(None),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let id = id.ok_or("--id is required")?;
    if !peers.contains_key(&id) {
        return Err(format!(
            "--peer {id}=HOST:PORT (this node's own address) is required"
        ));
    }
    if listen.is_some() && listen_fd.is_some() {
        return Err("--listen and --listen-fd: one or the other".into());
    }
    Ok(Some(Args {
        id,
        peers,
        listen,
        listen_fd,
        data_dir: data_dir.unwrap_or_else(|| default_data_dir(id)),
        init,
        snapshot_every,
        client,
        tls,
    }))
}

// Multi-threaded: the store's fsyncs step aside with `block_in_place`, which needs it.
#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{}", usage());
            return;
        }
        Err(e) => {
            eprintln!("{e}\n{}", usage());
            std::process::exit(2);
        }
    };
    if let Err(e) = run(args).await {
        eprintln!("node: {e}");
        std::process::exit(1);
    }
}

async fn run(args: Args) -> Result<(), Failure> {
    // The transport first: a second process started for the same node fails here, on the port,
    // before it touches the first one's data dir.
    let me = &args.peers[&args.id];
    let advertise = resolve(me)?;
    let listen = args.listen.as_deref().unwrap_or(me);
    let mut config = raftnet::Config::default();
    if let Some(dir) = &args.tls {
        let peers = args
            .peers
            .iter()
            .map(|(&id, addr)| Ok((id, resolve(addr)?)))
            .collect::<Result<Vec<_>, Failure>>()?;
        config = config.tls(tls::node_tls(dir, args.id, &peers)?);
        println!(
            "node {}: mutual TLS with the certificates in {}",
            args.id,
            dir.display()
        );
    }
    // Its transport's driver runs as a task on this runtime, beside openraft's own tasks.
    let placement = Placement::Runtime(tokio::runtime::Handle::current());
    let transport = Arc::new(match args.listen_fd {
        Some(fd) => NetTransport::from_listener(
            inherited_listener(fd)?,
            Some(advertise),
            config,
            placement,
        )?,
        None => NetTransport::bind_with(listen, Some(advertise), config, placement)?,
    });
    println!(
        "node {}: listening on {}, peers dial {advertise}",
        args.id,
        transport.bound_addr()
    );

    let store = FileStore::open(&args.data_dir)
        .map_err(|e| format!("data dir {}: {e}", args.data_dir.display()))?;
    println!(
        "node {}: data dir {}: {}",
        args.id,
        args.data_dir.display(),
        store.describe()
    );

    // The network openraft sends through. Nodes are known by id alone; this table says where
    // each one listens.
    let peers = Arc::new(args.peers.clone());
    let address_of = Arc::new(move |id: &NodeId, _: &()| {
        ServerAddress(peers.get(id).cloned().unwrap_or_default())
    });
    let network = RaftnetNetworkFactory::new(args.id, transport.clone(), address_of);

    let (log_store, state_machine) = Adaptor::new(store.clone());
    let config = Config {
        cluster_name: "raftnet-node".into(),
        heartbeat_interval: 100,
        election_timeout_min: 500,
        election_timeout_max: 1000,
        snapshot_policy: SnapshotPolicy::LogsSinceLast(args.snapshot_every),
        max_in_snapshot_log_to_keep: args.snapshot_every,
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
    if let Some(client) = &args.client {
        let listener = tokio::net::TcpListener::bind(client).await?;
        println!("node {}: clients on {}", args.id, listener.local_addr()?);
        tokio::spawn(serve_clients(listener, raft.clone(), store.clone()));
    }
    if args.init {
        if raft.is_initialized().await? {
            println!("init: already initialized (the data dir holds a cluster)");
        } else {
            tokio::spawn(initialize(raft.clone(), args.peers.clone()));
        }
    }

    let mut lines = stdin_lines();
    while let Some(line) = lines.recv().await {
        // The command is the first word; what follows is its argument, as typed.
        let (command, rest) = first_word(&line);
        match command {
            "set" => match first_word(rest) {
                (key, value) if !key.is_empty() && !value.is_empty() => {
                    set(&raft, &args.peers, key, value).await
                }
                _ => println!("usage: set KEY VALUE"),
            },
            "get" => match first_word(rest) {
                (key, "") if !key.is_empty() => match store.get(key) {
                    Some(value) => println!("{key} = {value}"),
                    None => println!("{key} is not set"),
                },
                _ => println!("usage: get KEY"),
            },
            "status" => print_status(&raft),
            "metrics" => print_metrics(&transport),
            "quit" => {
                raft.shutdown().await?;
                transport.close();
                return Ok(());
            }
            "" => {}
            _ => println!("{COMMANDS}"),
        }
    }
    // stdin is closed (the node runs in the background): keep serving until killed.
    std::future::pending::<()>().await;
    Ok(())
}

/// `line`'s first word, and the rest after the spaces that end it, kept as typed (a value's
/// own spaces, inside and at the end, are part of it).
fn first_word(line: &str) -> (&str, &str) {
    let line = line.trim_start();
    match line.find(char::is_whitespace) {
        Some(end) => (&line[..end], line[end..].trim_start()),
        None => (line, ""),
    }
}

/// Wait until every peer accepts TCP connections, then initialize the cluster with all of them
/// as voters. Another node's `--init` racing this one is refused harmlessly.
async fn initialize(raft: NodeRaft, peers: BTreeMap<NodeId, String>) {
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
        println!("init: waiting for nodes {} to listen", list(&down));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let members: BTreeSet<NodeId> = peers.keys().copied().collect();
    match raft.initialize(members.clone()).await {
        Ok(()) => println!("init: cluster initialized with voters {}", list(&members)),
        Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {
            println!("init: already initialized")
        }
        Err(e) => println!("init: failed: {e}"),
    }
}

async fn set(raft: &NodeRaft, peers: &BTreeMap<NodeId, String>, key: &str, value: &str) {
    let request = Set {
        key: key.to_string(),
        value: value.to_string(),
        only_if: None,
    };
    match raft.client_write(request).await {
        Ok(response) => {
            let index = response.log_id.index;
            match response.data {
                Previous(Some(previous)) => {
                    println!("ok: {key} = {value} (log index {index}; {key} was {previous})")
                }
                Previous(None) => {
                    println!("ok: {key} = {value} (log index {index}; {key} was not set)")
                }
            }
        }
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

/// One line: "node 2: follower, term 3, leader 1, last log index 9, applied index 9,
/// snapshot index 4, voters 1 2 3" (an unknown leader or index reads "none").
fn print_status(raft: &NodeRaft) {
    let m = raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let voters: Vec<NodeId> = membership.voter_ids().collect();
    let learners: Vec<NodeId> = membership.learner_ids().collect();
    let mut line = format!(
        "node {}: {}, term {}, leader {}, last log index {}, applied index {}, snapshot index {}, voters {}",
        m.id,
        role(m.state),
        m.current_term,
        or_none(m.current_leader),
        or_none(m.last_log_index),
        or_none(m.last_applied.map(|id| id.index)),
        or_none(m.snapshot.map(|id| id.index)),
        if voters.is_empty() {
            "none".to_string()
        } else {
            list(&voters)
        },
    );
    if !learners.is_empty() {
        line += &format!(", learners {}", list(&learners));
    }
    println!("{line}");
}

async fn print_leadership_changes(raft: NodeRaft) {
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
                    println!(
                        "term {term}: node {leader} leads; this node is {}",
                        role(state)
                    )
                }
                None => println!("term {term}: no leader; this node is {}", role(state)),
            }
            last = Some((leader, term));
        }
        if metrics.changed().await.is_err() {
            return; // Raft shut down
        }
    }
}

fn role(state: ServerState) -> &'static str {
    match state {
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "shut down",
    }
}

fn or_none(value: Option<impl Display>) -> String {
    value.map_or_else(|| "none".to_string(), |v| v.to_string())
}

/// "1 2 3"
fn list<'a>(ids: impl IntoIterator<Item = &'a NodeId>) -> String {
    let ids: Vec<String> = ids.into_iter().map(NodeId::to_string).collect();
    ids.join(" ")
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

/// The listening socket `--listen-fd` names: one this process inherited open (its parent cleared
/// close-on-exec on it for this child alone), which nothing in the process owns yet.
fn inherited_listener(fd: i32) -> Result<std::net::TcpListener, Failure> {
    use std::os::fd::FromRawFd;
    // Taking ownership of a descriptor that is not open (a mistyped number) would close
    // another's later: only an open socket is taken. The transport refuses one that does not
    // listen (Error::Bind, "the socket is not listening").
    let target = std::fs::read_link(format!("/proc/self/fd/{fd}"))
        .map_err(|e| format!("--listen-fd {fd}: not an open descriptor of this process: {e}"))?;
    if !target.to_string_lossy().starts_with("socket:") {
        return Err(format!("--listen-fd {fd}: {} is not a socket", target.display()).into());
    }
    // SAFETY: `fd` is open (checked above) and owned by nothing else in this process: it was
    // inherited, and this, called once at start, is the only code that names it.
    Ok(unsafe { std::net::TcpListener::from_raw_fd(fd) })
}

/// The transport's metrics in Prometheus' text format: what a scrape would return from a node
/// that installed `metrics_exporter_prometheus`'s exporter and published on a timer.
fn print_metrics(transport: &NetTransport) {
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    metrics::with_local_recorder(&recorder, || transport.metrics().publish());
    print!("{}", recorder.handle().render());
}

/// The `--client` port: each connection is a program sending one request per line and reading
/// one answer per line, in order (see the module docs).
async fn serve_clients(listener: tokio::net::TcpListener, raft: NodeRaft, store: FileStore) {
    loop {
        let Ok((socket, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = socket.set_nodelay(true);
        let (raft, store) = (raft.clone(), store.clone());
        tokio::spawn(async move {
            use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
            let (read, mut write) = socket.into_split();
            let mut lines = BufReader::new(read).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                let answer = client_request(&raft, &store, &line).await;
                if write
                    .write_all(format!("{answer}\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
    }
}

/// One `--client` request's answer line.
async fn client_request(raft: &NodeRaft, store: &FileStore, line: &str) -> String {
    let words: Vec<&str> = line.split_whitespace().collect();
    let (key, value, only_if) = match words[..] {
        ["read", key] => {
            return match raft.ensure_linearizable().await {
                Ok(_) => format!("ok {}", store.get(key).as_deref().unwrap_or("-")),
                Err(RaftError::APIError(CheckIsLeaderError::ForwardToLeader(forward))) => {
                    format!("refused {} not the leader", or_dash(forward.leader_id))
                }
                Err(e) => format!("refused - {e}"),
            };
        }
        ["write", key, value] => (key, value, None),
        ["cas", key, expected, value] => (key, value, Some(expected.to_string())),
        _ => return "refused - unknown request".to_string(),
    };
    // A node that is not the leader refuses before proposing anything: the client knows the
    // write did not happen. Past this point, an error leaves its fate unknown (a leader that
    // proposed and then lost leadership cannot tell whether its successor commits the entry).
    let (state, leader) = {
        let m = raft.metrics().borrow().clone();
        (m.state, m.current_leader)
    };
    if state != ServerState::Leader {
        return format!("refused {} not the leader", or_dash(leader));
    }
    let request = Set {
        key: key.to_string(),
        value: value.to_string(),
        only_if,
    };
    match raft.client_write(request).await {
        Ok(response) => format!("ok {}", response.data.0.as_deref().unwrap_or("-")),
        Err(RaftError::APIError(ClientWriteError::ForwardToLeader(forward))) => {
            format!("unknown {} leadership lost", or_dash(forward.leader_id))
        }
        Err(e) => format!("unknown - {e}"),
    }
}

fn or_dash(id: Option<NodeId>) -> String {
    id.map_or_else(|| "-".to_string(), |id| id.to_string())
}
