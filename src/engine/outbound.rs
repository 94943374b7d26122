//! Outbound request/response calls: the per-peer pools of idle connections (one per lane),
//! sending a call on a pooled or new connection, and resolving it with its answer.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tracing::{debug, info};

use super::calls;
use super::conn::{PendingCall, Pooled, Role};
use super::handoff::OutboundCall;
use super::{ConnKey, Engine};
use crate::error::Error;
use crate::message::{Message, Response};
use crate::metrics::add;
use crate::transport::ServerId;
use crate::wire::{Lane, RawFrame, WireError};

impl Engine {
    /// The earlier of a call's own deadline and `budget` from now.
    pub(super) fn effective_deadline(
        now: Instant,
        per_call: Option<Instant>,
        budget: Option<Duration>,
    ) -> Option<Instant> {
        let configured = budget.map(|t| now + t);
        match (configured, per_call) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    pub(super) fn start_call(&mut self, call: OutboundCall, now: Instant) {
        let OutboundCall {
            addr,
            server,
            lane,
            request,
            resolver,
            deadline,
            kind,
        } = call;
        let deadline = Self::effective_deadline(now, deadline, self.shared.config.timeout);
        if deadline.is_some_and(|d| d <= now) {
            add(&self.shared.metrics.calls_failed[kind as usize], 1);
            debug!(peer = %addr, rpc = ?kind, "call failed: its deadline passed before it was sent");
            resolver.fail(Error::Timeout);
            return;
        }
        let key = match self.take_pooled(addr, lane, server.as_ref()) {
            Some(key) => key,
            None => {
                let role = Role::Pooled(Pooled {
                    pool_key: (addr, lane),
                    call: None,
                });
                self.dial(addr, server, role, now)
            }
        };
        let request_id = self.next_request_id();
        let message = Message::Request(request);
        let conn = &mut self.conns[key.index()];
        if let Err(e) = conn
            .codec
            .encode(&mut conn.send, request_id, lane, &message)
        {
            debug!(parent: &conn.span, peer = %addr, rpc = ?kind, error = %e, "call failed: cannot encode it");
            resolver.fail(Error::Encode(e));
            self.return_to_pool(key);
            return;
        }
        if self.trace_calls {
            calls::call_sent(&conn.span, &addr, kind, request_id);
        }
        self.await_answer(
            key,
            PendingCall {
                request_id,
                resolver,
                kind,
                started: now,
                deadline,
            },
        );
        self.mark_dirty(key);
    }

    /// Park a sent call on its connection until its answer (or its deadline) comes.
    pub(super) fn await_answer(&mut self, key: ConnKey, call: PendingCall) {
        let (kind, deadline) = (call.kind, call.deadline);
        if let Some(slot) = self.conn_mut(key).and_then(|c| c.call_slot()) {
            *slot = Some(call);
        }
        add(&self.shared.metrics.calls_sent[kind as usize], 1);
        if let Some(d) = deadline {
            self.arm(key, d);
        }
    }

    /// The most recently used idle connection to `addr` on `lane` made for `server`, taken
    /// out of its pool. Every connection at an address is usually for the same server: the
    /// search ends at the first one looked at.
    fn take_pooled(
        &mut self,
        addr: SocketAddr,
        lane: Lane,
        server: Option<&ServerId>,
    ) -> Option<ConnKey> {
        let pool = self.pools.get_mut(&(addr, lane))?;
        let conns = &self.conns;
        let at = pool.iter().rposition(|k| {
            conns
                .get(k.index())
                .is_some_and(|c| c.server.as_ref() == server)
        })?;
        let key = pool.remove(at);
        self.idle_pooled -= 1;
        self.publish_idle_pooled();
        Some(key)
    }

    /// Put an idle pooled connection back, or close it when the pool is full.
    fn return_to_pool(&mut self, key: ConnKey) {
        let Some(conn) = self.conn(key) else { return };
        let Role::Pooled(p) = &conn.role else { return };
        let pool_key = p.pool_key;
        let pool = self.pools.entry(pool_key).or_default();
        if !self.shutting_down && pool.len() < self.shared.config.max_pool {
            pool.push(key);
            self.idle_pooled += 1;
            self.publish_idle_pooled();
        } else if self.shutting_down {
            self.close(key, Error::Shutdown);
        } else {
            self.retire(key, "its pool is full");
        }
    }

    /// A pooled connection closed: it is no longer idle in its pool.
    pub(super) fn forget_pooled(&mut self, pool_key: (SocketAddr, Lane), key: ConnKey) {
        if let Some(pool) = self.pools.get_mut(&pool_key)
            && let Some(at) = pool.iter().position(|k| *k == key)
        {
            pool.remove(at);
            self.idle_pooled -= 1;
            self.publish_idle_pooled();
        }
    }

    /// The gauge changes with the pool, before any caller learns a result (a caller that looks
    /// right after its call sees its connection back in the pool).
    fn publish_idle_pooled(&self) {
        self.shared
            .gauges
            .idle_pooled
            .store(self.idle_pooled, std::sync::atomic::Ordering::Relaxed);
    }

    /// Every idle pooled connection closes (after a stream-layer change).
    pub(super) fn close_pooled(&mut self) {
        let pooled: Vec<ConnKey> = self.pools.values_mut().flat_map(std::mem::take).collect();
        self.idle_pooled = 0;
        self.publish_idle_pooled();
        for key in pooled {
            self.retire(key, "idle pooled connections are closed (close_streams)");
        }
    }

    /// A frame on a dialled connection: the answer to one of its requests.
    pub(super) fn answer_frame(&mut self, key: ConnKey, frame: RawFrame, now: Instant) {
        let Some(conn) = self.conn_mut(key) else {
            return;
        };
        match conn.role {
            Role::Pooled(_) | Role::SnapshotOut(_) => self.call_answer(key, frame, now),
            // Answers on a pipeline connection are completed a read at once (`pipeline_answers`).
            Role::Pipeline(_) => {}
            Role::Inbound(_) => {}
        }
    }

    /// An answer frame's body, decoded by the connection's codec: a response, or the remote's
    /// error text. Anything else closes the connection as a protocol error (`None`).
    pub(super) fn decode_answer(
        &mut self,
        key: ConnKey,
        frame: &RawFrame,
    ) -> Option<Result<Response, Error>> {
        self.try_decode_answer(key, frame)?
            .inspect_err(|e| self.protocol_error(key, e.clone()))
            .ok()
    }

    /// [`decode_answer`](Self::decode_answer) without closing the connection on a protocol
    /// error (the caller does, when it is done with the answers before it). `None` if `key` is
    /// gone.
    pub(super) fn try_decode_answer(
        &mut self,
        key: ConnKey,
        frame: &RawFrame,
    ) -> Option<Result<Result<Response, Error>, WireError>> {
        let conn = self.conn_mut(key)?;
        Some(match conn.codec.decode_body(frame) {
            Ok(Message::Response(r)) => Ok(Ok(r)),
            Ok(Message::Error(text)) => Ok(Err(Error::from_answer(text))),
            Ok(Message::Request(_) | Message::SnapshotChunk(_)) => {
                Err(WireError::UnexpectedMessage {
                    expected: "a response on a dialled connection",
                    found: frame.header.kind,
                })
            }
            Err(e) => Err(e),
        })
    }

    /// A response (or error) on a pooled or snapshot connection.
    fn call_answer(&mut self, key: ConnKey, frame: RawFrame, now: Instant) {
        let Some(result) = self.decode_answer(key, &frame) else {
            return;
        };
        let conn = &mut self.conns[key.index()];
        let id = frame.header.request_id;
        let (call, is_pooled) = match &mut conn.role {
            Role::Pooled(p) => (p.call.take_if(|c| c.request_id == id), true),
            Role::SnapshotOut(s) => (s.call.take_if(|c| c.request_id == id), false),
            _ => return,
        };
        let Some(call) = call else {
            // An answer nobody waits for (its call timed out): discard it.
            debug!(parent: &conn.span, peer = %conn.peer, request_id = id, "discarding a late answer");
            return;
        };
        let metrics = &self.shared.metrics;
        let latency = now.saturating_duration_since(call.started);
        metrics.call_latency[call.kind as usize].record(latency);
        if result.is_err() {
            add(&metrics.calls_failed[call.kind as usize], 1);
        }
        match (&result, is_pooled) {
            (Ok(_), true) => {
                if self.trace_calls {
                    calls::call_answered(&conn.span, &conn.peer, call.kind, id, latency);
                }
            }
            (Err(error), true) => debug!(
                parent: &conn.span,
                peer = %conn.peer,
                rpc = ?call.kind,
                request_id = id,
                %error,
                "call answered with an error"
            ),
            (Ok(_), false) => info!(
                parent: &conn.span,
                peer = %conn.peer,
                request_id = id,
                ?latency,
                "snapshot sent"
            ),
            (Err(error), false) => info!(
                parent: &conn.span,
                peer = %conn.peer,
                request_id = id,
                %error,
                "snapshot not sent: the receiver answered with an error"
            ),
        }
        // Pool (or close) the connection before the caller learns the result, so a caller that
        // looks at the pool right after its call sees it there.
        if is_pooled {
            self.return_to_pool(key);
        } else {
            // hashicorp: a snapshot connection is never reused.
            self.retire(key, "its snapshot is answered");
        }
        let woken = call.resolver.resolve(result);
        add(&self.shared.metrics.caller_wakes, woken as u64);
    }
}
