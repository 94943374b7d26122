//! The transports the generic tests run against: the [`Fixture`] trait (how to build a
//! connected server/client pair of some `Transport`) and its implementations, one per module
//! `for_every_transport!` makes in main.rs: `NetTransport` on epoll, [`Uring`], [`OnRuntime`],
//! [`ThreadPerConnection`], [`Tls`], [`TlsUring`], [`TlsOnRuntime`] and `InmemTransport`.

use std::time::Duration;

use raftnet::*;

use crate::common;
use crate::common::fixtures::*;
use crate::common::net::*;

/// A transport the generic tests can run against, and how to build it.
pub(crate) trait Fixture: 'static {
    /// The transport under test.
    type T: Transport + Send + Sync + 'static;

    /// (server, client): the client reaches the server at `server.local_addr()`; calls time
    /// out after `timeout`.
    fn pair_with_timeout(timeout: Duration) -> (Self::T, Self::T);

    /// A pair with the CI-safe [`TEST_TIMEOUT`].
    fn pair() -> (Self::T, Self::T) {
        Self::pair_with_timeout(TEST_TIMEOUT)
    }

    /// An address the client cannot reach.
    fn unreachable() -> ServerAddress;

    /// Whether the sender of a snapshot whose reader ends early fails the call itself
    /// (`Error::Snapshot`), rather than relaying the receiver's verdict (`Error::Remote`).
    const SENDER_DETECTS_SHORT_SNAPSHOT: bool;
}

/// `NetTransport`s on the mio (epoll) driver, whatever `Backend::Auto` would pick here.
impl Fixture for NetTransport {
    type T = NetTransport;

    fn pair_with_timeout(timeout: Duration) -> (Self::T, Self::T) {
        pair(test_config().timeout(Some(timeout)).backend(Backend::Epoll))
    }

    fn unreachable() -> ServerAddress {
        unused_addr()
    }

    const SENDER_DETECTS_SHORT_SNAPSHOT: bool = true;
}

/// `NetTransport`s on the io_uring driver (src/driver/uring/). Its tests run only where
/// [`uring_runs`] (they print why not, elsewhere).
pub(crate) struct Uring;

impl Fixture for Uring {
    type T = NetTransport;

    fn pair_with_timeout(timeout: Duration) -> (Self::T, Self::T) {
        let config = test_config().timeout(Some(timeout)).backend(Backend::Uring);
        let bind = |config: Config| {
            let t = NetTransport::bind("127.0.0.1:0", None, config).expect("bind 127.0.0.1:0");
            assert_eq!(t.backend(), Some(Backend::Uring));
            t
        };
        (bind(config.clone()), bind(config))
    }

    fn unreachable() -> ServerAddress {
        unused_addr()
    }

    const SENDER_DETECTS_SHORT_SNAPSHOT: bool = true;
}

/// `NetTransport`s driven by the reference driver ([`Placement::ThreadPerConnection`]: blocking
/// std::net sockets, a thread per connection), which shares no IO code with the mio one: the
/// suite passing on it shows the connection engine's seam is real.
pub(crate) struct ThreadPerConnection;

impl Fixture for ThreadPerConnection {
    type T = NetTransport;

    fn pair_with_timeout(timeout: Duration) -> (Self::T, Self::T) {
        let config = test_config().timeout(Some(timeout));
        let bind = |config| {
            NetTransport::bind_with("127.0.0.1:0", None, config, Placement::ThreadPerConnection)
                .expect("bind 127.0.0.1:0")
        };
        (bind(config.clone()), bind(config))
    }

    fn unreachable() -> ServerAddress {
        unused_addr()
    }

    const SENDER_DETECTS_SHORT_SNAPSHOT: bool = true;
}

/// `NetTransport`s whose reactors are tasks on [`RUNTIME`] ([`NetTransport::bind_on`]).
pub(crate) struct OnRuntime;

/// The runtime the `net_on_runtime` tests' reactors run on (two workers, as a small node's).
pub(crate) static RUNTIME: std::sync::LazyLock<tokio::runtime::Runtime> =
    std::sync::LazyLock::new(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("build the tests' runtime")
    });

impl Fixture for OnRuntime {
    type T = NetTransport;

