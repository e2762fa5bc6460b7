//! The control socket's messages.

use serde::{Deserialize, Serialize};

/// A call from a client to the broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", content = "params", rename_all = "snake_case")]
pub enum Request {
    /// The broker's status.
    Status,
    /// Start a sign-in: the browser flow, or the device flow with `device`. With
    /// `session_only`, tokens stay in memory instead of the OS keyring.
    LoginBegin {
        #[serde(default)]
        device: bool,
        #[serde(default)]
        session_only: bool,
    },
    /// Wait for a sign-in started with `LoginBegin` to finish.
    LoginWait { login_id: String },
    /// Sign out: revoke at the IdP, delete the keyring entry, drop every token.
    Logout,
    /// Who is signed in, and when their tokens expire (never a token value).
    Whoami,
}

/// The broker's answer to one [`Request`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Response {
    Ok(serde_json::Value),
    Error(ControlError),
}

/// What kind of failure a [`ControlError`] is, so clients can pick an exit code or a remedy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request was malformed or named something that does not exist.
    BadRequest,
    /// The caller may not do this.
    Forbidden,
    /// The user must sign in first.
    SignedOut,
    /// Something outside the broker (IdP, keyring, Snowflake) failed.
    Unavailable,
    /// A bug or an unexpected state in the broker.
    Internal,
}

/// A failure with a sentence a person can act on. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{message}")]
pub struct ControlError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ControlError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ControlError {
        ControlError {
            kind,
            message: message.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_have_a_stable_wire_form() {
        assert_eq!(
            serde_json::to_string(&Request::Status).unwrap(),
            r#"{"method":"status"}"#
        );
        let r: Request = serde_json::from_str(r#"{"method":"status"}"#).unwrap();
        assert_eq!(r, Request::Status);
    }
}
