//! Mutual TLS (feature `tls`) refusing what it must: a peer without a certificate the cluster's
//! CA vouches for, a server that is not the one a dial meant to reach, plaintext on a TLS port
//! and TLS on a plaintext port, a handshake that stalls, garbage inside a session. Each is
//! refused with a clear error on the caller's side (`Error::Tls`, naming the peer, with rustls'
//! reason) and a log line on the server's, while a legitimate TLS peer's calls to the same
//! server keep being answered. Megabytes over TLS arrive byte for byte on each backend. Every
//! RPC kind over TLS is the generic suite's (`transport_generic/`, modules `net_tls` and
//! `net_tls_on_runtime`).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex, Once};
use std::time::{Duration, Instant};

use common::legit::{Legit, LegitKind};
use common::net::{EVENTUALLY, bind, finish};
use common::peers::{append, echo_server, heartbeat, peer, vote};
use common::tls::TestCa;
use raftnet::tls::TlsConfig;
use raftnet::tls::rustls;
use raftnet::*;
use rustls::pki_types::pem::PemObject;

// ---- a log of what the servers said ---------------------------------------------------------

struct Capture(Mutex<Vec<String>>);

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &log::Record<'_>) {
        if record.level() <= log::Level::Warn {
            let line = record.args().to_string();
            self.0.lock().unwrap_or_else(|e| e.into_inner()).push(line);
        }
    }

    fn flush(&self) {}
}

static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

/// Capture warnings (once per test binary: the tests share the logger).
fn capture_logs() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&CAPTURE).expect("install the capturing logger");
        log::set_max_level(log::LevelFilter::Warn);
    });
}

