//! A software authenticator, with the browser around it, for the passkey tests.
//!
//! It takes the options JSON the server sends (`{"publicKey":{…}}`, as
//! `factor::passkey` returns them) and answers with what a browser posts back: the JSON
//! of `PublicKeyCredential.toJSON()` (binary fields in base64url).
//!
//! Two kinds of credential, from two independent implementations:
//! - [`SoftAuthenticator::swk`]: a synced passkey (backup-eligible and backed up, so
//!   `amr` `swk`), from 1Password's `passkey` crates (a CTAP2 authenticator and the
//!   WebAuthn client in front of it). It checks the origin against the RP ID like a
//!   browser, honours `excludeCredentials`, and keeps a zero signature counter unless made
//!   with [`SoftAuthenticator::swk_with_counter`].
//! - [`SoftAuthenticator::hwk`]: a device-bound key (not backup-eligible, `amr` `hwk`),
//!   webauthn-rs's `SoftPasskey`, driven as a raw client (no origin check). Its signature
//!   counter counts every assertion.
//!
//! A [`Ceremony`] makes the browser misbehave: another origin, another RP ID, no user
//! verification. [`SoftAuthenticator::fork`] copies a synced authenticator with its
//! credentials and counters, to present a counter that went backwards.
#![allow(dead_code)]

use std::collections::HashMap;

use passkey_authenticator::{
    Authenticator as Ctap2Authenticator, MemoryStore, UiHint, UserCheck, UserValidationMethod,
};
use passkey_client::{Client, DefaultClientData};
use passkey_crypto::rust_crypto::RustCryptoBackend;
use passkey_types::ctap2::{Aaguid, Ctap2Error};
use passkey_types::webauthn::{CredentialCreationOptions, CredentialRequestOptions};
use passkey_types::Passkey;
use serde_json::Value;
use webauthn_authenticator_rs::prelude::{
    CreationChallengeResponse, RequestChallengeResponse, Url,
};
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_authenticator_rs::AuthenticatorBackend;

/// How the browser runs one ceremony. The default is an honest browser at the
/// authenticator's origin.
#[derive(Clone, Debug, Default)]
pub struct Ceremony {
    /// The page's origin, instead of the authenticator's (a phishing page, another port).
    pub origin: Option<String>,
    /// The RP ID the authenticator scopes the credential to, instead of the options'
    /// `rp.id` / `rpId`.
    pub rp_id: Option<String>,
    /// Asks for no user verification (`userVerification: "discouraged"`), so the
    /// authenticator data's UV flag stays clear.
    pub skip_user_verification: bool,
}

impl Ceremony {
    /// A ceremony run from the page at `origin`.
    pub fn at_origin(origin: &str) -> Self {
        Self {
            origin: Some(origin.to_owned()),
            ..Self::default()
        }
    }

    /// A ceremony for the RP ID `rp_id`.
    pub fn with_rp_id(rp_id: &str) -> Self {
        Self {
            rp_id: Some(rp_id.to_owned()),
            ..Self::default()
        }
    }

    /// A ceremony without user verification.
    pub fn without_user_verification() -> Self {
        Self {
            skip_user_verification: true,
            ..Self::default()
        }
    }
}

/// A software authenticator and the browser in front of it, at one origin.
pub struct SoftAuthenticator {
    origin: Url,
    device: Device,
}

enum Device {
    /// webauthn-rs's SoftPasskey: device-bound, counting.
    Hwk(SoftPasskey),
    /// 1Password's authenticator: synced; its credentials (with their counters) live in
    /// the store.
    Swk { store: MemoryStore, counter: bool },
}

/// The authenticator's user: present always, verified whenever asked; told that the
/// authenticator already holds an excluded credential, the operation ends (CTAP 2.1
/// §6.1.2 step 3).
struct User;

#[async_trait::async_trait]
impl UserValidationMethod for User {
    type PasskeyItem = Passkey;

    async fn check_user<'a>(
        &self,
        hint: UiHint<'a, Passkey>,
        presence: bool,
        verification: bool,
    ) -> Result<UserCheck, Ctap2Error> {
        if let UiHint::InformExcludedCredentialFound(_) = hint {
            return Err(Ctap2Error::CredentialExcluded);
        }
        Ok(UserCheck {
            presence,
            verification,
        })
    }

    fn is_presence_enabled(&self) -> bool {
        true
    }

    fn is_verification_enabled(&self) -> Option<bool> {
        Some(true)
    }
}

type SwkAuthenticator = Ctap2Authenticator<MemoryStore, User, RustCryptoBackend>;

impl SoftAuthenticator {
    /// A device-bound authenticator (`hwk`) used from the page at `origin`.
    pub fn hwk(origin: &str) -> Self {
        Self {
            origin: parse(origin),
            // `true`: sets the UV flag when asked to verify the user.
            device: Device::Hwk(SoftPasskey::new(true)),
        }
    }

