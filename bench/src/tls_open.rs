//! What opening received TLS records costs per byte in memory, two ways, on the same rustls
//! (`raftnet-tls-open`; BENCHMARKS.md, "A memcpy trap decides the TLS bulk rows").
//!
//! - [`Path::Buffered`] is raftnet's receive path before it moved to the unbuffered API. The
//!   ciphertext arrives in 64 KiB reads and goes through rustls' buffered API: `read_tls` copies
//!   it into rustls' receive buffer, `process_new_packets` opens each record there and copies
//!   its plaintext into a new `Vec`, and the plaintext is copied out into the frame being
//!   received.
//! - [`Path::InPlace`] is raftnet's path now (`src/driver/tls/session.rs`), rustls' unbuffered
//!   API: `process_tls_records` opens each record where it lies in the caller's buffer, and its
//!   payload is copied into the frame (in rustls 0.23 through a `Vec` of its own first:
//!   decryption into the caller's buffer comes with rustls 0.24).
//!
//! Both receive the same plaintext (1 MiB frames, each into a fresh buffer, as raftnet's large
//! frames are), sent by one rustls client with the same certificates as `--tls`. Only the
//! receiving side is timed. No socket is involved, so the figure is the work a driver thread
//! does per byte beyond the kernel's copy.
//!
//! [`send`] times the other end, sealing 1 MiB frames into records, the same two ways:
//! - [`Path::Buffered`], the epoll driver's path before: the frame written into rustls
//!   (`writer()`; rustls copies each record's plaintext into a record `Vec` it seals in place),
//!   and the records handed to a `writev`-like sink straight from rustls' buffers (a socket
//!   takes them without another copy in user space).
//! - [`Path::InPlace`], the unbuffered API, raftnet's path now: `WriteTraffic::encrypt` into
//!   the session's outgoing buffer. In rustls 0.23 it seals each record in a `Vec` of its own
//!   too, then copies it into that buffer: one copy more than the buffered path.
//!
//! Opening then sealing is what a stream costs both its ends, so the two tables together say
//! what moving a driver to the unbuffered API would buy.

use std::io::{BufRead, IoSlice, Write};
use std::sync::Arc;
use std::time::Instant;

use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::server::UnbufferedServerConnection;
use tokio_rustls::rustls::unbuffered::{ConnectionState, EncryptError, InsufficientSizeError};
use tokio_rustls::rustls::{
    ClientConfig, ClientConnection, ConnectionCommon, ServerConfig, ServerConnection,
};

use crate::tls::Pki;

/// The size of each frame received.
pub const FRAME: usize = 1 << 20;
/// Ciphertext taken per read, as raftnet's TLS stream reads its socket (`CIPHERTEXT_READ`).
const READ: usize = 64 * 1024;
/// Handshake steps before giving up (a handshake in memory takes a handful).
const HANDSHAKE_STEPS: usize = 64;

/// How the receiving side opens records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// rustls' buffered API, as raftnet before.
    Buffered,
    /// rustls' unbuffered API, records opened in place: raftnet's path.
    InPlace,
}

/// The configurations of both ends, from one test CA (the client presents its certificate).
pub struct Ends {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

impl Ends {
    /// A new CA and node certificate, and both ends' configurations.
    pub fn new() -> Result<Ends, String> {
        let pki = Pki::generate(&["localhost"])?;
        Ok(Ends {
            server: pki.server_config()?,
            client: pki.client_config(&pki)?,
        })
    }