    fn pair_with_timeout(timeout: Duration) -> (Self::T, Self::T) {
        let config = test_config().timeout(Some(timeout));
        let bind_on = |config| {
            NetTransport::bind_on("127.0.0.1:0", None, config, RUNTIME.handle())
                .expect("bind 127.0.0.1:0")
        };
        (bind_on(config.clone()), bind_on(config))
    }

    fn unreachable() -> ServerAddress {
        unused_addr()
    }

    const SENDER_DETECTS_SHORT_SNAPSHOT: bool = true;
}

/// `NetTransport`s speaking mutual TLS (feature `tls`), each with a certificate for its own
/// server id from one test CA, the client expecting the server's id at the server's address:
/// the whole contract over TLS, with the driver on a thread of its own.
pub(crate) struct Tls;

/// The test CA of the TLS fixtures (made once: every pair shares it).
pub(crate) static TEST_CA: std::sync::LazyLock<common::tls::TestCa> =
    std::sync::LazyLock::new(|| common::tls::TestCa::new("raftnet generic suite CA"));

/// A TLS pair: the server (`server-1`) binds with `bind`, then the client (`client-1`) with
/// the server's identity registered at its address.
pub(crate) fn tls_pair(
    timeout: Duration,
    bind: impl Fn(Config) -> NetTransport,
) -> (NetTransport, NetTransport) {
    let config = test_config().timeout(Some(timeout));
    let server = bind(config.clone().tls(TEST_CA.tls("server-1")));
    let server_addr = server.local_addr().0.parse().expect("a socket address");
    // hashicorp's test requests (`fixtures.rs`) say they come from `id2`: a request whose
    // header names a server its sender's certificate does not is refused.
    let client_tls = TEST_CA
        .tls_named(&["client-1", "id2"])
        .peer(&ServerId::from("server-1"), server_addr)
        .expect("server-1 is a DNS name");
    let client = bind(config.tls(client_tls));
    (server, client)
}

impl Fixture for Tls {
    type T = NetTransport;

    fn pair_with_timeout(timeout: Duration) -> (Self::T, Self::T) {
        tls_pair(timeout, common::net::bind)
    }

    fn unreachable() -> ServerAddress {
        unused_addr()
    }

    const SENDER_DETECTS_SHORT_SNAPSHOT: bool = true;
}

/// [`Tls`] on the io_uring driver ([`Backend::Uring`]), run where [`uring_runs`].
pub(crate) struct TlsUring;

impl Fixture for TlsUring {
    type T = NetTransport;

    fn pair_with_timeout(timeout: Duration) -> (Self::T, Self::T) {
        tls_pair(timeout, |config| {
            let t = NetTransport::bind("127.0.0.1:0", None, config.backend(Backend::Uring))
                .expect("bind 127.0.0.1:0");
            assert_eq!(t.backend(), Some(Backend::Uring));
            t
        })
    }

    fn unreachable() -> ServerAddress {
        unused_addr()
    }

    const SENDER_DETECTS_SHORT_SNAPSHOT: bool = true;
}

/// [`Tls`] with the drivers as tasks on [`RUNTIME`].
pub(crate) struct TlsOnRuntime;

impl Fixture for TlsOnRuntime {
    type T = NetTransport;

    fn pair_with_timeout(timeout: Duration) -> (Self::T, Self::T) {
        tls_pair(timeout, |config| {
            NetTransport::bind_on("127.0.0.1:0", None, config, RUNTIME.handle())
                .expect("bind 127.0.0.1:0")
        })
    }

    fn unreachable() -> ServerAddress {
        unused_addr()
    }

    const SENDER_DETECTS_SHORT_SNAPSHOT: bool = true;
}

impl Fixture for InmemTransport {
    type T = InmemTransport;

    fn pair_with_timeout(timeout: Duration) -> (Self::T, Self::T) {
        inmem_pair(timeout)
    }

    fn unreachable() -> ServerAddress {
        ServerAddress::from("inmem-nobody-is-connected-here")
    }

    /// The receiver reads the sender's reader directly; only it can tell.
    const SENDER_DETECTS_SHORT_SNAPSHOT: bool = false;
}
