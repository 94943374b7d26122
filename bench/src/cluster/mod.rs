//! The openraft cluster scenarios (`cluster-1`, `cluster-16`, `cluster-64`): a 3-node openraft
//! 0.9.25 cluster in this process, the same in everything but its network, which is either
//! raftnet (the crate's openraft adapter) or the tokio baseline's design; N client tasks call
//! `client_write` on the leader.
//!
//! Held constant between the two arms (BENCHMARKS.md, "openraft cluster (raftnet-bench)"):
//! - openraft 0.9.25 with a [`Store`] behind `Adaptor` (`NodeId` = `u64`, `Node` = `()`):
//!   [`openraft_memstore`] (the `cluster-N` rows) or [`crate::bench_store`] (the
//!   `cluster-bench-N` rows: the same state machine, a log without JSON, so the network's share
//!   of the work shows), nodes 0, 1 and 2, node 0 initializes the cluster;
//! - the openraft [`config`]: heartbeat 50 ms, elections 150–300 ms, at most 300 entries per
//!   AppendEntries, openraft's defaults otherwise;
//! - each node has its own tokio runtime with 2 workers, as three processes would. Node 0 (the
//!   initializer, which wins the first election) is built inside [`pin::as_client`], nodes 1 and
//!   2 inside [`pin::as_server`], so `--pin split` puts the leader on CPU 0 and the followers on
//!   CPU 1, and `--pin same` puts everything on CPU 0;
//! - the client driver: N tasks on the leader's runtime (where an application's request handlers
//!   would run), each calling `client_write` in a loop with a small `ClientRequest`; an op is one
//!   committed (applied on the leader) write, its latency the `client_write` call's;
//! - the check after the run: every node applies everything the leader applied, and every
//!   node's state machine holds each client's last acknowledged write (a store or network that
//!   loses or reorders writes ends the run with an error row).
//!
//! The arms:
//! - [`Network::Raftnet`]: one `NetTransport` per node on 127.0.0.1:0 (default `Config`), its
//!   reactor a task on the node's runtime (`NetTransport::bind_on`; `--reactor thread`: a thread
//!   of its own), `raftnet::openraft::RaftnetNetworkFactory`, and a `raftnet::openraft::serve`
//!   task per node on its runtime;
//! - [`Network::Tokio`]: [`TokioNetworkFactory`], the tokio baseline's design
//!   (`crate::tokio_net`) applied to openraft: one long-lived TCP connection per peer
//!   (`TCP_NODELAY`), `LengthDelimitedCodec` frames of rmp-serde-encoded openraft messages under a
//!   request id, the baseline's writer task (every frame queued, one vectored write), a reader
//!   task completing callers by id; `new_client` hands out a handle onto that connection (it
//!   connects lazily, once): openraft's many callers share it, so the writer task is what
//!   batches them. The serving side is the direct design (`crate::tokio_net::direct`): one task
//!   per connection calls `Raft::append_entries` / `vote` / `install_snapshot` for each request
//!   ready and writes the answers once nothing more is ready.
//!
//! Both arms give a call `RPCOption::soft_ttl` before answering `RPCError::Timeout`, map a peer
//! that cannot be dialed to `Unreachable`, and a remote `RaftError` to `RemoteError`.
//!
//! And a reference: [`Network::Direct`] hands each call straight to the target's `Raft` (no
//! sockets, no encoding), the `cluster-64-no-network` row: the most any network can reach.

use std::collections::{BTreeSet, HashMap};

mod direct_network;
mod tokio_network;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use openraft::network::RaftNetworkFactory;
use openraft::storage::Adaptor;
use openraft::{ServerState, SnapshotPolicy};
use openraft_memstore::{ClientRequest, MemStore, MemStoreStateMachine, TypeConfig};
use raftnet::openraft::{AddressOf, RaftnetNetworkFactory, serve};
use raftnet::{NetTransport, Placement, ServerAddress, Transport};
use tokio::net::TcpListener;
use tokio::runtime::Runtime;
use tokio::task::JoinSet;

use crate::bench_store::BenchStore;
use crate::pin;
use crate::scenario::{Control, Sample};

