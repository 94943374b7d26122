//! What the runs measured: the [`Metrics`] of one run, a [`Row`] per (subject, implementation)
//! over the rounds, the [`Results`] of an invocation, and what is derived from them for the
//! table, the JSON lines and the chart: raftnet against tokio ([`vs_tokio`]), a scenario against
//! its raw loopback reference ([`vs_raw`]), and heartbeat-under-load against the idle p99
//! ([`under_load`]).

use raftnet_bench::measure::{CURVE_PERCENTILES, Latencies, Window, median};
use raftnet_bench::raw::Raw;
use raftnet_bench::scenario::{Sample, Scenario};

use crate::cli::Options;

/// What is measured in one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Subject {
    Scenario(Scenario),
    Raw(Raw),
}

impl Subject {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Subject::Scenario(s) => s.name(),
            Subject::Raw(r) => r.name(),
        }
    }
}

/// One run's raw outcome.
#[derive(Debug)]
pub(crate) struct Measured {
    pub(crate) sample: Sample,
    pub(crate) window: Window,
    /// System calls raftnet's drivers made in the window (`None` for other implementations).
    pub(crate) system_calls: Option<u64>,
}

/// The metrics of one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Metrics {
    pub(crate) ops: f64,
    pub(crate) payload_bytes: f64,
    pub(crate) seconds: f64,
    pub(crate) ops_per_sec: f64,
    pub(crate) mb_per_sec: f64,
    pub(crate) p50_us: Option<f64>,
    pub(crate) p99_us: Option<f64>,
    pub(crate) p999_us: Option<f64>,
    pub(crate) max_us: Option<f64>,
    pub(crate) mean_us: Option<f64>,
    pub(crate) latency_samples: f64,
    pub(crate) cpu_us_per_op: Option<f64>,
    pub(crate) cpu_user_us_per_op: Option<f64>,
    pub(crate) cpu_sys_us_per_op: Option<f64>,
    /// Context switches per op, voluntary + involuntary (see `raftnet_bench::measure`).
    pub(crate) switches_per_op: Option<f64>,
    /// Voluntary switches (a thread blocked and was woken: wake-ups) per op.
    pub(crate) wakeups_per_op: Option<f64>,
    /// Involuntary switches (preempted or yielded while runnable) per op.
    pub(crate) involuntary_per_op: Option<f64>,
    /// System calls raftnet's drivers made per op, both ends (their own count, the
    /// transports' `Metrics::system_calls`; callers' own are not in it).
    pub(crate) system_calls_per_op: Option<f64>,
    pub(crate) cpu_cores: f64,
    pub(crate) others_cores: Option<f64>,
    /// Latency at each of [`CURVE_PERCENTILES`].
    pub(crate) curve_us: Vec<Option<f64>>,
}

