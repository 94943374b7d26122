//! Thread placement, so both implementations run placed alike (the project's performance notes:
//! on this 2-vCPU machine placement moves results by up to 4x, so it is set, not left to chance).
//!
//! - `same`: every thread on CPU 0;
//! - `split`: server-side threads on CPU 1, client-side threads on CPU 0;
//! - `none`: the scheduler decides.
//!
//! Threads inherit the affinity of the thread that spawns them, so an implementation builds its
//! server (transport, runtime, consumer threads) inside [`as_server`] and its client inside
//! [`as_client`]; that places threads spawned internally (reactors, runtime workers) too.

use std::sync::atomic::{AtomicU8, Ordering};

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;

/// Where threads go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Every thread on CPU 0.
    Same,
    /// Server threads on CPU 1, client threads on CPU 0.
    Split,
    /// No pinning.
    None,
}

impl Placement {
    /// The name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Placement::Same => "same",
            Placement::Split => "split",
            Placement::None => "none",
        }
    }

    /// Parse a command-line name.
    pub fn from_name(name: &str) -> Option<Placement> {
        match name {
            "same" => Some(Placement::Same),
            "split" => Some(Placement::Split),
            "none" => Some(Placement::None),
            _ => None,
        }
    }
}

static PLACEMENT: AtomicU8 = AtomicU8::new(2);

/// Set the placement for every later [`as_server`] / [`as_client`].
pub fn set_placement(p: Placement) {
    PLACEMENT.store(
        match p {
            Placement::Same => 0,
            Placement::Split => 1,
            Placement::None => 2,
        },
        Ordering::Relaxed,
    );
}

/// The current placement.
pub fn placement() -> Placement {
    match PLACEMENT.load(Ordering::Relaxed) {
        0 => Placement::Same,
        1 => Placement::Split,
        _ => Placement::None,
    }
}

fn cpu_for(server: bool) -> Option<usize> {
    match placement() {
        Placement::Same => Some(0),
        Placement::Split => Some(if server { 1 } else { 0 }),
        Placement::None => None,
    }
}

fn set_current(cpu: Option<usize>) -> Option<CpuSet> {
    let cpu = cpu?;
    let previous = sched_getaffinity(Pid::from_raw(0)).ok()?;
    let mut set = CpuSet::new();
    set.set(cpu).ok()?;
    sched_setaffinity(Pid::from_raw(0), &set).ok()?;
    Some(previous)
}

fn run_placed<R>(server: bool, f: impl FnOnce() -> R) -> R {
    let previous = set_current(cpu_for(server));
    let out = f();
    if let Some(previous) = previous {
        let _ = sched_setaffinity(Pid::from_raw(0), &previous);
    }
    out
}

/// Run `f` with this thread placed as a server thread; threads it spawns stay there.
pub fn as_server<R>(f: impl FnOnce() -> R) -> R {
    run_placed(true, f)
}

/// Run `f` with this thread placed as a client thread; threads it spawns stay there.
pub fn as_client<R>(f: impl FnOnce() -> R) -> R {
    run_placed(false, f)
}

/// Place the current thread as a client thread for the rest of its life (for load threads).
pub fn pin_client_thread() {
    let _ = set_current(cpu_for(false));
}

/// Place the current thread as a server thread for the rest of its life.
pub fn pin_server_thread() {
    let _ = set_current(cpu_for(true));
}
