//! Feature `metrics`: `Metrics::publish` hands every metric to the `metrics` crate's facade under
//! its documented name and labels, and Prometheus' exporter renders them as the docs say, after
//! known traffic between two real transports.

use std::collections::HashMap;
use std::time::Duration;

use metrics::{Label, Unit};
use metrics_exporter_prometheus::PrometheusBuilder;
use metrics_util::MetricKind;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use raftnet::message::{RequestVoteRequest, RequestVoteResponse};
use raftnet::{CallOptions, Config, Metrics, NetTransport, RpcType, ServerId, Transport};

const VOTES: u64 = 3;

/// Two transports over loopback after `VOTES` RequestVote calls from the first to the second,
/// each answered: `(client, server)`.
fn after_three_votes() -> (NetTransport, NetTransport) {
    let config = Config::default().timeout(Some(Duration::from_secs(30)));
    let client = NetTransport::bind("127.0.0.1:0", None, config.clone()).expect("bind client");
    let server = NetTransport::bind("127.0.0.1:0", None, config).expect("bind server");
    let consumer = server.consumer().clone();
    let raft = std::thread::spawn(move || {
        for _ in 0..VOTES {
            let rpc = consumer.recv().expect("a vote");
            rpc.respond_ok(RequestVoteResponse {
                term: 1,
                granted: true,
                ..Default::default()
            });
        }
    });
    for term in 1..=VOTES {
        let request = RequestVoteRequest {
            term,
            ..Default::default()
        };
        let answer = client
            .request_vote(
                &ServerId::from("server"),
                &server.local_addr(),
                request,
                CallOptions::default(),
            )
            .wait()
            .expect("the vote is answered");
        assert!(answer.granted);
    }
    raft.join().expect("the Raft side answered every vote");
    (client, server)
}

/// What a recorder saw, by (kind, name, labels sorted).
type Published = HashMap<(MetricKind, String, Vec<(String, String)>), (Option<Unit>, DebugValue)>;

fn publish_to_debugging_recorder(m: &Metrics) -> Published {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    metrics::with_local_recorder(&recorder, || m.publish());
    let mut published = HashMap::new();
    for (key, unit, _help, value) in snapshotter.snapshot().into_vec() {
        let (kind, key) = key.into_parts();
        let mut labels: Vec<(String, String)> = key
            .labels()
            .map(|l: &Label| (l.key().to_string(), l.value().to_string()))
            .collect();
        labels.sort();
        let name = key.name().to_string();
        let previous = published.insert((kind, name.clone(), labels.clone()), (unit, value));
        assert!(previous.is_none(), "{name} {labels:?} published twice");
    }
    published
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut labels: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.sort();
    labels
}

fn value(published: &Published, kind: MetricKind, name: &str, with: &[(&str, &str)]) -> DebugValue {
    let (_, value) = published
        .get(&(kind, name.to_string(), labels(with)))
        .unwrap_or_else(|| panic!("{kind:?} {name} {with:?} was not published"));
    match value {
        DebugValue::Counter(n) => DebugValue::Counter(*n),
        DebugValue::Gauge(g) => DebugValue::Gauge(*g),
        DebugValue::Histogram(h) => DebugValue::Histogram(h.clone()),
    }
}

fn gauge(seconds: f64) -> DebugValue {
    DebugValue::Gauge(seconds.into())
}

