//! Passkeys (WebAuthn) as a second factor: the registration and authentication
//! ceremonies, through [webauthn-rs](https://docs.rs/webauthn-rs) (feature `passkey`).
//!
//! These are pure functions: no HTTP, no store, no clock. Each ceremony has a `start_*`
//! that returns the options for the browser and an opaque state for the server, and a
//! `finish_*` that takes that state back with the browser's response.
//!
//! - [`PasskeyConfig::new`]: the relying party (RP ID, origin, display name), once at
//!   startup.
//! - [`PasskeyConfig::start_registration`] → `({"publicKey":{…}}, state)`; the browser
//!   passes `publicKey` to `navigator.credentials.create()` →
//!   [`PasskeyConfig::finish_registration`] with the state and
//!   `PublicKeyCredential.toJSON()` → a [`StoredPasskey`] to save for the user.
//! - [`PasskeyConfig::start_authentication`] with the user's passkeys →
//!   `({"publicKey":{…}}, state)`; `navigator.credentials.get()` →
//!   [`PasskeyConfig::finish_authentication`] → [`Authenticated`] (and maybe an updated
//!   passkey to save).
//!
//! Both ceremonies require user verification (a PIN or biometric on the authenticator,
//! `userVerification: "required"`) and refuse a response without it. A passkey's RFC 8176
//! `amr` value is `swk` when its credential is backup-eligible (it can be synced to other
//! devices) and `hwk` when it is bound to one authenticator ([`StoredPasskey::amr`]).
//!
//! # Security: what the caller must do
//! - **Keep the state server-side and consume it once.** A webauthn-rs ceremony state is
//!   not single use by itself: a finished state accepts the same response again. Store
//!   the state bytes under a key bound to the user and to what the ceremony is for (the
//!   pending registration, the mfa_token), with a short TTL (the options carry a
//!   300-second timeout), and take it out of the store atomically (get-and-delete)
//!   before calling `finish_*`, whether the finish then succeeds or not.
//! - **Refuse a credential ID registered to another account.** [`StoredPasskey::credential_id`]
//!   must be unique across all users (webauthn-rs leaves this check to the caller).
//! - **Save [`Authenticated::updated`]** when it is `Some`: it carries the new signature
//!   counter, without which a cloned authenticator would go unnoticed.
//! - Pass the user's passkeys to [`PasskeyConfig::finish_authentication`]: a credential of
//!   another user is refused ([`PasskeyError::UnknownCredential`]).

mod error;
#[cfg(test)]
mod tests;

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use webauthn_rs::prelude::{
    Credential, CredentialID, Passkey, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, Url, Uuid, WebauthnError,
};
use webauthn_rs::{Webauthn, WebauthnBuilder};

pub use self::error::{Mismatch, PasskeyError};

/// RFC 8176 `amr` of a backup-eligible (syncable) passkey: software-secured key.
pub const AMR_SWK: &str = "swk";
/// RFC 8176 `amr` of a device-bound passkey: hardware-secured key.
pub const AMR_HWK: &str = "hwk";

/// Domain separation for [`user_handle`]: the hash of a `sub` here is used for nothing else.
const USER_HANDLE_DOMAIN: &[u8] = b"tower-stepup passkey user handle v1\0";

/// The relying party: webauthn-rs configured for one RP ID and one origin.
#[derive(Clone, Debug)]
pub struct PasskeyConfig {
    webauthn: Webauthn,
    rp_id: String,
    origin: String,
}

/// A passkey of a user, as registered: webauthn-rs's [`Passkey`] (credential ID, public
/// key, signature counter, flags) and whether it is backup-eligible.
///
/// Store it with [`StoredPasskey::to_bytes`] (webauthn-rs's own JSON form of the
/// passkey) and load it with [`StoredPasskey::from_bytes`]. It holds no secret: the
/// private key never leaves the authenticator.
#[derive(Clone, Debug)]
pub struct StoredPasskey {
    passkey: Passkey,
    backup_eligible: bool,
}

