//! Errors of setting the gateway up: configuration, certificates, binding.
//!
//! Errors a *tool* gets are not these: they are [`crate::SnowflakeError`], rendered as
//! Snowflake JSON.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Why the gateway could not be set up or started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GatewayError {
    #[error("gateway listen address {addr} is not allowed: Snowgate listens only on 127.0.0.1 or [::1], so that no other machine can reach it")]
    NotLoopback { addr: SocketAddr },
    #[error("the gateway has no listen address; give 127.0.0.1:PORT and/or [::1]:PORT")]
    NoListenAddress,
    #[error("the Snowflake URL {url} cannot be used: {reason}")]
    BadUpstream { url: String, reason: String },
    #[error("the gateway needs the Snowflake account name (ACCOUNT_NAME of every login)")]
    NoAccount,
    #[error("the Snowflake account {name:?} is configured twice; each account needs its own name")]
    DuplicateAccount { name: String },
    #[error("the gateway's body limits must be above zero")]
    ZeroLimit,
    #[error("the gateway needs at least one serving thread")]
    NoServingThread,
    #[error("reading the extra CA file {}: {source}", path.display())]
    ReadingCa {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the extra CA file {} holds no usable certificate: {reason}", path.display())]
    BadCa { path: PathBuf, reason: String },
    #[error("the gateway's HTTPS certificate can't be used: {0}")]
    ServerCert(String),
    #[error("the gateway has TLS listen addresses but no certificate to serve them with")]
    NoServerCert,
    #[error("setting up TLS to Snowflake: {0}")]
    Tls(String),
    #[error("listening on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("the gateway is already serving (serve may be called once)")]
    AlreadyServing,
    #[error("starting the gateway's serving threads: {0}")]
    Serving(std::io::Error),
}
