//! The receiving end of an InstallSnapshot body: a reader over the chunks the transport
//! receives, blocking ([`std::io::Read`]) or async ([`futures_io::AsyncRead`]), with
//! back-pressure: once [`Config::snapshot_buffer`](crate::Config) bytes wait unread, the
//! transport stops reading that connection until the reader catches up.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use event_listener::{Event, EventListener};

use super::wait::{self, Spin};

#[derive(Default)]
struct StreamState {
    chunks: VecDeque<Bytes>,
    buffered: usize,
    /// How the stream ended: `Ok` once exactly `size` bytes arrived, `Err(reason)` if it broke.
    end: Option<Result<(), String>>,
    /// The transport stopped reading the connection because `buffered` reached the limit.
    paused: bool,
    reader_gone: bool,
}

/// What the transport should do after handing the reader a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Keep reading the connection.
    Continue,
    /// Stop reading it until the reader asks to resume.
    Pause,
}

/// Shared between the transport (which pushes chunks) and the [`SnapshotReader`].
pub(crate) struct SnapshotStream {
    state: Mutex<StreamState>,
    event: Event,
    /// Buffered bytes at which reading pauses; it resumes at half of this.
    limit: usize,
    /// Asks the transport to resume reading the connection.
    resume: Box<dyn Fn() + Send + Sync>,
}

impl SnapshotStream {
    pub(crate) fn new(
        limit: usize,
        resume: impl Fn() + Send + Sync + 'static,
    ) -> Arc<SnapshotStream> {
        Arc::new(SnapshotStream {
            state: Mutex::new(StreamState::default()),
            event: Event::new(),
            limit: limit.max(1),
            resume: Box::new(resume),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, StreamState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Hand over a chunk (the transport checked it stays within `size`).
    pub(crate) fn push(&self, chunk: Bytes) -> Flow {
        let mut s = self.lock();
        if s.reader_gone || chunk.is_empty() {
            return Flow::Continue;
        }
        s.buffered += chunk.len();
        s.chunks.push_back(chunk);
        let flow = if s.buffered >= self.limit {
            s.paused = true;
            Flow::Pause
        } else {
            Flow::Continue
        };
        // The reader is woken for a quarter of the limit at a time, not for every chunk: a
        // reader faster than the network would otherwise sleep and wake once per chunk.
        let wake = s.buffered >= self.limit / 4;
        drop(s);
        if wake {
            self.event.notify(usize::MAX);
        }
        flow
    }

    /// The body is complete (`Ok`) or broken (`Err(reason)`); the first call wins.
    pub(crate) fn finish(&self, result: Result<(), String>) {
        let mut s = self.lock();
        if s.end.is_none() {
            s.end = Some(result);
        }
        drop(s);
        self.event.notify(usize::MAX);
    }

    fn next_chunk(&self) -> Option<Result<Option<Bytes>, String>> {
        let mut s = self.lock();
        if let Some(chunk) = s.chunks.pop_front() {
            s.buffered -= chunk.len();
            let resume = s.paused && s.buffered <= self.limit / 2;
            if resume {
                s.paused = false;
            }
            drop(s);
            if resume {
                (self.resume)();
            }
            return Some(Ok(Some(chunk)));
        }
        match &s.end {
            Some(Ok(())) => Some(Ok(None)),
            Some(Err(e)) => Some(Err(e.clone())),
            None => None,
        }
    }

    /// Whether the reader has something to take: a chunk, or the end.
    fn has_news(&self) -> bool {
        let s = self.lock();
        !s.chunks.is_empty() || s.end.is_some()
    }

    fn reader_dropped(&self) {
        let mut s = self.lock();
        s.reader_gone = true;
        s.chunks.clear();
        s.buffered = 0;
        let resume = s.paused;
        s.paused = false;
        drop(s);
        if resume {
            (self.resume)();
        }
    }
}

enum Source {
    Stream {
        stream: Arc<SnapshotStream>,
        listener: Option<EventListener>,
    },
    /// InmemTransport hands the sender's reader straight through.
    Direct(Box<dyn Read + Send>),
}

/// The body of an inbound InstallSnapshot: exactly `size` bytes, then end of stream. A body that
/// ends early (the sender failed, the connection broke) is an error, never a hang.
pub struct SnapshotReader {
    source: Source,
    size: u64,
    delivered: u64,
    current: Bytes,
}

impl fmt::Debug for SnapshotReader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SnapshotReader")
            .field("size", &self.size)
            .field("delivered", &self.delivered)
            .finish()
    }
}

fn short_body(size: u64, delivered: u64, reason: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::UnexpectedEof,
        format!("snapshot body ended after {delivered} of {size} bytes: {reason}"),
    )
}

