//! The team server's TOML config (`snowgate serve --config server.toml`).
//!
//! Like the desktop's config, it is strict: unknown keys are refused, each value is checked by
//! the type that reads it, and every error names the file, the line and the key
//! (`server.toml: line 7: key `server.listen`: ...`). `[[roles]]` has exactly the desktop's
//! shape, so a policy can be moved from solo mode to the team server unchanged.
//!
//! ```toml
//! [server]
//! listen = "0.0.0.0:8443"
//! public_url = "https://snowgate.example.com"
//! tls_cert = "/etc/snowgate/tls.pem"          # or: behind_tls_proxy = true
//! tls_key = "/etc/snowgate/tls-key.pem"
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
//! ```

use std::fmt;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};
use snowgate_grants::{GrantDuration, Policy, RoleName, RolePolicy};
use toml::Spanned;
use url::Url;

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
    #[serde(default)]
    pub roles: Vec<RoleConfig>,
    /// `[[groups]]`: group memberships the server adds to what the IdP asserts.
    #[serde(default)]
    pub groups: Vec<GroupConfig>,
}

/// How callers prove who they are (`[identity] caller_auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallerAuth {
    /// `Authorization: Bearer <IdP access token>` for `[identity] audience`.
    AccessToken,
    /// A fresh ID token (aud = `[identity] client_id`) exchanged at `POST /v1/session` for a
    /// short-lived session token that the server signs; that token is the bearer.
    IdToken,
    /// Either of the two.
    Both,
}

impl CallerAuth {
    /// Whether IdP access tokens are accepted as bearer tokens.
    pub fn accepts_access_tokens(self) -> bool {
        matches!(self, CallerAuth::AccessToken | CallerAuth::Both)
    }
    /// Whether ID tokens are exchanged for session tokens.
    pub fn exchanges_id_tokens(self) -> bool {
        matches!(self, CallerAuth::IdToken | CallerAuth::Both)
    }
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            CallerAuth::AccessToken => "access_token",
            CallerAuth::IdToken => "id_token",
            CallerAuth::Both => "both",
        }
    }
}

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
    pub lifetime: HumanDuration,
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
    pub id_token_max_age: HumanDuration,
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
    pub clock_skew: HumanDuration,
}

/// Which of the caller's attributes names them to Snowflake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserValue {
    /// The IdP subject (`sub`).
    Subject,
    /// The email claim.
    Email,
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
    pub token_lifetime: HumanDuration,
}

/// `[audit]`: who may read the audit log.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// IdP groups whose members may read, export and verify the audit log. When empty, the
    /// members of any role's approver groups may.
    #[serde(default)]
    pub reader_groups: Vec<NonEmpty>,
}

/// `[[roles]]`: a requestable Snowflake role and its policy (the desktop's shape).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    pub name: Spanned<RoleNameValue>,
    #[serde(default)]
    pub description: String,
    pub max_duration: HumanDuration,
    #[serde(default)]
    pub approvers: Vec<NonEmpty>,
    #[serde(default = "default_approvals_required")]
    pub approvals_required: PositiveCount,
    #[serde(default)]
    pub auto_approve_up_to: Option<Spanned<HumanDuration>>,
    #[serde(default = "default_pending_timeout")]
    pub pending_timeout: HumanDuration,
    #[serde(default = "default_true")]
    pub extensions: bool,
}

fn default_per_minute() -> PositiveCount {
    PositiveCount(120)
}
fn default_burst() -> PositiveCount {
    PositiveCount(30)
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
fn default_id_token_max_age() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}
fn default_session_lifetime() -> HumanDuration {
    HumanDuration(Duration::from_secs(900))
}
fn default_groups_claim() -> NonEmpty {
    NonEmpty("groups".into())
}
fn default_leeway() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_user_claim() -> NonEmpty {
    NonEmpty("sub".into())
}
fn default_user_value() -> UserValue {
    UserValue::Subject
}
fn default_token_lifetime() -> HumanDuration {
    HumanDuration(Duration::from_secs(600))
}
fn default_approvals_required() -> PositiveCount {
    PositiveCount(1)
}
fn default_pending_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(24 * 3600))
}
fn default_true() -> bool {
    true
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
    #[error("reading config at {}: {}{}", path.display(), location(*line, key.as_deref()), message)]
    Invalid {
        path: PathBuf,
        line: Option<usize>,
        key: Option<String>,
        message: String,
    },
}

