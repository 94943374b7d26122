//! A real openraft 0.9 cluster over raftnet: every node has its own `NetTransport` on an
//! ephemeral loopback port, its own Raft (openraft-memstore) and its own `serve` task, all in one
//! process. Each test waits on metrics with generous deadlines (a slow, loaded machine must not
//! fail them) and never sleeps to synchronise.
//!
//! - `election`: a leader is elected and every node agrees on it;
//! - `replication`: concurrent writes through the leader reach every node's state machine;
//! - `leader_loss`: the leader's transport closes mid-write; the survivors elect a new leader
//!   through raftnet's vote path, writes continue, no acknowledged write is lost;
//! - `snapshot_catch_up`: the leader purges its logs; a new learner is brought up to date through
//!   InstallSnapshot over raftnet.
//!
//! Each runs twice, once per [`Placement`] of the transports' drivers: `on_runtime::*` with each
//! a task on the test's runtime (`NetTransport::bind_on`, as the adapter recommends),
//! `on_threads::*` with threads of their own.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, Fatal, RaftError};
use openraft::storage::Adaptor;
use openraft::{Config as RaftConfig, Raft, RaftMetrics, ServerState, SnapshotPolicy};
use openraft_memstore::{ClientRequest, MemStore, TypeConfig};
use raftnet::openraft::{AddressOf, RaftnetNetworkFactory, serve};
use raftnet::{NetTransport, Placement, RpcType, ServerAddress, Transport};
use tokio::task::JoinHandle;

type NodeId = u64;
type MemRaft = Raft<TypeConfig>;
type Metrics = RaftMetrics<NodeId, ()>;

/// Bounds every wait. A healthy cluster needs well under a second for any of them; the margin is
/// for slow, loaded machines, while a hang still fails.
const DEADLINE: Duration = Duration::from_secs(30);

/// How often a condition over several nodes is re-checked.
const POLL: Duration = Duration::from_millis(10);

/// One attempt of a client write; a retry uses the same serial, which memstore deduplicates.
/// An attempt that gets no answer this long counts as a failure no scenario allows: a write is
/// answered in milliseconds, and even one caught in a leadership change is answered (committed by
/// the new leader, or refused with ForwardToLeader) within an election, at most
/// `election_timeout_max` (1 s) plus a few round trips. No attempt timed out in 6 runs of the
/// file with both cores busy.
const WRITE_ATTEMPT: Duration = Duration::from_secs(5);

/// Shorter than openraft's defaults would be fine on a quiet machine; these leave room for a
/// debug build on a busy two-core one (an RPC times out after `heartbeat_interval`).
fn raft_config() -> RaftConfig {
    RaftConfig {
        cluster_name: "raftnet-test".into(),
        heartbeat_interval: 100,
        election_timeout_min: 500,
        election_timeout_max: 1000,
        install_snapshot_timeout: 2000,
        ..RaftConfig::default()
    }
}

/// Where each node listens; the network factories read it on every `new_client`.
type AddressBook = Arc<RwLock<HashMap<NodeId, ServerAddress>>>;

/// The live nodes' Raft handles, shared with the writer tasks (a stopped node leaves it).
type Directory = Arc<RwLock<BTreeMap<NodeId, MemRaft>>>;

struct TestNode {
    raft: MemRaft,
    store: Arc<MemStore>,
    transport: Arc<NetTransport>,
    server: JoinHandle<()>,
}

struct Cluster {
    /// Where the nodes' drivers run: tasks on the test's runtime, or threads of their own.
    placement: Placement,
    config: Arc<RaftConfig>,
    book: AddressBook,
    directory: Directory,
    nodes: BTreeMap<NodeId, TestNode>,
}

impl Cluster {
    /// Nodes `ids`, started but not initialized.
    async fn start(ids: &[NodeId], config: RaftConfig, placement: Placement) -> Cluster {
        let mut cluster = Cluster {
            placement,
            config: Arc::new(config.validate().expect("valid Raft config")),
            book: AddressBook::default(),
            directory: Directory::default(),
            nodes: BTreeMap::new(),
        };
        for &id in ids {
            cluster.add_node(id).await;
        }
        cluster
    }

