//! Runs the real binary over every scenario (the openraft `cluster-*` ones included) and both
//! implementations with short windows and checks its JSON lines: one per scenario and
//! implementation (and one per raw reference), each with the documented fields, and no error
//! rows.

use std::process::Command;

use serde_json::Value;

const SCENARIOS: [&str; 15] = [
    "heartbeat-seq",
    "heartbeat-pipelined",
    "append-100b-seq",
    "append-64x1k-pipelined",
    "append-1m-pipelined",
    "vote-seq",
    "snapshot-64m",
    "heartbeat-under-load",
    "fan-in-1000",
    "cluster-1",
    "cluster-16",
    "cluster-64",
    "cluster-bench-1",
    "cluster-bench-16",
    "cluster-bench-64",
];

const FIELDS: [&str; 14] = [
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
];

fn bench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_raftnet-bench"))
        .args(args)
        .output()
        .expect("run raftnet-bench")
}

#[test]
fn every_scenario_and_implementation_reports() {
    let out = bench(&[
        "--scenario",
        "all",
        "--impl",
        "both",
        // Long enough that a loaded machine still completes an operation of every scenario in
        // the window (0.2 s once saw none for append-64x1k-pipelined under a load of 4.7).
        "--seconds",
        "0.5",
        "--json",
        "--no-svg",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );

    let lines: Vec<Value> = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let mut problems = Vec::new();
    let mut idle = Vec::new();
    for line in &lines {
        if let Some(error) = line.get("error") {
            problems.push(format!(
                "{} {}: error {error}",
                line["scenario"], line["impl"]
            ));
            continue;
        }
        for field in FIELDS {
            if line.get(field).is_none() {
                problems.push(format!(
                    "{} {}: no field {field}",
                    line["scenario"], line["impl"]
                ));
            }
        }
        // raftnet's rows count its drivers' system calls (a run that completed operations made
        // some); no other implementation has that count.
        let calls = &line["driver_system_calls_per_op"];
        let counted = match line["impl"].as_str() {
            Some("raftnet") => {
                calls.as_f64().is_some_and(|v| v > 0.0)
                    || !line["ops_per_sec"].as_f64().is_some_and(|v| v > 0.0)
            }
            _ => calls.is_null(),
        };
        if !counted {
            problems.push(format!(
                "{} {}: driver_system_calls_per_op {calls}",
                line["scenario"], line["impl"]
            ));
        }
        if !line["ops_per_sec"].as_f64().is_some_and(|v| v > 0.0) {
            idle.push((
                line["scenario"].as_str().unwrap_or_default().to_string(),
                line["impl"].as_str().unwrap_or_default().to_string(),
            ));
        }
    }
    // A row that completed nothing in its half second (a 64 MiB snapshot in a debug build on a
    // loaded machine can take longer) runs again alone with a window of 5 s; nothing then
    // fails the test.
    for (scenario, imp) in idle {
        if imp == "raw" {
            problems.push(format!("{scenario} {imp}: no operations completed"));
            continue;
        }
        let again = bench(&[
            "--scenario",
            &scenario,
            "--impl",
            &imp,
            "--seconds",
            "5",
            "--json",
            "--no-svg",
            "--no-raw",
        ]);
        let completed = String::from_utf8_lossy(&again.stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .any(|l| {
                l["scenario"] == scenario.as_str()
                    && l["ops_per_sec"].as_f64().is_some_and(|v| v > 0.0)
            });
        if !completed {
            problems.push(format!(
                "{scenario} {imp}: no operations completed, in 0.5 s nor alone in 5 s"
            ));
        }
    }
    let has = |scenario: &str, imp: &str| {
        lines
            .iter()
            .any(|l| l["scenario"] == scenario && l["impl"] == imp)
    };
    for scenario in SCENARIOS {
        for imp in ["raftnet", "tokio"] {
            if !has(scenario, imp) {
                problems.push(format!("no line for {scenario} {imp}"));
            }
        }
    }
    // The tokio rows of the RPC scenarios say which variant they copy (the best of those
    // run), and that variant's own line is there with the same figures.
    for line in lines
        .iter()
        .filter(|l| l["impl"] == "tokio" && l.get("clients").is_none())
    {
        let variant = line["tokio_variant"].as_str().unwrap_or_default();
        let runtime = line["tokio_runtime"].as_str().unwrap_or_default();
        if !variant.ends_with(&format!("/{runtime}")) || runtime.is_empty() {
            problems.push(format!(
                "{}: tokio_variant {variant:?}, tokio_runtime {runtime:?}",
                line["scenario"]
            ));
            continue;
        }
        let copied = lines.iter().find(|l| {
            l["scenario"] == line["scenario"] && l["impl"] == format!("tokio:{variant}").as_str()
        });
        if copied.is_none_or(|c| c["ops_per_sec"] != line["ops_per_sec"]) {
            problems.push(format!(
                "{}: no tokio:{variant} line with the tokio row's ops/s",
                line["scenario"]
            ));
        }
    }
    // The cluster rows say how many clients wrote.
    for (scenario, clients, store) in [
        ("cluster-1", 1, "memstore"),
        ("cluster-16", 16, "memstore"),
        ("cluster-64", 64, "memstore"),
        ("cluster-bench-1", 1, "bench"),
        ("cluster-bench-16", 16, "bench"),
        ("cluster-bench-64", 64, "bench"),
    ] {
        for line in lines.iter().filter(|l| l["scenario"] == scenario) {
            if line["clients"] != clients || line["store"] != store {
                problems.push(format!(
                    "{scenario} {}: clients {}, store {}",
                    line["impl"], line["clients"], line["store"]
                ));
            }
        }
    }
    for raw in [
        "raw-bulk-1m",
        "raw-pingpong-64b",
        "cluster-64-no-network",
        "cluster-bench-64-no-network",
    ] {
        if !has(raw, "raw") {
            problems.push(format!("no line for {raw}"));
        }
    }
    assert!(
        problems.is_empty(),
        "{}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        problems.join("\n")
    );
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        &["--scenario", "nope"][..],
        &["--impl", "x"],
        &["--seconds"],
        &["--bogus"],
    ] {
        let out = bench(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("usage: raftnet-bench"));
    }
    let help = bench(&["--help"]);
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--scenario"));
}

/// `--tls` runs an RPC scenario over mutual TLS on both implementations: a raftnet row and
/// tokio rows that completed operations, and every tokio row is a `+tls` variant (the
/// tokio-rustls one) and its servers completed TLS handshakes, so a tokio side that quietly
/// ran plaintext fails here.
#[test]
fn tls_runs_both_implementations() {
    let out = bench(&[
        "--tls",
        "--scenario",
        "heartbeat-seq",
        "--impl",
        "both",
        "--seconds",
        "0.5",
        "--rounds",
        "1",
        "--json",
        "--no-svg",
        "--no-raw",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stdout:\n{stdout}\nstderr:\n{stderr}");
    let lines: Vec<Value> = stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let imps: Vec<&str> = lines.iter().filter_map(|l| l["impl"].as_str()).collect();
    assert!(
        lines.iter().all(|l| l.get("error").is_none()),
        "error rows:\n{stdout}"
    );
    assert!(imps.contains(&"raftnet"), "no raftnet row: {imps:?}");
    let tokio_best = lines
        .iter()
        .find(|l| l["impl"] == "tokio")
        .unwrap_or_else(|| panic!("no tokio row: {imps:?}"));
    let variant = tokio_best["tokio_variant"].as_str().unwrap_or_default();
    assert!(variant.ends_with("+tls"), "tokio's best ran {variant:?}");
    let variants: Vec<&&str> = imps.iter().filter(|i| i.starts_with("tokio:")).collect();
    assert!(!variants.is_empty(), "no tokio variant rows: {imps:?}");
    assert!(
        variants.iter().all(|v| v.ends_with("+tls")),
        "a tokio variant without TLS: {variants:?}"
    );
    // (After the progress line, which ends in a carriage return, not a newline.)
    let handshakes: u64 = stderr
        .split_once("raftnet-bench: tokio TLS handshakes: ")
        .and_then(|(_, n)| n.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no handshake count:\n{stderr}"));
    assert!(
        handshakes >= variants.len() as u64,
        "{handshakes} tokio TLS handshakes for {variants:?}"
    );
    for line in &lines {
        assert!(
            line["ops_per_sec"].as_f64().is_some_and(|v| v > 0.0),
            "{} completed nothing:\n{stdout}",
            line["impl"]
        );
    }
}
