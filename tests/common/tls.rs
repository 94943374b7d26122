//! Certificates for TLS tests, made with rcgen in memory: a CA per test ([`TestCa`]) and node
//! certificates it signs, each naming its server id as a DNS SAN (and 127.0.0.1 as an IP SAN,
//! for dials to addresses with no registered identity), usable both to serve and to dial; and
//! [`Security`]: a test's server and raw peers, plain or over TLS ([`RawPeer`]).

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use raftnet::Config;
use raftnet::tls::TlsConfig;
use raftnet::tls::rustls::pki_types::ServerName;
use raftnet::tls::rustls::{ClientConnection, StreamOwned};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A certificate authority of its own (a cluster's CA, or an impostor's).
pub(crate) struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    /// The CA's certificate, PEM.
    pub(crate) pem: String,
}

/// A node's certificate chain and key, PEM.
pub(crate) struct NodeCert {
    pub(crate) cert: String,
    pub(crate) key: String,
}

impl TestCa {
    pub(crate) fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("CA key");
        let cert = params.self_signed(&key).expect("self-sign the CA");
        TestCa {
            issuer: Issuer::new(params, key),
            pem: cert.pem(),
        }
    }

    /// A certificate for server `id`, valid from 1975 to 4096.
    pub(crate) fn node(&self, id: &str) -> NodeCert {
        self.node_with(id, |_| {})
    }

    /// A certificate for server `id` that expired in 2000.
    pub(crate) fn expired_node(&self, id: &str) -> NodeCert {
        self.node_with(id, |params| {
            params.not_before = rcgen::date_time_ymd(1999, 1, 1);
            params.not_after = rcgen::date_time_ymd(2000, 1, 1);
        })
    }

    fn node_with(&self, id: &str, adjust: impl FnOnce(&mut CertificateParams)) -> NodeCert {
        self.node_named(&[id], adjust)
    }

    /// A certificate naming every one of `ids` (the first is its common name).
    fn node_named(&self, ids: &[&str], adjust: impl FnOnce(&mut CertificateParams)) -> NodeCert {
        let id = ids[0];
        let names = ids.iter().map(|name| name.to_string()).collect::<Vec<_>>();
        let mut params = CertificateParams::new(names).expect("node params");
        params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        params.distinguished_name.push(DnType::CommonName, id);
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        adjust(&mut params);
        let key = KeyPair::generate().expect("node key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign the node");
        NodeCert {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }

    /// Mutual TLS for server `id`: its certificate from this CA, and this CA as the only root.
    pub(crate) fn tls(&self, id: &str) -> TlsConfig {
        self.tls_named(&[id])
    }

    /// [`tls`](Self::tls) with a certificate naming every one of `ids`.
    pub(crate) fn tls_named(&self, ids: &[&str]) -> TlsConfig {
        let node = self.node_named(ids, |_| {});
        TlsConfig::from_pem(
            self.pem.as_bytes(),
            node.cert.as_bytes(),
            node.key.as_bytes(),
        )
        .expect("a TLS config from the test certificates")
    }
}

// ---- a server and its peers, plain or over TLS ------------------------------------------------

/// How a test's peers reach the server it attacks: plain TCP, or mutual TLS with certificates
/// of one test CA. The robustness tests (bad input, greedy peers, fuzz seeds) run once each
/// way, with the same bytes and the same assertions: inside a TLS session, what a raw peer
/// writes is what the server's engine reads.
pub(crate) enum Security {
    Plain,
    Tls(Box<TlsFiles>),
}

/// A test CA, and the server's certificate, key and CA in PEM files (for a server in a child
/// process, `common::child`), removed with it.
pub(crate) struct TlsFiles {
    pub(crate) ca: TestCa,
    dir: tempfile::TempDir,
    /// The raw peers' certificate (made once: each connection then costs a handshake only,
    /// a resumed one after the first).
    raw_peers: TlsConfig,
}

