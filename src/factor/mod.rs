//! Second factors: TOTP and recovery codes.

pub mod recovery;
pub mod totp;
