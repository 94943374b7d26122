//! Running an invocation: [`run_all`] takes every (scenario, implementation) pair, round by
//! round, through [`measure_run`] and collects the [`Results`].
//!
//! Method (the one the project's performance notes set out; BENCHMARKS.md, "Transport
//! comparison (raftnet-bench)", shows its results): each (scenario, implementation) pair runs on
//! a fresh thread that builds both ends; after a warm-up the harness opens the measured window
//! ([`Control::start_measuring`]) and reads wall clock, the process's CPU time (getrusage,
//! user+sys, so both ends) and its context switches (both kinds, every thread, exited ones
//! included: `raftnet_bench::measure`) at both edges, then stops the run and takes its
//! [`Sample`]. With `--rounds N` the whole interleaved sequence repeats N times and every metric
//! is the median of the rounds. The raw references are part of every round (first in it), so
//! their figures are medians over the same rounds as the scenarios they are compared with: a
//! single raw run, as this harness made before, let one lucky or unlucky window set every
//! "vs raw" fraction of the invocation.
//!
//! Details that matter when reading the numbers:
//! - the thread that calls [`Implementation::run`] is placed as a client thread
//!   ([`pin::pin_client_thread`]) before the call, so load driven from it follows `--pin`;
//! - the harness's own thread blocks once per window (one voluntary switch per window, negligible
//!   except for `snapshot-64m`, whose ops are few);
//! - a run that returns before it is stopped, returns an error or panics becomes an error row;
//!   one that does not return within 30 s of stop is left running, and the rows measured after
//!   it are marked (`*` in the table, `after_stuck_run` in JSON), because its threads' CPU time
//!   and context switches are counted in theirs.

use std::io::Write;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use raftnet_bench::cluster;
use raftnet_bench::go_impl::{self, GoImpl, GoPair};
use raftnet_bench::measure::{Snapshot, Window};
use raftnet_bench::pin;
#[cfg(test)]
use raftnet_bench::raftnet_impl::Serve;
use raftnet_bench::raftnet_impl::{RaftnetImpl, Wire, driver_calls};
use raftnet_bench::raw::Raw;
use raftnet_bench::scenario::{Control, Implementation, Sample, Scenario};
use raftnet_bench::tokio_impl::TokioImpl;

use crate::cli::{ImplChoice, Options};
use crate::output::secs;
use crate::results::{Measured, Metrics, Results, Row, Subject, TOKIO_VARIANT, pick_best_tokio};

/// The start of the error of a run that did not return in time (it is left running).
const STUCK: &str = "did not return within";

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
    // Transports registered by an earlier run (one left stuck, say) are not this run's.
    driver_calls::REGISTRY.reset();
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
    driver_calls::REGISTRY.open_window();
    phase("measuring");
    // One blocking wait for the whole window: the harness itself adds one voluntary switch.
    let early_result = rx.recv_timeout(window.saturating_sub(start.at.elapsed()));
    let end = Snapshot::take();
    let system_calls = driver_calls::REGISTRY.close_window();
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
        system_calls,
    })
}