/// How long a server may keep a connection it should close: generous, for a slow machine.
pub(crate) const CLOSE_WAIT: Duration = Duration::from_secs(20);

/// The id the server's certificate names: the robustness tests call their server by
/// [`peer()`](super::peers::peer).
pub(crate) const SERVER_ID: &str = "peer";

impl Security {
    /// Mutual TLS with a CA of its own.
    pub(crate) fn tls() -> Security {
        let ca = TestCa::new("raftnet test CA");
        let dir = tempfile::tempdir().expect("a dir for the server's PEM files");
        let node = ca.node(SERVER_ID);
        for (name, pem) in [
            ("ca.pem", &ca.pem),
            ("node.pem", &node.cert),
            ("node.key", &node.key),
        ] {
            std::fs::write(dir.path().join(name), pem).expect("write a PEM file");
        }
        let raw_peers = ca.tls("rogue-1");
        Security::Tls(Box::new(TlsFiles { ca, dir, raw_peers }))
    }

    pub(crate) fn is_tls(&self) -> bool {
        matches!(self, Security::Tls(_))
    }

    /// "" or " over TLS", for case names.
    pub(crate) fn suffix(&self) -> &'static str {
        match self {
            Security::Plain => "",
            Security::Tls(_) => " over TLS",
        }
    }

    /// The dir holding the server's `ca.pem`, `node.pem` and `node.key` (TLS only).
    pub(crate) fn pem_dir(&self) -> Option<&Path> {
        match self {
            Security::Plain => None,
            Security::Tls(files) => Some(files.dir.path()),
        }
    }

    /// The server's `config`, with its certificate (naming [`SERVER_ID`]) when TLS.
    pub(crate) fn server(&self, config: Config) -> Config {
        match self {
            Security::Plain => config,
            Security::Tls(files) => config.tls(files.ca.tls(SERVER_ID)),
        }
    }

    /// A raftnet client's `config`, with a certificate of the same CA when TLS.
    pub(crate) fn client(&self, config: Config) -> Config {
        match self {
            Security::Plain => config,
            Security::Tls(files) => config.tls(files.ca.tls("legit-1")),
        }
    }

    /// A raw connection to `addr` (no delay on), inside a TLS session when TLS: the handshake
    /// happens at the first write or read.
    pub(crate) fn connect(&self, addr: SocketAddr) -> RawPeer {
        self.wrap(TcpStream::connect(addr).expect("connect"))
    }

    /// Send `bytes` on a fresh connection (then end the sending half if `eof`), and wait for
    /// the server to close it: a read returns 0 or an error other than a timeout (inside TLS, a
    /// session that ends without close_notify is such an error). Returns what the server sent;
    /// fails the test if the server keeps the connection open for [`CLOSE_WAIT`].
    pub(crate) fn send_expecting_close(
        &self,
        addr: SocketAddr,
        bytes: &[u8],
        eof: bool,
        what: &str,
    ) -> Vec<u8> {
        let mut s = self.connect(addr);
        s.socket().set_read_timeout(Some(CLOSE_WAIT)).unwrap();
        // The server may close while we still write (it reads and rejects early): a write
        // error then is part of the expected outcome.
        let _ = s.write_all(bytes).and_then(|()| s.flush());
        if eof {
            let _ = s.shutdown_write();
        }
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf) {
                Ok(0) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    panic!("{what}: the server did not close the connection within {CLOSE_WAIT:?}")
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return got, // reset: closed too
            }
        }
    }

    /// [`connect`](Self::connect) over a socket of the caller's (bound to a source address).
    pub(crate) fn wrap(&self, socket: TcpStream) -> RawPeer {
        socket.set_nodelay(true).expect("nodelay");
        match self {
            Security::Plain => RawPeer::Plain(socket),
            Security::Tls(files) => {
                let name = ServerName::try_from(SERVER_ID).expect("a DNS name");
                let session = ClientConnection::new(files.raw_peers.client_config().clone(), name)
                    .expect("a TLS client session");
                RawPeer::Tls(Box::new(StreamOwned::new(session, socket)))
            }
        }
    }
}