fn location(line: Option<usize>, key: Option<&str>) -> String {
    let mut s = String::new();
    if let Some(line) = line {
        s.push_str(&format!("line {line}: "));
    }
    if let Some(key) = key {
        s.push_str(&format!("key `{key}`: "));
    }
    s
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
        let config: ServerConfig = toml::from_str(text).map_err(|e| {
            let (line, key) = match e.span() {
                Some(span) => (
                    Some(line_of(text, span.start)),
                    key_at(text, span.start, e.message()),
                ),
                None => (None, None),
            };
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                key,
                message: tidy_message(e.message()),
            }
        })?;
        config.validate(text, path)?;
        Ok(config)
    }

    fn validate(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let at_key = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: line_of_key(text, key),
            key: Some(key.to_string()),
            message,
        };
        let s = &self.server;
        match (s.behind_tls_proxy, &s.tls_cert, &s.tls_key) {
            (false, Some(_), Some(_)) => {}
            (false, None, _) => return Err(at_key(
                "server.tls_cert",
                "missing; set tls_cert and tls_key (PEM files), or behind_tls_proxy = true when a proxy in front terminates TLS".into(),
            )),
            (false, Some(_), None) => {
                return Err(at_key(
                    "server.tls_key",
                    "missing; tls_cert needs its private key".into(),
                ))
            }
            (true, Some(_), _) | (true, _, Some(_)) => {
                return Err(at_key(
                    "server.behind_tls_proxy",
                    "is true, so tls_cert and tls_key would not be used; remove one or the other"
                        .into(),
                ))
            }
            (true, None, None) => {}
        }
        if self.server.public_url.0.scheme() != "https" {
            return Err(at_key(
                "server.public_url",
                "must be https://: Snowflake fetches the JWKS from it".into(),
            ));
        }
        if self.minting.key_files.is_empty() {
            return Err(at_key(
                "minting.key_files",
                "is empty; list at least one RSA private key (PEM) to sign Snowflake tokens with"
                    .into(),
            ));
        }
        if self.identity.clock_skew.0 > Duration::from_secs(300) {
            return Err(at_key(
                "identity.clock_skew",
                format!(
                    "{} is too much; at most 5m of clock difference is tolerated",
                    self.identity.clock_skew
                ),
            ));
        }
        let lifetime = self.minting.token_lifetime.0;
        if lifetime < Duration::from_secs(30) || lifetime > Duration::from_secs(3600) {
            return Err(at_key(
                "minting.token_lifetime",
                format!(
                    "{} is out of range; keep it between 30s and 1h",
                    self.minting.token_lifetime
                ),
            ));
        }
        self.validate_callers(text, path)?;
        self.policy().map_err(|(i, message)| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: self
                .roles
                .get(i)
                .map(|r| line_of(text, r.name.span().start)),
            key: Some(format!("roles[{i}]")),
            message,
        })?;
        Ok(())
    }

    fn validate_callers(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let at_key = |key: &str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: line_of_key(text, key),
            key: Some(key.to_string()),
            message,
        };
        let id = &self.identity;
        let mode = id.caller_auth.as_str();
        if id.caller_auth.accepts_access_tokens() && id.audience.is_none() {
            return Err(at_key(
                "identity.audience",
                format!("missing: caller_auth = \"{mode}\" takes IdP access tokens, so set the audience (`aud`) the IdP puts in access tokens for this server's API, or use caller_auth = \"id_token\" when the IdP issues no access tokens for custom APIs"),
            ));
        }
        if id.caller_auth.exchanges_id_tokens() {
            if id.client_id.is_none() {
                return Err(at_key(
                    "identity.client_id",
                    format!("missing: caller_auth = \"{mode}\" exchanges desktops' ID tokens, so set the desktop's OAuth client id (the `aud` of its ID tokens)"),
                ));
            }
            match &self.sessions {
                None => return Err(at_key(
                    "identity.caller_auth",
                    format!("is \"{mode}\", which needs a [sessions] table with key_files: make a key with `openssl rand -out /etc/snowgate/session.key 48` and add [sessions] key_files = [\"/etc/snowgate/session.key\"]"),
                )),
                Some(s) if s.key_files.is_empty() => {
                    return Err(at_key(
                        "sessions.key_files",
                        "is empty; list at least one key file (`openssl rand -out session.key 48`)".into(),
                    ))
                }
                Some(_) => {}
            }
        }
        if let (Some(a), Some(c)) = (&id.audience, &id.client_id) {
            if a.as_str() == c.as_str() {
                return Err(at_key(
                    "identity.audience",
                    "is the desktop's client id; ID tokens carry that audience, so they would pass as access tokens. Use the API's own audience".into(),
                ));
            }
        }
        let age = id.id_token_max_age.0;
        if age < Duration::from_secs(30) || age > Duration::from_secs(600) {
            return Err(at_key(
                "identity.id_token_max_age",
                format!(
                    "{} is out of range; keep it between 30s and 10m",
                    id.id_token_max_age
                ),
            ));
        }
        if let Some(s) = &self.sessions {
            let l = s.lifetime.0;
            if l < Duration::from_secs(60) || l > Duration::from_secs(3600) {
                return Err(at_key(
                    "sessions.lifetime",
                    format!("{} is out of range; keep it between 1m and 1h", s.lifetime),
                ));
            }
        }
        if id.groups_from == GroupsFrom::Token && !self.groups.is_empty() {
            return Err(at_key(
                "identity.groups_from",
                "is \"token\", so the [[groups]] tables would be ignored; remove them or set groups_from = \"both\"".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, g) in self.groups.iter().enumerate() {
            let at = |message: String| ConfigError::Invalid {
                path: path.to_path_buf(),
                line: nth_table_line(text, "groups", i),
                key: Some(format!("groups[{i}]")),
                message,
            };
            if !seen.insert(g.name.as_str()) {
                return Err(at(format!(
                    "group {:?} is defined twice; list all its members in one [[groups]] table",
                    g.name.as_str()
                )));
            }
            if g.subjects.is_empty() && g.emails.is_empty() {
                return Err(at(format!(
                    "group {:?} has no members; list `subjects` or `emails`",
                    g.name.as_str()
                )));
            }
            if let Some(bad) = g.emails.iter().find(|e| !e.as_str().contains('@')) {
                return Err(at(format!("{:?} is not an email address", bad.as_str())));
            }
        }
        Ok(())
    }

    /// The grants policy from `[[roles]]`. Validated at load, so this succeeds on a loaded
    /// config.
    pub fn policy(&self) -> Result<Policy, (usize, String)> {
        let mut roles = Vec::new();
        for (i, r) in self.roles.iter().enumerate() {
            let name = r.name.get_ref().0.clone();
            let bad = |what: &str, e: &dyn fmt::Display| (i, format!("{what}: {e}"));
            if roles.iter().any(|p: &RolePolicy| p.name == name) {
                return Err((
                    i,
                    format!(
                        "role {name} is defined twice; each [[roles]] entry needs its own name"
                    ),
                ));
            }
            let auto = match &r.auto_approve_up_to {
                Some(d) => Some(
                    GrantDuration::new(d.get_ref().0).map_err(|e| bad("auto_approve_up_to", &e))?,
                ),
                None => None,
            };
            roles.push(RolePolicy {
                name: name.clone(),
                description: r.description.clone(),
                max_duration: GrantDuration::new(r.max_duration.0)
                    .map_err(|e| bad("max_duration", &e))?,
                approver_groups: r.approvers.iter().map(|g| g.0.clone()).collect(),
                approvals_required: NonZeroU32::new(r.approvals_required.0)
                    .ok_or_else(|| (i, "approvals_required must be at least 1".to_string()))?,
                auto_approve_up_to: auto,
                pending_timeout: GrantDuration::new(r.pending_timeout.0)
                    .map_err(|e| bad("pending_timeout", &e))?,
                extensions_allowed: r.extensions,
            });
        }
        Policy::new(roles).map_err(|e| {
            let i = match &e {
                snowgate_grants::PolicyError::DuplicateRole(n)
                | snowgate_grants::PolicyError::AutoApproveAboveMax { role: n, .. }
                | snowgate_grants::PolicyError::Unapprovable(n) => self
                    .roles
                    .iter()
                    .position(|r| &r.name.get_ref().0 == n)
                    .unwrap_or(0),
            };
            (i, e.to_string())
        })
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

/// The line of the `i`-th `[[name]]` header, if there is one.
fn nth_table_line(text: &str, name: &str, i: usize) -> Option<usize> {
    let header = format!("[[{name}]]");
    text.lines()
        .enumerate()
        .filter(|(_, l)| l.trim() == header)
        .nth(i)
        .map(|(n, _)| n + 1)
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// The line of `table.key = ...` in `text`, if it is there.
fn line_of_key(text: &str, dotted: &str) -> Option<usize> {
    let (table, key) = dotted.split_once('.')?;
    let mut in_table = false;
    for (i, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.starts_with('[') {
            in_table = l.trim_matches(|c| c == '[' || c == ']').trim() == table;
        } else if in_table
            && l.split_once('=')
                .is_some_and(|(k, _)| k.trim().trim_matches('"') == key)
        {
            return Some(i + 1);
        }
    }
    text.lines()
        .position(|l| l.trim().trim_matches(|c| c == '[' || c == ']').trim() == table)
        .map(|i| i + 1)
}

/// The dotted key an error refers to: the unknown field's name from the message, or the key
/// whose value starts at `offset`, with the enclosing table's name in front.
fn key_at(text: &str, offset: usize, message: &str) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = text[line_start..].lines().next().unwrap_or("");
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let leaf = if let Some(rest) = message.strip_prefix("unknown field `") {
        rest.split('`').next().map(str::to_string)
    } else {
        line.split_once('=')
            .map(|(k, _)| k.trim().trim_matches('"').to_string())
            .filter(|k| !k.is_empty() && !k.starts_with('['))
    };
    match (table, leaf) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (Some(t), None) => Some(t),
        (None, k) => k,
    }
}

fn tidy_message(message: &str) -> String {
    let message = message.trim();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or("");
        let expected = rest.split_once(", expected ").map(|(_, e)| e).unwrap_or("");
        return format!("unknown key `{name}` (expected {expected})");
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or("");
        return format!("missing required key `{name}`");
    }
    message.to_string()
}

