//! The way to Snowflake: pooled HTTP/1.1 clients for every configured account (each session
//! goes to the account it logged in to, [`Upstream::to`]), one per serving thread plus one for
//! every other thread, so an upstream connection is driven on the thread whose requests use it
//! ([`crate::listener`]); TLS verified against the webpki roots plus
//! the configured extra CA file, `TCP_NODELAY` on every connection, keep-alive between
//! requests.
//!
//! Requests keep the tool's path and query string byte for byte (connector 5.x asks for
//! `/monitoring/queries//ID` with a doubled slash, and Snowflake answers it); only the scheme
//! and authority change. Hop-by-hop headers, `Host`, and the tool's `Authorization` are not
//! forwarded; the upstream token goes in a fresh, sensitive `Authorization` header.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName};
use http::{Method, Request, Response, StatusCode, Uri};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use secrecy::{ExposeSecret, SecretString};
use serde_json::Value;

use crate::codec;
use crate::config::GatewayConfig;
use crate::error::GatewayError;
use crate::snowflake_error::SnowflakeError;

/// A request body going upstream.
pub(crate) type UpstreamBody = UnsyncBoxBody<Bytes, BoxError>;
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);
const POOL_MAX_IDLE_PER_HOST: usize = 256;
/// Cap on an upstream answer the gateway reads whole (login, renewal, close).
pub(crate) const MAX_BUFFERED_ANSWER: usize = 16 * 1024 * 1024;

type UpstreamClient = Client<HttpsConnector<HttpConnector>, UpstreamBody>;

/// Snowflake, as the gateway reaches it: clients for every configured account, one per serving
/// thread and one for any other thread.
pub(crate) struct Upstream {
    /// One per serving thread (its index in [`crate::listener::Serving`]), then one for
    /// requests from any other thread. Each has its own pool: a pooled connection's task runs
    /// where the connection was made.
    clients: Vec<UpstreamClient>,
    /// One per [`GatewayConfig::accounts`], in order.
    targets: Vec<Target>,
    /// How long to wait for the head of an answer.
    answer_timeout: Duration,
}

/// Where one account is.
struct Target {
    scheme: http::uri::Scheme,
    authority: http::uri::Authority,
    /// For messages: `https://host:port`.
    display: String,
}

/// The upstream client aimed at one account ([`Upstream::to`]).
pub(crate) struct UpstreamTo<'a> {
    client: &'a UpstreamClient,
    target: &'a Target,
    answer_timeout: Duration,
}

/// A whole upstream answer, read and (if gzip) decompressed.
pub(crate) struct BufferedAnswer {
    pub status: StatusCode,
    pub json: Option<Value>,
}

