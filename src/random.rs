//! Identifiers from the operating system's CSPRNG.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;

/// Fills `buf` from the OS CSPRNG.
pub(crate) fn fill(buf: &mut [u8]) -> Result<(), RandomError> {
    getrandom::fill(buf).map_err(|_| RandomError)
}

/// A 128-bit random identifier, base64url without padding (22 characters).
pub(crate) fn id() -> Result<String, RandomError> {
    let mut buf = [0u8; 16];
    fill(&mut buf)?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

/// The operating system's random source failed.
#[derive(Clone, Copy, Debug, thiserror::Error)]
#[error("the operating system's random number generator failed")]
pub struct RandomError;