impl SnapshotReader {
    pub(crate) fn from_stream(stream: Arc<SnapshotStream>, size: u64) -> SnapshotReader {
        SnapshotReader {
            source: Source::Stream {
                stream,
                listener: None,
            },
            size,
            delivered: 0,
            current: Bytes::new(),
        }
    }

    pub(crate) fn direct(reader: Box<dyn Read + Send>, size: u64) -> SnapshotReader {
        SnapshotReader {
            source: Source::Direct(reader),
            size,
            delivered: 0,
            current: Bytes::new(),
        }
    }

    /// The snapshot's size, as its request declared. The body never runs past it (more is a
    /// protocol error that ends the connection), but it is the sender's word: check it against a
    /// limit of your own before reserving memory for it.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> u64 {
        self.size - self.delivered
    }

    /// The next piece of the body as it arrived, without copying it; `Ok(None)` at the end.
    /// Blocks until a piece arrives.
    pub fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        if !self.current.is_empty() {
            return Ok(Some(self.take_current(usize::MAX)));
        }
        loop {
            match self.poll_chunk(None)? {
                Poll::Ready(chunk) => return Ok(chunk),
                Poll::Pending => self.wait(),
            }
        }
    }

    /// The async form of [`next_chunk`](Self::next_chunk): the next piece as it arrived,
    /// without copying it, waiting without blocking the thread (any executor).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(mut rpc: raftnet::Rpc) -> std::io::Result<()> {
    /// const MAX_SNAPSHOT: u64 = 1 << 30; // this node's own limit
    /// let mut body = rpc.snapshot.take().expect("an InstallSnapshot");
    /// // The size is the sender's word: check it before reserving memory for it.
    /// if body.size() > MAX_SNAPSHOT {
    ///     return Err(std::io::Error::other("snapshot over this node's limit"));
    /// }
    /// let mut file = Vec::with_capacity(body.size() as usize);
    /// while let Some(chunk) = body.next_chunk_async().await? {
    ///     file.extend_from_slice(&chunk);
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn next_chunk_async(&mut self) -> io::Result<Option<Bytes>> {
        std::future::poll_fn(|cx| self.poll_next_chunk(cx)).await
    }

    /// [`next_chunk_async`](Self::next_chunk_async) one poll at a time: `Pending` registers
    /// the task to be woken when a piece arrives.
    pub fn poll_next_chunk(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Option<Bytes>>> {
        if !self.current.is_empty() {
            return Poll::Ready(Ok(Some(self.take_current(usize::MAX))));
        }
        match self.poll_chunk(Some(cx)) {
            Err(e) => Poll::Ready(Err(e)),
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(chunk)) => Poll::Ready(Ok(chunk)),
        }
    }

    fn take_current(&mut self, max: usize) -> Bytes {
        let n = self.current.len().min(max);
        self.delivered += n as u64;
        self.current.split_to(n)
    }

    /// Block until the transport hands over a chunk or ends the stream. Parks without
    /// spinning, as this wait always has.
    fn wait(&self) {
        if let Source::Stream { stream, .. } = &self.source {
            wait::wait(&stream.event, Spin::Never, || {
                stream.has_news().then_some(())
            });
        }
    }

    /// One step: a chunk, the end, an error, or `Pending` (nothing yet). With a context, the
    /// task is registered to be woken when something arrives.
    fn poll_chunk(&mut self, cx: Option<&mut Context<'_>>) -> io::Result<Poll<Option<Bytes>>> {
        if self.delivered >= self.size {
            return Ok(Poll::Ready(None));
        }
        let (size, delivered) = (self.size, self.delivered);
        match &mut self.source {
            Source::Direct(reader) => {
                let want = (size - delivered).min(256 * 1024) as usize;
                let mut buf = vec![0u8; want];
                let n = reader.read(&mut buf)?;
                if n == 0 {
                    return Err(short_body(size, delivered, "the sender's reader ended"));
                }
                buf.truncate(n);
                self.delivered += n as u64;
                Ok(Poll::Ready(Some(Bytes::from(buf))))
            }
            Source::Stream { stream, listener } => {
                let next = match cx {
                    None => stream.next_chunk(),
                    Some(cx) => {
                        match wait::poll_until(&stream.event, listener, cx, || stream.next_chunk())
                        {
                            Poll::Ready(next) => Some(next),
                            Poll::Pending => None,
                        }
                    }
                };
                match next {
                    None => Ok(Poll::Pending),
                    Some(Ok(Some(mut chunk))) => {
                        // The transport never passes more than `size` bytes; guard anyway.
                        chunk.truncate((size - delivered) as usize);
                        self.delivered += chunk.len() as u64;
                        Ok(Poll::Ready(Some(chunk)))
                    }
                    Some(Ok(None)) => Err(short_body(
                        size,
                        delivered,
                        "the sender ended the stream early",
                    )),
                    Some(Err(reason)) => Err(short_body(size, delivered, &reason)),
                }
            }
        }
    }
}