use self::direct_network::Directory;
pub use self::direct_network::{DirectNetwork, DirectNetworkFactory};
use self::tokio_network::accept;
pub use self::tokio_network::{TokioNetwork, TokioNetworkFactory};

/// openraft's node id here.
pub type NodeId = u64;
/// An openraft node of the cluster.
pub type Raft = openraft::Raft<TypeConfig>;

/// Nodes in the cluster.
pub const NODES: usize = 3;
/// Worker threads per node runtime (as `crate::tokio_impl`'s nodes).
const WORKERS: usize = 2;
/// How long to wait for the first leader.
const ELECTION_WAIT: Duration = Duration::from_secs(10);

/// Which network the cluster's nodes talk over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Network {
    /// raftnet's `NetTransport` through `raftnet::openraft`.
    Raftnet,
    /// The tokio baseline's design ([`TokioNetworkFactory`]).
    Tokio,
    /// No network: each call goes straight to the target node's `Raft` in this process
    /// ([`DirectNetworkFactory`]): no sockets, no encoding. The ceiling any network can reach
    /// (the `cluster-64-no-network` reference).
    Direct,
}

impl Network {
    /// `raftnet` or `tokio`.
    pub fn name(self) -> &'static str {
        match self {
            Network::Raftnet => "raftnet",
            Network::Tokio => "tokio",
            Network::Direct => "direct",
        }
    }
}

/// The openraft store every node of a cluster uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// openraft-memstore: log entries kept as JSON strings (the `cluster-N` rows).
    Memstore,
    /// [`crate::bench_store`]: log entries kept as they are (the `cluster-bench-N` rows).
    Bench,
}

impl Store {
    /// `memstore` or `bench`.
    pub fn name(self) -> &'static str {
        match self {
            Store::Memstore => "memstore",
            Store::Bench => "bench",
        }
    }

    /// The store called `name`.
    pub fn from_name(name: &str) -> Option<Store> {
        [Store::Memstore, Store::Bench]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

/// A node's store, kept beside its `Raft` to read the state machine after a run.
enum StoreHandle {
    Memstore(Arc<MemStore>),
    Bench(BenchStore),
}

impl StoreHandle {
    async fn state_machine(&self) -> MemStoreStateMachine {
        match self {
            StoreHandle::Memstore(store) => store.get_state_machine().await,
            StoreHandle::Bench(store) => store.state_machine(),
        }
    }
}

/// The `--reactor` flag: where raftnet's driver runs in the raftnet arm. The library's
/// [`Placement`] needs the node's runtime, which the flag cannot hold; `Reactor::placement`
/// makes it, per node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reactor {
    /// A task on each node's runtime (`NetTransport::bind_on`), as the adapter recommends.
    Task,
    /// A thread of its own (`NetTransport::bind`).
    Thread,
}

impl Reactor {
    /// `task` or `thread`.
    pub fn name(self) -> &'static str {
        match self {
            Reactor::Task => "task",
            Reactor::Thread => "thread",
        }
    }

    /// The value of `--reactor`.
    pub fn from_name(name: &str) -> Option<Reactor> {
        [Reactor::Task, Reactor::Thread]
            .into_iter()
            .find(|r| r.name() == name)
    }

    /// The placement of a node whose runtime is `runtime`.
    fn placement(self, runtime: &Runtime) -> Placement {
        match self {
            Reactor::Task => Placement::Runtime(runtime.handle().clone()),
            Reactor::Thread => Placement::Thread,
        }
    }
}

/// `Reactor::Thread` when set (the harness sets it once, before any run).
static THREAD_REACTORS: AtomicBool = AtomicBool::new(false);

/// Where the raftnet arm's reactors run from now on.
pub fn set_reactor(reactor: Reactor) {
    THREAD_REACTORS.store(reactor == Reactor::Thread, Ordering::Relaxed);
}

fn reactor() -> Reactor {
    if THREAD_REACTORS.load(Ordering::Relaxed) {
        Reactor::Thread
    } else {
        Reactor::Task
    }
}

