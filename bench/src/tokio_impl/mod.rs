//! The tokio baseline: the scenarios on tokio + rmp-serde frames, written as a tokio expert
//! would write each (BENCHMARKS.md, "Transport comparison (raftnet-bench)" and "The tokio
//! baseline's variants and the benchmark store"). The network (frames, connections, the client,
//! the server and the messages) is `crate::tokio_net`; this module sets up the runtimes and
//! drives the scenarios over it.
//!
//! - Two designs ([`Design`]): `direct`, one task owns a connection and does everything in
//!   place (the server answers every request in its connection task, a sequential caller or a
//!   pipeline owns its connection; reads take all that is ready, one `write_all` per batch), and
//!   `tasks`, the older baseline (reader and writer tasks per connection end, callers
//!   multiplexed by id, votes and appends answered by a consumer task). Each design runs on a
//!   runtime [`Flavor`]; a design on a flavour is a variant ([`TokioImpl::variants`]), and the
//!   harness runs them all and reports tokio's best per scenario, naming it, so every ratio is
//!   against tokio's best variant rather than one fixed design.
//!
//! - Each node (server, client) has its own runtime, as two Raft processes would; the server's
//!   is built inside [`pin::as_server`], the client's inside [`pin::as_client`], and every
//!   caller runs as a task on the client runtime. The runtime's flavour is the one measured
//!   best for the placement ([`Flavor::best_for`]; `--tokio-runtime` picks another): a
//!   baseline held to a flavour that suits it badly (it used to be 2 workers per node even
//!   with every thread on one CPU) would flatter raftnet.
//! - The callers: one request after another (`sequential`), a fixed number in flight on the
//!   connection (`pipelined`), one snapshot transfer after another (`snapshots`), and for
//!   `fan-in-1000` a task per connection with a stream of its own (`fan_in_connection`).
//! - `heartbeat-under-load` sends its heartbeats on a connection of their own, the load on
//!   another: raftnet keeps heartbeats in a lane of their own (a pooled connection per lane),
//!   and a tokio user who cares about heartbeat latency would do the same; comparing lanes with
//!   one shared connection measured head-of-line blocking, not the transports.
//!
//! Files: this one sets up the runtimes, nodes and variants; `direct.rs` and `tasks.rs` hold each
//! design's callers; `checks.rs` tests that the answer and snapshot checks catch what they are for.

#[cfg(test)]
mod checks;
mod direct;
mod tasks;

use std::sync::Arc;

use tokio::runtime::Runtime;
use tokio::sync::oneshot;

use crate::check::{Answer, Findings};
use crate::pin::{self, Placement};
use crate::scenario::{Control, FAN_IN_CONNECTIONS, Implementation, Sample, Scenario};
use crate::tokio_net::Message;
use crate::tokio_net::server::{Routing, Serving, start_server, start_serving};

use self::direct::drive_direct;
use self::tasks::drive;

/// The tokio baseline in one [`Design`], its node runtimes of `flavor` (`None`:
/// [`Flavor::best_for`] the placement of the run). The default is the direct design on the
/// flavour best for the placement, named `tokio`; the harness runs every [`TokioImpl::variants`]
/// and reports the best per scenario.
#[derive(Debug, Default, Clone, Copy)]
pub struct TokioImpl {
    /// The runtime flavour, if fixed (`--tokio-runtime`).
    pub flavor: Option<Flavor>,
    /// How connections are served and called.
    pub design: Design,
    /// The name of its rows (`tokio`, or a variant's, `tokio:direct/current`).
    pub label: Option<&'static str>,
    /// A variant that runs the cluster scenarios (one per invocation: the cluster's tokio
    /// network is its own, `crate::cluster`, whatever the variant).
    pub runs_cluster: bool,
    /// Its connections are mutual TLS (tokio-rustls, `--tls`'s certificates,
    /// [`crate::tls::pki`]); the direct design only. Its name ends in `+tls`.
    pub tls: bool,
}

