//! What a user debugging a cluster sees through `tracing`: a capturing subscriber (a layer on
//! tracing-subscriber's registry, installed once as the global default of this test binary,
//! since the transport's driver logs from a thread of its own) records every event with its
//! fields and the fields of every span around it. Each test binds its transports inside a
//! `node` span of its own and reads only the events under it, so the tests of this binary run
//! in parallel without seeing each other's events.
//!
//! The `log` side (no tracing subscriber at all) is `tests/logs_without_tracing.rs`: installing
//! a subscriber here turns tracing's `log` records off for the whole process.

mod common;

use std::collections::BTreeMap;
use std::fmt;
use std::io::{Cursor, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use raftnet::message::{AppendEntriesResponse, Request, RequestVoteResponse};
use raftnet::{CallOptions, Config, Error, NetTransport, ServerAddress, ServerId, Transport};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

use common::fixtures::{
    SNAPSHOT_BODY, heartbeat_request, snapshot_request, snapshot_response, vote_request,
};
use common::net::{EVENTUALLY, finish, unused_addr};
use common::peers::{join, serve};

// ---- the capturing subscriber --------------------------------------------------------------

/// Field values as text (`%` and `?` values as they print, strings as they are).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Fields(BTreeMap<String, String>);

impl Fields {
    fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.0.insert(field.name().into(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
}

/// One span around an event: its name and fields.
#[derive(Clone, Debug)]
struct SpanSeen {
    name: &'static str,
    fields: Fields,
}

/// One event as the subscriber saw it.
#[derive(Clone, Debug)]
struct Seen {
    level: Level,
    target: String,
    message: String,
    fields: Fields,
    /// The spans it is in, innermost first.
    spans: Vec<SpanSeen>,
}

impl Seen {
    /// The span named `name` around this event.
    fn span(&self, name: &str) -> Option<&SpanSeen> {
        self.spans.iter().find(|s| s.name == name)
    }

    /// Whether it happened under `node{id = node}`.
    fn under(&self, node: &str) -> bool {
        self.span("node")
            .is_some_and(|s| s.fields.get("id") == Some(node))
    }

    /// The key of the connection span it is in.
    fn conn(&self) -> Option<&str> {
        self.span("conn").and_then(|s| s.fields.get("conn"))
    }
}

static SEEN: Mutex<Vec<Seen>> = Mutex::new(Vec::new());

/// Records every span's fields in its extensions and every event with its spans.
struct Capture;

impl<S> Layer<S> for Capture
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        if let Some(span) = ctx.span(id)
            && let Some(fields) = span.extensions_mut().get_mut::<Fields>()
        {
            values.record(fields);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let message = fields.0.remove("message").unwrap_or_default();
        let spans = ctx
            .event_scope(event)
            .map(|scope| {
                scope
                    .map(|span| SpanSeen {
                        name: span.name(),
                        fields: span
                            .extensions()
                            .get::<Fields>()
                            .cloned()
                            .unwrap_or_default(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        SEEN.lock().unwrap_or_else(|e| e.into_inner()).push(Seen {
            level: *event.metadata().level(),
            target: event.metadata().target().into(),
            message,
            fields,
            spans,
        });
    }
}

/// Install the capturing subscriber (once per test binary).
fn capture() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let subscriber = tracing_subscriber::registry().with(Capture);
        tracing::subscriber::set_global_default(subscriber).expect("no other subscriber");
    });
}

/// The raftnet events under `node{id = node}` so far, in order.
fn events_under(node: &str) -> Vec<Seen> {
    SEEN.lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .filter(|e| e.target.starts_with("raftnet") && e.under(node))
        .cloned()
        .collect()
}

/// Wait until an event under `node` satisfies `wanted`, then return all events under `node`.
fn wait_for_event(node: &str, what: &str, wanted: impl Fn(&Seen) -> bool) -> Vec<Seen> {
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        let events = events_under(node);
        if events.iter().any(&wanted) {
            return events;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not logged within {EVENTUALLY:?}; under {node}: {events:#?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A transport on an ephemeral loopback port, bound inside `node{id = node}` (as an application
/// names its node), with the capturing subscriber installed.
fn bind_as(node: &str, config: Config) -> NetTransport {
    capture();
    let span = tracing::info_span!("node", id = node);
    span.in_scope(|| NetTransport::bind("127.0.0.1:0", None, config))
        .expect("bind 127.0.0.1:0")
}

/// The fields as a map, for comparing with `assert_eq!`.
fn fields(pairs: &[(&str, &str)]) -> Fields {
    Fields(
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    )
}

fn messages(events: &[Seen]) -> Vec<(Level, &str)> {
    events
        .iter()
        .map(|e| (e.level, e.message.as_str()))
        .collect()
}

// ---- the tests -----------------------------------------------------------------------------

/// Garbage sent to a listener: one WARN naming the peer, in the connection's span (its peer,
/// `accepted`, its key) under the transport's (its listener) under the application's node span;
/// the connection's life around it at DEBUG: accepted, then closed with the same error.
#[test]
fn a_protocol_error_is_a_warning_in_the_connection_span() {
    let node = "protocol-error";
    let server = bind_as(node, Config::default());
    let listener = server.bound_addr();
    let mut stray = TcpStream::connect(listener).expect("connect");
    let peer = stray.local_addr().expect("the stray's address").to_string();
    stray
        .write_all(b"GET / HTTP/1.1\r\nHost: raft\r\n\r\n")
        .expect("send");
    stray
        .set_read_timeout(Some(EVENTUALLY))
        .expect("read timeout");
    // The server answers with its preamble and closes the connection.
    let _ = stray.read_to_end(&mut Vec::new());

    let events = wait_for_event(node, "the connection closed", |e| {
        e.message == "connection closed"
    });
    let error = "not a raftnet connection: it began with 47 45 54 20 2f 20 48 54 (\"GET / HT\"), \
                 which looks like an HTTP client";
    let warnings: Vec<&Seen> = events.iter().filter(|e| e.level <= Level::WARN).collect();
    assert_eq!(warnings.len(), 1, "one warning: {warnings:#?}");
    let warning = warnings[0];
    assert_eq!(warning.level, Level::WARN);
    assert_eq!(warning.target, "raftnet::engine");
    assert_eq!(warning.message, "closing the connection: protocol error");
    assert_eq!(warning.fields, fields(&[("peer", &peer), ("error", error)]));

    // Its spans: the connection's, the transport's, the node's.
    let names: Vec<&str> = warning.spans.iter().map(|s| s.name).collect();
    assert_eq!(names, ["conn", "raftnet", "node"]);
    let conn = warning.conn().expect("a connection key").to_string();
    assert!(
        conn.strip_prefix("conn#")
            .and_then(|k| k.split_once('.'))
            .is_some_and(|(index, generation)| index.parse::<u32>().is_ok()
                && generation.parse::<u32>().is_ok_and(|g| g > 0)),
        "the engine's key, slot and generation: {conn}"
    );
    assert_eq!(
        warning.spans[0].fields,
        fields(&[("conn", &conn), ("peer", &peer), ("dir", "accepted")])
    );
    assert_eq!(
        warning.spans[1].fields,
        fields(&[("listener", &listener.to_string())])
    );

    // The connection's whole life, in its span.
    let life: Vec<&Seen> = events
        .iter()
        .filter(|e| e.conn() == Some(conn.as_str()))
        .collect();
    assert_eq!(
        messages(&life.iter().map(|e| (*e).clone()).collect::<Vec<_>>()),
        [
            (Level::DEBUG, "accepted"),
            (Level::WARN, "closing the connection: protocol error"),
            (Level::DEBUG, "connection closed"),
        ]
    );
    assert_eq!(
        life[2].fields,
        fields(&[
            ("peer", &peer),
            ("reason", &format!("protocol error: {error}"))
        ])
    );
}

/// A call from one node to another, traced on both: the caller's dialled connection (its lane)
/// sends it and receives the answer, the server's accepted connection receives it and answers,
/// all four naming the RPC and the same request id.
#[test]
fn each_call_is_traced_on_both_sides_with_its_request_id() {
    let (client_node, server_node) = ("caller", "callee");
    let client = bind_as(client_node, Config::default());
    let server = bind_as(server_node, Config::default());
    let responder = serve(server.consumer(), 1, |rpc| {
        rpc.respond_ok(RequestVoteResponse {
            term: 3,
            granted: true,
            ..Default::default()
        })
    });
    let target = server.bound_addr().to_string();
    let vote = client.request_vote(
        &ServerId::from("callee"),
        &server.local_addr(),
        vote_request(),
        CallOptions::default(),
    );
    assert!(finish(vote).expect("granted").granted);
    join(responder);

    let sent = wait_for_event(client_node, "the answer", |e| e.message == "call answered");
    let calls: Vec<&Seen> = sent.iter().filter(|e| e.level == Level::TRACE).collect();
    assert_eq!(
        calls.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
        ["call sent", "call answered"],
        "{calls:#?}"
    );
    let request_id = calls[0].fields.get("request_id").expect("a request id");
    assert_eq!(
        calls[0].fields,
        fields(&[
            ("peer", &target),
            ("rpc", "RequestVote"),
            ("request_id", request_id)
        ])
    );
    assert_eq!(calls[1].fields.get("request_id"), Some(request_id));
    assert_eq!(calls[1].fields.get("rpc"), Some("RequestVote"));
    assert!(calls[1].fields.get("latency").is_some(), "{:?}", calls[1]);
    for call in &calls {
        let span = call.span("conn").expect("in the connection's span");
        assert_eq!(span.fields.get("dir"), Some("dialled"));
        assert_eq!(span.fields.get("lane"), Some("Control"));
        assert_eq!(span.fields.get("peer"), Some(target.as_str()));
    }

    let served = wait_for_event(server_node, "the answer", |e| e.message == "answering");
    let requests: Vec<&Seen> = served.iter().filter(|e| e.level == Level::TRACE).collect();
    assert_eq!(
        requests
            .iter()
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>(),
        ["request received", "answering"]
    );
    for request in &requests {
        assert_eq!(request.fields.get("rpc"), Some("RequestVote"));
        assert_eq!(request.fields.get("request_id"), Some(request_id));
        let span = request.span("conn").expect("in the connection's span");
        assert_eq!(span.fields.get("dir"), Some("accepted"));
        assert_eq!(span.fields.get("lane"), None);
    }
}

/// A heartbeat handler runs on the driver while it reads the connection, inside that
/// connection's span: what the application logs there carries the connection's fields.
#[test]
fn a_heartbeat_handler_logs_inside_the_connection_span() {
    let (client_node, server_node) = ("heartbeat-sender", "heartbeat-handler");
    let client = bind_as(client_node, Config::default());
    let server = bind_as(server_node, Config::default());
    server.set_heartbeat_handler(Some(Arc::new(|rpc: raftnet::Rpc| {
        tracing::info!(target: "raftnet_app", "handling a heartbeat");
        rpc.respond_ok(AppendEntriesResponse {
            term: 10,
            success: true,
            ..Default::default()
        });
    })));
    let heartbeat = client.append_entries(
        &ServerId::from("handler"),
        &server.local_addr(),
        heartbeat_request(),
        CallOptions::default(),
    );
    assert!(finish(heartbeat).expect("answered").success);

    let deadline = Instant::now() + EVENTUALLY;
    let handled = loop {
        let seen = SEEN.lock().unwrap_or_else(|e| e.into_inner()).clone();
        if let Some(e) = seen
            .into_iter()
            .find(|e| e.target == "raftnet_app" && e.under(server_node))
        {
            break e;
        }
        assert!(
            Instant::now() < deadline,
            "the handler's event was not seen"
        );
        std::thread::sleep(Duration::from_millis(1));
    };
    assert_eq!(
        handled.spans.iter().map(|s| s.name).collect::<Vec<_>>(),
        ["conn", "raftnet", "node"]
    );
    let conn = &handled.spans[0].fields;
    assert_eq!(conn.get("dir"), Some("accepted"));
    // The connection the request came in on: the one its "request received" names.
    let received = wait_for_event(server_node, "the request", |e| {
        e.message == "request received"
    });
    let request = received
        .iter()
        .find(|e| e.message == "request received")
        .expect("seen");
    assert_eq!(request.fields.get("rpc"), Some("Heartbeat"));
    assert_eq!(request.conn(), conn.get("conn"));
}

/// A call to an address nobody listens on: its dialled connection closes with the dial's
/// error, and the call's failure names the RPC, at DEBUG (the caller gets the error itself).
#[test]
fn a_failed_call_names_its_rpc_and_the_error() {
    let node = "unreachable";
    let client = bind_as(node, Config::default());
    let ServerAddress(target) = unused_addr();
    let vote = client.request_vote(
        &ServerId::from("nobody"),
        &ServerAddress(target.clone()),
        vote_request(),
        CallOptions::default(),
    );
    assert!(matches!(finish(vote), Err(Error::Unreachable { .. })));

    let events = wait_for_event(node, "the failure", |e| e.message == "call failed");
    let failure = events
        .iter()
        .find(|e| e.message == "call failed")
        .expect("logged");
    assert_eq!(failure.level, Level::DEBUG);
    assert_eq!(failure.fields.get("rpc"), Some("RequestVote"));
    assert_eq!(failure.fields.get("peer"), Some(target.as_str()));
    let error = failure.fields.get("error").expect("the error");
    assert!(
        error.starts_with(&format!("failed to reach {target}: ")),
        "{error}"
    );
    let closed = events
        .iter()
        .find(|e| e.message == "connection closed")
        .expect("logged");
    assert_eq!(closed.conn(), failure.conn());
    assert_eq!(closed.fields.get("reason"), Some(error));
    assert_eq!(
        failure.span("conn").and_then(|s| s.fields.get("dir")),
        Some("dialled")
    );
    assert!(
        events.iter().all(|e| e.level > Level::WARN),
        "an unreachable peer is the caller's error, not a warning: {events:#?}"
    );
}

/// A snapshot's start and end at INFO on both sides, with its size, in the snapshot
/// connection's span (lane `Snapshot`) and the serving one's.
#[test]
fn a_snapshot_start_and_end_are_logged_on_both_sides() {
    let (client_node, server_node) = ("snapshot-sender", "snapshot-receiver");
    let client = bind_as(client_node, Config::default());
    let server = bind_as(server_node, Config::default());
    let responder = serve(server.consumer(), 1, |mut rpc| {
        let mut body = Vec::new();
        let read = rpc
            .snapshot
            .take()
            .expect("a reader")
            .read_to_end(&mut body);
        assert!(matches!(rpc.request, Request::InstallSnapshot(_)));
        rpc.respond_ok(snapshot_response());
        (read.ok(), body)
    });
    let call = client.install_snapshot(
        &ServerId::from("receiver"),
        &server.local_addr(),
        snapshot_request(),
        Box::new(Cursor::new(SNAPSHOT_BODY.to_vec())),
        CallOptions::default(),
    );
    assert_eq!(finish(call), Ok(snapshot_response()));
    assert_eq!(join(responder), [(Some(10), SNAPSHOT_BODY.to_vec())]);

    let size = SNAPSHOT_BODY.len().to_string();
    let sent = wait_for_event(client_node, "sent", |e| e.message == "snapshot sent");
    let infos: Vec<&Seen> = sent.iter().filter(|e| e.level == Level::INFO).collect();
    assert_eq!(
        infos.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
        ["sending a snapshot", "snapshot sent"]
    );
    assert_eq!(infos[0].fields.get("size"), Some(size.as_str()));
    for info in &infos {
        let span = info.span("conn").expect("in the connection's span");
        assert_eq!(span.fields.get("lane"), Some("Snapshot"));
    }
    let received = wait_for_event(server_node, "received", |e| {
        e.message == "snapshot received"
    });
    let infos: Vec<&Seen> = received.iter().filter(|e| e.level == Level::INFO).collect();
    assert_eq!(
        infos.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(),
        ["receiving a snapshot", "snapshot received"]
    );
    for info in &infos {
        assert_eq!(info.fields.get("size"), Some(size.as_str()));
        assert_eq!(
            info.span("conn").and_then(|s| s.fields.get("dir")),
            Some("accepted")
        );
    }
}

/// A connection over `max_inbound_connections` is refused with a WARN naming its address, in
/// the transport's span (it never gets a connection of its own).
#[test]
fn a_refused_connection_is_a_warning_naming_the_peer() {
    let node = "refusing";
    let server = bind_as(node, Config::default().max_inbound_connections(1));
    let listener = server.bound_addr();
    let _first = TcpStream::connect(listener).expect("connect");
    let mut second = TcpStream::connect(listener).expect("connect");
    let refused: SocketAddr = second.local_addr().expect("address");
    second
        .set_read_timeout(Some(EVENTUALLY))
        .expect("read timeout");
    let _ = second.read_to_end(&mut Vec::new());

    let refusal = |e: &Seen| e.message.starts_with("refusing a connection");
    let events = wait_for_event(node, "the refusal", refusal);
    let warning = events.iter().find(|e| refusal(e)).expect("seen");
    assert_eq!(warning.level, Level::WARN);
    assert_eq!(
        warning.message,
        format!("refusing a connection from {refused}: 1 inbound connections are open already")
    );
    assert_eq!(
        warning.spans.iter().map(|s| s.name).collect::<Vec<_>>(),
        ["raftnet", "node"]
    );
}
