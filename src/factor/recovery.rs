//! Recovery codes.
