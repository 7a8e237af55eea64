//! DPoP proofs (RFC 9449), the pure part: the check of one `DPoP` header against the
//! request it came with (§4.3), and the RFC 7638 thumbprint a bound token's `cnf.jkt`
//! carries.
//!
//! [`check`] does steps 1–12 of RFC 9449 §4.3 except what needs state: the caller makes
//! [`CheckedProof::jti`] single use (remembering it until
//! [`CheckedProof::expires_at`]) and compares [`CheckedProof::jkt`] with the token's
//! `cnf.jkt`. Every refusal is its own [`DpopError`] variant.
//!
//! - exactly one `DPoP` header, at most [`DpopConfig::max_proof_len`] bytes, a compact JWS
//!   of three base64url parts;
//! - header: `typ` exactly `dpop+jwt`, `alg` in the allow-list (ES256 and EdDSA by
//!   default; ES384 can be added; symmetric algorithms and `none` never), no `crit`, a
//!   `jwk` that is a public key of the type `alg` names (EC P-256, EC P-384, OKP Ed25519)
//!   with no private member;
//! - the signature, checked with that `jwk` through jsonwebtoken;
//! - claims: `jti` (1 to [`MAX_JTI_LEN`] bytes), `htm` equal to the method, `htu` equal
//!   to the request's public URL after normalization ([`Htu`]), `iat` within the window
//!   ([`DpopConfig::max_age`] in the past, [`DpopConfig::future_leeway`] ahead), `ath`
//!   equal to base64url(SHA-256(access token)) when the request carries one (when it
//!   does not, `ath` is ignored), `nonce` equal to the server's when it expects one.
//!
//! ```
//! use http::{HeaderMap, Method};
//! use tower_stepup::dpop::{check, DpopConfig, DpopError, Expected, Htu};
//!
//! let config = DpopConfig::default();
//! assert_eq!(config.algs_header(), r#"algs="ES256 EdDSA""#);
//! let url = Htu::from_base_and_path("https://api.example", "/api/me")?;
//! let expected = Expected {
//!     method: &Method::GET,
//!     url: &url,
//!     access_token: Some("eyJ…"),
//!     nonce: None,
//!     now: 1_800_000_000,
//! };
//! let err = check(&config, &HeaderMap::new(), &expected).unwrap_err();
//! assert_eq!(err, DpopError::Missing);
//! assert_eq!(err.error_code(), "invalid_dpop_proof");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod htu;
mod jwk;
mod nonce;
mod proof;
mod replay;
#[cfg(test)]
mod tests;

use std::time::Duration;

use http::{HeaderMap, Method};
use jsonwebtoken::Algorithm;

pub use self::error::{DpopError, HtuError};
pub use self::htu::Htu;
pub(crate) use self::htu::{is_unreserved, is_uri_char};
pub use self::jwk::thumbprint;
pub use self::nonce::DpopNonces;
pub(crate) use self::proof::Request;
pub use self::replay::{DpopUse, JtiFuture, JtiStore, JtiStoreError, MAX_DPOP_PROOFS_PER_KEY};
use crate::ConfigError;

/// The header that carries the proof.
pub const DPOP_HEADER: &str = "dpop";

/// The longest `jti` accepted, in bytes.
pub const MAX_JTI_LEN: usize = 256;

/// The proof-length bound by default (8 KiB).
pub const DEFAULT_MAX_PROOF_LEN: usize = 8 * 1024;

/// How the proofs are checked: the algorithm allow-list, the `iat` window and the
/// length bound. `DpopConfig::default()` is ES256 and EdDSA, 60 s in the past, 5 s in the
/// future, 8 KiB.
#[derive(Debug, Clone)]
pub struct DpopConfig {
    algorithms: Vec<Algorithm>,
    max_age: u64,
    future_leeway: u64,
    max_proof_len: usize,
    algs_header: String,
}

