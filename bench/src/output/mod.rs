//! How the results are shown: JSON lines ([`json`]) or the table ([`table`]) on stdout, and the
//! SVG chart ([`svg`]); plus what the table and the chart share, their header lines and number
//! formats.

pub(crate) mod json;
pub(crate) mod svg;
pub(crate) mod table;

use std::io::Write;

use raftnet_bench::pin::Placement;
use raftnet_bench::tokio_impl::Flavor;

use crate::results::Results;

/// Print the results on stdout (the table, or JSON lines with `--json`), then write the chart
/// where `--svg` says and tell where it went.
pub(crate) fn print(results: &Results) {
    let options = &results.options;
    let mut out = std::io::stdout().lock();
    if options.json {
        for line in json::json_lines(results) {
            let _ = writeln!(out, "{line}");
        }
    } else {
        let _ = write!(out, "{}", table::render_table(results));
    }
    let _ = out.flush();
    if let Some(path) = &options.svg {
        let message = match svg::write_svg(path, &svg::build_chart(results)) {
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
}

/// The tokio baseline's runtime flavour in the RPC scenarios, and whether it was chosen for
/// the placement (`--tokio-runtime auto`).
pub(crate) fn tokio_flavor(results: &Results) -> (Flavor, bool) {
    let o = &results.options;
    match o.tokio_runtime {
        Some(f) => (f, false),
        None => (Flavor::best_for(o.placement), true),
    }
}

fn flavor_description(f: Flavor) -> String {
    match f {
        Flavor::CurrentThread => "a current-thread runtime per node".into(),
        Flavor::MultiThread(n) => format!(
            "a multi-thread runtime of {n} worker{} per node",
            if n == 1 { "" } else { "s" }
        ),
    }
}

pub(super) fn header_lines(results: &Results) -> Vec<String> {
    let o = &results.options;
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mut lines = vec![
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
        "CPU µs/op: getrusage user+sys of the whole process (client and server ends) per op".into(),
        "switch/op: context switches per op of every thread of the process, exited ones included (getrusage RUSAGE_SELF), = vol (blocked and woken: wake-ups) + invol (preempted, or yielded while runnable: spin-then-yield hand-offs); with rounds, each figure is its own median".into(),
    ];
    let rpc_scenarios = o.scenarios.iter().any(|s| s.cluster_clients().is_none());
    if rpc_scenarios && results.impl_names.iter().any(|n| n == "tokio") {
        let (flavor, auto) = tokio_flavor(results);
        let design = match o.tokio_design {
            None => "every variant run, the tokio row is the best per scenario (named: DESIGN/RUNTIME; direct = one task per connection answers in place and writes once per batch, tasks = reader and writer tasks, votes and appends through a consumer task)".to_string(),
            Some(d) => format!("design {} only (--tokio-design)", d.name()),
        };
        lines.push(format!(
            "tokio baseline: {design}; the tasks design on {} (--tokio-runtime {}{})",
            flavor_description(flavor),
            flavor.name(),
            if auto {
                format!(", chosen for placement {}", o.placement.name())
            } else {
                String::new()
            }
        ));
    }
    lines
}

fn placement_description(p: Placement) -> &'static str {
    match p {
        Placement::Same => "every thread on CPU 0",
        Placement::Split => "server threads on CPU 1, client threads on CPU 0",
        Placement::None => "the scheduler decides",
    }
}

/// A short human number with about three significant digits: 1234567 → "1.23M".
pub(super) fn si(v: f64) -> String {
    let a = v.abs();
    let scaled = |div: f64, unit: &str| {
        let x = v / div;
        let decimals = match x.abs() {
            m if m >= 99.95 => 0,
            m if m >= 9.995 => 1,
            _ => 2,
        };
        format!("{x:.decimals$}{unit}")
    };
    if a >= 999.5e6 {
        scaled(1e9, "G")
    } else if a >= 999.5e3 {
        scaled(1e6, "M")
    } else if a >= 1e4 {
        scaled(1e3, "k")
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

/// A latency or per-op figure with about three significant digits.
pub(super) fn num(v: f64) -> String {
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
pub(crate) fn secs(v: f64) -> String {
    format!("{}", (v * 1000.0).round() / 1000.0)
}

pub(super) fn opt(v: Option<f64>, f: fn(f64) -> String) -> String {
    v.map_or_else(|| "-".into(), f)
}

pub(super) fn times(v: f64) -> String {
    if v >= 100.0 {
        format!("{v:.0}x")
    } else if v >= 10.0 {
        format!("{v:.1}x")
    } else {
        format!("{v:.2}x")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_numbers() {
        assert_eq!(si(1_234_567.0), "1.23M");
        assert_eq!(si(12_345_678.0), "12.3M");
        assert_eq!(si(999_999.0), "1.00M");
        assert_eq!(si(100_000.0), "100k");
        assert_eq!(si(72_400.0), "72.4k");
        assert_eq!(si(4.85e9), "4.85G");
        assert_eq!(si(4850.0), "4850");
        assert_eq!(si(13.27), "13.3");
        assert_eq!(si(0.583), "0.58");
    }
}
