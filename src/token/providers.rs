//! Ready-made [`TrustedIssuer`] profiles of well-known identity providers, from their
//! published documentation (sources in `tests/fixtures/idp/README.md`, with a real key
//! set of each as a test fixture).
//!
//! Each gives the issuer, the token profile and the JWKS address; you add the keys
//! (`jwks::JwksSource` of [`TrustedIssuer::jwks_uri`], feature `jwks`, or fixed ones) and
//! may change anything (e.g. [`algorithms`](TrustedIssuer::algorithms) if your tenant
//! signs with another algorithm). Step-up for their tokens is delegated to the provider.

use jsonwebtoken::Algorithm;

use super::profile::{ScopeClaim, TrustedIssuer};

/// `https://host/` from a bare host or a URL, with exactly one trailing slash.
fn https_base(domain: &str) -> String {
    let host = domain.trim_start_matches("https://").trim_end_matches('/');
    format!("https://{host}/")
}

impl TrustedIssuer {
    /// Auth0: access tokens for the API whose identifier is `api_identifier`, from the
    /// tenant at `domain` (`tenant.eu.auth0.com` or a custom domain).
    ///
    /// `iss` is `https://{domain}/` (with the slash); `typ` is `at+jwt` under Auth0's
    /// RFC 9068 token profile and `JWT` under its default one (both accepted); `aud` (a
    /// string, or an array with the userinfo URL) must name the API; scopes in `scope`;
    /// RS256. An ID token's `aud` is the client id and it carries a `nonce`: refused.
    /// Auth0 puts `acr`/`amr` in access tokens only when an Action adds them.
    pub fn auth0(domain: &str, api_identifier: impl Into<String>) -> Self {
        let issuer = https_base(domain);
        let jwks = format!("{issuer}.well-known/jwks.json");
        Self::new(issuer)
            .audience(api_identifier)
            .algorithms([Algorithm::RS256])
            .allow_typ_jwt()
            .refuse_claim("nonce")
            .with_jwks_uri(jwks)
    }

    /// Keycloak: access tokens of the realm at `realm_url`
    /// (`https://kc.example/realms/myrealm`) for `audience`.
    ///
    /// `typ` is `JWT` (`at+jwt` only when the client opts in; both accepted); the
    /// payload's `typ` is `Bearer` (an ID token's is `ID`: refused); `aud` needs an
    /// *Audience* mapper on the client scope to name your API; scopes in `scope`; RS256
    /// (the realm's default key). The realm's `use: enc` key is skipped.
    pub fn keycloak(realm_url: &str, audience: impl Into<String>) -> Self {
        let issuer = realm_url.trim_end_matches('/').to_owned();
        let jwks = format!("{issuer}/protocol/openid-connect/certs");
        Self::new(issuer)
            .audience(audience)
            .algorithms([Algorithm::RS256])
            .allow_typ_jwt()
            .require_claim("typ", "Bearer")
            .with_jwks_uri(jwks)
    }

    /// Okta: access tokens of the custom authorization server `authorization_server`
    /// (`default`, or its id) of the org at `domain`, for `audience` (e.g.
    /// `api://default`).
    ///
    /// `iss` is `https://{domain}/oauth2/{authorization_server}` (never the org
    /// authorization server, whose access tokens are not for your APIs); no `typ`;
    /// scopes in `scp` (an array); RS256. An ID token's `aud` is the client id and it
    /// carries a `nonce`: refused.
    pub fn okta(domain: &str, authorization_server: &str, audience: impl Into<String>) -> Self {
        let issuer = format!("{}oauth2/{authorization_server}", https_base(domain));
        let jwks = format!("{issuer}/v1/keys");
        Self::new(issuer)
            .audience(audience)
            .algorithms([Algorithm::RS256])
            .allow_missing_typ()
            .scopes_from(ScopeClaim::Scp)
            .refuse_claim("nonce")
            .with_jwks_uri(jwks)
    }