/// Wait until a captured warning contains every one of `needles`.
fn wait_logged(needles: &[&str]) {
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        {
            let lines = CAPTURE.0.lock().unwrap_or_else(|e| e.into_inner());
            if lines
                .iter()
                .any(|line| needles.iter().all(|n| line.contains(n)))
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "no warning containing {needles:?} within {EVENTUALLY:?}; warnings: {lines:#?}"
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

// ---- the scene: a TLS server, and a legitimate peer calling it meanwhile ---------------------

/// A TLS server answering every RPC, and a legitimate TLS client calling it throughout.
struct Scene {
    ca: TestCa,
    server: NetTransport,
    addr: SocketAddr,
    legit: Option<Legit>,
}

const SERVER: &str = "server-1";

impl Scene {
    fn new() -> Scene {
        Scene::with_server_tls(|tls| tls)
    }

    /// A scene whose server's TLS configuration `adjust` changes (an authorization hook).
    fn with_server_tls(adjust: impl FnOnce(TlsConfig) -> TlsConfig) -> Scene {
        capture_logs();
        let ca = TestCa::new("raftnet cluster CA");
        let server = bind(Config::default().tls(adjust(ca.tls(SERVER))));
        echo_server(server.consumer().clone());
        let addr: SocketAddr = server.local_addr().0.parse().unwrap();
        let legit_tls = ca
            .tls("legit-1")
            .peer(&ServerId::from(SERVER), addr)
            .unwrap();
        let legit = Legit::start_with(
            server.local_addr(),
            LegitKind::Vote,
            Config::default().timeout(Some(EVENTUALLY)).tls(legit_tls),
        );
        let started = Instant::now();
        legit
            .wait_answered(3, started)
            .expect("the legitimate peer is answered before the attack");
        Scene {
            ca,
            server,
            addr,
            legit: Some(legit),
        }
    }

    /// A client with `tls`, expecting the server's identity at its address.
    fn client(&self, tls: TlsConfig) -> NetTransport {
        let tls = tls.peer(&ServerId::from(SERVER), self.addr).unwrap();
        bind(Config::default().timeout(Some(EVENTUALLY)).tls(tls))
    }

    fn vote(&self, client: &NetTransport) -> raftnet::Result<message::RequestVoteResponse> {
        finish(client.request_vote(
            &peer(),
            &self.server.local_addr(),
            vote(1),
            CallOptions::default(),
        ))
    }

    /// The legitimate peer kept being answered, before and after the attack, and none of its
    /// calls failed.
    fn check_legit(mut self) {
        let legit = self.legit.take().unwrap();
        let after = Instant::now();
        legit
            .wait_answered(3, after)
            .expect("the legitimate peer is answered after the attack");
        let samples = legit.stop();
        assert_eq!(samples.failures(), Vec::<String>::new());
        assert!(samples.0.len() >= 6, "{} calls", samples.0.len());
    }
}

/// rustls' reason for a call whose handshake was refused (`Error::Tls`, naming the peer; a
/// class that backs off).
fn tls_reason(error: &Error) -> &rustls::Error {
    match error {
        Error::Tls {
            peer: Some(_),
            handshake: true,
            reason,
        } if error.should_backoff() => reason,
        other => panic!("expected Error::Tls for a refused handshake, got {other:?}"),
    }
}

/// A client config trusting `ca` and presenting no certificate.
fn without_client_certificate(ca: &TestCa) -> TlsConfig {
    let mut roots = rustls::RootCertStore::empty();
    let der = rustls::pki_types::CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap();
    roots.add(der).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    // The server side is never used: this transport only dials.
    let server = ca.tls("unused").server_config().clone();
    TlsConfig::new(server, Arc::new(client))
}

// ---- the tests --------------------------------------------------------------------------------

#[test]
fn a_server_certificate_from_another_ca_is_refused_by_the_caller() {
    let scene = Scene::new();
    // The impostor's CA signed its own certificate; it trusts only its own CA.
    let impostor = TestCa::new("impostor CA").tls("impostor-1");
    let client = scene.client(impostor);
    let error = scene.vote(&client).unwrap_err();
    assert!(
        matches!(
            tls_reason(&error),
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        ),
        "{error:?}"
    );
    // The caller's error names the server it could not trust, and why.
    assert_eq!(
        error.to_string(),
        format!(
            "TLS handshake with {} refused: invalid peer certificate: UnknownIssuer",
            scene.addr
        )
    );
    wait_logged(&[
        "TLS handshake refused on an accepted connection",
        "UnknownCA",
    ]);
    scene.check_legit();
}

#[test]
fn a_client_certificate_from_another_ca_is_refused_by_the_server() {
    let scene = Scene::new();
    // Trusts the cluster's CA (so it accepts the server), but its certificate is the impostor's.
    let impostor = TestCa::new("impostor CA").node("server-1");
    let tls = TlsConfig::from_pem(
        scene.ca.pem.as_bytes(),
        impostor.cert.as_bytes(),
        impostor.key.as_bytes(),
    )
    .unwrap();
    let client = scene.client(tls);
    let error = scene.vote(&client).unwrap_err();
    assert!(
        matches!(
            tls_reason(&error),
            rustls::Error::AlertReceived(rustls::AlertDescription::UnknownCA)
        ),
        "{error:?}"
    );
    wait_logged(&[
        "TLS handshake refused on an accepted connection",
        "UnknownIssuer",
    ]);
    scene.check_legit();
}

#[test]
fn a_client_without_a_certificate_is_refused() {
    let scene = Scene::new();
    let client = scene.client(without_client_certificate(&scene.ca));
    let error = scene.vote(&client).unwrap_err();
    assert!(
        matches!(
            tls_reason(&error),
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateRequired)
        ),
        "{error:?}"
    );
    wait_logged(&[
        "TLS handshake refused on an accepted connection",
        "peer sent no certificates",
    ]);
    scene.check_legit();
}

#[test]
fn an_expired_client_certificate_is_refused() {
    let scene = Scene::new();
    let expired = scene.ca.expired_node("old-1");
    let tls = TlsConfig::from_pem(
        scene.ca.pem.as_bytes(),
        expired.cert.as_bytes(),
        expired.key.as_bytes(),
    )
    .unwrap();
    let client = scene.client(tls);
    let error = scene.vote(&client).unwrap_err();
    assert!(
        matches!(
            tls_reason(&error),
            rustls::Error::AlertReceived(rustls::AlertDescription::CertificateExpired)
        ),
        "{error:?}"
    );
    wait_logged(&["TLS handshake refused on an accepted connection", "expired"]);
    scene.check_legit();
}

#[test]
fn a_dial_refuses_a_certificate_for_another_server_id() {
    let scene = Scene::new();
    let client = bind(
        Config::default().timeout(Some(EVENTUALLY)).tls(
            scene
                .ca
                .tls("client-1")
                // The server at this address holds server-1's certificate.
                .peer(&ServerId::from("server-2"), scene.addr)
                .unwrap(),
        ),
    );
    let error = scene.vote(&client).unwrap_err();
    let reason = tls_reason(&error);
    assert!(
        matches!(reason, rustls::Error::InvalidCertificate(_))
            && reason.to_string().contains("not valid for name"),
        "{error:?}"
    );
    wait_logged(&[
        "TLS handshake refused on an accepted connection",
        "BadCertificate",
    ]);
    scene.check_legit();
}

#[test]
fn a_plaintext_client_on_a_tls_port_is_refused() {
    let scene = Scene::new();
    let client = bind(Config::default().timeout(Some(EVENTUALLY)));
    let error = scene.vote(&client).unwrap_err();
    assert!(
        matches!(error, Error::Protocol(_) | Error::Io(_)),
        "{error:?}"
    );
    wait_logged(&[
        "TLS handshake refused on an accepted connection",
        "InvalidContentType",
    ]);
    scene.check_legit();
}

#[test]
fn a_tls_client_on_a_plaintext_port_is_refused() {
    capture_logs();
    let ca = TestCa::new("raftnet cluster CA");
    let plain = bind(Config::default());
    echo_server(plain.consumer().clone());
    let client = bind(
        Config::default()
            .timeout(Some(EVENTUALLY))
            .tls(ca.tls("client-1")),
    );
    let error = finish(client.request_vote(
        &peer(),
        &plain.local_addr(),
        vote(1),
        CallOptions::default(),
    ))
    .unwrap_err();
    // The plaintext server's answer is not a TLS record.
    assert!(
        matches!(
            tls_reason(&error),
            rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType)
        ),
        "{error:?}"
    );
    wait_logged(&["closing the connection: protocol error"]);
    // The plaintext server still serves a plaintext peer.
    let answer = finish(bind(Config::default()).request_vote(
        &peer(),
        &plain.local_addr(),
        vote(2),
        CallOptions::default(),
    ))
    .unwrap();
    assert_eq!((answer.term, answer.granted), (2, true));
}