impl Upstream {
    pub fn new(config: &GatewayConfig) -> Result<Upstream, GatewayError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = &config.extra_ca_file {
            let pem = std::fs::read(path).map_err(|source| GatewayError::ReadingCa {
                path: path.clone(),
                source,
            })?;
            let mut added = 0;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| GatewayError::BadCa {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                roots.add(cert).map_err(|e| GatewayError::BadCa {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                added += 1;
            }
            if added == 0 {
                return Err(GatewayError::BadCa {
                    path: path.clone(),
                    reason: "no PEM certificate in it".into(),
                });
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| GatewayError::Tls(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();

        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_keepalive(Some(Duration::from_secs(60)));
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let clients = (0..=config.serving_threads)
            .map(|_| {
                Client::builder(TokioExecutor::new())
                    .pool_idle_timeout(POOL_IDLE_TIMEOUT)
                    .pool_max_idle_per_host(POOL_MAX_IDLE_PER_HOST)
                    .build(https.clone())
            })
            .collect();

        let targets = config
            .accounts
            .iter()
            .map(|route| Target::new(&route.upstream))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Upstream {
            clients,
            targets,
            answer_timeout: config.upstream_answer_timeout,
        })
    }

    /// The client aimed at the account with this index in [`GatewayConfig::accounts`] (the
    /// first for an index out of range, which the gateway never hands out).
    pub fn to(&self, route: usize) -> UpstreamTo<'_> {
        let others = self.clients.len() - 1;
        let client = crate::listener::serving_index()
            .filter(|i| *i < others)
            .unwrap_or(others);
        UpstreamTo {
            client: &self.clients[client],
            target: self.targets.get(route).unwrap_or(&self.targets[0]),
            answer_timeout: self.answer_timeout,
        }
    }

    /// Where each account's Snowflake is, for messages.
    pub fn display(&self) -> String {
        self.targets
            .iter()
            .map(|t| t.display.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

impl Target {
    fn new(url: &url::Url) -> Result<Target, GatewayError> {
        let host = url.host_str().unwrap_or_default();
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host,
        };
        let bad = |reason: String| GatewayError::BadUpstream {
            url: url.to_string(),
            reason,
        };
        let scheme = url
            .scheme()
            .parse::<http::uri::Scheme>()
            .map_err(|e| bad(e.to_string()))?;
        let authority_parsed = authority
            .parse::<http::uri::Authority>()
            .map_err(|e| bad(e.to_string()))?;
        Ok(Target {
            display: format!("{}://{authority}", url.scheme()),
            scheme,
            authority: authority_parsed,
        })
    }
}

impl UpstreamTo<'_> {
    /// Where Snowflake is, for messages.
    pub fn display(&self) -> &str {
        &self.target.display
    }

    /// The upstream URI for a path and query exactly as the tool sent them.
    pub fn uri(&self, path_and_query: &str) -> Result<Uri, SnowflakeError> {
        Uri::builder()
            .scheme(self.target.scheme.clone())
            .authority(self.target.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|e| {
                SnowflakeError::bad_request(format_args!("the request path is invalid ({e})."))
            })
    }

    /// Sends a request upstream; a failure to reach Snowflake, or no answer within the
    /// configured answer timeout, becomes a Snowflake-shaped error naming where the gateway
    /// tried.
    pub async fn send(
        &self,
        req: Request<UpstreamBody>,
    ) -> Result<Response<Incoming>, SnowflakeError> {
        let answer = tokio::time::timeout(self.answer_timeout, self.client.request(req))
            .await
            .map_err(|_| {
                tracing::warn!(upstream = %self.target.display, timeout_s = self.answer_timeout.as_secs(), "Snowflake did not answer in time");
                SnowflakeError::upstream(format_args!(
                    "Snowflake at {} did not answer within {} s. Retry in a moment.",
                    self.target.display,
                    self.answer_timeout.as_secs()
                ))
            })?;
        answer.map_err(|e| {
            let cause = error_chain(&e);
            tracing::warn!(upstream = %self.target.display, error = %cause, "Snowflake could not be reached");
            SnowflakeError::upstream(format_args!(
                "Snowflake at {} could not be reached ({cause}). Check the network connection, then retry.",
                self.target.display
            ))
        })
    }

    /// Builds the upstream request for a tool's request: same method, path, query and
    /// end-to-end headers; `token` (if any) as the Authorization.
    pub fn forward_request(
        &self,
        method: &Method,
        path_and_query: &str,
        tool_headers: &HeaderMap,
        token: Option<&SecretString>,
        body: UpstreamBody,
    ) -> Result<Request<UpstreamBody>, SnowflakeError> {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(self.uri(path_and_query)?)
            .body(body)
            .expect("method and uri are valid");
        let headers = req.headers_mut();
        for (name, value) in tool_headers {
            if forwardable_request_header(name) {
                headers.append(name.clone(), value.clone());
            }
        }
        if let Some(token) = token {
            headers.insert(
                header::AUTHORIZATION,
                codec::authorization(token.expose_secret()),
            );
        }
        Ok(req)
    }

    /// A JSON POST from the gateway itself (closing or renewing a session it ends).
    pub async fn post_json(
        &self,
        path_and_query: &str,
        token: &SecretString,
        body: &Value,
    ) -> Result<BufferedAnswer, SnowflakeError> {
        let bytes = Bytes::from(serde_json::to_vec(body).expect("JSON serializes"));
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            "application/json".parse().expect("valid"),
        );
        headers.insert(header::ACCEPT, "application/json".parse().expect("valid"));
        let req = self.forward_request(
            &Method::POST,
            path_and_query,
            &headers,
            Some(token),
            full(bytes),
        )?;
        let resp = self.send(req).await?;
        read_answer(resp).await
    }
}

/// A whole body as an upstream body.
pub(crate) fn full(bytes: Bytes) -> UpstreamBody {
    Full::new(bytes)
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Reads an upstream answer whole (capped) and parses it as JSON if it is JSON.
pub(crate) async fn read_answer(
    resp: Response<Incoming>,
) -> Result<BufferedAnswer, SnowflakeError> {
    let (parts, body) = resp.into_parts();
    let bytes = Limited::new(body, MAX_BUFFERED_ANSWER)
        .collect()
        .await
        .map_err(|e| {
            SnowflakeError::upstream(format_args!(
                "Snowflake's answer could not be read ({}).",
                error_chain(e.as_ref())
            ))
        })?
        .to_bytes();
    let gzip = parts
        .headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("gzip"))
        || codec::is_gzip(&bytes);
    let plain = if gzip {
        codec::gunzip_capped(&bytes, MAX_BUFFERED_ANSWER * 4)
            .map(Bytes::from)
            .unwrap_or_default()
    } else {
        bytes
    };
    Ok(BufferedAnswer {
        status: parts.status,
        json: serde_json::from_slice(&plain).ok(),
    })
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) and the ones the gateway sets itself.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

fn forwardable_request_header(name: &HeaderName) -> bool {
    !hop_by_hop(name)
        && name != header::HOST
        && name != header::AUTHORIZATION
        && name != header::CONTENT_LENGTH
        && name != header::EXPECT
        && name != header::COOKIE
}

/// Whether an upstream answer header goes back to the tool.
pub(crate) fn forwardable_response_header(name: &HeaderName) -> bool {
    !hop_by_hop(name) && name != header::SET_COOKIE
}

/// An error and its causes, one line.
pub(crate) fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let m = c.to_string();
        if !s.contains(&m) {
            s.push_str(": ");
            s.push_str(&m);
        }
        cur = c.source();
    }
    s
}
