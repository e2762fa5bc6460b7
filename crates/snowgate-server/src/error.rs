//! The one error type of the API, rendered as `{ "error": { "code": "...", "message": "..." } }`
//! ([`ErrorAnswer`]).
//!
//! `code` is a stable machine-readable word (`unauthenticated`, `forbidden`, `conflict`, ...);
//! `message` is one sentence a person can act on. Neither ever holds a token or a secret:
//! messages are built from our own words and from the grants crate's refusals, which name
//! grants, roles and groups only. Storage failures are logged in full and answered with a
//! generic sentence, since they may name hosts the caller has no business seeing.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use snowgate_grants::team_api::{ErrorAnswer, ErrorBody};
use snowgate_grants::{GrantError, LedgerError};

/// An API error: the status, a stable code and a sentence.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Seconds to wait, for 429.
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400: the request itself is malformed.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 401: no valid bearer token.
    pub fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 403: the caller may not do this.
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 409: the grant is not in a state that allows this.
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 429 with `Retry-After`.
    pub fn rate_limited(retry_after_secs: u64) -> ApiError {
        ApiError {
            retry_after: Some(retry_after_secs),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "too many grant operations in a short time; try again in {retry_after_secs} s"
                ),
            )
        }
    }

    /// 429 with `Retry-After` and a sentence of the caller's own.
    pub fn rate_limited_because(retry_after_secs: u64, message: impl Into<String>) -> ApiError {
        ApiError {
            retry_after: Some(retry_after_secs),
            ..ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
        }
    }

    /// 503: the database (or the IdP) cannot be reached. The detail goes to the log only.
    pub fn unavailable(what: &str, detail: &dyn std::fmt::Display) -> ApiError {
        tracing::warn!(error = %detail, "{what} failed");
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            format!("{what} failed because the server's database or identity provider is not reachable right now; try again shortly"),
        )
    }
}

impl From<GrantError> for ApiError {
    fn from(e: GrantError) -> ApiError {
        use GrantError::*;
        let (status, code) = match &e {
            UnknownGrant { .. } => (StatusCode::NOT_FOUND, "not_found"),
            UnknownRole { .. }
            | DurationTooLong { .. }
            | NoApprovers { .. }
            | ExtensionAboveMax { .. }
            | ExtensionsNotAllowed { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "policy"),
            SelfApproval { .. }
            | SelfDecision { .. }
            | NotAnApprover { .. }
            | NotRequester { .. }
            | NotAllowedToRevoke { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            RequestAboveMax { .. }
            | AlreadyApproved { .. }
            | AlreadyEnded { .. }
            | NothingToDecide { .. }
            | RevokePending { .. }
            | ExtendPending { .. }
            | NothingToCancel { .. }
            | ExtensionAlreadyPending { .. } => (StatusCode::CONFLICT, "conflict"),
        };
        ApiError::new(status, code, e.to_string())
    }
}

impl From<LedgerError> for ApiError {
    fn from(e: LedgerError) -> ApiError {
        match e {
            LedgerError::Conflict { grant } => ApiError::conflict(format!(
                "grant {grant} was changed by someone else at the same moment; load it again and retry"
            )),
            other => ApiError::unavailable("reading or writing the grants database", &other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorAnswer {
            error: ErrorBody {
                code: self.code.to_string(),
                message: self.message,
            },
        };
        let mut resp = (self.status, axum::Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        resp
    }
}
