//! What the identity module tells the rest of the broker: its status, its events, and who is
//! signed in. Everything here is safe to show, log and serialize: it never holds a token.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::vault::VaultKind;

/// Where the user stands with the IdP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ts_rs::TS)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum IdentityStatus {
    /// Nobody is signed in.
    SignedOut,
    /// Nobody is signed in and a browser or device sign-in is under way.
    SigningIn,
    /// Signed in, and the IdP answered the last time it was asked.
    SignedIn { subject: String },
    /// Signed in, but the IdP could not be reached; the broker retries with backoff and keeps
    /// using the tokens it has until they expire.
    OfflineRetrying {
        subject: String,
        since: DateTime<Utc>,
        last_error: String,
        next_retry_at: DateTime<Utc>,
    },
}

impl IdentityStatus {
    /// A one-line summary for the tray and `snowgate status`.
    pub fn summary(&self) -> String {
        match self {
            IdentityStatus::SignedOut => "Signed out".into(),
            IdentityStatus::SigningIn => "Signing in…".into(),
            IdentityStatus::SignedIn { subject } => format!("Signed in as {subject}"),
            IdentityStatus::OfflineRetrying { subject, .. } => {
                format!("Signed in as {subject}; the IdP is offline, retrying")
            }
        }
    }
}

/// Why the user was signed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SignOutReason {
    /// The user asked to sign out.
    Logout,
    /// The IdP refused the refresh token (`invalid_grant`): revoked, expired, or reused.
    Revoked,
}

impl SignOutReason {
    /// The sentence to show the user.
    pub fn message(&self) -> &'static str {
        match self {
            SignOutReason::Logout => "you signed out",
            SignOutReason::Revoked => "your sign-in was revoked or reused; sign in again",
        }
    }
}

impl fmt::Display for SignOutReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// Which access token was refreshed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TokenKind {
    /// The IdP access token (userinfo, team server).
    Idp,
    /// The Snowflake access token for one role.
    Snowflake { role: String },
    /// The access token for the team server's API (team mode).
    TeamServer,
}

/// Something that happened to the sign-in. Sent to every [`subscribe`](super::Identity::subscribe)r.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum IdentityEvent {
    /// A sign-in completed.
    SignedIn { subject: String },
    /// The user is signed out; `message` is the sentence to show.
    SignedOut {
        reason: SignOutReason,
        message: String,
    },
    /// The IdP stopped answering; the broker retries in the background.
    Offline { error: String },
    /// The IdP answers again.
    Online,
    /// An access token was refreshed (and, if the IdP rotated it, the refresh token too).
    TokensRefreshed {
        token: TokenKind,
        expires_at: DateTime<Utc>,
    },
    /// The rotated refresh token could not be saved to the vault; it is kept in memory, so the
    /// session works until the broker stops.
    VaultWriteFailed { error: String },
}

/// A cached Snowflake token's role and expiry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ts_rs::TS)]
pub struct RoleTokenInfo {
    pub role: String,
    pub expires_at: DateTime<Utc>,
}

/// Who is signed in and what the broker holds for them, for `snowgate whoami`. No token values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ts_rs::TS)]
pub struct WhoAmI {
    pub subject: String,
    pub email: Option<String>,
    pub name: Option<String>,
    pub groups: Vec<String>,
    pub issuer: String,
    pub last_sign_in: DateTime<Utc>,
    /// When the cached IdP access token expires, if one is cached.
    pub idp_access_token_expires_at: Option<DateTime<Utc>>,
    /// The cached Snowflake tokens, by role.
    pub snowflake_tokens: Vec<RoleTokenInfo>,
    /// Whether a refresh token is held (so tokens can be renewed without a new sign-in).
    pub refresh_token_present: bool,
    /// Where the refresh token is kept.
    pub vault: VaultKind,
}
