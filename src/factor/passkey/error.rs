//! What can go wrong in a passkey ceremony, split into the client's fault (a 4xx) and the
//! server's (a 5xx), and the mapping from webauthn-rs's errors.

use webauthn_rs::prelude::WebauthnError;

/// A passkey ceremony or configuration error.
///
/// [`PasskeyError::is_client_error`] separates what the client sent (answer 4xx, count
/// a failed attempt) from what the server got wrong (answer 5xx, fail closed).
/// [`PasskeyError::code`] is a stable snake_case name for audit records and API bodies.
/// No message contains a challenge, a credential, a key or any other byte of the
/// ceremony.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PasskeyError {
    /// The relying party configuration is unusable: an origin that is not a URL, has no
    /// domain (an IP address), is not `https` (or `http://localhost`), or is not the
    /// RP ID or under it. Server-side, found at startup.
    #[error("invalid passkey configuration: {0}")]
    Config(&'static str),
    /// Registration was started with an empty user name (the caller's bug). Server-side.
    #[error("a passkey registration needs a non-empty user name")]
    EmptyUserName,
    /// Authentication was started for a user with no passkey. Client-side: the user
    /// cannot use this factor.
    #[error("the user has no passkey")]
    NoCredentials,
    /// The response is not a WebAuthn response: not the JSON of a `PublicKeyCredential`,
    /// or its binary parts (client data, authenticator data, CBOR, COSE key) do not parse.
    #[error("malformed WebAuthn response")]
    MalformedResponse,
    /// The response parses but does not answer this ceremony; [`Mismatch`] says which
    /// check refused it.
    #[error("WebAuthn ceremony failed: {0}")]
    CeremonyFailed(Mismatch),
    /// The assertion names a credential that is not among the user's passkeys (another
    /// user's, or one removed since the challenge).
    #[error("unknown passkey credential")]
    UnknownCredential,
    /// The authenticator did not verify the user (no PIN or biometric: the UV flag is
    /// clear), and every passkey ceremony here requires it.
    #[error("the authenticator did not verify the user")]
    UserNotVerified,
    /// The signature counter did not grow past the stored one: the authenticator may have
    /// been cloned (WebAuthn §7.2 step 21).
    #[error("the signature counter did not increase: possibly a cloned authenticator")]
    CounterRegression,
    /// The stored ceremony state (or a stored passkey) does not deserialize: corrupted,
    /// from an incompatible version, or the state of the other ceremony. Server-side.
    #[error("passkey state unreadable")]
    StateUnreadable,
    /// webauthn-rs could not build the ceremony options, or ours could not be serialized.
    /// Server-side.
    #[error("passkey ceremony could not start")]
    Internal,
}

/// Which ceremony check refused a response ([`PasskeyError::CeremonyFailed`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Mismatch {
    /// The client data's origin is not the configured origin (a phishing site, another
    /// port or scheme), or the ceremony ran cross-origin.
    #[error("wrong origin")]
    Origin,
    /// The authenticator data's RP ID hash is not SHA-256 of the configured RP ID.
    #[error("wrong RP ID")]
    RpId,
    /// The client data's challenge is not this ceremony's: a response to another
    /// challenge (another mfa_token, an older ceremony).
    #[error("wrong challenge")]
    Challenge,
    /// The client data's type is not `webauthn.create` / `webauthn.get`.
    #[error("wrong client data type")]
    ClientDataType,
    /// The assertion's signature does not verify with the stored public key.
    #[error("bad signature")]
    Signature,
    /// The user-present flag is clear.
    #[error("user not present")]
    UserNotPresent,
    /// The backup-eligible flag changed from set to clear, or backed-up is set on a
    /// credential that is not backup-eligible.
    #[error("inconsistent backup flags")]
    BackupFlags,
    /// The new credential uses an algorithm that was not offered, or is one of the
    /// excluded (already registered) credentials: webauthn-rs reports both alike.
    #[error("credential refused: algorithm not offered or already registered")]
    CredentialRefused,
    /// Another check of webauthn-rs (attestation, extensions, insecure key).
    #[error("other check")]
    Other,
}

