//! The JSON body extractor of the API: `Body<T>`.
//!
//! axum's own `Json` rejects with terse text. This one answers 400 with the API's JSON error
//! and a sentence that names the field at fault and what the endpoint expects. An empty body
//! counts as `{}`, so endpoints whose fields are all optional (approve, revoke, cancel) can be
//! called without one.

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::header::CONTENT_TYPE;
use serde::de::DeserializeOwned;

use crate::error::ApiError;

/// The most a request body may be.
pub const MAX_BODY: usize = 64 * 1024;

/// A JSON request body, parsed into `T`.
pub struct Body<T>(pub T);

impl<S, T> FromRequest<S> for Body<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let what = format!("{} {}", req.method(), req.uri().path());
        let json_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                let v = v.to_ascii_lowercase();
                v.starts_with("application/json") || v.contains("+json")
            });
        let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY)
            .await
            .map_err(|_| {
                ApiError::bad_request(format!(
                    "the body of {what} is larger than {MAX_BODY} bytes or could not be read"
                ))
            })?;
        let _ = state;
        parse(&what, json_type, bytes).map(Body)
    }
}

fn parse<T: DeserializeOwned>(
    what: &str,
    json_type: Option<bool>,
    bytes: Bytes,
) -> Result<T, ApiError> {
    let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        if json_type == Some(false) || json_type.is_none() {
            return Err(ApiError::bad_request(format!(
                "send the body of {what} as JSON, with `Content-Type: application/json`"
            )));
        }
        &bytes
    };
    let de = &mut serde_json::Deserializer::from_slice(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = if inner.is_syntax() || inner.is_eof() {
            format!("the body of {what} is not valid JSON ({inner})")
        } else if path == "." || path.is_empty() {
            format!("the body of {what} does not have the expected fields: {inner}")
        } else {
            format!("the body of {what} has a bad field `{path}`: {inner}")
        };
        ApiError::bad_request(message)
    })
}
