//! Configuration errors, reported once when a stack is built, never per request.

/// A configuration that cannot be used safely. Returned by the `build` methods.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required setting was not given.
    #[error("missing setting: {0}")]
    Missing(&'static str),
    /// A key could not be read, or does not fit its algorithm.
    #[error("key {kid:?}: {reason}")]
    Key {
        /// The key id.
        kid: String,
        /// What is wrong with it (never the key material).
        reason: String,
    },
    /// Two keys of one set share a `kid`.
    #[error("duplicate key id {0:?}")]
    DuplicateKid(String),
    /// A key's algorithm is not in the algorithm allow-list.
    #[error("algorithm {0:?} is used by a key but not in the allow-list")]
    AlgorithmNotAllowed(jsonwebtoken::Algorithm),
    /// A route pattern is invalid or conflicts with another, or its policy is invalid.
    #[error("route {path:?}: {reason}")]
    Route {
        /// The pattern, after its method when one method's policy was refused
        /// (`"GET /api/billing"`), or `"<default>"` for the default policy.
        path: String,
        /// Why it was refused.
        reason: String,
    },
    /// A value that must fit a header parameter or a bounded range does not.
    #[error("invalid value for {setting}: {reason}")]
    Invalid {
        /// The setting.
        setting: &'static str,
        /// Why it was refused.
        reason: String,
    },
}

impl ConfigError {
    pub(crate) fn invalid(setting: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            setting,
            reason: reason.into(),
        }
    }
}

/// Whether `s` can stand inside a quoted `WWW-Authenticate` parameter as RFC 6750 §3 allows
/// (`%x20-21 / %x23-5B / %x5D-7E`: printable ASCII without `"` and `\`).
pub(crate) fn is_header_param_safe(s: &str) -> bool {
    s.bytes()
        .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}

/// Whether `s` is a scope token (RFC 6749 §3.3: `%x21 / %x23-5B / %x5D-7E`).
pub(crate) fn is_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| matches!(b, 0x21 | 0x23..=0x5B | 0x5D..=0x7E))
}