#[test]
fn a_dial_whose_handshake_stalls_fails_at_the_call_deadline() {
    capture_logs();
    let ca = TestCa::new("raftnet cluster CA");
    // Accepts the connection, reads the ClientHello, never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap();
    let holder = std::thread::spawn(move || {
        let (mut socket, _) = silent.accept().unwrap();
        let mut sink = Vec::new();
        let _ = socket.read_to_end(&mut sink);
    });
    let client = bind(
        Config::default()
            .timeout(Some(Duration::from_secs(1)))
            .tls(ca.tls("c-1")),
    );
    let started = Instant::now();
    let error = finish(client.request_vote(
        &peer(),
        &ServerAddress::from(addr),
        vote(1),
        CallOptions::default(),
    ))
    .unwrap_err();
    assert!(matches!(error, Error::Timeout), "{error:?}");
    assert!(started.elapsed() >= Duration::from_millis(900));
    client.close();
    holder.join().unwrap();
}

#[test]
fn an_accepted_connection_whose_handshake_stalls_is_closed() {
    capture_logs();
    let ca = TestCa::new("raftnet cluster CA");
    let server = bind(
        Config::default()
            .timeout(Some(Duration::from_secs(1)))
            .tls(ca.tls(SERVER)),
    );
    // Connects and says nothing: no ClientHello, no frame.
    let mut silent = TcpStream::connect(server.local_addr().0.as_str()).unwrap();
    silent.set_read_timeout(Some(EVENTUALLY)).unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let n = silent.read(&mut buf).expect("closed, not timed out");
    assert_eq!(n, 0, "the server sent {:?}", &buf[..n]);
    assert!(started.elapsed() >= Duration::from_millis(900));
    wait_logged(&["closing the connection"]);
}

