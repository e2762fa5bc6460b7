//! The loopback gateway: a Snowflake endpoint on 127.0.0.1 that local BI tools and drivers log
//! in to as if it were Snowflake, and that gives them short-lived, authorized sessions.
//!
//! A tool's login is authorized by the engine (through the [`Authorizer`] trait), rewritten
//! into an External OAuth login for the grant's role, and forwarded to Snowflake over TLS. The
//! tool gets opaque handles, never Snowflake's tokens; every later request has its handle
//! mapped and streams through. When a grant ends, its sessions are closed upstream and the
//! tool is told why in a sentence.
//!
//! # Codemap
//! - [`gateway`]: [`Gateway`], the public API (bind, serve, sessions, end a grant, events).
//! - [`listener`] accepts connections (HTTPS ones through [`tls`], whose [`ServerCert`] the
//!   engine replaces while serving); [`router`] is the per-request pipeline; [`guard`] is
//!   the local-security check every request passes first.
//! - Endpoints: [`login`] (with [`login_rewrite`], the pure body edit), [`renew`], [`close`],
//!   [`passthrough`] (everything else, streamed; query-requests judged by [`statement_policy`]
//!   when the session has rules, audited by [`statement`] and [`query_id`]).
//! - [`codec`]: Snowflake's JSON bodies (gzip by magic, caps) and the Authorization header;
//!   [`snowflake_error`]: the one error type a tool ever gets from the gateway.
//! - [`handle_table`]: handles ↔ upstream tokens ↔ grants, shared by all connections;
//!   [`handle`]: the handles themselves.
//! - [`upstream`]: the pooled TLS client to Snowflake; [`closer`]: closing sessions from
//!   Snowgate's side, after [`cancel`] aborted their running queries.
//! - [`peer`]: who owns a loopback connection (`/proc/net/tcp{,6}`, `/proc/*/fd`).
//! - [`audit`]: the [`AuditLog`] the gateway waits on before it acts; [`events`]: what it
//!   records and broadcasts; [`path`]: one spelling per endpoint; [`shutdown`]: stopping every
//!   task.
//!
//! # Invariants
//! - No upstream token, handle or password is ever logged or sent to a tool.
//! - No statement goes upstream, and no session's handles go to a tool, before the audit log
//!   has kept its record; if it can't, the tool is refused with the reason (fail closed).
//! - Every request is routed on its path's normal form ([`path`]), so no spelling of an
//!   audited endpoint reaches the pass-through; spellings that can't be normalised safely are
//!   refused.
//! - Paths and query strings go upstream exactly as the tool sent them when the path was
//!   already normal (and, for the login, except its forced `roleName`); a path that was
//!   normalised goes upstream normalised.
//! - Answers stream through unbuffered, except login and token-request answers, whose tokens
//!   are swapped, and close answers (a few bytes).

mod audit;
mod authorizer;
mod cancel;
mod close;
mod closer;
mod codec;
mod config;
mod error;
mod events;
mod gateway;
mod guard;
mod handle;
mod handle_table;
mod listener;
mod local_time;
mod login;
mod login_rewrite;
mod passthrough;
mod path;
pub mod peer;
mod query_id;
mod renew;
mod router;
mod shutdown;
mod snowflake_error;
mod state;
mod statement;
mod statement_policy;
mod tls;
mod upstream;

pub use audit::{AuditLog, RecordFuture, TracingOnly, Unrecorded};
pub use authorizer::{
    AuthorizeFuture, Authorizer, LoginContext, LoginGrant, PeerInfo, Refusal, SessionPolicy,
    AGENT_SECRET_PREFIX,
};
pub use config::{
    default_serving_threads, AccountRoute, GatewayConfig, DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_DECOMPRESSED_BYTES, MAX_DEFAULT_SERVING_THREADS,
};
pub use error::GatewayError;
pub use events::{CloseReason, EndKind, EndReason, GatewayEvent, SessionId, SessionInfo, ToolInfo};
pub use gateway::Gateway;
pub use guard::{host_is_ours, web_checks};
pub use login_rewrite::{
    merge_query_tag, merge_query_tag_for, QUERY_TAG_JSON_AGENT_KEY, QUERY_TAG_JSON_KEY,
};
pub use snowflake_error::{codes, SnowflakeError};
pub use tls::ServerCert;

/// The pure parsers behind the gateway, for the fuzz targets in `fuzz/`: the body codec, path
/// normalisation and the login rewrite, without a server around them. Not a stable API.
#[doc(hidden)]
pub mod fuzzing {
    pub use crate::codec::{decode_json, encode_json, gunzip_capped, gzip, is_gzip, JsonBody};
    pub use crate::login_rewrite::{
        force_role, is_credential_field, query_param, read_login_fields, rewrite_login,
        LoginFields, Rewrite, QUERY_TAG_MAX_CHARS,
    };

    /// The normal form of a request path, or why it is refused ([`crate::path`]).
    pub fn normalize_path(path: &str) -> Result<std::borrow::Cow<'_, str>, &'static str> {
        crate::path::normalize(path)
    }

    /// Whether a normal path goes to one of the gateway's own handlers.
    pub fn is_routed(normal: &str) -> bool {
        crate::path::is_routed(normal)
    }
}