/// A successful passkey authentication.
#[derive(Clone, Debug)]
pub struct Authenticated {
    /// The credential that signed: one of the user's [`StoredPasskey::credential_id`].
    pub credential_id: Vec<u8>,
    /// The assertion's backup-eligible flag: `swk` when set, `hwk` otherwise.
    pub backup_eligible: bool,
    /// The authenticator verified the user (always true: a response without user
    /// verification is refused).
    pub user_verified: bool,
    /// The passkey with its new signature counter or backup state, when either changed:
    /// replace the stored one with it. `None` when nothing changed (synced passkeys
    /// usually keep a zero counter).
    pub updated: Option<StoredPasskey>,
}

/// A stable, opaque WebAuthn user handle for the user `sub`: the first 16 bytes of
/// SHA-256 over a domain-separation prefix and `sub`, as a UUID.
///
/// The authenticator stores the handle with the credential and returns it in
/// assertions, so it must not be the user id itself (WebAuthn §14.6.1: no personally
/// identifying information). It is an unkeyed hash: whoever knows a `sub` can compute
/// its handle, so with guessable ids (email addresses) a handle confirms a guess.
pub fn user_handle(sub: &str) -> Uuid {
    let digest = Sha256::new()
        .chain_update(USER_HANDLE_DOMAIN)
        .chain_update(sub.as_bytes())
        .finalize();
    let mut bytes = [0u8; 16];
    for (b, d) in bytes.iter_mut().zip(digest.iter()) {
        *b = *d;
    }
    Uuid::from_bytes(bytes)
}

impl PasskeyConfig {
    /// The relying party `rp_id` (a domain, e.g. `example.com` or `localhost`) served at
    /// `origin` (e.g. `https://login.example.com`, or `http://localhost:3000` in
    /// development), shown to users as `rp_name`.
    ///
    /// # Errors
    /// [`PasskeyError::Config`] when the origin is not a URL, carries a path, query,
    /// fragment or credentials, has an IP address instead of a domain, is neither
    /// `https` nor `http://localhost`, or is not `rp_id` or under it; or when `rp_name`
    /// is empty.
    pub fn new(rp_id: &str, origin: &str, rp_name: &str) -> Result<Self, PasskeyError> {
        if rp_name.is_empty() {
            return Err(PasskeyError::Config("the RP name is empty"));
        }
        let url = checked_origin(origin)?;
        let webauthn = WebauthnBuilder::new(rp_id, &url)
            .map_err(|_| PasskeyError::Config("the origin is not the RP ID or under it"))?
            .rp_name(rp_name)
            .build()
            .map_err(|_| PasskeyError::Config("webauthn-rs refused the configuration"))?;
        Ok(Self {
            webauthn,
            rp_id: rp_id.to_owned(),
            origin: url.origin().ascii_serialization(),
        })
    }

    /// The RP ID, as configured.
    pub fn rp_id(&self) -> &str {
        &self.rp_id
    }

    /// The origin, serialized as browsers put it in the client data
    /// (`https://login.example.com`, no trailing slash).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// Starts registering a new passkey for the user `sub` (its handle is
    /// [`user_handle`]), shown on the authenticator as `user_name`. The user's `exclude`d
    /// passkeys are listed so that an authenticator holding one of them refuses to make a
    /// second.
    ///
    /// Returns the creation options to send to the browser, `{"publicKey":{…}}`, and the
    /// ceremony state to keep server-side (see the [module docs](self)).
    ///
    /// # Errors
    /// [`PasskeyError::EmptyUserName`], or [`PasskeyError::Internal`].
    pub fn start_registration(
        &self,
        sub: &str,
        user_name: &str,
        exclude: &[StoredPasskey],
    ) -> Result<(Value, Vec<u8>), PasskeyError> {
        if user_name.is_empty() {
            return Err(PasskeyError::EmptyUserName);
        }
        let exclude: Vec<CredentialID> = exclude
            .iter()
            .map(|p| p.passkey.cred_id().clone())
            .collect();
        let (options, state) = self
            .webauthn
            .start_passkey_registration(
                user_handle(sub),
                user_name,
                user_name,
                (!exclude.is_empty()).then_some(exclude),
            )
            .map_err(|e| match e {
                WebauthnError::InvalidUsername => PasskeyError::EmptyUserName,
                _ => PasskeyError::Internal,
            })?;
        Ok((to_value(&options)?, to_state(&state)?))
    }

