//! `raftnet-bench`: runs the Raft RPC scenarios against raftnet and the tokio baseline in one
//! process, interleaved, plus the machine's raw loopback references, and prints a table (or JSON
//! lines) and writes an SVG chart. `raftnet-bench --help` describes the options.
//!
//! Method (see /work/shared/docs/perf-anchors.md, which this follows): each (scenario,
//! implementation) pair runs on a fresh thread that builds both ends; after a warm-up the
//! harness opens the measured window ([`Control::start_measuring`]) and reads wall clock, the
//! process's CPU time (getrusage, user+sys, so both ends) and its threads' voluntary context
//! switches (wake-ups) at both edges, then stops the run and takes its [`Sample`]. With
//! `--rounds N` the whole interleaved sequence repeats N times and every metric is the median
//! of the rounds (the raw references run once, first).
//!
//! Details that matter when reading the numbers:
//! - the thread that calls [`Implementation::run`] is placed as a client thread
//!   ([`pin::pin_client_thread`]) before the call, so load driven from it follows `--pin`;
//! - the harness's own thread blocks once per window (one wake-up per window, negligible except
//!   for `snapshot-64m`, whose ops are few);
//! - a run that returns before it is stopped, returns an error or panics becomes an error row;
//!   one that does not return within 30 s of stop is left running, and the rows measured after
//!   it are marked (`*` in the table, `after_stuck_run` in JSON), because its threads' CPU time
//!   and wake-ups are counted in theirs.

use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use raftnet_bench::cluster;
use raftnet_bench::measure::{CURVE_PERCENTILES, Latencies, Snapshot, Window};
use raftnet_bench::pin::{self, Placement};
use raftnet_bench::raftnet_impl::RaftnetImpl;
use raftnet_bench::raw::Raw;
use raftnet_bench::report::{self, si};
use raftnet_bench::scenario::{Control, Implementation, Sample, Scenario};
use raftnet_bench::tokio_impl::TokioImpl;

const USAGE: &str = "\
usage: raftnet-bench [OPTIONS]

Runs each scenario against raftnet and the tokio baseline in one process, interleaved
(scenario by scenario: raftnet, then tokio), plus raw loopback references, and prints
ops/s, payload MB/s, latency p50/p99/p999, CPU µs per op (getrusage user+sys of the
whole process, so both ends), thread wake-ups per op, and raftnet/tokio ratios.

options:
  --scenario NAME|all   a scenario, a comma-separated list, or all (default: all)
  --impl raftnet|tokio|both
                        which implementations (default: both)
  --seconds S           measured window per run (default: 2.5)
  --warmup S            warm-up before each window (default: max(0.3, 15% of --seconds))
  --rounds N            repeat the interleaved sequence N times, report medians (default: 1)
  --pin same|split|none thread placement (default: same = every thread on CPU 0;
                        split = server threads on CPU 1, client threads on CPU 0)
  --reactor task|thread where raftnet's reactor runs in the cluster-N scenarios (default:
                        task = a task on each node's runtime, NetTransport::bind_on;
                        thread = a thread of its own, NetTransport::bind)
  --json                one JSON object per line and implementation instead of the table
  --svg PATH            where to write the SVG chart (default: target/raftnet-bench.svg)
  --no-svg              write no chart
  --no-raw              skip the raw loopback references (otherwise run once, first:
                        1 MiB bulk writes and a 64 B blocking ping-pong)
  -h, --help            this text

scenarios: heartbeat-seq heartbeat-pipelined append-100b-seq append-64x1k-pipelined
           append-1m-pipelined vote-seq snapshot-64m heartbeat-under-load fan-in-1000
           cluster-1 cluster-16 cluster-64 (or: cluster = all three)
(heartbeat-under-load is compared with heartbeat-seq's idle p99; heartbeat-seq is added
 to the run when it is not selected.)
cluster-N: a 3-node openraft 0.9.25 cluster (openraft-memstore) in this process over each
implementation's network, N client tasks calling client_write on the leader: ops/s are
committed writes/s, latency is commit latency, CPU µs/op is CPU per write (all three nodes).
";

/// How long a run may take to return its sample after `stop()`.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// The start of the error of a run that did not return in time (it is left running).
const STUCK: &str = "did not return within";

// ---------------------------------------------------------------------------------------------
// Command line

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ImplChoice {
    Raftnet,
    Tokio,
    Both,
}

#[derive(Debug, Clone)]
struct Options {
    scenarios: Vec<Scenario>,
    impls: ImplChoice,
    seconds: f64,
    warmup: f64,
    rounds: usize,
    placement: Placement,
    reactor: cluster::Reactor,
    json: bool,
    svg: Option<PathBuf>,
    raw: bool,
    /// How long a run may take to return after stop ([`STOP_TIMEOUT`]; shorter in tests).
    stop_timeout: Duration,
}