    /// Start a pristine node: its own transport on an ephemeral port, its own store, Raft and
    /// `serve` task.
    async fn add_node(&mut self, id: NodeId) {
        let config = raftnet::Config::default();
        let transport = Arc::new(
            NetTransport::bind_with("127.0.0.1:0", None, config, self.placement.clone())
                .expect("bind an ephemeral loopback port"),
        );
        self.book
            .write()
            .unwrap()
            .insert(id, transport.local_addr());
        let book = self.book.clone();
        // An unknown node gets an empty address, which the transport reports as unreachable.
        let address_of: AddressOf<TypeConfig> = Arc::new(move |id: &NodeId, _: &()| {
            book.read().unwrap().get(id).cloned().unwrap_or_default()
        });
        let network = RaftnetNetworkFactory::new(id, transport.clone(), address_of);
        let store = Arc::new(MemStore::new());
        let (log_store, state_machine) = Adaptor::new(store.clone());
        let raft = Raft::new(id, self.config.clone(), network, log_store, state_machine)
            .await
            .expect("start Raft");
        let server = tokio::spawn(serve(raft.clone(), transport.consumer().clone()));
        self.directory.write().unwrap().insert(id, raft.clone());
        self.nodes.insert(
            id,
            TestNode {
                raft,
                store,
                transport,
                server,
            },
        );
    }

    fn node(&self, id: NodeId) -> &TestNode {
        &self.nodes[&id]
    }

    /// RequestVotes sent over raftnet by the nodes `ids`, in all.
    fn votes_sent(&self, ids: &[NodeId]) -> u64 {
        ids.iter()
            .map(|&id| self.node(id).transport.metrics().calls_sent[RpcType::RequestVote])
            .sum()
    }

    fn metrics(&self, id: NodeId) -> Metrics {
        self.node(id).raft.metrics().borrow().clone()
    }

    /// Initialize membership `ids` on the first of them.
    async fn initialize(&self, ids: &[NodeId]) {
        let members: BTreeSet<NodeId> = ids.iter().copied().collect();
        self.node(ids[0])
            .raft
            .initialize(members)
            .await
            .expect("initialize");
    }