    /// Finishes a registration: checks the browser's `response` (the JSON of
    /// `PublicKeyCredential.toJSON()`) against the `state` of
    /// [`PasskeyConfig::start_registration`]: challenge, origin, RP ID, user presence
    /// and verification, algorithm, exclusion.
    ///
    /// # Errors
    /// [`PasskeyError::StateUnreadable`] (server-side); for the response:
    /// [`PasskeyError::MalformedResponse`], [`PasskeyError::CeremonyFailed`],
    /// [`PasskeyError::UserNotVerified`].
    pub fn finish_registration(
        &self,
        state: &[u8],
        response: &Value,
    ) -> Result<StoredPasskey, PasskeyError> {
        let state: PasskeyRegistration = from_state(state)?;
        let response = RegisterPublicKeyCredential::deserialize(response)
            .map_err(|_| PasskeyError::MalformedResponse)?;
        let passkey = self
            .webauthn
            .finish_passkey_registration(&response, &state)
            .map_err(error::from_finish)?;
        // webauthn-rs enforces the required user verification; check it once more.
        if !Credential::from(passkey.clone()).user_verified {
            return Err(PasskeyError::UserNotVerified);
        }
        Ok(StoredPasskey::new(passkey))
    }

    /// Starts authenticating with one of the user's passkeys `creds` (all listed in
    /// `allowCredentials`).
    ///
    /// Returns the request options to send to the browser, `{"publicKey":{…}}`, and the
    /// ceremony state to keep server-side (see the [module docs](self)).
    ///
    /// # Errors
    /// [`PasskeyError::NoCredentials`] when `creds` is empty, or
    /// [`PasskeyError::Internal`].
    pub fn start_authentication(
        &self,
        creds: &[StoredPasskey],
    ) -> Result<(Value, Vec<u8>), PasskeyError> {
        if creds.is_empty() {
            return Err(PasskeyError::NoCredentials);
        }
        let passkeys: Vec<Passkey> = creds.iter().map(|c| c.passkey.clone()).collect();
        let (options, state) = self
            .webauthn
            .start_passkey_authentication(&passkeys)
            .map_err(|_| PasskeyError::Internal)?;
        Ok((to_value(&options)?, to_state(&state)?))
    }

    /// Finishes an authentication: checks the browser's `response` (the JSON of
    /// `PublicKeyCredential.toJSON()`) against the `state` of
    /// [`PasskeyConfig::start_authentication`] and the user's passkeys `creds`:
    /// challenge, origin, RP ID, user presence and verification, a credential of this
    /// user, its signature, the backup flags, and a signature counter that grew (when
    /// either counter is non-zero).
    ///
    /// # Errors
    /// [`PasskeyError::StateUnreadable`] (server-side); for the response:
    /// [`PasskeyError::MalformedResponse`], [`PasskeyError::CeremonyFailed`],
    /// [`PasskeyError::UnknownCredential`], [`PasskeyError::UserNotVerified`],
    /// [`PasskeyError::CounterRegression`].
    pub fn finish_authentication(
        &self,
        state: &[u8],
        response: &Value,
        creds: &[StoredPasskey],
    ) -> Result<Authenticated, PasskeyError> {
        let state: PasskeyAuthentication = from_state(state)?;
        let response = PublicKeyCredential::deserialize(response)
            .map_err(|_| PasskeyError::MalformedResponse)?;
        let result = self
            .webauthn
            .finish_passkey_authentication(&response, &state)
            .map_err(error::from_finish)?;
        // webauthn-rs enforces the required user verification; check it once more.
        if !result.user_verified() {
            return Err(PasskeyError::UserNotVerified);
        }
        let stored = creds
            .iter()
            .find(|c| c.credential_id() == result.cred_id().as_slice())
            .ok_or(PasskeyError::UnknownCredential)?;
        let mut passkey = stored.passkey.clone();
        let updated = match passkey.update_credential(&result) {
            Some(true) => Some(StoredPasskey::new(passkey)),
            _ => None,
        };
        Ok(Authenticated {
            credential_id: result.cred_id().clone(),
            backup_eligible: result.backup_eligible(),
            user_verified: true,
            updated,
        })
    }
}