impl Default for DpopConfig {
    fn default() -> Self {
        let algorithms = vec![Algorithm::ES256, Algorithm::EdDSA];
        Self {
            algs_header: algs_header(&algorithms),
            algorithms,
            max_age: 60,
            future_leeway: 5,
            max_proof_len: DEFAULT_MAX_PROOF_LEN,
        }
    }
}

fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::EdDSA => "EdDSA",
        // Not reachable: the builder admits only the three above.
        _ => "",
    }
}

fn algs_header(algorithms: &[Algorithm]) -> String {
    let names: Vec<&str> = algorithms.iter().map(|a| alg_name(*a)).collect();
    format!("algs=\"{}\"", names.join(" "))
}

impl DpopConfig {
    /// A builder starting from the defaults.
    pub fn builder() -> DpopConfigBuilder {
        DpopConfigBuilder {
            config: Self::default(),
            refused: None,
        }
    }

    /// The allowed algorithms, in the order given.
    pub fn algorithms(&self) -> &[Algorithm] {
        &self.algorithms
    }

    /// The `algs` parameter of the `WWW-Authenticate: DPoP` challenge, e.g.
    /// `algs="ES256 EdDSA"` (RFC 9449 §7.1).
    pub fn algs_header(&self) -> &str {
        &self.algs_header
    }

    /// How old a proof's `iat` may be, in seconds.
    pub fn max_age(&self) -> u64 {
        self.max_age
    }

    /// How far in the future a proof's `iat` may be, in seconds (clock skew).
    pub fn future_leeway(&self) -> u64 {
        self.future_leeway
    }

    /// The longest proof accepted, in bytes.
    pub fn max_proof_len(&self) -> usize {
        self.max_proof_len
    }
}

/// Builds a [`DpopConfig`]; [`build`](Self::build) refuses what cannot be used safely.
#[derive(Debug)]
#[must_use]
pub struct DpopConfigBuilder {
    config: DpopConfig,
    refused: Option<ConfigError>,
}

impl DpopConfigBuilder {
    /// The algorithms a proof may use: any of ES256, ES384 and EdDSA. A symmetric
    /// algorithm (HS256…), an RSA one or an empty list makes [`build`](Self::build) fail.
    pub fn algorithms(mut self, algorithms: impl IntoIterator<Item = Algorithm>) -> Self {
        let mut list = Vec::new();
        for alg in algorithms {
            if proof::asymmetric(alg_name(alg)) != Some(alg) {
                self.refused.get_or_insert(ConfigError::invalid(
                    "dpop algorithms",
                    format!("{alg:?} cannot sign DPoP proofs here (ES256, ES384, EdDSA)"),
                ));
            } else if !list.contains(&alg) {
                list.push(alg);
            }
        }
        self.config.algorithms = list;
        self
    }

    /// The `iat` window: how old a proof may be (`max_age`, 1 s to 5 min, default 60 s;
    /// also how long its `jti` must be remembered, so a longer window leaves a key fewer
    /// requests a second under [`MAX_DPOP_PROOFS_PER_KEY`]) and how far ahead of the server's clock
    /// (`future_leeway`, at most 60 s, default 5 s). Whole seconds.
    pub fn iat_window(mut self, max_age: Duration, future_leeway: Duration) -> Self {
        let (age, ahead) = (max_age.as_secs(), future_leeway.as_secs());
        if !(1..=300).contains(&age) {
            self.refused.get_or_insert(ConfigError::invalid(
                "dpop iat max_age",
                "must be between 1 s and 5 min",
            ));
        }
        if ahead > 60 {
            self.refused.get_or_insert(ConfigError::invalid(
                "dpop iat future_leeway",
                "must be at most 60 s",
            ));
        }
        self.config.max_age = age;
        self.config.future_leeway = ahead;
        self
    }

