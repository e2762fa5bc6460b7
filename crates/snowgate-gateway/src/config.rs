//! How a gateway is set up: where it listens, where each Snowflake account is, and its limits.
//!
//! [`GatewayConfig::validate`] refuses what would weaken the trust model: a listen address
//! other than 127.0.0.1 or [::1], and a plain-HTTP upstream that is not itself on loopback.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;

use url::Url;

use crate::error::GatewayError;

/// Default cap on a request body the gateway reads (login, token-request, query-request).
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 * 1024 * 1024;
/// Default cap on a request body once gunzipped.
pub const DEFAULT_MAX_DECOMPRESSED_BYTES: usize = 64 * 1024 * 1024;
/// Default wait for the head of Snowflake's answer to any request. Snowflake answers a
/// statement within about 45 s even while it still runs (the driver then polls), so a minute
/// of silence means Snowflake or the path to it hangs.
pub const DEFAULT_UPSTREAM_ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// The gateway's configuration.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where to listen with plain HTTP: 127.0.0.1 and/or [::1] only. Port 0 picks a free port;
    /// when a later address has port 0 and an earlier one was bound, the same port is tried
    /// first. May be empty when [`GatewayConfig::tls_listen`] is not.
    pub listen: Vec<SocketAddr>,
    /// Where to listen with HTTPS (loopback only, like `listen`; port 0 as there, within this
    /// list), served with [`GatewayConfig::tls_cert`].
    pub tls_listen: Vec<SocketAddr>,
    /// The certificate of the HTTPS listeners, replaceable while serving.
    pub tls_cert: Option<std::sync::Arc<crate::tls::ServerCert>>,
    /// The Snowflake accounts this one port serves, at least one. A login goes to the account
    /// its authorizer names ([`crate::LoginGrant::account`]); the first is the default.
    pub accounts: Vec<AccountRoute>,
    /// A PEM file of extra CA certificates to trust upstream, besides the webpki roots.
    pub extra_ca_file: Option<PathBuf>,
    /// Cap on a request body the gateway reads or forwards.
    pub max_body_bytes: usize,
    /// Cap on a gzip request body once decompressed.
    pub max_decompressed_bytes: usize,
    /// Pass the tool's PASSWORD to the authorizer as its per-tool secret. Off: the password is
    /// dropped unread.
    pub require_tool_secrets: bool,
    /// Put the statement text in [`crate::GatewayEvent::Statement`] (off: only its SHA-256).
    pub audit_statement_text: bool,
    /// How long the gateway waits for the head of Snowflake's answer before it gives the tool a
    /// Snowflake-shaped error instead.
    pub upstream_answer_timeout: std::time::Duration,
    /// How many threads serve the tools' connections (at least one). A connection stays on
    /// one thread; several connections use several cores. Default:
    /// [`default_serving_threads`].
    pub serving_threads: usize,
}

/// The most serving threads the default asks for: one person's tools rarely keep more
/// connections busy at once.
pub const MAX_DEFAULT_SERVING_THREADS: usize = 4;

/// The default number of serving threads: one per core the process may use, at most
/// [`MAX_DEFAULT_SERVING_THREADS`].
pub fn default_serving_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, MAX_DEFAULT_SERVING_THREADS)
}

impl GatewayConfig {
    /// A configuration for one account (named by its identifier) with the default limits, plain
    /// HTTP only, no extra CA, and both options off.
    pub fn new(listen: Vec<SocketAddr>, upstream: Url, account: impl Into<String>) -> Self {
        GatewayConfig {
            listen,
            tls_listen: Vec::new(),
            tls_cert: None,
            accounts: vec![AccountRoute::new(account, upstream)],
            extra_ca_file: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_decompressed_bytes: DEFAULT_MAX_DECOMPRESSED_BYTES,
            require_tool_secrets: false,
            audit_statement_text: false,
            upstream_answer_timeout: DEFAULT_UPSTREAM_ANSWER_TIMEOUT,
            serving_threads: default_serving_threads(),
        }
    }

