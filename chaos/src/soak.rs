//! The transport soak: three `NetTransport`s, each calling the other two through a [`Link`] per
//! ordered pair, with calls of every kind (appends with checksummed payloads, votes, pre-votes,
//! TimeoutNow, streamed snapshots, pipelined appends) while a seeded injector breaks the links.
//!
//! The invariants, each counted as a violation when broken:
//! - every call resolves, within its deadline plus a grace ([`GRACE`]), exactly once: with the
//!   answer to its own request (each request carries a unique id and a checksum of its payload,
//!   which the serving side echoes) or with an error;
//! - an error is one a network fault explains (never a protocol error: the proxy never alters a
//!   byte, so a frame that fails to decode is raftnet's), and a deadline error does not come
//!   early and is not replaced by a late answer;
//! - a snapshot either completes with the exact bytes (the serving side checks the checksum and
//!   length) or fails;
//! - descriptors, threads and memory return to their baseline after the final heal.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use raftnet::message::*;
use raftnet::{
    AppendPipeline, Call, CallOptions, Config, Error, NetTransport, ServerAddress, ServerId,
    Transport,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::measure::{Availability, AvailabilitySummary, FaultBag, Resources};
use crate::proxy::{Close, Direction, Faults, Link};

/// How long past its deadline a call may take to resolve before it counts as never resolved.
pub const GRACE: Duration = Duration::from_secs(10);

/// How often the soak samples its resources.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// The per-call deadline of the small calls.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// The per-call deadline of a snapshot (up to 1 MiB, possibly through a throttled link).
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(6);

/// What to run.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// How long to inject faults.
    pub duration: Duration,
    /// Fixes every random choice: the faults, their timing, the calls and their payloads.
    pub seed: u64,
    /// Print a progress line every few seconds.
    pub progress: bool,
}

/// Calls by kind and outcome, violations, faults, and resources.
#[derive(Debug, Clone, Default)]
pub struct SoakReport {
    /// The seed that replays the run.
    pub seed: u64,
    /// Per call kind: (answered correctly, failed with an error).
    pub calls: BTreeMap<&'static str, (u64, u64)>,
    /// Errors by kind (`Timeout`, `Io`, ...), all call kinds together.
    pub errors: BTreeMap<String, u64>,
    /// Every broken invariant, described.
    pub violations: Vec<String>,
    /// Calls that never resolved (also in `violations`).
    pub never_resolved: u64,
    /// Faults, throughput and recovery.
    pub availability: AvailabilitySummary,
    /// Descriptors, threads and memory after warm-up, with the traffic running.
    pub baseline: Resources,
    /// The same after the final heal, with the traffic stopped.
    pub after_heal: Resources,
    /// The same every [`SAMPLE_EVERY`] during the run (from its start), the baseline first:
    /// growth that goes on is a leak, a level it settles at is the allocator's.
    pub samples: Vec<(Duration, Resources)>,
    /// How long it ran.
    pub elapsed: Duration,
}

impl SoakReport {
    /// Successful calls, all kinds.
    pub fn ok(&self) -> u64 {
        self.calls.values().map(|c| c.0).sum()
    }

    /// Calls that ended in an error, all kinds.
    pub fn failed(&self) -> u64 {
        self.calls.values().map(|c| c.1).sum()
    }

