//! What the harness reads at the edges of a measured window, and latency percentiles.
//!
//! - [`usage`]: CPU time (user and system) and context switches of the whole process, in one
//!   `getrusage(RUSAGE_SELF)` call. Client and server run in this one process, so it covers
//!   **both ends** of every operation.
//! - [`busy_cpu_time`]: CPU time of the whole machine (`/proc/stat`), to report how much other
//!   processes used during a window (a noisy neighbour invalidates a run).
//! - [`Latencies`]: percentiles of a sample's latencies.
//! - [`median`]: the median of the rounds' figures, which every report of rounds gives.
//!
//! # Context switches: both kinds, every thread, exited ones included
//!
//! A thread leaves its CPU in one of two ways, and the harness counts both:
//!
//! - **voluntary** (`ru_nvcsw`): it blocked (futex, `epoll_wait`, a blocking read, a sleep) and
//!   will be woken later: a wake-up, the cost the project's performance notes name as the
//!   dominant one on this machine;
//! - **involuntary** (`ru_nivcsw`): it was still runnable when the scheduler switched away,
//!   because its slice ended, a woken thread preempted it, or it called `sched_yield` while
//!   another thread was runnable on its CPU. raftnet's spin-then-yield hand-offs are of this
//!   kind: counting only voluntary switches (as this module did until the switches were counted
//!   per kind) hid them and made raftnet look almost free of switches next to tokio, whose
//!   workers park on a futex (voluntary).
//!
//! Where they are read matters. The per-thread counters in `/proc/self/task/*/status` (read here
//! before) see only threads that are alive at the moment of reading: a thread that exits during
//! the window (the snapshot sender's pump thread, started per transfer) takes its switches with
//! it, and one that existed at the start and exits before the end has its earlier switches
//! subtracted from the total. No reading at the two edges can recover them, because the exited
//! thread's last count is nowhere in `/proc/self/task`. `getrusage(RUSAGE_SELF)` can: the kernel
//! adds an exiting thread's counts (and CPU times) to the process's own totals
//! (`__exit_signal` into `signal_struct`), and `RUSAGE_SELF` returns those totals plus every
//! live thread's, under the same lock. So the difference of two readings counts every switch
//! of every thread that ran during the window, however threads came and went, and it is read in
//! the same call as the CPU time, so both describe the same instant. (Children are not
//! included; the harness starts none.)
//!
//! What it also counts: the harness's own thread, which blocks once per window (one voluntary
//! switch per window, negligible except for `snapshot-64m`, whose ops are few), and the threads
//! of a run that did not stop in time (the runner marks the rows measured after one).

use std::time::Duration;

use nix::sys::resource::{UsageWho, getrusage};

/// CPU time used by this process so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuTime {
    /// User time.
    pub user: Duration,
    /// System (kernel) time.
    pub sys: Duration,
}

impl CpuTime {
    /// User + system.
    pub fn total(self) -> Duration {
        self.user + self.sys
    }

    /// The CPU time used between `earlier` and `self`.
    pub fn since(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            sys: self.sys.saturating_sub(earlier.sys),
        }
    }
}

impl std::ops::AddAssign for CpuTime {
    /// Add another process's CPU time (the Go column's, `Sample::other_processes`).
    fn add_assign(&mut self, other: CpuTime) {
        self.user += other.user;
        self.sys += other.sys;
    }
}

/// Context switches of this process so far (see the module documentation).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Switches {
    /// A thread blocked and was woken later (`ru_nvcsw`).
    pub voluntary: u64,
    /// A thread was switched away from while still runnable: end of slice, preemption by a
    /// woken thread, or `sched_yield` with another thread runnable (`ru_nivcsw`).
    pub involuntary: u64,
}

impl Switches {
    /// Voluntary + involuntary.
    pub fn total(self) -> u64 {
        self.voluntary + self.involuntary
    }

    /// The switches between `earlier` and `self`.
    pub fn since(self, earlier: Switches) -> Switches {
        Switches {
            voluntary: self.voluntary.saturating_sub(earlier.voluntary),
            involuntary: self.involuntary.saturating_sub(earlier.involuntary),
        }
    }
}