/// A string that must not be blank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonEmpty(pub String);

impl NonEmpty {
    /// The value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for NonEmpty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim().is_empty() {
            Err(serde::de::Error::custom("must not be empty"))
        } else {
            Ok(NonEmpty(s))
        }
    }
}

/// A Snowflake role name, checked as the grants crate checks it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleNameValue(pub RoleName);

impl<'de> Deserialize<'de> for RoleNameValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        RoleName::new(s)
            .map(RoleNameValue)
            .map_err(serde::de::Error::custom)
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

/// An absolute `https://` URL (`http://` only for loopback hosts, for local test parts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpsUrl(pub Url);

impl<'de> Deserialize<'de> for HttpsUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let url = Url::parse(&s)
            .map_err(|e| serde::de::Error::custom(format!("{s:?} is not a URL: {e}")))?;
        let loopback = matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]"));
        match url.scheme() {
            "https" => Ok(HttpsUrl(url)),
            "http" if loopback => Ok(HttpsUrl(url)),
            _ => Err(serde::de::Error::custom(format!(
                "{s:?} must be an https:// URL"
            ))),
        }
    }
}

impl fmt::Display for HttpsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str().trim_end_matches('/'))
    }
}

/// A path to a file that exists when the config is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingFile(pub PathBuf);