/// How the tokio baseline's connections are written: the two designs a tokio user picks from.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub enum Design {
    /// One task owns each connection and does everything in place (`crate::tokio_net::direct`):
    /// the server answers every request in its connection task, the callers of the sequential
    /// and pipelined scenarios own their connection; reads drain what is ready, writes are one
    /// `write_all` of every frame queued once nothing more is ready.
    #[default]
    Direct,
    /// A reader task and a writer task per connection end with an mpsc channel to the writer
    /// (batched vectored writes), callers multiplexed by id, and votes and appends answered by
    /// a consumer task standing for the Raft loop (`crate::tokio_net::server`): the baseline
    /// before the direct design, kept as a variant.
    Tasks,
}

impl Design {
    /// The name in variant names and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Design::Direct => "direct",
            Design::Tasks => "tasks",
        }
    }

    /// The design called `name`.
    pub fn from_name(name: &str) -> Option<Design> {
        [Design::Direct, Design::Tasks]
            .into_iter()
            .find(|d| d.name() == name)
    }
}

impl TokioImpl {
    /// The variant of `design` on `flavor`, named `tokio:DESIGN/FLAVOR`; with `--tls`
    /// ([`crate::tls::pki`] set), the direct design's over mutual TLS, named
    /// `tokio:direct/FLAVOR+tls`.
    pub fn variant(design: Design, flavor: Flavor) -> TokioImpl {
        let tls = design == Design::Direct && crate::tls::pki().is_some();
        let label = match (design, flavor) {
            (Design::Direct, Flavor::CurrentThread) if tls => "tokio:direct/current+tls",
            (Design::Direct, Flavor::MultiThread(1)) if tls => "tokio:direct/multi1+tls",
            (Design::Direct, Flavor::MultiThread(_)) if tls => "tokio:direct/multi2+tls",
            (Design::Direct, Flavor::CurrentThread) => "tokio:direct/current",
            (Design::Direct, Flavor::MultiThread(1)) => "tokio:direct/multi1",
            (Design::Direct, Flavor::MultiThread(_)) => "tokio:direct/multi2",
            (Design::Tasks, Flavor::CurrentThread) => "tokio:tasks/current",
            (Design::Tasks, Flavor::MultiThread(1)) => "tokio:tasks/multi1",
            (Design::Tasks, Flavor::MultiThread(_)) => "tokio:tasks/multi2",
        };
        TokioImpl {
            flavor: Some(flavor),
            design,
            label: Some(label),
            runs_cluster: false,
            tls,
        }
    }

    /// The variants the harness tries for each scenario, to report tokio's best: the direct
    /// design on a current-thread runtime and on one worker, the task design on the flavour it
    /// measured best for `placement` (`Flavor::best_for`), and, for heartbeat-under-load, the
    /// direct design on two workers (a heartbeat need not wait behind the load's task). With
    /// `flavor` fixed (`--tokio-runtime`), each design on it; with `design` fixed, its variants.
    /// With `--tls`, the direct design's only (the `tasks` design has no TLS).
    pub fn variants(
        placement: Placement,
        flavor: Option<Flavor>,
        design: Option<Design>,
    ) -> Vec<TokioImpl> {
        let mut all = match flavor {
            Some(f) => vec![
                TokioImpl::variant(Design::Direct, f),
                TokioImpl::variant(Design::Tasks, f),
            ],
            None => vec![
                TokioImpl::variant(Design::Direct, Flavor::CurrentThread),
                TokioImpl::variant(Design::Direct, Flavor::MultiThread(1)),
                TokioImpl::variant(Design::Direct, Flavor::MultiThread(2)),
                TokioImpl::variant(Design::Tasks, Flavor::best_for(placement)),
            ],
        };
        all.retain(|v| design.is_none_or(|d| d == v.design));
        if crate::tls::pki().is_some() {
            all.retain(|v| v.tls);
        }
        if let Some(first) = all.first_mut() {
            first.runs_cluster = true;
        }
        all
    }

