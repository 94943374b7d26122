//! `NetTransport::bind`'s failures: each is an error of its own kind (`Error::Bind`,
//! `Error::NotAdvertisable`), names the address and carries the cause, and is fatal (binding
//! again the same way cannot help). And `NetTransport::from_listener`: a listener bound
//! elsewhere is served as it is, and a socket that does not listen is refused by name.

use std::error::Error as _;
use std::io;
use std::net::{SocketAddr, TcpListener};

use raftnet::message::{RequestVoteRequest, RequestVoteResponse};
use raftnet::{CallOptions, Config, Error, ErrorClass, NetTransport, Placement, Transport};

fn bind(addr: impl std::net::ToSocketAddrs) -> raftnet::Result<NetTransport> {
    NetTransport::bind(addr, None, Config::default())
}

#[test]
fn binding_an_address_in_use_names_it() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = taken.local_addr().unwrap();
    let error = bind(addr).expect_err("the port is taken");
    match &error {
        Error::Bind {
            addr: Some(failed),
            reason,
        } => {
            assert_eq!(*failed, addr);
            assert_eq!(reason.kind(), io::ErrorKind::AddrInUse);
        }
        other => panic!("expected Error::Bind naming {addr}, got {other:?}"),
    }
    assert_eq!(error.class(), ErrorClass::Fatal);
    assert!(error.to_string().contains(&addr.to_string()), "{error}");
    let source = error.source().expect("the io::Error is the source");
    assert_eq!(
        source.downcast_ref::<io::Error>().map(io::Error::kind),
        Some(io::ErrorKind::AddrInUse)
    );
}

#[test]
fn binding_a_port_another_transport_holds_names_it() {
    let first = bind("127.0.0.1:0").expect("bind");
    let addr = first.bound_addr();
    let error = bind(addr).expect_err("the first transport holds the port");
    assert!(
        matches!(&error, Error::Bind { addr: Some(a), reason } if *a == addr && reason.kind() == io::ErrorKind::AddrInUse),
        "{error:?}"
    );
    // Once the first one closes, the port can be bound again (SO_REUSEADDR).
    first.close();
    drop(first);
    let again = bind(addr).expect("the port is free again");
    assert_eq!(again.bound_addr(), addr);
}

#[test]
fn an_address_of_another_host_names_it() {
    // TEST-NET-1 (RFC 5737): never assigned to a host.
    let foreign: SocketAddr = "192.0.2.1:0".parse().unwrap();
    match bind(foreign) {
        Err(Error::Bind {
            addr: Some(failed),
            reason,
        }) => {
            assert_eq!(failed, foreign);
            assert_eq!(reason.kind(), io::ErrorKind::AddrNotAvailable);
        }
        other => panic!("expected Error::Bind naming {foreign}, got {other:?}"),
    }
}

#[test]
fn a_bind_address_that_resolves_to_nothing() {
    let nothing: &[SocketAddr] = &[];
    let error = bind(nothing).expect_err("nothing to bind");
    assert!(
        matches!(&error, Error::Bind { addr: None, reason } if reason.kind() == io::ErrorKind::NotFound),
        "{error:?}"
    );
    assert!(error.is_fatal());
    assert!(
        error
            .to_string()
            .starts_with("bind address does not resolve"),
        "{error}"
    );
}

#[test]
fn the_first_candidate_that_binds_wins() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let candidates = [taken.local_addr().unwrap(), "127.0.0.1:0".parse().unwrap()];
    let transport = bind(&candidates[..]).expect("the second candidate binds");
    assert_ne!(transport.bound_addr(), candidates[0]);
}

#[test]
fn an_unspecified_address_without_an_advertised_one_is_not_advertisable() {
    let error = bind("0.0.0.0:0").expect_err("0.0.0.0 cannot be dialled");
    match &error {
        // The address the listener got: unspecified IP, the port it was given.
        Error::NotAdvertisable { addr } => {
            assert!(addr.ip().is_unspecified(), "{addr}");
            assert_ne!(addr.port(), 0);
        }
        other => panic!("expected Error::NotAdvertisable, got {other:?}"),
    }
    assert!(error.is_fatal());
    assert_eq!(error.to_string(), "local bind address is not advertisable");
}

#[test]
fn a_listener_bound_elsewhere_is_served_on_its_own_port() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let addr = listener.local_addr().unwrap();
    let server = NetTransport::from_listener(listener, None, Config::default(), Placement::Thread)
        .expect("a listening socket is served");
    assert_eq!(server.bound_addr(), addr);
    assert_eq!(server.local_addr(), addr.into());
    let consumer = server.consumer().clone();
    let answer = std::thread::spawn(move || {
        let rpc = consumer.recv().expect("the vote arrives");
        rpc.respond_ok(RequestVoteResponse {
            term: 7,
            granted: true,
            ..Default::default()
        });
    });
    let client = bind("127.0.0.1:0").expect("bind a client");
    let vote = client
        .request_vote(
            &"server".into(),
            &addr.into(),
            RequestVoteRequest {
                term: 7,
                ..Default::default()
            },
            CallOptions::default(),
        )
        .wait()
        .expect("the vote is answered on the listener's port");
    assert_eq!((vote.term, vote.granted), (7, true));
    answer.join().unwrap();
}

#[test]
fn a_socket_that_does_not_listen_is_refused_by_name() {
    // A connected stream's socket in a TcpListener's clothes: it would never accept.
    let peer = TcpListener::bind("127.0.0.1:0").expect("a free port");
    let stream = std::net::TcpStream::connect(peer.local_addr().unwrap()).expect("connect");
    let local = stream.local_addr().unwrap();
    let not_listening = TcpListener::from(std::os::fd::OwnedFd::from(stream));
    let error =
        NetTransport::from_listener(not_listening, None, Config::default(), Placement::Thread)
            .expect_err("a connected socket is not a listener");
    match &error {
        Error::Bind {
            addr: Some(addr),
            reason,
        } => {
            assert_eq!(*addr, local);
            assert_eq!(reason.kind(), io::ErrorKind::InvalidInput);
        }
        other => panic!("expected Error::Bind naming {local}, got {other:?}"),
    }
    assert!(error.is_fatal());
    assert!(error.to_string().contains("not listening"), "{error}");
}