#[derive(Debug)]
enum Parsed {
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

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Parsed, String> {
    let mut scenarios: Option<Vec<Scenario>> = None;
    let mut impls = ImplChoice::Both;
    let mut seconds = 2.5;
    let mut warmup = None;
    let mut rounds = 1;
    let mut placement = Placement::Same;
    let mut reactor = cluster::Reactor::Task;
    let mut json = false;
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
                impls = match value.as_str() {
                    "raftnet" => ImplChoice::Raftnet,
                    "tokio" => ImplChoice::Tokio,
                    "both" => ImplChoice::Both,
                    _ => {
                        return Err(format!(
                            "--impl: expected raftnet, tokio or both, not {value}"
                        ));
                    }
                }
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
            "--reactor" => {
                reactor = cluster::Reactor::from_name(&value)
                    .ok_or_else(|| format!("--reactor: expected task or thread, not {value}"))?
            }
            "--json" => json = true,
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
    let scenarios = Scenario::ALL
        .into_iter()
        .filter(|s| wanted.contains(s))
        .collect();
    Ok(Parsed::Run(Options {
        scenarios,
        impls,
        seconds,
        warmup: warmup.unwrap_or_else(|| default_warmup(seconds)),
        rounds,
        placement,
        reactor,
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

fn placement_description(p: Placement) -> &'static str {
    match p {
        Placement::Same => "every thread on CPU 0",
        Placement::Split => "server threads on CPU 1, client threads on CPU 0",
        Placement::None => "the scheduler decides",
    }
}

// ---------------------------------------------------------------------------------------------
// Running

/// What is measured in one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Subject {
    Scenario(Scenario),
    Raw(Raw),
}

impl Subject {
    fn name(self) -> &'static str {
        match self {
            Subject::Scenario(s) => s.name(),
            Subject::Raw(r) => r.name(),
        }
    }
}

/// The progress line on stderr.
struct Progress {
    total: usize,
    done: usize,
    per_job: Duration,
    started: Instant,
    job_started: Instant,
    width: usize,
    enabled: bool,
}

impl Progress {
    fn new(total: usize, per_job: Duration, enabled: bool) -> Progress {
        Progress {
            total,
            done: 0,
            per_job,
            started: Instant::now(),
            job_started: Instant::now(),
            width: 0,
            enabled,
        }
    }

    fn show(&mut self, what: &str) {
        if !self.enabled {
            return;
        }
        // Estimate what is left from the pace so far (teardown, slow stops), or the plan.
        let left_jobs = self.total - self.done;
        let pace = if self.done > 0 {
            self.started.elapsed() / self.done as u32
        } else {
            self.per_job
        };
        let left = (pace * left_jobs as u32).saturating_sub(self.job_started.elapsed());
        let line = format!(
            "[{:>2}/{}] {what}   (~{:.0} s left)",
            (self.done + 1).min(self.total),
            self.total,
            left.as_secs_f64().ceil()
        );
        let pad = self.width.saturating_sub(line.chars().count());
        self.width = line.chars().count();
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r{line}{:pad$}", "");
        let _ = err.flush();
    }

    fn job_done(&mut self) {
        self.done += 1;
        self.job_started = Instant::now();
    }

    fn clear(&mut self) {
        if self.enabled && self.width > 0 {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r{:w$}\r", "", w = self.width);
            let _ = err.flush();
            self.width = 0;
        }
    }
}

/// One run's raw outcome.
#[derive(Debug)]
struct Measured {
    sample: Sample,
    window: Window,
}

fn panic_message(p: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = p.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = p.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".into()
    }
}

/// Run `f` on a fresh thread (placed as a client thread) through warm-up, the measured window
/// and stop, reading the counters at the window's edges.
fn measure_run(
    f: impl FnOnce(&Control) -> Result<Sample, String> + Send + 'static,
    warmup: Duration,
    window: Duration,
    stop_timeout: Duration,
    mut phase: impl FnMut(&str),
) -> Result<Measured, String> {
    let control = Arc::new(Control::new());
    let (tx, rx) = mpsc::channel();
    let thread_control = control.clone();
    let handle = std::thread::Builder::new()
        .name("bench-run".into())
        .spawn(move || {
            pin::pin_client_thread();
            let result = std::panic::catch_unwind(AssertUnwindSafe(|| f(&thread_control)))
                .unwrap_or_else(|p| Err(panic_message(p)));
            let _ = tx.send(result);
        })
        .map_err(|e| format!("spawn: {e}"))?;
    let early = |r: Result<Sample, String>, when: &str| match r {
        Ok(_) => format!("run returned during the {when}, before it was stopped"),
        Err(e) => e,
    };

    phase("warm-up");
    match rx.recv_timeout(warmup) {
        Ok(r) => {
            let _ = handle.join();
            return Err(early(r, "warm-up"));
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => return Err("run thread vanished".into()),
        Err(mpsc::RecvTimeoutError::Timeout) => {}
    }

    control.start_measuring();
    let start = Snapshot::take();
    phase("measuring");
    // One blocking wait for the whole window: the harness itself adds one wake-up.
    let early_result = rx.recv_timeout(window.saturating_sub(start.at.elapsed()));
    let end = Snapshot::take();
    control.stop();
    let result = match early_result {
        Ok(r) => Err(early(r, "measured window")),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err("run thread vanished".into()),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            phase("stopping");
            match rx.recv_timeout(stop_timeout) {
                Ok(r) => r,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    // Leave it; it is detached and the remaining runs go on.
                    return Err(format!(
                        "{STUCK} {} s of stop",
                        secs(stop_timeout.as_secs_f64())
                    ));
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => Err("run thread vanished".into()),
            }
        }
    };
    let _ = handle.join();
    let sample = result?;
    Ok(Measured {
        sample,
        window: Window::between(&start, &end),
    })
}

/// The metrics of one run.
#[derive(Debug, Clone, Default, PartialEq)]
struct Metrics {
    ops: f64,
    payload_bytes: f64,
    seconds: f64,
    ops_per_sec: f64,
    mb_per_sec: f64,
    p50_us: Option<f64>,
    p99_us: Option<f64>,
    p999_us: Option<f64>,
    max_us: Option<f64>,
    mean_us: Option<f64>,
    latency_samples: f64,
    cpu_us_per_op: Option<f64>,
    cpu_user_us_per_op: Option<f64>,
    cpu_sys_us_per_op: Option<f64>,
    wakeups_per_op: Option<f64>,
    cpu_cores: f64,
    others_cores: Option<f64>,
    /// Latency at each of [`CURVE_PERCENTILES`].
    curve_us: Vec<Option<f64>>,
}

impl Metrics {
    fn from_run(m: Measured) -> Metrics {
        let secs = m.window.elapsed.as_secs_f64().max(1e-9);
        let ops = m.sample.ops as f64;
        let per_op = |v: f64| (m.sample.ops > 0).then(|| v / ops);
        let lat = Latencies::new(m.sample.latencies_ns);
        Metrics {
            ops,
            payload_bytes: m.sample.payload_bytes as f64,
            seconds: secs,
            ops_per_sec: ops / secs,
            mb_per_sec: m.sample.payload_bytes as f64 / secs / 1e6,
            p50_us: lat.percentile_us(0.50),
            p99_us: lat.percentile_us(0.99),
            p999_us: lat.percentile_us(0.999),
            max_us: lat.percentile_us(1.0),
            mean_us: lat.mean_us(),
            latency_samples: lat.len() as f64,
            cpu_us_per_op: per_op(m.window.cpu.total().as_secs_f64() * 1e6),
            cpu_user_us_per_op: per_op(m.window.cpu.user.as_secs_f64() * 1e6),
            cpu_sys_us_per_op: per_op(m.window.cpu.sys.as_secs_f64() * 1e6),
            wakeups_per_op: per_op(m.window.wakeups as f64),
            cpu_cores: m.window.cpu.total().as_secs_f64() / secs,
            others_cores: m.window.others_cores,
            curve_us: lat.curve_us(),
        }
    }