impl std::ops::AddAssign for Switches {
    /// Add another process's switches (the Go column's, `Sample::other_processes`).
    fn add_assign(&mut self, other: Switches) {
        self.voluntary += other.voluntary;
        self.involuntary += other.involuntary;
    }
}

/// CPU time and context switches of the whole process so far.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// User and system time.
    pub cpu: CpuTime,
    /// Context switches.
    pub switches: Switches,
}

fn timeval(tv: nix::sys::time::TimeVal) -> Duration {
    Duration::from_secs(tv.tv_sec().max(0) as u64)
        + Duration::from_micros(tv.tv_usec().max(0) as u64)
}

/// CPU time and context switches of the whole process: every thread, live or exited, read in
/// one `getrusage(RUSAGE_SELF)` call (see the module documentation for why this and not
/// `/proc/self/task`).
pub fn usage() -> Usage {
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(usage) => Usage {
            cpu: CpuTime {
                user: timeval(usage.user_time()),
                sys: timeval(usage.system_time()),
            },
            switches: Switches {
                voluntary: usage.voluntary_context_switches().max(0) as u64,
                involuntary: usage.involuntary_context_switches().max(0) as u64,
            },
        },
        Err(_) => Usage::default(),
    }
}

/// CPU time (user and system) of the whole process: every thread, live or exited.
pub fn cpu_time() -> CpuTime {
    usage().cpu
}

/// CPU time spent by the whole machine (all CPUs, all processes, not idle nor iowait) so far,
/// from the first line of `/proc/stat`; `None` where it cannot be read.
pub fn busy_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let ticks = parse_busy_ticks(&stat)?;
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .filter(|&hz| hz > 0)
        .unwrap_or(100) as u64;
    Some(Duration::from_secs(ticks / hz) + Duration::from_nanos((ticks % hz) * 1_000_000_000 / hz))
}

fn parse_busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().next()?;
    let mut fields = line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    let v: Vec<u64> = fields.map(|f| f.parse().unwrap_or(0)).collect();
    // user nice system idle iowait irq softirq steal (guest time is already in user).
    let get = |i: usize| v.get(i).copied().unwrap_or(0);
    Some(get(0) + get(1) + get(2) + get(5) + get(6) + get(7))
}

/// Everything read at one edge of a measured window.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    /// Wall clock.
    pub at: std::time::Instant,
    /// This process's CPU time.
    pub cpu: CpuTime,
    /// This process's context switches, every thread's, exited ones included.
    pub switches: Switches,
    /// The machine's busy CPU time.
    pub busy: Option<Duration>,
}

impl Snapshot {
    /// Read everything now (the clock first).
    pub fn take() -> Snapshot {
        let at = std::time::Instant::now();
        let Usage { cpu, switches } = usage();
        Snapshot {
            at,
            cpu,
            switches,
            busy: busy_cpu_time(),
        }
    }
}

/// What happened between two snapshots.
#[derive(Debug, Clone, Copy)]
pub struct Window {
    /// Wall-clock length.
    pub elapsed: Duration,
    /// CPU time of this process.
    pub cpu: CpuTime,
    /// Context switches of this process's threads, voluntary and involuntary, including those
    /// of threads that exited during the window.
    pub switches: Switches,
    /// CPU used by other processes, in cores (busy machine time minus ours, over the window).
    pub others_cores: Option<f64>,
}

impl Window {
    /// The window between `start` and `end`.
    pub fn between(start: &Snapshot, end: &Snapshot) -> Window {
        let elapsed = end.at.saturating_duration_since(start.at);
        let cpu = end.cpu.since(start.cpu);
        let others_cores = match (start.busy, end.busy) {
            (Some(a), Some(b)) if !elapsed.is_zero() => {
                let busy = b.saturating_sub(a).as_secs_f64();
                Some(((busy - cpu.total().as_secs_f64()) / elapsed.as_secs_f64()).max(0.0))
            }
            _ => None,
        };
        Window {
            elapsed,
            cpu,
            switches: end.switches.since(start.switches),
            others_cores,
        }
    }
}

/// The percentiles the chart draws, with their labels (`1.0` is the maximum).
pub const CURVE_PERCENTILES: [(f64, &str); 11] = [
    (0.0, "min"),
    (0.10, "p10"),
    (0.25, "p25"),
    (0.50, "p50"),
    (0.75, "p75"),
    (0.90, "p90"),
    (0.95, "p95"),
    (0.99, "p99"),
    (0.995, "p99.5"),
    (0.999, "p99.9"),
    (1.0, "max"),
];

