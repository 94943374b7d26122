//! The cluster run: 3 or 5 processes of raftnet's node example (openraft over raftnet, data on
//! disk), every link between them through a [`Link`], clients doing reads (openraft's
//! linearizable read path), writes and compare-and-sets on a small, rotating key space through
//! the nodes' `--client` ports, while a seeded injector partitions, isolates the leader, cuts one
//! way, slows, throttles, drops connections, and kills (`SIGKILL`, then a restart on the same
//! data dir) or pauses (`SIGSTOP` longer than the election timeout, then `SIGCONT`) node
//! processes. Every operation is recorded with its invocation and answer times, and the history
//! is checked by [`crate::checker`].
//!
//! Keys rotate (a new set every [`OPS_PER_KEY_SET`] operations, as Jepsen's independent keys
//! do), so each key's history stays short enough to check exhaustively; at the end every key is
//! read once more, after the final heal, so that a lost write shows as a stale final read.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::checker::{self, Op, Operation, Outcome, Verdict};
use crate::held_port::HeldPort;
use crate::measure::{Availability, AvailabilitySummary, FaultBag};
use crate::proxy::{Close, Direction, Faults, Link};

/// Operations per set of keys before the clients move to fresh keys.
pub const OPS_PER_KEY_SET: u64 = 2000;

/// Kinds of fault [`inject`] knows.
const FAULT_KINDS: usize = 10;

/// Keys in use at once.
const KEYS: u64 = 6;

/// A client gives up on an answer after this long (the operation's outcome is then unknown).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(3);

/// What to run.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// The node example's binary (`target/<profile>/examples/node`).
    pub node_binary: PathBuf,
    /// Where the nodes keep their data dirs (one per node, created inside).
    pub data_dir: PathBuf,
    /// 3 or 5.
    pub nodes: usize,
    /// Concurrent clients.
    pub clients: usize,
    /// How long to inject faults.
    pub duration: Duration,
    /// Fixes the faults, their timing and the workload.
    pub seed: u64,
    /// Print a progress line every few seconds.
    pub progress: bool,
}

/// Operations by outcome, the checker's verdict, faults, recovery.
#[derive(Debug, Clone)]
pub struct ClusterReport {
    /// The seed that replays the run.
    pub seed: u64,
    /// Nodes.
    pub nodes: usize,
    /// Per operation kind (`read`, `write`, `cas`): ok, refused (did not happen), unknown.
    pub operations: BTreeMap<&'static str, [u64; 3]>,
    /// Compare-and-sets that were answered and wrote.
    pub cas_succeeded: u64,
    /// Keys checked.
    pub keys: usize,
    /// Operations in the checked history.
    pub history_len: usize,
    /// The checker's verdict.
    pub verdict: Verdict,
    /// Anything else that went wrong (a node that would not restart, a final read that failed).
    pub problems: Vec<String>,
    /// Where the violating key's history was written, if there was one.
    pub violation_file: Option<PathBuf>,
    /// Faults, throughput and recovery.
    pub availability: AvailabilitySummary,
    /// How long it ran.
    pub elapsed: Duration,
    /// How long the checker took.
    pub check_time: Duration,
}

impl ClusterReport {
    /// Violations: 1 if the history is not linearizable, plus other problems.
    pub fn violations(&self) -> usize {
        usize::from(!matches!(self.verdict, Verdict::Linearizable)) + self.problems.len()
    }

    /// Operations of every kind and outcome.
    pub fn total(&self) -> u64 {
        self.operations.values().flatten().sum()
    }

    /// The report as a markdown table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| cluster, {} nodes (seed {}) | |",
            self.nodes, self.seed
        );
        let _ = writeln!(out, "|---|---|");
        let _ = writeln!(
            out,
            "| operations | {} in {:.0} s |",
            self.total(),
            self.elapsed.as_secs_f64()
        );
        for (kind, [ok, refused, unknown]) in &self.operations {
            let extra = if *kind == "cas" {
                format!(" ({} of the ok ones wrote)", self.cas_succeeded)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "| {kind} | {ok} ok{extra}, {refused} refused, {unknown} unknown |"
            );
        }
        self.availability.write_rows(&mut out);
        let _ = writeln!(
            out,
            "| linearizability | {} ({} operations on {} keys, checked in {:.1} s) |",
            match &self.verdict {
                Verdict::Linearizable => "linearizable".to_string(),
                Verdict::Violation { key, .. } => format!("VIOLATION on key {key}"),
                Verdict::Undecided { key } => format!("undecided on key {key}"),
            },
            self.history_len,
            self.keys,
            self.check_time.as_secs_f64()
        );
        let _ = writeln!(out, "| violations | {} |", self.violations());
        if let Some(file) = &self.violation_file {
            let _ = writeln!(out, "| | the violating key's history: {} |", file.display());
        }
        for p in self.problems.iter().take(10) {
            let _ = writeln!(out, "| | {p} |");
        }
        out
    }
}