    /// The report as a markdown table.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "| transport soak (seed {}) | |", self.seed);
        let _ = writeln!(out, "|---|---|");
        let _ = writeln!(
            out,
            "| calls | {} in {:.0} s: {} answered correctly, {} failed with an error, {} never resolved |",
            self.ok() + self.failed() + self.never_resolved,
            self.elapsed.as_secs_f64(),
            self.ok(),
            self.failed(),
            self.never_resolved
        );
        for (kind, (ok, failed)) in &self.calls {
            let _ = writeln!(out, "| {kind} | {ok} ok, {failed} failed |");
        }
        let errors: Vec<String> = self
            .errors
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(out, "| errors by kind | {} |", errors.join(", "));
        self.availability.write_rows(&mut out);
        let _ = writeln!(
            out,
            "| descriptors / threads / RSS: baseline → after the final heal | {} / {} / {} MiB → {} / {} / {} MiB |",
            self.baseline.descriptors,
            self.baseline.threads,
            self.baseline.rss_kib / 1024,
            self.after_heal.descriptors,
            self.after_heal.threads,
            self.after_heal.rss_kib / 1024
        );
        if self.samples.len() > 1 {
            // Eleven samples, evenly spread from the baseline to the end.
            let last = self.samples.len() - 1;
            let picked: Vec<String> = (0..=10)
                .map(|i| {
                    let (_, r) = self.samples[i * last / 10];
                    format!("{}/{}/{}", r.descriptors, r.threads, r.rss_kib / 1024)
                })
                .collect();
            let _ = writeln!(
                out,
                "| descriptors/threads/RSS MiB during the run, every tenth of it | {} |",
                picked.join(" → ")
            );
        }
        let _ = writeln!(out, "| violations | {} |", self.violations.len());
        for v in self.violations.iter().take(10) {
            let _ = writeln!(out, "| | {v} |");
        }
        out
    }
}

/// Shared by the workers.
struct Shared {
    transports: Vec<Arc<NetTransport>>,
    /// `links[from][to]`: where `from` dials `to` (None on the diagonal).
    links: Vec<Vec<Option<Link>>>,
    availability: Availability,
    stop: AtomicBool,
    next_id: AtomicU64,
    tally: Mutex<Tally>,
    /// Calls that failed with a deadline error, checked again later for a late answer.
    timed_out: Mutex<Vec<Call<TimeoutNowResponse>>>,
}

#[derive(Default)]
struct Tally {
    calls: BTreeMap<&'static str, (u64, u64)>,
    errors: BTreeMap<String, u64>,
    violations: Vec<String>,
    never_resolved: u64,
}

impl Shared {
    fn record(&self, kind: &'static str, result: Result<(), Error>) {
        let mut tally = self.tally.lock().unwrap();
        let entry = tally.calls.entry(kind).or_default();
        match result {
            Ok(()) => entry.0 += 1,
            Err(e) => {
                entry.1 += 1;
                let name = error_kind(&e);
                *tally.errors.entry(name.to_string()).or_default() += 1;
                if matches!(e, Error::Protocol(_) | Error::Encode(_)) {
                    tally
                        .violations
                        .push(format!("{kind}: {e} (the proxy never alters bytes)"));
                }
            }
        }
    }

    fn violation(&self, text: String) {
        self.tally.lock().unwrap().violations.push(text);
    }

    fn never(&self, kind: &str, id: u64) {
        let mut tally = self.tally.lock().unwrap();
        tally.never_resolved += 1;
        tally.violations.push(format!(
            "{kind} id {id}: not resolved within its deadline + {GRACE:?}"
        ));
    }

    fn id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}

fn error_kind(e: &Error) -> &'static str {
    match e {
        Error::Shutdown => "Shutdown",
        Error::PipelineClosed => "PipelineClosed",
        Error::PipelineNotSupported => "PipelineNotSupported",
        Error::Timeout => "Timeout",
        Error::Unreachable { .. } => "Unreachable",
        Error::Io(_) => "Io",
        Error::Protocol(_) => "Protocol",
        Error::Encode(_) => "Encode",
        Error::Remote(_) => "Remote",
        Error::Snapshot(_) => "Snapshot",
        Error::Config(_) => "Config",
        _ => "other",
    }
}

/// The payload checksum the serving side echoes in `last_log`: CRC-32 of every entry's data,
/// in order, with the entry count above it.
fn entries_checksum(entries: &[Log]) -> u64 {
    let mut crc = crc32fast::Hasher::new();
    for entry in entries {
        crc.update(entry.data.as_deref().unwrap_or_default());
    }
    ((entries.len() as u64) << 32) | crc.finalize() as u64
}

