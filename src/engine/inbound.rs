//! The serving side: requests arriving on accepted connections go to the heartbeat handler or
//! the [`Service`](crate::Service), right here on the engine's thread, when one is installed,
//! and otherwise to the consumer (all of one read's together); snapshot bodies go to their
//! readers with flow control, and the Raft side's answers back out.

use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use super::calls;
use super::conn::{HeldFrame, Paused, Role, SnapshotIn};
use super::handoff::{self, Completion};
use super::{ConnKey, Engine, lookup};
use crate::message::{Message, MessageType, Request, Response};
use crate::metrics::{RpcType, add};
use crate::transport::rpc::{AnswerRoute, Responder, Rpc};
use crate::transport::snapshot::{Flow, SnapshotReader, SnapshotStream};
use crate::transport::wait;
use crate::wire::{Flags, RawFrame, WireError};

impl Engine {
    /// The frames of one read on a serving connection, in order. Their bodies are decoded
    /// first, as one batch, so the decode-time metric costs two clock reads per batch rather
    /// than two per RPC (each request is charged the batch's mean).
    pub(super) fn serve_frames(&mut self, key: ConnKey, frames: &mut Vec<RawFrame>, now: Instant) {
        let clock = self.clock;
        let mut decoded = std::mem::take(&mut self.decoded);
        let Some(conn) = lookup(&mut self.conns, key) else {
            self.decoded = decoded;
            return;
        };
        if let Role::Inbound(inbound) = &mut conn.role {
            inbound.first_frame_seen = true;
        }
        let started = clock();
        let mut requests = 0u32;
        let mut failed = None;
        for frame in frames.drain(..) {
            let kind = frame.header.kind;
            if kind == MessageType::SnapshotChunk {
                decoded.push((frame, None));
                continue;
            }
            if !kind.is_request() {
                failed = Some(WireError::UnexpectedMessage {
                    expected: "a request on a serving connection",
                    found: kind,
                });
                break;
            }
            match conn.codec.decode_body(&frame) {
                Ok(Message::Request(request)) => {
                    requests += 1;
                    decoded.push((frame, Some(request)));
                }
                Ok(_) => {}
                Err(e) => {
                    failed = Some(e);
                    break;
                }
            }
        }
        let decoded_at = clock();
        let per_request = (decoded_at - started)
            .checked_div(requests)
            .unwrap_or(Duration::ZERO);
        // Whether this connection's frames wait (the Raft side holds its share): looked up once
        // per read, then known from what each hand-over did, not looked up per frame.
        let mut holding = self.holding(key);
        for (frame, request) in decoded.drain(..) {
            if !holding {
                holding = self.hand_over(key, frame, request, per_request, decoded_at, now);
                continue;
            }
            if let Some(Role::Inbound(inbound)) = self.conn_mut(key).map(|c| &mut c.role) {
                inbound.held.push_back(HeldFrame {
                    frame,
                    request,
                    decode_time: per_request,
                });
            }
        }
        self.decoded = decoded;
        if let Some(e) = failed {
            self.protocol_error(key, e);
        }
    }

    /// Whether `key`'s frames must wait rather than be handed over: the Raft side holds its
    /// share of requests, or earlier frames wait already (order is kept). A closed connection
    /// holds nothing: its frames are dropped.
    fn holding(&self, key: ConnKey) -> bool {
        let Some(conn) = self.conns.get(key.index()).filter(|c| c.key == key) else {
            return true;
        };
        match &conn.role {
            Role::Inbound(inbound) => {
                conn.paused.contains(Paused::UNANSWERED) || !inbound.held.is_empty()
            }
            _ => false,
        }
    }

    /// Hand one frame to the Raft side (a request) or to its snapshot's reader (a chunk).
    /// Returns whether the frames after it must wait (see [`holding`](Self::holding)).
    fn hand_over(
        &mut self,
        key: ConnKey,
        frame: RawFrame,
        request: Option<Request>,
        decode_time: Duration,
        decoded_at: Instant,
        now: Instant,
    ) -> bool {
        match request {
            Some(request) => self.serve(key, &frame, request, decode_time, decoded_at, now),
            None => {
                self.snapshot_chunk(key, frame, now);
                self.holding(key)
            }
        }
    }

    /// Hand the RPCs staged for the consumer (by one read, or one release of held frames) to
    /// it together: one queue notification for all of them.
    pub(super) fn publish_staged(&mut self) {
        if !self.staged.is_empty() {
            self.shared.consumer.shared().push_all(&mut self.staged);
        }
    }