/// One node process, restartable.
struct Node {
    id: usize,
    args: Vec<String>,
    /// Its port, held while no process of it runs too (see [`HeldPort`]).
    port: HeldPort,
    binary: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// Where its `--client` port is, once it says.
    client_addr: Arc<Mutex<Option<SocketAddr>>>,
    stopped: bool,
}

impl Node {
    fn start(&mut self, leaders: &Arc<Mutex<(u64, Option<usize>)>>) -> std::io::Result<()> {
        *self.client_addr.lock().unwrap() = None;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let mut command = Command::new(&self.binary);
        command.args(&self.args);
        self.port.pass_to(&mut command)?;
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()?;
        let stdout = child.stdout.take().expect("piped stdout");
        let (client_addr, leaders, id) = (self.client_addr.clone(), leaders.clone(), self.id);
        let mut log = std::fs::OpenOptions::new().append(true).open(&self.log)?;
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(log, "{line}");
                if let Some(addr) = line.strip_prefix(&format!("node {id}: clients on ")) {
                    *client_addr.lock().unwrap() = addr.trim().parse().ok();
                }
                // "term 3: node 2 leads; this node is follower"
                if let Some((term, rest)) = line
                    .strip_prefix("term ")
                    .and_then(|l| l.split_once(": node "))
                    && let (Ok(term), Some(leader)) = (
                        term.parse::<u64>(),
                        // Node ids count from 1; `leaders` holds the index.
                        rest.split_whitespace()
                            .next()
                            .and_then(|l| l.parse::<usize>().ok()?.checked_sub(1)),
                    )
                {
                    let mut known = leaders.lock().unwrap();
                    if term >= known.0 {
                        *known = (term, Some(leader));
                    }
                }
            }
        });
        self.child = Some(child);
        self.stopped = false;
        Ok(())
    }

    fn pid(&self) -> Option<i32> {
        self.child.as_ref().map(|c| c.id() as i32)
    }

    fn signal(&self, signal: i32) {
        if let Some(pid) = self.pid() {
            // SAFETY: kill(2) with a pid of our own child and a valid signal number has no
            // memory effects in this process.
            unsafe {
                libc::kill(pid, signal);
            }
        }
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
            self.port.refuse();
        }
        self.stopped = false;
    }

    fn pause(&mut self) {
        self.signal(libc::SIGSTOP);
        self.stopped = true;
    }

    fn resume(&mut self) {
        self.signal(libc::SIGCONT);
        self.stopped = false;
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.resume();
        self.kill();
    }
}

struct Shared {
    history: Mutex<Vec<Operation>>,
    operations: Mutex<BTreeMap<&'static str, [u64; 3]>>,
    cas_succeeded: AtomicU64,
    started_ops: AtomicU64,
    availability: Availability,
    stop: AtomicBool,
    client_addrs: Vec<Arc<Mutex<Option<SocketAddr>>>>,
    /// The highest term a node announced a leader for, and that leader's index.
    leaders: Arc<Mutex<(u64, Option<usize>)>>,
    keys_used: Mutex<std::collections::BTreeSet<String>>,
}

impl Shared {
    fn count(&self, kind: &'static str, outcome: usize) {
        self.operations.lock().unwrap().entry(kind).or_default()[outcome] += 1;
    }
}

/// What a node answered.
enum Answer {
    Ok(Option<u64>),
    /// Not carried out; the leader's index if the node named one.
    Refused(Option<usize>),
    /// Fate unknown; the leader's index if named.
    Unknown(Option<usize>),
}

