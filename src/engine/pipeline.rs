//! Pipelined AppendEntries on the engine's side: a connection per pipeline, each request sent
//! with its pipeline sequence number as its request id, each answer completing the future of
//! that number. The futures and their order live in one place, the pipeline's own queue
//! ([`PipelineShared`]); the engine keeps no copy of it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use tracing::debug;

use super::calls;
use super::conn::{PipelineConn, Role};
use super::{ConnKey, Engine};
use crate::error::Error;
use crate::message::{AppendEntriesRequest, Response};
use crate::metrics::{RpcType, add};
use crate::transport::pipeline::PipelineShared;
use crate::wire::{Lane, RawFrame, WireError};

impl Engine {
    pub(super) fn open_pipeline(
        &mut self,
        id: u64,
        addr: SocketAddr,
        shared: Arc<PipelineShared>,
        now: Instant,
    ) {
        let key = self.dial(addr, Role::Pipeline(PipelineConn { id, shared }), now);
        self.pipelines.insert(id, key);
    }

    pub(super) fn pipeline_send(
        &mut self,
        id: u64,
        seq: u64,
        request: &AppendEntriesRequest,
        now: Instant,
    ) {
        let Some(&key) = self.pipelines.get(&id) else {
            // Closed already; its futures were failed when it closed.
            return;
        };
        let traced = self.trace_calls;
        let Some(conn) = self.conn_mut(key) else {
            return;
        };
        if let Err(e) =
            conn.codec
                .encode_append_entries(&mut conn.send, seq, Lane::Pipeline, request)
        {
            self.pipelines.remove(&id);
            self.close(key, Error::Encode(e));
            return;
        }
        let kind = if request.is_heartbeat() {
            RpcType::Heartbeat
        } else {
            RpcType::AppendEntries
        };
        if traced {
            calls::append_sent(&conn.span, &conn.peer, kind, seq);
        }
        add(&self.shared.metrics.calls_sent[kind as usize], 1);
        if let Some(t) = self.shared.config.timeout {
            self.arm(key, now + t);
        }
        self.mark_dirty(key);
    }

    pub(super) fn pipeline_answer(&mut self, key: ConnKey, frame: RawFrame, now: Instant) {
        let Some(result) = self.decode_answer(key, &frame) else {
            return;
        };
        let conn = &mut self.conns[key.index()];
        let Role::Pipeline(p) = &conn.role else {
            return;
        };
        let result = match result {
            Ok(Response::AppendEntries(r)) => Ok(r),
            Ok(other) => Err(Error::Protocol(WireError::UnexpectedMessage {
                expected: "an AppendEntries response",
                found: other.message_type(),
            })),
            Err(e) => Err(e),
        };
        let metrics = &self.shared.metrics;
        let seq = frame.header.request_id;
        let answered_ok = result.is_ok();
        if let Err(error) = &result {
            debug!(parent: &conn.span, peer = %conn.peer, seq, %error, "append answered with an error");
        }
        match p.shared.complete(seq, result) {
            Some(done) => {
                let latency = now.saturating_duration_since(done.started);
                metrics.call_latency[RpcType::AppendEntries as usize].record(latency);
                add(&metrics.caller_wakes, done.woken as u64);
                if answered_ok && self.trace_calls {
                    calls::append_answered(&conn.span, &conn.peer, seq, latency);
                }
            }
            None => {
                debug!(parent: &conn.span, peer = %conn.peer, seq, "discarding an unknown pipeline answer")
            }
        }
    }
}
