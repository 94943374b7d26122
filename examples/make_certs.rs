//! A test CA and node certificates for mutual TLS (feature `tls`), made with rcgen, written as
//! PEM files into a directory the cluster demo and the node example read with `--tls DIR`:
//!
//! ```sh
//! cargo run --example make_certs -- certs            # nodes 0 1 2 3
//! cargo run --example make_certs -- certs 1 2 3 --ip 10.0.0.5
//! cargo run --release --example cluster -- --tls certs
//! ```
//!
//! `DIR/ca.pem` is the CA every node trusts; `DIR/node-ID.pem` and `DIR/node-ID.key` are node
//! ID's certificate and key. Each certificate names its node as a DNS name, `node-ID` (the
//! identity raftnet checks: the examples register every `--peer` under that name), and the
//! addresses it may be dialled at as IP SANs: 127.0.0.1, and each `--ip`. The CA's key is not
//! kept: to add a node, make a new set. For tests and trials: a real cluster's CA lives
//! elsewhere, with its key guarded.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

const USAGE: &str = "usage: make_certs DIR [ID...] [--ip ADDR...]
  DIR        where to write ca.pem and node-ID.pem, node-ID.key for each ID (created if missing)
  ID...      the node ids (default: 0 1 2 3, the cluster demo's nodes 0-2 and the node
             example's 1-3)
  --ip ADDR  an address the nodes are dialled at besides 127.0.0.1 (repeatable)";

type Failure = Box<dyn std::error::Error>;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut dir = None;
    let mut ids = Vec::new();
    let mut ips: Vec<IpAddr> = vec![[127, 0, 0, 1].into()];
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--help" | "-h" => {
                println!("{USAGE}");
                return;
            }
            "--ip" => match args.next().map(|ip| ip.parse()) {
                Some(Ok(ip)) => ips.push(ip),
                _ => exit_usage("--ip needs an IP address"),
            },
            _ if dir.is_none() => dir = Some(PathBuf::from(arg)),
            _ => ids.push(arg),
        }
    }
    let Some(dir) = dir else {
        exit_usage("DIR is required");
    };
    if ids.is_empty() {
        ids = (0..4).map(|id| id.to_string()).collect();
    }
    if let Err(e) = make(&dir, &ids, &ips) {
        eprintln!("make_certs: {e}");
        std::process::exit(1);
    }
}

fn exit_usage(problem: &str) -> ! {
    eprintln!("{problem}\n{USAGE}");
    std::process::exit(2);
}

fn make(dir: &Path, ids: &[String], ips: &[IpAddr]) -> Result<(), Failure> {
    std::fs::create_dir_all(dir)?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca.distinguished_name
        .push(DnType::CommonName, "raftnet test CA");
    let ca_key = KeyPair::generate()?;
    write(&dir.join("ca.pem"), &ca.self_signed(&ca_key)?.pem())?;
    let issuer = Issuer::new(ca, ca_key);
    for id in ids {
        let name = format!("node-{id}");
        let mut node = CertificateParams::new(vec![name.clone()])?;
        node.subject_alt_names
            .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
        node.distinguished_name.push(DnType::CommonName, &name);
        // Each node both serves and dials.
        node.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        write(
            &dir.join(format!("{name}.pem")),
            &node.signed_by(&key, &issuer)?.pem(),
        )?;
        write_private(&dir.join(format!("{name}.key")), &key.serialize_pem())?;
    }
    println!(
        "wrote {} (the CA) and node-ID.pem, node-ID.key for ID in {}",
        dir.join("ca.pem").display(),
        ids.join(" ")
    );
    Ok(())
}

/// A private key: readable by its owner only (on Unix).
fn write_private(path: &Path, pem: &str) -> Result<(), Failure> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let named = |e: std::io::Error| -> Failure { format!("{}: {e}", path.display()).into() };
    options
        .open(path)
        .and_then(|mut file| file.write_all(pem.as_bytes()))
        .map_err(named)
}

fn write(path: &Path, pem: &str) -> Result<(), Failure> {
    std::fs::write(path, pem).map_err(|e| format!("{}: {e}", path.display()).into())
}