#[test]
fn garbage_inside_a_tls_session_closes_that_session_only() {
    let scene = Scene::new();
    // A rustls client of the cluster that, once the handshake is done, sends bytes that are not
    // raftnet frames.
    let tls = scene.ca.tls("rogue-1");
    let name = rustls::pki_types::ServerName::try_from(SERVER).unwrap();
    let conn = rustls::ClientConnection::new(tls.client_config().clone(), name).unwrap();
    let socket = TcpStream::connect(scene.addr).unwrap();
    socket.set_read_timeout(Some(EVENTUALLY)).unwrap();
    let mut stream = rustls::StreamOwned::new(conn, socket);
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: raft\r\n\r\n")
        .unwrap();
    stream.flush().unwrap();
    let mut rest = Vec::new();
    let read = stream.read_to_end(&mut rest);
    // The server closed the session (with close_notify: a clean end).
    assert!(read.is_ok(), "{read:?}");
    wait_logged(&["closing the connection: protocol error"]);
    scene.check_legit();
}

#[test]
fn tls_on_the_thread_per_connection_driver_is_a_config_error() {
    let ca = TestCa::new("raftnet cluster CA");
    let error = NetTransport::bind_with(
        "127.0.0.1:0",
        None,
        Config::default().tls(ca.tls(SERVER)),
        Placement::ThreadPerConnection,
    )
    .unwrap_err();
    assert!(
        matches!(&error, Error::Config(text) if text.contains("ThreadPerConnection")),
        "{error:?}"
    );
}

/// TLS runs on the io_uring driver as on epoll (the generic suite's `net_tls_uring` runs every
/// RPC kind there; CI runs this file again with `RAFTNET_BACKEND=uring`): a TLS node on each
/// backend serves the other's calls, and each checks the other's certificate.
#[test]
fn tls_nodes_on_io_uring_and_on_epoll_call_each_other() {
    if !common::net::uring_runs("tls_nodes_on_io_uring_and_on_epoll_call_each_other") {
        return;
    }
    let ca = TestCa::new("raftnet cluster CA");
    let node = |id: &str, backend: Backend| {
        let t = bind(
            Config::default()
                .timeout(Some(EVENTUALLY))
                .tls(ca.tls(id))
                .backend(backend),
        );
        assert_eq!(t.backend(), Some(backend));
        echo_server(t.consumer().clone());
        t
    };
    let on_uring = node("node-uring", Backend::Uring);
    let on_epoll = node("node-epoll", Backend::Epoll);
    for term in 1..=3 {
        let answer = finish(on_uring.request_vote(
            &ServerId::from("node-epoll"),
            &on_epoll.local_addr(),
            vote(term),
            CallOptions::default(),
        ))
        .expect("io_uring calls epoll over TLS");
        assert_eq!(answer.term, term);
        let answer = finish(on_epoll.append_entries(
            &ServerId::from("node-uring"),
            &on_uring.local_addr(),
            heartbeat(term),
            CallOptions::default(),
        ))
        .expect("epoll calls io_uring over TLS");
        assert_eq!(answer.term, term);
    }
    // A call meant for another server is refused by the io_uring side's check of the epoll
    // node's certificate, as on epoll.
    let error = finish(on_uring.request_vote(
        &ServerId::from("node-other"),
        &on_epoll.local_addr(),
        vote(9),
        CallOptions::default(),
    ))
    .unwrap_err();
    assert!(
        tls_reason(&error).to_string().contains("node-other"),
        "{error:?}"
    );
}

