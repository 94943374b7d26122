//! What both runs measure besides correctness: how much got through with and without faults,
//! how long the system took to recover after each heal, and the process's descriptors, threads
//! and memory (from `/proc/self`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Shared between the workers and the fault injector: whether a fault is on, what completed
/// in each state, and when each worker last finished an operation it started after a heal.
#[derive(Debug)]
pub struct Availability {
    start: Instant,
    faulty: AtomicBool,
    ok_during_faults: AtomicU64,
    ok_without_faults: AtomicU64,
    /// Per worker: the start time (ns since `start`) of its latest successful operation.
    last_ok_started: Vec<AtomicU64>,
    windows: Mutex<Windows>,
}

#[derive(Debug, Default)]
struct Windows {
    faulty: Duration,
    clear: Duration,
    since: Option<Instant>,
    recoveries: Vec<Duration>,
    faults: BTreeMap<&'static str, u64>,
    /// The kind of the fault on now (or last), which a recovery is charged to.
    current: &'static str,
    slowest: BTreeMap<&'static str, Duration>,
}

impl Windows {
    fn recovered(&mut self, took: Duration) {
        self.recoveries.push(took);
        let slowest = self.slowest.entry(self.current).or_default();
        *slowest = (*slowest).max(took);
    }
}

impl Availability {
    /// For `workers` workers, numbered from 0.
    pub fn new(workers: usize) -> Availability {
        Availability {
            start: Instant::now(),
            faulty: AtomicBool::new(false),
            ok_during_faults: AtomicU64::new(0),
            ok_without_faults: AtomicU64::new(0),
            last_ok_started: (0..workers).map(|_| AtomicU64::new(0)).collect(),
            windows: Mutex::new(Windows::default()),
        }
    }

    /// Nanoseconds since the run started: the clock every recorded time is on.
    pub fn now(&self) -> u64 {
        self.start.elapsed().as_nanos() as u64
    }

    /// A worker finished an operation successfully that it started at `started` (from
    /// [`now`](Self::now)).
    pub fn ok(&self, worker: usize, started: u64) {
        if self.faulty.load(Ordering::Relaxed) {
            self.ok_during_faults.fetch_add(1, Ordering::Relaxed);
        } else {
            self.ok_without_faults.fetch_add(1, Ordering::Relaxed);
        }
        self.last_ok_started[worker].fetch_max(started, Ordering::Relaxed);
    }

    /// Start measuring the fault-free time (call once the workers run).
    pub fn begin(&self) {
        self.windows.lock().unwrap().since = Some(Instant::now());
    }

    fn switch(&self, faulty: bool) {
        let mut w = self.windows.lock().unwrap();
        let now = Instant::now();
        if let Some(since) = w.since {
            if self.faulty.load(Ordering::Relaxed) {
                w.faulty += now - since;
            } else {
                w.clear += now - since;
            }
        }
        w.since = Some(now);
        self.faulty.store(faulty, Ordering::Relaxed);
    }

    /// A fault of this kind is injected now.
    pub fn fault(&self, kind: &'static str) {
        {
            let mut w = self.windows.lock().unwrap();
            *w.faults.entry(kind).or_default() += 1;
            w.current = kind;
        }
        self.switch(true);
    }

    /// Every fault is healed now; returns the heal's time (from [`now`](Self::now)).
    pub fn healed(&self) -> u64 {
        self.switch(false);
        self.now()
    }

    /// Wait until every worker (`every`) or any worker (`!every`) completed an operation it
    /// started after `healed`, at most `bound`; records and returns the time it took, `None`
    /// past the bound (recorded as the bound, so that a slow recovery shows in the maximum).
    pub fn wait_recovery(
        &self,
        healed: u64,
        every: bool,
        bound: Duration,
        stop: &AtomicBool,
    ) -> Option<Duration> {
        let took = self.wait_serving(healed, every, bound, stop);
        if !stop.load(Ordering::Relaxed) {
            self.windows
                .lock()
                .unwrap()
                .recovered(took.unwrap_or(bound));
        }
        took
    }