    /// Every field the median of `runs` (pointwise for the curve).
    fn median(runs: &[&Metrics]) -> Metrics {
        let m = |f: &dyn Fn(&Metrics) -> f64| median(runs.iter().map(|r| f(r))).unwrap_or(0.0);
        let mo = |f: &dyn Fn(&Metrics) -> Option<f64>| median(runs.iter().filter_map(|r| f(r)));
        let points = CURVE_PERCENTILES.len();
        Metrics {
            ops: m(&|r| r.ops),
            payload_bytes: m(&|r| r.payload_bytes),
            seconds: m(&|r| r.seconds),
            ops_per_sec: m(&|r| r.ops_per_sec),
            mb_per_sec: m(&|r| r.mb_per_sec),
            p50_us: mo(&|r| r.p50_us),
            p99_us: mo(&|r| r.p99_us),
            p999_us: mo(&|r| r.p999_us),
            max_us: mo(&|r| r.max_us),
            mean_us: mo(&|r| r.mean_us),
            latency_samples: m(&|r| r.latency_samples),
            cpu_us_per_op: mo(&|r| r.cpu_us_per_op),
            cpu_user_us_per_op: mo(&|r| r.cpu_user_us_per_op),
            cpu_sys_us_per_op: mo(&|r| r.cpu_sys_us_per_op),
            wakeups_per_op: mo(&|r| r.wakeups_per_op),
            cpu_cores: m(&|r| r.cpu_cores),
            others_cores: mo(&|r| r.others_cores),
            curve_us: (0..points)
                .map(|i| {
                    median(
                        runs.iter()
                            .filter_map(|r| r.curve_us.get(i).copied().flatten()),
                    )
                })
                .collect(),
        }
    }
}

fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Everything measured for one (subject, implementation) pair, over the rounds.
#[derive(Debug, Clone)]
struct Row {
    subject: Subject,
    imp: String,
    runs: Vec<Result<Metrics, String>>,
    /// A run that never returned and may still be running while this row was measured (its
    /// CPU time and wake-ups would be counted in this row's).
    after_stuck: Option<String>,
}

impl Row {
    /// The medians over the successful rounds; `None` if every round failed.
    fn median(&self) -> Option<Metrics> {
        let ok: Vec<&Metrics> = self.runs.iter().filter_map(|r| r.as_ref().ok()).collect();
        (!ok.is_empty()).then(|| Metrics::median(&ok))
    }

    fn errors(&self) -> Vec<&str> {
        self.runs
            .iter()
            .filter_map(|r| r.as_ref().err().map(String::as_str))
            .collect()
    }

    /// `"error"` text when every round failed.
    fn error(&self) -> Option<String> {
        if self.runs.iter().any(Result::is_ok) {
            return None;
        }
        let mut errors = self.errors();
        errors.dedup();
        Some(errors.join("; "))
    }
}

/// The results of a whole invocation.
#[derive(Debug, Clone)]
struct Results {
    options: Options,
    /// Raw references first, then scenarios in table order, implementations in run order.
    rows: Vec<Row>,
    impl_names: Vec<String>,
}

impl Results {
    fn get(&self, subject: Subject, imp: &str) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.subject == subject && r.imp == imp)
    }

    fn metrics(&self, subject: Subject, imp: &str) -> Option<Metrics> {
        self.get(subject, imp).and_then(Row::median)
    }

    fn raw(&self, raw: Raw) -> Option<Metrics> {
        self.metrics(Subject::Raw(raw), "raw")
    }
}

fn run_all(options: &Options, imps: &[Arc<dyn Implementation>], progress_enabled: bool) -> Results {
    pin::set_placement(options.placement);
    cluster::set_reactor(options.reactor);
    let warmup = Duration::from_secs_f64(options.warmup);
    let window = Duration::from_secs_f64(options.seconds);
    let mut raws: Vec<Raw> = if options.raw {
        Raw::ALL.to_vec()
    } else {
        Vec::new()
    };
    if options.raw && options.scenarios.contains(&Scenario::Cluster64) {
        raws.push(Raw::ClusterNoNetwork);
    }
    let jobs = raws.len() + options.rounds * options.scenarios.len() * imps.len();
    let mut progress = Progress::new(
        jobs,
        warmup + window + Duration::from_millis(100),
        progress_enabled,
    );

    let mut rows: Vec<Row> = Vec::new();
    let mut stuck: Option<String> = None;
    let mut record = |subject: Subject, imp: &str, result: Result<Metrics, String>| {
        let i = match rows
            .iter()
            .position(|r| r.subject == subject && r.imp == imp)
        {
            Some(i) => i,
            None => {
                rows.push(Row {
                    subject,
                    imp: imp.to_string(),
                    runs: Vec::new(),
                    after_stuck: None,
                });
                rows.len() - 1
            }
        };
        if rows[i].after_stuck.is_none() {
            rows[i].after_stuck = stuck.clone();
        }
        if let Err(e) = &result
            && e.starts_with(STUCK)
            && stuck.is_none()
        {
            stuck = Some(format!("{} {imp}", subject.name()));
        }
        rows[i].runs.push(result);
    };

    for &raw in &raws {
        let label = format!("raw · {}", raw.name());
        let result = measure_run(
            move |c| raw.run(c),
            warmup,
            window,
            options.stop_timeout,
            |phase| progress.show(&format!("{label} · {phase}")),
        );
        progress.job_done();
        record(Subject::Raw(raw), "raw", result.map(Metrics::from_run));
    }
    for round in 0..options.rounds {
        for &scenario in &options.scenarios {
            for imp in imps {
                let label = if options.rounds > 1 {
                    format!(
                        "round {}/{} · {} · {}",
                        round + 1,
                        options.rounds,
                        scenario.name(),
                        imp.name()
                    )
                } else {
                    format!("{} · {}", scenario.name(), imp.name())
                };
                let run_imp = imp.clone();
                let result = measure_run(
                    move |c| run_imp.run(scenario, c),
                    warmup,
                    window,
                    options.stop_timeout,
                    |phase| progress.show(&format!("{label} · {phase}")),
                );
                progress.job_done();
                record(
                    Subject::Scenario(scenario),
                    imp.name(),
                    result.map(Metrics::from_run),
                );
            }
        }
    }
    progress.clear();
    Results {
        options: options.clone(),
        rows,
        impl_names: imps.iter().map(|i| i.name().to_string()).collect(),
    }
}

// ---------------------------------------------------------------------------------------------
// Derived comparisons

fn ratio(num: Option<f64>, den: Option<f64>) -> Option<f64> {
    match (num, den) {
        (Some(n), Some(d)) if d > 0.0 && n.is_finite() && d.is_finite() => Some(n / d),
        _ => None,
    }
}

