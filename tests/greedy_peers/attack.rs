//! An attack, measured: a server child under attack with the legitimate peer calling it and
//! its memory watched ([`Attack`]), and the numbers a case returns, a row of RELIABILITY.md's
//! table ([`Outcome`]).

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use raftnet::*;

use crate::bounds::*;
use crate::common::child::*;
use crate::common::legit::*;
use crate::common::net::*;
use crate::common::tls::{RawPeer, Security};

// ---- an attack, measured -----------------------------------------------------------------------

/// One case's numbers: a row of RELIABILITY.md's table.
#[derive(Debug, Clone)]
pub(crate) struct Outcome {
    pub(crate) case: String,
    pub(crate) sent: String,
    pub(crate) bound: String,
    pub(crate) before: Memory,
    pub(crate) peak: Memory,
    pub(crate) after: Memory,
    pub(crate) idle_p99: Duration,
    pub(crate) idle_calls: usize,
    pub(crate) attack_p99: Duration,
    pub(crate) attack_max: Duration,
    pub(crate) attack_calls: usize,
    pub(crate) notes: String,
}

pub(crate) fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

pub(crate) fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

impl Outcome {
    pub(crate) fn header() -> &'static str {
        "| case | sent | bound (asserted) | RSS before / peak / after (MiB) | address space before / peak (MiB) | legit p99 idle → attack (ms) | ratio | notes |\n\
         |---|---|---|---|---|---|---|---|"
    }

    pub(crate) fn row(&self) -> String {
        let ratio = self.attack_p99.as_secs_f64() / self.idle_p99.as_secs_f64().max(1e-9);
        format!(
            "| {} | {} | {} | {} / {} / {} | {} / {} | {} ({} calls) → {} ({} calls, max {}) | {:.1}× | {} |",
            self.case,
            self.sent,
            self.bound,
            mib(self.before.rss),
            mib(self.peak.rss),
            mib(self.after.rss),
            mib(self.before.vm),
            mib(self.peak.vm),
            ms(self.idle_p99),
            self.idle_calls,
            ms(self.attack_p99),
            self.attack_calls,
            ms(self.attack_max),
            ratio,
            self.notes,
        )
    }
}

/// A server child under attack, the legitimate peer calling it, and its memory watched.
pub(crate) struct Attack {
    pub(crate) case: String,
    /// Plain TCP, or mutual TLS: the server's, the legitimate peer's and the attackers'.
    pub(crate) security: Security,
    pub(crate) server: ServerChild,
    pub(crate) legit: Legit,
    pub(crate) idle_from: Instant,
    pub(crate) started: Instant,
    pub(crate) before: Memory,
    pub(crate) hwm_reset: bool,
    pub(crate) sampler: Sampler,
}

impl Attack {
    /// Start a server child as `spec` says (under `ulimit -v` of `vm_limit` KiB if given), the
    /// legitimate peer, its idle calls; the attack starts when this returns.
    pub(crate) fn begin(
        case: &str,
        spec: ServerSpec,
        kind: LegitKind,
        legit_timeout: Duration,
        vm_limit: Option<u64>,
    ) -> Attack {
        Attack::begin_with(case, spec, kind, legit_timeout, vm_limit, Security::Plain)
    }

    /// [`begin`](Self::begin), over TLS if `security` says so: the server child serves it,
    /// the legitimate peer and the attackers ([`connect`](Self::connect)) dial with it.
    pub(crate) fn begin_with(
        case: &str,
        spec: ServerSpec,
        kind: LegitKind,
        legit_timeout: Duration,
        vm_limit: Option<u64>,
        security: Security,
    ) -> Attack {
        let case = match vm_limit {
            Some(kib) => format!(
                "{case}{}, under ulimit -v {} MiB",
                security.suffix(),
                kib / MIB
            ),
            None => format!("{case}{}", security.suffix()),
        };
        let spec = ServerSpec {
            tls_dir: security.pem_dir().map(Path::to_path_buf),
            ..spec
        };
        let server = ServerChild::spawn(&spec, vm_limit);
        if let Some(kib) = vm_limit {
            let limits = std::fs::read_to_string(format!("/proc/{}/limits", server.pid()))
                .expect("the child's limits");
            let line = limits
                .lines()
                .find(|l| l.starts_with("Max address space"))
                .expect("an address-space line");
            assert!(
                line.split_whitespace()
                    .any(|w| w == (kib * 1024).to_string()),
                "the child runs under ulimit -v {kib}: {line}"
            );
        }
        let idle_from = Instant::now();
        let legit = Legit::start_with(
            server.target(),
            kind,
            security.client(Config::default().timeout(Some(legit_timeout))),
        );
        let before = server.memory();
        let sampler = Sampler::start(server.pid());
        let mut attack = Attack {
            case,
            security,
            server,
            legit,
            idle_from,
            started: idle_from,
            before,
            hwm_reset: false,
            sampler,
        };
        attack.legit_answered(IDLE_CALLS, idle_from);
        attack.before = attack.server.memory();
        attack.hwm_reset = attack.server.reset_peak();
        attack.sampler = Sampler::start(attack.server.pid());
        attack.started = Instant::now();
        attack
    }

