//! hashicorp/raft's `TestNetworkTransport_ListenBackoff` (net_transport_test.go), adapted: when
//! accepting a connection fails, the reactor backs off as hashicorp's listener does, and accepts
//! again once it can.
//!
//! The test makes accepting fail for real by re-running this test binary in a child process with
//! a lowered descriptor limit, selecting itself there by name (`listen_backoff --exact`): keep
//! that name and the child module together with it.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::fixtures::*;
use common::net::*;
use common::peers::*;
use raftnet::message::*;
use raftnet::*;

/// #13 `TestNetworkTransport_ListenBackoff`.
///
/// hashicorp injects a stream layer whose `Accept` always fails and counts calls and log lines
/// over 4 s. raftnet has no pluggable listener, so this adaptation makes the real listener fail:
/// the test re-runs itself in a child process whose descriptor limit is lowered (`ulimit -n`),
/// exhausts the descriptors once a client connection is pending, and reads the reactor's
/// "failed to accept connection ...; retrying in D" log lines. Instead of counting calls in a
/// time window (a timing assertion), it checks the back-off each line announces: 5 ms doubling
/// to the 1 s cap, then 1 s again. It then frees the descriptors and checks that accepting
/// resumes (the pending call is served), and that `close` returns, which joins the reactor
/// thread the accept loop runs on. The schedule function itself is unit-tested in
/// src/net/timer.rs.
#[cfg(unix)]
#[test]
fn listen_backoff() {
    if std::env::var_os(listen_backoff_child::ENV).is_some() {
        listen_backoff_child::run();
        return;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let child = std::process::Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 256 2>/dev/null; exec "$0" "$@""#)
        .arg(exe)
        .args([
            "listen_backoff",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(listen_backoff_child::ENV, "1")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn the child test process");
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(Duration::from_secs(120)) {
        Ok(output) => output.expect("wait for the child"),
        Err(_) => {
            // Only the child we spawned, by its pid.
            let _ = std::process::Command::new("kill")
                .args(["-9", &pid.to_string()])
                .status();
            panic!("the listen-backoff child process did not finish within 120 s");
        }
    };
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
}

#[cfg(unix)]
mod listen_backoff_child {
    use std::fs::File;
    use std::sync::Mutex;

    use super::*;

    pub(crate) const ENV: &str = "RAFTNET_TEST_LISTEN_BACKOFF_CHILD";

    /// EMFILE on Linux and the BSDs.
    const EMFILE: i32 = 24;

    struct Capture(Mutex<Vec<String>>);

    impl log::Log for Capture {
        fn enabled(&self, _: &log::Metadata<'_>) -> bool {
            true
        }

        fn log(&self, record: &log::Record<'_>) {
            self.0
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(record.args().to_string());
        }

        fn flush(&self) {}
    }

    static CAPTURE: Capture = Capture(Mutex::new(Vec::new()));

    /// The back-off each "failed to accept connection" line announced, in order.
    fn announced_delays() -> Vec<String> {
        CAPTURE
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|line| line.contains("failed to accept connection"))
            .map(|line| match line.rsplit_once("retrying in ") {
                Some((_, delay)) => delay.to_string(),
                None => format!("<no delay in {line:?}>"),
            })
            .collect()
    }

    pub(crate) fn run() {
        log::set_logger(&CAPTURE).expect("install the capturing logger");
        log::set_max_level(log::LevelFilter::Warn);

        let server = bind(test_config());
        // No deadline: the call must survive the whole back-off phase.
        let client = bind(test_config().timeout(None));

        // Exhaust the descriptors, then free exactly one for the client's socket.
        let mut held = Vec::new();
        loop {
            match File::open("/dev/null") {
                Ok(f) => held.push(f),
                Err(e) if e.raw_os_error() == Some(EMFILE) => break,
                Err(e) => panic!("unexpected error exhausting descriptors: {e}"),
            }
            assert!(held.len() < 1 << 16, "the descriptor limit was not lowered");
        }
        held.pop();
        let call = client.request_vote(
            &id(),
            &server.local_addr(),
            vote_request(),
            CallOptions::default(),
        );

        wait_until("ten failed accepts were logged", || {
            announced_delays().len() >= 10
        });
        drop(held);

        let responder = answer_with(server.consumer(), 1, |_| Ok(vote_response().into()));
        assert_eq!(finish(call), Ok(vote_response()));
        assert_eq!(join(responder), vec![Request::RequestVote(vote_request())]);

        let expected: Vec<String> = [5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000]
            .iter()
            .map(|ms| format!("{:?}", Duration::from_millis(*ms)))
            .collect();
        let announced = announced_delays();
        eprintln!("listen_backoff child: announced back-offs {announced:?}");
        assert_eq!(announced[..10], expected[..]);

        server.close();
        assert!(server.is_shutdown());
        client.close();
    }
}