    /// The longest proof accepted, in bytes (512 to 64 KiB, default 8 KiB).
    pub fn max_proof_len(mut self, bytes: usize) -> Self {
        if !(512..=64 * 1024).contains(&bytes) {
            self.refused.get_or_insert(ConfigError::invalid(
                "dpop max_proof_len",
                "must be between 512 bytes and 64 KiB",
            ));
        }
        self.config.max_proof_len = bytes;
        self
    }

    /// The configuration, or the first setting that was refused.
    pub fn build(self) -> Result<DpopConfig, ConfigError> {
        if let Some(err) = self.refused {
            return Err(err);
        }
        let mut config = self.config;
        if config.algorithms.is_empty() {
            return Err(ConfigError::invalid(
                "dpop algorithms",
                "at least one algorithm is needed",
            ));
        }
        config.algs_header = algs_header(&config.algorithms);
        Ok(config)
    }
}

/// What the request a proof came with looks like.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The request's method (`htm`).
    pub method: &'a Method,
    /// The request's public URL (`htu`): the configured public base URL plus the request
    /// path ([`Htu::from_base_and_path`]), never taken from the `Host` header.
    pub url: &'a Htu,
    /// The access token the request carries (`Authorization: DPoP <token>`), whose hash
    /// `ath` must be; `None` at the token endpoints.
    pub access_token: Option<&'a str>,
    /// The server nonce the proof must carry, if the server uses nonces.
    pub nonce: Option<&'a str>,
    /// The server's clock, in seconds since the epoch.
    pub now: u64,
}

/// A proof that passed every stateless check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedProof {
    /// The RFC 7638 SHA-256 thumbprint of the proof's `jwk`, base64url without padding:
    /// what a bound token's `cnf.jkt` must equal.
    pub jkt: String,
    /// The proof's `jti`, to be accepted once.
    pub jti: String,
    /// The proof's `iat`.
    pub iat: u64,
    /// When (seconds since the epoch) the proof stops passing the `iat` window:
    /// `iat + max_age + 1`, until which its `jti` must be remembered (a store forgets it
    /// at `expires_at`, so the window's last second is covered).
    pub expires_at: u64,
    /// The proof's `nonce`, if it has one: for a server whose nonces change over time
    /// ([`DpopNonces`]) to judge, when [`Expected::nonce`] did not name one value.
    pub nonce: Option<String>,
}

/// Checks the `DPoP` headers of a request (there must be exactly one) against `expected`.
pub fn check(
    config: &DpopConfig,
    headers: &HeaderMap,
    expected: &Expected<'_>,
) -> Result<CheckedProof, DpopError> {
    check_values(
        config,
        headers.get_all(DPOP_HEADER).iter().map(|v| v.as_bytes()),
        expected,
    )
}

/// [`check`] on the raw values of the request's `DPoP` headers (gRPC metadata, or any
/// other source): exactly one value is accepted.
pub fn check_values<'v>(
    config: &DpopConfig,
    values: impl IntoIterator<Item = &'v [u8]>,
    expected: &Expected<'_>,
) -> Result<CheckedProof, DpopError> {
    proof::check_one(config, only_value(values)?, &expected.into())
}

/// [`check`] against `request`, whose URL is the string of a normal form already.
pub(crate) fn check_request(
    config: &DpopConfig,
    headers: &HeaderMap,
    request: &Request<'_>,
) -> Result<CheckedProof, DpopError> {
    let values = headers.get_all(DPOP_HEADER).iter().map(|v| v.as_bytes());
    proof::check_one(config, only_value(values)?, request)
}

/// The one value of the request's `DPoP` headers.
fn only_value<'v>(values: impl IntoIterator<Item = &'v [u8]>) -> Result<&'v [u8], DpopError> {
    let mut values = values.into_iter();
    let value = values.next().ok_or(DpopError::Missing)?;
    if values.next().is_some() {
        return Err(DpopError::Multiple);
    }
    Ok(value)
}
