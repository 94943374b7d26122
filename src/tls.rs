//! Mutual TLS for [`NetTransport`](crate::NetTransport) (feature `tls`): [`TlsConfig`], the
//! rustls configurations a transport's connections use, and how a peer's certificate names the
//! [`ServerId`] it belongs to.
//!
//! Both sides present certificates and verify the other's against the configured roots (a
//! cluster's own CA): a connection without a client certificate, or with one the roots do not
//! vouch for, is refused during the handshake. A node's certificate carries its `ServerId` as a
//! DNS subject alternative name (so a `ServerId` used with TLS must be a valid DNS name, such as
//! `node-1`).
//!
//! **Outbound identity.** A call to server X at address A accepts only a certificate naming X:
//! each call's target `ServerId` goes with it to the dial, and pooled connections made for one
//! server never carry another's calls. An address registered with [`TlsConfig::peer`] pins the
//! identity expected there (it wins over the call's id); a call whose id is not a DNS name (a
//! certificate cannot name it) accepts a certificate whose IP address SAN is the address
//! dialled.
//!
//! **Inbound identity.** Once an accepted connection's handshake completes, its peer's
//! [`PeerIdentity`] (the DNS names of its verified certificate) is the connection's. A request
//! whose header names its sender (`RpcHeader::id`, which raftnet's callers and hashicorp/raft
//! fill in) must name one of them: a request claiming another server is refused with an error
//! answer the caller sees as [`Error::Refused`] with [`Refusal::IdentityMismatch`], and a
//! warning on this side. A request with no id in its header is accepted: peers that predate the
//! header's id (hashicorp/raft before protocol 3, tools) send none, and the certificate has
//! authenticated the connection already; what it may do is then [`TlsConfig::authorize`]'s to
//! decide, which sees the certificate's identity, not a claim.
//!
//! **Authorization.** [`TlsConfig::authorize`] installs a hook that decides, from the peer's
//! identity and the kind of RPC, whether a request is served; one it refuses is answered with
//! [`Refusal::Unauthorized`].
//!
//! **Rotation.** [`NetTransport::reload_tls`](crate::NetTransport::reload_tls) puts a new
//! `TlsConfig` in force without a restart: connections accepted or dialled afterwards use its
//! certificates, roots and hook; those open keep their session until they close. To move a
//! cluster to a new CA without a partition, reload every node first with roots holding both
//! CAs, then with its new certificate, then with the new CA alone.
//!
//! The handshake runs in the driver's own loop, like every other read and write (no thread of
//! its own): a handshake that stalls is a slow peer, closed by the same deadlines
//! ([`Config::timeout`](crate::Config::timeout) for a dial; an accepted connection that sends no
//! frame is closed like any other silent one).
//!
//! TLS runs on every event-loop driver: epoll on its own thread
//! ([`Placement::Thread`](crate::Placement)) or as a task on a tokio runtime
//! (`Placement::Runtime`), and io_uring ([`Backend::Uring`](crate::Backend), feature `uring`),
//! with the same session code; binding with
//! [`Placement::ThreadPerConnection`](crate::Placement::ThreadPerConnection) and TLS fails with
//! [`Error::Config`].
//!
//! ```no_run
//! use raftnet::tls::TlsConfig;
//! use raftnet::{Config, NetTransport, ServerId};
//!
//! let tls = TlsConfig::from_pem_files("certs/ca.pem", "certs/node-1.pem", "certs/node-1.key")?
//!     .peer(&ServerId::from("node-2"), "10.0.0.2:7000".parse().unwrap())?;
//! let transport = NetTransport::bind("0.0.0.0:7000", None, Config::default().tls(tls))?;
//! # drop(transport);
//! # Ok::<(), raftnet::Error>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, RwLock};

pub use rustls;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

#[cfg(doc)]
use crate::error::Refusal;
use crate::error::{Error, Result};
use crate::metrics::RpcType;
use crate::transport::ServerId;

