//! What can go wrong while signing in or keeping tokens fresh, in words a person can act on.
//!
//! No variant carries a token: IdP errors keep only the OAuth `error` and `error_description`,
//! and transport errors only their kind and the endpoint's URL without its query.

use std::path::PathBuf;
use std::time::SystemTime;

use super::vault::VaultError;

/// Why a sign-in, a refresh or a logout failed.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Nobody is signed in.
    #[error("not signed in; run `snowgate login` (or `snowgate login --device` on a machine without a browser)")]
    NotSignedIn,

    /// The discovery document could not be read.
    #[error("reading the IdP's discovery document at {url}: {reason}")]
    Discovery { url: String, reason: String },

    /// The discovery document names another issuer than the config.
    #[error("the IdP configured as {configured} calls itself {reported} in its discovery document; set identity.issuer to exactly {reported}")]
    IssuerMismatch {
        configured: String,
        reported: String,
    },

    /// The IdP could not be reached: no connection, a timeout, or a 5xx answer.
    #[error("the IdP can't be reached for the {what}: {reason}")]
    Unreachable { what: &'static str, reason: String },

    /// The IdP has been unreachable for a while; the broker keeps retrying in the background.
    #[error("the IdP has been unreachable since {} and Snowgate is retrying; no unexpired token is at hand (last error: {last_error})", super::session::to_utc(*since).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))]
    Offline {
        since: SystemTime,
        last_error: String,
    },

    /// The IdP answered with an OAuth error.
    #[error("the IdP refused the {what}: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Refused {
        what: &'static str,
        error: String,
        description: Option<String>,
    },

    /// The IdP's answer was not what OAuth or OpenID Connect says it should be.
    #[error("the IdP's answer to the {what} could not be read: {reason}")]
    BadResponse { what: &'static str, reason: String },

    /// The ID token failed verification.
    #[error("the ID token from the IdP was rejected: {0}")]
    IdToken(#[from] IdTokenError),

    /// The browser sign-in's redirect went wrong.
    #[error("the browser sign-in failed: {0}")]
    Callback(#[from] CallbackError),

    /// The device code expired before the user confirmed it.
    #[error(
        "the device sign-in expired before it was confirmed; run `snowgate login --device` again"
    )]
    DeviceExpired,

    /// The user (or the IdP) declined the device sign-in.
    #[error("the device sign-in was declined at the IdP: {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    DeviceDenied {
        error: String,
        description: Option<String>,
    },

    /// The refresh token could not be kept.
    #[error(transparent)]
    Vault(#[from] VaultError),

    /// The profile file could not be written or removed.
    #[error("{action} the sign-in profile {}: {source}", path.display())]
    Profile {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },

    /// The IdP said the refresh token is no good (`invalid_grant`): the user is now signed out.
    #[error("your sign-in was revoked or reused; sign in again")]
    Revoked,

    /// A token for a role the config does not name was asked for.
    #[error("role {role} is not configured; sign-in asks only for the roles in the config's [[roles]], and a refresh cannot widen them")]
    UnknownRole { role: String },

    /// The IdP issued no refresh token; the advice says what to change, and where.
    #[error("the IdP issued no refresh token: {advice}")]
    NoRefreshToken { advice: String },

    /// The provider did something else than the configured preset says it does.
    #[error("{0}")]
    ProviderMismatch(String),

    /// The IdP issued no ID token.
    #[error("the IdP issued no ID token; keep `openid` in identity.scopes")]
    NoIdToken,

    /// The IdP does not offer something this operation needs.
    #[error("{0}")]
    Unsupported(String),

    /// A local resource (the loopback listener, a runtime) was not available.
    #[error("{0}")]
    Local(String),
}

impl IdentityError {
    /// Whether retrying later may help: the IdP was unreachable, answered with a server error,
    /// or sent an answer that could not be read.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            IdentityError::Unreachable { .. }
                | IdentityError::Offline { .. }
                | IdentityError::BadResponse { .. }
        )
    }
}

/// Why an ID token was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdTokenError {
    /// `iss` is not the configured issuer.
    #[error("wrong issuer: {0}")]
    WrongIssuer(String),
    /// `aud` does not name this client (or names others it does not trust).
    #[error("wrong audience: {0}")]
    WrongAudience(String),
    /// `nonce` is not the one this sign-in sent.
    #[error("wrong nonce: {0} (the sign-in response belongs to another sign-in)")]
    WrongNonce(String),
    /// `exp` has passed (beyond the configured clock skew).
    #[error("expired: {0} (is this machine's clock right? identity.clock_skew tolerates some difference)")]
    Expired(String),
    /// `iat` lies in the future (beyond the configured clock skew).
    #[error("issued in the future: {0} (is this machine's clock right?)")]
    IssuedInFuture(String),
    /// The signature does not verify with any key in the IdP's JWKS.
    #[error("bad signature: {0}")]
    Signature(String),
    /// The token is not a well-formed JWT or lacks a required claim.
    #[error("malformed: {0}")]
    Malformed(String),
    /// An approver's sign-in that is not proven fresh: no `auth_time`, or one from before the
    /// sign-in began.
    #[error("not a fresh sign-in: {0}; the identity provider must ask for the password again for each decision (it was sent prompt=login and max_age=0)")]
    NotFresh(String),
}

/// Why the browser sign-in's redirect to the loopback listener failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    /// A redirect arrived with a `state` this sign-in did not send.
    #[error("the redirect to Snowgate carried a `state` this sign-in did not send, so it does not belong to the sign-in Snowgate is waiting for (an old browser tab, or another program)")]
    WrongState,
    /// The redirect's `iss` (RFC 9207) names another IdP.
    #[error(
        "the redirect came from issuer {found:?}, not from {expected}; start the sign-in again"
    )]
    WrongIssuer { expected: String, found: String },
    /// The IdP redirected with an error, e.g. the user pressed Deny.
    #[error("the IdP answered {error}{}", description.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Denied {
        error: String,
        description: Option<String>,
    },
    /// The redirect had a matching state but no code.
    #[error("the redirect to Snowgate carried no authorization code")]
    NoCode,
    /// Nobody completed the sign-in in time.
    #[error("nobody completed the sign-in in the browser within {0}; run `snowgate login` again")]
    TimedOut(String),
}
