//! `rediss://` (feature `redis-tls`): the redis crate's rustls support, with the crate's
//! crypto provider and, when given, the application's roots.

use std::sync::Arc;

use redis::{ConnectionAddr, TlsCertificates};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

use super::redis_error;
use crate::store::StoreError;

/// The client for `url`: trusting only `roots` (PEM) when given, else the system's roots.
pub(super) fn client(url: &str, roots: Option<&[u8]>) -> Result<redis::Client, StoreError> {
    let client = match roots {
        Some(pem) => {
            check_pem(pem)?;
            let certificates = TlsCertificates {
                client_tls: None,
                root_cert: Some(pem.to_vec()),
            };
            // Refuses a URL that is not `rediss://`.
            redis::Client::build_with_tls(url, certificates)
        }
        None => redis::Client::open(url),
    }
    .map_err(|e| redis_error(&e))?;
    if matches!(
        client.get_connection_info().addr(),
        ConnectionAddr::TcpTls { .. }
    ) {
        install_provider();
    }
    Ok(client)
}

/// The cluster client `builder` for `nodes`: trusting only `roots` (PEM) when given (then
/// every node URL must be `rediss://`), else the system's roots for `rediss://` nodes.
#[cfg(feature = "redis-cluster")]
pub(super) fn cluster(
    builder: redis::cluster::ClusterClientBuilder,
    nodes: &[String],
    roots: Option<&[u8]>,
) -> Result<redis::cluster::ClusterClientBuilder, StoreError> {
    let mut tls = Vec::with_capacity(nodes.len());
    for node in nodes {
        let info = redis::IntoConnectionInfo::into_connection_info(node.as_str())
            .map_err(|e| redis_error(&e))?;
        tls.push(matches!(info.addr(), ConnectionAddr::TcpTls { .. }));
    }
    if tls.contains(&true) {
        install_provider();
    }
    let Some(pem) = roots else {
        return Ok(builder);
    };
    check_pem(pem)?;
    if tls.contains(&false) {
        return Err(StoreError::Unavailable(
            "redis: root certificates need rediss:// node URLs".to_owned(),
        ));
    }
    Ok(builder.certs(TlsCertificates {
        client_tls: None,
        root_cert: Some(pem.to_vec()),
    }))
}

/// At least one certificate, and nothing but certificates.
fn check_pem(pem: &[u8]) -> Result<(), StoreError> {
    let parsed: Result<Vec<_>, _> = CertificateDer::pem_slice_iter(pem).collect();
    match parsed {
        Ok(certificates) if !certificates.is_empty() => Ok(()),
        _ => Err(StoreError::Unavailable(
            "redis: root certificates must be PEM certificates".to_owned(),
        )),
    }
}

/// Makes the crate's provider ([`crate::tls::provider`]) rustls's process default,
/// unless the application installed one (then redis uses the application's).
///
/// The redis crate builds its TLS configuration with `rustls::ClientConfig::builder()`,
/// which takes the process default and offers no way to pass a provider; with both
/// rustls backends compiled in and no default installed, that call panics. With one
/// backend, rustls would install that one itself: the same choice as ours.
fn install_provider() {
    if CryptoProvider::get_default().is_none() {
        // An error means another thread installed one in between: redis uses that one.
        let _ = Arc::unwrap_or_clone(crate::tls::provider()).install_default();
    }
}
