//! DPoP proofs made independently of the crate (RFC 9449 §4.2): header and payload JSON
//! by hand, base64url by hand, signatures by RustCrypto's `p256` 0.14 and
//! `ed25519-dalek` 3, thumbprints (RFC 7638) by hand over sha2. The crate's checker and
//! client are what these proofs test, so nothing here calls them.
#![allow(dead_code)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ed25519_dalek::Signer as _;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// base64url without padding.
pub fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The `ath` of `token`: base64url(SHA-256(token)).
pub fn ath(token: &str) -> String {
    b64(&Sha256::digest(token.as_bytes()))
}

/// A client's DPoP key.
pub enum Key {
    Es256(p256::ecdsa::SigningKey),
    Ed(ed25519_dalek::SigningKey),
}

impl Key {
    /// A P-256 key from a fixed seed (1..=255).
    pub fn es256(seed: u8) -> Self {
        Key::Es256(p256::ecdsa::SigningKey::from_slice(&[seed; 32]).unwrap())
    }

    /// An Ed25519 key from a fixed seed.
    pub fn ed(seed: u8) -> Self {
        Key::Ed(ed25519_dalek::SigningKey::from_bytes(&[seed; 32]))
    }

    pub fn alg(&self) -> &'static str {
        match self {
            Key::Es256(_) => "ES256",
            Key::Ed(_) => "EdDSA",
        }
    }

    /// The public JWK.
    pub fn jwk(&self) -> Value {
        match self {
            Key::Es256(k) => {
                let point = k.verifying_key().to_sec1_point(false);
                let bytes = point.as_bytes();
                json!({"kty": "EC", "crv": "P-256", "x": b64(&bytes[1..33]), "y": b64(&bytes[33..])})
            }
            Key::Ed(k) => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&k.verifying_key().to_bytes())})
            }
        }
    }

    /// The private scalar or seed, as a JWK's `d` would carry it.
    pub fn d(&self) -> String {
        match self {
            Key::Es256(k) => b64(&k.to_bytes()),
            Key::Ed(k) => b64(&k.to_bytes()),
        }
    }

    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        match self {
            Key::Es256(k) => {
                let sig: p256::ecdsa::Signature = p256::ecdsa::signature::Signer::sign(k, message);
                sig.to_bytes().to_vec()
            }
            Key::Ed(k) => k.sign(message).to_bytes().to_vec(),
        }
    }

    /// RFC 7638 by hand: the required members in lexicographic order, no whitespace.
    pub fn thumbprint(&self) -> String {
        let jwk = self.jwk();
        let input = match self {
            Key::Es256(_) => format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                jwk["x"].as_str().unwrap(),
                jwk["y"].as_str().unwrap()
            ),
            Key::Ed(_) => format!(
                r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                jwk["x"].as_str().unwrap()
            ),
        };
        b64(&Sha256::digest(input.as_bytes()))
    }

    /// A proof for `htm htu` at `iat`, with `ath` of `token` when given and a fresh `jti`.
    pub fn proof(&self, htm: &str, htu: &str, token: Option<&str>, iat: u64) -> String {
        self.proof_with(htm, htu, token, iat, |_, _| {})
    }

    /// [`Key::proof`] with its header and claims edited by `edit` before signing.
    pub fn proof_with(
        &self,
        htm: &str,
        htu: &str,
        token: Option<&str>,
        iat: u64,
        edit: impl FnOnce(&mut Value, &mut Value),
    ) -> String {
        let mut header = json!({"typ": "dpop+jwt", "alg": self.alg(), "jwk": self.jwk()});
        let mut claims = json!({"jti": jti(), "htm": htm, "htu": htu, "iat": iat});
        if let Some(token) = token {
            claims["ath"] = json!(ath(token));
        }
        edit(&mut header, &mut claims);
        self.sign_raw(
            &serde_json::to_vec(&header).unwrap(),
            &serde_json::to_vec(&claims).unwrap(),
        )
    }

    /// A compact JWS of exactly these header and payload bytes.
    pub fn sign_raw(&self, header: &[u8], payload: &[u8]) -> String {
        let input = format!("{}.{}", b64(header), b64(payload));
        let sig = self.sign(input.as_bytes());
        format!("{input}.{}", b64(&sig))
    }
}

/// A fresh `jti`: 16 random bytes (a counter and the process id would do; this is what a
/// client does).
pub fn jti() -> String {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).unwrap();
    b64(&bytes)
}

/// An HS256-signed "proof" (a symmetric algorithm, refused by every DPoP checker).
pub fn hs256_proof(secret: &[u8], htm: &str, htu: &str, iat: u64) -> String {
    use hmac_free::hs256;
    let header =
        json!({"typ": "dpop+jwt", "alg": "HS256", "jwk": {"kty": "oct", "k": b64(secret)}});
    let claims = json!({"jti": jti(), "htm": htm, "htu": htu, "iat": iat});
    let input = format!(
        "{}.{}",
        b64(&serde_json::to_vec(&header).unwrap()),
        b64(&serde_json::to_vec(&claims).unwrap())
    );
    let sig = hs256(secret, input.as_bytes());
    format!("{input}.{}", b64(&sig))
}

/// HMAC-SHA256 (RFC 2104) over sha2, so the tests need no HMAC crate.
mod hmac_free {
    use sha2::{Digest, Sha256};

    pub fn hs256(key: &[u8], message: &[u8]) -> Vec<u8> {
        let mut k = [0u8; 64];
        if key.len() > 64 {
            k[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            k[..key.len()].copy_from_slice(key);
        }
        let pad = |b: u8| k.iter().map(|x| x ^ b).collect::<Vec<u8>>();
        let inner = Sha256::new()
            .chain_update(pad(0x36))
            .chain_update(message)
            .finalize();
        Sha256::new()
            .chain_update(pad(0x5c))
            .chain_update(inner)
            .finalize()
            .to_vec()
    }
}