/// Latencies of one run, sorted.
#[derive(Debug, Clone, Default)]
pub struct Latencies {
    sorted_ns: Vec<u64>,
}

impl Latencies {
    /// Take a sample's latencies (nanoseconds, any order).
    pub fn new(mut ns: Vec<u64>) -> Latencies {
        ns.sort_unstable();
        Latencies { sorted_ns: ns }
    }

    /// How many latencies there are.
    pub fn len(&self) -> usize {
        self.sorted_ns.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.sorted_ns.is_empty()
    }

    /// The `q` quantile (0.0..=1.0, nearest rank) in microseconds; `None` if there are no
    /// latencies.
    pub fn percentile_us(&self, q: f64) -> Option<f64> {
        let n = self.sorted_ns.len();
        if n == 0 {
            return None;
        }
        let rank = (q.clamp(0.0, 1.0) * n as f64).ceil() as usize;
        let i = rank.saturating_sub(1).min(n - 1);
        Some(self.sorted_ns[i] as f64 / 1e3)
    }

    /// The mean in microseconds.
    pub fn mean_us(&self) -> Option<f64> {
        if self.sorted_ns.is_empty() {
            return None;
        }
        let sum: u128 = self.sorted_ns.iter().map(|&v| v as u128).sum();
        Some(sum as f64 / self.sorted_ns.len() as f64 / 1e3)
    }

    /// [`CURVE_PERCENTILES`], in microseconds.
    pub fn curve_us(&self) -> Vec<Option<f64>> {
        CURVE_PERCENTILES
            .iter()
            .map(|&(q, _)| self.percentile_us(q))
            .collect()
    }
}

