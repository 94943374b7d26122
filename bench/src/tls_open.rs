//! What opening received TLS records costs per byte in memory, two ways, on the same rustls
//! (`raftnet-tls-open`; BENCHMARKS.md, "A memcpy trap decides the TLS bulk rows").
//!
//! - [`Path::Buffered`] is raftnet's receive path today (`src/driver/tls/mod.rs`). The
//!   ciphertext arrives in 64 KiB reads and goes through rustls' buffered API: `read_tls` copies
//!   it into rustls' receive buffer, `process_new_packets` opens each record there and copies
//!   its plaintext into a new `Vec`, and the plaintext is copied out into the frame being
//!   received.
//! - [`Path::InPlace`] is what rustls' unbuffered API allows: `process_tls_records` opens each
//!   record where it lies in the caller's buffer, and its payload is copied once, into the
//!   frame.
//!
//! Both receive the same plaintext (1 MiB frames, each into a fresh buffer, as raftnet's large
//! frames are), sent by one rustls client with the same certificates as `--tls`. Only the
//! receiving side is timed. No socket is involved, so the figure is the work a driver thread
//! does per byte beyond the kernel's copy.

use std::io::{BufRead, Write};
use std::sync::Arc;
use std::time::Instant;

use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::rustls::server::UnbufferedServerConnection;
use tokio_rustls::rustls::unbuffered::ConnectionState;
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
    /// rustls' buffered API, as raftnet today.
    Buffered,
    /// rustls' unbuffered API, records opened in place.
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

/// raftnet's path: [`READ`]-sized reads through `read_tls`, plaintext copied out of rustls.
fn open_buffered(
    server: &mut ServerConnection,
    ciphertext: &[u8],
    frame: &mut dyn FnMut(Vec<u8>),
) -> Result<(), String> {
    let mut frames = Frames {
        current: Vec::with_capacity(FRAME),
        frame,
    };
    for mut read in ciphertext.chunks(READ) {
        while !read.is_empty() {
            server.read_tls(&mut read).map_err(|e| e.to_string())?;
            let state = server.process_new_packets().map_err(|e| e.to_string())?;
            let mut ready = state.plaintext_bytes_to_read();
            let mut reader = server.reader();
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
}