/// The serving side: answers every RPC from values of the request, so that the caller can tell
/// its own answer; reads each snapshot to its end on a thread of its own and answers whether
/// its bytes match the checksum and length the request declares (`configuration_index`).
fn serve(transport: &NetTransport) {
    let consumer = transport.consumer().clone();
    let _ = std::thread::Builder::new()
        .name("soak-serve".into())
        .spawn(move || {
            while let Ok(mut rpc) = consumer.recv() {
                let response: Response = match &rpc.request {
                    Request::AppendEntries(r) => AppendEntriesResponse {
                        term: r.term,
                        last_log: entries_checksum(&r.entries),
                        success: true,
                        ..Default::default()
                    }
                    .into(),
                    Request::RequestVote(r) => RequestVoteResponse {
                        term: r.term,
                        peers: r.candidate.clone(),
                        granted: true,
                        ..Default::default()
                    }
                    .into(),
                    Request::RequestPreVote(r) => RequestPreVoteResponse {
                        term: r.term,
                        granted: r.last_log_index.is_multiple_of(2),
                        ..Default::default()
                    }
                    .into(),
                    Request::TimeoutNow(_) => TimeoutNowResponse::default().into(),
                    Request::InstallSnapshot(r) => {
                        let (term, expected, size) = (r.term, r.configuration_index, r.size);
                        let mut body = rpc.snapshot.take().expect("a snapshot body");
                        let _ = std::thread::Builder::new()
                            .name("soak-snapshot".into())
                            .spawn(move || {
                                let mut crc = crc32fast::Hasher::new();
                                let mut buf = vec![0u8; 64 * 1024];
                                let mut read = 0i64;
                                loop {
                                    match body.read(&mut buf) {
                                        Ok(0) => break,
                                        Ok(n) => {
                                            crc.update(&buf[..n]);
                                            read += n as i64;
                                        }
                                        Err(e) => {
                                            rpc.respond_err(format!("snapshot body: {e}"));
                                            return;
                                        }
                                    }
                                }
                                let exact = read == size && crc.finalize() as u64 == expected;
                                rpc.respond_ok(InstallSnapshotResponse {
                                    term,
                                    success: exact,
                                    ..Default::default()
                                });
                            });
                        continue;
                    }
                };
                rpc.respond_ok(response);
            }
        });
}

