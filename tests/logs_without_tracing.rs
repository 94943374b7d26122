//! A user with only a `log` logger (env_logger and the like) and no tracing subscriber still
//! sees raftnet's warnings and, at the levels the logger enables, its debug lines: tracing's
//! `log` feature turns every event into a `log` record while no tracing subscriber has been
//! installed in the process. So this binary installs none (tests/logs.rs does, in its own
//! process), only a capturing `log` logger, and every test in it shares that logger.
//! Feature `log` (on by default) is what this checks.
#![cfg(feature = "log")]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use common::net::{EVENTUALLY, bind};
use raftnet::Config;

/// One `log` record: its level, target and text.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Line {
    level: log::Level,
    target: String,
    text: String,
}

struct CaptureLog;

static LINES: Mutex<Vec<Line>> = Mutex::new(Vec::new());

impl log::Log for CaptureLog {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Debug
    }

    fn log(&self, record: &log::Record<'_>) {
        if self.enabled(record.metadata()) {
            LINES.lock().unwrap_or_else(|e| e.into_inner()).push(Line {
                level: record.level(),
                target: record.target().into(),
                text: record.args().to_string(),
            });
        }
    }

    fn flush(&self) {}
}

static LOGGER: CaptureLog = CaptureLog;

/// Install the capturing logger at `Debug` (once per test binary).
fn capture() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        log::set_logger(&LOGGER).expect("no other logger");
        log::set_max_level(log::LevelFilter::Debug);
    });
}

/// The lines naming `peer` so far, once one of them satisfies `done`.
fn wait_for_lines(peer: &str, done: impl Fn(&Line) -> bool) -> Vec<Line> {
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        let lines: Vec<Line> = LINES
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|l| l.text.contains(peer))
            .cloned()
            .collect();
        if lines.iter().any(&done) {
            return lines;
        }
        assert!(
            Instant::now() < deadline,
            "no line for {peer} within {EVENTUALLY:?}: {lines:#?}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Garbage sent to a listener: the `log` logger gets the warning, naming the peer and the
/// error, as one line with the event's fields; the connection's span (as a record of its own,
/// with its fields) and its debug lines come through too, at the logger's level.
#[test]
fn a_log_logger_sees_the_warning_with_no_tracing_subscriber() {
    capture();
    let server = bind(Config::default());
    let mut stray = TcpStream::connect(server.bound_addr()).expect("connect");
    let peer = stray.local_addr().expect("the stray's address").to_string();
    stray
        .write_all(b"GET / HTTP/1.1\r\nHost: raft\r\n\r\n")
        .expect("send");
    stray
        .set_read_timeout(Some(EVENTUALLY))
        .expect("read timeout");
    let _ = stray.read_to_end(&mut Vec::new());

    let lines = wait_for_lines(&peer, |l| l.text.starts_with("connection closed "));
    let error = "not a raftnet connection: it began with 47 45 54 20 2f 20 48 54 (\"GET / HT\"), \
                 which looks like an HTTP client";
    let warnings: Vec<&Line> = lines
        .iter()
        .filter(|l| l.level <= log::Level::Warn)
        .collect();
    assert_eq!(
        warnings,
        [&Line {
            level: log::Level::Warn,
            target: "raftnet::engine".into(),
            text: format!("closing the connection: protocol error peer={peer} error={error}"),
        }]
    );
    // The connection's span comes first, as a record of its own with its fields.
    let conn = lines
        .iter()
        .find(|l| l.text.starts_with("conn; "))
        .expect("the connection's span as a record");
    assert!(
        conn.text
            .ends_with(&format!(" peer={peer} dir=\"accepted\"")),
        "{conn:?}"
    );
    assert_eq!(conn.level, log::Level::Debug);
    assert_eq!(conn.target, "raftnet::engine");
    let key = conn
        .text
        .strip_prefix("conn; conn=")
        .and_then(|rest| rest.split_once(' '))
        .map(|(key, _)| key)
        .expect("the key first");
    assert!(key.starts_with("conn#"), "{conn:?}");
    let raftnet_lines: Vec<(log::Level, String)> = lines
        .iter()
        .filter(|l| l.target == "raftnet::engine")
        .map(|l| (l.level, l.text.clone()))
        .collect();
    assert_eq!(
        raftnet_lines,
        [
            (log::Level::Debug, conn.text.clone()),
            (log::Level::Debug, format!("accepted peer={peer}")),
            (
                log::Level::Warn,
                format!("closing the connection: protocol error peer={peer} error={error}")
            ),
            (
                log::Level::Debug,
                format!("connection closed peer={peer} reason=protocol error: {error}")
            ),
        ]
    );
}
