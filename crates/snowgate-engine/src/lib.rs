//! The Snowgate broker engine.
//!
//! One library with one API: the CLI, the tray app and the team server all call the functions
//! here. It never depends on Tauri or GTK, so it builds and tests on a headless machine.
//!
//! - [`broker`]: the long-running service behind the control socket: identity, grants
//!   (ledger, policy, audit) and the loopback gateway put together.
//! - [`backend`]: where grants live: the local ledger (solo) or the team server (team).
//! - [`team`]: the team server's client, its event stream, minted tokens, local deadlines.
//! - [`access`]: the gateway's authorizer: who may log in, as which role, with which token.
//! - [`enforcement`]: grant ends → gateway sessions cut; sign-in/out and sessions → audit.
//! - [`grant_ops`]: requests, decisions (with the approver's fresh sign-in), audit, tokens.
//! - [`anchor`]: the audit chain's head in the OS keyring.
//! - [`connect_info`]: the settings that point a local tool at the gateway.
//! - [`notices`]: which grant events become desktop notifications, and their words (pure).
//! - [`config`]: the TOML config, validated with errors that name the file, line and key.
//! - [`control`]: the control socket between the CLI and the broker (one per OS user).
//! - [`duration`]: durations as people write them (`2h`, `1h30m`), strictly parsed.
//! - [`identity`]: OIDC sign-in (PKCE, device flow), the keyring vault, token refresh.
//! - [`paths`]: where config and data live (`--config`, `$SNOWGATE_CONFIG`, XDG dirs).
//! - [`logging`]: tracing setup, as text or JSON.
//! - [`status`]: the broker's status as the UI and CLI show it.
//! - [`tool_secrets`]: optional per-tool connection secrets (keyring), checked at gateway login.
//! - [`approval_wait`]: a tool's login with no grant: the request filed for it and the wait.
//! - [`tool_asks`]: tools that logged in for a role with no grant (the tray's one-click request).
//! - [`agents`]: agent identities: a secret with a policy (roles, read-only, caps, rate, expiry).
//! - [`gateway_tls`]: the gateway's HTTPS leaf while the broker runs, renewed in place.
//! - [`local_ca`]: the per-machine local CA (loopback-only, name-constrained) and the
//!   short-lived leaves of the gateway's HTTPS listeners.

pub mod access;
pub mod agents;
pub mod anchor;
pub mod approval_wait;
pub mod backend;
pub mod broker;
pub mod config;
pub mod connect_info;
pub mod control;
pub mod doctor;
pub mod duration;
pub mod enforcement;
pub mod engine;
pub mod gateway_tls;
pub mod grant_ops;
pub mod identity;
pub mod local_ca;
pub mod logging;
pub mod notices;
pub mod paths;
pub mod sessions;
pub mod status;
pub mod team;
pub mod tool_asks;
pub mod tool_secrets;

pub use broker::Broker;
pub use config::Config;
pub use engine::Engine;
pub use status::BrokerStatus;