/// Run the soak; the report says what held and what did not.
pub fn run(config: &SoakConfig) -> std::io::Result<SoakReport> {
    let started = Instant::now();
    let transport_config = Config::default()
        .timeout(Some(Duration::from_secs(5)))
        .max_pool(2);
    let mut transports = Vec::new();
    for _ in 0..3 {
        let t = NetTransport::bind("127.0.0.1:0", None, transport_config.clone())
            .map_err(std::io::Error::other)?;
        serve(&t);
        transports.push(Arc::new(t));
    }
    let mut links = Vec::new();
    for from in 0..3 {
        let mut row = Vec::new();
        for (to, target) in transports.iter().enumerate() {
            row.push(if from == to {
                None
            } else {
                Some(Link::start(
                    target.bound_addr(),
                    config.seed ^ ((from * 3 + to) as u64) << 32,
                )?)
            });
        }
        links.push(row);
    }
    let pairs: Vec<(usize, usize)> = (0..3)
        .flat_map(|a| (0..3).map(move |b| (a, b)))
        .filter(|(a, b)| a != b)
        .collect();
    // Two workers per ordered pair: mixed calls, and a pipeline.
    let workers = pairs.len() * 2;
    let shared = Arc::new(Shared {
        transports,
        links,
        availability: Availability::new(workers),
        stop: AtomicBool::new(false),
        next_id: AtomicU64::new(1),
        tally: Mutex::new(Tally::default()),
        timed_out: Mutex::new(Vec::new()),
    });

    let mut handles = Vec::new();
    for (n, &(from, to)) in pairs.iter().enumerate() {
        for pipeline in [false, true] {
            let worker = n * 2 + usize::from(pipeline);
            let shared = shared.clone();
            let seed = config.seed.wrapping_add(worker as u64 * 7919);
            handles.push(
                std::thread::Builder::new()
                    .name(format!("soak-worker-{worker}"))
                    .spawn(move || {
                        if pipeline {
                            pipeline_worker(&shared, worker, from, to, seed)
                        } else {
                            mixed_worker(&shared, worker, from, to, seed)
                        }
                    })?,
            );
        }
    }

    // Warm up fault-free, then take the baseline.
    std::thread::sleep(Duration::from_secs(2));
    let baseline = Resources::now();
    shared.availability.begin();

    let mut rng = ChaCha8Rng::seed_from_u64(config.seed);
    let mut bag = FaultBag::new(8);
    let end = Instant::now() + config.duration;
    let mut last_progress = Instant::now();
    let mut samples = vec![(started.elapsed(), baseline)];
    while Instant::now() < end {
        if samples
            .last()
            .is_some_and(|(at, _)| started.elapsed() - *at >= SAMPLE_EVERY)
        {
            samples.push((started.elapsed(), Resources::now()));
        }
        let kind = bag.draw(&mut rng);
        inject(&shared, kind, &mut rng, end);
        let healed = shared.availability.healed();
        shared
            .availability
            .wait_recovery(healed, true, Duration::from_secs(20), &shared.stop);
        std::thread::sleep(Duration::from_millis(rng.random_range(200..800)));
        check_late_answers(&shared);
        if config.progress && last_progress.elapsed() >= Duration::from_secs(5) {
            last_progress = Instant::now();
            let tally = shared.tally.lock().unwrap();
            let ok: u64 = tally.calls.values().map(|c| c.0).sum();
            let failed: u64 = tally.calls.values().map(|c| c.1).sum();
            let now = samples.last().map(|s| s.1).unwrap_or_default();
            eprintln!(
                "soak {:>4.0} s: {ok} calls answered, {failed} failed, {} faults, {} violations; {} descriptors, {} threads, RSS {} MiB",
                started.elapsed().as_secs_f64(),
                shared.availability.faults_so_far(),
                tally.violations.len(),
                now.descriptors,
                now.threads,
                now.rss_kib / 1024
            );
        }
    }

    // Heal, stop the traffic, let every call end, and look at the resources.
    for link in shared.links.iter().flatten().flatten() {
        link.heal();
    }
    shared.stop.store(true, Ordering::SeqCst);
    for handle in handles {
        let _ = handle.join();
    }
    check_late_answers(&shared);
    let settle = Instant::now() + Duration::from_secs(10);
    let mut after_heal = Resources::now();
    while Instant::now() < settle
        && (after_heal.descriptors > baseline.descriptors || after_heal.threads > baseline.threads)
    {
        std::thread::sleep(Duration::from_millis(200));
        after_heal = Resources::now();
    }
    // Generous bounds: pooled connections come and go with the traffic (each also costs the
    // proxy two descriptors and four threads), and the allocator keeps some memory it freed.
    if after_heal.descriptors > baseline.descriptors + 48
        || after_heal.threads > baseline.threads + 64
        || after_heal.rss_kib > baseline.rss_kib + 128 * 1024
    {
        shared.violation(format!(
            "resources grew: baseline {baseline:?}, after the final heal {after_heal:?}"
        ));
    }
    let availability = shared.availability.summary();
    for t in &shared.transports {
        t.close();
    }
    let tally = std::mem::take(&mut *shared.tally.lock().unwrap());
    Ok(SoakReport {
        seed: config.seed,
        calls: tally.calls,
        errors: tally.errors,
        violations: tally.violations,
        never_resolved: tally.never_resolved,
        availability,
        baseline,
        after_heal,
        samples,
        elapsed: started.elapsed(),
    })
}