/// What a server that checks every byte it is sent says of an RPC: its AppendEntries' entry
/// data and its snapshot body must be [`bulk`]'s pattern, whole (`success` says whether they
/// were).
fn check_bulk(mut rpc: Rpc) {
    use message::{Request, Response};
    let whole = match (&rpc.request, rpc.snapshot.take()) {
        (Request::InstallSnapshot(r), Some(mut reader)) => {
            let mut body = Vec::new();
            reader.read_to_end(&mut body).is_ok() && body == bulk(r.term, r.size as usize)
        }
        (Request::AppendEntries(r), None) => r
            .entries
            .iter()
            .all(|e| e.data.as_deref() == Some(&bulk(e.term, MIB)[..])),
        _ => false,
    };
    let mut response = common::peers::echo_response(&rpc.request);
    match &mut response {
        Response::AppendEntries(r) => r.success = whole,
        Response::InstallSnapshot(r) => r.success = whole,
        _ => {}
    }
    rpc.respond_ok(response);
}

const MIB: usize = 1 << 20;

/// `len` bytes that tell term `term`'s payload from any other's.
fn bulk(term: u64, len: usize) -> Vec<u8> {
    (0..len as u64)
        .map(|i| common::bodies::pattern_byte(i.wrapping_add(term << 32)))
        .collect()
}

/// Megabytes over TLS arrive byte for byte on every backend: 1 MiB appends and an 8 MiB
/// snapshot, each some sixty records that receives cut at arbitrary places (on io_uring's
/// multishot receive, records are opened in the ring's buffers where the kernel put them, and
/// one cut short is completed from the next receive).
#[test]
fn megabytes_over_tls_arrive_whole_on_every_backend() {
    let ca = TestCa::new("raftnet cluster CA");
    let mut backends = vec![Backend::Epoll];
    if common::net::uring_runs("megabytes_over_tls_arrive_whole_on_every_backend") {
        backends.push(Backend::Uring);
    }
    let client = bind(
        Config::default()
            .timeout(Some(EVENTUALLY))
            .tls(ca.tls("client-1")),
    );
    for backend in backends {
        let server = bind(
            Config::default()
                .timeout(Some(EVENTUALLY))
                .tls(ca.tls(SERVER))
                .backend(backend),
        );
        let consumer = server.consumer().clone();
        let checker = std::thread::spawn(move || {
            while let Ok(rpc) = consumer.recv() {
                check_bulk(rpc);
            }
        });
        let (id, addr) = (ServerId::from(SERVER), server.local_addr());
        for term in 1..=4 {
            let request = message::AppendEntriesRequest {
                term,
                leader: Some(bytes::Bytes::from_static(b"leader")),
                entries: vec![message::Log::command(term, term, bulk(term, MIB))],
                ..Default::default()
            };
            let answer = finish(client.append_entries(&id, &addr, request, CallOptions::default()))
                .unwrap_or_else(|e| panic!("{backend:?}: append {term}: {e}"));
            assert!(answer.success, "{backend:?}: append {term} arrived altered");
        }
        let size = 8 * MIB;
        let request = message::InstallSnapshotRequest {
            term: 5,
            size: size as i64,
            ..Default::default()
        };
        let answer = finish(client.install_snapshot_bytes(
            &id,
            &addr,
            request,
            bytes::Bytes::from(bulk(5, size)),
            CallOptions::default(),
        ))
        .unwrap_or_else(|e| panic!("{backend:?}: snapshot: {e}"));
        assert!(answer.success, "{backend:?}: the snapshot arrived altered");
        server.close();
        checker.join().unwrap();
    }
}