    /// Microsoft Entra ID: v2.0 access tokens of the tenant `tenant_id` for the API
    /// whose application (client) id or App ID URI is `audience`.
    ///
    /// `iss` is `https://login.microsoftonline.com/{tenant_id}/v2.0`; `typ` is `JWT`;
    /// `ver` must be `2.0` (v1.0 tokens carry another `iss`); scopes in `scp` (a
    /// string); RS256 (Entra's keys carry no `alg`: they load as RS256). The tenant's own
    /// key set is used, so another tenant's keys never verify. An ID token's `aud` is the
    /// client's id: do not give the API and its clients one app registration.
    pub fn entra(tenant_id: &str, audience: impl Into<String>) -> Self {
        let base = format!("https://login.microsoftonline.com/{tenant_id}");
        let jwks = format!("{base}/discovery/v2.0/keys");
        Self::new(format!("{base}/v2.0"))
            .audience(audience)
            .algorithms([Algorithm::RS256])
            .allow_typ_jwt()
            .require_claim("ver", "2.0")
            .scopes_from(ScopeClaim::Scp)
            .refuse_claim("nonce")
            .with_jwks_uri(jwks)
    }

    /// Amazon Cognito: access tokens of the user pool `user_pool_id` in `region`, for
    /// the app clients `client_ids`.
    ///
    /// `iss` is `https://cognito-idp.{region}.amazonaws.com/{user_pool_id}`; no `typ`;
    /// no `aud`: the app client is in `client_id`, checked against `client_ids`;
    /// `token_use` must be `access` (an ID token's is `id`, and its `aud` is the client
    /// id: without this check a relaxed `typ` would let it through); scopes in `scope`;
    /// RS256.
    pub fn cognito<I, S>(region: &str, user_pool_id: &str, client_ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let issuer = format!("https://cognito-idp.{region}.amazonaws.com/{user_pool_id}");
        let jwks = format!("{issuer}/.well-known/jwks.json");
        let profile = client_ids
            .into_iter()
            .fold(Self::new(issuer), |p, id| p.audience(id));
        profile
            .audience_claim("client_id")
            .algorithms([Algorithm::RS256])
            .allow_missing_typ()
            .require_claim("token_use", "access")
            .with_jwks_uri(jwks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers_and_key_addresses_follow_each_providers_documentation() {
        let cases = [
            (
                TrustedIssuer::auth0("tenant.eu.auth0.com", "https://api"),
                "https://tenant.eu.auth0.com/",
                "https://tenant.eu.auth0.com/.well-known/jwks.json",
            ),
            (
                TrustedIssuer::auth0("https://login.example.com/", "https://api"),
                "https://login.example.com/",
                "https://login.example.com/.well-known/jwks.json",
            ),
            (
                TrustedIssuer::keycloak("https://kc.example/realms/demo/", "api"),
                "https://kc.example/realms/demo",
                "https://kc.example/realms/demo/protocol/openid-connect/certs",
            ),
            (
                TrustedIssuer::okta("dev-1.okta.com", "default", "api://default"),
                "https://dev-1.okta.com/oauth2/default",
                "https://dev-1.okta.com/oauth2/default/v1/keys",
            ),
            (
                TrustedIssuer::entra("tid", "api://x"),
                "https://login.microsoftonline.com/tid/v2.0",
                "https://login.microsoftonline.com/tid/discovery/v2.0/keys",
            ),
            (
                TrustedIssuer::cognito("eu-west-1", "eu-west-1_AbC", ["client"]),
                "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC",
                "https://cognito-idp.eu-west-1.amazonaws.com/eu-west-1_AbC/.well-known/jwks.json",
            ),
        ];
        for (profile, iss, jwks) in cases {
            assert_eq!(profile.issuer(), iss);
            assert_eq!(profile.jwks_uri(), Some(jwks));
            assert_eq!(
                profile.discovery_url(),
                format!(
                    "{}/.well-known/openid-configuration",
                    iss.trim_end_matches('/')
                )
            );
        }
    }
}
