//! The one error type a tool ever gets from the gateway itself, in Snowflake's shape.
//!
//! Drivers show a person `message` when the answer looks like Snowflake's:
//! `{"data": null, "code": "390112", "message": "...", "success": false}` with the code as a
//! string, usually with HTTP 200. Anything else (a bare 4xx/5xx page) surfaces as a stack trace
//! or a generic HTTP error, so every refusal goes through [`SnowflakeError`] and its
//! [`IntoResponse`] impl. HTTP 200 is used throughout, as Snowflake does, except for requests
//! that carry a browser's marks (an `Origin` or `Sec-Fetch-*` header), which get 403.
//!
//! Codes (see [`codes`]) are Snowflake's where one fits, so drivers react as they do to
//! Snowflake: 390112 makes them renew with the master handle, 390114 makes them give up the
//! session. Codes in 3905xx are Snowgate's own. The end-of-access sentence deliberately uses one
//! of those ([`codes::ACCESS_ENDED`]), because the drivers replace or drop the message of the
//! codes they special-case: connector 5.x shows its own text for 390114, and the Node.js sdk
//! turns 390111 into a generic "terminated connection" error. A code no driver knows is shown
//! to the person as sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

/// Error codes the gateway answers with.
pub mod codes {
    /// No session token in the request (`Authorization` header missing or `Token="None"`).
    pub const NO_SESSION_TOKEN: &str = "390103";
    /// Unknown, forged or superseded session handle: drivers renew with the master handle.
    pub const SESSION_EXPIRED: &str = "390112";
    /// Unknown or forged master handle: the driver must log in again.
    pub const MASTER_EXPIRED: &str = "390114";
    /// A renewal whose `oldSessionToken` does not belong to the master handle's session.
    pub const MASTER_INVALID: &str = "390115";
    /// Snowflake's "incorrect username or password": drivers show the message of a refused
    /// sign-in with it (the authorizer's refusal of a signed-out user or a missing secret).
    pub const LOGIN_REFUSED: &str = "390100";
    /// Role not granted (the authorizer's usual refusal).
    pub const ROLE_NOT_GRANTED: &str = "390189";
    /// `/session/authenticator-request`: Snowgate does the sign-in, not the tool.
    pub const AUTHENTICATOR_REFUSED: &str = "390190";
    /// A request the gateway cannot read: malformed JSON or gzip, or too large.
    pub const BAD_REQUEST: &str = "390400";
    /// Refused by a local-security check: another OS user, a browser, a foreign Host header.
    pub const NOT_ALLOWED: &str = "390422";
    /// Snowflake could not be reached, or answered with something that is not Snowflake JSON.
    pub const UPSTREAM_UNAVAILABLE: &str = "390503";
    /// The session's access ended (grant expired or revoked, user signed out, closed in
    /// Snowgate): the message is [`crate::EndReason::sentence`].
    pub const ACCESS_ENDED: &str = "390510";
    /// The audit log can't keep the record (disk full, read-only, damaged): the statement or
    /// login is refused, never run unrecorded.
    pub const AUDIT_UNAVAILABLE: &str = "390520";
    /// A statement the session's SQL policy refuses (read-only): it never went upstream.
    pub const STATEMENT_REFUSED: &str = "390530";
    /// An agent sent more statements in a minute than its policy allows: retry later.
    pub const RATE_LIMITED: &str = "390531";
    /// A path spelling the gateway will not guess at (an encoded slash, a dot segment).
    pub const PATH_REFUSED: &str = "390521";
}

/// An answer to a tool in Snowflake's error shape, with a sentence a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnowflakeError {
    status: StatusCode,
    code: String,
    message: String,
}

