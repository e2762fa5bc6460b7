//! The team server's TOML config (`snowgate serve --config server.toml`).
//!
//! Like the desktop's config, it is strict: unknown keys are refused, each value is checked by
//! the type that reads it, and every error names the file, the line and the key
//! (`server.toml: line 7: key `server.listen`: ...`). `[[roles]]` is the desktop's own type
//! ([`snowgate_grants::RoleConfig`], with its checks and its policy), so a policy can be moved
//! from solo mode to the team server unchanged. The values it
//! shares with the desktop's config (located errors, https URLs with the one loopback rule,
//! files, secrets, durations) are `snowgate_config`'s, so the two can't drift apart.
//!
//! ```toml
//! [server]
//! listen = "0.0.0.0:8443"
//! public_url = "https://snowgate.example.com"
//! tls_cert = "/etc/snowgate/tls.pem"          # or: behind_tls_proxy = true
//! tls_key = "/etc/snowgate/tls-key.pem"
//! # header_read_timeout = "10s"               # a request's headers, from their first byte
//! # idle_timeout = "60s"                      # waiting for a request, or a stalled one
//! # max_connections = 4096                    # open connections of this replica
//! # max_connections_per_address = 512         # of one client address
//!
//! [database]
//! url = "postgres://snowgate@db.example.com/snowgate?sslmode=verify-full"
//!
//! [identity]
//! issuer = "https://login.example.com"
//! caller_auth = "id_token"                    # or "access_token" (the default), or "both"
//! client_id = "snowgate-desktop"              # the aud of the ID tokens desktops exchange
//! # audience = "https://snowgate.example.com" # the aud of IdP access tokens ("access_token")
//!
//! [sessions]                                  # needed for caller_auth = "id_token" or "both"
//! key_files = ["/etc/snowgate/session.key"]   # 32+ random bytes each; the first signs
//!
//! [[groups]]                                  # groups the IdP does not send
//! name = "managers"
//! subjects = ["00u1abcd"]
//! emails = ["bob@example.com"]                # matched only when email_verified is true
//!
//! [minting]
//! audience = "https://acme.snowflakecomputing.com"
//! key_files = ["/etc/snowgate/signing-2025-06.pem"]
//!
//! [[roles]]
//! name = "ANALYST"
//! max_duration = "8h"
//! approvers = ["managers"]
//!
//! [reaper]                                    # optional: end ended grants' Snowflake sessions
//! account_url = "https://acme-prod.snowflakecomputing.com"
//! user = "SNOWGATE_REAPER"                    # a service user with key-pair authentication
//! private_key_file = "/etc/snowgate/reaper-key.p8"
//! role = "SNOWGATE_REAPER"
//! # account = "ACME-PROD"                     # default: account_url's first label
//! # warehouse = "MONITORING_WH"
//! # database = "SNOWGATE"                     # its INFORMATION_SCHEMA holds the functions
//! # poll_interval = "5s"
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};
use snowgate_config::ConfigText;
use snowgate_grants::Policy;
pub use snowgate_grants::RoleConfig;

pub use snowgate_config::{
    ClockSkew, ConfigDuration, ExistingFile, HttpsUrl, LocatedError, NonEmpty, Secret,
};

mod checks;
#[cfg(test)]
mod tests;

/// The whole server config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    pub server: ListenConfig,
    pub database: DatabaseConfig,
    pub identity: IdentityConfig,
    pub minting: MintingConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    /// `[sessions]`: the server's own session tokens, for callers who exchange an ID token.
    #[serde(default)]
    pub sessions: Option<SessionsConfig>,
    /// `[[snowflake]]`: the Snowflake accounts, when roles belong to more than one; each role
    /// then names its account, and tokens for it are minted with that account's settings.
    #[serde(default)]
    pub snowflake: Vec<SnowflakeAccount>,
    #[serde(default)]
    pub roles: Vec<RoleConfig>,
    /// `[[groups]]`: group memberships the server adds to what the IdP asserts.
    #[serde(default)]
    pub groups: Vec<GroupConfig>,
    /// `[reaper]`: the optional session reaper.
    #[serde(default)]
    pub reaper: Option<ReaperConfig>,
}

