//! The direct design: what a tokio expert writes when one task can own a connection. No
//! reader task, writer task or channel between them and the caller: the task that owns the
//! stream reads every frame the socket has ready, answers (server) or completes (client) each
//! in place, appends what it has to send to one write buffer, and writes that buffer with one
//! `write_all` once the read side has nothing more ready (a `try_read` that would block), so a
//! burst of requests costs one read and one write, not one of each per frame.
//!
//! - [`serve`]: the scenarios' server connection: requests answered in the connection task
//!   (as raftnet answers where its `Service` does), snapshot bodies checked as they arrive
//!   (`super::server::Snapshots`, shared with the other design).
//! - [`Connection`]: the client's end for a caller that owns its connection: sequential calls
//!   (`call`), or a pipeline kept full by one task (`queue`, `flush`, `answer`,
//!   `ready_answer`).
//!
//! Frames are `super::frame`'s (length prefix, rmp-serde envelope): encoded straight into the
//! write buffer (each payload copied once, as the other design copies it into its frame),
//! decoded as slices of the read buffer (no copy).

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsStream;
use tokio_util::either::Either;

use super::Message;
use super::frame::{Envelope, PREFIX_LEN, Wire, encode_into, frame_len};
use super::server::{Snapshots, Taken, answer};
use crate::check::Findings;

/// Read buffer space reserved before each read (a frame larger than that reserves its size).
const READ_CHUNK: usize = 64 << 10;

/// Bytes of queued frames after which a long burst (a snapshot's chunks) is written out even
/// though more is to come: the kernel's socket buffer is about this size.
const WRITE_HIGH_WATER: usize = 1 << 20;

/// A connection of the direct design: plain TCP, or (`--tls`) mutual TLS over it.
pub(crate) type Stream = Either<TcpStream, TlsStream<TcpStream>>;

/// Read what `stream` has ready into `buffer`, without waiting (`WouldBlock` if nothing). On
/// TLS, one poll of the read: rustls hands out what it already decrypted, else reads the
/// socket once (tokio's readiness is kept for the next poll, with the caller's waker).
fn try_read_ready(stream: &mut Stream, buffer: &mut BytesMut) -> std::io::Result<usize> {
    match stream {
        Either::Left(tcp) => tcp.try_read_buf(buffer),
        Either::Right(tls) => tls
            .read_buf(buffer)
            .now_or_never()
            .unwrap_or(Err(std::io::ErrorKind::WouldBlock.into())),
    }
}

/// What a read without waiting says: `true` if something came.
fn read_ready(read: std::io::Result<usize>) -> Result<bool, String> {
    match read {
        Ok(0) => Err("connection closed".into()),
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(false),
        Err(e) => Err(format!("read: {e}")),
    }
}

/// The frames read from one stream, one at a time, out of a buffer filled by as few reads as
/// the socket allows. (Also the openraft cluster's tokio serving side, `crate::cluster`.)
pub(crate) struct Reader {
    buffer: BytesMut,
}

impl Reader {
    pub(crate) fn new() -> Reader {
        Reader {
            buffer: BytesMut::with_capacity(READ_CHUNK),
        }
    }

    /// The next whole frame already in the buffer, without its length prefix.
    pub(crate) fn frame(&mut self) -> Result<Option<Bytes>, String> {
        let Some(len) = frame_len(&self.buffer)? else {
            return Ok(None);
        };
        if self.buffer.len() < len {
            // Room for the rest of this frame, so the reads that complete it need no regrowth.
            self.buffer.reserve(len - self.buffer.len());
            return Ok(None);
        }
        Ok(Some(self.buffer.split_to(len).freeze().slice(PREFIX_LEN..)))
    }

    /// The next whole frame already in the buffer, decoded.
    fn buffered(&mut self) -> Result<Option<Envelope<Message>>, String> {
        match self.frame()? {
            Some(frame) => Message::decode(frame).map(Some),
            None => Ok(None),
        }
    }

    /// Read what the socket has ready, without waiting: `true` if something came.
    pub(crate) fn try_fill(&mut self, stream: &TcpStream) -> Result<bool, String> {
        self.buffer.reserve(READ_CHUNK);
        read_ready(stream.try_read_buf(&mut self.buffer))
    }

    /// [`Reader::try_fill`] on a [`Stream`], plain or TLS.
    fn try_fill_stream(&mut self, stream: &mut Stream) -> Result<bool, String> {
        self.buffer.reserve(READ_CHUNK);
        read_ready(try_read_ready(stream, &mut self.buffer))
    }

    /// Wait for the socket and read what it has.
    pub(crate) async fn fill<S: AsyncRead + Unpin>(
        &mut self,
        stream: &mut S,
    ) -> Result<(), String> {
        self.buffer.reserve(READ_CHUNK);
        match stream.read_buf(&mut self.buffer).await {
            Ok(0) => Err("connection closed".into()),
            Ok(_) => Ok(()),
            Err(e) => Err(format!("read: {e}")),
        }
    }
}

