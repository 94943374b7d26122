//! What one peer may take of the node. A Raft node talks to few peers, but one that is greedy,
//! buggy or hostile within the protocol (or anyone who can reach the port) must not take the
//! node's memory or its other peers' service. Each limit is a [`Config`] setting with a reason,
//! counts in a metric when it acts, and logs the peer it acted on:
//!
//! | limit | when it acts | what it does | metric |
//! |---|---|---|---|
//! | `max_inbound_connections`, `max_connections_per_address` | accepting | closes the new connection | `connections_refused` |
//! | `max_unanswered_requests`, `max_unanswered_bytes` | a request is handed to the Raft side | stops reading the connection until half are answered | `reads_paused` |
//! | `max_queued_answer_bytes` | an answer is queued | stops reading until half are written | `reads_paused` |
//! | `max_inbound_snapshots` | an InstallSnapshot arrives | answers it with an error, closes | `snapshots_refused` |
//! | one snapshot per connection | an InstallSnapshot arrives during another's body | protocol error | `protocol_errors` |
//! | `max_entries_per_request` | decoding | protocol error | `protocol_errors` |
//! | `timeout`, `timeout_scale` | a frame slower than `timeout_scale` bytes per `timeout`, a snapshot body stalled for `timeout` | closes the connection | `slow_peers_closed` |
//!
//! The per-connection caps on unanswered requests are also what shares the consumer queue
//! between peers: a flooding connection holds at most its cap of requests in the queue, so
//! another peer's request waits behind at most that many of the flooder's, not behind its whole
//! backlog.
//!
//! Memory follows bytes received, never bytes declared: the codec grows a connection's buffer
//! only as a frame's bytes arrive (`wire::native`), and the driver reads at most a bounded
//! amount per connection per turn. The pauses are the engine's back-pressure: a paused
//! connection is not read, so its peer's writes block in its own kernel buffers, not in ours.
//!
//! [`Config`]: crate::Config

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tracing::{Span, trace, warn};

use super::conn::{Paused, Role};
use super::{Action, ConnKey, Engine};
use crate::metrics::add;

/// How often at most a refusal of many alike (connections, snapshots) is logged; the ones in
/// between are counted in the next line.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// The inbound connections held, in total and per address.
#[derive(Debug, Default)]
pub(super) struct Admission {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

/// Logs a kind of refusal at most once per [`REFUSAL_LOG_INTERVAL`], with how many were not
/// logged since: a flood of connections must not become a flood of log lines.
#[derive(Debug, Default)]
pub(super) struct RefusalLog {
    last: Option<Instant>,
    unlogged: u64,
}

impl RefusalLog {
    /// Log `line` (in `span`, the refused connection's, if it has one) unless one like it was
    /// logged less than [`REFUSAL_LOG_INTERVAL`] ago.
    pub(super) fn warn(
        &mut self,
        now: Instant,
        span: Option<&Span>,
        line: impl FnOnce() -> String,
    ) {
        if self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < REFUSAL_LOG_INTERVAL)
        {
            self.unlogged += 1;
            return;
        }
        let unlogged = std::mem::take(&mut self.unlogged);
        self.last = Some(now);
        let line = if unlogged > 0 {
            format!("{} (and {unlogged} more like it)", line())
        } else {
            line()
        };
        match span {
            Some(span) => warn!(parent: span, "{line}"),
            None => warn!("{line}"),
        }
    }
}

/// Counts an inbound snapshot for [`max_inbound_snapshots`](crate::Config::max_inbound_snapshots)
/// for as long as its buffer lives: from its request until both the engine and the reader have
/// let go of the stream, so a body received in full but not yet read still counts.
pub(crate) struct SnapshotPermit(Arc<AtomicUsize>);