    /// Wait until every node of `among` names the same leader, a member of `among` that is in
    /// the Leader state, in the same term.
    async fn agreed_leader(&self, among: &[NodeId]) -> NodeId {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let views: Vec<Metrics> = among.iter().map(|&id| self.metrics(id)).collect();
            if let Some(leader) = views[0].current_leader
                && let Some(at) = among.iter().position(|&id| id == leader)
                && views[at].state == ServerState::Leader
                && views.iter().all(|m| {
                    m.current_leader == Some(leader) && m.current_term == views[at].current_term
                })
            {
                return leader;
            }
            assert!(
                Instant::now() < deadline,
                "no leader agreed among {among:?} within {DEADLINE:?}: {:#?}",
                views
                    .iter()
                    .map(|m| (m.id, m.state, m.current_term, m.current_leader))
                    .collect::<Vec<_>>()
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Wait until every node of `ids` has applied at least up to `index`.
    async fn wait_applied(&self, ids: &[NodeId], index: u64) {
        for &id in ids {
            self.node(id)
                .raft
                .wait(Some(DEADLINE))
                .applied_index_at_least(Some(index), format!("node {id} applies {index}"))
                .await
                .unwrap_or_else(|e| panic!("node {id} did not apply up to {index}: {e}"));
        }
    }

    /// Wait for `ids` to apply everything `leader` has applied, then check that each state
    /// machine holds every acknowledged write with its value.
    ///
    /// `leader` may have lost its office while the writes ran (a loaded machine misses election
    /// timeouts), and a new leader can have committed entries it has not applied yet, so its
    /// applied index can be below an acknowledged write's. A node that lacks a write is therefore
    /// given until [`DEADLINE`] to apply it: a write that was really lost never shows up.
    async fn assert_holds(&self, leader: NodeId, ids: &[NodeId], acked: &BTreeMap<String, String>) {
        let applied = self
            .metrics(leader)
            .last_applied
            .expect("the leader has applied entries")
            .index;
        self.wait_applied(ids, applied).await;
        let deadline = Instant::now() + DEADLINE;
        for &id in ids {
            loop {
                let state = self.node(id).store.get_state_machine().await.client_status;
                let missing = acked
                    .iter()
                    .find(|(key, value)| state.get(*key) != Some(*value));
                let Some((key, value)) = missing else { break };
                assert!(
                    Instant::now() < deadline,
                    "node {id} lost the acknowledged write {key}={value} (it holds {:?})",
                    state.get(key)
                );
                tokio::time::sleep(POLL).await;
            }
        }
    }

    /// Stop a node as a crash would look to its peers: its transport closes first (in-flight
    /// calls fail, listener and connections go away), then its Raft shuts down.
    async fn stop(&mut self, id: NodeId) {
        self.directory.write().unwrap().remove(&id);
        let node = self.nodes.remove(&id).expect("a running node");
        node.transport.close();
        node.raft.shutdown().await.expect("Raft shuts down");
        tokio::time::timeout(DEADLINE, node.server)
            .await
            .expect("serve returns once its transport is closed")
            .expect("serve does not panic");
    }

    async fn shutdown(mut self) {
        let ids: Vec<NodeId> = self.nodes.keys().copied().collect();
        for id in ids {
            self.stop(id).await;
        }
    }
}

/// Why one attempt of a client write failed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Failure {
    /// openraft's ForwardToLeader: the node was not, or no longer, the leader (leadership moved
    /// between the writer's look at the metrics and the write, or while the write was in flight).
    ForwardToLeader,
    /// The node's Raft had stopped, or stopped while the write waited (`Fatal::Stopped`).
    Stopped,
    /// No answer within [`WRITE_ATTEMPT`].
    TimedOut,
    /// Any other error, as openraft put it.
    Other(String),
}

/// A failed attempt: the write, the node it went to, and why it failed.
#[derive(Debug, Clone)]
struct FailedAttempt {
    key: String,
    node: NodeId,
    failure: Failure,
}

/// Panic, listing every failed attempt, unless each is one `allowed` accepts.
fn assert_failures(
    what: &str,
    failures: &[FailedAttempt],
    allowed: impl Fn(&FailedAttempt) -> bool,
) {
    let describe = |f: &FailedAttempt| format!("{} on node {}: {:?}", f.key, f.node, f.failure);
    let refused: Vec<String> = failures
        .iter()
        .filter(|f| !allowed(f))
        .map(describe)
        .collect();
    assert!(
        refused.is_empty(),
        "{what}: write attempts failed in a way this scenario does not allow: {refused:#?} \
         (all failed attempts: {:#?})",
        failures.iter().map(describe).collect::<Vec<_>>()
    );
}

/// The rule for a scenario in which no node stops (`replication`, `snapshot_catch_up`): a write
/// may fail only with ForwardToLeader, and only if leadership changed while the writes ran (the
/// highest term moved past `term_before`, the term of the leader they started with).
///
/// Why that much is allowed: on a loaded machine a follower can miss heartbeats and start an
/// election (a lost leadership, not a transport fault), and a write that went to the old leader
/// then comes back as ForwardToLeader, which a client retries. Why nothing else is: nothing stops
/// (no `Stopped`), no membership change is written through `client_write`, and an attempt left
/// unanswered for [`WRITE_ATTEMPT`] is a lost message or a stuck node, which is what these tests
/// are there to catch; without a leadership change no write has any reason to fail at all.
fn assert_only_leadership_changes(
    cluster: &Cluster,
    ids: &[NodeId],
    term_before: u64,
    failures: &[FailedAttempt],
    what: &str,
) {
    let term_after = ids
        .iter()
        .map(|&id| cluster.metrics(id).current_term)
        .max()
        .unwrap();
    let leadership_changed = term_after > term_before;
    eprintln!(
        "{what}: {} failed write attempt(s); term {term_before} → {term_after}",
        failures.len()
    );
    assert_failures(what, failures, |f| {
        leadership_changed && f.failure == Failure::ForwardToLeader
    });
}

/// A write's key, value and serial. Each key is written once, so a retry (same serial) is
/// deduplicated by memstore instead of applied twice.
fn writes(prefix: &str, n: usize) -> Vec<(String, String, u64)> {
    (0..n)
        .map(|i| {
            (
                format!("{prefix}-{i:04}"),
                format!("value-{prefix}-{i}"),
                i as u64 + 1,
            )
        })
        .collect()
}

/// Write through whichever live node is leader, retrying (on another leader, after an election)
/// until acknowledged; returns the log index it was applied at. Every failed attempt is recorded
/// in `failures`, for the scenario to judge.
async fn write(
    directory: &Directory,
    key: &str,
    value: &str,
    serial: u64,
    failures: &Mutex<Vec<FailedAttempt>>,
) -> u64 {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let leader = directory
            .read()
            .unwrap()
            .iter()
            .find(|(_, raft)| raft.metrics().borrow().state == ServerState::Leader)
            .map(|(&id, raft)| (id, raft.clone()));
        if let Some((node, raft)) = leader {
            let request = ClientRequest {
                client: key.to_string(),
                serial,
                status: value.to_string(),
            };
            let failure =
                match tokio::time::timeout(WRITE_ATTEMPT, raft.client_write(request)).await {
                    Ok(Ok(response)) => return response.log_id.index,
                    Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                        Failure::ForwardToLeader
                    }
                    Ok(Err(RaftError::Fatal(Fatal::Stopped))) => Failure::Stopped,
                    Ok(Err(e)) => Failure::Other(e.to_string()),
                    Err(_) => Failure::TimedOut,
                };
            failures.lock().unwrap().push(FailedAttempt {
                key: key.to_string(),
                node,
                failure,
            });
        }
        assert!(
            Instant::now() < deadline,
            "write {key} not acknowledged within {DEADLINE:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// Holds writers back, once `at` writes are acknowledged, until `open` is set.
#[derive(Clone)]
struct Gate {
    at: usize,
    open: Arc<AtomicBool>,
}

/// Write `all` from `tasks` concurrent tasks; every acknowledged write lands in `acked`. Returns
/// every failed attempt. With a `gate`, a writer waits before its next write while `gate.at`
/// writes or more are acknowledged and the gate is not open.
async fn write_concurrently(
    directory: &Directory,
    all: Vec<(String, String, u64)>,
    tasks: usize,
    acked: &Arc<Mutex<BTreeMap<String, String>>>,
    gate: Option<Gate>,
) -> Vec<FailedAttempt> {
    let mut shares: Vec<Vec<_>> = (0..tasks).map(|_| Vec::new()).collect();
    for (i, w) in all.into_iter().enumerate() {
        shares[i % tasks].push(w);
    }
    let failures = Arc::new(Mutex::new(Vec::new()));
    let handles: Vec<_> = shares
        .into_iter()
        .map(|share| {
            let directory = directory.clone();
            let acked = acked.clone();
            let failures = failures.clone();
            let gate = gate.clone();
            tokio::spawn(async move {
                for (key, value, serial) in share {
                    if let Some(gate) = &gate {
                        loop {
                            let written = acked.lock().unwrap().len();
                            if written < gate.at || gate.open.load(Ordering::SeqCst) {
                                break;
                            }
                            tokio::time::sleep(POLL).await;
                        }
                    }
                    write(&directory, &key, &value, serial, &failures).await;
                    acked.lock().unwrap().insert(key, value);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.expect("a writer task panicked");
    }
    failures.lock().unwrap().clone()
}

async fn election(placement: Placement) {
    let ids = [0, 1, 2];
    let cluster = Cluster::start(&ids, raft_config(), placement).await;
    cluster.initialize(&ids).await;

    let leader = cluster.agreed_leader(&ids).await;
    for id in ids {
        let m = cluster.metrics(id);
        let voters: BTreeSet<NodeId> = m.membership_config.membership().voter_ids().collect();
        assert_eq!(voters, BTreeSet::from(ids), "node {id}'s membership");
        let expected = if id == leader {
            ServerState::Leader
        } else {
            ServerState::Follower
        };
        assert_eq!(m.state, expected, "node {id}'s state");
    }
    // The votes and heartbeats went over raftnet.
    let leader_transport = &cluster.node(leader).transport;
    assert!(leader_transport.metrics().calls_sent[RpcType::RequestVote] >= 2);
    cluster.shutdown().await;
}

async fn replication(placement: Placement) {
    let ids = [0, 1, 2];
    let cluster = Cluster::start(&ids, raft_config(), placement).await;
    cluster.initialize(&ids).await;
    let leader = cluster.agreed_leader(&ids).await;
    let term = cluster.metrics(leader).current_term;

    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let failures =
        write_concurrently(&cluster.directory, writes("key", 200), 8, &acked, None).await;
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), 200);
    assert_only_leadership_changes(&cluster, &ids, term, &failures, "replication");

    cluster.assert_holds(leader, &ids, &acked).await;
    // Nothing but the acknowledged writes, and the same on every node.
    let leader_state = cluster
        .node(leader)
        .store
        .get_state_machine()
        .await
        .client_status;
    assert_eq!(leader_state.len(), acked.len());
    for id in ids {
        let state = cluster
            .node(id)
            .store
            .get_state_machine()
            .await
            .client_status;
        assert_eq!(state, leader_state, "node {id}'s state machine differs");
    }
    let sent = cluster.node(leader).transport.metrics().calls_sent[RpcType::AppendEntries];
    assert!(sent > 0, "the entries were replicated over raftnet");
    cluster.shutdown().await;
}

async fn leader_loss(placement: Placement) {
    let ids = [0, 1, 2];
    let mut cluster = Cluster::start(&ids, raft_config(), placement).await;
    cluster.initialize(&ids).await;
    let old_leader = cluster.agreed_leader(&ids).await;
    let survivors: Vec<NodeId> = ids.into_iter().filter(|&id| id != old_leader).collect();

    // Writers run while the leader goes away: they retry on the new leader. The leader is
    // stopped once 50 writes are acknowledged; should this task be slow to see that, the gate
    // holds the writers at 150 until the loss has begun, so it always comes mid-write, with
    // writes left for the new leader.
    const WRITES: usize = 200;
    let loss_started = Arc::new(AtomicBool::new(false));
    let gate = Gate {
        at: 150,
        open: loss_started.clone(),
    };
    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let done = Arc::new(AtomicUsize::new(0));
    let writers = {
        let (directory, acked, done) = (cluster.directory.clone(), acked.clone(), done.clone());
        tokio::spawn(async move {
            let failures =
                write_concurrently(&directory, writes("before", WRITES), 4, &acked, Some(gate))
                    .await;
            done.store(1, Ordering::SeqCst);
            failures
        })
    };
    let deadline = Instant::now() + DEADLINE;
    while acked.lock().unwrap().len() < 50 && done.load(Ordering::SeqCst) == 0 {
        assert!(
            Instant::now() < deadline,
            "the first 50 writes took over {DEADLINE:?}"
        );
        tokio::time::sleep(POLL).await;
    }
    let votes_before = cluster.votes_sent(&survivors);
    let acked_at_loss = acked.lock().unwrap().len();
    // The scenario is a loss mid-write: writers still running, writes still to come.
    assert_eq!(
        done.load(Ordering::SeqCst),
        0,
        "every write finished before the leader was stopped"
    );
    assert!(
        acked_at_loss < WRITES,
        "all {WRITES} writes were acknowledged before the leader was stopped"
    );

    loss_started.store(true, Ordering::SeqCst);
    cluster.stop(old_leader).await;

    let new_leader = cluster.agreed_leader(&survivors).await;
    assert_ne!(new_leader, old_leader);
    let votes_after = cluster.votes_sent(&survivors);
    assert!(
        votes_after > votes_before,
        "the new leader was elected through raftnet's vote path"
    );

    let failures = tokio::time::timeout(DEADLINE, writers)
        .await
        .expect("the writers finish")
        .expect("the writers do not panic");
    // Writes continue on the new leader.
    let after = Arc::new(Mutex::new(BTreeMap::new()));
    let failures_after =
        write_concurrently(&cluster.directory, writes("after", 50), 4, &after, None).await;

    let mut acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), WRITES);
    assert!(
        acked.len() > acked_at_loss,
        "no write was acknowledged after the leader was lost"
    );
    // What losing the leader may do to a write: the stopped node refuses it or ends it with
    // `Stopped` (a writer can hold its handle when it stops), and any node can answer
    // ForwardToLeader while leadership moves. A timeout is not among them: the stopped node's
    // shutdown ends the writes it held, and the survivors answer theirs, so an attempt left
    // unanswered for WRITE_ATTEMPT is a lost message or a stuck node. Once the new leader is
    // agreed, writes go through without failing, save ForwardToLeader should leadership move
    // again on a loaded machine.
    eprintln!(
        "leader_loss: failed write attempts around the loss {:?}, after it {:?}",
        failures
            .iter()
            .map(|f| (f.node, &f.failure))
            .collect::<Vec<_>>(),
        failures_after
            .iter()
            .map(|f| (f.node, &f.failure))
            .collect::<Vec<_>>(),
    );
    assert_failures("leader_loss, around the loss", &failures, |f| {
        f.failure == Failure::ForwardToLeader
            || (f.failure == Failure::Stopped && f.node == old_leader)
    });
    assert_failures("leader_loss, after it", &failures_after, |f| {
        f.failure == Failure::ForwardToLeader
    });
    acked.extend(after.lock().unwrap().clone());
    let new_leader = cluster.agreed_leader(&survivors).await;
    cluster.assert_holds(new_leader, &survivors, &acked).await;
    eprintln!(
        "leader_loss: {acked_at_loss} writes acknowledged by node {old_leader} before it stopped; node {new_leader} leads"
    );
    cluster.shutdown().await;
}

async fn snapshot_catch_up(placement: Placement) {
    let ids = [0, 1, 2];
    let config = RaftConfig {
        snapshot_policy: SnapshotPolicy::LogsSinceLast(20),
        max_in_snapshot_log_to_keep: 0,
        purge_batch_size: 1,
        ..raft_config()
    };
    let mut cluster = Cluster::start(&ids, config, placement).await;
    cluster.initialize(&ids).await;
    let leader = cluster.agreed_leader(&ids).await;
    let term = cluster.metrics(leader).current_term;

    let acked = Arc::new(Mutex::new(BTreeMap::new()));
    let mut failures =
        write_concurrently(&cluster.directory, writes("key", 200), 4, &acked, None).await;

    // The leader snapshots and purges the logs a new node would need.
    cluster
        .node(leader)
        .raft
        .wait(Some(DEADLINE))
        .metrics(
            |m| m.snapshot.is_some() && m.purged.is_some_and(|p| p.index >= 100),
            "the leader purges its logs",
        )
        .await
        .expect("the leader snapshots and purges its logs");

    // A new node joins as a learner: it can only catch up through InstallSnapshot.
    let learner = 3;
    cluster.add_node(learner).await;
    cluster
        .node(leader)
        .raft
        .add_learner(learner, (), false)
        .await
        .expect("add the learner");
    // And a few more writes, which it receives as entries.
    failures
        .extend(write_concurrently(&cluster.directory, writes("later", 20), 4, &acked, None).await);
    let acked = acked.lock().unwrap().clone();
    assert_eq!(acked.len(), 220);
    assert_only_leadership_changes(&cluster, &ids, term, &failures, "snapshot_catch_up");

    let all = [0, 1, 2, learner];
    cluster.assert_holds(leader, &all, &acked).await;
    let m = cluster.metrics(learner);
    assert_eq!(m.state, ServerState::Learner);
    assert!(m.snapshot.is_some(), "the learner installed a snapshot");
    let sent = cluster.node(leader).transport.metrics().calls_sent[RpcType::InstallSnapshot];
    assert!(sent > 0, "the leader sent InstallSnapshot over raftnet");
    let received =
        cluster.node(learner).transport.metrics().rpcs_received[RpcType::InstallSnapshot];
    assert!(
        received > 0,
        "the learner received InstallSnapshot over raftnet"
    );
    cluster.shutdown().await;
}

/// Each scenario with both placements of the drivers: tasks on the test's runtime (as the
/// adapter recommends), and threads of their own.
macro_rules! with_both_placements {
    ($($name:ident),* $(,)?) => {
        mod on_runtime {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(raftnet::Placement::Runtime(tokio::runtime::Handle::current())).await
                }
            )*
        }

        mod on_threads {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(raftnet::Placement::Thread).await
                }
            )*
        }
    };
}

with_both_placements!(election, replication, leader_loss, snapshot_catch_up);