/// A client's connection to one node.
struct Client {
    id: u32,
    node: usize,
    connection: Option<(TcpStream, BufReader<TcpStream>)>,
}

impl Client {
    fn request(&mut self, shared: &Shared, line: &str) -> std::io::Result<Answer> {
        if self.connection.is_none() {
            let addr = shared.client_addrs[self.node]
                .lock()
                .unwrap()
                .ok_or_else(|| std::io::Error::other("the node has no client port yet"))?;
            let stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
            stream.set_write_timeout(Some(ANSWER_TIMEOUT))?;
            let reader = BufReader::new(stream.try_clone()?);
            self.connection = Some((stream, reader));
        }
        let (stream, reader) = self.connection.as_mut().expect("connected");
        stream.write_all(format!("{line}\n").as_bytes())?;
        let mut answer = String::new();
        if reader.read_line(&mut answer)? == 0 {
            return Err(std::io::Error::other("the node closed the connection"));
        }
        let mut words = answer.split_whitespace();
        let leader = |w: Option<&str>| w.and_then(|l| l.parse::<usize>().ok()).map(|id| id - 1);
        Ok(match words.next() {
            Some("ok") => Answer::Ok(words.next().and_then(|v| v.parse().ok())),
            Some("refused") => Answer::Refused(leader(words.next())),
            _ => Answer::Unknown(leader(words.next())),
        })
    }

    /// After an error or a refusal: the named leader, or the next node.
    fn move_to(&mut self, leader: Option<usize>, nodes: usize) {
        self.connection = None;
        self.node = leader
            .filter(|&l| l < nodes)
            .unwrap_or((self.node + 1) % nodes);
    }
}

fn client_loop(shared: &Shared, id: u32, nodes: usize, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut client = Client {
        id,
        node: id as usize % nodes,
        connection: None,
    };
    let mut seq = 0u64;
    // The last value this client saw per key: what its compare-and-sets expect.
    let mut seen: BTreeMap<String, u64> = BTreeMap::new();
    while !shared.stop.load(Ordering::Relaxed) {
        let n = shared.started_ops.fetch_add(1, Ordering::Relaxed);
        let key = format!("s{}k{}", n / OPS_PER_KEY_SET, rng.random_range(0..KEYS));
        shared.keys_used.lock().unwrap().insert(key.clone());
        seq += 1;
        let value = (u64::from(client.id) << 40) | seq;
        let roll = rng.random_range(0..10);
        let (kind, line, op) = match (roll, seen.get(&key)) {
            (0..=4, _) => ("read", format!("read {key}"), Op::Read(None)),
            (5..=7, _) | (_, None) => ("write", format!("write {key} {value}"), Op::Write(value)),
            (_, Some(&expected)) => (
                "cas",
                format!("cas {key} {expected} {value}"),
                Op::Cas {
                    expected,
                    new: value,
                    succeeded: false,
                },
            ),
        };
        let invoked = shared.availability.now();
        let answer = client.request(shared, &line);
        let answered = shared.availability.now();
        let record = |op: Op, outcome: Outcome| {
            shared.history.lock().unwrap().push(Operation {
                key: key.clone(),
                client: client.id,
                op,
                invoked,
                outcome,
            });
        };
        match answer {
            Ok(Answer::Ok(previous)) => {
                shared.count(kind, 0);
                shared.availability.ok(client.id as usize, invoked);
                match op {
                    Op::Read(_) => {
                        record(Op::Read(previous), Outcome::Ok(answered));
                        if let Some(v) = previous {
                            seen.insert(key.clone(), v);
                        }
                    }
                    Op::Write(v) => {
                        record(op, Outcome::Ok(answered));
                        seen.insert(key.clone(), v);
                    }
                    Op::Cas { expected, new, .. } => {
                        let succeeded = previous == Some(expected);
                        if succeeded {
                            shared.cas_succeeded.fetch_add(1, Ordering::Relaxed);
                            seen.insert(key.clone(), new);
                        } else if let Some(v) = previous {
                            seen.insert(key.clone(), v);
                        }
                        // One that did not write is the read it was: its answer names the
                        // value it found.
                        let op = if succeeded {
                            Op::Cas {
                                expected,
                                new,
                                succeeded,
                            }
                        } else {
                            Op::Read(previous)
                        };
                        record(op, Outcome::Ok(answered));
                    }
                }
            }
            Ok(Answer::Refused(leader)) => {
                // It did not happen: nothing to record.
                shared.count(kind, 1);
                client.move_to(leader, shared.client_addrs.len());
                std::thread::sleep(Duration::from_millis(rng.random_range(5..30)));
            }
            Ok(Answer::Unknown(leader)) => {
                shared.count(kind, 2);
                if !matches!(op, Op::Read(_)) {
                    record(op, Outcome::Unknown);
                }
                client.move_to(leader, shared.client_addrs.len());
            }
            Err(_) => {
                // A lost connection or no answer in time: a write may have happened; a read
                // constrains nothing.
                shared.count(kind, 2);
                if !matches!(op, Op::Read(_)) {
                    record(op, Outcome::Unknown);
                }
                client.move_to(None, shared.client_addrs.len());
                std::thread::sleep(Duration::from_millis(rng.random_range(10..50)));
            }
        }
    }
}