/// One fault, held for a random while (or until `end`), then healed.
fn inject(shared: &Shared, kind: usize, rng: &mut ChaCha8Rng, end: Instant) {
    let links: Vec<&Link> = shared.links.iter().flatten().flatten().collect();
    let node = rng.random_range(0..3);
    // The links to and from one node.
    let of_node: Vec<&Link> = (0..3)
        .flat_map(|other| {
            [
                shared.links[node][other].as_ref(),
                shared.links[other][node].as_ref(),
            ]
        })
        .flatten()
        .collect();
    let one = links[rng.random_range(0..links.len())];
    let hold = Duration::from_millis(rng.random_range(300..2500));
    let kind = match kind {
        0 => {
            let faults = Faults {
                delay: Duration::from_millis(rng.random_range(5..150)),
                jitter: Duration::from_millis(rng.random_range(0..100)),
                ..Faults::none()
            };
            links.iter().for_each(|l| l.set_both(faults.clone()));
            "delay+jitter"
        }
        1 => {
            let faults = Faults {
                bandwidth: Some(rng.random_range(64 * 1024..4 << 20)),
                ..Faults::none()
            };
            links.iter().for_each(|l| l.set_both(faults.clone()));
            "bandwidth"
        }
        2 => {
            let faults = Faults {
                pieces: Some(rng.random_range(1..8)),
                ..Faults::none()
            };
            of_node.iter().for_each(|l| l.set_both(faults.clone()));
            "small pieces"
        }
        3 => {
            let faults = Faults {
                paused: true,
                ..Faults::none()
            };
            of_node.iter().for_each(|l| l.set_both(faults.clone()));
            "pause"
        }
        4 => {
            let faults = Faults {
                blackhole: true,
                ..Faults::none()
            };
            of_node.iter().for_each(|l| l.set_both(faults.clone()));
            "partition (blackhole)"
        }
        5 => {
            let direction = Direction::BOTH[rng.random_range(0..2)];
            one.update(direction, |f| f.blackhole = true);
            "one-way cut"
        }
        6 => {
            of_node.iter().for_each(|l| {
                l.drop_connections(Close::Fin);
            });
            "drop (FIN)"
        }
        _ => {
            of_node.iter().for_each(|l| {
                l.drop_connections(Close::Rst);
            });
            "drop (RST)"
        }
    };
    shared.availability.fault(kind);
    let until = (Instant::now() + hold).min(end);
    while Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    for link in links {
        link.heal();
    }
}

/// Wait for a call: within its deadline plus [`GRACE`], or it is counted as never resolved.
fn resolve<T>(
    shared: &Shared,
    kind: &'static str,
    id: u64,
    call: Call<T>,
    timeout: Duration,
) -> Option<Result<T, Error>> {
    match call.wait_deadline(Instant::now() + timeout + GRACE) {
        Ok(result) => Some(result),
        Err(_still_in_flight) => {
            shared.never(kind, id);
            None
        }
    }
}

