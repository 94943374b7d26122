//! The sending end of InstallSnapshot on the engine's side: a dialled connection carries the
//! request, then the body (taken from the [`SnapshotFeed`] as the connection has room), then
//! the answer, and is closed afterwards (hashicorp never reuses it).

use std::time::Instant;

use bytes::Bytes;
use tracing::info;

use super::conn::{PendingCall, Role, SNAPSHOT_SEND_HIGH_WATER, SnapshotOut};
use super::feed::Next;
use super::handoff::OutboundSnapshot;
use super::{ConnKey, Engine};
use crate::error::Error;
use crate::message::{Message, Request};
use crate::metrics::RpcType;
use crate::wire::Lane;

impl Engine {
    pub(super) fn start_snapshot(&mut self, s: OutboundSnapshot, now: Instant) {
        let OutboundSnapshot {
            id,
            addr,
            server,
            request,
            resolver,
            deadline,
            feed,
        } = s;
        let size = request.size.max(0) as u64;
        let budget = self.shared.config.snapshot_timeout(size);
        let deadline = Self::effective_deadline(now, deadline, budget);
        let request_id = self.next_request_id();
        let role = Role::SnapshotOut(SnapshotOut {
            id,
            call: None,
            feed: feed.clone(),
            request_id,
            size,
            sent: 0,
            body_done: false,
            waiting_for_feed: false,
        });
        let key = self.dial(addr, server, role, now);
        let message = Message::Request(Request::InstallSnapshot(request));
        let conn = &mut self.conns[key.index()];
        if let Err(e) = conn
            .codec
            .encode(&mut conn.send, request_id, Lane::Snapshot, &message)
        {
            info!(parent: &conn.span, peer = %addr, size, error = %e, "snapshot not sent: cannot encode its request");
            feed.cancel();
            resolver.fail(Error::Encode(e));
            self.retire(key, "its snapshot request could not be encoded");
            return;
        }
        info!(parent: &conn.span, peer = %addr, request_id, size, "sending a snapshot");
        self.await_answer(
            key,
            PendingCall {
                request_id,
                resolver,
                kind: RpcType::InstallSnapshot,
                started: now,
                deadline,
            },
        );
        self.snapshots.insert(id, key);
        self.pump_snapshot(key);
    }

    /// Move snapshot chunks from the pump into the connection's send queue while it has room.
    pub(super) fn pump_snapshot(&mut self, key: ConnKey) {
        let Some(conn) = self.conn_mut(key) else {
            return;
        };
        let Role::SnapshotOut(s) = &mut conn.role else {
            return;
        };
        // Whatever we waited for, we are pulling now; `Next::Wait` below sets it again.
        s.waiting_for_feed = false;
        let mut failed = None;
        while !s.body_done && conn.send.len() < SNAPSHOT_SEND_HIGH_WATER {
            let (chunk, last) = match s.feed.next() {
                Next::Chunk(chunk) => {
                    s.sent += chunk.len() as u64;
                    (chunk, s.sent >= s.size)
                }
                // Only reached for a zero-size snapshot: the body is one empty last chunk.
                Next::Done => (Bytes::new(), true),
                Next::Wait => {
                    s.waiting_for_feed = true;
                    break;
                }
                Next::Failed(reason) => {
                    failed = Some(Error::Snapshot(reason));
                    break;
                }
            };
            if let Err(e) =
                conn.codec
                    .encode_snapshot_chunk(&mut conn.send, s.request_id, chunk, last)
            {
                failed = Some(Error::Encode(e));
                break;
            }
            s.body_done = last;
        }
        if let Some(error) = failed {
            self.close(key, error);
            return;
        }
        self.mark_dirty(key);
    }
}
