//! The broker's status as the tray, the UI and `snowgate status` show it.

use serde::{Deserialize, Serialize};

/// Where the user stands with the IdP.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum SignInState {
    /// Nobody is signed in.
    SignedOut,
    /// Signed in; `subject` is the IdP's subject, never a token.
    SignedIn { subject: String },
}

/// A snapshot of the broker, safe to show and serialize: it holds no secrets.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BrokerStatus {
    /// The version of the engine.
    pub version: String,
    pub sign_in: SignInState,
    /// The IdP's issuer URL.
    pub issuer: String,
    /// The Snowflake account behind the gateway.
    pub account: String,
    /// The Snowflake URL the gateway forwards to.
    pub snowflake_url: String,
    /// The loopback addresses the gateway listens on.
    pub gateway_listen: Vec<String>,
    /// The roles that can be requested.
    pub roles: Vec<String>,
    /// A one-line summary for the tray's status line.
    pub summary: String,
}