/// An authorization hook ([`TlsConfig::authorize`]): whether a peer with this identity may send
/// this kind of RPC.
pub type Authorize = Arc<dyn Fn(&PeerIdentity, RpcType) -> bool + Send + Sync>;

/// Who is at the other end of a TLS connection, as its verified certificate says: the server
/// ids it names (its DNS subject alternative names; wildcard names name no server), and the
/// address the connection came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    server_ids: Vec<ServerId>,
    addr: SocketAddr,
}

impl PeerIdentity {
    /// An identity naming `server_ids`, at `addr` (to test an [`Authorize`] hook; the transport
    /// makes them from certificates).
    pub fn new(server_ids: Vec<ServerId>, addr: SocketAddr) -> PeerIdentity {
        PeerIdentity { server_ids, addr }
    }

    /// The identity `certificate` (already verified by rustls) gives a peer at `addr`.
    pub(crate) fn from_certificate(
        certificate: &CertificateDer<'_>,
        addr: SocketAddr,
    ) -> PeerIdentity {
        let server_ids = match webpki::EndEntityCert::try_from(certificate) {
            Ok(cert) => cert
                .valid_dns_names()
                .filter(|name| !name.contains('*'))
                .map(ServerId::from)
                .collect(),
            // rustls parsed and verified it already; a certificate it accepts always parses.
            Err(_) => Vec::new(),
        };
        PeerIdentity { server_ids, addr }
    }

    /// The server ids the peer's certificate names (usually one).
    pub fn server_ids(&self) -> &[ServerId] {
        &self.server_ids
    }

    /// The address the peer connected from (or was dialled at).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the certificate names server `id`.
    pub fn is(&self, id: &ServerId) -> bool {
        self.carries(id.0.as_bytes())
    }

    /// Whether the certificate names the server whose id is these bytes (a request header's).
    pub(crate) fn carries(&self, id: &[u8]) -> bool {
        self.server_ids.iter().any(|s| s.0.as_bytes() == id)
    }
}

impl fmt::Display for PeerIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, id) in self.server_ids.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(&id.0)?;
        }
        write!(f, "] at {}", self.addr)
    }
}

/// What a TLS stream reports to the engine once its handshake completes: the peer's identity,
/// and the authorization hook of the configuration the connection was made with.
pub(crate) struct VerifiedPeer {
    pub(crate) identity: Arc<PeerIdentity>,
    pub(crate) authorize: Option<Authorize>,
}

/// The TLS settings of a [`NetTransport`](crate::NetTransport), set with
/// [`Config::tls`](crate::Config::tls): rustls' [`ServerConfig`] for accepted connections, its
/// [`ClientConfig`] for dialled ones, and the server identities expected at known addresses.
///
/// Build it from PEM files ([`from_pem_files`](TlsConfig::from_pem_files): the cluster's CA,
/// this node's certificate chain and key; both directions then require and verify certificates
/// against that CA), or from rustls configurations of your own ([`new`](TlsConfig::new)).
/// Cloning is cheap (the configurations are shared).
#[derive(Clone)]
pub struct TlsConfig {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
    /// The identity a dial to each address must find in the peer's certificate.
    peers: Arc<HashMap<SocketAddr, ServerName<'static>>>,
    /// Decides which RPCs an identity may send ([`TlsConfig::authorize`]).
    authorize: Option<Authorize>,
    /// A bound transport's configuration in force, which
    /// [`NetTransport::reload_tls`](crate::NetTransport::reload_tls) replaces; `None` in a
    /// configuration as the application builds it.
    live: Option<Arc<RwLock<TlsConfig>>>,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("peers", &self.peers)
            .field("authorize", &self.authorize.is_some())
            .finish_non_exhaustive()
    }
}

