//! Local security, checked on every request before anything else: only the same OS user,
//! no browsers, and only Snowgate's own host names.
//!
//! - **Same user.** The listener resolved the owner of the peer's socket when it accepted the
//!   connection ([`crate::peer`]); a request from any other user is refused. Where the owner
//!   cannot be found on Linux, the request is refused too (fail closed).
//! - **Browsers.** A request with an `Origin` header or any `Sec-Fetch-*` header comes from a
//!   web page (drivers send neither): refused with 403, against CSRF.
//! - **Host.** The `Host` header must be `127.0.0.1`, `localhost` or `[::1]` with the port the
//!   request arrived on, against DNS rebinding (a page whose own name resolves to 127.0.0.1).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::header;

use crate::events::GatewayEvent;
use crate::peer;
use crate::snowflake_error::SnowflakeError;
use crate::state::{Connection, Shared};

/// The axum middleware running [`check`] on every request the router serves.
pub(crate) async fn local_security(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    match refusal(&shared, &request) {
        Some(refused) => refused,
        None => next.run(request).await,
    }
}

/// [`check`] for a request: `None` when it may go on, else the refusal to answer with (the
/// refusal is also told to subscribers).
pub(crate) fn refusal(shared: &Shared, request: &Request) -> Option<Response> {
    let conn = request.extensions().get::<Connection>();
    let verdict = match conn {
        Some(conn) => check(shared.uid, conn, request.headers()),
        None => Err(SnowflakeError::not_allowed(
            "this connection could not be identified.",
        )),
    };
    let e = verdict.err()?;
    if let Some(conn) = conn {
        shared.events.emit(GatewayEvent::RequestRefused {
            peer: conn.peer,
            uid: conn.peer_socket.map(|p| p.uid),
            code: e.code().to_string(),
            message: e.message().to_string(),
        });
    }
    Some(e.into_response())
}

/// The three checks, in order: same user, no browser, right Host.
pub(crate) fn check(
    my_uid: u32,
    conn: &Connection,
    headers: &http::HeaderMap,
) -> Result<(), SnowflakeError> {
    if peer::same_user_check_supported() {
        match conn.peer_socket {
            Some(p) if p.uid == my_uid => {}
            Some(p) => {
                return Err(SnowflakeError::not_allowed(format_args!(
                    "this gateway serves only the OS user who runs Snowgate (uid {my_uid}); this connection comes from uid {}. Run the tool as that user, or start Snowgate as this one.",
                    p.uid
                )))
            }
            None => {
                return Err(SnowflakeError::not_allowed(
                    "the OS did not say which user opened this connection, so it is refused.",
                ))
            }
        }
    }
    web_checks(headers, conn.local.port())
}

/// The browser and Host checks alone, for any loopback HTTP endpoint of Snowgate that serves
/// programs, not web pages (the gateway, and `snowgate mcp --http`): a request with `Origin`
/// or any `Sec-Fetch-*` header is refused (CSRF), and so is one whose `Host` is not a loopback
/// name with `port` (DNS rebinding).
pub fn web_checks(headers: &http::HeaderMap, port: u16) -> Result<(), SnowflakeError> {
    if headers.contains_key(header::ORIGIN)
        || headers.keys().any(|k| k.as_str().starts_with("sec-fetch-"))
    {
        return Err(SnowflakeError::browser());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("");
    if !host_is_ours(host, port) {
        return Err(SnowflakeError::not_allowed(format_args!(
            "requests for host {host:?} are refused. Connect to 127.0.0.1:{port}, localhost:{port} or [::1]:{port}."
        )));
    }
    Ok(())
}

/// Whether a Host header names this gateway: one of its loopback names, with `port` (an
/// absent port means 80).
pub fn host_is_ours(host: &str, port: u16) -> bool {
    let (name, host_port) = if let Some(rest) = host.strip_prefix('[') {
        match rest.split_once(']') {
            Some((inner, after)) => (
                format!("[{inner}]"),
                after.strip_prefix(':').map(str::to_string),
            ),
            None => return false,
        }
    } else {
        match host.rsplit_once(':') {
            Some((n, p)) => (n.to_string(), Some(p.to_string())),
            None => (host.to_string(), None),
        }
    };
    let name_ok = name == "127.0.0.1" || name.eq_ignore_ascii_case("localhost") || name == "[::1]";
    let port_ok = match host_port {
        Some(p) => p.parse::<u16>().ok() == Some(port),
        None => port == 80,
    };
    name_ok && port_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peer::PeerSocket;
    use http::{HeaderMap, HeaderValue};

    fn conn(uid: Option<u32>) -> Connection {
        Connection {
            peer: "127.0.0.1:50000".parse().unwrap(),
            local: "127.0.0.1:8765".parse().unwrap(),
            peer_socket: uid.map(|uid| PeerSocket { uid, inode: 1 }),
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn host_must_be_a_loopback_name_with_our_port() {
        for ok in [
            "127.0.0.1:8765",
            "localhost:8765",
            "LOCALHOST:8765",
            "[::1]:8765",
        ] {
            assert!(host_is_ours(ok, 8765), "{ok}");
        }
        for bad in [
            "evil.example:8765",
            "127.0.0.1:8766",
            "127.0.0.1",
            "localhost.evil.example:8765",
            "[::1]",
            "[::2]:8765",
            "",
            "127.0.0.1:8765:1",
        ] {
            assert!(!host_is_ours(bad, 8765), "{bad}");
        }
        assert!(host_is_ours("localhost", 80));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn other_users_browsers_and_foreign_hosts_are_refused() {
        let good = headers(&[("host", "127.0.0.1:8765")]);
        assert!(check(1000, &conn(Some(1000)), &good).is_ok());
        let e = check(1000, &conn(Some(65534)), &good).unwrap_err();
        assert_eq!(e.code(), "390422");
        assert!(e.message().contains("uid 65534"), "{e}");
        assert!(check(1000, &conn(None), &good).is_err());
        let e = check(
            1000,
            &conn(Some(1000)),
            &headers(&[
                ("host", "127.0.0.1:8765"),
                ("origin", "https://evil.example"),
            ]),
        )
        .unwrap_err();
        assert_eq!(e.status(), http::StatusCode::FORBIDDEN);
        assert!(check(
            1000,
            &conn(Some(1000)),
            &headers(&[("host", "127.0.0.1:8765"), ("sec-fetch-mode", "cors")]),
        )
        .is_err());
        let e = check(
            1000,
            &conn(Some(1000)),
            &headers(&[("host", "evil.example")]),
        )
        .unwrap_err();
        assert!(e.message().contains("evil.example"), "{e}");
    }
}