/// The openraft configuration both arms use.
pub fn config() -> Result<openraft::Config, String> {
    openraft::Config {
        cluster_name: "raftnet-bench".into(),
        heartbeat_interval: 50,
        // Elections are not what is measured: on a loaded 2-core machine a follower can miss
        // heartbeats for a few hundred milliseconds, and a leader change mid-run ends it with
        // an error row. A second or two of silence is a dead leader; less is load.
        election_timeout_min: 1000,
        election_timeout_max: 2000,
        max_payload_entries: 300,
        // openraft's default, spelled out: the memstore builds a snapshot (and purges the log)
        // every 5000 entries, which keeps its in-memory log bounded during a run.
        snapshot_policy: SnapshotPolicy::LogsSinceLast(5000),
        ..Default::default()
    }
    .validate()
    .map_err(|e| format!("openraft config: {e}"))
}

// ---------------------------------------------------------------------------------------------
// Running the cluster

/// One node: its runtime, its Raft, its store, and (raftnet) its transport.
struct Node {
    runtime: Runtime,
    raft: Raft,
    store: StoreHandle,
    transport: Option<Arc<NetTransport>>,
}

/// The three nodes. Dropping it drops every runtime (which cancels their tasks and joins their
/// workers) and closes the transports.
struct Cluster {
    nodes: Vec<Node>,
}

fn node_runtime(network: Network, id: usize) -> Result<Runtime, String> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(WORKERS)
        // Linux keeps 15 bytes of a thread's name: `raftnet-n0` keeps the nodes apart in
        // `/proc` and `perf` (`cluster-raftnet-n0` showed every node as `cluster-raftnet`).
        .thread_name(format!("{}-n{id}", network.name()))
        .enable_all()
        .build()
        .map_err(|e| format!("build node {id}'s runtime: {e}"))
}

/// Run `f` placed as node `id`'s threads are (see the module documentation).
fn placed<R>(id: usize, f: impl FnOnce() -> R) -> R {
    if id == 0 {
        pin::as_client(f)
    } else {
        pin::as_server(f)
    }
}

/// A `Raft` for node `id` on `store`, created on `runtime`.
fn new_raft<N: RaftNetworkFactory<TypeConfig>>(
    runtime: &Runtime,
    id: usize,
    config: &Arc<openraft::Config>,
    factory: N,
    store: Store,
) -> Result<(Raft, StoreHandle), String> {
    let created = match store {
        Store::Memstore => {
            let store = Arc::new(MemStore::new());
            let (log, sm) = Adaptor::new(store.clone());
            let raft = Raft::new(id as NodeId, config.clone(), factory, log, sm);
            runtime
                .block_on(raft)
                .map(|raft| (raft, StoreHandle::Memstore(store)))
        }
        Store::Bench => {
            let store = BenchStore::default();
            let (log, sm) = Adaptor::new(store.clone());
            let raft = Raft::new(id as NodeId, config.clone(), factory, log, sm);
            runtime
                .block_on(raft)
                .map(|raft| (raft, StoreHandle::Bench(store)))
        }
    };
    created.map_err(|e| format!("node {id}: Raft::new: {e}"))
}

impl Cluster {
    fn start(network: Network, store: Store) -> Result<Cluster, String> {
        let config = Arc::new(config()?);
        match network {
            Network::Raftnet => Cluster::start_raftnet(config, store),
            Network::Tokio => Cluster::start_tokio(config, store),
            Network::Direct => Cluster::start_direct(config, store),
        }
    }