fn mixed_worker(shared: &Shared, worker: usize, from: usize, to: usize, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let transport = &shared.transports[from];
    let target = ServerAddress::from(
        shared.links[from][to]
            .as_ref()
            .expect("a link between two nodes")
            .addr(),
    );
    let peer = ServerId::from(format!("node-{to}"));
    while !shared.stop.load(Ordering::Relaxed) {
        let id = shared.id();
        let started = shared.availability.now();
        let began = Instant::now();
        let (kind, outcome) = match rng.random_range(0..20) {
            0..=9 => {
                let entries: Vec<Log> = (0..rng.random_range(1..8))
                    .map(|i| {
                        let len = rng.random_range(0..16 * 1024);
                        let mut data = vec![0u8; len];
                        rng.fill(&mut data[..]);
                        Log::command(id * 8 + i, id, data)
                    })
                    .collect();
                let expected = entries_checksum(&entries);
                let request = AppendEntriesRequest {
                    term: id,
                    leader: Some(format!("node-{from}").into()),
                    prev_log_entry: id,
                    entries,
                    ..Default::default()
                };
                let call = transport.append_entries(
                    &peer,
                    &target,
                    request,
                    CallOptions::timeout(CALL_TIMEOUT),
                );
                let Some(result) = resolve(shared, "append", id, call, CALL_TIMEOUT) else {
                    continue;
                };
                (
                    "append",
                    result.map(|r| (r.term == id && r.last_log == expected && r.success, r.term)),
                )
            }
            10..=12 => {
                let request = RequestVoteRequest {
                    term: id,
                    candidate: Some(format!("c{id}").into()),
                    ..Default::default()
                };
                let call = transport.request_vote(
                    &peer,
                    &target,
                    request,
                    CallOptions::timeout(CALL_TIMEOUT),
                );
                let Some(result) = resolve(shared, "vote", id, call, CALL_TIMEOUT) else {
                    continue;
                };
                (
                    "vote",
                    result.map(|r| {
                        (
                            r.term == id && r.peers.as_deref() == Some(format!("c{id}").as_bytes()),
                            r.term,
                        )
                    }),
                )
            }
            13..=14 => {
                let request = RequestPreVoteRequest {
                    term: id,
                    last_log_index: id,
                    ..Default::default()
                };
                let call = transport.request_pre_vote(
                    &peer,
                    &target,
                    request,
                    CallOptions::timeout(CALL_TIMEOUT),
                );
                let Some(result) = resolve(shared, "pre-vote", id, call, CALL_TIMEOUT) else {
                    continue;
                };
                (
                    "pre-vote",
                    result.map(|r| (r.term == id && r.granted == id.is_multiple_of(2), r.term)),
                )
            }
            15..=17 => {
                // Polled, not waited: a deadline error is kept and looked at again later, to
                // see that no answer replaces it.
                let call = transport.timeout_now(
                    &peer,
                    &target,
                    TimeoutNowRequest::default(),
                    CallOptions::timeout(CALL_TIMEOUT),
                );
                let hard = Instant::now() + CALL_TIMEOUT + GRACE;
                let result = loop {
                    if let Some(result) = call.try_result() {
                        break Some(result);
                    }
                    if Instant::now() >= hard {
                        break None;
                    }
                    std::thread::sleep(Duration::from_millis(1));
                };
                let Some(result) = result else {
                    shared.never("timeout-now", id);
                    continue;
                };
                if matches!(result, Err(Error::Timeout)) {
                    shared.timed_out.lock().unwrap().push(call);
                }
                ("timeout-now", result.map(|_| (true, 0)))
            }
            _ => {
                let size = rng.random_range(1..1 << 20);
                let mut body = vec![0u8; size];
                rng.fill(&mut body[..]);
                let request = InstallSnapshotRequest {
                    term: id,
                    last_log_index: id,
                    configuration_index: crc32fast::hash(&body) as u64,
                    size: size as i64,
                    ..Default::default()
                };
                let call = transport.install_snapshot(
                    &peer,
                    &target,
                    request,
                    Box::new(std::io::Cursor::new(body)),
                    CallOptions::timeout(SNAPSHOT_TIMEOUT),
                );
                let Some(result) = resolve(shared, "snapshot", id, call, SNAPSHOT_TIMEOUT) else {
                    continue;
                };
                (
                    "snapshot",
                    result.map(|r| (r.term == id && r.success, r.term)),
                )
            }
        };
        match outcome {
            Ok((true, _)) => {
                shared.availability.ok(worker, started);
                shared.record(kind, Ok(()));
            }
            Ok((false, term)) => {
                shared.record(kind, Ok(()));
                shared.violation(format!(
                    "{kind} id {id} ({from}→{to}): answered with someone else's or a wrong answer (term {term})"
                ));
            }
            Err(e) => {
                let timeout = if kind == "snapshot" {
                    SNAPSHOT_TIMEOUT
                } else {
                    CALL_TIMEOUT
                };
                if matches!(e, Error::Timeout) && began.elapsed() < timeout / 2 {
                    shared.violation(format!(
                        "{kind} id {id}: deadline error after {:?}, before half its deadline {timeout:?}",
                        began.elapsed()
                    ));
                }
                shared.record(kind, Err(e));
                // A failed call: the next one need not come at once (the link may be down).
                std::thread::sleep(Duration::from_millis(rng.random_range(1..20)));
            }
        }
    }
}

