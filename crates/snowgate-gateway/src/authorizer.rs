//! The boundary between the gateway and the engine: who may log in, as which role, with which
//! upstream token.
//!
//! The gateway knows Snowflake's protocol; it does not know grants, policies or identity. At
//! each login it asks an [`Authorizer`] (the engine implements it) with what the tool asked for
//! and who the tool is, and gets back either a [`LoginGrant`] (the role, the grant, the Snowflake
//! user and a short-lived upstream token) or a [`Refusal`] that the tool shows the person.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::SystemTime;

use secrecy::SecretString;

use crate::snowflake_error::codes;

/// The prefix of an agent's secret. A login whose password starts with it hands the password
/// to the authorizer (as [`LoginContext::tool_secret`]) even where tool secrets are not
/// required, so that the engine can find the agent.
pub const AGENT_SECRET_PREFIX: &str = "sga_";

/// The future [`Authorizer::authorize_login`] returns. Boxed so that the trait can be used as
/// `Arc<dyn Authorizer>`.
pub type AuthorizeFuture<'a> =
    Pin<Box<dyn Future<Output = Result<LoginGrant, Refusal>> + Send + 'a>>;

/// Decides logins. Implemented by the engine (and by thin adapters in tests).
///
/// The implementation picks the role: the `roleName` the tool asked for, or the user's only
/// active grant; with none or several it refuses with 390189, listing the active grants and
/// how to pick one. It checks the grant, and gets an upstream token for that role. A login for a
/// grant that has ended is refused with the same sentence the gateway gives a tool whose session
/// ended ([`crate::EndReason::sentence`]).
pub trait Authorizer: Send + Sync + 'static {
    /// Decides one login. Called once per login-request, and once more only after
    /// [`Authorizer::upstream_token_expired`].
    fn authorize_login(&self, login: LoginContext) -> AuthorizeFuture<'_>;

    /// Snowflake refused a login's upstream token for `role` as expired (390318) although it
    /// was handed out as fresh: the clocks disagree, as after a laptop's sleep. The
    /// implementation drops that token, so that the next [`Authorizer::authorize_login`] gets
    /// a new one; the gateway then authorizes the login once more. The default does nothing.
    fn upstream_token_expired(&self, _role: &str) {}
}

/// The process on the other end of a connection, as far as the operating system tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// The peer's loopback address and port.
    pub addr: SocketAddr,
    /// The OS user owning the peer's socket (Linux: from `/proc/net/tcp{,6}`).
    pub uid: Option<u32>,
    /// The process holding the peer's socket, found at login by scanning `/proc/*/fd`.
    pub pid: Option<u32>,
    /// That process's name (`/proc/PID/comm`).
    pub process_name: Option<String>,
}

/// What a tool's login-request asked for, and who sent it.
pub struct LoginContext {
    /// The `roleName` query parameter, decoded, if the tool sent one.
    pub requested_role: Option<String>,
    /// The tool's `LOGIN_NAME` (any name: the gateway replaces it with the grant's user).
    pub login_name: Option<String>,
    /// The tool's `ACCOUNT_NAME` (its `account` setting): which configured account it asks
    /// for. The gateway replaces it with the chosen account's identifier.
    pub account: Option<String>,
    /// `CLIENT_APP_ID`.
    pub client_app_id: Option<String>,
    /// `CLIENT_APP_VERSION`.
    pub client_app_version: Option<String>,
    /// The tool's `PASSWORD`, only when per-tool secrets are required
    /// ([`crate::GatewayConfig::require_tool_secrets`]) or it is an agent's secret (it starts
    /// with [`AGENT_SECRET_PREFIX`]); otherwise `None`, and the password is dropped unread. It
    /// is never forwarded or logged.
    pub tool_secret: Option<SecretString>,
    pub peer: PeerInfo,
}

impl fmt::Debug for LoginContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginContext")
            .field("requested_role", &self.requested_role)
            .field("login_name", &self.login_name)
            .field("account", &self.account)
            .field("client_app_id", &self.client_app_id)
            .field("client_app_version", &self.client_app_version)
            .field(
                "tool_secret",
                &self.tool_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("peer", &self.peer)
            .finish()
    }
}

/// A login the authorizer allowed.
pub struct LoginGrant {
    /// The Snowflake role: forced into the login's `roleName`.
    pub role: String,
    /// The account the login goes to: the name of one of [`crate::GatewayConfig::accounts`],
    /// matched case-insensitively; `None` is the first.
    pub account: Option<String>,
    /// The grant's id: merged into the session's QUERY_TAG and carried by every event.
    pub grant_id: String,
    /// The Snowflake user (from the identity's user claim): the login's `LOGIN_NAME`.
    pub login_name: String,
    /// An External OAuth token for `role`, sent upstream as the login's `TOKEN`.
    pub upstream_token: SecretString,
    /// When the grant ends. The validities the tool is told never reach past it, and the
    /// gateway ends the session by then even if nobody calls [`crate::Gateway::end_grant`].
    pub grant_ends_at: SystemTime,
    /// The name of the tool secret the login presented, when secrets are required: it travels
    /// on the session ([`crate::ToolInfo::secret_name`]), so revoking that secret ends exactly
    /// that tool's sessions.
    pub tool_secret_name: Option<String>,
    /// What the session may do beyond what its role's grant allows: set by the authorizer.
    pub policy: SessionPolicy,
}

/// A session's own rules, decided at login and kept for the session's life. The default (no
/// agent, any statement, no rate) costs nothing on the statement path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionPolicy {
    /// The agent whose secret the login presented: named in the session, its audit records
    /// and its QUERY_TAG (`snowgate:grant=<id>;agent=<name>`).
    pub agent: Option<String>,
    /// `Some(rule)`: only read-only statements, and `rule` says which setting asks for it
    /// (`agent bot is read-only`), for the refusal's sentence.
    pub read_only: Option<String>,
    /// The most statements the session's agent may send in any minute, across its sessions.
    pub statements_per_minute: Option<u32>,
    /// Under read-only, `LIST @stage` is allowed too (the role's `allow_list_stage`).
    pub list_stage: bool,
}

impl fmt::Debug for LoginGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginGrant")
            .field("role", &self.role)
            .field("account", &self.account)
            .field("grant_id", &self.grant_id)
            .field("login_name", &self.login_name)
            .field("upstream_token", &"<redacted>")
            .field("grant_ends_at", &self.grant_ends_at)
            .field("tool_secret_name", &self.tool_secret_name)
            .field("policy", &self.policy)
            .finish()
    }
}

/// A refused login, in Snowflake's terms: the tool shows `message` under error `code`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// A Snowflake error code, e.g. 390189 (role not granted).
    pub code: u32,
    /// A sentence the person can act on.
    pub message: String,
}

impl Refusal {
    pub fn new(code: u32, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
        }
    }

    /// A refused sign-in ([`codes::LOGIN_REFUSED`]): signed out, a missing tool secret.
    pub fn login(message: impl Into<String>) -> Refusal {
        Refusal::new(numeric(codes::LOGIN_REFUSED), message)
    }

    /// No usable grant for the role ([`codes::ROLE_NOT_GRANTED`]).
    pub fn role_not_granted(message: impl Into<String>) -> Refusal {
        Refusal::new(numeric(codes::ROLE_NOT_GRANTED), message)
    }
}

fn numeric(code: &str) -> u32 {
    code.parse().expect("Snowflake error codes are numbers")
}
