//! The command line: `--help`'s text ([`USAGE`]) and [`parse_args`], which turns the arguments
//! into the [`Options`] of an invocation (defaults filled in, scenarios in the table's order).

use std::path::PathBuf;
use std::time::Duration;

use raftnet_bench::cluster;
use raftnet_bench::pin::Placement;
use raftnet_bench::raftnet_impl::{MAX_IDLE_CONNECTIONS, Serve};
use raftnet_bench::scenario::Scenario;
use raftnet_bench::tokio_impl::{Design, Flavor};

pub(crate) const USAGE: &str = "\
usage: raftnet-bench [OPTIONS]

Runs each scenario against raftnet and the tokio baseline in one process, interleaved
(scenario by scenario: raftnet, then tokio), plus raw loopback references, and prints
ops/s, payload MB/s, latency p50/p99/p999, CPU µs per op (getrusage user+sys of the
whole process, so both ends), context switches per op, and raftnet/tokio ratios.
Every answer is checked on both sides alike (term, success or granted, last_log where the
scenario fixes them; snapshot bodies byte by byte and their length on the receiving side):
a wrong one ends the run with an error row.

columns:
  switch/op             context switches per op of every thread of the process, exited
                        ones included (getrusage RUSAGE_SELF): (vol+invol) = voluntary
                        (blocked and woken: wake-ups) + involuntary (preempted, or
                        yielded while runnable: spin-then-yield hand-offs). JSON:
                        switches_per_op, wakeups_per_op (voluntary),
                        involuntary_switches_per_op
  calls/op              raftnet only: system calls its drivers made per op, both ends,
                        as the transports count them (Metrics::system_calls: waits,
                        reads, writes, io_uring_enter, yields in the spin; not the
                        callers' own). JSON: driver_system_calls_per_op

options:
  --scenario NAME|all   a scenario, a comma-separated list, or all (default: all)
  --impl LIST           which implementations, comma-separated (default: both):
                          raftnet        raftnet, both ends, its native format
                          tokio          the tokio baseline (its variants, see below)
                          raftnet-hc     raftnet, both ends, hashicorp/raft's format
                          go             hashicorp/raft's NetworkTransport (Go 1.1.2):
                                         Go client to Go server, one process
                          go-2proc       the same in two processes (as the rows
                                         with raftnet below are)
                          raftnet-to-go  raftnet's client (hashicorp format) to a Go server
                          go-to-raftnet  a Go client to raftnet's server (hashicorp format)
                          both = raftnet,tokio; go-all = raftnet-hc,go,go-2proc,
                          raftnet-to-go,go-to-raftnet; all = every one
                        The Go rows build interop/hashicorp-bench with go (GOPATH mode,
                        Debian's golang-github-hashicorp-raft-dev) and run the RPC
                        scenarios a transport has (n/a on the others); CPU µs/op adds the
                        Go process's own getrusage over the window. Without Go they are
                        skipped, saying why.
  --seconds S           measured window per run (default: 2.5)
  --warmup S            warm-up before each window (default: max(0.3, 15% of --seconds))
  --rounds N            repeat the interleaved sequence N times, report medians (default: 1)
  --backend epoll|uring what raftnet's transports wait on (default: epoll; uring needs
                        Linux 5.11+ and fails the run where io_uring cannot run)
  --pin same|split|none thread placement (default: same = every thread on CPU 0;
                        split = server threads on CPU 1, client threads on CPU 0)
  --store memstore|bench|both
                        the openraft store of the cluster scenarios that run (default:
                        both): memstore = openraft-memstore (cluster-N rows), bench = the
                        benchmark store, log entries kept without JSON (cluster-bench-N)
  --reactor task|thread where raftnet's reactor runs in the cluster-N scenarios (default:
                        task = a task on each node's runtime, NetTransport::bind_on;
                        thread = a thread of its own, NetTransport::bind)
  --tokio-runtime auto|current|multi1|multi2
                        the tokio baseline's runtime per node in the RPC scenarios
                        (default: auto = the flavour measured best for the placement:
                        see BENCHMARKS.md; current = new_current_thread, its server
                        on a thread of its own; multiN = new_multi_thread, N workers)
  --idle-connections N  idle TCP connections held open to raftnet's calling transport in
                        the plaintext RPC scenarios (default: 0, at most 1000): its driver
                        accepts them, so its epoll set holds N more sockets, as the set of
                        a node with N peers does (tokio's client has no listener and gets
                        none)
  --raftnet-serve service|consumer
                        how raftnet's server answers in the RPC scenarios (default:
                        service = a raftnet::Service answers on the transport's own
                        thread, as tokio's server answers in its connection task;
                        consumer = a Raft-loop thread takes RPCs in batches from the
                        Consumer; snapshots always go to the consumer)
  --tokio-design best|direct|tasks
                        the tokio baseline's design (default: best = run every variant
                        below and show, per scenario, the best as the tokio row, named in
                        it; JSON has every variant's line too). direct = one task per
                        connection answers in place, reads what is ready, writes once;
                        tasks = reader and writer tasks per connection, votes and appends
                        answered by a consumer task. Variants: direct on current, multi1
                        (and multi2 for heartbeat-under-load), tasks on the flavour above
  --tls                 the RPC scenarios over mutual TLS (rustls, ring; a CA and node
                        certificate made at start): raftnet's, and the tokio baseline's
                        direct design (tokio-rustls, variants named +tls; the tasks design
                        is left out); the cluster scenarios stay plaintext, tokio's not run
  --json                one JSON object per line and implementation instead of the table
  --svg PATH            where to write the SVG chart (default: target/raftnet-bench.svg)
  --no-svg              write no chart
  --no-raw              skip the raw loopback references (otherwise run first in every
                        round and reported as medians like the scenarios: 1 MiB bulk
                        writes and a 64 B blocking ping-pong)
  -h, --help            this text

