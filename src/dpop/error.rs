//! Why a DPoP proof was refused.

/// Why a DPoP proof was refused: one variant per check of RFC 9449 §4.3, so tests and the
/// audit log can tell them apart.
///
/// The `Display` text is short and never contains the proof, the token or the key. The
/// answer on the wire is [`error_code`](Self::error_code): `use_dpop_nonce` when only the
/// server nonce is missing or stale, `invalid_dpop_proof` otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[non_exhaustive]
pub enum DpopError {
    /// The request carries no `DPoP` header.
    #[error("no DPoP proof")]
    Missing,
    /// The request carries more than one `DPoP` header.
    #[error("more than one DPoP proof")]
    Multiple,
    /// The proof is longer than [`DpopConfig::max_proof_len`](super::DpopConfig::max_proof_len).
    #[error("the DPoP proof is too long")]
    TooLong,
    /// Not a compact JWS: not three base64url parts (a comma, a space or any character
    /// outside base64url and `.` counts as malformed), or a part that does not decode.
    #[error("the DPoP proof is not a compact JWS")]
    Malformed,
    /// The JOSE header is not a JSON object of the expected shape (`alg` missing, a
    /// member of the wrong type, a duplicate member).
    #[error("the DPoP proof header is invalid")]
    InvalidHeader,
    /// `typ` is not exactly `dpop+jwt`.
    #[error("the DPoP proof's typ is not dpop+jwt")]
    WrongType,
    /// `alg` is not in the allow-list (symmetric algorithms and `none` never are).
    #[error("the DPoP proof's algorithm is not allowed")]
    AlgorithmNotAllowed,
    /// The header has `crit`: no extension is understood here (RFC 7515 §4.1.11).
    #[error("the DPoP proof has critical header parameters")]
    Critical,
    /// The header has no `jwk`.
    #[error("the DPoP proof has no jwk")]
    MissingJwk,
    /// The `jwk` has a private or symmetric key member (`d`, `p`, `q`, `dp`, `dq`, `qi`,
    /// `oth`, `k`).
    #[error("the DPoP proof's jwk is not a public key")]
    PrivateKey,
    /// The `jwk`'s `kty`/`crv` does not fit `alg` (ES256 needs EC P-256, ES384 EC
    /// P-384, EdDSA OKP Ed25519).
    #[error("the DPoP proof's jwk does not fit its algorithm")]
    KeyMismatch,
    /// The `jwk`'s coordinates are missing or not base64url of the curve's size.
    #[error("the DPoP proof's jwk is invalid")]
    InvalidJwk,
    /// The signature does not verify with the `jwk` (or the key is not a point of its
    /// curve).
    #[error("the DPoP proof's signature does not verify")]
    InvalidSignature,
    /// The payload is not a JSON object of the expected shape (a claim of the wrong type,
    /// a duplicate claim, a non-integer `iat`).
    #[error("the DPoP proof's claims are invalid")]
    InvalidClaims,
    /// A required claim is absent: `jti`, `htm`, `htu`, `iat`, or `ath` when the request
    /// carries an access token.
    #[error("the DPoP proof lacks the {0} claim")]
    MissingClaim(&'static str),
    /// `jti` is empty or longer than [`MAX_JTI_LEN`](super::MAX_JTI_LEN) bytes.
    #[error("the DPoP proof's jti is empty or too long")]
    InvalidJti,
    /// `htm` is not the request's method.
    #[error("the DPoP proof's htm does not match the request method")]
    WrongMethod,
    /// `htu` is not the request's URL (after RFC 9449 §4.3 normalization), or not a URL.
    #[error("the DPoP proof's htu does not match the request URL")]
    WrongUrl,
    /// `iat` is older than the window allows.
    #[error("the DPoP proof is too old")]
    TooOld,
    /// `iat` is further in the future than the leeway allows.
    #[error("the DPoP proof is issued in the future")]
    IssuedInFuture,
    /// `ath` is not the hash of the access token the request carries.
    #[error("the DPoP proof's ath does not match the access token")]
    WrongAth,
    /// The proof is signed by another key than the one the token is bound to (its
    /// thumbprint is not the token's `cnf.jkt`), or the token is not bound to a key.
    #[error("the DPoP proof's key is not the token's")]
    WrongKey,
    /// The proof's `jti` was used before (a replayed proof), or its key has
    /// [`MAX_DPOP_PROOFS_PER_KEY`](super::MAX_DPOP_PROOFS_PER_KEY) live proofs already.
    #[error("the DPoP proof was used before")]
    Replayed,
    /// The server expects a nonce and the proof has none.
    #[error("the DPoP proof lacks the server nonce")]
    MissingNonce,
    /// The proof's nonce is not the one the server expects (stale or wrong).
    #[error("the DPoP proof's nonce is not the current one")]
    WrongNonce,
}

impl DpopError {
    /// Whether the client should retry with the nonce from the `DPoP-Nonce` header
    /// (RFC 9449 §8): the answer is `use_dpop_nonce`, not `invalid_dpop_proof`.
    pub fn is_nonce_error(&self) -> bool {
        matches!(self, Self::MissingNonce | Self::WrongNonce)
    }

    /// The `error` code of the answer: `use_dpop_nonce` or `invalid_dpop_proof`.
    pub fn error_code(&self) -> &'static str {
        if self.is_nonce_error() {
            "use_dpop_nonce"
        } else {
            "invalid_dpop_proof"
        }
    }
}

/// A URL that cannot be an `htu`: not an absolute `http`/`https` URL with a host, or with
/// characters a URI cannot contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("not an absolute http(s) URL: {0}")]
pub struct HtuError(pub(crate) &'static str);