/// Run the cluster; the report says whether the history was linearizable.
pub fn run(config: &ClusterConfig) -> std::io::Result<ClusterReport> {
    let started = Instant::now();
    let n = config.nodes;
    let ports: Vec<HeldPort> = (0..n)
        .map(|_| HeldPort::reserve())
        .collect::<Result<_, _>>()?;
    let addrs: Vec<SocketAddr> = ports.iter().map(HeldPort::addr).collect();
    let addr = |i: usize| addrs[i];
    // links[from][to]: how node `from` reaches node `to`.
    let mut links: Vec<Vec<Option<Link>>> = Vec::new();
    for from in 0..n {
        let mut row = Vec::new();
        for to in 0..n {
            row.push(if from == to {
                None
            } else {
                Some(Link::start(
                    addr(to),
                    config.seed ^ ((from * n + to) as u64) << 32,
                )?)
            });
        }
        links.push(row);
    }
    std::fs::create_dir_all(&config.data_dir)?;
    let leaders = Arc::new(Mutex::new((0u64, None)));
    let mut nodes = Vec::new();
    for ((i, row), port) in links.iter().enumerate().zip(ports) {
        let mut args = vec!["--id".to_string(), (i + 1).to_string()];
        for (j, link) in row.iter().enumerate() {
            // Its own entry is where it listens; the others are the links it dials through.
            let peer = link.as_ref().map_or(addr(i), Link::addr);
            args.push("--peer".into());
            args.push(format!("{}={peer}", j + 1));
        }
        args.push("--data-dir".into());
        args.push(
            config
                .data_dir
                .join(format!("node-{}", i + 1))
                .display()
                .to_string(),
        );
        args.push("--client".into());
        args.push("127.0.0.1:0".into());
        if i == 0 {
            args.push("--init".into());
        }
        let mut node = Node {
            id: i + 1,
            args,
            port,
            binary: config.node_binary.clone(),
            log: config.data_dir.join(format!("node-{}.log", i + 1)),
            child: None,
            client_addr: Arc::new(Mutex::new(None)),
            stopped: false,
        };
        node.start(&leaders)?;
        nodes.push(node);
    }
    let shared = Arc::new(Shared {
        history: Mutex::new(Vec::new()),
        operations: Mutex::new(BTreeMap::new()),
        cas_succeeded: AtomicU64::new(0),
        started_ops: AtomicU64::new(0),
        availability: Availability::new(config.clients),
        stop: AtomicBool::new(false),
        client_addrs: nodes.iter().map(|n| n.client_addr.clone()).collect(),
        leaders: leaders.clone(),
        keys_used: Mutex::new(Default::default()),
    });
    let mut problems = Vec::new();
    // Wait for a leader and its first writes.
    let mut handles = Vec::new();
    for c in 0..config.clients {
        let shared = shared.clone();
        let seed = config.seed.wrapping_add(1 + c as u64 * 104_729);
        handles.push(std::thread::spawn(move || {
            client_loop(&shared, c as u32, n, seed)
        }));
    }
    let up = shared.availability.now();
    if shared
        .availability
        .wait_serving(up, true, Duration::from_secs(60), &shared.stop)
        .is_none()
    {
        problems.push("the cluster did not serve every client within 60 s of starting".into());
    }
    shared.availability.begin();

    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut bag = FaultBag::new(FAULT_KINDS);
    let end = Instant::now() + config.duration;
    let mut last_progress = Instant::now();
    while Instant::now() < end {
        let kind = bag.draw(&mut rng);
        if let Err(e) = inject(&shared, kind, &links, &mut nodes, &mut rng, end) {
            problems.push(format!("a fault could not be applied or healed: {e}"));
        }
        let healed = shared.availability.healed();
        // Recovered: any client completes an operation it started after the heal (clients
        // talking to a node that just restarted take longer to find the leader again).
        shared
            .availability
            .wait_recovery(healed, false, Duration::from_secs(30), &shared.stop);
        std::thread::sleep(Duration::from_millis(rng.random_range(200..800)));
        if config.progress && last_progress.elapsed() >= Duration::from_secs(5) {
            last_progress = Instant::now();
            let ops = shared.operations.lock().unwrap().clone();
            let ok: u64 = ops.values().map(|o| o[0]).sum();
            let all: u64 = ops.values().flatten().sum();
            eprintln!(
                "cluster {:>4.0} s: {all} operations ({ok} ok), {} faults, leader {:?}",
                started.elapsed().as_secs_f64(),
                shared.availability.faults_so_far(),
                leaders.lock().unwrap().1.map(|l| l + 1)
            );
        }
    }
    shared.stop.store(true, Ordering::SeqCst);
    for handle in handles {
        let _ = handle.join();
    }
    let availability = shared.availability.summary();

    // Final reads of every key, after the heal, through the linearizable read path.
    let keys: Vec<String> = shared.keys_used.lock().unwrap().iter().cloned().collect();
    let mut reader = Client {
        id: u32::MAX,
        node: 0,
        connection: None,
    };
    for key in &keys {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let invoked = shared.availability.now();
            match reader.request(&shared, &format!("read {key}")) {
                Ok(Answer::Ok(value)) => {
                    let answered = shared.availability.now();
                    shared.history.lock().unwrap().push(Operation {
                        key: key.clone(),
                        client: reader.id,
                        op: Op::Read(value),
                        invoked,
                        outcome: Outcome::Ok(answered),
                    });
                    break;
                }
                Ok(Answer::Refused(leader)) | Ok(Answer::Unknown(leader)) => {
                    reader.move_to(leader, n)
                }
                Err(_) => reader.move_to(None, n),
            }
            if Instant::now() >= deadline {
                problems.push(format!("final read of {key}: no answer within 60 s"));
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    let elapsed = started.elapsed();
    for node in &mut nodes {
        node.kill();
    }
    drop(links);

    let history = std::mem::take(&mut *shared.history.lock().unwrap());
    let check_started = Instant::now();
    let verdict = checker::check(&history);
    let check_time = check_started.elapsed();
    let violation_file = matches!(verdict, Verdict::Violation { .. }).then(|| {
        let path = config.data_dir.join("violation.txt");
        let _ = std::fs::write(&path, verdict.to_string());
        path
    });
    Ok(ClusterReport {
        seed: config.seed,
        nodes: n,
        operations: shared.operations.lock().unwrap().clone(),
        cas_succeeded: shared.cas_succeeded.load(Ordering::Relaxed),
        keys: keys.len(),
        history_len: history.len(),
        verdict,
        problems,
        violation_file,
        availability,
        elapsed,
        check_time,
    })
}

/// One fault, held for a random while (or until `end`), then healed: links cleared, stopped
/// nodes continued, killed nodes started again on their data dirs.
fn inject(
    shared: &Shared,
    kind: usize,
    links: &[Vec<Option<Link>>],
    nodes: &mut [Node],
    rng: &mut ChaCha8Rng,
    end: Instant,
) -> std::io::Result<()> {
    let n = nodes.len();
    let all: Vec<&Link> = links.iter().flatten().flatten().collect();
    let leader = shared.leaders.lock().unwrap().1.filter(|&l| l < n);
    let random_node = rng.random_range(0..n);
    let of = |node: usize| -> Vec<&Link> {
        (0..n)
            .flat_map(|other| [links[node][other].as_ref(), links[other][node].as_ref()])
            .flatten()
            .collect()
    };
    let mut hold = Duration::from_millis(rng.random_range(300..2000));
    let mut killed = Vec::new();
    let blackhole = Faults {
        blackhole: true,
        ..Faults::none()
    };
    let kind = match kind {
        0 => {
            of(random_node)
                .iter()
                .for_each(|l| l.set_both(blackhole.clone()));
            "partition one node"
        }
        1 => {
            let node = leader.unwrap_or(random_node);
            of(node).iter().for_each(|l| l.set_both(blackhole.clone()));
            hold = hold.max(Duration::from_millis(1500));
            "isolate the leader"
        }
        2 => {
            let link = all[rng.random_range(0..all.len())];
            link.update(Direction::BOTH[rng.random_range(0..2)], |f| {
                f.blackhole = true
            });
            "one-way cut"
        }
        3 => {
            let faults = Faults {
                delay: Duration::from_millis(rng.random_range(5..100)),
                jitter: Duration::from_millis(rng.random_range(0..60)),
                ..Faults::none()
            };
            all.iter().for_each(|l| l.set_both(faults.clone()));
            "delay+jitter"
        }
        4 => {
            let faults = Faults {
                bandwidth: Some(rng.random_range(32 * 1024..1 << 20)),
                pieces: rng.random_bool(0.5).then(|| rng.random_range(1..8)),
                ..Faults::none()
            };
            all.iter().for_each(|l| l.set_both(faults.clone()));
            "bandwidth / small pieces"
        }
        5 => {
            of(random_node).iter().for_each(|l| {
                l.set_both(Faults {
                    paused: true,
                    ..Faults::none()
                })
            });
            "pause links"
        }
        6 => {
            let how = if rng.random_bool(0.5) {
                Close::Fin
            } else {
                Close::Rst
            };
            of(leader.unwrap_or(random_node)).iter().for_each(|l| {
                l.drop_connections(how);
            });
            hold = Duration::from_millis(100);
            "drop connections"
        }
        7 => {
            // A minority: one node of 3, up to two of 5, never the leader.
            let mut victims: Vec<usize> = (0..n).filter(|&i| Some(i) != leader).collect();
            let count = rng.random_range(1..=(n - 1) / 2);
            while victims.len() > count {
                victims.remove(rng.random_range(0..victims.len()));
            }
            for &v in &victims {
                nodes[v].kill();
            }
            killed = victims;
            "kill -9 a minority"
        }
        8 => {
            let v = leader.unwrap_or(random_node);
            nodes[v].kill();
            killed = vec![v];
            "kill -9 the leader"
        }
        _ => {
            let v = if rng.random_bool(0.5) {
                leader.unwrap_or(random_node)
            } else {
                random_node
            };
            nodes[v].pause();
            // Longer than the election timeout (at most 1 s).
            hold = Duration::from_millis(rng.random_range(1200..2500));
            "SIGSTOP / SIGCONT"
        }
    };
    shared.availability.fault(kind);
    let until = (Instant::now() + hold).min(end.max(Instant::now() + Duration::from_millis(100)));
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    for link in &all {
        link.heal();
    }
    let leaders = shared.leaders.clone();
    for node in nodes.iter_mut() {
        if node.stopped {
            node.resume();
        }
    }
    for v in killed {
        nodes[v].start(&leaders)?;
    }
    Ok(())
}

/// The node example's binary beside the running program's profile dir (`target/<profile>/`,
/// from a test in `deps/` or an example in `examples/`), built first with cargo in
/// `manifest_dir` (a no-op build when it is fresh), so that a run never uses a stale node.
pub fn build_node_example(manifest_dir: &std::path::Path) -> std::io::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut profile_dir = exe.parent().map(PathBuf::from).unwrap_or_default();
    if profile_dir
        .file_name()
        .is_some_and(|n| n == "deps" || n == "examples")
    {
        profile_dir.pop();
    }
    let binary = profile_dir
        .join("examples")
        .join(format!("node{}", std::env::consts::EXE_SUFFIX));
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .current_dir(manifest_dir)
        .args(["build", "--quiet", "--example", "node"]);
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        build.arg("--release");
    }
    let status = build.status()?;
    if !status.success() || !binary.exists() {
        return Err(std::io::Error::other(format!(
            "cargo build --example node failed ({status}), or built no {}",
            binary.display()
        )));
    }
    Ok(binary)
}
