//! What the engine records about itself beyond the per-call events (`calls.rs`): each
//! connection's span and entering it, why a connection closed, and the once-per-turn look at
//! whether anyone listens at the levels the RPC path would record at.

use std::net::SocketAddr;

use tracing::level_filters::LevelFilter;
use tracing::{Level, Span};

use super::conn::Role;
use super::{ConnKey, Engine};
use crate::error::Error;
use crate::wire::Lane;

/// The level of a connection's span: `debug`, so that a subscriber at `info` (an application's
/// usual setting) neither records a span per connection nor enters one per read and write.
pub(super) const CONN_SPAN_LEVEL: Level = Level::DEBUG;

impl Engine {
    /// The engine with `span` as its transport's span (the parent of its connections' spans).
    pub(crate) fn with_span(mut self, span: Span) -> Engine {
        self.span = span;
        self
    }

    /// Enter `key`'s span, for the driver to handle the connection in; `true` if it did, and
    /// then the driver calls [`exit_conn`](Self::exit_conn) when it is done (before entering
    /// another). Nothing is entered when the key is gone, another span is entered, or no
    /// subscriber records connection spans; that last is the test of a flag, and the work is
    /// out of line, so a driver's loop keeps its shape (no guard to drop, no span to clone)
    /// when no one listens. A span no subscriber records is never entered: entering, exiting
    /// and dropping it would still look whether tracing's `log` records of those are wanted.
    #[inline]
    pub(crate) fn enter_conn(&mut self, key: ConnKey) -> bool {
        self.conn_spans && self.enter_conn_span(key)
    }

    #[cold]
    #[inline(never)]
    fn enter_conn_span(&mut self, key: ConnKey) -> bool {
        if self.entered.is_some() {
            return false;
        }
        let Some(span) = self.conn(key).map(|c| &c.span).filter(|s| !s.is_disabled()) else {
            return false;
        };
        let span = span.clone();
        span.with_subscriber(|(id, dispatch)| dispatch.enter(id));
        self.entered = Some(span);
        true
    }

    /// Exit the span [`enter_conn`](Self::enter_conn) entered (it lives on even if the
    /// connection closed meanwhile).
    #[cold]
    #[inline(never)]
    pub(crate) fn exit_conn(&mut self) {
        if let Some(span) = self.entered.take() {
            span.with_subscriber(|(id, dispatch)| dispatch.exit(id));
        }
    }

    /// Look, once per turn, whether anyone may record the per-call `trace` events and the
    /// connection spans: a tracing subscriber enabling that level anywhere, or, for the events,
    /// a `log` logger at `Trace` (with feature `log`, tracing hands events to `log` while no
    /// subscriber is set).
    /// Where no one may, each per-call event costs a test of a flag instead of tracing's own
    /// look at those levels (about a dozen instructions, several times per RPC); where someone
    /// may, the macros still decide for themselves. A subscriber installed mid-turn is seen
    /// from the next turn on.
    pub(super) fn refresh_log_levels(&mut self) {
        let tracing_level = LevelFilter::current();
        #[cfg(feature = "log")]
        let log_traces = log::max_level() >= log::LevelFilter::Trace;
        #[cfg(not(feature = "log"))]
        let log_traces = false;
        self.trace_calls = tracing_level >= Level::TRACE || log_traces;
        self.conn_spans = tracing_level >= CONN_SPAN_LEVEL;
    }
}

/// A connection's span (see [`Connection::span`](super::conn::Connection)), a child of the transport's.
pub(super) fn connection_span(
    transport: &Span,
    key: ConnKey,
    peer: SocketAddr,
    role: &Role,
) -> Span {
    let (dir, lane) = match role {
        Role::Inbound(_) => ("accepted", None),
        Role::Pooled(p) => ("dialled", Some(p.pool_key.1)),
        Role::Pipeline(_) => ("dialled", Some(Lane::Pipeline)),
        Role::SnapshotOut(_) => ("dialled", Some(Lane::Snapshot)),
    };
    tracing::span!(
        // The engine's target, as before this function had a file of its own: filters that
        // name it keep working.
        target: "raftnet::engine",
        parent: transport,
        CONN_SPAN_LEVEL,
        "conn",
        conn = ?key,
        %peer,
        dir,
        lane = lane.map(tracing::field::debug),
    )
}

/// Why a connection closed, for its log line: what the engine says, or else the error.
pub(super) struct CloseReason<'a>(pub(super) Option<&'static str>, pub(super) &'a Error);

impl std::fmt::Display for CloseReason<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(why) => f.write_str(why),
            None => self.1.fmt(f),
        }
    }
}
