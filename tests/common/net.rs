//! Transports on loopback ports, and bounded waits.
//!
//! Timing rule for every test using these helpers: nothing synchronises by sleeping. Waits are
//! bounded polls or blocking receives with generous deadlines ([`EVENTUALLY`]); fixed-length
//! waits only assert that something does *not* happen ([`NOT_WITHIN`]), or give a request that
//! may legitimately never arrive a chance to (transport_generic/gaps.rs `per_call_deadline`).

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use raftnet::message::*;
use raftnet::*;

/// How long "happens eventually" may take before a test gives up: generous, because a slow,
/// noisy 2-core machine runs the test binaries in parallel.
pub(crate) const EVENTUALLY: Duration = Duration::from_secs(60);

/// How long a test watches for something that must *not* happen (a blocked send returning).
pub(crate) const NOT_WITHIN: Duration = Duration::from_millis(100);

/// A transport on an ephemeral loopback port.
pub(crate) fn bind(config: Config) -> NetTransport {
    NetTransport::bind("127.0.0.1:0", None, config).expect("bind 127.0.0.1:0")
}

/// Two transports on ephemeral loopback ports, both built from `config`.
pub(crate) fn pair(config: Config) -> (NetTransport, NetTransport) {
    (bind(config.clone()), bind(config))
}

/// A loopback address nobody listens on: dials to it are refused. Its port stays bound, and
/// never listening, until the test process exits (the holder is leaked on purpose, one socket
/// per call): a port only free a moment ago could be taken by another test's port-0 bind before
/// the dial, which would then reach that test's transport.
pub(crate) fn unused_addr() -> ServerAddress {
    let port = raftnet_chaos::held_port::HeldPort::reserve().expect("hold a loopback port");
    let addr = port.addr();
    std::mem::forget(port);
    ServerAddress::from(addr)
}

/// Poll `condition` until it holds, failing the test after [`EVENTUALLY`]. It is checked every
/// millisecond, so a wait ends about as soon as the condition holds.
pub(crate) fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + EVENTUALLY;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "{what}: still not true after {EVENTUALLY:?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Wait for a call's result, failing the test after [`EVENTUALLY`] (a hang is a failure, not a
/// stuck test run).
pub(crate) fn finish<T>(call: Call<T>) -> raftnet::Result<T> {
    match call.wait_deadline(Instant::now() + EVENTUALLY) {
        Ok(result) => result,
        Err(_) => panic!("the call was not resolved within {EVENTUALLY:?}"),
    }
}

/// Wait for a pipelined append's result, failing the test after [`EVENTUALLY`].
pub(crate) fn finish_append(future: &AppendFuture) -> raftnet::Result<AppendEntriesResponse> {
    wait_until("the append future resolves", || future.is_done());
    future.try_result().expect("resolved")
}

/// Assert that nothing arrives on `rx` within [`NOT_WITHIN`].
pub(crate) fn assert_nothing_within<T: std::fmt::Debug>(rx: &Receiver<T>, what: &str) {
    match rx.recv_timeout(NOT_WITHIN) {
        Err(RecvTimeoutError::Timeout) => {}
        Ok(v) => panic!("{what}: happened within {NOT_WITHIN:?} ({v:?})"),
        Err(RecvTimeoutError::Disconnected) => panic!("{what}: the sender went away"),
    }
}

/// Receive from `rx`, failing the test after [`EVENTUALLY`].
pub(crate) fn recv_eventually<T>(rx: &Receiver<T>, what: &str) -> T {
    rx.recv_timeout(EVENTUALLY)
        .unwrap_or_else(|e| panic!("{what}: {e:?} after {EVENTUALLY:?}"))
}

/// A loopback transport on `backend`, or `None` with the reason printed where it cannot run
/// (io_uring on a kernel, container or build without it): a test that needs it then says
/// `SKIPPED` and why, instead of passing silently.
pub(crate) fn bind_on_backend(
    backend: Backend,
    config: Config,
    test: &str,
) -> Option<NetTransport> {
    match NetTransport::bind("127.0.0.1:0", None, config.backend(backend)) {
        Ok(t) => {
            assert_eq!(
                t.backend(),
                Some(backend),
                "{test}: the transport runs on what it asked for"
            );
            Some(t)
        }
        Err(e @ raftnet::Error::Start { .. }) if backend == Backend::Uring => {
            // Straight to the stderr handle, which libtest does not capture: a skip shows in
            // the output of a passing run (CI's log), where a println would not.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED {test}: io_uring cannot run here: {e}"
            );
            None
        }
        Err(e) => panic!("{test}: bind 127.0.0.1:0 on {backend:?}: {e}"),
    }
}

/// Whether io_uring runs here (see [`bind_on_backend`]; the reason is printed when not).
pub(crate) fn uring_runs(test: &str) -> bool {
    bind_on_backend(Backend::Uring, Config::default(), test).is_some_and(|t| {
        t.close();
        true
    })
}