#[test]
fn a_server_id_that_is_not_a_dns_name_cannot_be_a_tls_peer() {
    let ca = TestCa::new("raftnet cluster CA");
    let error = ca
        .tls("client-1")
        .peer(
            &ServerId::from("not a name!"),
            "127.0.0.1:1".parse().unwrap(),
        )
        .unwrap_err();
    assert!(
        matches!(&error, Error::Config(text) if text.contains("DNS name")),
        "{error:?}"
    );
}

#[test]
fn pem_files_that_hold_no_certificate_are_a_config_error() {
    let error = TlsConfig::from_pem(b"", b"", b"").unwrap_err();
    assert!(
        matches!(&error, Error::Config(text) if text.contains("no certificate")),
        "{error:?}"
    );
}

// ---- identity and authorization (the second step) ------------------------------------------

/// A vote whose header says it comes from server `id`.
fn vote_from(id: &str, term: u64) -> message::RequestVoteRequest {
    message::RequestVoteRequest {
        header: message::RpcHeader {
            protocol_version: 3,
            id: Some(bytes::Bytes::from(id.to_string())),
            addr: None,
        },
        ..vote(term)
    }
}

#[test]
fn a_request_claiming_another_server_than_its_certificate_is_refused() {
    let scene = Scene::new();
    let client = scene.client(scene.ca.tls("client-1"));
    let call = |request| {
        finish(client.request_vote(
            &ServerId::from(SERVER),
            &scene.server.local_addr(),
            request,
            CallOptions::default(),
        ))
    };
    // Its own id, and no id at all (an older peer): served.
    assert_eq!(call(vote_from("client-1", 4)).unwrap().term, 4);
    assert_eq!(call(vote(5)).unwrap().term, 5);
    // Another server's id: refused, with the kind and the two names.
    let error = call(vote_from("server-9", 6)).unwrap_err();
    let Error::Refused { reason, message } = &error else {
        panic!("expected Error::Refused, got {error:?}");
    };
    assert_eq!(*reason, Refusal::IdentityMismatch);
    assert!(
        message.contains("\"server-9\"") && message.contains("[client-1]"),
        "{message}"
    );
    assert!(error.is_fatal());
    wait_logged(&["refusing a request from", "(identity mismatch)", "server-9"]);
    // The connection goes on serving the peer's honest requests.
    assert_eq!(call(vote_from("client-1", 7)).unwrap().term, 7);
    scene.check_legit();
}

#[test]
fn a_snapshot_claiming_another_server_is_refused_before_its_body_is_taken() {
    let scene = Scene::new();
    let client = scene.client(scene.ca.tls("client-1"));
    let request = message::InstallSnapshotRequest {
        header: vote_from("server-9", 1).header,
        size: 64 * 1024,
        ..Default::default()
    };
    let error = finish(client.install_snapshot_bytes(
        &ServerId::from(SERVER),
        &scene.server.local_addr(),
        request,
        bytes::Bytes::from(vec![7u8; 64 * 1024]),
        CallOptions::default(),
    ))
    .unwrap_err();
    assert!(
        matches!(
            error,
            Error::Refused {
                reason: Refusal::IdentityMismatch,
                ..
            }
        ),
        "{error:?}"
    );
    let received = scene.server.metrics().rpcs_received[RpcType::InstallSnapshot];
    assert_eq!(
        received, 0,
        "the refused snapshot never reached the Raft side"
    );
    scene.check_legit();
}

/// Calls of the authorization hook, by (first server id, kind).
type HookCalls = Arc<Mutex<Vec<(String, RpcType)>>>;

/// A server that lets client-1 replicate but not vote.
fn no_votes_from_client_1(calls: HookCalls) -> impl FnOnce(TlsConfig) -> TlsConfig {
    move |tls| {
        tls.authorize(move |peer, kind| {
            let first = peer.server_ids()[0].0.clone();
            let allowed = !(first == "client-1"
                && matches!(kind, RpcType::RequestVote | RpcType::RequestPreVote));
            calls.lock().unwrap().push((first, kind));
            allowed
        })
    }
}

