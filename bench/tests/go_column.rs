//! The Go column (`--impl go-all`): hashicorp/raft's NetworkTransport in Go, raftnet with the
//! hashicorp codec calling it and called by it, and raftnet with that codec at both ends, run
//! by the real binary with short windows. Each row completes operations with every answer
//! checked, its CPU per op includes the Go process's (a Go round trip costs microseconds; the
//! harness's own polling, a hundredth of that), the ÷go comparisons are there, and a scenario
//! the Go program does not run says n/a. Without Go the binary skips the Go rows, saying why,
//! and this test prints SKIPPED.

use std::process::Command;

use serde_json::Value;

#[test]
fn the_go_rows_report_or_are_skipped_with_a_reason() {
    let out = Command::new(env!("CARGO_BIN_EXE_raftnet-bench"))
        .args([
            "--impl",
            "go-all",
            "--scenario",
            "heartbeat-seq,append-64x1k-pipelined,cluster-1",
            "--seconds",
            "0.3",
            "--json",
            "--no-svg",
            "--no-raw",
        ])
        .output()
        .expect("run raftnet-bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        out.status
    );
    if let Some(why) = raftnet_bench::go_impl::go_missing() {
        assert!(
            stderr.contains("the Go rows are skipped"),
            "no reason given:\n{stderr}"
        );
        eprintln!("SKIPPED: {why}");
        return;
    }
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let row = |scenario: &str, imp: &str| {
        lines
            .iter()
            .find(|l| l["scenario"] == scenario && l["impl"] == imp)
            .unwrap_or_else(|| panic!("no {scenario} {imp} line in\n{stdout}"))
    };
    for imp in [
        "raftnet-hc",
        "go",
        "go-2proc",
        "raftnet-to-go",
        "go-to-raftnet",
    ] {
        for scenario in ["heartbeat-seq", "append-64x1k-pipelined"] {
            let line = row(scenario, imp);
            assert!(line.get("error").is_none(), "{line}");
            assert!(line["ops_per_sec"].as_f64().unwrap() > 0.0, "{line}");
            assert!(line["p50_us"].as_f64().unwrap() > 0.0, "{line}");
            // Both ends' CPU: a round trip through Go's transport takes microseconds of it (the
            // go row's ends are both in the Go process: the harness's process only polls).
            let cpu = line["cpu_us_per_op"].as_f64().unwrap();
            assert!(cpu > 2.0, "CPU µs/op {cpu} leaves an end out: {line}");
            if imp != "go" && imp != "go-2proc" {
                assert!(line["vs_go"]["ops_ratio"].as_f64().unwrap() > 0.0, "{line}");
            }
            if imp.ends_with("raftnet") || imp.starts_with("raftnet-to") {
                assert!(
                    line["vs_go-2proc"]["ops_ratio"].as_f64().unwrap() > 0.0,
                    "{line}"
                );
            }
        }
        let line = row("cluster-1", imp);
        assert!(line["error"].as_str().unwrap().starts_with("n/a"), "{line}");
    }
    let p = row("append-64x1k-pipelined", "go");
    assert!(p["mb_per_sec"].as_f64().unwrap() > 0.0, "{p}");
}