impl Drop for SnapshotPermit {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Engine {
    /// Whether a connection from `peer` may be taken now (counted if so), or is over
    /// `max_inbound_connections` or `max_connections_per_address`.
    pub(super) fn admit(&mut self, peer: SocketAddr, now: Instant) -> bool {
        let config = &self.shared.config;
        let from_peer = self
            .admission
            .by_address
            .get(&peer.ip())
            .copied()
            .unwrap_or(0);
        let over = if self.admission.total >= config.max_inbound_connections {
            Some(("inbound connections", config.max_inbound_connections))
        } else if from_peer >= config.max_connections_per_address {
            Some((
                "connections from one address",
                config.max_connections_per_address,
            ))
        } else {
            None
        };
        if let Some((what, limit)) = over {
            add(&self.shared.metrics.connections_refused, 1);
            self.refused_connections.warn(now, None, || {
                format!("refusing a connection from {peer}: {limit} {what} are open already")
            });
            return false;
        }
        self.admission.total += 1;
        *self.admission.by_address.entry(peer.ip()).or_default() += 1;
        true
    }

    /// An admitted connection from `peer` closed.
    pub(super) fn release(&mut self, peer: SocketAddr) {
        self.admission.total = self.admission.total.saturating_sub(1);
        if let Some(n) = self.admission.by_address.get_mut(&peer.ip()) {
            *n -= 1;
            if *n == 0 {
                self.admission.by_address.remove(&peer.ip());
            }
        }
    }

    /// A permit for one more inbound snapshot, or `None` at `max_inbound_snapshots`.
    pub(super) fn snapshot_permit(&mut self) -> Option<SnapshotPermit> {
        let max = self.shared.config.max_inbound_snapshots;
        let held = &self.inbound_snapshots;
        held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .ok()
        .map(|_| SnapshotPermit(held.clone()))
    }

    /// Log a refused snapshot (at most once a second).
    pub(super) fn log_refused_snapshot(&mut self, key: ConnKey, peer: SocketAddr, now: Instant) {
        let max = self.shared.config.max_inbound_snapshots;
        add(&self.shared.metrics.snapshots_refused, 1);
        let span = self.conns.get(key.index()).map(|c| &c.span);
        self.refused_snapshots.warn(now, span, || {
            format!("refusing a snapshot from {peer}: {max} snapshots are being received already")
        });
    }

    /// Stop reading `key` for `reason` (see [`Paused`]).
    pub(super) fn pause(&mut self, key: ConnKey, reason: Paused, now: Instant) {
        let Some(conn) = super::lookup(&mut self.conns, key) else {
            return;
        };
        if conn.paused.contains(reason) {
            return;
        }
        conn.paused.insert(reason);
        let peer = conn.peer;
        let Role::Inbound(inbound) = &mut conn.role else {
            return;
        };
        let peer_must_read = reason == Paused::ANSWER_BACKLOG || reason == Paused::CLOSING;
        if peer_must_read {
            // From now on the peer must take what is queued for it in time.
            inbound.unread_since.get_or_insert(now);
        }
        let limited = reason == Paused::UNANSWERED || reason == Paused::ANSWER_BACKLOG;
        let first = limited && !std::mem::replace(&mut inbound.limited_before, true);
        if limited {
            add(&self.shared.metrics.reads_paused, 1);
        }
        if first {
            let why = if reason == Paused::UNANSWERED {
                "too many of its requests wait for the Raft side"
            } else {
                "it does not take its answers"
            };
            warn!(parent: &conn.span, %peer, "pausing reads: {why} (logged once per connection)");
        } else if reason == Paused::SNAPSHOT_READER {
            trace!(parent: &conn.span, %peer, "pausing reads: the snapshot reader fell behind");
        }
        if peer_must_read {
            self.arm_inbound_deadline(key, now);
        }
    }

    /// `reason` to pause `key` is gone; once none is left, the driver reads it again. The slow
    /// peer clocks restart: the time it was paused was ours, not the peer's.
    pub(super) fn unpause(&mut self, key: ConnKey, reason: Paused, now: Instant) {
        let Some(conn) = self.conn_mut(key) else {
            return;
        };
        if !conn.paused.contains(reason) {
            return;
        }
        conn.paused.remove(reason);
        if reason == Paused::ANSWER_BACKLOG
            && let Role::Inbound(inbound) = &mut conn.role
        {
            inbound.unread_since = None;
        }
        if reason == Paused::UNANSWERED {
            // What the last read brought past the limit goes first.
            self.release_held(key, now);
        }
        let Some(conn) = super::lookup(&mut self.conns, key) else {
            return;
        };
        if !conn.paused.is_empty() {
            return;
        }
        if let Role::Inbound(inbound) = &mut conn.role {
            if inbound.frame_started.is_some() {
                inbound.frame_started = Some(now);
            }
            for snapshot in inbound.snapshots.values_mut() {
                snapshot.last_progress = now;
            }
        }
        self.actions.push_back(Action::ResumeRead { key });
        self.arm_inbound_deadline(key, now);
    }