/// `[reaper]`: the Snowflake service user with which the server ends the sessions of grants
/// that ended (see `docs/session-reaper.md`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReaperConfig {
    /// The account's URL, `https://<account>.snowflakecomputing.com`.
    pub account_url: HttpsUrl,
    /// The account name that key-pair JWTs carry (`iss`, `sub`); by default the first label of
    /// `account_url`'s host, upper-case. Give it when the URL is not `*.snowflakecomputing.com`.
    #[serde(default)]
    pub account: Option<NonEmpty>,
    /// With `[[snowflake]]` entries: the name of the one this `account_url` is. Grants of the
    /// other accounts are not looked for here.
    #[serde(default)]
    pub snowflake: Option<NonEmpty>,
    /// The service user's login name.
    pub user: NonEmpty,
    /// The service user's RSA private key (PEM, PKCS#8 or PKCS#1, unencrypted); its public half
    /// is registered with `ALTER USER ... SET RSA_PUBLIC_KEY`.
    pub private_key_file: ExistingFile,
    /// The role that may see the users' query and login history and end their sessions.
    pub role: NonEmpty,
    /// A warehouse for the reaper's session, if the account needs one.
    #[serde(default)]
    pub warehouse: Option<NonEmpty>,
    /// A database whose INFORMATION_SCHEMA the history functions are called through (the
    /// role needs USAGE on it); by default the service user's default namespace.
    #[serde(default)]
    pub database: Option<NonEmpty>,
    /// How often the reaper looks for ended grants (between 1s and 5m); it is also woken as
    /// soon as a grant ends on this replica.
    #[serde(default = "default_reaper_poll")]
    pub poll_interval: ConfigDuration,
}

impl ReaperConfig {
    /// The account name JWTs carry: `account`, else `account_url`'s first host label;
    /// upper-case, `.` replaced by `-` as Snowflake asks of account identifiers.
    pub fn account_name(&self) -> Option<String> {
        let raw = match &self.account {
            Some(a) => a.as_str().to_string(),
            None => {
                let host = self.account_url.0.host_str()?;
                if !host.ends_with(".snowflakecomputing.com") {
                    return None;
                }
                host.split('.').next()?.to_string()
            }
        };
        Some(raw.to_uppercase().replace('.', "-"))
    }
}

/// How callers prove who they are (`[identity] caller_auth`): `access_token` (the bearer is an
/// IdP access token for `[identity] audience`), `id_token` (a fresh ID token, aud =
/// `[identity] client_id`, exchanged at `POST /v1/session` for a short-lived session token the
/// server signs) or `both`. The team API's own type, so `/healthz` reports it as configured.
pub use snowgate_grants::team_api::CallerAuth;

/// Where a caller's groups come from (`[identity] groups_from`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupsFrom {
    /// The IdP's groups claim and `[[groups]]`, merged (the default).
    Both,
    /// Only the IdP's groups claim; `[[groups]]` must be empty.
    Token,
    /// Only `[[groups]]`; the token's groups claim is ignored.
    Config,
}

/// `[sessions]`: the session tokens the server signs for callers who exchanged an ID token.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsConfig {
    /// Files holding at least 32 random bytes each (HMAC-SHA256 keys). The first signs; all
    /// verify, so a key can be rotated without signing everybody out. Every replica needs the
    /// same files.
    pub key_files: Vec<ExistingFile>,
    /// How long a session token lives (between 1m and 1h).
    #[serde(default = "default_session_lifetime")]
    pub lifetime: ConfigDuration,
}

/// `[[groups]]`: members of a group by IdP subject or by verified email.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupConfig {
    /// The group's name, as `approvers` and `reader_groups` name it.
    pub name: NonEmpty,
    /// IdP subjects (`sub`) in the group.
    #[serde(default)]
    pub subjects: Vec<NonEmpty>,
    /// Emails in the group; a caller matches only when the IdP marks the email verified.
    #[serde(default)]
    pub emails: Vec<NonEmpty>,
}

/// `[server]`: where and how the API is served.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// The address to listen on, for example `0.0.0.0:8443`.
    pub listen: SocketAddr,
    /// The URL clients and Snowflake reach the server at: the `iss` of minted tokens, and the
    /// base of the JWKS URL (`<public_url>/.well-known/jwks.json`).
    pub public_url: HttpsUrl,
    /// The TLS certificate chain (PEM). Required unless `behind_tls_proxy = true`.
    #[serde(default)]
    pub tls_cert: Option<ExistingFile>,
    /// The TLS certificate's private key (PEM).
    #[serde(default)]
    pub tls_key: Option<ExistingFile>,
    /// Serve plain HTTP because a proxy in front terminates TLS.
    #[serde(default)]
    pub behind_tls_proxy: bool,
    /// How many grant operations (requests, decisions, tokens) one person may make per minute.
    #[serde(default = "default_per_minute")]
    pub mutations_per_minute: PositiveCount,
    /// How many of them may come at once before the per-minute rate applies.
    #[serde(default = "default_burst")]
    pub mutation_burst: PositiveCount,
    /// How long a client may take to send a request's headers, from their first byte
    /// (between 1s and 5m).
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout: ConfigDuration,
    /// How long a connection may wait for its next request, and how long a request in progress
    /// may move no byte either way, before it is closed (above the event stream's 15 s
    /// keep-alive, at most 1h).
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout: ConfigDuration,
    /// The most connections this replica holds open; more are closed as they arrive.
    #[serde(default = "default_max_open")]
    pub max_connections: PositiveCount,
    /// The most connections one client address may hold open. Behind a proxy every client
    /// has the proxy's address, so there raise it to `max_connections`.
    #[serde(default = "default_max_per_address")]
    pub max_connections_per_address: PositiveCount,
}

