//! The system calls raftnet's drivers make in a measured window (`system_calls_per_op`): the
//! sum of [`Metrics::system_calls`](raftnet::Metrics::system_calls) over every transport a run
//! made, both ends, read at the window's edges.
//!
//! The harness reads getrusage at the edges for CPU and switches, but no process-wide counter
//! of system calls exists without tracing. The transports count their drivers' own (an
//! `io_uring_enter`, an `epoll_wait`, a read or a write, a yield in the spin), which is what
//! issue 12's "system calls per RPC" counts. Callers' own system calls (a futex to sleep on an
//! answer) are not in it: the switches per op show those.
//!
//! A run registers each transport it makes ([`count`]); the harness calls
//! [`Registry::open_window`] and [`Registry::close_window`] on [`REGISTRY`]. A transport that is
//! gone by the window's close (none of the scenarios drop one mid-window) is left out rather
//! than counted short.

use std::sync::{Arc, Mutex, Weak};

use raftnet::NetTransport;

struct Counted {
    transport: Weak<NetTransport>,
    /// Its count when the window opened (`None`: made after, so it counts from zero).
    at_open: Option<u64>,
}

/// Transports counted in the windows (the harness's is [`REGISTRY`]; tests make their own).
#[derive(Default)]
pub struct Registry {
    counted: Mutex<Vec<Counted>>,
}

/// The registry the runs and the harness share.
pub static REGISTRY: Registry = Registry {
    counted: Mutex::new(Vec::new()),
};

/// Count `transport`'s driver in the harness's windows to come.
pub fn count(transport: &Arc<NetTransport>) {
    REGISTRY.count(transport);
}

impl Registry {
    fn counted(&self) -> std::sync::MutexGuard<'_, Vec<Counted>> {
        self.counted
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Count `transport`'s driver in the windows to come.
    pub fn count(&self, transport: &Arc<NetTransport>) {
        let mut counted = self.counted();
        counted.retain(|c| c.transport.strong_count() > 0);
        counted.push(Counted {
            transport: Arc::downgrade(transport),
            at_open: None,
        });
    }

    /// Forget every transport registered so far: a new run starts (one left running by a stuck
    /// run must not count in the next one's windows).
    pub fn reset(&self) {
        self.counted().clear();
    }

    /// The window opens: note each live transport's count.
    pub fn open_window(&self) {
        for c in self.counted().iter_mut() {
            c.at_open = c.transport.upgrade().map(|t| t.metrics().system_calls);
        }
    }

    /// The window closes: the system calls the registered transports' drivers made since it
    /// opened, or `None` if no raftnet transport is registered and alive (another
    /// implementation's run).
    pub fn close_window(&self) -> Option<u64> {
        let mut total = None;
        for c in self.counted().iter() {
            if let Some(t) = c.transport.upgrade() {
                let now = t.metrics().system_calls;
                *total.get_or_insert(0) += now.saturating_sub(c.at_open.unwrap_or(0));
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftnet::{Config, Transport};

    /// A transport's driver makes system calls while it works (here: accepting a connection),
    /// the window counts them, and a window with no live transport counts nothing at all
    /// (`None`, not zero).
    #[test]
    fn a_window_counts_its_transports_drivers_and_only_theirs() {
        let registry = Registry::default();
        assert_eq!(registry.close_window(), None);
        let transport =
            Arc::new(NetTransport::bind("127.0.0.1:0", None, Config::default()).unwrap());
        registry.count(&transport);
        registry.open_window();
        let before = transport.metrics().system_calls;
        let _peer = std::net::TcpStream::connect(transport.bound_addr()).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while transport.metrics().open_connections == 0 {
            assert!(std::time::Instant::now() < deadline, "never accepted");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let after = transport.metrics().system_calls;
        assert!(
            after > before,
            "accepting made no system call: {before} -> {after}"
        );
        let window = registry
            .close_window()
            .expect("a live transport is registered");
        assert!(window >= after - before, "{window} < {after} - {before}");
        transport.close();
        drop(transport);
        assert_eq!(
            registry.close_window(),
            None,
            "a dropped transport is left out"
        );
    }
}