    fn client(&self) -> Result<ClientConnection, String> {
        let name = ServerName::try_from("localhost").map_err(|e| e.to_string())?;
        ClientConnection::new(self.client.clone(), name).map_err(|e| e.to_string())
    }
}

/// The byte at `offset` of the plaintext sent: a pattern that shows misplaced bytes.
pub fn sent_byte(offset: usize) -> u8 {
    (offset % 251) as u8
}

/// Receive `frames` frames of plaintext along `path`, handing each completed frame to `frame`;
/// the seconds the receiving side took.
pub fn receive(
    ends: &Ends,
    path: Path,
    frames: usize,
    frame: &mut dyn FnMut(Vec<u8>),
) -> Result<f64, String> {
    let mut client = ends.client()?;
    match path {
        Path::Buffered => {
            let mut server =
                ServerConnection::new(ends.server.clone()).map_err(|e| e.to_string())?;
            handshake_buffered(&mut client, &mut server)?;
            let ciphertext = seal(&mut client, frames)?;
            let started = Instant::now();
            open_buffered(&mut server, &ciphertext, frame)?;
            Ok(started.elapsed().as_secs_f64())
        }
        Path::InPlace => {
            let mut server =
                UnbufferedServerConnection::new(ends.server.clone()).map_err(|e| e.to_string())?;
            // What the client sends after the server's last handshake flight (its Finished)
            // goes ahead of the application data, in the same buffer.
            let mut ciphertext = handshake_unbuffered(&mut client, &mut server)?;
            ciphertext.extend_from_slice(&seal(&mut client, frames)?);
            let started = Instant::now();
            open_in_place(&mut server, &mut ciphertext, frame)?;
            Ok(started.elapsed().as_secs_f64())
        }
    }
}

/// The client's records for `frames` frames of the pattern, written a frame at a time.
fn seal(client: &mut ClientConnection, frames: usize) -> Result<Vec<u8>, String> {
    client.set_buffer_limit(None);
    let mut out = Vec::with_capacity(frames * (FRAME + FRAME / 512) + 4096);
    let mut plaintext = vec![0u8; FRAME];
    for f in 0..frames {
        for (i, byte) in plaintext.iter_mut().enumerate() {
            *byte = sent_byte(f * FRAME + i);
        }
        client
            .writer()
            .write_all(&plaintext)
            .map_err(|e| e.to_string())?;
        drain(client, &mut out)?;
    }
    Ok(out)
}

/// Hand `received` to a fresh frame as it fills, completed frames to `frame`.
struct Frames<'a> {
    current: Vec<u8>,
    frame: &'a mut dyn FnMut(Vec<u8>),
}

impl Frames<'_> {
    /// Room for at least one byte in the current frame (a fresh one once it is full).
    fn room(&mut self) -> &mut Vec<u8> {
        if self.current.len() == FRAME {
            let full = std::mem::replace(&mut self.current, Vec::with_capacity(FRAME));
            (self.frame)(full);
        }
        &mut self.current
    }

    fn extend(&mut self, mut received: &[u8]) {
        while !received.is_empty() {
            let current = self.room();
            let n = (FRAME - current.len()).min(received.len());
            current.extend_from_slice(&received[..n]);
            received = &received[n..];
        }
    }

    fn finish(mut self) {
        if !self.current.is_empty() {
            (self.frame)(std::mem::take(&mut self.current));
        }
    }
}

fn handshake_buffered(
    client: &mut ClientConnection,
    server: &mut ServerConnection,
) -> Result<(), String> {
    for _ in 0..HANDSHAKE_STEPS {
        if !client.is_handshaking() && !server.is_handshaking() {
            return Ok(());
        }
        let mut flight = Vec::new();
        drain(client, &mut flight)?;
        feed(server, &flight)?;
        flight.clear();
        drain(server, &mut flight)?;
        feed(client, &flight)?;
    }
    Err("the buffered handshake did not finish".into())
}

