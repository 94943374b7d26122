//! `--json`: one JSON object per line and row, with the row's metrics and the comparisons
//! derived from them (`vs_tokio`, the Go rows' `vs_go`, the fraction of its raw reference, heartbeat-under-load against
//! the idle p99), and the invocation's settings.

use serde_json::{Map, Value, json};

use raftnet_bench::raw::Raw;
use raftnet_bench::scenario::Scenario;

use crate::results::{COMPARISONS, Results, Subject, TOKIO_VARIANT, under_load, versus, vs_raw};

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

pub(crate) fn json_lines(results: &Results) -> Vec<Value> {
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
                    // Context switches per op of every thread (exited ones included): the
                    // sum, and its two kinds (wakeups_per_op = voluntary).
                    obj.insert("switches_per_op".into(), opt3(m.switches_per_op));
                    obj.insert("wakeups_per_op".into(), opt3(m.wakeups_per_op));
                    obj.insert(
                        "involuntary_switches_per_op".into(),
                        opt3(m.involuntary_per_op),
                    );
                    // raftnet only: its drivers' own count (`Metrics::system_calls`).
                    obj.insert(
                        "driver_system_calls_per_op".into(),
                        opt3(m.system_calls_per_op),
                    );
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
                            if let Some(store) = s.cluster_store() {
                                obj.insert("store".into(), json!(store.name()));
                            }
                            if row.imp == "raftnet" {
                                obj.insert("reactor".into(), json!(o.reactor.name()));
                            }
                        } else if row.imp == "tokio" || row.imp.starts_with(TOKIO_VARIANT) {
                            // `tokio`: the best variant's copy, and which it is.
                            let variant = row
                                .variant
                                .as_deref()
                                .unwrap_or(row.imp.strip_prefix(TOKIO_VARIANT).unwrap_or_default());
                            if let Some((design, runtime)) = variant.split_once('/') {
                                obj.insert("tokio_design".into(), json!(design));
                                obj.insert("tokio_runtime".into(), json!(runtime));
                            }
                            if row.imp == "tokio" {
                                obj.insert("tokio_variant".into(), json!(variant));
                            }
                        }
                        // raftnet's vs_tokio; the Go rows' vs_go.
                        for (first, second) in COMPARISONS {
                            if row.imp != first {
                                continue;
                            }
                            let Some(v) = versus(results, s, first, second) else {
                                continue;
                            };
                            obj.insert(
                                format!("vs_{second}"),
                                json!({
                                    "ops_ratio": opt3(v.ops),
                                    "mb_ratio": opt3(v.mb),
                                    "p50_speedup": opt3(v.p50),
                                    "p99_speedup": opt3(v.p99),
                                    "p999_speedup": opt3(v.p999),
                                    "cpu_saving": opt3(v.cpu),
                                    "switch_saving": opt3(v.switches),
                                }),
                            );
                        }
                        if let Some(v) = vs_raw(results, s, &m) {
                            let key = match v.raw {
                                Raw::Bulk => "mb_fraction_of_raw_bulk",
                                Raw::PingPong => "ops_fraction_of_raw_pingpong",
                                Raw::ClusterNoNetwork | Raw::ClusterBenchNoNetwork => {
                                    "ops_fraction_of_no_network"
                                }
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
