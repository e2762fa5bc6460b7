//! The broker's status as the tray, the UI and `snowgate status` show it.

use serde::Serialize;

use crate::identity::IdentityStatus;

/// A snapshot of the broker, safe to show and serialize: it holds no secrets.
#[derive(Debug, Clone, Serialize, serde::Deserialize, ts_rs::TS)]
pub struct BrokerStatus {
    /// The version of the engine.
    pub version: String,
    /// Where the user stands with the IdP.
    pub sign_in: IdentityStatus,
    /// Why the OS keyring can't be used, when it can't; sign-in then needs session-only mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub keyring_problem: Option<String>,
    /// The IdP's issuer URL.
    pub issuer: String,
    /// The default Snowflake account behind the gateway (the first of `accounts`).
    pub account: String,
    /// The Snowflake URL the gateway forwards the default account's logins to.
    pub snowflake_url: String,
    /// Every account behind the gateway, in config order.
    #[serde(default)]
    pub accounts: Vec<AccountStatus>,
    /// Every loopback address the gateway listens on: plain HTTP's, then HTTPS's.
    pub gateway_listen: Vec<String>,
    /// The roles that can be requested.
    pub roles: Vec<String>,
    /// A one-line summary for the tray's status line.
    pub summary: String,
    /// The loopback gateway: where it listens, whether it serves, how many sessions are open.
    pub gateway: GatewayStatus,
    /// `solo` (local ledger, IdP tokens) or `team` (the team server keeps the grants and
    /// mints the Snowflake tokens).
    pub mode: String,
    /// The team server's URL, in team mode.
    pub team_server: Option<String>,
    /// The team server's reachability and event stream, in team mode.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub team: Option<crate::team::TeamStatus>,
    /// Things the user should know that are not errors (e.g. the audit anchor is in memory).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// Tools that logged in for a role the person holds no grant for, in the last hour, newest
    /// first: the window offers a one-click request for each.
    #[serde(default)]
    pub tool_asks: Vec<crate::tool_asks::ToolAsk>,
}

/// One Snowflake account behind the gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ts_rs::TS)]
pub struct AccountStatus {
    /// The name tools give as their `account`.
    pub name: String,
    /// The account identifier.
    pub account: String,
    /// Where its logins go.
    pub snowflake_url: String,
}

/// The gateway's part of [`BrokerStatus`].
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, ts_rs::TS)]
pub struct GatewayStatus {
    /// The addresses it listens on (as bound; the configured ones if it could not bind).
    pub listen: Vec<String>,
    /// `serving`, `not_serving` or `stopped`.
    pub state: String,
    /// Why it is not serving, as a sentence with the fix.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub problem: Option<String>,
    /// Sessions open through it now.
    pub open_sessions: usize,
    /// Its HTTPS listeners, when `[gateway] tls = true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub tls: Option<GatewayTlsStatus>,
}

/// The gateway's HTTPS: where it listens, the CA tools trust, and when the leaf expires.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, ts_rs::TS)]
pub struct GatewayTlsStatus {
    /// The HTTPS addresses (as bound; the configured ones if it could not bind).
    pub listen: Vec<String>,
    /// The local CA's certificate (PEM), the file tools are told to trust.
    pub ca_file: String,
    /// When the leaf in use expires (RFC 3339, UTC); it is renewed before.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub leaf_expires_at: Option<String>,
}