    /// Serve what one read (or one release of held frames) brought, through `serve`: the
    /// handlers' answers given meanwhile are written right after it, and the RPCs for the
    /// consumer handed over together.
    ///
    /// Writing an answer can release a connection's held frames, which serves them: that
    /// happens without recursion (their handlers' answers take the completion queue), and the
    /// RPCs it stages for the consumer are handed over at the end.
    pub(super) fn serve_read(&mut self, now: Instant, serve: impl FnOnce(&mut Engine)) {
        if self.serving_read {
            wait::on_transport_thread(|| serve(self));
            return;
        }
        self.serving_read = true;
        let handoff = self.shared.handoff.clone();
        let mut answers = std::mem::take(&mut self.inline_answers);
        handoff::answering_inline(&handoff, &mut answers, || serve(self));
        self.record_served();
        self.publish_staged();
        for a in answers.drain(..) {
            let conn = ConnKey::from_raw(a.route.conn);
            self.send_response(conn, a.route, a.result, a.taken_at, now);
        }
        self.record_responded(now);
        self.record_served();
        self.publish_staged();
        self.inline_answers = answers;
        self.serving_read = false;
    }

    /// Record the metrics of the RPCs received and handled since the last call. The RPCs of one
    /// read share their decoding time, so each run of them of one kind is one sample counted
    /// that many times: one histogram update and one count per run, not per RPC.
    ///
    /// Received: `rpcs_received` and the decode metric. Handled: the enqueue metric, from
    /// decoding to handled (the handler's time and that of the RPCs before it in the read, as a
    /// queued RPC's is the time it waited to be taken), with one clock read for all of them.
    fn record_served(&mut self) {
        for run in self.received.chunk_by(|a, b| a == b) {
            let (kind, decode_time) = run[0];
            let metrics = &self.shared.metrics;
            metrics.rpc_decode[kind as usize].record_n(decode_time, run.len() as u64);
            add(&metrics.rpcs_received[kind as usize], run.len() as u64);
        }
        self.received.clear();
        if self.handled.is_empty() {
            return;
        }
        let handled_at = (self.clock)();
        for run in self.handled.chunk_by(|a, b| a == b) {
            let (kind, decoded_at) = run[0];
            self.shared.metrics.rpc_enqueue[kind as usize].record_n(
                handled_at.saturating_duration_since(decoded_at),
                run.len() as u64,
            );
        }
        self.handled.clear();
    }

    /// Record the respond metric of the answers written since the last call, at `now` (the
    /// time they were written): the answers of one batch the Raft side took share when it
    /// took them, so each run of one kind is one histogram update, not one per answer.
    pub(super) fn record_responded(&mut self, now: Instant) {
        for run in self.responded.chunk_by(|a, b| a == b) {
            let (kind, taken_at) = run[0];
            self.shared.metrics.rpc_respond[kind as usize]
                .record_n(now.saturating_duration_since(taken_at), run.len() as u64);
        }
        self.responded.clear();
    }

    /// The Raft side has room again: hand over the held frames, in order, until it is full.
    pub(super) fn release_held(&mut self, key: ConnKey, now: Instant) {
        self.serve_read(now, |engine| engine.release_held_frames(key, now));
    }

    fn release_held_frames(&mut self, key: ConnKey, now: Instant) {
        loop {
            let Some(conn) = lookup(&mut self.conns, key) else {
                return;
            };
            if conn.paused.contains(Paused::UNANSWERED) {
                return;
            }
            let Role::Inbound(inbound) = &mut conn.role else {
                return;
            };
            let Some(next) = inbound.held.pop_front() else {
                return;
            };
            let HeldFrame {
                frame,
                request,
                decode_time,
            } = next;
            self.hand_over(key, frame, request, decode_time, now, now);
        }
    }