    fn start_raftnet(config: Arc<openraft::Config>, store: Store) -> Result<Cluster, String> {
        let mut built = Vec::new();
        for id in 0..NODES {
            built.push(placed(id, || -> Result<_, String> {
                let runtime = node_runtime(Network::Raftnet, id)?;
                let config = raftnet::Config::default().backend(crate::raftnet_impl::backend());
                let placement = reactor().placement(&runtime);
                let transport = NetTransport::bind_with("127.0.0.1:0", None, config, placement)
                    .map_err(|e| format!("node {id}: bind: {e}"))?;
                let transport = Arc::new(transport);
                crate::raftnet_impl::driver_calls::count(&transport);
                Ok((runtime, transport))
            })?);
        }
        let addresses: Vec<ServerAddress> = built.iter().map(|(_, t)| t.local_addr()).collect();
        let address_of: AddressOf<TypeConfig> = Arc::new(move |id: &NodeId, _node: &()| {
            addresses.get(*id as usize).cloned().unwrap_or_default()
        });
        let mut nodes = Vec::new();
        for (id, (runtime, transport)) in built.into_iter().enumerate() {
            let factory = RaftnetNetworkFactory::<TypeConfig>::new(
                id as NodeId,
                transport.clone() as Arc<dyn Transport>,
                address_of.clone(),
            );
            let (raft, store) = new_raft(&runtime, id, &config, factory, store)?;
            runtime.spawn(serve(raft.clone(), transport.consumer().clone()));
            nodes.push(Node {
                runtime,
                raft,
                store,
                transport: Some(transport),
            });
        }
        Ok(Cluster { nodes })
    }

    fn start_tokio(config: Arc<openraft::Config>, store: Store) -> Result<Cluster, String> {
        let mut built = Vec::new();
        for id in 0..NODES {
            built.push(placed(id, || -> Result<_, String> {
                let runtime = node_runtime(Network::Tokio, id)?;
                let listener = runtime
                    .block_on(TcpListener::bind("127.0.0.1:0"))
                    .map_err(|e| format!("node {id}: bind: {e}"))?;
                Ok((runtime, listener))
            })?);
        }
        let addresses = built
            .iter()
            .map(|(_, l)| l.local_addr())
            .collect::<Result<Vec<SocketAddr>, _>>()
            .map_err(|e| format!("local_addr: {e}"))?;
        let mut nodes = Vec::new();
        for (id, (runtime, listener)) in built.into_iter().enumerate() {
            let peers = addresses
                .iter()
                .enumerate()
                .filter(|&(peer, _)| peer != id)
                .map(|(peer, &addr)| (peer as NodeId, addr));
            let factory = TokioNetworkFactory::new(id as NodeId, peers);
            let (raft, store) = new_raft(&runtime, id, &config, factory, store)?;
            runtime.spawn(accept(listener, raft.clone()));
            nodes.push(Node {
                runtime,
                raft,
                store,
                transport: None,
            });
        }
        Ok(Cluster { nodes })
    }

    fn start_direct(config: Arc<openraft::Config>, store: Store) -> Result<Cluster, String> {
        let directory: Directory = Arc::new(OnceLock::new());
        let mut nodes = Vec::new();
        for id in 0..NODES {
            let runtime = placed(id, || node_runtime(Network::Direct, id))?;
            let factory = DirectNetworkFactory {
                directory: directory.clone(),
            };
            let (raft, store) = new_raft(&runtime, id, &config, factory, store)?;
            nodes.push(Node {
                runtime,
                raft,
                store,
                transport: None,
            });
        }
        let _ = directory.set(nodes.iter().map(|n| n.raft.clone()).collect());
        Ok(Cluster { nodes })
    }

    /// Initialize through node 0 and wait for a leader; its index.
    fn elect(&self) -> Result<usize, String> {
        let first = &self.nodes[0];
        let members: BTreeSet<NodeId> = (0..NODES as NodeId).collect();
        first
            .runtime
            .block_on(first.raft.initialize(members))
            .map_err(|e| format!("initialize: {e}"))?;
        let metrics = first
            .runtime
            .block_on(
                first
                    .raft
                    .wait(Some(ELECTION_WAIT))
                    .metrics(|m| m.current_leader.is_some(), "a leader"),
            )
            .map_err(|e| format!("no leader elected: {e}"))?;
        let leader = metrics.current_leader.expect("waited for it") as usize;
        let node = self
            .nodes
            .get(leader)
            .ok_or_else(|| format!("leader {leader} is not a node"))?;
        node.runtime
            .block_on(
                node.raft
                    .wait(Some(ELECTION_WAIT))
                    .state(ServerState::Leader, "leader"),
            )
            .map_err(|e| format!("node {leader} did not become leader: {e}"))?;
        Ok(leader)
    }