    /// The variant's design and runtime, as in its name (`direct/current`).
    pub fn describe(&self) -> String {
        let flavor = self
            .flavor
            .unwrap_or_else(|| Flavor::best_for(pin::placement()));
        let tls = if self.tls { "+tls" } else { "" };
        format!("{}/{}{tls}", self.design.name(), flavor.name())
    }
}

/// How each node's runtime is built.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `new_current_thread`: one thread runs the node's tasks and its I/O driver (the server's
    /// is a thread of its own; the client's is the thread that drives the scenario).
    CurrentThread,
    /// `new_multi_thread` with this many workers.
    MultiThread(usize),
}

impl Flavor {
    /// Every flavour `--tokio-runtime` offers.
    pub const ALL: [Flavor; 3] = [
        Flavor::CurrentThread,
        Flavor::MultiThread(1),
        Flavor::MultiThread(2),
    ];

    /// The name on the command line and in the output.
    pub fn name(self) -> &'static str {
        match self {
            Flavor::CurrentThread => "current",
            Flavor::MultiThread(1) => "multi1",
            Flavor::MultiThread(2) => "multi2",
            Flavor::MultiThread(_) => "multi",
        }
    }

    /// The flavour called `name`.
    pub fn from_name(name: &str) -> Option<Flavor> {
        Flavor::ALL.into_iter().find(|f| f.name() == name)
    }

    /// The flavour the tokio side measured best under `placement`, when `--tokio-runtime`
    /// does not say. Rule: the highest geometric mean, over the eight throughput scenarios,
    /// of ops/s as a fraction of the best flavour's (every scenario but heartbeat-under-load,
    /// whose goal is raftnet's p99 against its own idle p99, not against tokio). Measured with
    /// short runs (`--impl tokio --tokio-runtime F --pin P --seconds 0.3 --rounds 1 --no-raw`,
    /// medians of 6 repetitions for `same` and `split`, 3 for `none`, machine idle);
    /// BENCHMARKS.md, "The tokio baseline's runtime flavour", has the table:
    ///
    /// | placement | current | multi1 | multi2 | chosen |
    /// |---|---:|---:|---:|---|
    /// | same  | 0.966 | 0.948 | 0.875 | current |
    /// | split | 0.933 | 0.953 | 0.692 | multi1 (current is within 2 %) |
    /// | none  | 0.962 | 0.945 | 0.723 | current |
    ///
    /// Two workers per node lose most on the pipelined scenarios (their tasks hop between
    /// workers), but keep heartbeat-under-load's p99 2.8-5.7x lower than a current-thread
    /// runtime does (a heartbeat's task need not wait behind the load's on the one thread);
    /// that row is worth reading with `--tokio-runtime multi2` as well.
    pub fn best_for(placement: Placement) -> Flavor {
        match placement {
            Placement::Same | Placement::None => Flavor::CurrentThread,
            Placement::Split => Flavor::MultiThread(1),
        }
    }
}

/// A node's runtime. A current-thread runtime only runs while a thread drives it
/// (`block_on`); a node whose runtime must serve on its own (the server) gets a thread that
/// does, until the node is dropped.
struct Node {
    runtime: Arc<Runtime>,
    driver: Option<(oneshot::Sender<()>, std::thread::JoinHandle<()>)>,
    name: &'static str,
}

impl Node {
    /// Build the runtime (a multi-thread runtime starts its workers here, placed like the
    /// calling thread).
    fn new(name: &'static str, flavor: Flavor) -> Result<Node, String> {
        let mut builder = match flavor {
            Flavor::CurrentThread => tokio::runtime::Builder::new_current_thread(),
            Flavor::MultiThread(workers) => {
                let mut b = tokio::runtime::Builder::new_multi_thread();
                b.worker_threads(workers);
                b
            }
        };
        let runtime = builder
            .thread_name(name)
            .enable_all()
            .build()
            .map_err(|e| format!("build the {name} runtime: {e}"))?;
        Ok(Node {
            runtime: Arc::new(runtime),
            driver: None,
            name,
        })
    }