impl TlsConfig {
    /// TLS with configurations of your own: `server` for accepted connections (it should
    /// require client certificates: that is what makes TLS mutual), `client` for dialled ones
    /// (with a client certificate).
    pub fn new(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> TlsConfig {
        TlsConfig {
            server,
            client,
            peers: Arc::default(),
            authorize: None,
            live: None,
        }
    }

    /// Mutual TLS from PEM text: `ca`, the certificates to trust (the cluster's CA); `cert`,
    /// this node's certificate chain (its own first); `key`, its private key (PKCS#8, PKCS#1
    /// or SEC1). Accepted connections must present a certificate `ca` vouches for, and so must
    /// the servers this node dials. rustls' safe defaults (TLS 1.2 and 1.3), with ring as the
    /// crypto provider.
    pub fn from_pem(ca: &[u8], cert: &[u8], key: &[u8]) -> Result<TlsConfig> {
        let roots = roots(CertificateDer::pem_slice_iter(ca).collect(), "the CA PEM")?;
        let chain = certificates(
            CertificateDer::pem_slice_iter(cert).collect(),
            "the cert PEM",
        )?;
        let key = PrivateKeyDer::from_pem_slice(key)
            .map_err(|e| Error::Config(format!("the key PEM: {e}")))?;
        TlsConfig::from_parts(roots, chain, key)
    }

    /// [`from_pem`](TlsConfig::from_pem), reading the three files.
    pub fn from_pem_files(
        ca: impl AsRef<Path>,
        cert: impl AsRef<Path>,
        key: impl AsRef<Path>,
    ) -> Result<TlsConfig> {
        let (ca, cert, key) = (ca.as_ref(), cert.as_ref(), key.as_ref());
        fn named(path: &Path) -> impl FnOnce(rustls_pki_types::pem::Error) -> Error + '_ {
            move |e| Error::Config(format!("{}: {e}", path.display()))
        }
        let ca_certs = CertificateDer::pem_file_iter(ca)
            .map_err(named(ca))?
            .collect::<Vec<_>>();
        let roots = roots(ca_certs, &ca.display().to_string())?;
        let chain = CertificateDer::pem_file_iter(cert)
            .map_err(named(cert))?
            .collect::<Vec<_>>();
        let chain = certificates(chain, &cert.display().to_string())?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(named(key))?;
        TlsConfig::from_parts(roots, chain, key)
    }