impl Metrics {
    pub(crate) fn from_run(mut m: Measured) -> Metrics {
        // Another process's share of both ends (the Go column): its CPU time and switches count
        // as the run's, not as other processes' load.
        if let Some(other) = m.sample.other_processes {
            m.window.cpu += other.cpu;
            m.window.switches += other.switches;
            let secs = m.window.elapsed.as_secs_f64().max(1e-9);
            m.window.others_cores = m
                .window
                .others_cores
                .map(|c| (c - other.cpu.total().as_secs_f64() / secs).max(0.0));
        }
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
            switches_per_op: per_op(m.window.switches.total() as f64),
            wakeups_per_op: per_op(m.window.switches.voluntary as f64),
            involuntary_per_op: per_op(m.window.switches.involuntary as f64),
            system_calls_per_op: m.system_calls.and_then(|calls| per_op(calls as f64)),
            cpu_cores: m.window.cpu.total().as_secs_f64() / secs,
            others_cores: m.window.others_cores,
            curve_us: lat.curve_us(),
        }
    }

    /// Every field the median of `runs` (pointwise for the curve).
    pub(crate) fn median(runs: &[&Metrics]) -> Metrics {
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
            switches_per_op: mo(&|r| r.switches_per_op),
            wakeups_per_op: mo(&|r| r.wakeups_per_op),
            involuntary_per_op: mo(&|r| r.involuntary_per_op),
            system_calls_per_op: mo(&|r| r.system_calls_per_op),
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

/// Everything measured for one (subject, implementation) pair, over the rounds.
#[derive(Debug, Clone)]
pub(crate) struct Row {
    pub(crate) subject: Subject,
    pub(crate) imp: String,
    pub(crate) runs: Vec<Result<Metrics, String>>,
    /// A run that never returned and may still be running while this row was measured (its
    /// CPU time and context switches would be counted in this row's).
    pub(crate) after_stuck: Option<String>,
    /// For the `tokio` row of a scenario: the variant it copies, the best of those run
    /// ([`pick_best_tokio`]), as `DESIGN/FLAVOR`.
    pub(crate) variant: Option<String>,
}

/// The prefix of the tokio variants' row names (`tokio:direct/current`).
pub(crate) const TOKIO_VARIANT: &str = "tokio:";

/// Whether `a` beats `b` as tokio's figure for `subject`: heartbeat-under-load is compared by
/// its p99 (the scenario is about the tail), every other scenario by ops/s (for the sequential
/// ones the same order as mean latency).
fn better(subject: Subject, a: &Metrics, b: &Metrics) -> bool {
    match subject {
        Subject::Scenario(Scenario::HeartbeatUnderLoad) => match (a.p99_us, b.p99_us) {
            (Some(x), Some(y)) => x < y,
            (x, y) => x.is_some() && y.is_none(),
        },
        _ => a.ops_per_sec > b.ops_per_sec,
    }
}

/// For every subject measured by tokio variants, add a `tokio` row: a copy of the best
/// variant's (medians over the rounds, compared by [`better`]), placed before the variants'
/// rows and naming the variant; a subject where every variant failed gets the first one's
/// errors. The variants' own rows stay (JSON shows them; the table and chart show `tokio`).
pub(crate) fn pick_best_tokio(rows: &mut Vec<Row>) {
    let mut subjects: Vec<Subject> = Vec::new();
    for row in rows.iter() {
        if row.imp.starts_with(TOKIO_VARIANT) && !subjects.contains(&row.subject) {
            subjects.push(row.subject);
        }
    }
    for subject in subjects {
        let variants: Vec<usize> = (0..rows.len())
            .filter(|&i| rows[i].subject == subject && rows[i].imp.starts_with(TOKIO_VARIANT))
            .collect();
        let mut best = variants[0];
        let mut best_metrics = rows[best].median();
        for &i in &variants[1..] {
            let Some(m) = rows[i].median() else {
                continue;
            };
            if best_metrics.as_ref().is_none_or(|b| better(subject, &m, b)) {
                best = i;
                best_metrics = Some(m);
            }
        }
        let mut row = rows[best].clone();
        row.variant = Some(row.imp[TOKIO_VARIANT.len()..].to_string());
        row.imp = "tokio".into();
        rows.insert(variants[0], row);
    }
}

impl Row {
    /// The medians over the successful rounds; `None` if every round failed.
    pub(crate) fn median(&self) -> Option<Metrics> {
        let ok: Vec<&Metrics> = self.runs.iter().filter_map(|r| r.as_ref().ok()).collect();
        (!ok.is_empty()).then(|| Metrics::median(&ok))
    }

    pub(crate) fn errors(&self) -> Vec<&str> {
        self.runs
            .iter()
            .filter_map(|r| r.as_ref().err().map(String::as_str))
            .collect()
    }

    /// `"error"` text when every round failed.
    pub(crate) fn error(&self) -> Option<String> {
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
pub(crate) struct Results {
    pub(crate) options: Options,
    /// Raw references first, then scenarios in table order, implementations in run order.
    pub(crate) rows: Vec<Row>,
    pub(crate) impl_names: Vec<String>,
}

impl Results {
    pub(crate) fn get(&self, subject: Subject, imp: &str) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.subject == subject && r.imp == imp)
    }

    pub(crate) fn metrics(&self, subject: Subject, imp: &str) -> Option<Metrics> {
        self.get(subject, imp).and_then(Row::median)
    }

    pub(crate) fn raw(&self, raw: Raw) -> Option<Metrics> {
        self.metrics(Subject::Raw(raw), "raw")
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

/// One implementation compared with another on one scenario ([`versus`]); every ratio > 1
/// means the first is better.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Versus {
    /// raftnet ÷ tokio.
    pub(crate) ops: Option<f64>,
    /// raftnet ÷ tokio.
    pub(crate) mb: Option<f64>,
    /// tokio ÷ raftnet (lower latency is better).
    pub(crate) p50: Option<f64>,
    pub(crate) p99: Option<f64>,
    pub(crate) p999: Option<f64>,
    /// tokio ÷ raftnet (less CPU is better).
    pub(crate) cpu: Option<f64>,
    /// tokio ÷ raftnet (fewer context switches, both kinds, are better).
    pub(crate) switches: Option<f64>,
}

/// The comparisons the table and the JSON lines show where both rows ran: raftnet against
/// tokio, and, for issue 16's goals, raftnet with hashicorp's format against Go's own
/// transport, and raftnet talking to Go (either way) against Go talking to Go, in one process
/// and in two (as raftnet talking to Go is).
pub(crate) const COMPARISONS: [(&str, &str); 6] = [
    ("raftnet", "tokio"),
    ("raftnet-hc", "go"),
    ("raftnet-to-go", "go"),
    ("go-to-raftnet", "go"),
    ("raftnet-to-go", "go-2proc"),
    ("go-to-raftnet", "go-2proc"),
];

/// raftnet compared with tokio on `scenario`.
pub(crate) fn vs_tokio(results: &Results, scenario: Scenario) -> Option<Versus> {
    versus(results, scenario, "raftnet", "tokio")
}

/// `first` compared with `second` on `scenario`, where both have a figure.
pub(crate) fn versus(
    results: &Results,
    scenario: Scenario,
    first: &str,
    second: &str,
) -> Option<Versus> {
    let r = results.metrics(Subject::Scenario(scenario), first)?;
    let t = results.metrics(Subject::Scenario(scenario), second)?;
    let pos = |v: f64| (v > 0.0).then_some(v);
    Some(Versus {
        ops: ratio(pos(r.ops_per_sec), pos(t.ops_per_sec)),
        mb: ratio(pos(r.mb_per_sec), pos(t.mb_per_sec)),
        p50: ratio(t.p50_us, r.p50_us),
        p99: ratio(t.p99_us, r.p99_us),
        p999: ratio(t.p999_us, r.p999_us),
        cpu: ratio(t.cpu_us_per_op, r.cpu_us_per_op),
        switches: ratio(t.switches_per_op, r.switches_per_op),
    })
}

/// How a scenario compares with a raw reference, if it has one.
#[derive(Debug, Clone, Copy)]
pub(crate) struct VsRaw {
    pub(crate) raw: Raw,
    /// The scenario's figure ÷ the raw one (MB/s for bulk, ops/s for ping-pong).
    pub(crate) fraction: f64,
}

pub(crate) fn raw_reference(scenario: Scenario) -> Option<Raw> {
    match scenario {
        Scenario::Append1mPipelined | Scenario::Snapshot64m => Some(Raw::Bulk),
        Scenario::HeartbeatSeq | Scenario::Append100bSeq | Scenario::VoteSeq => Some(Raw::PingPong),
        Scenario::Cluster64 => Some(Raw::ClusterNoNetwork),
        Scenario::ClusterBench64 => Some(Raw::ClusterBenchNoNetwork),
        _ => None,
    }
}

pub(crate) fn vs_raw(results: &Results, scenario: Scenario, m: &Metrics) -> Option<VsRaw> {
    let raw = raw_reference(scenario)?;
    let r = results.raw(raw)?;
    let fraction = match raw {
        Raw::Bulk => ratio(Some(m.mb_per_sec), Some(r.mb_per_sec))?,
        Raw::PingPong | Raw::ClusterNoNetwork | Raw::ClusterBenchNoNetwork => {
            ratio(Some(m.ops_per_sec), Some(r.ops_per_sec))?
        }
    };
    Some(VsRaw { raw, fraction })
}

/// heartbeat-under-load against the same implementation's idle heartbeat-seq p99.
#[derive(Debug, Clone, Copy)]
pub(crate) struct UnderLoad {
    pub(crate) idle_p99_us: f64,
    pub(crate) p50_vs_idle: Option<f64>,
    pub(crate) p99_vs_idle: Option<f64>,
}

pub(crate) fn under_load(results: &Results, imp: &str) -> Option<UnderLoad> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn row(subject: Subject, imp: &str, runs: Vec<Result<Metrics, String>>) -> Row {
        Row {
            subject,
            imp: imp.into(),
            runs,
            after_stuck: None,
            variant: None,
        }
    }

    fn run(ops_per_sec: f64, p99: f64) -> Result<Metrics, String> {
        Ok(Metrics {
            ops_per_sec,
            p99_us: Some(p99),
            ..Default::default()
        })
    }

    /// The tokio row is the variant with the best median: most ops/s, except
    /// heartbeat-under-load (lowest p99); failed variants are passed over, and a subject where
    /// all failed keeps the first one's errors.
    #[test]
    fn the_tokio_row_is_the_best_variant() {
        let seq = Subject::Scenario(Scenario::HeartbeatSeq);
        let load = Subject::Scenario(Scenario::HeartbeatUnderLoad);
        let vote = Subject::Scenario(Scenario::VoteSeq);
        let mut rows = vec![
            row(seq, "raftnet", vec![run(10.0, 1.0)]),
            // Medians: a 20, b 30 (its one fast round does not make it win by itself), c fails.
            row(
                seq,
                "tokio:a/x",
                vec![run(20.0, 9.0), run(25.0, 9.0), run(10.0, 9.0)],
            ),
            row(
                seq,
                "tokio:b/x",
                vec![run(30.0, 1.0), run(29.0, 1.0), run(31.0, 1.0)],
            ),
            row(seq, "tokio:c/x", vec![Err("broken".into())]),
            row(load, "tokio:a/x", vec![run(50.0, 300.0)]),
            row(load, "tokio:b/x", vec![run(10.0, 100.0)]),
            row(vote, "tokio:a/x", vec![Err("first".into())]),
            row(vote, "tokio:b/x", vec![Err("second".into())]),
        ];
        pick_best_tokio(&mut rows);
        let names: Vec<&str> = rows.iter().map(|r| r.imp.as_str()).collect();
        assert_eq!(
            names,
            [
                "raftnet",
                "tokio",
                "tokio:a/x",
                "tokio:b/x",
                "tokio:c/x",
                "tokio",
                "tokio:a/x",
                "tokio:b/x",
                "tokio",
                "tokio:a/x",
                "tokio:b/x"
            ]
        );
        let best = |subject: Subject| {
            let r = rows
                .iter()
                .find(|r| r.subject == subject && r.imp == "tokio")
                .unwrap();
            (r.variant.clone().unwrap(), r.median())
        };
        let (variant, m) = best(seq);
        assert_eq!((variant.as_str(), m.unwrap().ops_per_sec), ("b/x", 30.0));
        let (variant, m) = best(load);
        assert_eq!((variant.as_str(), m.unwrap().p99_us), ("b/x", Some(100.0)));
        let (variant, m) = best(vote);
        assert_eq!((variant.as_str(), m), ("a/x", None));
        let failed = rows
            .iter()
            .find(|r| r.subject == vote && r.imp == "tokio")
            .unwrap();
        assert_eq!(failed.error().as_deref(), Some("first"));
    }

    #[test]
    fn medians() {
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