#[test]
fn the_authorization_hook_refuses_the_kinds_it_does_not_allow() {
    let calls = HookCalls::default();
    let scene = Scene::with_server_tls(no_votes_from_client_1(calls.clone()));
    let client = scene.client(scene.ca.tls("client-1"));
    let (to, at) = (ServerId::from(SERVER), scene.server.local_addr());
    let heartbeat = finish(client.append_entries(&to, &at, heartbeat(3), CallOptions::default()));
    assert_eq!(heartbeat.unwrap().term, 3);
    let appended =
        finish(client.append_entries(&to, &at, append(4, 9, 100), CallOptions::default()));
    assert_eq!(appended.unwrap().term, 4);
    for term in [5, 6, 7] {
        let error =
            finish(client.request_vote(&to, &at, vote(term), CallOptions::default())).unwrap_err();
        let Error::Refused { reason, message } = &error else {
            panic!("expected Error::Refused, got {error:?}");
        };
        assert_eq!(*reason, Refusal::Unauthorized);
        assert!(message.contains("may not send RequestVote"), "{message}");
    }
    wait_logged(&["refusing a request from", "(unauthorized)", "RequestVote"]);
    // Still serving what it allows, on the same connection.
    let appended =
        finish(client.append_entries(&to, &at, append(8, 9, 100), CallOptions::default()));
    assert_eq!(appended.unwrap().term, 8);
    // The legitimate peer's votes were allowed throughout.
    scene.check_legit();
    // Asked once per connection and kind: three refused votes on one pooled connection are
    // one question.
    let calls = calls.lock().unwrap().clone();
    let client_votes = calls
        .iter()
        .filter(|(id, kind)| id == "client-1" && *kind == RpcType::RequestVote)
        .count();
    assert_eq!(client_votes, 1, "{calls:?}");
    assert!(
        calls
            .iter()
            .any(|(id, kind)| id == "legit-1" && *kind == RpcType::RequestVote),
        "{calls:?}"
    );
}

#[test]
fn a_dial_checks_the_calls_server_id_without_a_registered_peer() {
    let scene = Scene::new();
    // No `peer()` registration: each call's target id is what the certificate must name.
    let client = bind(
        Config::default()
            .timeout(Some(EVENTUALLY))
            .tls(scene.ca.tls("client-1")),
    );
    let call = |to: &str, term| {
        finish(client.request_vote(
            &ServerId::from(to),
            &scene.server.local_addr(),
            vote(term),
            CallOptions::default(),
        ))
    };
    assert_eq!(call(SERVER, 1).unwrap().term, 1);
    assert_eq!(client.pooled_connections(), 1);
    // server-1's connection sits in the pool for this address: a call meant for server-2 must
    // not take it, and its own dial reaches server-1's certificate.
    let error = call("server-2", 2).unwrap_err();
    let reason = tls_reason(&error);
    assert!(
        matches!(reason, rustls::Error::InvalidCertificate(_))
            && reason.to_string().contains("not valid for name")
            && reason.to_string().contains("server-2"),
        "{error:?}"
    );
    wait_logged(&[
        "TLS handshake refused on an accepted connection",
        "BadCertificate",
    ]);
    // server-1's calls go on, on the pooled connection.
    assert_eq!(call(SERVER, 3).unwrap().term, 3);
    scene.check_legit();
}

// ---- rotation ---------------------------------------------------------------------------------

