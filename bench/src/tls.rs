//! `--tls`: the test CA and node certificate both implementations' rows use, made at start
//! with rcgen, and the tokio baseline's rustls configurations built from them (raftnet builds
//! its own from the same PEM, `crate::raftnet_impl::use_tls`).
//!
//! Both sides of the tokio baseline verify: the server asks for a client certificate and
//! accepts only one the CA signed; the client checks the server's certificate names
//! 127.0.0.1 and chains to the CA.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig, crypto};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A CA and one node certificate it signed (server and client use), in PEM and DER.
pub struct Pki {
    /// The CA's certificate, PEM.
    pub ca_pem: String,
    /// The node's certificate, PEM.
    pub node_pem: String,
    /// The node's private key, PEM (PKCS#8).
    pub key_pem: String,
    ca_der: CertificateDer<'static>,
    node_der: CertificateDer<'static>,
    key_der: Vec<u8>,
}

impl Pki {
    /// A new CA, and a node certificate it signs for `names` (DNS SANs) and 127.0.0.1, for
    /// server and client authentication.
    pub fn generate(names: &[&str]) -> Result<Pki, String> {
        use rcgen::{
            BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
            KeyUsagePurpose, SanType,
        };
        let failed = |e: rcgen::Error| format!("--tls: making the certificates: {e}");
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(failed)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().map_err(failed)?;
        let ca_cert = ca.self_signed(&ca_key).map_err(failed)?;
        let issuer = Issuer::new(ca, ca_key);
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut node = CertificateParams::new(names).map_err(failed)?;
        node.subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        node.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let node_key = KeyPair::generate().map_err(failed)?;
        let node_cert = node.signed_by(&node_key, &issuer).map_err(failed)?;
        Ok(Pki {
            ca_pem: ca_cert.pem(),
            node_pem: node_cert.pem(),
            key_pem: node_key.serialize_pem(),
            ca_der: ca_cert.der().clone(),
            node_der: node_cert.der().clone(),
            key_der: node_key.serialize_der(),
        })
    }

    fn key(&self) -> PrivateKeyDer<'static> {
        PrivatePkcs8KeyDer::from(self.key_der.clone()).into()
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, String> {
        let mut roots = RootCertStore::empty();
        roots
            .add(self.ca_der.clone())
            .map_err(|e| format!("--tls: the CA: {e}"))?;
        Ok(Arc::new(roots))
    }

    /// The tokio baseline's server side: presents the node certificate, and requires a client
    /// certificate this CA signed.
    pub fn acceptor(&self) -> Result<TlsAcceptor, String> {
        Ok(TlsAcceptor::from(self.server_config()?))
    }

    /// The tokio baseline's client side: trusts `trusted`'s CA only, and presents this node
    /// certificate.
    pub fn connector(&self, trusted: &Pki) -> Result<TlsConnector, String> {
        Ok(TlsConnector::from(self.client_config(trusted)?))
    }

    /// The server configuration of [`acceptor`](Pki::acceptor).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, String> {
        let provider = Arc::new(crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(self.roots()?, provider.clone())
            .build()
            .map_err(|e| format!("--tls: client verifier: {e}"))?;
        let config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("--tls: {e}"))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.node_der.clone()], self.key())
            .map_err(|e| format!("--tls: server certificate: {e}"))?;
        Ok(Arc::new(config))
    }

    /// The client configuration of [`connector`](Pki::connector).
    pub fn client_config(&self, trusted: &Pki) -> Result<Arc<ClientConfig>, String> {
        let provider = Arc::new(crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("--tls: {e}"))?
            .with_root_certificates(trusted.roots()?)
            .with_client_auth_cert(vec![self.node_der.clone()], self.key())
            .map_err(|e| format!("--tls: client certificate: {e}"))?;
        Ok(Arc::new(config))
    }
}

/// TLS handshakes the tokio baseline's servers completed.
static TOKIO_HANDSHAKES: AtomicU64 = AtomicU64::new(0);

/// TLS handshakes the tokio baseline's servers completed in this process (one per
/// connection): the harness prints it with `--tls`, so a run shows its tokio rows were TLS.
pub fn tokio_handshakes() -> u64 {
    TOKIO_HANDSHAKES.load(Ordering::Relaxed)
}

/// A tokio server connection completed its handshake.
pub(crate) fn count_tokio_handshake() {
    TOKIO_HANDSHAKES.fetch_add(1, Ordering::Relaxed);
}

/// The certificates of this run, once [`use_pki`] set them (`--tls`).
static PKI: OnceLock<Pki> = OnceLock::new();

/// Both implementations' RPC scenarios run over mutual TLS with `pki` from now on (once,
/// before any scenario).
pub fn use_pki(pki: Pki) -> Result<&'static Pki, String> {
    PKI.set(pki).map_err(|_| "--tls: already set".to_string())?;
    Ok(PKI.get().expect("just set"))
}

/// The certificates the RPC scenarios run with, if `--tls`.
pub fn pki() -> Option<&'static Pki> {
    PKI.get()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::{Answer, Findings};
    use crate::tokio_net::Message;
    use crate::tokio_net::direct::Connection;
    use crate::tokio_net::requests::heartbeat;
    use crate::tokio_net::server::{Serving, start_serving};

    /// One heartbeat to `addr` over a connection made with `tls`: its answer, or why none.
    async fn heartbeat_over(
        addr: std::net::SocketAddr,
        tls: Option<TlsConnector>,
    ) -> Result<Message, String> {
        let mut conn = Connection::connect(addr, tls.as_ref()).await?;
        conn.call(&heartbeat()).await
    }

    /// The tokio baseline's TLS is mutual and real: a client with the server's CA and a
    /// certificate it signed gets its heartbeat answered; a client whose certificate another
    /// CA signed is refused (by the server), as is a client that trusts another CA (it
    /// refuses the server's certificate) and a plaintext client.
    #[test]
    fn tokio_tls_accepts_only_certificates_of_its_ca() {
        let _load = crate::measure::test_lock::loading();
        let cluster = Pki::generate(&["server"]).unwrap();
        let stranger = Pki::generate(&["server"]).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let serving = Serving::Direct(Some(cluster.acceptor().unwrap()));
            let addr = start_serving(serving, Findings::new()).await.unwrap();

            let answer = heartbeat_over(addr, Some(cluster.connector(&cluster).unwrap())).await;
            let answer = answer.expect("the cluster's own certificate is accepted");
            crate::tokio_impl::answer_of(&answer)
                .check(Answer::heartbeat())
                .unwrap();

            // Trusts the server's CA, presents a certificate another CA signed.
            let foreign_client = stranger.connector(&cluster).unwrap();
            let refused = heartbeat_over(addr, Some(foreign_client)).await;
            assert!(
                refused.is_err(),
                "a foreign client certificate: {refused:?}"
            );

            // Presents the cluster's certificate, trusts only another CA.
            let foreign_roots = cluster.connector(&stranger).unwrap();
            let refused = heartbeat_over(addr, Some(foreign_roots)).await;
            let error = refused.expect_err("a server certificate of another CA");
            assert!(error.starts_with("TLS handshake with"), "{error}");

            let plaintext = heartbeat_over(addr, None).await;
            assert!(plaintext.is_err(), "a plaintext client: {plaintext:?}");
        });
    }
}