scenarios: heartbeat-seq heartbeat-pipelined append-100b-seq append-64x1k-pipelined
           append-1m-pipelined vote-seq snapshot-64m heartbeat-under-load fan-in-1000
           handshake-seq (a new connection per heartbeat: with --tls, handshakes/s)
           cluster-1 cluster-16 cluster-64 cluster-bench-1 cluster-bench-16
           cluster-bench-64 (or: cluster = all six; --store narrows them)
(heartbeat-under-load is compared with heartbeat-seq's idle p99; heartbeat-seq is added
 to the run when it is not selected.)
cluster-N: a 3-node openraft 0.9.25 cluster (openraft-memstore; cluster-bench-N: the
benchmark store) in this process over each implementation's network, N client tasks calling client_write on the leader: ops/s are
committed writes/s, latency is commit latency, CPU µs/op is CPU per write (all three nodes).
After each cluster run, every node must hold every client's last acknowledged write.
";

/// How long a run may take to return its sample after `stop()`.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// An implementation `--impl` can select (the table's rows are named alike).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ImplChoice {
    Raftnet,
    Tokio,
    RaftnetHashicorp,
    Go,
    GoTwoProcesses,
    RaftnetToGo,
    GoToRaftnet,
}

impl ImplChoice {
    /// Every implementation, in the order they run and show.
    pub(crate) const ALL: [ImplChoice; 7] = [
        ImplChoice::Raftnet,
        ImplChoice::Tokio,
        ImplChoice::RaftnetHashicorp,
        ImplChoice::Go,
        ImplChoice::GoTwoProcesses,
        ImplChoice::RaftnetToGo,
        ImplChoice::GoToRaftnet,
    ];

    /// What `--impl` calls them, and the table.
    pub(crate) fn name(self) -> &'static str {
        match self {
            ImplChoice::Raftnet => "raftnet",
            ImplChoice::Tokio => "tokio",
            ImplChoice::RaftnetHashicorp => "raftnet-hc",
            ImplChoice::Go => "go",
            ImplChoice::GoTwoProcesses => "go-2proc",
            ImplChoice::RaftnetToGo => "raftnet-to-go",
            ImplChoice::GoToRaftnet => "go-to-raftnet",
        }
    }

    /// The implementations `--impl`'s word `name` means.
    fn from_name(name: &str) -> Option<Vec<ImplChoice>> {
        use ImplChoice::*;
        match name {
            "both" => Some(vec![Raftnet, Tokio]),
            "go-all" => Some(vec![
                RaftnetHashicorp,
                Go,
                GoTwoProcesses,
                RaftnetToGo,
                GoToRaftnet,
            ]),
            "all" => Some(ImplChoice::ALL.to_vec()),
            _ => ImplChoice::ALL
                .into_iter()
                .find(|i| i.name() == name)
                .map(|i| vec![i]),
        }
    }
}