/// `[database]`: the PostgreSQL database all replicas share.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// A `postgres://` URL. It may hold a password, so it is never printed.
    pub url: Secret,
    /// The most connections one replica opens.
    #[serde(default = "default_max_connections")]
    pub max_connections: PositiveCount,
}

/// `[identity]`: the IdP whose tokens callers present.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// The issuer; discovery is read from `<issuer>/.well-known/openid-configuration`, and
    /// tokens must carry exactly this `iss`.
    pub issuer: HttpsUrl,
    /// How callers authenticate: `access_token` (default), `id_token` or `both`.
    #[serde(default = "default_caller_auth")]
    pub caller_auth: CallerAuth,
    /// The `aud` callers' access tokens must carry (required for `access_token` and `both`).
    #[serde(default)]
    pub audience: Option<NonEmpty>,
    /// The desktop's OAuth client id: the `aud` of the ID tokens callers exchange (required
    /// for `id_token` and `both`).
    #[serde(default)]
    pub client_id: Option<NonEmpty>,
    /// How old (by `iat`) an ID token may be when it is exchanged (between 30s and 10m).
    #[serde(default = "default_id_token_max_age")]
    pub id_token_max_age: ConfigDuration,
    /// The claim that lists the caller's groups.
    #[serde(default = "default_groups_claim")]
    pub groups_claim: NonEmpty,
    /// Where groups come from: `both` (default), `token` or `config`.
    #[serde(default = "default_groups_from")]
    pub groups_from: GroupsFrom,
    /// An extra PEM trust root for reaching the IdP.
    #[serde(default)]
    pub extra_ca_file: Option<ExistingFile>,
    /// How much clock difference with the IdP is tolerated on `exp` and `nbf` (at most 5m).
    #[serde(default = "default_leeway")]
    pub clock_skew: ClockSkew,
}

/// Which of the caller's attributes names them to Snowflake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserValue {
    /// The IdP subject (`sub`).
    Subject,
    /// The email claim, only when the token marks it verified (`email_verified`).
    Email,
}

/// `[[snowflake]]`: one Snowflake account whose roles the server grants, and how tokens for it
/// are minted where it differs from `[minting]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SnowflakeAccount {
    /// The name `[[roles]] account` and the desktops' `[[snowflake]] name` use.
    pub name: toml::Spanned<NonEmpty>,
    /// The `aud` of its tokens (its security integration's EXTERNAL_OAUTH_AUDIENCE_LIST).
    /// Default: `[minting] audience`.
    #[serde(default)]
    pub audience: Option<NonEmpty>,
    /// The `iss` of its tokens (its integration's EXTERNAL_OAUTH_ISSUER). Default: the
    /// server's `public_url`.
    #[serde(default)]
    pub issuer: Option<NonEmpty>,
    /// The claim its integration maps to LOGIN_NAME. Default: `[minting] user_claim`.
    #[serde(default)]
    pub user_claim: Option<NonEmpty>,
}

/// `[minting]`: the Snowflake External OAuth tokens the server signs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MintingConfig {
    /// The `aud` of minted tokens (the security integration's EXTERNAL_OAUTH_AUDIENCE_LIST).
    pub audience: NonEmpty,
    /// The claim Snowflake maps to LOGIN_NAME (EXTERNAL_OAUTH_TOKEN_USER_MAPPING_CLAIM).
    #[serde(default = "default_user_claim")]
    pub user_claim: NonEmpty,
    /// What goes into that claim: the caller's `subject` or `email`.
    #[serde(default = "default_user_value")]
    pub user_value: UserValue,
    /// RSA private keys (PEM, PKCS#8 or PKCS#1). The first signs; all are published in the
    /// JWKS, so a new key can be added first and made the signer once Snowflake has seen it.
    pub key_files: Vec<ExistingFile>,
    /// The longest a minted token lives; it never outlives its grant either.
    #[serde(default = "default_token_lifetime")]
    pub token_lifetime: ConfigDuration,
}