impl StoredPasskey {
    fn new(passkey: Passkey) -> Self {
        let backup_eligible = Credential::from(passkey.clone()).backup_eligible;
        Self {
            passkey,
            backup_eligible,
        }
    }

    /// The credential ID: unique across all users (refuse a registration that repeats
    /// one), and how an assertion names its passkey.
    pub fn credential_id(&self) -> &[u8] {
        self.passkey.cred_id()
    }

    /// Whether the credential is backup-eligible (a synced passkey), from the
    /// authenticator data of its registration (or a later assertion that upgraded it).
    pub fn backup_eligible(&self) -> bool {
        self.backup_eligible
    }

    /// RFC 8176 `amr` value: [`AMR_SWK`] (`swk`) when backup-eligible, [`AMR_HWK`]
    /// (`hwk`) otherwise.
    pub fn amr(&self) -> &'static str {
        amr(self.backup_eligible)
    }

    /// webauthn-rs's passkey.
    pub fn passkey(&self) -> &Passkey {
        &self.passkey
    }

    /// The stored form: webauthn-rs's JSON serialization of the [`Passkey`].
    ///
    /// # Errors
    /// [`PasskeyError::Internal`] if serde_json fails (it does not for this type).
    pub fn to_bytes(&self) -> Result<Vec<u8>, PasskeyError> {
        serde_json::to_vec(&self.passkey).map_err(|_| PasskeyError::Internal)
    }

    /// Loads what [`StoredPasskey::to_bytes`] wrote.
    ///
    /// # Errors
    /// [`PasskeyError::StateUnreadable`] when the bytes are not a stored passkey.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PasskeyError> {
        serde_json::from_slice(bytes)
            .map(Self::new)
            .map_err(|_| PasskeyError::StateUnreadable)
    }
}

impl Authenticated {
    /// RFC 8176 `amr` value of this authentication: [`AMR_SWK`] (`swk`) when the
    /// credential is backup-eligible, [`AMR_HWK`] (`hwk`) otherwise. Add `mfa` when it
    /// completes a second factor.
    pub fn amr(&self) -> &'static str {
        amr(self.backup_eligible)
    }
}

fn amr(backup_eligible: bool) -> &'static str {
    if backup_eligible {
        AMR_SWK
    } else {
        AMR_HWK
    }
}

/// Parses and checks a configured origin: a bare `https://host[:port]` (or
/// `http://localhost[:port]`) whose host is a domain name.
fn checked_origin(origin: &str) -> Result<Url, PasskeyError> {
    let url = Url::parse(origin).map_err(|_| PasskeyError::Config("the origin is not a URL"))?;
    if !url.username().is_empty()
        || url.password().is_some()
        || url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
    {
        return Err(PasskeyError::Config(
            "the origin has a path, query, fragment or credentials",
        ));
    }
    let Some(domain) = url.domain() else {
        return Err(PasskeyError::Config(
            "the origin's host is not a domain name (an IP address?)",
        ));
    };
    let localhost = domain == "localhost" || domain.ends_with(".localhost");
    match url.scheme() {
        "https" => Ok(url),
        "http" if localhost => Ok(url),
        _ => Err(PasskeyError::Config(
            "the origin must be https (or http://localhost)",
        )),
    }
}

fn to_value<T: serde::Serialize>(options: &T) -> Result<Value, PasskeyError> {
    serde_json::to_value(options).map_err(|_| PasskeyError::Internal)
}

fn to_state<T: serde::Serialize>(state: &T) -> Result<Vec<u8>, PasskeyError> {
    serde_json::to_vec(state).map_err(|_| PasskeyError::Internal)
}

fn from_state<T: for<'de> Deserialize<'de>>(state: &[u8]) -> Result<T, PasskeyError> {
    serde_json::from_slice(state).map_err(|_| PasskeyError::StateUnreadable)
}