/// A raw peer's connection: a TCP stream, or a rustls session over one.
pub(crate) enum RawPeer {
    Plain(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl RawPeer {
    /// The TCP socket (timeouts are set on it).
    pub(crate) fn socket(&self) -> &TcpStream {
        match self {
            RawPeer::Plain(socket) => socket,
            RawPeer::Tls(stream) => &stream.sock,
        }
    }

    /// End the sending half: inside TLS, close_notify first (the server's engine then reads
    /// the end of its stream, as it does a plain peer's FIN).
    pub(crate) fn shutdown_write(&mut self) -> io::Result<()> {
        if let RawPeer::Tls(stream) = self {
            stream.conn.send_close_notify();
            stream.flush()?;
        }
        self.socket().shutdown(Shutdown::Write)
    }
}

/// Inside TLS, a read once the handshake is done opens the records the socket holds and writes
/// nothing (rustls' `Stream` would first write out whatever records a timed-out write left
/// behind, and wait on a server that stopped reading instead of reading what it sent). The end
/// of the session reads as 0 with close_notify, as an `UnexpectedEof` error without it.
impl Read for RawPeer {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            RawPeer::Plain(socket) => socket.read(buf),
            RawPeer::Tls(stream) => {
                let StreamOwned { conn, sock } = &mut **stream;
                if conn.is_handshaking() {
                    conn.complete_io(sock)?;
                }
                loop {
                    match conn.reader().read(buf) {
                        Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                        done => return done,
                    }
                    conn.read_tls(sock)?;
                    conn.process_new_packets()
                        .map_err(|e| io::Error::new(ErrorKind::InvalidData, e))?;
                }
            }
        }
    }
}

impl RawPeer {
    /// Complete the TLS handshake now (nothing over plain TCP): before the socket stops
    /// blocking, say.
    pub(crate) fn handshake(&mut self) -> io::Result<()> {
        if let RawPeer::Tls(stream) = self {
            let StreamOwned { conn, sock } = &mut **stream;
            while conn.is_handshaking() {
                conn.complete_io(sock)?;
            }
        }
        Ok(())
    }

    /// A write on a non-blocking socket (after the handshake): `WouldBlock` if none of `buf` was
    /// taken, else how much was. Inside TLS the records sealed earlier go out first, then the
    /// bytes taken are sealed and written as far as the socket takes them (the rest on the next
    /// call).
    pub(crate) fn try_write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            RawPeer::Plain(socket) => socket.write(buf),
            RawPeer::Tls(stream) => {
                let StreamOwned { conn, sock } = &mut **stream;
                while conn.wants_write() {
                    conn.write_tls(sock)?;
                }
                let taken = conn.writer().write(buf)?;
                while conn.wants_write() {
                    match conn.write_tls(sock) {
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        written => written?,
                    };
                }
                match taken {
                    0 if !buf.is_empty() => Err(ErrorKind::WouldBlock.into()),
                    taken => Ok(taken),
                }
            }
        }
    }
}

/// Inside TLS, a write seals the bytes and writes the records out before it returns, and
/// reads nothing once the handshake is done (rustls' `Stream` reads the socket as it writes,
/// and drops a write error it meets after taking the bytes): a peer that never reads its
/// answers stays one, and a write the server stopped taking times out as it does plain.
impl Write for RawPeer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            RawPeer::Plain(socket) => socket.write(buf),
            RawPeer::Tls(stream) => {
                let StreamOwned { conn, sock } = &mut **stream;
                if conn.is_handshaking() {
                    conn.complete_io(sock)?;
                }
                let taken = conn.writer().write(buf)?;
                while conn.wants_write() {
                    conn.write_tls(sock)?;
                }
                Ok(taken)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            RawPeer::Plain(socket) => socket.flush(),
            RawPeer::Tls(stream) => stream.flush(),
        }
    }
}