/// `[audit]`: who may read the audit log, and what desktops may report to it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// IdP groups whose members may read, export and verify the audit log. When empty, the
    /// members of any role's approver groups may.
    #[serde(default)]
    pub reader_groups: Vec<NonEmpty>,
    /// How old a record a desktop reports may be (by its `at`); older ones are refused and
    /// stay in the desktop's outbox, marked refused (between 1h and 366d).
    #[serde(default = "default_report_max_age")]
    pub report_max_age: ConfigDuration,
    /// RSA private keys (PEM) that sign checkpoints of the audit chain's head. The first
    /// signs; all are published at `/v1/audit/checkpoint-key` and accepted by `audit verify`.
    /// When empty, the `[minting]` keys sign them.
    #[serde(default)]
    pub checkpoint_key_files: Vec<ExistingFile>,
    /// How often a checkpoint of the chain's head is signed, when the head has moved.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: ConfigDuration,
    /// How many records past the newest checkpoint make the next one at once, without waiting
    /// for `checkpoint_every`: a burst of records is anchored soon.
    #[serde(default = "default_checkpoint_every_records")]
    pub checkpoint_every_records: PositiveCount,
}

impl Default for AuditConfig {
    fn default() -> AuditConfig {
        AuditConfig {
            reader_groups: Vec::new(),
            report_max_age: default_report_max_age(),
            checkpoint_key_files: Vec::new(),
            checkpoint_every: default_checkpoint_every(),
            checkpoint_every_records: default_checkpoint_every_records(),
        }
    }
}

fn default_per_minute() -> PositiveCount {
    PositiveCount(120)
}
fn default_burst() -> PositiveCount {
    PositiveCount(30)
}
fn default_header_read_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(10))
}
fn default_idle_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(60))
}
fn default_max_open() -> PositiveCount {
    PositiveCount(4096)
}
fn default_max_per_address() -> PositiveCount {
    PositiveCount(512)
}
fn default_max_connections() -> PositiveCount {
    PositiveCount(10)
}
fn default_caller_auth() -> CallerAuth {
    CallerAuth::AccessToken
}
fn default_groups_from() -> GroupsFrom {
    GroupsFrom::Both
}
fn default_id_token_max_age() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(300))
}
fn default_session_lifetime() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(900))
}
fn default_groups_claim() -> NonEmpty {
    NonEmpty("groups".into())
}
fn default_leeway() -> ClockSkew {
    ClockSkew(Duration::from_secs(30))
}
fn default_user_claim() -> NonEmpty {
    NonEmpty("sub".into())
}
fn default_user_value() -> UserValue {
    UserValue::Subject
}
fn default_token_lifetime() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(600))
}
fn default_report_max_age() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(30 * 86_400))
}
fn default_checkpoint_every() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(60))
}
fn default_reaper_poll() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(5))
}
fn default_checkpoint_every_records() -> PositiveCount {
    PositiveCount(1000)
}

/// Why a config could not be used. Its `Display` names the file, the line and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read. The OS error is part of the sentence and deliberately not
    /// an error `source`, so a printed error chain shows it once.
    #[error("reading config at {}: {cause}", path.display())]
    Read {
        path: PathBuf,
        cause: std::io::Error,
    },
    /// A value or a combination of values is wrong; names the file, line and key.
    #[error(transparent)]
    Invalid(#[from] LocatedError),
}

impl ServerConfig {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<ServerConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.to_path_buf(),
            cause,
        })?;
        ServerConfig::parse(&text, path)
    }

    /// Parses and validates config text; `path` is used in error messages only.
    pub fn parse(text: &str, path: &Path) -> Result<ServerConfig, ConfigError> {
        let source = ConfigText::new(text, path);
        let config: ServerConfig = source.parse()?;
        config.validate(&source)?;
        Ok(config)
    }

    /// The grants policy from `[[roles]]`. Checked at load, so this succeeds on a loaded
    /// config; else the index of the role at fault and why.
    pub fn policy(&self) -> Result<Policy, (usize, String)> {
        snowgate_grants::role_config::policy(&self.roles)
    }

    /// The groups whose members may read the audit log.
    pub fn audit_readers(&self) -> Vec<String> {
        if self.audit.reader_groups.is_empty() {
            let mut groups: Vec<String> = self
                .roles
                .iter()
                .flat_map(|r| r.approvers.iter().map(|g| g.0.clone()))
                .collect();
            groups.sort();
            groups.dedup();
            groups
        } else {
            self.audit
                .reader_groups
                .iter()
                .map(|g| g.0.clone())
                .collect()
        }
    }
}

/// A whole number above zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PositiveCount(pub u32);

impl<'de> Deserialize<'de> for PositiveCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        u32::try_from(n)
            .ok()
            .filter(|n| *n > 0)
            .map(PositiveCount)
            .ok_or_else(|| {
                serde::de::Error::custom(format!("{n} is out of range; use a whole number above 0"))
            })
    }
}