impl<'de> Deserialize<'de> for ExistingFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let p = PathBuf::deserialize(d)?;
        if p.is_file() {
            Ok(ExistingFile(p))
        } else {
            Err(serde::de::Error::custom(format!(
                "no file at {}",
                p.display()
            )))
        }
    }
}

/// A duration in Snowgate's grammar: `30s`, `10m`, `2h`, `1h30m`, `1d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct HumanDuration(pub Duration);

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut secs = self.0.as_secs();
        if secs == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
            if secs >= size {
                write!(f, "{}{unit}", secs / size)?;
                secs %= size;
            }
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_duration(&s)
            .filter(|d| !d.is_zero())
            .map(HumanDuration)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "{s:?} is not a duration; write it like \"30m\", \"2h\" or \"1h30m\" (units: d, h, m, s; more than zero)"
                ))
            })
    }
}

fn parse_duration(input: &str) -> Option<Duration> {
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut parts = 0;
    for c in input.trim().chars() {
        match c {
            '0'..='9' => digits.push(c),
            'd' | 'h' | 'm' | 's' if !digits.is_empty() => {
                let n: u64 = digits.parse().ok()?;
                let unit = match c {
                    'd' => 86_400,
                    'h' => 3_600,
                    'm' => 60,
                    _ => 1,
                };
                total = n.checked_mul(unit).and_then(|v| total.checked_add(v))?;
                digits.clear();
                parts += 1;
            }
            ' ' if digits.is_empty() => {}
            _ => return None,
        }
    }
    (parts > 0 && digits.is_empty()).then(|| Duration::from_secs(total))
}

