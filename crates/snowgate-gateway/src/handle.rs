//! Opaque handles: what a tool holds instead of Snowflake's session and master tokens.
//!
//! A tool never sees an upstream token. At login and at renewal the gateway hands it handles it
//! made itself: 32 random bytes from the operating system's CSPRNG, base64url-encoded, behind a
//! prefix that says which kind of handle it is (`sgs-` for a session handle, `sgm-` for a master
//! handle). The prefix carries no secret; it only lets the gateway answer an unknown handle with
//! the error code the driver expects for that kind (390112 or 390114).
//!
//! Handles are secrets. `Debug` redacts them, and logs name a handle only by [`Handle::log_id`],
//! the first 6 hex digits of its SHA-256, which cannot be turned back into the handle.

use std::fmt;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::rngs::OsRng;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Random bytes in every handle: 256 bits, well past the 128 a guess would need.
const HANDLE_BYTES: usize = 32;

const SESSION_PREFIX: &str = "sgs-";
const MASTER_PREFIX: &str = "sgm-";

/// Which token a handle stands in for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandleKind {
    /// Stands in for Snowflake's session token (the `token` of a login answer).
    Session,
    /// Stands in for Snowflake's master token (used only to renew and to close).
    Master,
}

/// An opaque handle given to a tool. Equality is by value; `Debug` never shows it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Handle(String);

impl Handle {
    /// A fresh handle of `kind` with 256 random bits.
    pub fn generate(kind: HandleKind) -> Handle {
        let mut bytes = [0u8; HANDLE_BYTES];
        OsRng.fill_bytes(&mut bytes);
        let prefix = match kind {
            HandleKind::Session => SESSION_PREFIX,
            HandleKind::Master => MASTER_PREFIX,
        };
        Handle(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Wraps what a tool sent, to look it up. Nothing is checked here: an unknown value is
    /// simply not found in the table.
    pub fn from_tool(value: &str) -> Handle {
        Handle(value.to_string())
    }

    /// The kind the handle's prefix claims, if it has one of Snowgate's prefixes.
    pub fn claimed_kind(&self) -> Option<HandleKind> {
        if self.0.starts_with(SESSION_PREFIX) {
            Some(HandleKind::Session)
        } else if self.0.starts_with(MASTER_PREFIX) {
            Some(HandleKind::Master)
        } else {
            None
        }
    }

    /// The handle's text, to put in an answer to the tool. Never log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A short, non-reversible name for logs: the first 6 hex digits of the SHA-256.
    pub fn log_id(&self) -> String {
        log_id(&self.0)
    }
}

impl fmt::Debug for Handle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Handle({})", self.log_id())
    }
}

/// The first 6 hex digits of the SHA-256 of `secret`: enough to tell two apart in a log, and
/// nothing that leads back to the secret.
pub fn log_id(secret: &str) -> String {
    let digest = Sha256::digest(secret.as_bytes());
    digest[..3].iter().map(|b| format!("{b:02x}")).collect()
}

/// Caps a validity field (seconds) at the grant's remaining time; adds it if absent.
pub(crate) fn cap_validity(
    data: &mut serde_json::Map<String, serde_json::Value>,
    key: &str,
    grant_remaining: Duration,
) {
    let left = grant_remaining.as_secs().max(1);
    let upstream = data.get(key).and_then(serde_json::Value::as_u64);
    let capped = upstream.map_or(left, |v| v.min(left));
    data.insert(key.into(), serde_json::Value::from(capped));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_long_random_and_kind_prefixed() {
        let a = Handle::generate(HandleKind::Session);
        let b = Handle::generate(HandleKind::Session);
        assert_ne!(a, b);
        assert!(a.expose().starts_with("sgs-"));
        // 32 bytes in base64url without padding are 43 characters.
        assert_eq!(a.expose().len(), 4 + 43);
        assert_eq!(a.claimed_kind(), Some(HandleKind::Session));
        let m = Handle::generate(HandleKind::Master);
        assert_eq!(m.claimed_kind(), Some(HandleKind::Master));
        assert_eq!(Handle::from_tool("ver:1-hint:xyz").claimed_kind(), None);
    }

    #[test]
    fn debug_and_log_id_never_show_the_handle() {
        let h = Handle::generate(HandleKind::Master);
        let shown = format!("{h:?}");
        assert!(!shown.contains(&h.expose()[4..]));
        assert_eq!(h.log_id().len(), 6);
        assert!(shown.contains(&h.log_id()));
    }
}
