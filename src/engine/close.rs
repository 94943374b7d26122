//! Closing a connection: what becomes of everything that waited on it (a pooled call, a
//! pipeline's outstanding appends, a snapshot going out or coming in), and the error each
//! caller sees.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;

use tracing::{debug, info, warn};

use super::conn::Role;
use super::logs::CloseReason;
use super::{Action, ConnKey, Engine};
use crate::error::Error;
use crate::metrics::add;
use crate::wire::WireError;

impl Engine {
    pub(super) fn protocol_error(&mut self, key: ConnKey, e: WireError) {
        add(&self.shared.metrics.protocol_errors, 1);
        if let Some(c) = self.conn(key) {
            warn!(parent: &c.span, peer = %c.peer, error = %e, "closing the connection: protocol error");
        }
        self.close(key, Error::Protocol(e));
    }

    /// Close a connection and fail whatever was waiting on it with `error`.
    pub(super) fn close(&mut self, key: ConnKey, error: Error) {
        self.close_because(key, error, None);
    }

    /// Close a connection that is done (`why`, for its log line), or that no call waits on:
    /// anything still waiting fails with [`Error::Shutdown`].
    pub(super) fn retire(&mut self, key: ConnKey, why: &'static str) {
        self.close_because(key, Error::Shutdown, Some(why));
    }

    /// Close a connection, failing what waits on it with `error`; its log line gives `why`, or
    /// else `error`, as the reason.
    pub(super) fn close_because(&mut self, key: ConnKey, error: Error, why: Option<&'static str>) {
        if self.conn(key).is_none() {
            return;
        }
        let conn = self.conns.remove(key.index());
        let span = &conn.span;
        debug!(
            parent: span,
            peer = %conn.peer,
            reason = %CloseReason(why, &error),
            "connection closed"
        );
        self.actions.push_back(Action::Close { key });
        self.shared
            .gauges
            .open_connections
            .store(self.conns.len(), Ordering::Relaxed);
        let connected = conn.connected;
        let peer = conn.peer;
        match conn.role {
            Role::Inbound(inbound) => {
                self.release(peer);
                for (request_id, snap) in inbound.snapshots {
                    info!(
                        parent: span,
                        %peer,
                        request_id,
                        received = snap.received,
                        size = snap.size,
                        "snapshot not received: the connection closed"
                    );
                    snap.stream.finish(Err(format!("connection lost: {error}")));
                }
            }
            Role::Pooled(p) => {
                self.forget_pooled(p.pool_key, key);
                if let Some(call) = p.call {
                    add(&self.shared.metrics.calls_failed[call.kind as usize], 1);
                    let error = call_error(error, connected, peer);
                    debug!(
                        parent: span,
                        %peer,
                        rpc = ?call.kind,
                        request_id = call.request_id,
                        %error,
                        "call failed"
                    );
                    call.resolver.fail(error);
                }
            }
            Role::Pipeline(p) => {
                self.pipelines.remove(&p.id);
                let e = match error {
                    Error::Shutdown => Error::Shutdown,
                    Error::PipelineClosed => Error::PipelineClosed,
                    other => call_error(other, connected, peer),
                };
                p.shared.fail(e);
            }
            Role::SnapshotOut(s) => {
                self.snapshots.remove(&s.id);
                s.feed.cancel();
                if let Some(call) = s.call {
                    add(&self.shared.metrics.calls_failed[call.kind as usize], 1);
                    let error = call_error(error, connected, peer);
                    info!(
                        parent: span,
                        %peer,
                        request_id = call.request_id,
                        sent = s.sent,
                        size = s.size,
                        %error,
                        "snapshot not sent"
                    );
                    call.resolver.fail(error);
                }
            }
        }
    }
}

/// The error a waiting call sees: before the connection was up, the peer was unreachable.
pub(super) fn call_error(error: Error, connected: bool, peer: SocketAddr) -> Error {
    match error {
        Error::Shutdown
        | Error::Timeout
        | Error::Unreachable { .. }
        | Error::PipelineClosed
        | Error::Snapshot(_) => error,
        Error::Io(e) if !connected => Error::Unreachable {
            addr: peer.to_string(),
            reason: e,
        },
        other => other,
    }
}