impl SnowflakeError {
    /// An error answered with HTTP 200, as Snowflake answers its own.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> SnowflakeError {
        SnowflakeError {
            status: StatusCode::OK,
            code: code.into(),
            message: message.into(),
        }
    }

    /// The same error with another HTTP status.
    pub fn with_status(mut self, status: StatusCode) -> SnowflakeError {
        self.status = status;
        self
    }

    pub fn code(&self) -> &str {
        &self.code
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The JSON body: `{"data":null,"code":"...","message":"...","success":false}`.
    pub fn body(&self) -> Bytes {
        let v = serde_json::json!({
            "data": null,
            "code": self.code,
            "message": self.message,
            "success": false,
        });
        Bytes::from(serde_json::to_vec(&v).expect("a JSON value serializes"))
    }

    // ---- the refusals the gateway makes ----

    pub(crate) fn no_session_token() -> SnowflakeError {
        SnowflakeError::new(
            codes::NO_SESSION_TOKEN,
            "Snowgate: this request carries no session token. Log in through Snowgate first.",
        )
    }

    pub(crate) fn unknown_session_handle() -> SnowflakeError {
        SnowflakeError::new(
            codes::SESSION_EXPIRED,
            "Snowgate: this session token is not valid (it expired, was closed, or Snowgate restarted). Renew the session or connect again.",
        )
    }

    pub(crate) fn unknown_master_handle() -> SnowflakeError {
        SnowflakeError::new(
            codes::MASTER_EXPIRED,
            "Snowgate: this session is not open in Snowgate (it was closed, or Snowgate restarted). Connect again.",
        )
    }

    pub(crate) fn foreign_old_session_token() -> SnowflakeError {
        SnowflakeError::new(
            codes::MASTER_INVALID,
            "Snowgate: the old session token in this renewal does not belong to this session. Connect again.",
        )
    }

    pub(crate) fn access_ended(sentence: String) -> SnowflakeError {
        SnowflakeError::new(codes::ACCESS_ENDED, sentence)
    }

    pub(crate) fn authenticator_request() -> SnowflakeError {
        SnowflakeError::new(
            codes::AUTHENTICATOR_REFUSED,
            "Snowgate does the sign-in for this connection: connect without an SSO authenticator (any user and password will do) and Snowgate authorizes the session.",
        )
    }

    pub(crate) fn bad_request(what: impl std::fmt::Display) -> SnowflakeError {
        SnowflakeError::new(codes::BAD_REQUEST, format!("Snowgate: {what}"))
    }

    pub(crate) fn not_allowed(what: impl std::fmt::Display) -> SnowflakeError {
        SnowflakeError::new(codes::NOT_ALLOWED, format!("Snowgate: {what}"))
    }

    pub(crate) fn browser() -> SnowflakeError {
        SnowflakeError::new(
            codes::NOT_ALLOWED,
            "Snowgate: requests from web browsers are refused. Connect with a Snowflake driver or BI tool instead.",
        )
        .with_status(StatusCode::FORBIDDEN)
    }

    pub(crate) fn audit_unavailable(reason: &str) -> SnowflakeError {
        SnowflakeError::new(
            codes::AUDIT_UNAVAILABLE,
            format!("Snowgate: refused because the audit log can't record it ({reason}). Nothing was sent to Snowflake. Ask your administrator to check `snowgate status`."),
        )
    }

    pub(crate) fn statement_refused(message: String) -> SnowflakeError {
        SnowflakeError::new(codes::STATEMENT_REFUSED, message)
    }

    pub(crate) fn rate_limited(message: String) -> SnowflakeError {
        SnowflakeError::new(codes::RATE_LIMITED, message)
    }

    pub(crate) fn path_refused(path: &str, why: &str) -> SnowflakeError {
        SnowflakeError::new(
            codes::PATH_REFUSED,
            format!("Snowgate: the request path {path:?} is refused ({why}). Drivers never send such paths; use the driver's own endpoint."),
        )
    }

    pub(crate) fn upstream(what: impl std::fmt::Display) -> SnowflakeError {
        SnowflakeError::new(codes::UPSTREAM_UNAVAILABLE, format!("Snowgate: {what}"))
    }
}

impl From<crate::authorizer::Refusal> for SnowflakeError {
    fn from(r: crate::authorizer::Refusal) -> Self {
        SnowflakeError::new(r.code.to_string(), r.message)
    }
}

impl std::fmt::Display for SnowflakeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.code, self.message)
    }
}

impl std::error::Error for SnowflakeError {}

impl IntoResponse for SnowflakeError {
    fn into_response(self) -> Response {
        let body = self.body();
        let mut resp = (self.status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_snowflake_shape_with_string_code() {
        let e = SnowflakeError::unknown_session_handle();
        let v: serde_json::Value = serde_json::from_slice(&e.body()).unwrap();
        assert_eq!(v["success"], false);
        assert_eq!(v["code"], "390112");
        assert!(v["data"].is_null());
        assert!(v["message"].as_str().unwrap().starts_with("Snowgate"));
        assert_eq!(e.status(), StatusCode::OK);
    }
}
