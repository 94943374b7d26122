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
use crate::message::Response;
use crate::metrics::{LatencyRuns, RpcType, add};
use crate::transport::ServerId;
use crate::transport::pipeline::{PipelineShared, PipelinedRequest};
use crate::wire::{Lane, RawFrame, WireError};

impl Engine {
    pub(super) fn open_pipeline(
        &mut self,
        id: u64,
        addr: SocketAddr,
        server: Option<ServerId>,
        shared: Arc<PipelineShared>,
        now: Instant,
    ) {
        let role = Role::Pipeline(PipelineConn { id, shared });
        let key = self.dial(addr, server, role, now);
        self.pipelines.insert(id, key);
    }

    /// Encode a pipeline's requests (`(seq, request)`, in send order) onto its connection. The
    /// work that is the connection's, not the request's (finding it, counting the calls sent,
    /// arming its deadline, queueing it for a write), is done once for the batch.
    pub(super) fn pipeline_send(
        &mut self,
        id: u64,
        batch: &[(u64, PipelinedRequest)],
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
        let mut sent = [0u64; 2];
        let mut failed = None;
        for (seq, request) in batch {
            if let Err(e) =
                conn.codec
                    .encode_append_entries(&mut conn.send, *seq, Lane::Pipeline, request)
            {
                failed = Some(e);
                break;
            }
            let heartbeat = request.is_heartbeat();
            sent[usize::from(heartbeat)] += 1;
            if traced {
                let kind = if heartbeat {
                    RpcType::Heartbeat
                } else {
                    RpcType::AppendEntries
                };
                calls::append_sent(&conn.span, &conn.peer, kind, *seq);
            }
        }
        for (n, kind) in sent
            .into_iter()
            .zip([RpcType::AppendEntries, RpcType::Heartbeat])
        {
            if n > 0 {
                add(&self.shared.metrics.calls_sent[kind as usize], n);
            }
        }
        if let Some(e) = failed {
            // The requests before it are queued; closing drops them and fails every future of
            // the pipeline, theirs included.
            self.pipelines.remove(&id);
            self.close(key, Error::Encode(e));
            return;
        }
        if sent != [0, 0] {
            if let Some(t) = self.shared.config.timeout {
                self.arm(key, now + t);
            }
            self.mark_dirty(key);
        }
    }

    /// The answers one read brought on pipeline connection `key`, completed together (one lock
    /// of the pipeline, one notification of its waiters). A frame that is not an answer closes
    /// the connection (a protocol error); the answers before it still complete.
    pub(super) fn pipeline_answers(
        &mut self,
        key: ConnKey,
        frames: &mut Vec<RawFrame>,
        now: Instant,
    ) {
        let mut answers = std::mem::take(&mut self.pipeline_scratch);
        let mut failed = None;
        for frame in frames.drain(..) {
            let result = match self.try_decode_answer(key, &frame) {
                Some(Ok(result)) => result,
                Some(Err(e)) => {
                    failed = Some(e);
                    break;
                }
                None => break,
            };
            let result = match result {
                Ok(Response::AppendEntries(r)) => Ok(r),
                Ok(other) => Err(Error::Protocol(WireError::UnexpectedMessage {
                    expected: "an AppendEntries response",
                    found: other.message_type(),
                })),
                Err(e) => Err(e),
            };
            answers.push((frame.header.request_id, result));
        }
        frames.clear();
        let pipeline = self
            .conns
            .get(key.index())
            .filter(|c| c.key == key)
            .and_then(|c| match &c.role {
                Role::Pipeline(p) => Some((c, p)),
                _ => None,
            });
        let Some((conn, p)) = pipeline else {
            answers.clear();
            self.pipeline_scratch = answers;
            return;
        };
        let metrics = &self.shared.metrics;
        let trace_calls = self.trace_calls;
        let (span, peer) = (&conn.span, &conn.peer);
        // A batch's appends share their start: one latency per batch, counted for each.
        let mut latencies =
            LatencyRuns::new(&metrics.call_latency[RpcType::AppendEntries as usize], now);
        let woken = p.shared.complete_all(
            answers.drain(..).inspect(|(seq, result)| {
                if let Err(error) = result {
                    debug!(parent: span, %peer, seq, %error, "append answered with an error");
                }
            }),
            |seq, started, ok| match started {
                Some(started) => {
                    let latency = latencies.since(started);
                    if ok && trace_calls {
                        calls::append_answered(span, peer, seq, latency);
                    }
                }
                None => {
                    debug!(parent: span, %peer, seq, "discarding an unknown pipeline answer")
                }
            },
        );
        // Records the open run, and ends the borrow of the metrics.
        drop(latencies);
        add(&metrics.caller_wakes, woken as u64);
        self.pipeline_scratch = answers;
        if let Some(e) = failed {
            self.protocol_error(key, e);
        }
    }
}