    /// Checks the configuration; [`crate::Gateway::bind`] calls it.
    pub fn validate(&self) -> Result<(), GatewayError> {
        if self.listen.is_empty() && self.tls_listen.is_empty() {
            return Err(GatewayError::NoListenAddress);
        }
        if !self.tls_listen.is_empty() && self.tls_cert.is_none() {
            return Err(GatewayError::NoServerCert);
        }
        for addr in self.listen.iter().chain(&self.tls_listen) {
            if !is_allowed_listen_ip(addr.ip()) {
                return Err(GatewayError::NotLoopback { addr: *addr });
            }
        }
        if self.accounts.is_empty() {
            return Err(GatewayError::NoAccount);
        }
        for (i, route) in self.accounts.iter().enumerate() {
            route.validate()?;
            if self.accounts[..i]
                .iter()
                .any(|r| r.name.eq_ignore_ascii_case(&route.name))
            {
                return Err(GatewayError::DuplicateAccount {
                    name: route.name.clone(),
                });
            }
        }
        if self.max_body_bytes == 0 || self.max_decompressed_bytes == 0 {
            return Err(GatewayError::ZeroLimit);
        }
        if self.serving_threads == 0 {
            return Err(GatewayError::NoServingThread);
        }
        Ok(())
    }
}

/// One Snowflake account behind the gateway: the name tools and roles know it by, its account
/// identifier, and where it is.
#[derive(Debug, Clone)]
pub struct AccountRoute {
    /// The name a tool gives as its `account` (`ACCOUNT_NAME`); matched case-insensitively.
    pub name: String,
    /// The account identifier every login to it carries as `ACCOUNT_NAME` upstream.
    pub account: String,
    /// Snowflake's URL, e.g. `https://acme-xy12345.snowflakecomputing.com`. Plain `http` is
    /// accepted only for a loopback host (a test front or a local proxy).
    pub upstream: Url,
}

impl AccountRoute {
    /// An account named by its identifier.
    pub fn new(account: impl Into<String>, upstream: Url) -> AccountRoute {
        let account = account.into();
        AccountRoute {
            name: account.clone(),
            account,
            upstream,
        }
    }

    fn validate(&self) -> Result<(), GatewayError> {
        let url = &self.upstream;
        let host = url.host_str().unwrap_or("");
        if host.is_empty() {
            return Err(GatewayError::BadUpstream {
                url: url.to_string(),
                reason: "it has no host".into(),
            });
        }
        match url.scheme() {
            "https" => {}
            "http" if is_loopback_host(url) => {}
            "http" => {
                return Err(GatewayError::BadUpstream {
                    url: url.to_string(),
                    reason: "plain http is allowed only to a loopback host; use https".into(),
                })
            }
            other => {
                return Err(GatewayError::BadUpstream {
                    url: url.to_string(),
                    reason: format!("scheme {other:?} is not http or https"),
                })
            }
        }
        if self.account.trim().is_empty() || self.name.trim().is_empty() {
            return Err(GatewayError::NoAccount);
        }
        Ok(())
    }
}

/// 127.0.0.1 and ::1 only: the Host check accepts exactly these (and `localhost`).
fn is_allowed_listen_ip(ip: IpAddr) -> bool {
    ip == IpAddr::V4(Ipv4Addr::LOCALHOST) || ip == IpAddr::V6(Ipv6Addr::LOCALHOST)
}

fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(listen: &str, upstream: &str) -> GatewayConfig {
        GatewayConfig::new(
            vec![listen.parse().unwrap()],
            Url::parse(upstream).unwrap(),
            "acme",
        )
    }

    #[test]
    fn only_loopback_listen_addresses_are_accepted() {
        assert!(config("127.0.0.1:0", "https://x.snowflakecomputing.com")
            .validate()
            .is_ok());
        assert!(config("[::1]:9000", "https://x.snowflakecomputing.com")
            .validate()
            .is_ok());
        for bad in [
            "0.0.0.0:9000",
            "192.168.1.2:9000",
            "[::]:9000",
            "127.0.0.2:9000",
        ] {
            let err = config(bad, "https://x.snowflakecomputing.com")
                .validate()
                .unwrap_err();
            assert!(
                matches!(err, GatewayError::NotLoopback { .. }),
                "{bad}: {err}"
            );
            assert!(err.to_string().contains("127.0.0.1"), "{err}");
        }
    }

    #[test]
    fn plain_http_upstream_only_on_loopback() {
        assert!(config("127.0.0.1:0", "http://127.0.0.1:8080")
            .validate()
            .is_ok());
        let err = config("127.0.0.1:0", "http://x.snowflakecomputing.com")
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("https"), "{err}");
    }
}