impl Read for SnapshotReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.current.is_empty() {
            match self.next_chunk()? {
                Some(chunk) => {
                    // `next_chunk` counted the whole chunk as delivered; give back what stays.
                    self.delivered -= chunk.len() as u64;
                    self.current = chunk;
                }
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current.advance(n);
        self.delivered += n as u64;
        Ok(n)
    }
}

impl futures_io::AsyncRead for SnapshotReader {
    /// Reads without blocking the thread. (For InmemTransport, whose reader is the sender's own
    /// `std::io::Read`, the read is performed in place.)
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if buf.is_empty() {
            return Poll::Ready(Ok(0));
        }
        if this.current.is_empty() {
            match this.poll_chunk(Some(cx)) {
                Err(e) => return Poll::Ready(Err(e)),
                Ok(Poll::Pending) => return Poll::Pending,
                Ok(Poll::Ready(None)) => return Poll::Ready(Ok(0)),
                Ok(Poll::Ready(Some(chunk))) => {
                    this.delivered -= chunk.len() as u64;
                    this.current = chunk;
                }
            }
        }
        let n = buf.len().min(this.current.len());
        buf[..n].copy_from_slice(&this.current[..n]);
        this.current.advance(n);
        this.delivered += n as u64;
        Poll::Ready(Ok(n))
    }
}

impl Drop for SnapshotReader {
    fn drop(&mut self) {
        if let Source::Stream { stream, .. } = &self.source {
            stream.reader_dropped();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    /// Counts its wakes.
    #[derive(Default)]
    struct Wakes(AtomicUsize);

    impl Wake for Wakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    impl Wakes {
        fn count(&self) -> usize {
            self.0.load(Ordering::SeqCst)
        }
    }

    /// A reader of a `size`-byte body over a stream of `limit` bytes, polled once with a
    /// counting waker while nothing has arrived: it waits to be woken.
    struct Parked {
        stream: Arc<SnapshotStream>,
        reader: SnapshotReader,
        wakes: Arc<Wakes>,
        waker: std::task::Waker,
    }

    fn parked_reader(limit: usize, size: u64) -> Parked {
        let stream = SnapshotStream::new(limit, || {});
        let mut reader = SnapshotReader::from_stream(stream.clone(), size);
        let wakes = Arc::new(Wakes::default());
        let waker = std::task::Waker::from(wakes.clone());
        assert!(
            reader
                .poll_next_chunk(&mut Context::from_waker(&waker))
                .is_pending()
        );
        Parked {
            stream,
            reader,
            wakes,
            waker,
        }
    }

    #[test]
    fn a_waiting_reader_is_woken_once_a_quarter_of_the_buffer_waits() {
        let Parked {
            stream,
            mut reader,
            wakes,
            waker,
        } = parked_reader(4000, 10_000);

        assert_eq!(stream.push(Bytes::from(vec![1u8; 600])), Flow::Continue);
        assert_eq!(stream.push(Bytes::from(vec![2u8; 399])), Flow::Continue);
        assert_eq!(wakes.count(), 0, "999 of 4000 bytes wake nobody");

        assert_eq!(stream.push(Bytes::from(vec![3u8; 1])), Flow::Continue);
        assert_eq!(wakes.count(), 1, "1000 of 4000 bytes wake the reader");

        // Woken, the reader takes every chunk that waits, in order.
        let mut cx = Context::from_waker(&waker);
        let mut got = Vec::new();
        while let Poll::Ready(Ok(Some(chunk))) = reader.poll_next_chunk(&mut cx) {
            got.push((chunk[0], chunk.len()));
        }
        assert_eq!(got, [(1, 600), (2, 399), (3, 1)]);
    }

    #[test]
    fn the_end_wakes_a_waiting_reader_however_little_waits() {
        let Parked {
            stream,
            mut reader,
            wakes,
            waker: _,
        } = parked_reader(4000, 10);

        stream.push(Bytes::from_static(b"0123456789"));
        assert_eq!(wakes.count(), 0);
        stream.finish(Ok(()));
        assert_eq!(wakes.count(), 1);

        let mut body = Vec::new();
        reader.read_to_end(&mut body).unwrap();
        assert_eq!(body, b"0123456789");
    }

    #[test]
    fn a_broken_stream_wakes_a_waiting_reader_with_the_reason() {
        let Parked {
            stream,
            mut reader,
            wakes,
            waker: _,
        } = parked_reader(4000, 10);

        stream.push(Bytes::from_static(b"0123"));
        stream.finish(Err("connection lost: reset".into()));
        assert_eq!(wakes.count(), 1);

        assert_eq!(&reader.next_chunk().unwrap().unwrap()[..], b"0123");
        let error = reader.next_chunk().unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        assert!(
            error.to_string().contains("connection lost: reset"),
            "{error}"
        );
    }
}