/// Three RequestVote calls are 3 on `raftnet.callsSent{rpcType="RequestVote"}` at the caller
/// and `raftnet.rpcsReceived{rpcType="RequestVote"}` at the callee, 0 for every other type; the
/// call timer is published as quantile gauges, max and sum in seconds and a count; every metric
/// once, with no unlabelled copy of a per-type one.
#[test]
fn publish_sets_every_metric_under_its_name_and_labels() {
    let (client, server) = after_three_votes();
    let sent = client.metrics();
    let received = server.metrics();
    let from_client = publish_to_debugging_recorder(&sent);
    let from_server = publish_to_debugging_recorder(&received);

    use MetricKind::{Counter, Gauge};
    for t in RpcType::ALL {
        let rpc_type = [("rpcType", t.as_str())];
        let votes = if t == RpcType::RequestVote { VOTES } else { 0 };
        assert_eq!(
            value(&from_client, Counter, Metrics::CALLS_SENT, &rpc_type),
            DebugValue::Counter(votes),
            "{t}"
        );
        assert_eq!(
            value(&from_server, Counter, Metrics::RPCS_RECEIVED, &rpc_type),
            DebugValue::Counter(votes),
            "{t}"
        );
        assert_eq!(
            value(&from_client, Counter, "raftnet.call.count", &rpc_type),
            DebugValue::Counter(votes),
            "{t}"
        );
    }
    // The label is part of every per-type series: none is published without it.
    assert!(!from_client.contains_key(&(Counter, Metrics::CALLS_SENT.into(), vec![])));

    // The call timer of the votes, as the snapshot has it.
    let calls = sent.call_latency[RpcType::RequestVote];
    assert_eq!(calls.count, VOTES);
    assert!(calls.p50 > Duration::ZERO && calls.p50 <= calls.p99);
    assert!(calls.p99 <= calls.p999 && calls.p999 <= calls.max);
    let vote = ("rpcType", "RequestVote");
    for (quantile, p) in [
        ("0.5", calls.p50),
        ("0.99", calls.p99),
        ("0.999", calls.p999),
    ] {
        assert_eq!(
            value(
                &from_client,
                Gauge,
                Metrics::CALL,
                &[vote, ("quantile", quantile)]
            ),
            gauge(p.as_secs_f64()),
            "quantile {quantile}"
        );
    }
    assert_eq!(
        value(&from_client, Gauge, "raftnet.call.max", &[vote]),
        gauge(calls.max.as_secs_f64())
    );
    assert_eq!(
        value(&from_client, Gauge, "raftnet.call.sum", &[vote]),
        gauge(calls.sum.as_secs_f64())
    );
    // A timer without samples: NaN percentiles (as a Prometheus summary has), a zero count.
    let heartbeat = ("rpcType", "Heartbeat");
    match value(
        &from_client,
        Gauge,
        Metrics::CALL,
        &[heartbeat, ("quantile", "0.99")],
    ) {
        DebugValue::Gauge(g) => assert!(g.is_nan(), "{g}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        value(&from_client, Counter, "raftnet.call.count", &[heartbeat]),
        DebugValue::Counter(0)
    );
    // Transport-wide ones carry no label.
    assert_eq!(
        value(&from_client, Counter, Metrics::DIALS, &[]),
        DebugValue::Counter(sent.dials)
    );
    assert_eq!(sent.dials, 1, "three calls on one pooled connection");
    assert_eq!(
        value(&from_server, Counter, Metrics::BYTES_READ, &[]),
        DebugValue::Counter(received.bytes_read)
    );
    assert_eq!(
        value(&from_server, Gauge, Metrics::OPEN_CONNECTIONS, &[]),
        gauge(received.open_connections as f64)
    );

    // Units: timers in seconds, bytes in bytes, the rest none.
    let unit = |kind, name: &str, with: &[(&str, &str)]| {
        from_client[&(kind, name.to_string(), labels(with))].0
    };
    assert_eq!(
        unit(Gauge, Metrics::CALL, &[vote, ("quantile", "0.5")]),
        Some(Unit::Seconds)
    );
    assert_eq!(
        unit(Counter, Metrics::BYTES_WRITTEN, &[]),
        Some(Unit::Bytes)
    );
    assert_eq!(unit(Counter, Metrics::DIALS, &[]), None);

    // Every metric once: 28 transport-wide, 3 per-type counters and 4 per-type timers of 6
    // series each (3 quantiles, max, sum, count), for each of the 6 types.
    assert_eq!(from_client.len(), 28 + 6 * (3 + 4 * 6));
    assert_eq!(from_server.len(), from_client.len());
}

/// Prometheus' exporter renders what was published as `name{labels} value` lines: the dots of
/// raftnet's names become underscores, a timer reads as a summary does.
#[test]
fn prometheus_text_has_the_documented_lines() {
    let (client, _server) = after_three_votes();
    let m = client.metrics();
    let recorder = PrometheusBuilder::new().build_recorder();
    metrics::with_local_recorder(&recorder, || m.publish());
    let text = recorder.handle().render();
    let lines: Vec<&str> = text.lines().collect();
    let has = |line: &str| {
        assert!(
            lines.contains(&line),
            "no line {line:?} in the rendered text:\n{text}"
        )
    };

    has("# TYPE raftnet_callsSent counter");
    has("raftnet_callsSent{rpcType=\"RequestVote\"} 3");
    has("raftnet_callsSent{rpcType=\"Heartbeat\"} 0");
    has("# TYPE raftnet_call_count counter");
    has("raftnet_call_count{rpcType=\"RequestVote\"} 3");
    has("# TYPE raftnet_call gauge");
    let p99 = m.call_latency[RpcType::RequestVote].p99.as_secs_f64();
    has(&format!(
        "raftnet_call{{rpcType=\"RequestVote\",quantile=\"0.99\"}} {p99}"
    ));
    has("raftnet_call{rpcType=\"Heartbeat\",quantile=\"0.99\"} NaN");
    has("raftnet_dials 1");
    has("# HELP raftnet_dials Outbound connections started.");
}
