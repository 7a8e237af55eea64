//! A test CA and a server certificate it signed (rcgen), as PEM files on disk for a
//! server that reads them (`redis-server --tls-cert-file …`). The directory is removed
//! when the value is dropped.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

/// A fresh CA and a leaf certificate it signed for `127.0.0.1` and `localhost`, as DER:
/// `(ca, leaf, the leaf's PKCS#8 key)`. The one place the tests make certificates.
pub fn ca_and_leaf() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "tower-stepup test CA");
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    (
        ca_cert.der().to_vec(),
        leaf.der().to_vec(),
        leaf_key.serialize_der(),
    )
}

/// A CA, a leaf for `127.0.0.1` and `localhost` signed by it, and the leaf's key.
pub struct TestCa {
    /// The CA's certificate: what a client must trust.
    pub ca_pem: String,
    dir: PathBuf,
}

impl TestCa {
    /// Makes the CA and the leaf and writes `ca.pem`, `cert.pem` and `key.pem` to a
    /// fresh temporary directory.
    pub fn new() -> Self {
        let (ca_der, leaf_der, key_der) = ca_and_leaf();
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "tower-stepup-ca-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_pem = pem("CERTIFICATE", &ca_der);
        std::fs::write(dir.join("ca.pem"), &ca_pem).unwrap();
        std::fs::write(dir.join("cert.pem"), pem("CERTIFICATE", &leaf_der)).unwrap();
        let key = pem("PRIVATE KEY", &key_der);
        std::fs::write(dir.join("key.pem"), key).unwrap();
        Self { ca_pem, dir }
    }

    /// The directory holding `ca.pem`, `cert.pem` and `key.pem`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The path of one of the files, as a string for a command line.
    pub fn file(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }
}

/// DER as PEM (rcgen's `pem` feature is off): base64 in lines of 64 under `label`.
fn pem(label: &str, der: &[u8]) -> String {
    use base64::Engine as _;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
        lines.join("\n")
    )
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
