//! The legitimate peer of the attack tests: a raftnet client calling the attacked server one call
//! after another, each call's latency and outcome recorded, so a test can check that the calls
//! keep succeeding during an attack and compare their latency with the same peer's when idle.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use raftnet::*;

use super::measure::percentile;
use super::net::{EVENTUALLY, bind};
use super::peers::{heartbeat, peer, vote};

/// What the legitimate peer sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LegitKind {
    /// RequestVote, on the control lane.
    Vote,
    /// Heartbeats (AppendEntries without entries), on the heartbeat lane.
    Heartbeat,
}

/// One call.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub started: Instant,
    pub latency: Duration,
    /// `None`: answered, and the answer was its own.
    pub error: Option<String>,
}

/// The pause between two calls: the peer measures latency, it does not load the machine.
const GAP: Duration = Duration::from_millis(1);

/// A legitimate peer calling in the background until [`Legit::stop`].
pub(crate) struct Legit {
    stop: Arc<AtomicBool>,
    samples: Arc<Mutex<Vec<Sample>>>,
    handle: Option<JoinHandle<()>>,
}

impl Legit {
    /// Start calling `target` with `timeout` per call (an answer later than that is a failure).
    pub(crate) fn start(target: ServerAddress, kind: LegitKind, timeout: Duration) -> Legit {
        Legit::start_with(target, kind, Config::default().timeout(Some(timeout)))
    }

    /// [`Legit::start`] from a client built with `config` (its TLS settings, say).
    pub(crate) fn start_with(target: ServerAddress, kind: LegitKind, config: Config) -> Legit {
        let stop = Arc::new(AtomicBool::new(false));
        let samples: Arc<Mutex<Vec<Sample>>> = Arc::default();
        let handle = {
            let (stop, samples) = (stop.clone(), samples.clone());
            std::thread::Builder::new()
                .name("legit-peer".into())
                .spawn(move || {
                    let client = bind(config);
                    let mut term = 0;
                    while !stop.load(Ordering::SeqCst) {
                        term += 1;
                        let started = Instant::now();
                        let error = call(&client, &target, kind, term).err();
                        let latency = started.elapsed();
                        samples.lock().unwrap().push(Sample {
                            started,
                            latency,
                            error,
                        });
                        std::thread::sleep(GAP);
                    }
                    client.close();
                })
                .expect("spawn the legitimate peer")
        };
        Legit {
            stop,
            samples,
            handle: Some(handle),
        }
    }

    /// Calls answered so far that started at or after `since`.
    pub(crate) fn answered_since(&self, since: Instant) -> usize {
        self.samples
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.started >= since && s.error.is_none())
            .count()
    }

    /// Wait until `n` calls that started at or after `since` were answered; `Err` with the
    /// calls that failed at the first failure. Fails the test after [`EVENTUALLY`].
    pub(crate) fn wait_answered(&self, n: usize, since: Instant) -> Result<(), Vec<Sample>> {
        let deadline = Instant::now() + EVENTUALLY;
        loop {
            {
                let samples = self.samples.lock().unwrap();
                let failed: Vec<Sample> = samples
                    .iter()
                    .filter(|s| s.error.is_some())
                    .cloned()
                    .collect();
                if !failed.is_empty() {
                    return Err(failed);
                }
                let answered = samples.iter().filter(|s| s.started >= since).count();
                if answered >= n {
                    return Ok(());
                }
            }
            assert!(
                Instant::now() < deadline,
                "the legitimate peer was not answered {n} times within {EVENTUALLY:?}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    /// Stop calling; every call it made.
    pub(crate) fn stop(mut self) -> Samples {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(handle) = self.handle.take() {
            handle.join().expect("the legitimate peer");
        }
        Samples(std::mem::take(&mut *self.samples.lock().unwrap()))
    }
}

impl Drop for Legit {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

fn call(
    client: &NetTransport,
    target: &ServerAddress,
    kind: LegitKind,
    term: u64,
) -> Result<(), String> {
    let options = CallOptions::default();
    match kind {
        LegitKind::Vote => match client
            .request_vote(&peer(), target, vote(term), options)
            .wait()
        {
            Ok(r) if r.term == term && r.granted => Ok(()),
            other => Err(format!("vote {term}: {other:?}")),
        },
        LegitKind::Heartbeat => {
            match client
                .append_entries(&peer(), target, heartbeat(term), options)
                .wait()
            {
                Ok(r) if r.term == term && r.success => Ok(()),
                other => Err(format!("heartbeat {term}: {other:?}")),
            }
        }
    }
}

/// Every call of a [`Legit`] run.
#[derive(Debug, Clone)]
pub(crate) struct Samples(pub Vec<Sample>);

impl Samples {
    /// The calls that failed, described.
    pub(crate) fn failures(&self) -> Vec<String> {
        self.0.iter().filter_map(|s| s.error.clone()).collect()
    }

    /// The latencies of the calls that started in `[from, to)`, sorted.
    pub(crate) fn window(&self, from: Instant, to: Instant) -> Vec<Duration> {
        let mut v: Vec<Duration> = self
            .0
            .iter()
            .filter(|s| s.started >= from && s.started < to)
            .map(|s| s.latency)
            .collect();
        v.sort();
        v
    }

    /// p99 of the calls that started in `[from, to)`, and how many there were.
    pub(crate) fn p99(&self, from: Instant, to: Instant) -> (Duration, usize) {
        let w = self.window(from, to);
        (percentile(&w, 0.99), w.len())
    }
}