impl PasskeyError {
    /// True when the client is at fault (answer 4xx); false for the server's errors
    /// ([`PasskeyError::Config`], [`PasskeyError::EmptyUserName`],
    /// [`PasskeyError::StateUnreadable`], [`PasskeyError::Internal`]), which fail closed.
    pub fn is_client_error(&self) -> bool {
        !matches!(
            self,
            Self::Config(_) | Self::EmptyUserName | Self::StateUnreadable | Self::Internal
        )
    }

    /// A stable snake_case name: `passkey_config`, `empty_user_name`, `no_passkey`,
    /// `malformed_response`, `ceremony_failed`, `unknown_credential`,
    /// `user_not_verified`, `counter_regression`, `state_unreadable`, `internal`.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Config(_) => "passkey_config",
            Self::EmptyUserName => "empty_user_name",
            Self::NoCredentials => "no_passkey",
            Self::MalformedResponse => "malformed_response",
            Self::CeremonyFailed(_) => "ceremony_failed",
            Self::UnknownCredential => "unknown_credential",
            Self::UserNotVerified => "user_not_verified",
            Self::CounterRegression => "counter_regression",
            Self::StateUnreadable => "state_unreadable",
            Self::Internal => "internal",
        }
    }
}

/// Maps an error of a `finish_*` call of webauthn-rs: everything there judges the
/// client's response, so everything is a client error.
pub(super) fn from_finish(e: WebauthnError) -> PasskeyError {
    use WebauthnError as W;
    let mismatch = match e {
        W::InvalidRPOrigin | W::CredentialCrossOrigin => Mismatch::Origin,
        W::InvalidRPIDHash => Mismatch::RpId,
        W::MismatchedChallenge => Mismatch::Challenge,
        W::InvalidClientDataType => Mismatch::ClientDataType,
        W::AuthenticationFailure | W::SignatureInvalid => Mismatch::Signature,
        W::UserNotPresent => Mismatch::UserNotPresent,
        W::CredentialBackupEligibilityInconsistent | W::CredentialMayNotBeHardwareBound => {
            Mismatch::BackupFlags
        }
        W::CredentialAlteredAlgFromRequest | W::CredentialExcludedFromRequest => {
            Mismatch::CredentialRefused
        }
        W::CredentialNotFound => return PasskeyError::UnknownCredential,
        W::UserNotVerified => return PasskeyError::UserNotVerified,
        W::CredentialPossibleCompromise => return PasskeyError::CounterRegression,
        e if is_parse_error(&e) => return PasskeyError::MalformedResponse,
        _ => Mismatch::Other,
    };
    PasskeyError::CeremonyFailed(mismatch)
}

/// Errors of webauthn-rs that mean "these bytes are not what they claim to be".
fn is_parse_error(e: &WebauthnError) -> bool {
    use WebauthnError as W;
    matches!(
        e,
        W::ParseBase64Failure(_)
            | W::ParseCBORFailure(_)
            | W::ParseJSONFailure(_)
            | W::ParseNOMFailure
            | W::ParseInsufficientBytesAvailable
            | W::MissingAttestationCredentialData
            | W::COSEKeyInvalidCBORValue
            | W::COSEKeyInvalidType
            | W::COSEKeyEDUnsupported
            | W::COSEKeyECDSAXYInvalid
            | W::COSEKeyRSANEInvalid
            | W::COSEKeyECDSAInvalidCurve
            | W::COSEKeyEDDSAXInvalid
            | W::COSEKeyEDDSAInvalidCurve
            | W::COSEKeyInvalidAlgorithm
            | W::EcdsaPointInvalid
            | W::RsaParametersInvalid
    )
}