fn pipeline_worker(shared: &Shared, worker: usize, from: usize, to: usize, seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let transport = &shared.transports[from];
    let target = ServerAddress::from(
        shared.links[from][to]
            .as_ref()
            .expect("a link between two nodes")
            .addr(),
    );
    let peer = ServerId::from(format!("node-{to}"));
    let mut pipeline: Option<AppendPipeline> = None;
    while !shared.stop.load(Ordering::Relaxed) {
        let p = match &pipeline {
            Some(p) => p,
            None => match transport.append_entries_pipeline(&peer, &target) {
                Ok(p) => pipeline.insert(p),
                Err(e) => {
                    shared.record("pipelined append", Err(e));
                    std::thread::sleep(Duration::from_millis(20));
                    continue;
                }
            },
        };
        // A batch in flight at once, then its answers, in order.
        let batch = rng.random_range(1..16);
        let mut sent = Vec::new();
        let started = shared.availability.now();
        for _ in 0..batch {
            let id = shared.id();
            let len = rng.random_range(0..4096);
            let mut data = vec![0u8; len];
            rng.fill(&mut data[..]);
            let entries = vec![Log::command(id, id, data)];
            let expected = entries_checksum(&entries);
            let request = AppendEntriesRequest {
                term: id,
                leader: Some(format!("node-{from}").into()),
                prev_log_entry: id,
                entries,
                ..Default::default()
            };
            match p.send(request) {
                Ok(future) => sent.push((id, expected, future)),
                Err(e) => {
                    shared.record("pipelined append", Err(e));
                    break;
                }
            }
        }
        let mut broken = sent.len() < batch;
        let mut closed = false;
        for (id, expected, future) in sent {
            let deadline = Instant::now() + Duration::from_secs(5) + GRACE;
            // The pipeline hands every future back, in send order, until it closes.
            if !closed {
                match p.recv_deadline(deadline) {
                    Ok(Some(done)) if done.request().term == id => {}
                    Ok(Some(done)) => shared.violation(format!(
                        "pipelined append ({from}→{to}): recv handed back {} where {id} was next",
                        done.request().term
                    )),
                    Ok(None) => shared.violation(format!(
                        "pipelined append id {id}: not handed back by recv within its deadline + {GRACE:?}"
                    )),
                    Err(_) => closed = true,
                }
            }
            let result = match future.wait_deadline(deadline) {
                Ok(result) => result,
                Err(_) => {
                    shared.never("pipelined append", id);
                    broken = true;
                    continue;
                }
            };
            match result {
                Ok(r) if r.term == id && r.last_log == expected && r.success => {
                    shared.availability.ok(worker, started);
                    shared.record("pipelined append", Ok(()));
                }
                Ok(r) => {
                    shared.record("pipelined append", Ok(()));
                    shared.violation(format!(
                        "pipelined append id {id} ({from}→{to}): answer for term {}, checksum {:x} not {expected:x}",
                        r.term, r.last_log
                    ));
                }
                Err(e) => {
                    shared.record("pipelined append", Err(e));
                    broken = true;
                }
            }
        }
        if broken {
            if let Some(p) = pipeline.take() {
                p.close();
            }
            std::thread::sleep(Duration::from_millis(rng.random_range(1..20)));
        }
    }
}

/// A call that failed with a deadline error must keep that result: an answer arriving later
/// must not replace it.
fn check_late_answers(shared: &Shared) {
    let calls = std::mem::take(&mut *shared.timed_out.lock().unwrap());
    for call in calls {
        match call.try_result() {
            Some(Err(Error::Timeout)) => {}
            other => shared.violation(format!(
                "a TimeoutNow that failed with a deadline error now reads {other:?}"
            )),
        }
    }
}