    fn from_parts(
        roots: RootCertStore,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<TlsConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let roots = Arc::new(roots);
        let tls_error = |what: &str| {
            let what = what.to_string();
            move |e: rustls::Error| Error::Config(format!("{what}: {e}"))
        };
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| Error::Config(format!("the client certificate verifier: {e}")))?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(tls_error("the server's protocol versions"))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(tls_error("the node's certificate and key"))?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(tls_error("the client's protocol versions"))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(tls_error("the node's certificate and key"))?;
        Ok(TlsConfig::new(Arc::new(server), Arc::new(client)))
    }

    /// Server `id` listens at `addr`: a dial to `addr` accepts only a certificate for `id` (a
    /// DNS SAN equal to it), whatever server the call names. Calls check their own target's id
    /// without it (see the [module docs](self)); this pins an address's identity where the
    /// callers' ids are not the certificates' names. Fails with [`Error::Config`] if `id` is not
    /// a valid DNS name.
    pub fn peer(mut self, id: &ServerId, addr: SocketAddr) -> Result<TlsConfig> {
        let name = ServerName::try_from(id.0.clone()).map_err(|e| {
            Error::Config(format!(
                "server id {id:?} cannot name a TLS certificate (it must be a DNS name): {e}"
            ))
        })?;
        Arc::make_mut(&mut self.peers).insert(addr, name);
        Ok(self)
    }

    /// Decide beyond identity: `authorize` is asked whether a peer with a given
    /// [`PeerIdentity`] may send a given kind of RPC ([`RpcType`]; heartbeats are their own
    /// kind); a request it refuses is answered with [`Error::Refused`] and
    /// [`Refusal::Unauthorized`], and logged, and the connection stays open for the kinds it
    /// allows.
    ///
    /// It is asked once per connection and kind, the first time that kind arrives on the
    /// connection, and its answer is kept for the connection's life: a bit test per request
    /// instead of a call through a pointer, and a hook that may take its time (look up a
    /// table, take a lock) without slowing every RPC. A change in what an identity may do
    /// applies to its new connections.
    ///
    /// ```no_run
    /// use raftnet::tls::TlsConfig;
    /// use raftnet::RpcType;
    ///
    /// // node-4 is a non-voter: it replicates but may not ask for votes.
    /// let tls = TlsConfig::from_pem_files("ca.pem", "node-1.pem", "node-1.key")?
    ///     .authorize(|peer, kind| {
    ///         let votes = matches!(kind, RpcType::RequestVote | RpcType::RequestPreVote);
    ///         !(votes && peer.server_ids().iter().any(|id| id.0 == "node-4"))
    ///     });
    /// # drop(tls);
    /// # Ok::<(), raftnet::Error>(())
    /// ```
    pub fn authorize(
        mut self,
        authorize: impl Fn(&PeerIdentity, RpcType) -> bool + Send + Sync + 'static,
    ) -> TlsConfig {
        self.authorize = Some(Arc::new(authorize));
        self
    }

    /// A transport's own handle on `self`: [`current`](Self::current) reads what
    /// [`replace`](Self::replace) last put in.
    pub(crate) fn live(self) -> TlsConfig {
        let mut handle = self.clone();
        handle.live = Some(Arc::new(RwLock::new(self)));
        handle
    }

    /// The configuration a new connection uses: the one in force (once per connection).
    pub(crate) fn current(&self) -> TlsConfig {
        match &self.live {
            Some(slot) => slot.read().unwrap_or_else(|e| e.into_inner()).clone(),
            None => self.clone(),
        }
    }

    /// Put `next` in force for new connections (a handle from [`live`](Self::live)).
    pub(crate) fn replace(&self, mut next: TlsConfig) {
        next.live = None;
        if let Some(slot) = &self.live {
            *slot.write().unwrap_or_else(|e| e.into_inner()) = next;
        }
    }

    /// The authorization hook, if one is set.
    pub(crate) fn authorizer(&self) -> Option<&Authorize> {
        self.authorize.as_ref()
    }

    /// The configuration accepted connections use.
    pub fn server_config(&self) -> &Arc<ServerConfig> {
        &self.server
    }

    /// The configuration dialled connections use.
    pub fn client_config(&self) -> &Arc<ClientConfig> {
        &self.client
    }

    /// The name a dial to `addr` for `server` verifies the peer's certificate against: the
    /// server registered at `addr` with [`peer`](TlsConfig::peer); else `server`, the call's
    /// target, when it is a DNS name; else the address itself.
    pub(crate) fn server_name(
        &self,
        addr: SocketAddr,
        server: Option<&ServerId>,
    ) -> ServerName<'static> {
        if let Some(name) = self.peers.get(&addr) {
            return name.clone();
        }
        server
            .and_then(|id| ServerName::try_from(id.0.clone()).ok())
            .filter(|name| matches!(name, ServerName::DnsName(_)))
            .unwrap_or(ServerName::IpAddress(addr.ip().into()))
    }
}

fn certificates(
    parsed: Vec<std::result::Result<CertificateDer<'static>, rustls_pki_types::pem::Error>>,
    what: &str,
) -> Result<Vec<CertificateDer<'static>>> {
    let certs = parsed
        .into_iter()
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Config(format!("{what}: {e}")))?;
    if certs.is_empty() {
        return Err(Error::Config(format!("{what}: no certificate in it")));
    }
    Ok(certs)
}

fn roots(
    parsed: Vec<std::result::Result<CertificateDer<'static>, rustls_pki_types::pem::Error>>,
    what: &str,
) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certificates(parsed, what)? {
        roots
            .add(cert)
            .map_err(|e| Error::Config(format!("{what}: {e}")))?;
    }
    Ok(roots)
}