    /// A synced authenticator (`swk`) used from the page at `origin`; its credentials keep
    /// a zero signature counter, as synced passkeys do.
    pub fn swk(origin: &str) -> Self {
        Self {
            origin: parse(origin),
            device: Device::Swk {
                store: HashMap::new(),
                counter: false,
            },
        }
    }

    /// A synced authenticator whose new credentials count their assertions.
    pub fn swk_with_counter(origin: &str) -> Self {
        Self {
            origin: parse(origin),
            device: Device::Swk {
                store: HashMap::new(),
                counter: true,
            },
        }
    }

    /// A copy of this synced authenticator, same credentials and counters: a clone that
    /// will present a counter the server has already seen.
    pub fn fork(&self) -> Self {
        match &self.device {
            Device::Swk { store, counter } => Self {
                origin: self.origin.clone(),
                device: Device::Swk {
                    store: store.clone(),
                    counter: *counter,
                },
            },
            Device::Hwk(_) => panic!("SoftPasskey cannot be copied: fork a synced authenticator"),
        }
    }

    /// `navigator.credentials.create(options)` by an honest browser.
    pub async fn register(&mut self, options: &Value) -> Result<Value, String> {
        self.register_with(options, &Ceremony::default()).await
    }

    /// `navigator.credentials.create(options)` run as `how` says.
    pub async fn register_with(
        &mut self,
        options: &Value,
        how: &Ceremony,
    ) -> Result<Value, String> {
        let mut options = options.clone();
        if let Some(rp_id) = &how.rp_id {
            options["publicKey"]["rp"]["id"] = Value::from(rp_id.as_str());
        }
        if how.skip_user_verification {
            options["publicKey"]["authenticatorSelection"]["userVerification"] =
                Value::from("discouraged");
        }
        let origin = how
            .origin
            .as_deref()
            .map_or_else(|| self.origin.clone(), parse);
        match &mut self.device {
            Device::Hwk(soft) => {
                let options: CreationChallengeResponse =
                    serde_json::from_value(options).map_err(|e| e.to_string())?;
                let credential = soft
                    .perform_register(origin, options.public_key, 60_000)
                    .map_err(|e| format!("{e:?}"))?;
                serde_json::to_value(credential).map_err(|e| e.to_string())
            }
            Device::Swk { store, counter } => {
                let options: CredentialCreationOptions =
                    serde_json::from_value(options).map_err(|e| e.to_string())?;
                let mut client = Client::new(swk(std::mem::take(store), *counter))
                    .allows_insecure_localhost(true);
                let created = client.register(&origin, options, DefaultClientData).await;
                *store = std::mem::take(client.authenticator_mut().store_mut());
                serde_json::to_value(created.map_err(|e| format!("{e:?}"))?)
                    .map_err(|e| e.to_string())
            }
        }
    }

    /// `navigator.credentials.get(options)` by an honest browser.
    pub async fn authenticate(&mut self, options: &Value) -> Result<Value, String> {
        self.authenticate_with(options, &Ceremony::default()).await
    }

    /// `navigator.credentials.get(options)` run as `how` says.
    pub async fn authenticate_with(
        &mut self,
        options: &Value,
        how: &Ceremony,
    ) -> Result<Value, String> {
        let mut options = options.clone();
        if let Some(rp_id) = &how.rp_id {
            options["publicKey"]["rpId"] = Value::from(rp_id.as_str());
        }
        if how.skip_user_verification {
            options["publicKey"]["userVerification"] = Value::from("discouraged");
        }
        let origin = how
            .origin
            .as_deref()
            .map_or_else(|| self.origin.clone(), parse);
        match &mut self.device {
            Device::Hwk(soft) => {
                let options: RequestChallengeResponse =
                    serde_json::from_value(options).map_err(|e| e.to_string())?;
                let credential = soft
                    .perform_auth(origin, options.public_key, 60_000)
                    .map_err(|e| format!("{e:?}"))?;
                serde_json::to_value(credential).map_err(|e| e.to_string())
            }
            Device::Swk { store, counter } => {
                let options: CredentialRequestOptions =
                    serde_json::from_value(options).map_err(|e| e.to_string())?;
                let mut client = Client::new(swk(std::mem::take(store), *counter))
                    .allows_insecure_localhost(true);
                let asserted = client
                    .authenticate(&origin, options, DefaultClientData)
                    .await;
                *store = std::mem::take(client.authenticator_mut().store_mut());
                serde_json::to_value(asserted.map_err(|e| format!("{e:?}"))?)
                    .map_err(|e| e.to_string())
            }
        }
    }
}

/// 1Password's authenticator holding `store`. (Its client, in front of it, accepts
/// `http://localhost` like browsers do.)
fn swk(store: MemoryStore, counter: bool) -> SwkAuthenticator {
    let mut authenticator =
        Ctap2Authenticator::new(Aaguid::new_empty(), store, User, RustCryptoBackend);
    authenticator.set_make_credentials_with_signature_counter(counter);
    authenticator
}

fn parse(origin: &str) -> Url {
    Url::parse(origin).expect("a test origin is a URL")
}