    /// From now on the runtime runs without a caller in `block_on`: a current-thread runtime
    /// gets a thread of its own (placed like the calling thread); a multi-thread one has its
    /// workers already.
    fn serve_in_background(&mut self) -> Result<(), String> {
        let current_thread = matches!(
            self.runtime.handle().runtime_flavor(),
            tokio::runtime::RuntimeFlavor::CurrentThread
        );
        if !current_thread || self.driver.is_some() {
            return Ok(());
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let runtime = self.runtime.clone();
        let thread = std::thread::Builder::new()
            .name(self.name.into())
            .spawn(move || {
                let _ = runtime.block_on(stopped);
            })
            .map_err(|e| format!("spawn the {} thread: {e}", self.name))?;
        self.driver = Some((stop, thread));
        Ok(())
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some((stop, thread)) = self.driver.take() {
            let _ = stop.send(());
            let _ = thread.join();
        }
    }
}

/// The fields of an answer that the checks compare (`crate::check`, as on raftnet's side).
pub(crate) fn answer_of(response: &Message) -> Answer {
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
async fn join(handle: tokio::task::JoinHandle<Result<Sample, String>>) -> Result<Sample, String> {
    handle.await.map_err(|e| format!("task failed: {e}"))?
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
        self.label.unwrap_or("tokio")
    }

    /// A variant runs the cluster scenarios if it is the one marked to; the direct design on
    /// two workers only runs heartbeat-under-load (elsewhere two workers per node lose to one:
    /// BENCHMARKS.md, "The tokio baseline's runtime flavour").
    fn runs(&self, scenario: Scenario) -> bool {
        let Some(label) = self.label else {
            return true;
        };
        if scenario.cluster_clients().is_some() {
            // The cluster's tokio network has no TLS: a `+tls` row of it would be plaintext.
            return self.runs_cluster && !self.tls;
        }
        !label.starts_with("tokio:direct/multi2") || scenario == Scenario::HeartbeatUnderLoad
    }

    fn run(&self, scenario: Scenario, control: &Control) -> Result<Sample, String> {
        if let (Some(clients), Some(store)) = (scenario.cluster_clients(), scenario.cluster_store())
        {
            return crate::cluster::run(crate::cluster::Network::Tokio, store, clients, control);
        }
        if scenario == Scenario::FanIn1000 {
            check_fd_limit()?;
        }

        let flavor = self
            .flavor
            .unwrap_or_else(|| Flavor::best_for(pin::placement()));
        let mut server = pin::as_server(|| Node::new("tokio-server", flavor))?;
        if self.design == Design::Direct {
            let (acceptor, connector) = match (self.tls, crate::tls::pki()) {
                (false, _) => (None, None),
                (true, Some(pki)) => (Some(pki.acceptor()?), Some(pki.connector(pki)?)),
                (true, None) => return Err("a TLS variant without --tls's certificates".into()),
            };
            let findings = Findings::new();
            let addr = server
                .runtime
                .block_on(start_serving(Serving::Direct(acceptor), findings.clone()))?;
            pin::as_server(|| server.serve_in_background())?;
            let client = pin::as_client(|| Node::new("tokio-client", flavor))?;
            let runtime = &client.runtime;
            let driver = drive_direct(scenario, addr, connector, control.clone());
            let result = runtime.block_on(join(runtime.spawn(driver)));
            drop(client);
            drop(server);
            return findings.explain(result);
        }
        if self.tls {
            return Err("the tasks design has no TLS".into());
        }
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
            Some(heartbeat_fast_path) => {
                Routing::through_consumer(server.runtime.handle(), heartbeat_fast_path)
            }
        };
        let findings = Findings::new();
        let addr = server
            .runtime
            .block_on(start_server(routing, findings.clone()))?;
        pin::as_server(|| server.serve_in_background())?;

        let client = pin::as_client(|| Node::new("tokio-client", flavor))?;
        // The callers run on the client's workers, or, on a current-thread runtime, on this
        // thread (placed as a client thread), which drives it. They must be `'static`, so they
        // get a clone of `control` (it shares the harness's phase).
        let runtime = &client.runtime;
        let result = runtime.block_on(join(runtime.spawn(drive(scenario, addr, control.clone()))));
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
    /// [`runtime_threads`] once it reaches 0, or after 5 s what it still is: a runtime's
    /// shutdown returns when its threads said they are done, and one may still be exiting
    /// (tokio joins only the last), so a count read at once can be 1 for a moment.
    fn runtime_threads_left() -> usize {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let left = runtime_threads();
            if left == 0 || std::time::Instant::now() >= deadline {
                return left;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

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

    /// The smoke test of the tokio side: every scenario on every runtime flavour (the cluster
    /// scenarios, whose runtimes are the cluster's, once), warm-up 100 ms, measured 200 ms (or
    /// `TOKIO_SMOKE_MS`), then stop; each must complete operations and shut down, leaving no
    /// runtime thread behind. Run with `--release -- --nocapture` for rough ops/s
    /// (`RAFTNET_BENCH_PIN=same|split` to place, `TOKIO_SMOKE_ONLY=<scenario>` for one
    /// scenario, `TOKIO_SMOKE_FLAVOR=current|multi1|multi2` for one flavour).
    #[test]
    fn every_scenario_completes_operations() {
        let _load = crate::measure::test_lock::loading();
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
        let flavors: Vec<Flavor> = match std::env::var("TOKIO_SMOKE_FLAVOR") {
            Ok(name) => vec![Flavor::from_name(&name).expect("a flavour name")],
            Err(_) => Flavor::ALL.to_vec(),
        };
        let variants = flavors
            .iter()
            .flat_map(|&f| [Design::Direct, Design::Tasks].map(|d| TokioImpl::variant(d, f)));
        for (i, imp) in variants.enumerate() {
            for scenario in Scenario::ALL {
                if only.as_deref().is_some_and(|o| o != scenario.name())
                    || (i > 0 && scenario.cluster_clients().is_some())
                {
                    continue;
                }
                smoke(imp, scenario, measure_ms);
            }
        }
    }

    fn smoke(imp: TokioImpl, scenario: Scenario, measure_ms: u64) {
        let name = format!("{} {}", imp.describe(), scenario.name());
        // The windows widen when a run completes nothing (a loaded machine can outlast a short
        // warm-up setting up); nothing in the widest window fails.
        let first = (
            Duration::from_millis(100),
            Duration::from_millis(measure_ms),
        );
        let mut windows = std::iter::once(first)
            .chain(crate::scenario::SMOKE_WINDOWS[1..].iter().copied())
            .peekable();
        let (sample, window) = loop {
            let (warmup, window) = windows.next().expect("at least one window");
            let control = Control::new();
            let result = std::thread::scope(|s| {
                s.spawn(|| {
                    std::thread::sleep(warmup);
                    control.start_measuring();
                    std::thread::sleep(window);
                    control.stop();
                });
                imp.run(scenario, &control)
            });
            let sample = result.unwrap_or_else(|e| panic!("{name}: {e}"));
            if sample.ops == 0 && windows.peek().is_some() {
                assert_eq!(runtime_threads_left(), 0, "{name}: runtime threads left");
                eprintln!("{name}: nothing completed in {window:?}; widening");
                continue;
            }
            break (sample, window);
        };
        assert_eq!(runtime_threads_left(), 0, "{name}: runtime threads left");
        assert!(sample.ops > 0, "{name}: no operation completed");
        assert_eq!(sample.ops as usize, sample.latencies_ns.len());
        let mut latencies = sample.latencies_ns.clone();
        latencies.sort_unstable();
        let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize] as f64 / 1e3;
        let secs = window.as_secs_f64();
        println!(
            "tokio {:<31} {:>10.0} ops/s  p50 {:>9.1} µs  p99 {:>9.1} µs  {:>7.2} GB/s",
            name,
            sample.ops as f64 / secs,
            at(0.5),
            at(0.99),
            sample.payload_bytes as f64 / secs / 1e9,
        );
    }
}