    /// After a request was handed to the Raft side: pause at `max_unanswered_requests` or
    /// `max_unanswered_bytes`. Returns whether the connection's next frames must wait (paused,
    /// or closed).
    pub(super) fn limit_unanswered(&mut self, key: ConnKey, now: Instant) -> bool {
        let config = &self.shared.config;
        let Some(conn) = self.conns.get(key.index()).filter(|c| c.key == key) else {
            return true;
        };
        if let Role::Inbound(i) = &conn.role
            && (i.unanswered >= config.max_unanswered_requests
                || i.unanswered_bytes >= config.max_unanswered_bytes)
        {
            self.pause(key, Paused::UNANSWERED, now);
            return true;
        }
        false
    }

    /// After an answer was taken from the Raft side: read again once half are answered.
    pub(super) fn relieve_unanswered(&mut self, key: ConnKey, now: Instant) {
        let config = &self.shared.config;
        let Some(conn) = self.conns.get(key.index()).filter(|c| c.key == key) else {
            return;
        };
        if conn.paused.contains(Paused::UNANSWERED)
            && let Role::Inbound(i) = &conn.role
            && i.unanswered <= config.max_unanswered_requests / 2
            && i.unanswered_bytes <= config.max_unanswered_bytes / 2
        {
            self.unpause(key, Paused::UNANSWERED, now);
        }
    }

    /// After an answer was queued: pause at `max_queued_answer_bytes` of answers unwritten.
    pub(super) fn limit_answer_backlog(&mut self, key: ConnKey, now: Instant) {
        let max = self.shared.config.max_queued_answer_bytes;
        if self
            .conns
            .get(key.index())
            .is_some_and(|c| c.key == key && c.send.len() >= max)
        {
            self.pause(key, Paused::ANSWER_BACKLOG, now);
        }
    }

    /// After a write: read again once half the answers are written.
    pub(super) fn relieve_answer_backlog(&mut self, key: ConnKey, now: Instant) {
        let max = self.shared.config.max_queued_answer_bytes;
        if self.conns.get(key.index()).is_some_and(|c| {
            c.key == key && c.paused.contains(Paused::ANSWER_BACKLOG) && c.send.len() <= max / 2
        }) {
            self.unpause(key, Paused::ANSWER_BACKLOG, now);
        }
    }

    /// Make sure a serving connection's slow-peer deadline (see
    /// [`Connection::earliest_deadline`](super::conn::Connection::earliest_deadline)) is armed.
    pub(super) fn arm_inbound_deadline(&mut self, key: ConnKey, now: Instant) {
        let Some(conn) = self.conns.get(key.index()).filter(|c| c.key == key) else {
            return;
        };
        if !matches!(conn.role, Role::Inbound(_)) {
            return;
        }
        if let Some(deadline) = conn.earliest_deadline(&self.shared.config) {
            self.arm(key, deadline.max(now));
        }
    }

    /// A serving connection's deadline passed: its peer sends a frame too slowly, or let a
    /// snapshot body stall.
    pub(super) fn close_slow_peer(&mut self, key: ConnKey) {
        let Some(conn) = self.conn(key) else {
            return;
        };
        let peer = conn.peer;
        let what = match &conn.role {
            Role::Inbound(i) if i.unread_since.is_some() => "it does not take its answers",
            Role::Inbound(i) if !i.snapshots.is_empty() && conn.recv.is_empty() => {
                "its snapshot body stalled"
            }
            _ => "a frame arrived too slowly",
        };
        add(&self.shared.metrics.slow_peers_closed, 1);
        warn!(parent: &conn.span, %peer, "closing the connection: {what}");
        self.close(key, crate::error::Error::Timeout);
    }
}