/// raftnet compared with tokio on one scenario; every ratio > 1 means raftnet is better.
#[derive(Debug, Clone, Copy, Default)]
struct VsTokio {
    /// raftnet ÷ tokio.
    ops: Option<f64>,
    /// raftnet ÷ tokio.
    mb: Option<f64>,
    /// tokio ÷ raftnet (lower latency is better).
    p50: Option<f64>,
    p99: Option<f64>,
    p999: Option<f64>,
    /// tokio ÷ raftnet (less CPU is better).
    cpu: Option<f64>,
    /// tokio ÷ raftnet (fewer wake-ups are better).
    wakeups: Option<f64>,
}

fn vs_tokio(results: &Results, scenario: Scenario) -> Option<VsTokio> {
    let r = results.metrics(Subject::Scenario(scenario), "raftnet")?;
    let t = results.metrics(Subject::Scenario(scenario), "tokio")?;
    let pos = |v: f64| (v > 0.0).then_some(v);
    Some(VsTokio {
        ops: ratio(pos(r.ops_per_sec), pos(t.ops_per_sec)),
        mb: ratio(pos(r.mb_per_sec), pos(t.mb_per_sec)),
        p50: ratio(t.p50_us, r.p50_us),
        p99: ratio(t.p99_us, r.p99_us),
        p999: ratio(t.p999_us, r.p999_us),
        cpu: ratio(t.cpu_us_per_op, r.cpu_us_per_op),
        wakeups: ratio(t.wakeups_per_op, r.wakeups_per_op),
    })
}

/// How a scenario compares with a raw reference, if it has one.
#[derive(Debug, Clone, Copy)]
struct VsRaw {
    raw: Raw,
    /// The scenario's figure ÷ the raw one (MB/s for bulk, ops/s for ping-pong).
    fraction: f64,
}

fn raw_reference(scenario: Scenario) -> Option<Raw> {
    match scenario {
        Scenario::Append1mPipelined | Scenario::Snapshot64m => Some(Raw::Bulk),
        Scenario::HeartbeatSeq | Scenario::Append100bSeq | Scenario::VoteSeq => Some(Raw::PingPong),
        Scenario::Cluster64 => Some(Raw::ClusterNoNetwork),
        _ => None,
    }
}

fn vs_raw(results: &Results, scenario: Scenario, m: &Metrics) -> Option<VsRaw> {
    let raw = raw_reference(scenario)?;
    let r = results.raw(raw)?;
    let fraction = match raw {
        Raw::Bulk => ratio(Some(m.mb_per_sec), Some(r.mb_per_sec))?,
        Raw::PingPong | Raw::ClusterNoNetwork => ratio(Some(m.ops_per_sec), Some(r.ops_per_sec))?,
    };
    Some(VsRaw { raw, fraction })
}

/// heartbeat-under-load against the same implementation's idle heartbeat-seq p99.
#[derive(Debug, Clone, Copy)]
struct UnderLoad {
    idle_p99_us: f64,
    p50_vs_idle: Option<f64>,
    p99_vs_idle: Option<f64>,
}

fn under_load(results: &Results, imp: &str) -> Option<UnderLoad> {
    let idle = results
        .metrics(Subject::Scenario(Scenario::HeartbeatSeq), imp)?
        .p99_us?;
    let load = results.metrics(Subject::Scenario(Scenario::HeartbeatUnderLoad), imp)?;
    Some(UnderLoad {
        idle_p99_us: idle,
        p50_vs_idle: ratio(load.p50_us, Some(idle)),
        p99_vs_idle: ratio(load.p99_us, Some(idle)),
    })
}

// ---------------------------------------------------------------------------------------------
// JSON lines

fn round3(v: f64) -> Value {
    if v.is_finite() {
        json!((v * 1000.0).round() / 1000.0)
    } else {
        Value::Null
    }
}

fn opt3(v: Option<f64>) -> Value {
    v.map_or(Value::Null, round3)
}