    /// Hand one decoded request to the Raft side (or refuse it, at a limit). Returns whether
    /// the frames after it must wait (see [`holding`](Self::holding)).
    fn serve(
        &mut self,
        key: ConnKey,
        frame: &RawFrame,
        request: Request,
        decode_time: Duration,
        decoded_at: Instant,
        now: Instant,
    ) -> bool {
        let request_id = frame.header.request_id;
        let rpc_kind = RpcType::of(&request);
        // A TLS peer's identity and rights (`identity.rs`): one compare and a bit test.
        #[cfg(feature = "tls")]
        if !self.admit_request(key, frame, &request, rpc_kind, now) {
            return self.holding(key);
        }
        // A snapshot needs room: one per connection, `max_inbound_snapshots` in all.
        let permit = match &request {
            Request::InstallSnapshot(_) => {
                let Some(Role::Inbound(inbound)) = self.conn(key).map(|c| &c.role) else {
                    return true;
                };
                if !inbound.snapshots.is_empty() || inbound.refused_snapshot.is_some() {
                    self.protocol_error(key, WireError::SnapshotInProgress);
                    return true;
                }
                match self.snapshot_permit() {
                    Some(permit) => Some(permit),
                    None => {
                        self.refuse_snapshot(key, frame, now);
                        return self.holding(key);
                    }
                }
            }
            _ => None,
        };
        let Some(conn) = lookup(&mut self.conns, key) else {
            return true;
        };
        if self.trace_calls {
            calls::request_received(&conn.span, &conn.peer, rpc_kind, request_id);
        }
        let Role::Inbound(inbound) = &mut conn.role else {
            return false;
        };
        let shared = &self.shared;
        // Counted when the read is served (`serve_read`): the RPCs of one read share their
        // decoding time.
        self.received.push((rpc_kind, decode_time));
        let route = AnswerRoute {
            conn: key.to_raw(),
            request_id,
            lane: frame.header.lane,
            body_len: frame.header.body_len,
            kind: rpc_kind,
        };
        let responder = Responder::to_sink(shared.sink.clone(), route, frame.header.kind);
        inbound.unanswered += 1;
        inbound.unanswered_bytes += frame.body.len();
        let snapshot = match (&request, permit) {
            (Request::InstallSnapshot(r), Some(permit)) => {
                let size = r.size.max(0) as u64;
                let (span, peer) = (&conn.span, conn.peer);
                info!(parent: span, %peer, request_id, size, "receiving a snapshot");
                let handoff = shared.handoff.clone();
                // The permit lives as long as the stream (the closure is the stream's): a body
                // received in full but not yet read still counts.
                let stream = SnapshotStream::new(shared.config.snapshot_buffer, move || {
                    let _counted = &permit;
                    handoff.complete(Completion::ResumeRead { conn: key })
                });
                inbound.snapshots.insert(
                    request_id,
                    SnapshotIn {
                        stream: stream.clone(),
                        size,
                        received: 0,
                        last_progress: now,
                    },
                );
                Some(SnapshotReader::from_stream(stream, size))
            }
            _ => None,
        };
        let snapshot_started = snapshot.is_some();
        let rpc = Rpc::new(request, snapshot, responder, Some(conn.peer), decoded_at);
        shared.handlers.refresh(&mut self.handlers);
        let handlers = &self.handlers.1;
        let heartbeat_handler = handlers
            .heartbeat
            .as_ref()
            .filter(|_| rpc_kind == RpcType::Heartbeat);
        let (span, peer) = (&conn.span, conn.peer);
        let given_back = if let Some(handler) = heartbeat_handler {
            add(&shared.metrics.heartbeats_fast_path, 1);
            serve_here(span, peer, "the heartbeat handler", || {
                handler(rpc);
                None
            })
        } else if let Some(service) = &handlers.service {
            serve_here(span, peer, "the service", || service.serve(rpc))
        } else {
            Some(rpc)
        };
        match given_back {
            Some(rpc) => self.staged.push(rpc),
            // Timed when the read is served (`serve_read`): one clock read for all of them.
            None => self.handled.push((rpc_kind, decoded_at)),
        }
        let wait = self.limit_unanswered(key, now);
        if snapshot_started {
            // Its body must not stall.
            self.arm_inbound_deadline(key, now);
        }
        wait
    }

    /// Answer an InstallSnapshot over `max_inbound_snapshots` with an error, stop reading, and
    /// close once the answer is written; its body's chunks, if any arrive meanwhile, are
    /// dropped unread.
    fn refuse_snapshot(&mut self, key: ConnKey, frame: &RawFrame, now: Instant) {
        let Some(conn) = lookup(&mut self.conns, key) else {
            return;
        };
        let peer = conn.peer;
        let max = self.shared.config.max_inbound_snapshots;
        let text = Message::Error(format!(
            "raftnet: {max} snapshots are being received already; retry later"
        ));
        let request_id = frame.header.request_id;
        let _ = conn
            .codec
            .encode(&mut conn.send, request_id, frame.header.lane, &text);
        conn.close_after_flush = true;
        if let Role::Inbound(inbound) = &mut conn.role {
            inbound.refused_snapshot = Some(request_id);
        }
        self.pause(key, Paused::CLOSING, now);
        self.mark_dirty(key);
        self.log_refused_snapshot(key, peer, now);
    }

