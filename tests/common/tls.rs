//! Certificates for TLS tests, made with rcgen in memory: a CA per test ([`TestCa`]) and node
//! certificates it signs, each naming its server id as a DNS SAN (and 127.0.0.1 as an IP SAN,
//! for dials to addresses with no registered identity), usable both to serve and to dial.

use std::net::{IpAddr, Ipv4Addr};

use raftnet::tls::TlsConfig;
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