    /// [`wait_recovery`](Self::wait_recovery) without recording it (the start of a run).
    pub fn wait_serving(
        &self,
        since: u64,
        every: bool,
        bound: Duration,
        stop: &AtomicBool,
    ) -> Option<Duration> {
        let deadline = Instant::now() + bound;
        loop {
            let recovered = |w: &AtomicU64| w.load(Ordering::Relaxed) >= since;
            let done = if every {
                self.last_ok_started.iter().all(recovered)
            } else {
                self.last_ok_started.iter().any(recovered)
            };
            if done {
                return Some(Duration::from_nanos(self.now().saturating_sub(since)));
            }
            if Instant::now() >= deadline || stop.load(Ordering::Relaxed) {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Faults injected so far, all kinds.
    pub fn faults_so_far(&self) -> u64 {
        self.windows.lock().unwrap().faults.values().sum()
    }

    /// The totals, once the run is over.
    pub fn summary(&self) -> AvailabilitySummary {
        self.switch(false);
        let w = self.windows.lock().unwrap();
        let mut recoveries = w.recoveries.clone();
        recoveries.sort();
        AvailabilitySummary {
            faults: w.faults.clone(),
            faulty_time: w.faulty,
            clear_time: w.clear,
            ok_during_faults: self.ok_during_faults.load(Ordering::Relaxed),
            ok_without_faults: self.ok_without_faults.load(Ordering::Relaxed),
            recovery_p50: percentile(&recoveries, 0.5),
            recovery_max: recoveries.last().copied(),
            recoveries: recoveries.len(),
            slowest_recovery: w.slowest.clone(),
        }
    }
}

/// Faults, throughput and recovery over a whole run.
#[derive(Debug, Clone, Default)]
pub struct AvailabilitySummary {
    /// Faults injected, by kind.
    pub faults: BTreeMap<&'static str, u64>,
    /// Time with a fault on.
    pub faulty_time: Duration,
    /// Time without.
    pub clear_time: Duration,
    /// Successful operations completed while a fault was on.
    pub ok_during_faults: u64,
    /// And while none was.
    pub ok_without_faults: u64,
    /// Median time from a heal to every worker succeeding again.
    pub recovery_p50: Option<Duration>,
    /// The longest such time.
    pub recovery_max: Option<Duration>,
    /// How many heals were measured.
    pub recoveries: usize,
    /// The longest recovery after each kind of fault.
    pub slowest_recovery: BTreeMap<&'static str, Duration>,
}

impl AvailabilitySummary {
    /// Faults injected, all kinds.
    pub fn total_faults(&self) -> u64 {
        self.faults.values().sum()
    }

    /// Successful operations per second with a fault on, and without.
    pub fn rates(&self) -> (f64, f64) {
        let rate = |n: u64, t: Duration| {
            if t.is_zero() {
                0.0
            } else {
                n as f64 / t.as_secs_f64()
            }
        };
        (
            rate(self.ok_during_faults, self.faulty_time),
            rate(self.ok_without_faults, self.clear_time),
        )
    }

    /// The fault and availability rows of a report table.
    pub fn write_rows(&self, out: &mut String) {
        let kinds: Vec<String> = self
            .faults
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let _ = writeln!(
            out,
            "| faults injected | {} ({}) |",
            self.total_faults(),
            kinds.join(", ")
        );
        let _ = writeln!(
            out,
            "| time with a fault on / without | {:.0} s / {:.0} s |",
            self.faulty_time.as_secs_f64(),
            self.clear_time.as_secs_f64()
        );
        let (during, clear) = self.rates();
        let _ = writeln!(
            out,
            "| successful ops/s during faults / fault-free | {during:.0} / {clear:.0} ({:.0} %) |",
            if clear > 0.0 {
                100.0 * during / clear
            } else {
                0.0
            }
        );
        let _ = writeln!(
            out,
            "| recovery after a heal, p50 / max ({} heals) | {} / {} |",
            self.recoveries,
            millis(self.recovery_p50),
            millis(self.recovery_max)
        );
        let slowest: Vec<String> = self
            .slowest_recovery
            .iter()
            .map(|(k, d)| format!("{k} {} ms", d.as_millis()))
            .collect();
        let _ = writeln!(
            out,
            "| slowest recovery, by the kind of fault healed | {} |",
            slowest.join(", ")
        );
    }
}

fn millis(d: Option<Duration>) -> String {
    d.map_or("-".into(), |d| format!("{} ms", d.as_millis()))
}

/// The `q` quantile of sorted values.
pub fn percentile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    Some(sorted[index])
}

/// This process's open descriptors, threads and resident memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    /// Entries in `/proc/self/fd`.
    pub descriptors: usize,
    /// Entries in `/proc/self/task`.
    pub threads: usize,
    /// `VmRSS`, in KiB.
    pub rss_kib: u64,
}

impl Resources {
    /// Read them now (zeros where `/proc` is missing).
    pub fn now() -> Resources {
        let count = |dir: &str| std::fs::read_dir(dir).map_or(0, |d| d.count());
        let rss_kib = std::fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
                line.split_whitespace().nth(1)?.parse().ok()
            })
            .unwrap_or(0);
        Resources {
            descriptors: count("/proc/self/fd"),
            threads: count("/proc/self/task"),
            rss_kib,
        }
    }
}

/// Draws fault kinds in seeded, shuffled rounds: every kind once per round, in a random order.
/// A short run still sees every kind; a long one sees them in equal numbers.
#[derive(Debug, Clone)]
pub struct FaultBag {
    kinds: usize,
    left: Vec<usize>,
}

impl FaultBag {
    /// Kinds numbered `0..kinds`.
    pub fn new(kinds: usize) -> FaultBag {
        FaultBag {
            kinds,
            left: Vec::new(),
        }
    }

    /// The next kind.
    pub fn draw(&mut self, rng: &mut impl rand::Rng) -> usize {
        if self.left.is_empty() {
            self.left = (0..self.kinds).collect();
            rand::seq::SliceRandom::shuffle(&mut self.left[..], rng);
        }
        self.left.pop().expect("a kind")
    }
}