    /// A piece of an InstallSnapshot body.
    fn snapshot_chunk(&mut self, key: ConnKey, frame: RawFrame, now: Instant) {
        let Some(conn) = self.conn_mut(key) else {
            return;
        };
        let Role::Inbound(inbound) = &mut conn.role else {
            return;
        };
        let request_id = frame.header.request_id;
        if inbound.refused_snapshot == Some(request_id) {
            return;
        }
        let Some(snap) = inbound.snapshots.get_mut(&request_id) else {
            self.protocol_error(
                key,
                WireError::UnexpectedMessage {
                    expected: "a request, or a chunk of the snapshot in progress",
                    found: MessageType::SnapshotChunk,
                },
            );
            return;
        };
        let len = frame.body.len() as u64;
        if snap.received + len > snap.size {
            let (size, received) = (snap.size, snap.received);
            snap.stream
                .finish(Err(format!("the sender sent more than {size} bytes")));
            inbound.snapshots.remove(&request_id);
            warn!(
                parent: &conn.span,
                peer = %conn.peer,
                request_id,
                "snapshot overran its size ({received} + {len} > {size})"
            );
            self.protocol_error(
                key,
                WireError::OutOfRange {
                    field: "snapshot body length",
                },
            );
            return;
        }
        snap.received += len;
        snap.last_progress = now;
        let flow = snap.stream.push(frame.body);
        if frame.header.flags.contains(Flags::END_STREAM)
            && let Some(snap) = inbound.snapshots.remove(&request_id)
        {
            if snap.received == snap.size {
                info!(parent: &conn.span, peer = %conn.peer, request_id, size = snap.size, "snapshot received");
                snap.stream.finish(Ok(()));
            } else {
                warn!(
                    parent: &conn.span,
                    peer = %conn.peer,
                    request_id,
                    received = snap.received,
                    size = snap.size,
                    "snapshot not received: the sender ended its body short"
                );
                snap.stream.finish(Err(format!(
                    "the sender ended the body after {} of {} bytes",
                    snap.received, snap.size
                )));
            }
        }
        if flow == Flow::Pause {
            self.pause(key, Paused::SNAPSHOT_READER, now);
        }
    }

    /// The Raft side's answer to the request `route` names.
    pub(super) fn send_response(
        &mut self,
        key: ConnKey,
        route: AnswerRoute,
        result: Result<Response, String>,
        taken_at: Option<Instant>,
        now: Instant,
    ) {
        let Some(conn) = lookup(&mut self.conns, key) else {
            // The connection closed while the Raft side worked on the request.
            return;
        };
        let message = match result {
            Ok(response) => {
                if self.trace_calls {
                    calls::answering(&conn.span, &conn.peer, route.kind, route.request_id);
                }
                if let Some(t) = taken_at {
                    // Recorded with the answers written beside it (`record_responded`).
                    self.responded.push((route.kind, t));
                }
                Message::Response(response)
            }
            Err(text) => {
                debug!(
                    parent: &conn.span,
                    peer = %conn.peer,
                    request_id = route.request_id,
                    error = %text,
                    "answering with an error"
                );
                Message::Error(text)
            }
        };
        let (request_id, lane) = (route.request_id, route.lane);
        if let Err(e) = conn
            .codec
            .encode(&mut conn.send, request_id, lane, &message)
        {
            // A response too large for the peer: answer with the reason instead.
            let text = Message::Error(format!("raftnet: response could not be encoded: {e}"));
            let _ = conn.codec.encode(&mut conn.send, request_id, lane, &text);
        }
        if let Role::Inbound(i) = &mut conn.role {
            i.unanswered = i.unanswered.saturating_sub(1);
            i.unanswered_bytes = i.unanswered_bytes.saturating_sub(route.body_len as usize);
            if conn.close_when_idle && i.is_idle() {
                // Write the answer first; the connection closes once its queue is written.
                conn.close_after_flush = true;
            }
        }
        // The limits' checks look the connection up again: only when they can act.
        let may_resume = conn.paused.contains(Paused::UNANSWERED);
        let may_backlog = conn.send.len() >= self.shared.config.max_queued_answer_bytes;
        self.mark_dirty(key);
        if may_resume {
            self.relieve_unanswered(key, now);
        }
        if may_backlog {
            self.limit_answer_backlog(key, now);
        }
    }

    /// Close idle pooled connections, and have every serving connection close once it has
    /// answered what it holds (hashicorp's `CloseStreams`).
    pub(super) fn close_streams(&mut self) {
        self.close_pooled();
        let mut idle = Vec::new();
        for (_, conn) in self.conns.iter_mut() {
            if let Role::Inbound(i) = &conn.role {
                conn.close_when_idle = true;
                if i.is_idle() {
                    conn.close_after_flush = true;
                    idle.push(conn.key);
                }
            }
        }
        for key in idle {
            self.mark_dirty(key);
        }
    }
}

/// Run a handler (the heartbeat handler or the service) on the engine's thread, inside
/// [`Engine::serve_read`] (so a blocking wait inside it panics instead of hanging the
/// transport: see `wait::on_transport_thread`). A panic is caught, so the engine (and every
/// connection) outlives it; the RPC the handler held is dropped while unwinding, which answers
/// it with an error.
fn serve_here(
    span: &tracing::Span,
    peer: std::net::SocketAddr,
    who: &str,
    handler: impl FnOnce() -> Option<Rpc>,
) -> Option<Rpc> {
    // The thread is marked as the transport's own around the whole read (`serve_read`).
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(handler));
    outcome.unwrap_or_else(|_| {
        error!(parent: span, %peer, "{who} panicked");
        None
    })
}