/// Give a buffered connection (either end) `bytes` and process them.
fn feed<Data>(conn: &mut ConnectionCommon<Data>, mut bytes: &[u8]) -> Result<(), String> {
    while !bytes.is_empty() {
        conn.read_tls(&mut bytes).map_err(|e| e.to_string())?;
        conn.process_new_packets().map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Append every record a buffered connection (either end) has ready to `out`.
fn drain<Data>(conn: &mut ConnectionCommon<Data>, out: &mut Vec<u8>) -> Result<(), String> {
    while conn.wants_write() {
        conn.write_tls(out).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// raftnet's path: [`READ`]-sized reads through `read_tls`, plaintext copied out of rustls
/// (either end: the server in the measure, a client in the sealing test).
fn open_buffered<Data>(
    conn: &mut ConnectionCommon<Data>,
    ciphertext: &[u8],
    frame: &mut dyn FnMut(Vec<u8>),
) -> Result<(), String> {
    let mut frames = Frames {
        current: Vec::with_capacity(FRAME),
        frame,
    };
    for mut read in ciphertext.chunks(READ) {
        while !read.is_empty() {
            conn.read_tls(&mut read).map_err(|e| e.to_string())?;
            let state = conn.process_new_packets().map_err(|e| e.to_string())?;
            let mut ready = state.plaintext_bytes_to_read();
            let mut reader = conn.reader();
            while ready > 0 {
                let chunk = reader.fill_buf().map_err(|e| e.to_string())?;
                let n = chunk.len().min(ready);
                frames.extend(&chunk[..n]);
                reader.consume(n);
                ready -= n;
            }
        }
    }
    frames.finish();
    Ok(())
}

/// Drive the unbuffered server through the handshake; what the client sent that the server
/// has not taken yet.
fn handshake_unbuffered(
    client: &mut ClientConnection,
    server: &mut UnbufferedServerConnection,
) -> Result<Vec<u8>, String> {
    let mut incoming = Vec::new();
    let mut outgoing = vec![0u8; 64 * 1024];
    for _ in 0..HANDSHAKE_STEPS {
        drain(client, &mut incoming)?;
        let status = server.process_tls_records(&mut incoming);
        let discard = status.discard;
        let mut to_client = 0;
        let traffic = match status.state.map_err(|e| e.to_string())? {
            ConnectionState::EncodeTlsData(mut encode) => {
                to_client = encode.encode(&mut outgoing).map_err(|e| e.to_string())?;
                false
            }
            ConnectionState::TransmitTlsData(transmit) => {
                transmit.done();
                false
            }
            ConnectionState::BlockedHandshake => false,
            ConnectionState::WriteTraffic(_) | ConnectionState::ReadTraffic(_) => true,
            other => return Err(format!("unexpected in the handshake: {other:?}")),
        };
        incoming.drain(..discard);
        feed(client, &outgoing[..to_client])?;
        if traffic && !client.is_handshaking() {
            drain(client, &mut incoming)?;
            return Ok(incoming);
        }
    }
    Err("the unbuffered handshake did not finish".into())
}

/// The unbuffered path: records opened where they lie, [`READ`] bytes of ciphertext at a time
/// (a record cut by a read's end is opened with the next), each payload copied into the frame.
fn open_in_place(
    server: &mut UnbufferedServerConnection,
    ciphertext: &mut [u8],
    frame: &mut dyn FnMut(Vec<u8>),
) -> Result<(), String> {
    let mut frames = Frames {
        current: Vec::with_capacity(FRAME),
        frame,
    };
    let mut outgoing = vec![0u8; 64 * 1024];
    let (mut start, mut end) = (0, 0);
    while start < ciphertext.len() {
        let status = server.process_tls_records(&mut ciphertext[start..end]);
        let mut discard = status.discard;
        let more = match status.state.map_err(|e| e.to_string())? {
            ConnectionState::ReadTraffic(mut traffic) => {
                while let Some(record) = traffic.next_record() {
                    let record = record.map_err(|e| e.to_string())?;
                    discard += record.discard;
                    frames.extend(record.payload);
                }
                discard == 0
            }
            // The session tickets the server sends once the client finished: encoded, not sent.
            ConnectionState::EncodeTlsData(mut encode) => {
                encode.encode(&mut outgoing).map_err(|e| e.to_string())?;
                false
            }
            ConnectionState::TransmitTlsData(transmit) => {
                transmit.done();
                false
            }
            ConnectionState::WriteTraffic(_) | ConnectionState::BlockedHandshake => discard == 0,
            other => return Err(format!("unexpected while receiving: {other:?}")),
        };
        start += discard;
        if more {
            if end == ciphertext.len() {
                return Err(format!("{} bytes left unopened", end - start));
            }
            end = (end + READ).min(ciphertext.len());
        }
    }
    frames.finish();
    Ok(())
}

/// What [`send`] did.
pub struct Sent {
    /// The seconds sealing took.
    pub seconds: f64,
    /// The records, where `send` was asked to keep them.
    pub records: Vec<u8>,
    /// The client the records are for, its handshake done (to open them).
    pub client: ClientConnection,
}

/// Seal `frames` frames of the pattern (the same frame each time, made before the clock starts)
/// on the server's side along `path`, timing that. With `keep`, the records are also kept (the
/// sink then copies them: for a test, not for a measure).
pub fn send(ends: &Ends, path: Path, frames: usize, keep: bool) -> Result<Sent, String> {
    let mut client = ends.client()?;
    let frame: Vec<u8> = (0..FRAME).map(sent_byte).collect();
    let mut sink = Sink {
        taken: 0,
        kept: keep.then(Vec::new),
    };
    let started;
    match path {
        Path::Buffered => {
            let mut server =
                ServerConnection::new(ends.server.clone()).map_err(|e| e.to_string())?;
            handshake_buffered(&mut client, &mut server)?;
            server.set_buffer_limit(None);
            started = Instant::now();
            for _ in 0..frames {
                server
                    .writer()
                    .write_all(&frame)
                    .map_err(|e| e.to_string())?;
                while server.wants_write() {
                    server.write_tls(&mut sink).map_err(|e| e.to_string())?;
                }
            }
        }
        Path::InPlace => {
            let mut server =
                UnbufferedServerConnection::new(ends.server.clone()).map_err(|e| e.to_string())?;
            // What the client sent after the handshake (nothing here) is not needed.
            handshake_unbuffered(&mut client, &mut server)?;
            // A driver's outgoing buffer, reused: room for a frame and its records' overhead.
            let mut outgoing = vec![0u8; FRAME + FRAME / 256 + 4096];
            started = Instant::now();
            let mut sent = 0;
            while sent < frames {
                let status = server.process_tls_records(&mut []);
                match status.state.map_err(|e| e.to_string())? {
                    ConnectionState::WriteTraffic(mut traffic) => {
                        let n = match traffic.encrypt(&frame, &mut outgoing) {
                            Ok(n) => n,
                            Err(EncryptError::InsufficientSize(InsufficientSizeError {
                                required_size,
                            })) => {
                                return Err(format!("outgoing buffer short of {required_size}"));
                            }
                            Err(e) => return Err(e.to_string()),
                        };
                        sink.write_all(&outgoing[..n]).map_err(|e| e.to_string())?;
                        sent += 1;
                    }
                    // Records the server still had to send (session tickets): they go first.
                    ConnectionState::EncodeTlsData(mut encode) => {
                        let n = encode.encode(&mut outgoing).map_err(|e| e.to_string())?;
                        sink.write_all(&outgoing[..n]).map_err(|e| e.to_string())?;
                    }
                    ConnectionState::TransmitTlsData(transmit) => transmit.done(),
                    other => return Err(format!("unexpected while sending: {other:?}")),
                }
            }
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    if sink.taken < frames * FRAME {
        return Err(format!(
            "{} bytes of records for {frames} frames",
            sink.taken
        ));
    }
    Ok(Sent {
        seconds,
        records: sink.kept.unwrap_or_default(),
        client,
    })
}

/// Where sealed records go: taken as a socket's `writev` takes them (counted; the kernel's copy
/// is the same for both paths and not part of this measure), or also kept for a test.
struct Sink {
    taken: usize,
    kept: Option<Vec<u8>>,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.write_vectored(&[IoSlice::new(buf)])
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> std::io::Result<usize> {
        let mut n = 0;
        for buf in bufs {
            n += buf.len();
            if let Some(kept) = &mut self.kept {
                kept.extend_from_slice(buf);
            }
        }
        self.taken += n;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both paths hand over exactly the plaintext sent, frame by frame, in order.
    #[test]
    fn both_paths_receive_exactly_what_was_sent() {
        let ends = Ends::new().unwrap();
        for path in [Path::Buffered, Path::InPlace] {
            let mut offset = 0;
            let mut sizes = Vec::new();
            receive(&ends, path, 3, &mut |frame| {
                for (i, byte) in frame.iter().enumerate() {
                    assert_eq!(*byte, sent_byte(offset + i), "{path:?} at {}", offset + i);
                }
                offset += frame.len();
                sizes.push(frame.len());
            })
            .unwrap();
            assert_eq!(sizes, [FRAME; 3], "{path:?}");
        }
    }

    /// Both sealing paths produce records that open, at the client of that session, to
    /// exactly the frames sealed.
    #[test]
    fn both_paths_seal_exactly_what_was_written() {
        let ends = Ends::new().unwrap();
        for path in [Path::Buffered, Path::InPlace] {
            let mut sent = send(&ends, path, 2, true).unwrap();
            let mut sizes = Vec::new();
            open_buffered(&mut sent.client, &sent.records, &mut |frame| {
                for (i, byte) in frame.iter().enumerate() {
                    assert_eq!(*byte, sent_byte(i), "{path:?} at {i}");
                }
                sizes.push(frame.len());
            })
            .unwrap();
            assert_eq!(sizes, [FRAME; 2], "{path:?}");
        }
    }
}
