//! `--tls DIR` for the cluster demo and the node example: mutual TLS from the files
//! `make_certs` writes (`DIR/ca.pem`, `DIR/node-ID.pem`, `DIR/node-ID.key`).
//!
//! Node ID's certificate names it `node-ID`. openraft's node ids are numbers, which are not DNS
//! names, so a call's own id cannot name a certificate: each peer's address is registered
//! under its name instead ([`TlsConfig::peer`]), and a dial accepts only that node's
//! certificate. Inbound, the authorization hook serves the cluster's members only: a
//! certificate from the same CA naming anything else is refused.

use std::net::SocketAddr;
use std::path::Path;

use raftnet::ServerId;
use raftnet::tls::TlsConfig;

/// The name node `id`'s certificate carries.
fn node_name(id: u64) -> ServerId {
    ServerId(format!("node-{id}"))
}

/// Node `id`'s TLS configuration from `dir`, expecting each of `peers` at its address and
/// serving only them.
pub(crate) fn node_tls(
    dir: &Path,
    id: u64,
    peers: &[(u64, SocketAddr)],
) -> Result<TlsConfig, raftnet::Error> {
    let name = node_name(id).0;
    let mut tls = TlsConfig::from_pem_files(
        dir.join("ca.pem"),
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    )?;
    for &(peer, addr) in peers {
        tls = tls.peer(&node_name(peer), addr)?;
    }
    let members: Vec<ServerId> = peers.iter().map(|&(peer, _)| node_name(peer)).collect();
    Ok(tls.authorize(move |peer, _kind| members.iter().any(|m| peer.is(m))))
}