    /// `clients` tasks on the leader's runtime, writing until `control.stopped()`.
    ///
    /// The tasks need `'static` state, so they read a [`Control`] of their own, which this
    /// thread keeps in step with the harness's every millisecond (a 0.05% blur on a 2 s window).
    fn drive(&self, leader: usize, clients: usize, control: &Control) -> Result<Driven, String> {
        let node = &self.nodes[leader];
        let mirror = Arc::new(Control::new());
        let mut tasks = JoinSet::new();
        for client in 0..clients {
            tasks.spawn_on(
                write_loop(node.raft.clone(), client, mirror.clone()),
                node.runtime.handle(),
            );
        }
        // This thread only relays the phase and waits; the clients run on the leader's workers.
        node.runtime.block_on(async {
            while !control.stopped() {
                if control.measuring() && !mirror.measuring() {
                    mirror.start_measuring();
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            mirror.stop();
            let mut total = Driven::default();
            while let Some(done) = tasks.join_next().await {
                let (client, sample, last_serial, last_index) =
                    done.map_err(|e| format!("a client task failed: {e}"))??;
                total.sample.merge(sample);
                total.last_serials.push((client, last_serial));
                total.last_index = total.last_index.max(last_index);
            }
            Ok(total)
        })
    }

    /// Every node applies up to the last acknowledged write, and holds each client's last
    /// acknowledged write.
    ///
    /// The index waited for is the highest one a `client_write` answered with, not the leader's
    /// `last_applied` metric: openraft publishes its metrics after it answers the client, so
    /// the metric read right after the last answer can still be short of it.
    fn check_replicated(&self, driven: &Driven) -> Result<(), String> {
        let index = driven.last_index;
        for (id, node) in self.nodes.iter().enumerate() {
            node.runtime
                .block_on(
                    node.raft
                        .wait(Some(ELECTION_WAIT))
                        .applied_index_at_least(index, "the last acknowledged write"),
                )
                .map_err(|e| format!("node {id} did not apply up to {index:?}: {e}"))?;
            let state = node.runtime.block_on(node.store.state_machine());
            for &(client, serial) in driven.last_serials.iter().filter(|&&(_, s)| s > 0) {
                let name = format!("client-{client}");
                let want = format!("request-{serial}");
                let have = state.client_status.get(&name);
                if have != Some(&want) {
                    return Err(format!(
                        "node {id}: {name}'s status is {have:?}, its last acknowledged write {want}"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Shut every Raft down, then close the transports; the runtimes go when `self` drops.
    fn stop(self) {
        for node in &self.nodes {
            let _ = node.runtime.block_on(node.raft.shutdown());
        }
        for node in &self.nodes {
            if let Some(transport) = &node.transport {
                transport.close();
            }
        }
    }
}

/// What the clients did: their operations, each client's last acknowledged serial, and the
/// highest log index an acknowledged write was committed at.
#[derive(Default)]
struct Driven {
    sample: Sample,
    last_serials: Vec<(usize, u64)>,
    last_index: Option<u64>,
}

/// One client: `client_write` after `client_write`, each op a committed write. Returns the
/// client's number, its sample, the serial of its last acknowledged write and that write's log
/// index.
async fn write_loop(
    raft: Raft,
    client: usize,
    control: Arc<Control>,
) -> Result<(usize, Sample, u64, Option<u64>), String> {
    let name = format!("client-{client}");
    let mut sample = Sample::default();
    let mut serial = 0u64;
    let mut last_index = None;
    while !control.stopped() {
        serial += 1;
        let request = ClientRequest {
            client: name.clone(),
            serial,
            status: format!("request-{serial}"),
        };
        let start = Instant::now();
        let written = raft
            .client_write(request)
            .await
            .map_err(|e| format!("{name}: client_write: {e}"))?;
        sample.record(&control, start.elapsed(), 0);
        last_index = Some(written.log_id.index);
    }
    Ok((client, sample, serial, last_index))
}

/// Build the cluster over `network` on `store`, elect a leader, drive `clients` writers on it
/// until `control.stopped()`, check that every node holds every acknowledged write, tear down;
/// the committed writes while `control.measuring()`.
pub fn run(
    network: Network,
    store: Store,
    clients: usize,
    control: &Control,
) -> Result<Sample, String> {
    let cluster = Cluster::start(network, store)?;
    let result = cluster.elect().and_then(|leader| {
        let driven = cluster.drive(leader, clients, control)?;
        cluster.check_replicated(&driven)?;
        Ok(driven.sample)
    });
    cluster.stop();
    result
}

/// What an idle cluster costs: the process's CPU time (all three nodes, their runtimes and
/// transports) and context switches over a window in which nothing is written, after the
/// leader is elected and has settled. Heartbeats (every 50 ms, [`config`]) are all the work.
#[derive(Debug, Clone, Copy)]
pub struct Idle {
    /// The window measured.
    pub window: Duration,
    /// CPU time and context switches in the window.
    pub usage: crate::measure::Usage,
    /// The leader before and after the window is the same node (a leader change would have
    /// cost an election, not idling).
    pub same_leader: bool,
}

impl Idle {
    /// CPU time as a percentage of one CPU over the window.
    pub fn cpu_percent_of_one_cpu(&self) -> f64 {
        100.0 * self.usage.cpu.total().as_secs_f64() / self.window.as_secs_f64()
    }
}

/// Build the cluster over `network` on `store`, elect a leader, let it settle for `settle`,
/// then measure [`Idle`] over `window`, and tear down.
pub fn idle(
    network: Network,
    store: Store,
    settle: Duration,
    window: Duration,
) -> Result<Idle, String> {
    let cluster = Cluster::start(network, store)?;
    let result = cluster.elect().map(|leader| {
        std::thread::sleep(settle);
        let start = crate::measure::usage();
        let started = Instant::now();
        std::thread::sleep(window);
        let end = crate::measure::usage();
        let window = started.elapsed();
        let leader_now = cluster.nodes[leader].raft.metrics().borrow().current_leader;
        Idle {
            window,
            usage: crate::measure::Usage {
                cpu: end.cpu.since(start.cpu),
                switches: end.switches.since(start.switches),
            },
            same_leader: leader_now == Some(leader as NodeId),
        }
    });
    cluster.stop();
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every network on every store: a cluster forms, commits writes from 4 clients, every
    /// node holds each client's last write (`run`'s check), and it shuts down.
    #[test]
    fn every_network_commits_writes() {
        let _load = crate::measure::test_lock::loading();
        for (network, store) in [
            (Network::Raftnet, Store::Memstore),
            (Network::Tokio, Store::Memstore),
            (Network::Direct, Store::Memstore),
            (Network::Raftnet, Store::Bench),
            (Network::Tokio, Store::Bench),
            (Network::Direct, Store::Bench),
        ] {
            let control = Control::new();
            let sample = std::thread::scope(|s| {
                let run = s.spawn(|| run(network, store, 4, &control));
                std::thread::sleep(Duration::from_millis(300));
                control.start_measuring();
                std::thread::sleep(Duration::from_millis(300));
                control.stop();
                run.join().expect("no panic")
            });
            let what = format!("{} on {}", network.name(), store.name());
            let sample = sample.unwrap_or_else(|e| panic!("{what}: {e}"));
            assert!(sample.ops > 0, "{what}: no write committed");
            assert_eq!(sample.ops as usize, sample.latencies_ns.len());
        }
    }

    /// An idle cluster is measured: its heartbeats cost some CPU and some wake-ups (a window
    /// with none measured nothing), over the window asked for.
    #[test]
    fn an_idle_cluster_is_measured() {
        let _load = crate::measure::test_lock::loading();
        for network in [Network::Raftnet, Network::Tokio] {
            let window = Duration::from_millis(500);
            let idle = idle(network, Store::Bench, Duration::from_millis(100), window)
                .unwrap_or_else(|e| panic!("{}: {e}", network.name()));
            assert!(idle.window >= window, "{}: {idle:?}", network.name());
            assert!(
                idle.usage.cpu.total() > Duration::ZERO,
                "{}: {idle:?}",
                network.name()
            );
            assert!(
                idle.usage.switches.total() > 0,
                "{}: {idle:?}",
                network.name()
            );
        }
    }
}