pub(crate) fn run_all(
    options: &Options,
    imps: &[Arc<dyn Implementation>],
    progress_enabled: bool,
) -> Results {
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
    if options.raw && options.scenarios.contains(&Scenario::ClusterBench64) {
        raws.push(Raw::ClusterBenchNoNetwork);
    }
    let runs: usize = options
        .scenarios
        .iter()
        .map(|&s| imps.iter().filter(|imp| imp.runs(s)).count())
        .sum();
    let jobs = options.rounds * (raws.len() + runs);
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
                    variant: None,
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

    for round in 0..options.rounds {
        let of_rounds = if options.rounds > 1 {
            format!("round {}/{} · ", round + 1, options.rounds)
        } else {
            String::new()
        };
        // The raw references run in every round, first, like any other row (see the module
        // documentation).
        for &raw in &raws {
            let label = format!("{of_rounds}raw · {}", raw.name());
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
        for &scenario in &options.scenarios {
            for imp in imps.iter().filter(|imp| imp.runs(scenario)) {
                let label = format!("{of_rounds}{} · {}", scenario.name(), imp.name());
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
    pick_best_tokio(&mut rows);
    // The table and the chart show `tokio` (the best variant) for the variants.
    let mut impl_names: Vec<String> = Vec::new();
    for imp in imps {
        let name = if imp.name().starts_with(TOKIO_VARIANT) {
            "tokio"
        } else {
            imp.name()
        };
        if !impl_names.iter().any(|n| n == name) {
            impl_names.push(name.to_string());
        }
    }
    Results {
        options: options.clone(),
        rows,
        impl_names,
    }
}

/// raftnet, and the tokio variants that `options` asks for (every one by default: the table's
/// `tokio` row is the best of them per scenario, `results::pick_best_tokio`).
/// The Go rows are left out, saying why on stderr, where the Go program cannot be built.
pub(crate) fn implementations(options: &Options) -> Vec<Arc<dyn Implementation>> {
    let mut v: Vec<Arc<dyn Implementation>> = Vec::new();
    let mut go_program = None;
    for &choice in &options.impls {
        let go_pair = match choice {
            ImplChoice::Raftnet | ImplChoice::RaftnetHashicorp => {
                v.push(Arc::new(RaftnetImpl {
                    serve: options.raftnet_serve,
                    idle_connections: options.idle_connections,
                    wire: if choice == ImplChoice::Raftnet {
                        Wire::Native
                    } else {
                        Wire::Hashicorp
                    },
                }));
                continue;
            }
            ImplChoice::Tokio => {
                let variants = TokioImpl::variants(
                    options.placement,
                    options.tokio_runtime,
                    options.tokio_design,
                );
                for variant in variants {
                    v.push(Arc::new(variant));
                }
                continue;
            }
            ImplChoice::Go => GoPair::GoToGo,
            ImplChoice::GoTwoProcesses => GoPair::GoToGoProcess,
            ImplChoice::RaftnetToGo => GoPair::RaftnetToGo,
            ImplChoice::GoToRaftnet => GoPair::GoToRaftnet,
        };
        let program = go_program.get_or_insert_with(|| {
            let built = go_impl::build();
            if let Err(why) = &built {
                eprintln!("raftnet-bench: the Go rows are skipped: {why}");
            }
            built
        });
        if let Ok(program) = program {
            v.push(Arc::new(GoImpl {
                pair: go_pair,
                program: program.clone(),
            }));
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftnet_bench::pin::Placement;

    use crate::output::json::json_lines;
    use crate::output::svg::{self, build_chart};
    use crate::output::table::render_table;
    use crate::results::{under_load, vs_raw, vs_tokio};

    // These run fake implementations through `run_all` and check the rows, and what the
    // comparisons, the JSON lines, the table and the chart make of them.

    /// The runs read process-wide counters (CPU time, every thread's context switches), so the
    /// tests that run them take turns. (The binary's tests are a process of their own: the
    /// library's load tests, which `raftnet_bench::measure`'s test lock orders, never run
    /// beside them.)
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
            impls: vec![ImplChoice::Raftnet, ImplChoice::Tokio],
            seconds: 0.1,
            warmup: 0.02,
            rounds,
            placement: Placement::None,
            reactor: cluster::Reactor::Task,
            tokio_runtime: None,
            raftnet_serve: Serve::Service,
            idle_connections: 0,
            tokio_design: None,
            tls: false,
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
        // 2 raw rows + 3 scenarios × 2 impls; every row has two rounds, raw ones too.
        assert_eq!(results.rows.len(), 8);
        for row in &results.rows {
            assert_eq!(row.runs.len(), 2, "{row:?}");
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
        // Each fake op sleeps once: about one wake-up (voluntary switch) per op, and the total
        // counts at least those.
        let w = slow.wakeups_per_op.unwrap();
        assert!((0.8..2.0).contains(&w), "wake-ups per op {w}");
        let total = slow.switches_per_op.unwrap();
        let involuntary = slow.involuntary_per_op.unwrap();
        assert!(total >= w && involuntary >= 0.0, "switches per op {total}");
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
                "switches_per_op",
                "wakeups_per_op",
                "involuntary_switches_per_op",
                "driver_system_calls_per_op",
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
        svg::write_svg(&dir.join("c.svg"), &chart).unwrap();
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
}