/// What an invocation runs, and how it reports.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) scenarios: Vec<Scenario>,
    /// In [`ImplChoice::ALL`]'s order, each once.
    pub(crate) impls: Vec<ImplChoice>,
    pub(crate) seconds: f64,
    pub(crate) warmup: f64,
    pub(crate) rounds: usize,
    pub(crate) placement: Placement,
    pub(crate) reactor: cluster::Reactor,
    /// The tokio baseline's runtime flavour; `None`: the best measured for the placement.
    pub(crate) tokio_runtime: Option<Flavor>,
    /// How raftnet's server answers.
    pub(crate) raftnet_serve: Serve,
    /// Idle connections held open to raftnet's calling transport.
    pub(crate) idle_connections: usize,
    /// The tokio baseline's design; `None`: every variant, the best shown per scenario.
    pub(crate) tokio_design: Option<Design>,
    /// The RPC scenarios over mutual TLS, raftnet's and the tokio baseline's direct design.
    pub(crate) tls: bool,
    pub(crate) json: bool,
    pub(crate) svg: Option<PathBuf>,
    pub(crate) raw: bool,
    /// How long a run may take to return after stop ([`STOP_TIMEOUT`]; shorter in tests).
    pub(crate) stop_timeout: Duration,
}

/// What the command line asks for.
#[derive(Debug)]
pub(crate) enum Parsed {
    Run(Options),
    Help,
}

fn parse_seconds(flag: &str, v: &str, allow_zero: bool) -> Result<f64, String> {
    let s: f64 = v
        .parse()
        .map_err(|_| format!("{flag}: not a number: {v}"))?;
    if !s.is_finite() || s < 0.0 || (!allow_zero && s == 0.0) || s > 3600.0 {
        return Err(format!("{flag}: out of range: {v}"));
    }
    Ok(s)
}

pub(crate) fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut scenarios: Option<Vec<Scenario>> = None;
    let mut impls = vec![ImplChoice::Raftnet, ImplChoice::Tokio];
    let mut seconds = 2.5;
    let mut warmup = None;
    let mut rounds = 1;
    let mut placement = Placement::Same;
    let mut reactor = cluster::Reactor::Task;
    let mut stores: Option<cluster::Store> = None;
    let mut tokio_runtime = None;
    let mut raftnet_serve = Serve::Service;
    let mut idle_connections = 0;
    let mut tokio_design = None;
    let mut json = false;
    let mut tls = false;
    let mut svg = Some(default_svg_path());
    let mut no_svg = false;
    let mut raw = true;

    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let takes_value = matches!(
            flag.as_str(),
            "--scenario"
                | "--impl"
                | "--seconds"
                | "--warmup"
                | "--rounds"
                | "--pin"
                | "--reactor"
                | "--store"
                | "--tokio-runtime"
                | "--raftnet-serve"
                | "--idle-connections"
                | "--tokio-design"
                | "--svg"
        );
        let value = if takes_value {
            match inline {
                Some(v) => v,
                None => args.next().ok_or_else(|| format!("{flag} needs a value"))?,
            }
        } else {
            if inline.is_some() {
                return Err(format!("{flag} takes no value"));
            }
            String::new()
        };
        match flag.as_str() {
            "-h" | "--help" => return Ok(Parsed::Help),
            "--scenario" => {
                let mut list = Vec::new();
                for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    if name == "all" {
                        list.extend(Scenario::ALL);
                    } else if name == "cluster" {
                        list.extend(Scenario::CLUSTER);
                    } else {
                        list.push(
                            Scenario::from_name(name)
                                .ok_or_else(|| format!("unknown scenario: {name}"))?,
                        );
                    }
                }
                if list.is_empty() {
                    return Err("--scenario: empty".into());
                }
                scenarios = Some(list);
            }
            "--impl" => {
                let mut wanted = Vec::new();
                for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    wanted.extend(ImplChoice::from_name(name).ok_or_else(|| {
                        format!(
                            "--impl: expected raftnet, tokio, raftnet-hc, go, go-2proc, raftnet-to-go, go-to-raftnet, both, go-all or all, not {name}"
                        )
                    })?);
                }
                if wanted.is_empty() {
                    return Err("--impl: empty".into());
                }
                impls = ImplChoice::ALL
                    .into_iter()
                    .filter(|i| wanted.contains(i))
                    .collect();
            }
            "--seconds" => seconds = parse_seconds("--seconds", &value, false)?,
            "--warmup" => warmup = Some(parse_seconds("--warmup", &value, true)?),
            "--rounds" => {
                rounds = value
                    .parse()
                    .ok()
                    .filter(|&n: &usize| (1..=1000).contains(&n))
                    .ok_or_else(|| format!("--rounds: expected 1..=1000, not {value}"))?
            }
            "--pin" => {
                placement = Placement::from_name(&value)
                    .ok_or_else(|| format!("--pin: expected same, split or none, not {value}"))?
            }
            "--store" => {
                stores = match value.as_str() {
                    "both" => None,
                    name => Some(cluster::Store::from_name(name).ok_or_else(|| {
                        format!("--store: expected memstore, bench or both, not {value}")
                    })?),
                }
            }
            "--reactor" => {
                reactor = cluster::Reactor::from_name(&value)
                    .ok_or_else(|| format!("--reactor: expected task or thread, not {value}"))?
            }
            "--tokio-runtime" => {
                tokio_runtime = match value.as_str() {
                    "auto" => None,
                    name => Some(Flavor::from_name(name).ok_or_else(|| {
                        format!(
                            "--tokio-runtime: expected auto, current, multi1 or multi2, not {value}"
                        )
                    })?),
                }
            }
            "--idle-connections" => {
                idle_connections = value
                    .parse()
                    .ok()
                    .filter(|n| *n <= MAX_IDLE_CONNECTIONS)
                    .ok_or_else(|| {
                        format!(
                            "--idle-connections: expected 0 to {MAX_IDLE_CONNECTIONS}, not {value}"
                        )
                    })?
            }
            "--raftnet-serve" => {
                raftnet_serve = Serve::from_name(&value).ok_or_else(|| {
                    format!("--raftnet-serve: expected service or consumer, not {value}")
                })?
            }
            "--tokio-design" => {
                tokio_design = match value.as_str() {
                    "best" => None,
                    name => Some(Design::from_name(name).ok_or_else(|| {
                        format!("--tokio-design: expected best, direct or tasks, not {value}")
                    })?),
                }
            }
            "--json" => json = true,
            "--tls" => tls = true,
            "--svg" => svg = Some(PathBuf::from(value)),
            "--no-svg" => no_svg = true,
            "--no-raw" => raw = false,
            other => return Err(format!("unknown argument: {other}")),
        }
    }

    // Keep the table's order, drop duplicates, and bring heartbeat-seq along for
    // heartbeat-under-load's idle reference.
    let mut wanted = scenarios.unwrap_or_else(|| Scenario::ALL.to_vec());
    if wanted.contains(&Scenario::HeartbeatUnderLoad) {
        wanted.push(Scenario::HeartbeatSeq);
    }
    let scenarios: Vec<Scenario> = Scenario::ALL
        .into_iter()
        .filter(|s| wanted.contains(s))
        .filter(|s| match (stores, s.cluster_store()) {
            (Some(only), Some(store)) => store == only,
            _ => true,
        })
        .collect();
    if scenarios.is_empty() {
        return Err("no scenario left: --store excludes every one selected".into());
    }
    Ok(Parsed::Run(Options {
        scenarios,
        impls,
        seconds,
        warmup: warmup.unwrap_or_else(|| default_warmup(seconds)),
        rounds,
        placement,
        reactor,
        tokio_runtime,
        raftnet_serve,
        idle_connections,
        tokio_design,
        tls,
        json,
        svg: if no_svg { None } else { svg },
        raw,
        stop_timeout: STOP_TIMEOUT,
    }))
}