/// A secret from the config file: never printed.
#[derive(Clone)]
pub struct Secret(pub SecretString);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim().is_empty() {
            return Err(serde::de::Error::custom("must not be empty"));
        }
        Ok(Secret(SecretString::from(s)))
    }
}

impl Secret {
    /// The secret's text, for the one place that needs it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(extra: &str) -> String {
        let dir = env!("CARGO_MANIFEST_DIR");
        format!(
            r#"[server]
listen = "127.0.0.1:8443"
public_url = "https://127.0.0.1:8443"
behind_tls_proxy = true

[database]
url = "postgres://u:hunter2@127.0.0.1/db"

[identity]
issuer = "https://127.0.0.1:9000"
audience = "https://snowgate.test"

[minting]
audience = "https://snowflake.test"
key_files = ["{dir}/Cargo.toml"]
{extra}
[[roles]]
name = "ANALYST"
max_duration = "8h"
approvers = ["managers"]
"#
        )
    }

    #[test]
    fn a_complete_config_loads_with_its_policy() {
        let c = ServerConfig::parse(&base(""), Path::new("server.toml")).unwrap();
        let policy = c.policy().unwrap();
        assert_eq!(policy.roles().len(), 1);
        assert_eq!(c.minting.token_lifetime.0, Duration::from_secs(600));
        assert_eq!(c.audit_readers(), ["managers"]);
        assert!(
            !format!("{c:?}").contains("hunter2"),
            "the database URL is redacted"
        );
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let text = base("tokn_lifetime = \"5m\"\n");
        let e = ServerConfig::parse(&text, Path::new("server.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.toml"), "{e}");
        assert!(e.contains("line 16"), "{e}");
        assert!(e.contains("minting.tokn_lifetime"), "{e}");
        assert!(e.contains("unknown key"), "{e}");
    }

    #[test]
    fn a_bad_duration_says_how_to_write_one() {
        let text = base("").replace("\"8h\"", "\"8 hours\"");
        let e = ServerConfig::parse(&text, Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("roles.max_duration"), "{e}");
        assert!(e.contains("\"2h\""), "{e}");
    }

    #[test]
    fn tls_files_are_required_unless_behind_a_proxy() {
        let text = base("").replace("behind_tls_proxy = true\n", "");
        let e = ServerConfig::parse(&text, Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("server.tls_cert"), "{e}");
        assert!(e.contains("behind_tls_proxy"), "{e}");
    }

    fn id_token_base(identity: &str, tail: &str) -> String {
        let dir = env!("CARGO_MANIFEST_DIR");
        base(tail).replace(
            "audience = \"https://snowgate.test\"\n",
            &format!("{identity}\n"),
        ) + &format!("\n[sessions]\nkey_files = [\"{dir}/Cargo.toml\"]\n")
    }

    #[test]
    fn caller_auth_defaults_to_access_tokens_and_needs_an_audience() {
        let c = ServerConfig::parse(&base(""), Path::new("s.toml")).unwrap();
        assert_eq!(c.identity.caller_auth, CallerAuth::AccessToken);
        let text = base("").replace("audience = \"https://snowgate.test\"\n", "");
        let e = ServerConfig::parse(&text, Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("identity.audience"), "{e}");
        assert!(e.contains("caller_auth = \"id_token\""), "{e}");
    }

    #[test]
    fn id_token_mode_needs_a_client_id_and_session_keys_but_no_audience() {
        let good = id_token_base(
            "caller_auth = \"id_token\"\nclient_id = \"snowgate-desktop\"",
            "",
        );
        let c = ServerConfig::parse(&good, Path::new("s.toml")).unwrap();
        assert!(c.identity.audience.is_none());
        assert_eq!(c.sessions.unwrap().lifetime.0, Duration::from_secs(900));
        assert_eq!(c.identity.id_token_max_age.0, Duration::from_secs(300));

        let no_client = id_token_base("caller_auth = \"id_token\"", "");
        let e = ServerConfig::parse(&no_client, Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("identity.client_id"), "{e}");

        let no_sessions = good.split("\n[sessions]").next().unwrap().to_string();
        let e = ServerConfig::parse(&no_sessions, Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("[sessions]"), "{e}");
        assert!(e.contains("openssl rand"), "{e}");
    }

    #[test]
    fn an_api_audience_equal_to_the_client_id_is_refused() {
        let text = id_token_base(
            "caller_auth = \"both\"\nclient_id = \"snowgate-desktop\"\naudience = \"snowgate-desktop\"",
            "",
        );
        let e = ServerConfig::parse(&text, Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("ID tokens"), "{e}");
    }

    #[test]
    fn groups_tables_are_checked_with_their_line() {
        let groups = "\n[[groups]]\nname = \"managers\"\nsubjects = [\"bob\"]\n\n[[groups]]\nname = \"managers\"\nemails = [\"carol@example.com\"]\n";
        let text = base("") + groups;
        let e = ServerConfig::parse(&text, Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("groups[1]"), "{e}");
        assert!(e.contains("defined twice"), "{e}");
        assert!(
            e.contains(&format!("line {}", text.lines().count() - 2)),
            "{e}"
        );
        let text = base("") + "\n[[groups]]\nname = \"x\"\n";
        let e = ServerConfig::parse(&text, Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no members"), "{e}");
        let text = base("").replace("[identity]\n", "[identity]\ngroups_from = \"token\"\n")
            + "\n[[groups]]\nname = \"x\"\nsubjects = [\"a\"]\n";
        let e = ServerConfig::parse(&text, Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("identity.groups_from"), "{e}");
    }

    #[test]
    fn a_role_nobody_can_approve_is_refused() {
        let text = base("").replace("approvers = [\"managers\"]\n", "");
        let e = ServerConfig::parse(&text, Path::new("s.toml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("roles[0]"), "{e}");
        assert!(e.contains("could ever be approved"), "{e}");
    }
}
