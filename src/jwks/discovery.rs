//! OpenID Connect discovery: the issuer's `/.well-known/openid-configuration`, whose
//! `issuer` must be the expected one exactly, names the JWKS URL (`jwks_uri`).

use http::Uri;
use serde::Deserialize;

use super::error::JwksError;
use super::get::get;
use super::state::State;
use super::url;

/// The path of the discovery document under the issuer (OpenID Connect Discovery 1.0 §4).
const WELL_KNOWN: &str = "/.well-known/openid-configuration";

/// The discovery document URL of `issuer`: the issuer without its trailing slash, then
/// the well-known path.
pub(crate) fn document_url(issuer: &str) -> String {
    format!("{}{WELL_KNOWN}", issuer.trim_end_matches('/'))
}

/// The two members of the document this crate reads.
#[derive(Deserialize)]
struct Document {
    issuer: String,
    jwks_uri: Option<String>,
}

/// Reads the discovery document at `document` and returns its `jwks_uri`, if the
/// document names `issuer` exactly and the URL passes the same rules as a configured one.
pub(crate) async fn jwks_uri(
    state: &State,
    issuer: &str,
    document: &Uri,
) -> Result<Uri, JwksError> {
    let response = get(state, document).await?;
    let document: Document =
        serde_json::from_slice(response.body()).map_err(|_| JwksError::Json)?;
    if document.issuer != issuer {
        return Err(JwksError::IssuerMismatch);
    }
    let jwks_uri = document.jwks_uri.ok_or(JwksError::BadJwksUri)?;
    url::checked(&jwks_uri, state.config.allow_http).map_err(|_| JwksError::BadJwksUri)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_sits_under_the_issuer() {
        assert_eq!(
            document_url("https://idp.example/"),
            "https://idp.example/.well-known/openid-configuration"
        );
        assert_eq!(
            document_url("https://idp.example/realms/demo"),
            "https://idp.example/realms/demo/.well-known/openid-configuration"
        );
    }
}