fn default_warmup(seconds: f64) -> f64 {
    (0.15 * seconds).max(0.3)
}

/// `target/raftnet-bench.svg` of the build that made this binary (the executable lives in
/// `target/<profile>/`), else `raftnet-bench.svg` in the current directory.
fn default_svg_path() -> PathBuf {
    let exe = std::env::current_exe().ok();
    let target = exe
        .as_deref()
        .and_then(|e| e.parent()) // target/release (or target/release/deps for tests)
        .and_then(|d| {
            if d.ends_with("deps") {
                d.parent()
            } else {
                Some(d)
            }
        })
        .and_then(|d| d.parent())
        .filter(|t| t.file_name().is_some_and(|n| n == "target"));
    match target {
        Some(t) => t.join("raftnet-bench.svg"),
        None => PathBuf::from("raftnet-bench.svg"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Parsed, String> {
        parse_args(s.split_whitespace().map(String::from))
    }

    fn opts(s: &str) -> Options {
        match args(s) {
            Ok(Parsed::Run(o)) => o,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn parses_the_command_line() {
        let o = opts("");
        assert_eq!(o.scenarios, Scenario::ALL.to_vec());
        assert_eq!(o.impls, [ImplChoice::Raftnet, ImplChoice::Tokio]);
        assert_eq!((o.seconds, o.warmup, o.rounds), (2.5, 0.375, 1));
        assert_eq!(o.placement, Placement::Same);
        assert!(o.raw && !o.json && o.svg.is_some() && !o.tls);
        assert!(opts("--tls").tls);
        assert!(args("--tls=yes").is_err());

        let o = opts(
            "--scenario vote-seq,heartbeat-seq --impl tokio --seconds=10 --pin split --json --no-svg --no-raw --rounds 3 --warmup 0",
        );
        assert_eq!(o.scenarios, vec![Scenario::HeartbeatSeq, Scenario::VoteSeq]);
        assert_eq!(o.impls, [ImplChoice::Tokio]);
        assert_eq!(
            opts("--impl go,raftnet,go").impls,
            [ImplChoice::Raftnet, ImplChoice::Go]
        );
        assert_eq!(
            opts("--impl go-all").impls,
            [
                ImplChoice::RaftnetHashicorp,
                ImplChoice::Go,
                ImplChoice::GoTwoProcesses,
                ImplChoice::RaftnetToGo,
                ImplChoice::GoToRaftnet
            ]
        );
        assert_eq!(opts("--impl all").impls, ImplChoice::ALL);
        assert!(args("--impl golang").is_err());
        assert!(args("--impl ,").is_err());
        assert_eq!((o.seconds, o.warmup, o.rounds), (10.0, 0.0, 3));
        assert_eq!(o.placement, Placement::Split);
        assert!(!o.raw && o.json && o.svg.is_none());
        assert_eq!(o.tokio_runtime, None);
        assert_eq!(
            opts("--tokio-runtime current").tokio_runtime,
            Some(Flavor::CurrentThread)
        );
        assert_eq!(
            opts("--tokio-runtime=multi1").tokio_runtime,
            Some(Flavor::MultiThread(1))
        );
        assert_eq!(opts("--tokio-runtime auto").tokio_runtime, None);
        assert_eq!(o.raftnet_serve, Serve::Service);
        assert_eq!(
            opts("--raftnet-serve consumer").raftnet_serve,
            Serve::Consumer
        );
        assert_eq!(o.idle_connections, 0);
        assert_eq!(opts("--idle-connections 1000").idle_connections, 1000);
        assert!(args("--idle-connections 1001").is_err());
        assert!(args("--idle-connections many").is_err());
        assert_eq!(opts("").tokio_design, None);
        assert_eq!(
            opts("--tokio-design tasks").tokio_design,
            Some(Design::Tasks)
        );
        assert_eq!(
            opts("--tokio-design=direct").tokio_design,
            Some(Design::Direct)
        );

        // `cluster` selects the cluster scenarios of both stores; --store narrows them.
        let o = opts("--scenario cluster,vote-seq");
        assert_eq!(
            o.scenarios,
            vec![
                Scenario::VoteSeq,
                Scenario::Cluster1,
                Scenario::Cluster16,
                Scenario::Cluster64,
                Scenario::ClusterBench1,
                Scenario::ClusterBench16,
                Scenario::ClusterBench64,
            ]
        );
        assert_eq!(
            opts("--scenario cluster --store bench").scenarios,
            vec![
                Scenario::ClusterBench1,
                Scenario::ClusterBench16,
                Scenario::ClusterBench64
            ]
        );
        assert_eq!(
            opts("--scenario vote-seq,cluster-16,cluster-bench-64 --store memstore").scenarios,
            vec![Scenario::VoteSeq, Scenario::Cluster16]
        );
        assert!(args("--scenario cluster-1 --store bench").is_err());

        // Where raftnet's reactors run in the cluster scenarios.
        assert_eq!(opts("--scenario cluster").reactor, cluster::Reactor::Task);
        assert_eq!(
            opts("--scenario cluster --reactor thread").reactor,
            cluster::Reactor::Thread
        );

        // heartbeat-under-load brings its idle reference along.
        let o = opts("--scenario heartbeat-under-load --svg /tmp/x.svg");
        assert_eq!(
            o.scenarios,
            vec![Scenario::HeartbeatSeq, Scenario::HeartbeatUnderLoad]
        );
        assert_eq!(o.svg, Some(PathBuf::from("/tmp/x.svg")));
        assert_eq!(opts("--seconds 0.2").warmup, 0.3);

        assert!(matches!(args("--help"), Ok(Parsed::Help)));
        for bad in [
            "--scenario nope",
            "--impl both2",
            "--seconds 0",
            "--seconds x",
            "--seconds",
            "--rounds 0",
            "--pin left",
            "--json=1",
            "--frobnicate",
            "--warmup -1",
            "--tokio-runtime multi3",
            "--store json",
            "--tokio-design fast",
        ] {
            assert!(args(bad).is_err(), "{bad}");
        }
    }
}