    /// Wait until the legitimate peer has been answered `n` times since `since`, failing the
    /// test at its first failed call (saying so if the server child died).
    pub(crate) fn legit_answered(&mut self, n: usize, since: Instant) {
        if let Err(failed) = self.legit.wait_answered(n, since) {
            if !self.server.is_running() {
                panic!(
                    "{}: the server child died; the legitimate peer's calls failed: {failed:?}\n\
                     the child's stderr:\n{}",
                    self.case,
                    self.server.output()
                );
            }
            panic!(
                "{}: the legitimate peer's calls failed: {failed:?}",
                self.case
            );
        }
    }

    pub(crate) fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// An attacker's raw connection to the server (inside a TLS session over TLS).
    pub(crate) fn connect(&self) -> RawPeer {
        self.security.connect(self.addr())
    }

    pub(crate) fn metrics(&mut self) -> ChildMetrics {
        self.server.metrics()
    }

    /// The most resident memory and address space since the attack began.
    pub(crate) fn peak(&self) -> Memory {
        let mut most = self.sampler.most();
        let now = self.server.memory();
        most.rss = most.rss.max(now.rss);
        most.vm = most.vm.max(now.vm);
        if self.hwm_reset {
            most.rss = most.rss.max(now.hwm);
        }
        most
    }

    /// Fail the test if the attack has taken more than `bound` allows.
    pub(crate) fn check_memory(&self, bound: &Bound) {
        let peak = self.peak();
        let grew = peak.rss.saturating_sub(self.before.rss);
        assert!(
            grew <= bound.rss_limit(),
            "{}: the server's resident set grew by {} MiB (from {} to {} MiB), over its bound: {}",
            self.case,
            mib(grew),
            mib(self.before.rss),
            mib(peak.rss),
            bound.describe()
        );
        if bound.address_space {
            let grew = peak.vm.saturating_sub(self.before.vm);
            assert!(
                grew <= bound.vm_limit(),
                "{}: the server's address space grew by {} MiB (from {} to {} MiB), over its \
                 bound: {}",
                self.case,
                mib(grew),
                mib(self.before.vm),
                mib(peak.vm),
                bound.describe()
            );
        }
    }

    /// Wait until the legitimate peer has been answered [`ATTACK_CALLS`] times from now on: the
    /// attack is at its worst, and the server serves others (each answer also means the
    /// server's driver went round its loop since, handling whatever the attack sent before).
    pub(crate) fn legit_served_during(&mut self) {
        self.legit_answered(ATTACK_CALLS, Instant::now());
    }

    /// The attack stopped at `stopped` (the attacker's sockets are closed): wait until the
    /// server holds only the legitimate peer's connection, check that it still serves, and
    /// return the numbers.
    pub(crate) fn end(
        mut self,
        stopped: Instant,
        sent: String,
        bound: &Bound,
        notes: String,
    ) -> Outcome {
        wait_until(
            &format!("{}: the attack's connections closed", self.case),
            || self.server.metrics().get("open_connections") <= 1,
        );
        // Still up, still serving.
        assert!(
            self.server.is_running(),
            "{}: the server child ended",
            self.case
        );
        self.legit_answered(10, Instant::now());
        let after = self.server.memory();
        let peak = self.peak();
        let samples = self.legit.stop();
        let failures = samples.failures();
        assert!(
            failures.is_empty(),
            "{}: the legitimate peer's calls failed: {failures:?}",
            self.case
        );
        let (idle_p99, idle_calls) = samples.p99(self.idle_from, self.started);
        let (attack_p99, attack_calls) = samples.p99(self.started, stopped);
        let attack_max = samples
            .window(self.started, stopped)
            .last()
            .copied()
            .unwrap_or_default();
        let outcome = Outcome {
            case: self.case.clone(),
            sent,
            bound: bound.describe(),
            before: self.before,
            peak,
            after,
            idle_p99,
            idle_calls,
            attack_p99,
            attack_max,
            attack_calls,
            notes,
        };
        eprintln!("{}\n{}", Outcome::header(), outcome.row());
        outcome
    }
}
