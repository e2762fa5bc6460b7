//! The HTTP client for talking to the IdP.
//!
//! One `reqwest` client (rustls) that trusts the built-in web roots plus the config's
//! `extra_ca_file`, follows no redirects (a token endpoint that redirects is misconfigured or
//! hijacked, and a redirected POST could carry a code or refresh token elsewhere), and has
//! connect and request timeouts. [`IdpHttp`] adapts it to `openidconnect`'s HTTP interface and
//! turns a 5xx answer into a transport error, so "the IdP is down" is one kind of error whether
//! the connection was refused or a proxy answered 502.
//!
//! Logs name the method, the URL without its query and the status, never a body or header.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use openidconnect::{HttpRequest, HttpResponse};
use url::Url;

use super::error::IdentityError;

/// How long a connection attempt to the IdP may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one request to the IdP may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Builds the client: web roots plus `extra_ca_file`, no redirects, timeouts.
pub fn build_client(extra_ca_file: Option<&Path>) -> Result<reqwest::Client, IdentityError> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .user_agent(concat!("snowgate/", env!("CARGO_PKG_VERSION")));
    if let Some(path) = extra_ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            IdentityError::Local(format!(
                "reading identity.extra_ca_file {}: {e}",
                path.display()
            ))
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            IdentityError::Local(format!(
                "identity.extra_ca_file {} is not a PEM certificate bundle: {e}",
                path.display()
            ))
        })?;
        if certs.is_empty() {
            return Err(IdentityError::Local(format!(
                "identity.extra_ca_file {} holds no PEM certificate",
                path.display()
            )));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    builder
        .build()
        .map_err(|e| IdentityError::Local(format!("setting up the HTTP client: {e}")))
}

/// A URL for logs and messages: no query, no fragment (they can hold codes).
pub fn shown(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.set_fragment(None);
    u.to_string()
}

/// Describes a reqwest error by kind and cause, without the URL's query.
pub fn describe(err: &reqwest::Error) -> String {
    let mut cause = String::new();
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    let kind = if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "could not connect"
    } else if err.is_body() || err.is_decode() {
        "the answer broke off"
    } else {
        "the request failed"
    };
    let url = err.url().map(shown).unwrap_or_default();
    match (url.is_empty(), cause.is_empty()) {
        (false, false) => format!("{kind} ({url}): {cause}"),
        (false, true) => format!("{kind} ({url})"),
        (true, false) => format!("{kind}: {cause}"),
        (true, true) => kind.to_string(),
    }
}

/// Why a request to the IdP did not get an answer worth reading.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    /// No connection, a timeout, or a broken answer.
    #[error("{0}")]
    Network(String),
    /// The IdP (or a proxy in front of it) answered with a server error.
    #[error("HTTP {status} from {url}")]
    Server { status: u16, url: String },
    /// The request could not be built.
    #[error("{0}")]
    Request(String),
}

/// `openidconnect`'s HTTP interface over the IdP client.
#[derive(Debug, Clone)]
pub struct IdpHttp {
    client: reqwest::Client,
}

impl IdpHttp {
    /// Wraps a client made by [`build_client`].
    pub fn new(client: reqwest::Client) -> IdpHttp {
        IdpHttp { client }
    }

    /// The underlying client, for plain requests (discovery, JWKS, userinfo).
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }
}

impl<'c> openidconnect::AsyncHttpClient<'c> for IdpHttp {
    type Error = TransportError;
    type Future =
        Pin<Box<dyn Future<Output = Result<HttpResponse, TransportError>> + Send + Sync + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let request: reqwest::Request = request
                .try_into()
                .map_err(|e: reqwest::Error| TransportError::Request(describe(&e)))?;
            let method = request.method().clone();
            let url = shown(request.url());
            let response = self
                .client
                .execute(request)
                .await
                .map_err(|e| TransportError::Network(describe(&e)))?;
            let status = response.status();
            tracing::debug!(%method, %url, status = status.as_u16(), "IdP answered");
            if status.is_server_error() {
                return Err(TransportError::Server {
                    status: status.as_u16(),
                    url,
                });
            }
            let mut builder = openidconnect::http::Response::builder()
                .status(status)
                .version(response.version());
            for (name, value) in response.headers() {
                builder = builder.header(name, value);
            }
            let body = response
                .bytes()
                .await
                .map_err(|e| TransportError::Network(describe(&e)))?;
            builder
                .body(body.to_vec())
                .map_err(|e| TransportError::Request(e.to_string()))
        })
    }
}