/// Write `out` whole and empty it (nothing if it is empty). The stream's `flush` is nothing
/// on TCP; on TLS it writes the records rustls still holds.
pub(crate) async fn flush<S: AsyncWrite + Unpin>(
    stream: &mut S,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    if out.is_empty() {
        return Ok(());
    }
    stream
        .write_all(out)
        .await
        .map_err(|e| format!("write: {e}"))?;
    stream.flush().await.map_err(|e| format!("write: {e}"))?;
    out.clear();
    Ok(())
}

/// One server connection in the direct design: read everything ready, answer each request in
/// place into the write buffer, write the answers once nothing more is ready, then wait.
/// With `tls`, the connection is mutual TLS: the handshake first (a client without a
/// certificate the CA signed is refused there, and its connection closed).
pub(crate) async fn serve(
    stream: TcpStream,
    tls: Option<tokio_rustls::TlsAcceptor>,
    findings: Findings,
) {
    if stream.set_nodelay(true).is_err() {
        return;
    }
    let mut stream: Stream = match tls {
        None => Either::Left(stream),
        Some(acceptor) => match acceptor.accept(stream).await {
            Ok(tls) => {
                crate::tls::count_tokio_handshake();
                Either::Right(TlsStream::Server(tls))
            }
            Err(_) => return,
        },
    };
    let mut reader = Reader::new();
    let mut snapshots = Snapshots::new(findings);
    let mut out = Vec::with_capacity(READ_CHUNK);
    let served: Result<(), String> = async {
        loop {
            while let Some(Envelope { id, message }) = reader.buffered()? {
                let response = match snapshots.take(id, message)? {
                    Taken::Snapshot(response) => response,
                    Taken::Request(request) => answer(&request),
                };
                if let Some(response) = response {
                    encode_into(&mut out, id, &response)?;
                }
            }
            if reader.try_fill_stream(&mut stream)? {
                continue;
            }
            flush(&mut stream, &mut out).await?;
            reader.fill(&mut stream).await?;
        }
    }
    .await;
    // The client closing its end is how every run ends; anything else ends this connection
    // the same way, and the client sees it closed.
    drop(served);
}

/// The client's end of one connection in the direct design, owned by the task that calls.
pub(crate) struct Connection {
    stream: Stream,
    reader: Reader,
    out: Vec<u8>,
    next_id: u64,
}

impl Connection {
    /// Connect to `addr` (`TCP_NODELAY` on), over mutual TLS with `tls` (the server's
    /// certificate must name `addr`'s IP address).
    pub(crate) async fn connect(
        addr: std::net::SocketAddr,
        tls: Option<&tokio_rustls::TlsConnector>,
    ) -> Result<Connection, String> {
        let tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect to {addr}: {e}"))?;
        tcp.set_nodelay(true)
            .map_err(|e| format!("set TCP_NODELAY: {e}"))?;
        let stream = match tls {
            None => Either::Left(tcp),
            Some(connector) => {
                let name = tokio_rustls::rustls::pki_types::ServerName::IpAddress(addr.ip().into());
                let tls = connector
                    .connect(name, tcp)
                    .await
                    .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
                Either::Right(TlsStream::Client(tls))
            }
        };
        Ok(Connection {
            stream,
            reader: Reader::new(),
            out: Vec::with_capacity(READ_CHUNK),
            next_id: 0,
        })
    }

    /// Append a request to the write buffer under a new id; that id.
    pub(crate) fn queue(&mut self, message: &Message) -> Result<u64, String> {
        self.next_id += 1;
        self.queue_as(self.next_id, message)?;
        Ok(self.next_id)
    }

    /// Append a frame with `id` (a snapshot's chunks share its request's id).
    pub(crate) fn queue_as(&mut self, id: u64, message: &Message) -> Result<(), String> {
        encode_into(&mut self.out, id, message)
    }

    /// Bytes queued and not yet written.
    pub(crate) fn queued(&self) -> usize {
        self.out.len()
    }

    /// Write everything queued.
    pub(crate) async fn flush(&mut self) -> Result<(), String> {
        flush(&mut self.stream, &mut self.out).await
    }

    /// The next answer already read or ready on the socket, without waiting.
    pub(crate) fn ready_answer(&mut self) -> Result<Option<Envelope<Message>>, String> {
        loop {
            if let Some(answer) = self.reader.buffered()? {
                return Ok(Some(answer));
            }
            if !self.reader.try_fill_stream(&mut self.stream)? {
                return Ok(None);
            }
        }
    }

    /// The next answer, waiting for it.
    pub(crate) async fn answer(&mut self) -> Result<Envelope<Message>, String> {
        loop {
            if let Some(answer) = self.reader.buffered()? {
                return Ok(answer);
            }
            self.reader.fill(&mut self.stream).await?;
        }
    }

    /// One request, its answer (checked to be the answer to it).
    pub(crate) async fn call(&mut self, request: &Message) -> Result<Message, String> {
        let id = self.queue(request)?;
        self.flush().await?;
        let answer = self.answer().await?;
        if answer.id != id {
            return Err(format!("answer to {} while waiting for {id}", answer.id));
        }
        Ok(answer.message)
    }

    /// Write `WRITE_HIGH_WATER` or more queued bytes now (a long burst), else leave them.
    pub(crate) async fn flush_if_full(&mut self) -> Result<(), String> {
        if self.queued() >= WRITE_HIGH_WATER {
            self.flush().await?;
        }
        Ok(())
    }
}
