//! The wire form of a signed audit checkpoint, shared by the team server that signs it and the
//! desktops that keep and check it: a compact JWS whose header `typ` is [`HEADER_TYP`] and
//! whose claims are [`CheckpointClaims`] with `typ` = [`CLAIM_TYP`] (so no other token signed
//! by the same key passes as one). Signing and checking the signature stay with each side.

use serde::{Deserialize, Serialize};

/// The JWS header `typ` of a checkpoint.
pub const HEADER_TYP: &str = "snowgate-checkpoint+jwt";
/// The `typ` claim of a checkpoint.
pub const CLAIM_TYP: &str = "snowgate-audit-checkpoint";

/// A checkpoint's claims: the audit chain's head at a moment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointClaims {
    /// [`CLAIM_TYP`].
    pub typ: String,
    /// The server that signed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// The head record's sequence number.
    pub seq: u64,
    /// The head record's hash, 64 lowercase hex digits.
    pub hash: String,
    /// When it was made, RFC 3339.
    pub at: String,
}