fn json_lines(results: &Results) -> Vec<Value> {
    let o = &results.options;
    results
        .rows
        .iter()
        .map(|row| {
            let mut obj = Map::new();
            obj.insert("scenario".into(), json!(row.subject.name()));
            obj.insert("impl".into(), json!(row.imp));
            match row.median() {
                None => {
                    obj.insert("error".into(), json!(row.error().unwrap_or_default()));
                }
                Some(m) => {
                    obj.insert("ops_per_sec".into(), round3(m.ops_per_sec));
                    obj.insert("mb_per_sec".into(), round3(m.mb_per_sec));
                    obj.insert("p50_us".into(), opt3(m.p50_us));
                    obj.insert("p99_us".into(), opt3(m.p99_us));
                    obj.insert("p999_us".into(), opt3(m.p999_us));
                    obj.insert("max_us".into(), opt3(m.max_us));
                    obj.insert("mean_us".into(), opt3(m.mean_us));
                    obj.insert("cpu_us_per_op".into(), opt3(m.cpu_us_per_op));
                    obj.insert("cpu_user_us_per_op".into(), opt3(m.cpu_user_us_per_op));
                    obj.insert("cpu_sys_us_per_op".into(), opt3(m.cpu_sys_us_per_op));
                    obj.insert("wakeups_per_op".into(), opt3(m.wakeups_per_op));
                    obj.insert("cpu_cores".into(), round3(m.cpu_cores));
                    obj.insert("others_cores".into(), opt3(m.others_cores));
                    obj.insert("ops".into(), json!(m.ops.round() as u64));
                    obj.insert(
                        "payload_bytes".into(),
                        json!(m.payload_bytes.round() as u64),
                    );
                    obj.insert(
                        "latency_samples".into(),
                        json!(m.latency_samples.round() as u64),
                    );
                    obj.insert("seconds".into(), round3(m.seconds));
                    if let Subject::Scenario(s) = row.subject {
                        if let Some(clients) = s.cluster_clients() {
                            obj.insert("clients".into(), json!(clients));
                            if row.imp == "raftnet" {
                                obj.insert("reactor".into(), json!(o.reactor.name()));
                            }
                        }
                        if row.imp == "raftnet"
                            && let Some(v) = vs_tokio(results, s)
                        {
                            obj.insert(
                                "vs_tokio".into(),
                                json!({
                                    "ops_ratio": opt3(v.ops),
                                    "mb_ratio": opt3(v.mb),
                                    "p50_speedup": opt3(v.p50),
                                    "p99_speedup": opt3(v.p99),
                                    "p999_speedup": opt3(v.p999),
                                    "cpu_saving": opt3(v.cpu),
                                    "wakeup_saving": opt3(v.wakeups),
                                }),
                            );
                        }
                        if let Some(v) = vs_raw(results, s, &m) {
                            let key = match v.raw {
                                Raw::Bulk => "mb_fraction_of_raw_bulk",
                                Raw::PingPong => "ops_fraction_of_raw_pingpong",
                                Raw::ClusterNoNetwork => "ops_fraction_of_no_network",
                            };
                            obj.insert(key.into(), round3(v.fraction));
                        }
                        if s == Scenario::HeartbeatUnderLoad
                            && let Some(u) = under_load(results, &row.imp)
                        {
                            obj.insert("idle_p99_us".into(), round3(u.idle_p99_us));
                            obj.insert("p50_vs_idle_p99".into(), opt3(u.p50_vs_idle));
                            obj.insert("p99_vs_idle_p99".into(), opt3(u.p99_vs_idle));
                        }
                    }
                    let errors = row.errors();
                    if !errors.is_empty() {
                        obj.insert("failed_rounds".into(), json!(errors.len()));
                        obj.insert("round_errors".into(), json!(errors));
                    }
                }
            }
            if let Some(stuck) = &row.after_stuck {
                obj.insert("after_stuck_run".into(), json!(stuck));
            }
            obj.insert("placement".into(), json!(o.placement.name()));
            obj.insert("seconds_requested".into(), round3(o.seconds));
            obj.insert("warmup_seconds".into(), round3(o.warmup));
            obj.insert("rounds".into(), json!(row.runs.len()));
            let per_round: Vec<Value> = row
                .runs
                .iter()
                .map(|r| r.as_ref().map_or(Value::Null, |m| round3(m.ops_per_sec)))
                .collect();
            obj.insert("ops_per_sec_rounds".into(), Value::Array(per_round));
            Value::Object(obj)
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The table

/// A latency or per-op figure with about three significant digits.
fn num(v: f64) -> String {
    let a = v.abs();
    if a >= 1e4 {
        si(v)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Seconds as given: 2.5, 0.375.
fn secs(v: f64) -> String {
    format!("{}", (v * 1000.0).round() / 1000.0)
}

fn opt(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.map_or_else(|| "-".into(), f)
}

fn times(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}x")
    } else if v >= 10.0 {
        format!("{v:.1}x")
    } else {
        format!("{v:.2}x")
    }
}

const COLUMNS: [(&str, usize); 12] = [
    ("ops/s", 9),
    ("MB/s", 8),
    ("p50 µs", 8),
    ("p99 µs", 8),
    ("p999 µs", 8),
    ("CPU µs/op", 10),
    ("(user+sys)", 14),
    ("wake/op", 8),
    ("cores", 6),
    ("others", 7),
    ("vs raw", 12),
    ("", 0),
];
const NAME_WIDTH: usize = 24;
const IMPL_WIDTH: usize = 14;

fn table_line(name: &str, imp: &str, cells: &[String]) -> String {
    let mut line = format!("{name:<NAME_WIDTH$} {imp:<IMPL_WIDTH$}");
    for ((_, w), cell) in COLUMNS.iter().zip(cells) {
        if *w > 0 {
            line.push_str(&format!(" {cell:>w$}"));
        }
    }
    line.trim_end().to_string()
}

fn metric_cells(m: &Metrics, vs_raw: Option<VsRaw>) -> Vec<String> {
    let user_sys = match (m.cpu_user_us_per_op, m.cpu_sys_us_per_op) {
        (Some(u), Some(s)) => format!("({}+{})", num(u), num(s)),
        _ => "-".into(),
    };
    vec![
        si(m.ops_per_sec),
        if m.payload_bytes > 0.0 {
            si(m.mb_per_sec)
        } else {
            "-".into()
        },
        opt(m.p50_us, num),
        opt(m.p99_us, num),
        opt(m.p999_us, num),
        opt(m.cpu_us_per_op, num),
        user_sys,
        opt(m.wakeups_per_op, num),
        format!("{:.2}", m.cpu_cores),
        opt(m.others_cores, |v| format!("{v:.2}")),
        vs_raw.map_or_else(String::new, |v| {
            format!(
                "{:.2}x {}",
                v.fraction,
                match v.raw {
                    Raw::Bulk => "bulk",
                    Raw::PingPong => "pp",
                    Raw::ClusterNoNetwork => "nonet",
                }
            )
        }),
    ]
}

fn error_line(name: &str, imp: &str, error: &str) -> String {
    format!("{name:<NAME_WIDTH$} {imp:<IMPL_WIDTH$} error: {error}")
}

fn header_lines(results: &Results) -> Vec<String> {
    let o = &results.options;
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    vec![
        format!(
            "raftnet-bench: placement {} ({}); {} s measured after {} s warm-up per run; {} round{}{}; {} CPUs",
            o.placement.name(),
            placement_description(o.placement),
            secs(o.seconds),
            secs(o.warmup),
            o.rounds,
            if o.rounds == 1 { "" } else { "s" },
            if o.rounds > 1 { " (medians)" } else { "" },
            cpus,
        ),
        "CPU µs/op: getrusage user+sys of the whole process (client and server ends) per op; wake/op: voluntary context switches of its threads per op"
            .into(),
    ]
}

fn render_table(results: &Results) -> String {
    let mut out = Vec::new();
    out.extend(header_lines(results));
    out.push(String::new());
    let header: Vec<String> = COLUMNS.iter().map(|(h, _)| h.to_string()).collect();

    let raw_rows: Vec<&Row> = results
        .rows
        .iter()
        .filter(|r| matches!(r.subject, Subject::Raw(_)))
        .collect();
    if !raw_rows.is_empty() {
        out.push(table_line("raw loopback reference", "", &header));
        for row in raw_rows {
            let Subject::Raw(raw) = row.subject else {
                continue;
            };
            match row.median() {
                Some(m) => out.push(table_line(raw.name(), "raw", &metric_cells(&m, None))),
                None => out.push(error_line(
                    raw.name(),
                    "raw",
                    &row.error().unwrap_or_default(),
                )),
            }
        }
        for raw in Raw::EVERY {
            if results.get(Subject::Raw(raw), "raw").is_some() {
                out.push(format!("  {}: {}", raw.name(), raw.description()));
            }
        }
        out.push(String::new());
    }

    out.push(table_line("scenario", "impl", &header));
    let mut notes = Vec::new();
    for &scenario in &results.options.scenarios {
        let subject = Subject::Scenario(scenario);
        for imp in &results.impl_names {
            let Some(row) = results.get(subject, imp) else {
                continue;
            };
            let label = if row.after_stuck.is_some() {
                format!("{imp}*")
            } else {
                imp.clone()
            };
            match row.median() {
                Some(m) => {
                    let raw = vs_raw(results, scenario, &m);
                    out.push(table_line(scenario.name(), &label, &metric_cells(&m, raw)));
                    let errors = row.errors();
                    if !errors.is_empty() {
                        notes.push(format!(
                            "{} {imp}: {} of {} rounds failed: {}",
                            scenario.name(),
                            errors.len(),
                            row.runs.len(),
                            errors.join("; ")
                        ));
                    }
                }
                None => out.push(error_line(
                    scenario.name(),
                    &label,
                    &row.error().unwrap_or_default(),
                )),
            }
        }
        if let Some(v) = vs_tokio(results, scenario) {
            let x = |v: Option<f64>| opt(v, times);
            out.push(table_line(
                "",
                "raftnet÷tokio",
                &[
                    x(v.ops),
                    x(v.mb),
                    x(v.p50),
                    x(v.p99),
                    x(v.p999),
                    x(v.cpu),
                    String::new(),
                    x(v.wakeups),
                    String::new(),
                    String::new(),
                    String::new(),
                ],
            ));
        }
    }
    out.push(String::new());
    let both = ["raftnet", "tokio"]
        .iter()
        .all(|i| results.impl_names.iter().any(|n| n == i));
    if both {
        out.push(
            "raftnet÷tokio rows: ops/s and MB/s are raftnet ÷ tokio; latency, CPU/op and wake/op \
             are tokio ÷ raftnet (lower is better there), so > 1.00x always means raftnet is \
             better."
                .into(),
        );
    }
    out.push(
        "vs raw: append-1m-pipelined and snapshot-64m payload MB/s ÷ raw-bulk-1m MB/s (bulk); sequential scenarios' ops/s ÷ raw-pingpong-64b round trips/s (pp); cluster-64 writes/s ÷ cluster-64-no-network writes/s (nonet)."
            .into(),
    );
    out.push("others: cores used by other processes during the window (a busy machine makes the run suspect).".into());
    if results
        .options
        .scenarios
        .iter()
        .any(|s| s.cluster_clients().is_some())
    {
        out.push(
            format!("cluster-N: a 3-node openraft 0.9.25 cluster (openraft-memstore, a 2-worker runtime per node) over each network (raftnet's reactors: --reactor {}), N clients calling client_write on the leader: ops/s = committed writes/s, latency = commit latency, CPU µs/op = CPU per write of all three nodes and the clients.", results.options.reactor.name()),
        );
    }

    if results
        .options
        .scenarios
        .contains(&Scenario::HeartbeatUnderLoad)
    {
        out.push(String::new());
        out.push(
            "heartbeat-under-load (sequential heartbeats while snapshot-64m and append-1m-pipelined run to the same peer) vs the same implementation's idle heartbeat-seq p99:"
                .into(),
        );
        for imp in &results.impl_names {
            let Some(load) = results.metrics(Subject::Scenario(Scenario::HeartbeatUnderLoad), imp)
            else {
                continue;
            };
            match under_load(results, imp) {
                Some(u) => out.push(format!(
                    "  {imp:<8} p50 {} µs = {} and p99 {} µs = {} the idle p99 of {} µs; background load {} MB/s",
                    opt(load.p50_us, num),
                    opt(u.p50_vs_idle, times),
                    opt(load.p99_us, num),
                    opt(u.p99_vs_idle, times),
                    num(u.idle_p99_us),
                    si(load.mb_per_sec),
                )),
                None => out.push(format!("  {imp:<8} (no idle heartbeat-seq p99 to compare with)")),
            }
        }
    }
    if let Some(first) = results.rows.iter().find_map(|r| r.after_stuck.as_ref()) {
        notes.push(format!(
            "* measured after {first} did not return from its run: its threads may still be running, and their CPU time and wake-ups are counted in the rows marked *"
        ));
    }
    if !notes.is_empty() {
        out.push(String::new());
        out.extend(notes);
    }
    let mut s = out.join("\n");
    s.push('\n');
    s
}

// ---------------------------------------------------------------------------------------------
// The chart

fn build_chart(results: &Results) -> report::Chart {
    let mut subtitle = header_lines(results);
    let raw_text: Vec<String> = Raw::EVERY
        .iter()
        .filter_map(|&raw| {
            let m = results.raw(raw)?;
            Some(match raw {
                Raw::Bulk => format!("raw bulk 1 MiB writes: {} MB/s", si(m.mb_per_sec)),
                Raw::PingPong => format!(
                    "raw 64 B ping-pong: {} RTT/s, p50 {} µs, p99 {} µs",
                    si(m.ops_per_sec),
                    opt(m.p50_us, num),
                    opt(m.p99_us, num)
                ),
                Raw::ClusterNoNetwork => format!(
                    "cluster-64 without a network: {} writes/s",
                    si(m.ops_per_sec)
                ),
            })
        })
        .collect();
    if !raw_text.is_empty() {
        subtitle.push(format!(
            "raw loopback references (grey): {}",
            raw_text.join("; ")
        ));
    }
    let mut panels = Vec::new();
    for &scenario in &results.options.scenarios {
        let subject = Subject::Scenario(scenario);
        let by_mb = matches!(
            scenario,
            Scenario::Append64x1kPipelined | Scenario::Append1mPipelined | Scenario::Snapshot64m
        );
        let value = |m: &Metrics| if by_mb { m.mb_per_sec } else { m.ops_per_sec };
        let mut panel = report::Panel {
            scenario: scenario.name().into(),
            throughput_unit: if by_mb {
                "payload MB/s".into()
            } else {
                "ops/s".into()
            },
            ..Default::default()
        };
        for imp in &results.impl_names {
            let Some(row) = results.get(subject, imp) else {
                continue;
            };
            let m = row.median();
            panel.bars.push(report::Bar {
                series: imp.clone(),
                value: m.as_ref().map(value),
            });
            match &m {
                Some(m) => panel.curves.push(report::Curve {
                    series: imp.clone(),
                    points_us: m.curve_us.clone(),
                }),
                None => panel
                    .notes
                    .push(format!("{imp}: error: {}", row.error().unwrap_or_default())),
            }
            if scenario == Scenario::HeartbeatUnderLoad
                && let Some(u) = under_load(results, imp)
            {
                panel.reference_lines.push(report::RefLine {
                    series: imp.clone(),
                    label: format!("{imp} idle heartbeat-seq p99"),
                    value_us: u.idle_p99_us,
                });
                panel.notes.push(format!(
                    "{imp}: p50 = {} and p99 = {} the idle heartbeat-seq p99 ({} µs)",
                    opt(u.p50_vs_idle, times),
                    opt(u.p99_vs_idle, times),
                    num(u.idle_p99_us)
                ));
            }
        }
        if let Some(raw) = raw_reference(scenario)
            && let Some(m) = results.raw(raw)
        {
            panel.bars.push(report::Bar {
                series: "raw".into(),
                value: Some(value(&m)),
            });
            if raw == Raw::PingPong {
                panel.curves.push(report::Curve {
                    series: "raw".into(),
                    points_us: m.curve_us.clone(),
                });
            }
        }
        if let Some(v) = vs_tokio(results, scenario) {
            panel.notes.push(format!(
                "raftnet÷tokio: ops/s {}, MB/s {}; tokio÷raftnet: p50 {}, p99 {}, CPU/op {}  (> 1 = raftnet better)",
                opt(v.ops, times),
                opt(v.mb, times),
                opt(v.p50, times),
                opt(v.p99, times),
                opt(v.cpu, times)
            ));
        }
        panels.push(panel);
    }
    report::Chart {
        title: "raftnet vs tokio: Raft RPC scenarios on loopback".into(),
        subtitle,
        panels,
    }
}

// ---------------------------------------------------------------------------------------------

fn implementations(choice: ImplChoice) -> Vec<Arc<dyn Implementation>> {
    let mut v: Vec<Arc<dyn Implementation>> = Vec::new();
    if matches!(choice, ImplChoice::Raftnet | ImplChoice::Both) {
        v.push(Arc::new(RaftnetImpl));
    }
    if matches!(choice, ImplChoice::Tokio | ImplChoice::Both) {
        v.push(Arc::new(TokioImpl));
    }
    v
}

fn main() -> ExitCode {
    let options = match parse_args(std::env::args().skip(1)) {
        Ok(Parsed::Run(o)) => o,
        Ok(Parsed::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("raftnet-bench: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let imps = implementations(options.impls);
    let results = run_all(&options, &imps, true);

    let mut out = std::io::stdout().lock();
    if options.json {
        for line in json_lines(&results) {
            let _ = writeln!(out, "{line}");
        }
    } else {
        let _ = write!(out, "{}", render_table(&results));
    }
    let _ = out.flush();
    if let Some(path) = &options.svg {
        let message = match report::write_svg(path, &build_chart(&results)) {
            Ok(()) => format!("chart written to {}", path.display()),
            Err(e) => format!("could not write the chart to {}: {e}", path.display()),
        };
        // Keep stdout pure JSON lines with --json.
        if options.json {
            eprintln!("{message}");
        } else {
            let _ = writeln!(out, "\n{message}");
        }
    }
    ExitCode::SUCCESS
}

// ---------------------------------------------------------------------------------------------

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
        assert_eq!(o.impls, ImplChoice::Both);
        assert_eq!((o.seconds, o.warmup, o.rounds), (2.5, 0.375, 1));
        assert_eq!(o.placement, Placement::Same);
        assert!(o.raw && !o.json && o.svg.is_some());

        let o = opts(
            "--scenario vote-seq,heartbeat-seq --impl tokio --seconds=10 --pin split --json --no-svg --no-raw --rounds 3 --warmup 0",
        );
        assert_eq!(o.scenarios, vec![Scenario::HeartbeatSeq, Scenario::VoteSeq]);
        assert_eq!(o.impls, ImplChoice::Tokio);
        assert_eq!((o.seconds, o.warmup, o.rounds), (10.0, 0.0, 3));
        assert_eq!(o.placement, Placement::Split);
        assert!(!o.raw && o.json && o.svg.is_none());

        // `cluster` selects the three cluster scenarios.
        let o = opts("--scenario cluster,vote-seq");
        assert_eq!(
            o.scenarios,
            vec![
                Scenario::VoteSeq,
                Scenario::Cluster1,
                Scenario::Cluster16,
                Scenario::Cluster64
            ]
        );

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
        ] {
            assert!(args(bad).is_err(), "{bad}");
        }
    }

    /// The runs read process-wide counters (CPU time, every thread's wake-ups), so the tests that
    /// run them take turns.
    fn serial() -> std::sync::MutexGuard<'static, ()> {
        static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
        SERIAL.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A fake implementation: one op per `period`, with a fixed payload, or a failure.
    struct Fake {
        name: &'static str,
        period: Duration,
        fail: Option<&'static str>,
    }

    impl Implementation for Fake {
        fn name(&self) -> &'static str {
            self.name
        }

        fn run(&self, scenario: Scenario, control: &Control) -> Result<Sample, String> {
            if let Some(f) = self.fail {
                if f == "panic" {
                    panic!("fake panic");
                }
                if f == "early" {
                    return Ok(Sample::default());
                }
                if f == "hang" {
                    while !control.stopped() {
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    std::thread::sleep(Duration::from_millis(500));
                    return Ok(Sample::default());
                }
                while !control.stopped() {
                    std::thread::sleep(Duration::from_millis(1));
                }
                return Err(f.into());
            }
            let payload = scenario.entries().map_or(0, |(n, b)| (n * b) as u64);
            let mut sample = Sample::default();
            while !control.stopped() {
                let t = Instant::now();
                std::thread::sleep(self.period);
                sample.record(control, t.elapsed(), payload);
            }
            Ok(sample)
        }
    }

    fn fake_options(scenarios: Vec<Scenario>, rounds: usize) -> Options {
        Options {
            scenarios,
            impls: ImplChoice::Both,
            seconds: 0.1,
            warmup: 0.02,
            rounds,
            placement: Placement::None,
            reactor: cluster::Reactor::Task,
            json: true,
            svg: None,
            raw: true,
            stop_timeout: Duration::from_millis(100),
        }
    }

    #[test]
    fn runs_fakes_and_reports() {
        let imps: Vec<Arc<dyn Implementation>> = vec![
            Arc::new(Fake {
                name: "raftnet",
                period: Duration::from_micros(500),
                fail: None,
            }),
            Arc::new(Fake {
                name: "tokio",
                period: Duration::from_millis(1),
                fail: None,
            }),
        ];
        let scenarios = vec![
            Scenario::HeartbeatSeq,
            Scenario::Append1mPipelined,
            Scenario::HeartbeatUnderLoad,
        ];
        let _serial = serial();
        let results = run_all(&fake_options(scenarios, 2), &imps, false);
        // 2 raw rows + 3 scenarios × 2 impls; every row has two rounds except raw (once).
        assert_eq!(results.rows.len(), 8);
        for row in &results.rows {
            let expected = if matches!(row.subject, Subject::Raw(_)) {
                1
            } else {
                2
            };
            assert_eq!(row.runs.len(), expected, "{row:?}");
            let m = row.median().expect("no error");
            assert!(m.ops > 0.0 && m.ops_per_sec > 0.0, "{row:?}");
            assert!(m.cpu_us_per_op.is_some());
            assert!((0.09..0.5).contains(&m.seconds), "window {}", m.seconds);
        }
        let fast = results
            .metrics(Subject::Scenario(Scenario::HeartbeatSeq), "raftnet")
            .unwrap();
        let slow = results
            .metrics(Subject::Scenario(Scenario::HeartbeatSeq), "tokio")
            .unwrap();
        assert!(fast.ops_per_sec > slow.ops_per_sec);
        // Each fake op sleeps once: about one wake-up per op.
        let w = slow.wakeups_per_op.unwrap();
        assert!((0.8..2.0).contains(&w), "wake-ups per op {w}");
        assert!(slow.p50_us.unwrap() >= 1000.0);
        let v = vs_tokio(&results, Scenario::HeartbeatSeq).unwrap();
        assert!(v.ops.unwrap() > 1.0 && v.p50.unwrap() > 1.0);
        let m1 = results
            .metrics(Subject::Scenario(Scenario::Append1mPipelined), "tokio")
            .unwrap();
        assert!(m1.mb_per_sec > 0.0);
        assert!(vs_raw(&results, Scenario::Append1mPipelined, &m1).is_some());
        assert!(under_load(&results, "raftnet").is_some());

        let lines = json_lines(&results);
        assert_eq!(lines.len(), 8);
        for line in &lines {
            for field in [
                "scenario",
                "impl",
                "ops_per_sec",
                "mb_per_sec",
                "p50_us",
                "p99_us",
                "p999_us",
                "cpu_us_per_op",
                "wakeups_per_op",
                "placement",
                "seconds",
            ] {
                assert!(line.get(field).is_some(), "{field} missing in {line}");
            }
            assert!(line.get("error").is_none());
        }
        let hul = lines
            .iter()
            .find(|l| l["scenario"] == "heartbeat-under-load" && l["impl"] == "tokio")
            .unwrap();
        assert!(hul["p99_vs_idle_p99"].is_number());
        let hb = lines
            .iter()
            .find(|l| l["scenario"] == "heartbeat-seq" && l["impl"] == "raftnet")
            .unwrap();
        assert!(hb["vs_tokio"]["ops_ratio"].as_f64().unwrap() > 1.0);
        assert!(hb["ops_fraction_of_raw_pingpong"].is_number());

        let table = render_table(&results);
        assert!(table.contains("raftnet÷tokio"));
        assert!(table.contains("raw-bulk-1m"));
        assert!(table.contains("heartbeat-under-load (sequential"));
        let chart = build_chart(&results);
        assert_eq!(chart.panels.len(), 3);
        let dir = std::env::temp_dir().join(format!("raftnet-bench-main-{}", std::process::id()));
        report::write_svg(&dir.join("c.svg"), &chart).unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn errors_become_rows() {
        let imps: Vec<Arc<dyn Implementation>> = vec![
            Arc::new(Fake {
                name: "raftnet",
                period: Duration::ZERO,
                fail: Some("not implemented"),
            }),
            Arc::new(Fake {
                name: "tokio",
                period: Duration::ZERO,
                fail: Some("panic"),
            }),
            Arc::new(Fake {
                name: "early",
                period: Duration::ZERO,
                fail: Some("early"),
            }),
        ];
        let mut o = fake_options(vec![Scenario::VoteSeq], 1);
        o.raw = false;
        // The panicking and the early fake must return inside warm-up + window, and the failing
        // one inside the stop timeout, also on a loaded machine where capturing the panic's
        // backtrace (RUST_BACKTRACE=1) takes a while: generous bounds, the early ones return at once.
        o.seconds = 2.0;
        o.stop_timeout = Duration::from_secs(30);
        let _serial = serial();
        let results = run_all(&o, &imps, false);
        assert_eq!(results.rows.len(), 3);
        assert_eq!(results.rows[0].error().as_deref(), Some("not implemented"));
        assert!(results.rows[1].error().unwrap().contains("fake panic"));
        assert!(
            results.rows[2]
                .error()
                .unwrap()
                .contains("before it was stopped")
        );
        let lines = json_lines(&results);
        assert!(lines.iter().all(|l| l["error"].is_string()));
        let table = render_table(&results);
        assert!(table.contains("error: not implemented"), "{table}");
        let chart = build_chart(&results);
        assert_eq!(chart.panels[0].notes.len(), 3);
    }

    #[test]
    fn a_stuck_run_marks_the_later_rows() {
        let imps: Vec<Arc<dyn Implementation>> = vec![
            Arc::new(Fake {
                name: "raftnet",
                period: Duration::ZERO,
                fail: Some("hang"),
            }),
            Arc::new(Fake {
                name: "tokio",
                period: Duration::from_millis(1),
                fail: None,
            }),
        ];
        let mut o = fake_options(vec![Scenario::VoteSeq], 1);
        o.raw = false;
        let _serial = serial();
        let results = run_all(&o, &imps, false);
        assert!(results.rows[0].error().unwrap().starts_with(STUCK));
        assert_eq!(results.rows[0].after_stuck, None);
        assert_eq!(
            results.rows[1].after_stuck.as_deref(),
            Some("vote-seq raftnet")
        );
        let table = render_table(&results);
        assert!(table.contains("tokio*"), "{table}");
        assert!(
            table.contains("* measured after vote-seq raftnet did not return"),
            "{table}"
        );
        assert_eq!(
            json_lines(&results)[1]["after_stuck_run"],
            "vote-seq raftnet"
        );
        // Let the stuck run finish before the next test measures.
        std::thread::sleep(Duration::from_millis(600));
    }

    #[test]
    fn medians() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), Some(2.0));
        assert_eq!(median([4.0, 1.0, 2.0, 3.0].into_iter()), Some(2.5));
        assert_eq!(median(std::iter::empty()), None);
        let a = Metrics {
            ops_per_sec: 10.0,
            p50_us: Some(1.0),
            curve_us: vec![Some(1.0); CURVE_PERCENTILES.len()],
            ..Default::default()
        };
        let b = Metrics {
            ops_per_sec: 30.0,
            p50_us: None,
            curve_us: vec![Some(3.0); CURVE_PERCENTILES.len()],
            ..Default::default()
        };
        let c = Metrics {
            ops_per_sec: 20.0,
            p50_us: Some(5.0),
            curve_us: vec![None; CURVE_PERCENTILES.len()],
            ..Default::default()
        };
        let m = Metrics::median(&[&a, &b, &c]);
        assert_eq!(m.ops_per_sec, 20.0);
        assert_eq!(m.p50_us, Some(3.0));
        assert_eq!(m.curve_us[0], Some(2.0));
    }
}
