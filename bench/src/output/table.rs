//! The table on stdout: the raw loopback references, then a line per scenario and
//! implementation with a raftnet÷tokio line under each pair (and the Go rows' ÷go lines), then notes (what the ratios and
//! columns mean, heartbeat-under-load against the idle p99, failed rounds, stuck runs).

use raftnet_bench::raw::Raw;
use raftnet_bench::scenario::{NOT_APPLICABLE, Scenario};

use super::{header_lines, num, opt, si, times};
use crate::results::{
    COMPARISONS, Metrics, Results, Row, Subject, VsRaw, under_load, versus, vs_raw,
};

const COLUMNS: [(&str, usize); 14] = [
    ("ops/s", 9),
    ("MB/s", 8),
    ("p50 µs", 8),
    ("p99 µs", 8),
    ("p999 µs", 8),
    ("CPU µs/op", 10),
    ("(user+sys)", 14),
    ("switch/op", 9),
    ("(vol+invol)", 14),
    ("calls/op", 8),
    ("cores", 6),
    ("others", 7),
    ("vs raw", 12),
    ("", 0),
];
const NAME_WIDTH: usize = 24;
const IMPL_WIDTH: usize = 20;

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
        opt(m.switches_per_op, num),
        match (m.wakeups_per_op, m.involuntary_per_op) {
            (Some(v), Some(i)) => format!("({}+{})", num(v), num(i)),
            _ => "-".into(),
        },
        opt(m.system_calls_per_op, |v| format!("{v:.3}")),
        format!("{:.2}", m.cpu_cores),
        opt(m.others_cores, |v| format!("{v:.2}")),
        vs_raw.map_or_else(String::new, |v| {
            format!(
                "{:.2}x {}",
                v.fraction,
                match v.raw {
                    Raw::Bulk => "bulk",
                    Raw::PingPong => "pp",
                    Raw::ClusterNoNetwork | Raw::ClusterBenchNoNetwork => "nonet",
                }
            )
        }),
    ]
}

fn error_line(name: &str, imp: &str, error: &str) -> String {
    if error.starts_with(NOT_APPLICABLE) {
        // Not a failure: the implementation does not run this scenario.
        return format!("{name:<NAME_WIDTH$} {imp:<IMPL_WIDTH$} {error}");
    }
    format!("{name:<NAME_WIDTH$} {imp:<IMPL_WIDTH$} error: {error}")
}

pub(crate) fn render_table(results: &Results) -> String {
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
            // The tokio row names the variant it is (the best of those run), unless it is the
            // cluster network's (the cluster scenarios have one tokio network).
            let name = match &row.variant {
                Some(v) if scenario.cluster_clients().is_none() => format!("{imp} {v}"),
                _ => imp.clone(),
            };
            let label = if row.after_stuck.is_some() {
                format!("{name}*")
            } else {
                name
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
        for (first, second) in COMPARISONS {
            let Some(v) = versus(results, scenario, first, second) else {
                continue;
            };
            let x = |v: Option<f64>| opt(v, times);
            out.push(table_line(
                "",
                &format!("{first}÷{second}"),
                &[
                    x(v.ops),
                    x(v.mb),
                    x(v.p50),
                    x(v.p99),
                    x(v.p999),
                    x(v.cpu),
                    String::new(),
                    x(v.switches),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ],
            ));
        }
    }
    out.push(String::new());
    let ran = |imp: &str| results.impl_names.iter().any(|n| n == imp);
    if COMPARISONS.iter().any(|(a, b)| ran(a) && ran(b)) {
        out.push(
            "A÷B rows: ops/s and MB/s are A ÷ B; latency, CPU/op and switch/op are B ÷ A (lower \
             is better there), so > 1.00x always means A is better."
                .into(),
        );
    }
    if ran("go") || ran("go-2proc") || ran("raftnet-to-go") || ran("go-to-raftnet") {
        out.push(
            "go: hashicorp/raft 1.1.2's NetworkTransport (Go), client and server in one Go process; go-2proc: the same in two Go processes; raftnet-to-go: raftnet's client in hashicorp/raft's format calling that Go server; go-to-raftnet: the Go client calling raftnet's server in that format; raftnet-hc: raftnet at both ends in that format. CPU µs/op and switch/op add the Go process's own getrusage over the window; n/a: a scenario the Go program does not run."
                .into(),
        );
    }
    out.push(
        "vs raw: append-1m-pipelined and snapshot-64m payload MB/s ÷ raw-bulk-1m MB/s (bulk); sequential scenarios' ops/s ÷ raw-pingpong-64b round trips/s (pp); cluster-64 (cluster-bench-64) writes/s ÷ cluster-64-no-network (cluster-bench-64-no-network) writes/s (nonet)."
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
            format!("cluster-N: a 3-node openraft 0.9.25 cluster (openraft-memstore; cluster-bench-N: the benchmark store, entries kept without JSON; a 2-worker runtime per node) over each network (raftnet's reactors: --reactor {}), N clients calling client_write on the leader: ops/s = committed writes/s, latency = commit latency, CPU µs/op = CPU per write of all three nodes and the clients.", results.options.reactor.name()),
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
            "* measured after {first} did not return from its run: its threads may still be running, and their CPU time and context switches are counted in the rows marked *"
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