#[test]
fn reloaded_certificates_serve_new_connections_and_old_ones_keep_going() {
    capture_logs();
    let (old_ca, new_ca) = (TestCa::new("old CA"), TestCa::new("new CA"));
    let server = bind(Config::default().tls(old_ca.tls(SERVER)));
    echo_server(server.consumer().clone());
    let at = server.local_addr();
    let to = ServerId::from(SERVER);
    let client = |ca: &TestCa| {
        bind(
            Config::default()
                .timeout(Some(EVENTUALLY))
                .tls(ca.tls("client-1")),
        )
    };
    let vote_with = |client: &NetTransport, term| {
        finish(client.request_vote(&to, &at, vote(term), CallOptions::default()))
    };
    let heartbeat_with = |client: &NetTransport, term| {
        finish(client.append_entries(&to, &at, heartbeat(term), CallOptions::default()))
    };

    let old_client = client(&old_ca);
    assert_eq!(vote_with(&old_client, 1).unwrap().term, 1);
    assert_eq!(old_client.metrics().dials, 1);

    server.reload_tls(new_ca.tls(SERVER)).unwrap();

    // The connection made before the reload keeps working (no new dial).
    assert_eq!(vote_with(&old_client, 2).unwrap().term, 2);
    assert_eq!(old_client.metrics().dials, 1);
    // A new dial trusting the old CA alone is refused: the server presents the new certificate.
    let error = vote_with(&client(&old_ca), 3).unwrap_err();
    assert!(
        matches!(
            tls_reason(&error),
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer)
        ),
        "{error:?}"
    );
    // The old client's own new dial (the heartbeat lane has a pool of its own) is refused too.
    assert!(heartbeat_with(&old_client, 4).is_err());
    // A client of the new CA is served.
    assert_eq!(vote_with(&client(&new_ca), 5).unwrap().term, 5);
    // The old client reloads: its new dials use the new certificate, its old one goes on.
    old_client.reload_tls(new_ca.tls("client-1")).unwrap();
    assert_eq!(heartbeat_with(&old_client, 6).unwrap().term, 6);
    assert_eq!(vote_with(&old_client, 7).unwrap().term, 7);
    assert_eq!(
        old_client.metrics().dials,
        3,
        "the vote's connection was reused"
    );
}

#[test]
fn reloading_tls_on_a_plaintext_transport_is_a_config_error() {
    let plain = bind(Config::default());
    let error = plain
        .reload_tls(TestCa::new("a CA").tls("node-1"))
        .unwrap_err();
    assert!(matches!(error, Error::Config(_)), "{error:?}");
}

#[test]
fn a_server_that_asks_no_client_certificate_checks_an_empty_identity() {
    capture_logs();
    let ca = TestCa::new("raftnet cluster CA");
    // The application's own server configuration, without client authentication.
    let node = ca.node(SERVER);
    let chain = rustls::pki_types::CertificateDer::pem_slice_iter(node.cert.as_bytes())
        .collect::<std::result::Result<Vec<_>, _>>()
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(node.key.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server_config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let asked = Arc::new(Mutex::new(Vec::new()));
    let seen = asked.clone();
    let tls = TlsConfig::new(
        Arc::new(server_config),
        ca.tls(SERVER).client_config().clone(),
    )
    .authorize(move |peer, _| {
        seen.lock().unwrap().push(peer.server_ids().to_vec());
        !peer.server_ids().is_empty()
    });
    let server = bind(Config::default().tls(tls));
    echo_server(server.consumer().clone());
    let client = bind(
        Config::default()
            .timeout(Some(EVENTUALLY))
            .tls(without_client_certificate(&ca)),
    );
    let call = |request| {
        finish(client.request_vote(
            &ServerId::from(SERVER),
            &server.local_addr(),
            request,
            CallOptions::default(),
        ))
    };
    // A claimed sender cannot be checked against no certificate: refused.
    let error = call(vote_from("client-1", 1)).unwrap_err();
    assert!(
        matches!(
            error,
            Error::Refused {
                reason: Refusal::IdentityMismatch,
                ..
            }
        ),
        "{error:?}"
    );
    // No claim: the hook decides, on an identity that names no server.
    let error = call(vote(2)).unwrap_err();
    assert!(
        matches!(
            error,
            Error::Refused {
                reason: Refusal::Unauthorized,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(*asked.lock().unwrap(), vec![Vec::<ServerId>::new()]);
}
