//! The sending end of InstallSnapshot: a pump thread (started by the transport's API) reads
//! the caller's `std::io::Read`, which may block, into chunks, and the engine takes them as the
//! connection has room. At most `window` bytes wait between the two, so a fast disk cannot fill
//! memory and a slow one never stalls the engine's thread. The connection carries the request,
//! then the body, then the answer, and is closed afterwards (hashicorp never reuses it).

use std::collections::VecDeque;
use std::io::Read;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

use bytes::Bytes;

use super::conn::{PendingCall, Role, SNAPSHOT_SEND_HIGH_WATER, SnapshotOut};
use super::handoff::{Command, Handoff, OutboundSnapshot};
use super::{ConnKey, Engine};
use crate::error::Error;
use crate::message::{Message, Request};
use crate::metrics::RpcType;
use crate::wire::Lane;

#[derive(Default)]
struct FeedState {
    chunks: VecDeque<Bytes>,
    queued: usize,
    /// `Ok` once exactly `size` bytes were read; `Err(reason)` if the reader failed or ended early.
    end: Option<Result<(), String>>,
    /// The transfer is over (answered, failed or the transport closed): the pump stops.
    cancelled: bool,
    /// The engine found the feed empty and waits for a `SnapshotReady` command.
    reactor_waiting: bool,
}

/// What the engine gets when it asks for the next chunk.
pub(crate) enum Next {
    Chunk(Bytes),
    /// Nothing yet; the pump will send `SnapshotReady` when there is.
    Wait,
    /// Every byte was handed over.
    Done,
    Failed(String),
}

pub(crate) struct SnapshotFeed {
    state: Mutex<FeedState>,
    space: Condvar,
    window: usize,
}

impl SnapshotFeed {
    pub(crate) fn new(window: usize) -> Arc<SnapshotFeed> {
        Arc::new(SnapshotFeed {
            state: Mutex::new(FeedState::default()),
            space: Condvar::new(),
            window: window.max(1),
        })
    }

    fn lock(&self) -> MutexGuard<'_, FeedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stop the pump (it exits at its next chunk boundary).
    pub(crate) fn cancel(&self) {
        self.lock().cancelled = true;
        self.space.notify_all();
    }

    /// Engine side: the next chunk, if the pump has produced one.
    pub(crate) fn next(&self) -> Next {
        let mut s = self.lock();
        if let Some(chunk) = s.chunks.pop_front() {
            s.queued -= chunk.len();
            drop(s);
            self.space.notify_one();
            return Next::Chunk(chunk);
        }
        match &s.end {
            Some(Ok(())) => Next::Done,
            Some(Err(e)) => Next::Failed(e.clone()),
            None => {
                s.reactor_waiting = true;
                Next::Wait
            }
        }
    }

    /// Pump side: hand over a chunk, waiting while the window is full. Returns `false` if the
    /// transfer was cancelled.
    fn push(&self, chunk: Bytes, id: u64, handoff: &Handoff) -> bool {
        let mut s = self.lock();
        while s.queued >= self.window && !s.cancelled {
            s = self.space.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        if s.cancelled {
            return false;
        }
        s.queued += chunk.len();
        s.chunks.push_back(chunk);
        let wake = std::mem::take(&mut s.reactor_waiting);
        drop(s);
        if wake {
            handoff.submit(Command::SnapshotReady { id });
        }
        true
    }

    fn end(&self, result: Result<(), String>, id: u64, handoff: &Handoff) {
        let mut s = self.lock();
        s.end = Some(result);
        let wake = std::mem::take(&mut s.reactor_waiting);
        drop(s);
        if wake {
            handoff.submit(Command::SnapshotReady { id });
        }
    }
}

/// Read exactly `size` bytes from `data` in `chunk`-sized pieces into `feed`. Runs on its own
/// thread; returns when done, failed or cancelled.
pub(crate) fn pump(
    mut data: Box<dyn Read + Send>,
    size: u64,
    chunk: usize,
    id: u64,
    feed: Arc<SnapshotFeed>,
    handoff: Arc<Handoff>,
) {
    let mut sent: u64 = 0;
    while sent < size {
        let want = (size - sent).min(chunk as u64) as usize;
        // `read_to_end` through `take` fills spare capacity directly for readers that support
        // it (files, cursors, slices), instead of zeroing a buffer first for `read` to overwrite.
        let mut buf = Vec::with_capacity(want);
        let mut limited = (&mut data).take(want as u64);
        let filled = loop {
            match limited.read_to_end(&mut buf) {
                Ok(_) => break buf.len(),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    feed.end(
                        Err(format!(
                            "reading the snapshot failed after {} of {size} bytes: {e}",
                            sent + buf.len() as u64
                        )),
                        id,
                        &handoff,
                    );
                    return;
                }
            }
        };
        if filled > 0 {
            if !feed.push(Bytes::from(buf), id, &handoff) {
                return;
            }
            sent += filled as u64;
        }
        if filled < want {
            feed.end(
                Err(format!(
                    "the snapshot reader ended after {sent} of {size} bytes"
                )),
                id,
                &handoff,
            );
            return;
        }
    }
    feed.end(Ok(()), id, &handoff);
}

impl Engine {
    pub(super) fn start_snapshot(&mut self, s: OutboundSnapshot, now: Instant) {
        let OutboundSnapshot {
            id,
            addr,
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
        let key = self.dial(addr, role, now);
        let message = Message::Request(Request::InstallSnapshot(request));
        let conn = &mut self.conns[key.index()];
        if let Err(e) = conn
            .codec
            .encode(&mut conn.send, request_id, Lane::Snapshot, &message)
        {
            feed.cancel();
            resolver.fail(Error::Encode(e));
            self.close(key, Error::Shutdown);
            return;
        }
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