/// The median of `values`, NaN left out (the mean of the middle two for an even count); `None`
/// if nothing is left.
pub fn median(values: impl IntoIterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| !x.is_nan()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Turns between the unit tests that read process-wide counters and those that load the
/// process.
///
/// `cargo test` runs a crate's tests as threads of one process, and CPU time and context
/// switches (getrusage `RUSAGE_SELF`) count every thread: a test that checks a window's
/// switches per operation would count a concurrent cluster test's too. So a test that reads
/// the counters takes [`measuring`](test_lock::measuring) (alone), and a test that runs
/// transports, clusters or runtimes takes [`loading`](test_lock::loading) (any number at once).
#[cfg(test)]
pub(crate) mod test_lock {
    use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

    static LOCK: RwLock<()> = RwLock::new(());

    /// For a test that reads process-wide counters: no load test runs meanwhile.
    pub(crate) fn measuring() -> RwLockWriteGuard<'static, ()> {
        LOCK.write().unwrap_or_else(|p| p.into_inner())
    }

    /// For a test that loads the process (threads, runtimes, sockets).
    pub(crate) fn loading() -> RwLockReadGuard<'static, ()> {
        LOCK.read().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median([3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median([4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median([f64::NAN, 5.0]), Some(5.0));
        assert_eq!(median(std::iter::empty()), None);
    }

    #[test]
    fn percentiles_nearest_rank() {
        let l = Latencies::new((1..=1000).rev().map(|v| v * 1000).collect());
        assert_eq!(l.percentile_us(0.0), Some(1.0));
        assert_eq!(l.percentile_us(0.5), Some(500.0));
        assert_eq!(l.percentile_us(0.99), Some(990.0));
        assert_eq!(l.percentile_us(0.999), Some(999.0));
        assert_eq!(l.percentile_us(1.0), Some(1000.0));
        assert_eq!(l.mean_us(), Some(500.5));
        let one = Latencies::new(vec![7000]);
        assert_eq!(one.percentile_us(0.999), Some(7.0));
        assert_eq!(Latencies::new(vec![]).percentile_us(0.5), None);
        assert_eq!(Latencies::new(vec![]).mean_us(), None);
    }

    #[test]
    fn parses_proc_stat() {
        let stat = "cpu  10 1 5 100 7 2 3 4 0 0\ncpu0 1 1 1 1 1 1 1 1 0 0\n";
        assert_eq!(parse_busy_ticks(stat), Some(10 + 1 + 5 + 2 + 3 + 4));
    }

    #[test]
    fn counters_move() {
        let a = Snapshot::take();
        // Burn a little CPU and block once.
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        std::thread::sleep(Duration::from_millis(5));
        let b = Snapshot::take();
        let w = Window::between(&a, &b);
        assert!(w.elapsed >= Duration::from_millis(5));
        assert!(w.switches.voluntary >= 1, "a sleep is a voluntary switch");
        assert!(cpu_time().total() > Duration::ZERO);
    }

    /// The tests below read process-wide counters: see [`super::test_lock`].
    use super::test_lock::measuring as serial;

    /// A thread that starts and exits inside the window (like the snapshot sender's pump
    /// thread) still counts: its 50 sleeps are about 50 voluntary switches, which a reading of
    /// the live threads at both edges (`/proc/self/task/*/status`) would not see at all (the
    /// main thread alone adds one or two, for the join).
    ///
    /// Not every sleep is a switch: `nanosleep` arms its timer, then blocks only if the timer
    /// has not fired yet, and on a VM whose vCPU the host takes away for longer than the sleep
    /// (steal time) it has, so the thread never leaves the CPU. CI saw 46 of 50. The bound is
    /// half the sleeps: far above what the main thread adds, so a lost thread still fails it.
    #[test]
    fn an_exited_threads_switches_count() {
        let _serial = serial();
        let a = Snapshot::take();
        std::thread::spawn(|| {
            for _ in 0..50 {
                std::thread::sleep(Duration::from_micros(200));
            }
        })
        .join()
        .unwrap();
        let b = Snapshot::take();
        let w = Window::between(&a, &b);
        assert!(
            w.switches.voluntary >= 25,
            "an exited thread's switches are lost: {:?}",
            w.switches
        );
    }

    /// A thread that exists at the start and exits before the end keeps what it did during
    /// the window (its earlier switches are not subtracted either). Half its 40 sleeps is the
    /// bound, for the reason in [`an_exited_threads_switches_count`].
    #[test]
    fn a_thread_that_exits_mid_window_counts() {
        let _serial = serial();
        let (go, started) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::spawn(move || {
            // Switches before the window: must not be subtracted from the window's count.
            for _ in 0..30 {
                std::thread::sleep(Duration::from_micros(200));
            }
            started.recv().unwrap();
            for _ in 0..40 {
                std::thread::sleep(Duration::from_micros(200));
            }
        });
        std::thread::sleep(Duration::from_millis(20));
        let a = Snapshot::take();
        go.send(()).unwrap();
        worker.join().unwrap();
        let b = Snapshot::take();
        let w = Window::between(&a, &b);
        assert!(w.switches.voluntary >= 20, "{:?}", w.switches);
    }

    /// Two threads on one CPU yielding to each other switch involuntarily (they stay runnable):
    /// raftnet's spin-then-yield hand-offs are this kind, so the harness counts it.
    #[test]
    fn yields_are_involuntary_switches() {
        use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity, sched_yield};
        use nix::unistd::Pid;
        let _serial = serial();
        let Ok(allowed) = sched_getaffinity(Pid::from_raw(0)) else {
            return;
        };
        let Some(cpu) = (0..CpuSet::count()).find(|&c| allowed.is_set(c).unwrap_or(false)) else {
            return;
        };
        let a = Snapshot::take();
        // Both threads are on the CPU before either starts yielding.
        let ready = std::sync::Arc::new(std::sync::Barrier::new(2));
        let yielders: Vec<_> = (0..2)
            .map(|_| {
                let ready = ready.clone();
                std::thread::spawn(move || {
                    let mut one = CpuSet::new();
                    one.set(cpu).unwrap();
                    sched_setaffinity(Pid::from_raw(0), &one).unwrap();
                    ready.wait();
                    for _ in 0..2000 {
                        sched_yield().unwrap();
                    }
                })
            })
            .collect();
        for y in yielders {
            y.join().unwrap();
        }
        let b = Snapshot::take();
        let w = Window::between(&a, &b);
        assert!(
            w.switches.involuntary >= 500,
            "yields to a runnable thread are involuntary switches: {:?}",
            w.switches
        );
    }
}
