//! The Snowgate team server, `snowgate serve`: just-in-time grants for a whole team, on
//! PostgreSQL, behind an HTTPS API.
//!
//! Desktops call it with their IdP access token, or with a session token the server signs in
//! exchange for a fresh ID token (for IdPs that mint no access tokens for custom APIs). It serves the grant lifecycle (request,
//! approve, deny, revoke, extend, cancel), the audit log, and an SSE stream of grant events, and
//! it mints Snowflake External OAuth tokens for active grants, signed with keys whose public
//! halves it publishes as a JWKS. Snowflake's security integration trusts only that JWKS, so
//! nobody gets a Snowflake session for a role without an approved, active grant.
//!
//! The server is stateless: any number of replicas share one database. The database holds the
//! grants, the hash-chained audit log and the events; deadlines are applied from it
//! ([`expiry`]), events are read from it ([`events`]), and writes are serialized by it
//! (`snowgate_grants::PgLedger`).
//!
//! - [`config`]: the TOML config, with errors that name file, line and key.
//! - [`server`]: startup (migrations, keys, listener with TLS) and shutdown; [`connection`]:
//!   the connection caps and each connection's deadlines.
//! - [`api`]: the router and handlers; [`error`] renders every refusal as JSON.
//! - [`auth`]: who is calling: IdP access tokens verified against the IdP's JWKS, or session
//!   tokens ([`session`]) signed for a fresh ID token; groups from the token and [`groups`].
//! - [`ops`]: grant operations over the ledger, under the configured policy.
//! - [`minting`]: the signing keys, minted tokens and the JWKS.
//! - [`events`], [`expiry`]: the replica's event fan-out and deadline loop.
//! - [`checkpoint`]: signed checkpoints of the audit chain's head, the chain's anchor outside
//!   the database.
//! - [`rate_limit`]: the per-person limit on mutating calls.
//! - [`reaper`]: the optional session reaper, which ends in Snowflake the sessions of grants
//!   that ended when the gateway never saw them (`snowgate token`, `snowgate exec`).

pub mod api;
pub mod auth;
pub mod checkpoint;
pub mod config;
pub mod connection;
pub mod error;
pub mod events;
pub mod expiry;
pub mod groups;
pub mod jwks;
pub mod minting;
pub mod ops;
pub mod rate_limit;
pub mod reaper;
pub mod server;
pub mod session;
pub mod state;

pub use config::{ConfigError, ServerConfig};
pub use server::{start, start_with_clock, RunningServer};
