//! A loopback port held for one node process across its restarts (the cluster runner's nodes,
//! and `tests/node_example.rs`'s).
//!
//! Were the port released for the node to bind (bound to port 0, closed, its number passed on),
//! it could go to another socket on the machine (a test binding port 0) while the node is down
//! or before it starts; the node then cannot bind it, and whoever took it gets the cluster's
//! RPCs (CI saw both: a node of another test's cluster answered, and openraft panicked). So the
//! runner binds the port once and keeps it; each process of the node serves on it, inherited
//! (the node example's `--listen-fd`).
//!
//! While no process of the node runs, the port refuses dials, as a dead host's port does: the
//! socket stops listening (`shutdown(SHUT_RD)` on a listening socket, on Linux, ends the listen
//! and keeps the bind) and listens again when the next process starts. Had it kept listening,
//! peers' dials would complete and wait in its backlog, as at a hung host, which changes what a
//! Raft leader does about the node (openraft keeps the log a pending replication needs rather
//! than purge it, so a restarted node catches up from the log instead of a snapshot).

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

use socket2::{Domain, Socket, Type};

/// Connections the port holds before its node accepts them (std's and mio's backlog).
const BACKLOG: i32 = 128;

/// A loopback port reserved for one node.
pub struct HeldPort {
    socket: Socket,
    addr: SocketAddr,
}

impl HeldPort {
    /// A port on 127.0.0.1 that the OS hands out (port 0), bound and not listening.
    ///
    /// Bound by its number, not as port 0: Linux gives a port bound as 0 back when the socket
    /// stops listening. The number comes from a first socket bound to port 0 and closed only
    /// once the second holds the port (both with `SO_REUSEADDR` and neither listening, the
    /// two may share it), so the port is never free in between.
    pub fn reserve() -> io::Result<HeldPort> {
        let any: SocketAddr = ([127, 0, 0, 1], 0).into();
        let probe = reusable_socket()?;
        probe.bind(&any.into())?;
        let addr = probe
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("a loopback socket without an IP address"))?;
        let socket = reusable_socket()?;
        socket.bind(&addr.into())?;
        drop(probe);
        Ok(HeldPort { socket, addr })
    }

    /// The address the node is dialled at.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Listen, and give the listener to `command`'s process: its descriptor's number is
    /// appended to the arguments as `--listen-fd FD`, and it is left open across the `exec`
    /// in that child alone. Call once per spawn, just before it.
    pub fn pass_to(&self, command: &mut Command) -> io::Result<()> {
        self.socket.listen(BACKLOG)?;
        // A duplicate, close-on-exec as every descriptor std and socket2 open, so a process
        // other threads spawn meanwhile does not inherit it; `command` owns it, so it closes
        // in this process when `command` is dropped, after the spawn.
        let inherited = self.socket.try_clone()?;
        command.args(["--listen-fd", &inherited.as_raw_fd().to_string()]);
        // SAFETY: the closure runs in the child between fork and exec, where only
        // async-signal-safe calls may be made: fcntl(2) is one, and nothing else is done
        // (`last_os_error` reads errno; the error it builds holds a number, no allocation).
        unsafe {
            command.pre_exec(move || {
                if libc::fcntl(inherited.as_raw_fd(), libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        Ok(())
    }

    /// No process of the node runs any more (it was killed and reaped, or exited): the port
    /// refuses dials until [`pass_to`](Self::pass_to) listens again, and stays this node's.
    pub fn refuse(&self) {
        // Fails (ENOTCONN) only if it was not listening, which leaves it as wanted.
        let _ = self.socket.shutdown(Shutdown::Read);
    }
}

fn reusable_socket() -> io::Result<Socket> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    Ok(socket)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{TcpListener, TcpStream};

    /// A held port refuses dials while nothing listens, and binding it without
    /// `SO_REUSEADDR` (what a port-0 bind's choice also respects) fails; once listening again
    /// it accepts.
    #[test]
    fn a_held_port_refuses_dials_while_down_and_stays_held() {
        let port = HeldPort::reserve().unwrap();
        let refused = |what: &str| {
            let error = TcpStream::connect(port.addr()).expect_err(what);
            assert_eq!(error.kind(), io::ErrorKind::ConnectionRefused, "{what}");
        };
        refused("nothing listens before the first start");
        let held = |what: &str| {
            let other = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
            let error = other.bind(&port.addr().into()).expect_err(what);
            assert_eq!(error.kind(), io::ErrorKind::AddrInUse, "{what}");
        };
        held("the port is held before the first start");

        // What a node's process does with it: listen (pass_to's first step), accept.
        port.socket.listen(BACKLOG).unwrap();
        let listener: TcpListener = port.socket.try_clone().unwrap().into();
        let _dialled = TcpStream::connect(port.addr()).unwrap();
        listener.accept().expect("the listening port accepts");
        drop(listener);

        port.refuse();
        refused("the port refuses once its node is gone");
        held("the port stays held while its node is down");

        port.socket.listen(BACKLOG).unwrap();
        let _dialled = TcpStream::connect(port.addr()).expect("listening again, it accepts");
    }
}
