//! A snapshot body on its way out, before the engine has it: a pump thread (started by the
//! transport's API) reads the caller's `std::io::Read`, which may block, into chunks, and the
//! engine takes them as the connection has room. At most `window` bytes wait between the two,
//! so a fast disk cannot fill memory and a slow one never stalls the engine's thread. A body
//! already in memory (`Bytes`) needs neither: its chunks are slices of it, all there at once.

use std::collections::VecDeque;
use std::io::Read;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use bytes::Bytes;

#[derive(Default)]
struct FeedState {
    chunks: VecDeque<Bytes>,
    queued: usize,
    /// `Ok` once exactly `size` bytes were read; `Err(reason)` if the reader failed or ended early.
    end: Option<Result<(), String>>,
    /// The transfer is over (answered, failed or the transport closed): the pump stops.
    cancelled: bool,
    /// The engine found the feed empty and waits to be told there is more.
    engine_waiting: bool,
    /// The pump found the window full and waits for room. Only then does taking a chunk
    /// signal `space`: a condition variable's signal is a system call whether or not anyone
    /// waits, and a body in memory has no pump at all.
    pump_waiting: bool,
}

/// What the engine gets when it asks for the next chunk.
pub(crate) enum Next {
    Chunk(Bytes),
    /// Nothing yet; the feed's `ready` will say when there is.
    Wait,
    /// Every byte was handed over.
    Done,
    Failed(String),
}

/// The bounded channel between a snapshot's pump thread and the engine.
pub(crate) struct SnapshotFeed {
    state: Mutex<FeedState>,
    space: Condvar,
    window: usize,
    /// Tells the engine there is more, after it found the feed empty (the transport submits a
    /// `SnapshotReady` command).
    ready: Box<dyn Fn() + Send + Sync>,
}

impl SnapshotFeed {
    /// A feed holding at most `window` bytes; `ready` is called (from the pump's thread) when
    /// the engine waits for more and more has come.
    pub(crate) fn new(
        window: usize,
        ready: impl Fn() + Send + Sync + 'static,
    ) -> Arc<SnapshotFeed> {
        Arc::new(SnapshotFeed {
            state: Mutex::new(FeedState::default()),
            space: Condvar::new(),
            window: window.max(1),
            ready: Box::new(ready),
        })
    }

    fn lock(&self) -> MutexGuard<'_, FeedState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A feed that holds the whole body already: `size` bytes of `data` as `chunk`-sized
    /// slices of it (no copy, no pump thread). `data` shorter than `size` ends it with an error
    /// after the bytes it has, as a short reader would.
    pub(crate) fn from_bytes(data: Bytes, size: u64, chunk: usize) -> Arc<SnapshotFeed> {
        let feed = SnapshotFeed::new(usize::MAX, || {});
        {
            let mut s = feed.lock();
            let available = (data.len() as u64).min(size) as usize;
            let mut offset = 0;
            while offset < available {
                let end = (offset + chunk.max(1)).min(available);
                s.chunks.push_back(data.slice(offset..end));
                offset = end;
            }
            s.queued = available;
            s.end = Some(if available as u64 == size {
                Ok(())
            } else {
                Err(format!(
                    "the snapshot's bytes ended after {available} of {size} bytes"
                ))
            });
        }
        feed
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
            let room = std::mem::take(&mut s.pump_waiting);
            drop(s);
            if room {
                self.space.notify_one();
            }
            return Next::Chunk(chunk);
        }
        match &s.end {
            Some(Ok(())) => Next::Done,
            Some(Err(e)) => Next::Failed(e.clone()),
            None => {
                s.engine_waiting = true;
                Next::Wait
            }
        }
    }

    /// Pump side: hand over a chunk, waiting while the window is full. Returns `false` if the
    /// transfer was cancelled.
    fn push(&self, chunk: Bytes) -> bool {
        let mut s = self.lock();
        while s.queued >= self.window && !s.cancelled {
            s.pump_waiting = true;
            s = self.space.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        if s.cancelled {
            return false;
        }
        s.queued += chunk.len();
        s.chunks.push_back(chunk);
        let wake = std::mem::take(&mut s.engine_waiting);
        drop(s);
        if wake {
            (self.ready)();
        }
        true
    }

    fn end(&self, result: Result<(), String>) {
        let mut s = self.lock();
        s.end = Some(result);
        let wake = std::mem::take(&mut s.engine_waiting);
        drop(s);
        if wake {
            (self.ready)();
        }
    }
}

/// Read exactly `size` bytes from `data` in `chunk`-sized pieces into `feed`. Runs on its own
/// thread; returns when done, failed or cancelled.
pub(crate) fn pump(
    mut data: Box<dyn Read + Send>,
    size: u64,
    chunk: usize,
    feed: Arc<SnapshotFeed>,
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
                    feed.end(Err(format!(
                        "reading the snapshot failed after {} of {size} bytes: {e}",
                        sent + buf.len() as u64
                    )));
                    return;
                }
            }
        };
        if filled > 0 {
            if !feed.push(Bytes::from(buf)) {
                return;
            }
            sent += filled as u64;
        }
        if filled < want {
            feed.end(Err(format!(
                "the snapshot reader ended after {sent} of {size} bytes"
            )));
            return;
        }
    }
    feed.end(Ok(()));
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    /// Take every chunk of `feed` as the engine would, until it is done, within `deadline`.
    fn drain(feed: &SnapshotFeed, deadline: Duration) -> Result<Vec<u8>, String> {
        let start = Instant::now();
        let mut body = Vec::new();
        loop {
            match feed.next() {
                Next::Chunk(chunk) => body.extend_from_slice(&chunk),
                Next::Done => return Ok(body),
                Next::Failed(reason) => return Err(reason),
                Next::Wait if start.elapsed() > deadline => {
                    return Err(format!("stuck after {} bytes", body.len()));
                }
                Next::Wait => std::thread::sleep(Duration::from_millis(1)),
            }
        }
    }

    /// A pump that fills its window waits for room and is woken each time the engine takes a
    /// chunk: the whole body arrives, in order, through a window of one chunk.
    #[test]
    fn a_pump_held_by_a_full_window_is_woken_as_chunks_are_taken() {
        let body: Vec<u8> = (0..=255u8).cycle().take(10_000).collect();
        let feed = SnapshotFeed::new(100, || {});
        let pumped = {
            let (feed, body) = (feed.clone(), body.clone());
            std::thread::spawn(move || {
                pump(Box::new(std::io::Cursor::new(body)), 10_000, 100, feed)
            })
        };
        // Let the pump fill the window and wait, so that every take finds it waiting.
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(drain(&feed, Duration::from_secs(60)), Ok(body));
        pumped.join().unwrap();
    }

    /// Cancelling wakes a pump held by a full window, which then stops.
    #[test]
    fn cancelling_wakes_a_pump_held_by_a_full_window() {
        let feed = SnapshotFeed::new(100, || {});
        let pumped = {
            let feed = feed.clone();
            std::thread::spawn(move || {
                pump(Box::new(std::io::repeat(7)), 1_000_000, 100, feed);
            })
        };
        while !feed.lock().pump_waiting {
            std::thread::sleep(Duration::from_millis(1));
        }
        feed.cancel();
        pumped.join().unwrap();
        assert_eq!(feed.lock().queued, 100, "it stopped with the window full");
    }
}
