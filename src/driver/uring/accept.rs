//! Accepting on the io_uring driver: a poll of the listener's readiness kept armed while the
//! engine accepts, then `accept(2)` until it would block (as the mio driver accepts; why not
//! the ring's own accept: `mod.rs`), and each new socket handed to the engine, with a TLS
//! session where the transport has TLS, and a receive armed.

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::time::Instant;

use io_uring::{opcode, types};
use socket2::Socket;

use super::UringDriver;
#[cfg(feature = "tls")]
use super::conn::entry;
use super::token::{MAX_INDEX, Op, Token};
use crate::metrics::add;

/// Connections accepted per readiness of the listener (the mio driver's bound per turn).
const MAX_ACCEPTS_PER_TURN: usize = 256;

impl UringDriver {
    /// Arm a poll for the listener's readiness, unless one is armed or accepting is paused.
    pub(super) fn arm_accepts(&mut self) {
        let Some(fd) = self.listener.as_ref().map(AsRawFd::as_raw_fd) else {
            return;
        };
        if !self.accept_paused && !self.listen_armed {
            self.listen_armed = true;
            let poll = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
                .build()
                .user_data(Token::new(Op::Accept, None).0);
            self.push(poll);
        }
    }

    /// The listener is readable (or its poll failed): accept until it would block, the bound,
    /// or a failure (which starts the engine's back-off; accepting resumes with its
    /// `ResumeAccept`).
    pub(super) fn accept(&mut self, polled: i32) {
        self.listen_armed = false;
        if polled == -libc::ECANCELED || self.listener.is_none() || self.accept_paused {
            return;
        }
        for _ in 0..MAX_ACCEPTS_PER_TURN {
            let Some(listener) = &self.listener else {
                return;
            };
            add(&self.engine.metrics().system_calls, 1);
            match listener.accept() {
                Ok((stream, peer)) => self.take_accepted(Socket::from(stream), peer),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    self.engine.handle_accept_failed(e, self.now);
                    self.apply_actions();
                    return;
                }
            }
        }
        self.arm_accepts();
    }

    fn take_accepted(&mut self, socket: Socket, peer: SocketAddr) {
        let _ = socket.set_tcp_nodelay(true);
        // The connection's clock (its handshake deadline) starts now, not when the turn began
        // (as in the mio driver). One clock read per accepted connection, off the RPC path.
        self.now = Instant::now();
        // Over a connection limit, dropping the socket closes it.
        if let Some(key) = self.engine.handle_accepted(peer, self.now) {
            in_conn_span!(self.engine, key, {
                if key.index() > MAX_INDEX {
                    let e = io::Error::other("more connections than the io_uring driver can name");
                    self.engine.handle_error(key, e);
                } else {
                    self.insert(key, socket, None);
                    #[cfg(feature = "tls")]
                    if let Some(tls) = &self.tls {
                        match crate::driver::tls::Session::accept(tls) {
                            Ok(mut session) => {
                                session.peer = Some(peer);
                                if let Some(entry) = entry(&mut self.table, key) {
                                    entry.tls = Some(Box::new(session));
                                }
                            }
                            Err(e) => self.engine.handle_error(key, e),
                        }
                    }
                    self.arm_recv(key);
                }
                self.apply_actions();
            });
        }
    }
}
