//! What the harness reads at the edges of a measured window, and latency percentiles.
//!
//! - [`cpu_time`]: CPU time of the whole process (getrusage `RUSAGE_SELF`, user and system).
//!   Client and server run in this one process, so it covers **both ends** of every operation.
//! - [`wakeups`]: voluntary context switches summed over the process's live threads. A voluntary
//!   switch is a thread blocking (futex, epoll_wait, a blocking read…) and being woken later, so
//!   the delta over a window counts wake-ups of sleeping threads, the cost the project's
//!   performance notes name as the dominant one on this machine. Caveat: it is read from
//!   `/proc/self/task/*/status`, so a thread that exits during the window takes its count with
//!   it (its switches since the window's start are lost, and its switches before the start are
//!   subtracted from the total; the delta is clamped at zero). Both implementations keep their
//!   threads for the whole run, so this affects them alike; the harness's own thread adds one
//!   wake-up per window.
//! - [`busy_cpu_time`]: CPU time of the whole machine (`/proc/stat`), to report how much other
//!   processes used during a window (a noisy neighbour invalidates a run).
//! - [`Latencies`]: percentiles of a sample's latencies.

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

fn timeval(tv: nix::sys::time::TimeVal) -> Duration {
    Duration::from_secs(tv.tv_sec().max(0) as u64)
        + Duration::from_micros(tv.tv_usec().max(0) as u64)
}

/// CPU time (user and system) of the whole process: every thread, live or exited.
pub fn cpu_time() -> CpuTime {
    match getrusage(UsageWho::RUSAGE_SELF) {
        Ok(usage) => CpuTime {
            user: timeval(usage.user_time()),
            sys: timeval(usage.system_time()),
        },
        Err(_) => CpuTime::default(),
    }
}

/// The sum of `voluntary_ctxt_switches` over `/proc/self/task/*/status`: how often this
/// process's live threads blocked and were woken again. Threads that have exited are not
/// counted (see the module documentation).
pub fn wakeups() -> u64 {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    let mut total = 0;
    for entry in dir.flatten() {
        let Ok(status) = std::fs::read_to_string(entry.path().join("status")) else {
            continue; // the thread exited while we listed
        };
        total += parse_voluntary_switches(&status).unwrap_or(0);
    }
    total
}

fn parse_voluntary_switches(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix("voluntary_ctxt_switches:"))
        .and_then(|v| v.trim().parse().ok())
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
    /// This process's voluntary context switches.
    pub wakeups: u64,
    /// The machine's busy CPU time.
    pub busy: Option<Duration>,
}

impl Snapshot {
    /// Read everything now (the clock first).
    pub fn take() -> Snapshot {
        let at = std::time::Instant::now();
        Snapshot {
            at,
            cpu: cpu_time(),
            wakeups: wakeups(),
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
    /// Voluntary context switches of this process's threads (clamped at zero).
    pub wakeups: u64,
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
            wakeups: end.wakeups.saturating_sub(start.wakeups),
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn parses_proc_files() {
        let status = "Name:\tx\nvoluntary_ctxt_switches:\t42\nnonvoluntary_ctxt_switches:\t3\n";
        assert_eq!(parse_voluntary_switches(status), Some(42));
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
        assert!(w.wakeups >= 1, "a sleep is a voluntary switch");
        assert!(cpu_time().total() > Duration::ZERO);
    }
}
