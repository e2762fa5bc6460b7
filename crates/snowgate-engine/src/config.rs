//! Snowgate's TOML config.
//!
//! Parsing and validation happen in one pass: each field has a type whose `Deserialize` impl
//! checks the value (a loopback address, an absolute URL, a duration within bounds), so every
//! error carries the span of the value that caused it. [`ConfigError`] turns that span into
//! `file: line N: key `a.b`: what is wrong`, which is what a person needs to fix it.
//!
//! Cross-field checks (duplicate role names, an auto-approval cap above the maximum duration)
//! run after parsing and also point at the offending key.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use toml::Spanned;
use url::Url;

pub use crate::identity::preset::{
    AudienceParameter, ConsentPrompt, GroupsForm, OfflineAccess, Preset, Provider, ProviderSettings,
};

/// The gateway's default listen address: loopback only, a fixed port so tool settings stay valid.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8765";

/// The whole config file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub identity: IdentityConfig,
    pub snowflake: SnowflakeConfig,
    #[serde(default)]
    pub gateway: GatewayConfig,
    #[serde(default)]
    pub roles: Vec<RoleConfig>,
    #[serde(default)]
    pub audit: AuditConfig,
    /// `[team]`: the team server, when the broker runs in team mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub team: Option<TeamConfig>,
}

/// `[team]`: the team server (`snowgate serve`) that keeps the grants and signs the Snowflake
/// tokens. Without it the broker runs in solo mode on its local ledger.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TeamConfig {
    /// The server's base URL; https (http only for loopback test parts).
    pub server: ServerUrl,
    /// The resource indicator (RFC 8707) of the server's API at the IdP: the `aud` the server
    /// requires of callers' access tokens (its `[identity] audience`). Default: `server`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience: Option<NonEmpty>,
    /// An extra PEM trust root for the server; default: `[identity] extra_ca_file`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_ca_file: Option<ExistingFile>,
    /// How the desktop authenticates to the server; must match the server's
    /// `[identity] caller_auth`. Default: `access_token`.
    #[serde(default)]
    pub auth: TeamAuth,
}

/// `[team] auth`: what the desktop sends the team server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TeamAuth {
    /// An IdP access token for `[team] audience` as the bearer on every call.
    #[default]
    AccessToken,
    /// A fresh ID token, exchanged at `POST /v1/session` for the server's session token,
    /// which is then the bearer; renewed before it expires. No access token is asked for.
    IdToken,
}

impl TeamAuth {
    /// The config spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            TeamAuth::AccessToken => "access_token",
            TeamAuth::IdToken => "id_token",
        }
    }
}

impl TeamConfig {
    /// The audience asked of the IdP for the server's API: `audience`, else the server URL
    /// without a trailing slash.
    pub fn effective_audience(&self) -> String {
        match &self.audience {
            Some(a) => a.as_str().to_string(),
            None => self.server.0.as_str().trim_end_matches('/').to_string(),
        }
    }
}

/// The team server's base URL: an [`HttpsUrl`] without credentials, query or fragment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ServerUrl(pub Url);

impl<'de> Deserialize<'de> for ServerUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let HttpsUrl(url) = HttpsUrl::deserialize(d)?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(serde::de::Error::custom(
                "the team server's URL must not carry a user name or password; the broker signs in with your IdP access token",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(serde::de::Error::custom(format!(
                "\"{url}\" must be the server's base URL, without `?query` or `#fragment`"
            )));
        }
        Ok(ServerUrl(url))
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str().trim_end_matches('/'))
    }
}

/// `[audit]`: what the audit log keeps.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// Keep the SQL text of each statement in the audit log (off: only its SHA-256).
    #[serde(default)]
    pub statement_text: bool,
}

/// `[identity]`: the company's OpenID Connect provider.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// The issuer URL; discovery is read from `<issuer>/.well-known/openid-configuration`.
    pub issuer: HttpsUrl,
    /// The OAuth client id of Snowgate's public (PKCE) client at the IdP.
    pub client_id: NonEmpty,
    /// A client secret, only for IdPs that cannot register a public client. Redacted on output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<Secret>,
    /// Scopes asked for at sign-in, besides one `session:role:NAME` scope per configured role.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<NonEmpty>,
    /// Which kind of provider this is: a preset for the keys below that it decides
    /// (`generic`, `entra`, `okta`, `auth0`, `keycloak`, `google`). Each can be overridden.
    #[serde(default)]
    pub provider: Provider,
    /// How `snowflake_audience` is asked for: `resource` (RFC 8707), `audience`,
    /// `scope_prefix` or `none`. Default: the provider's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audience_parameter: Option<AudienceParameter>,
    /// When the browser sign-in sends `prompt=consent`: `retry` (once more, when no refresh
    /// token came back), `always` or `never`. Default: the provider's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent_prompt: Option<ConsentPrompt>,
    /// How a refresh token is asked for: `scope` (`offline_access`) or `access_type`
    /// (`access_type=offline`). Default: the provider's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offline_access: Option<OfflineAccess>,
    /// The claim (in the ID token or userinfo) that lists the user's groups. Default: the
    /// provider's (`groups`; Auth0 has none, so it must be set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups_claim: Option<NonEmpty>,
    /// How the provider writes groups, and so how `approvers` must be written: `names`,
    /// `paths`, `object_ids` or `none`. Default: the provider's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups_form: Option<GroupsForm>,
    /// The resource indicator (RFC 8707) for access tokens that Snowflake accepts. Required in
    /// solo mode; in team mode the team server mints Snowflake's tokens and this is unused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snowflake_audience: Option<NonEmpty>,
    /// An extra PEM trust root for the IdP and Snowflake, added to the built-in web roots.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_ca_file: Option<ExistingFile>,
    /// How much clock difference with the IdP is tolerated when checking token times (at most 5m).
    #[serde(default = "default_clock_skew")]
    pub clock_skew: ClockSkew,
    /// Overrides the device flow's poll interval (for tests against IdPs that send none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_poll_interval: Option<ConfigDuration>,
}

/// `[snowflake]`: the account behind the gateway.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SnowflakeConfig {
    /// The account identifier, for example `acme-prod` or `xy12345.eu-central-1`.
    pub account: AccountName,
    /// Snowflake's URL. Defaults to `https://<account>.snowflakecomputing.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<HttpsUrl>,
    /// The token claim that holds the user's Snowflake LOGIN_NAME (the security integration's
    /// TOKEN_USER_MAPPING_CLAIM). Default: the identity provider preset's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_claim: Option<NonEmpty>,
}

impl SnowflakeConfig {
    /// The user claim: the configured one, else `sub` (filled from the preset at load).
    pub fn user_claim(&self) -> &str {
        self.user_claim
            .as_ref()
            .map(|c| c.as_str())
            .unwrap_or("sub")
    }
}

impl IdentityConfig {
    /// The provider settings sign-in works from: the preset with this config's overrides.
    pub fn provider_settings(&self) -> ProviderSettings {
        let preset = Preset::of(self.provider);
        ProviderSettings {
            provider: self.provider,
            audience_parameter: self.audience_parameter.unwrap_or(preset.audience_parameter),
            consent_prompt: self.consent_prompt.unwrap_or(preset.consent_prompt),
            offline_access: self.offline_access.unwrap_or(preset.offline_access),
            groups_claim: self.groups_claim().to_string(),
            groups_form: self.groups_form.unwrap_or(preset.groups_form),
        }
    }

    /// The groups claim: the configured one, else the preset's (`groups`).
    pub fn groups_claim(&self) -> &str {
        self.groups_claim
            .as_ref()
            .map(|c| c.as_str())
            .or(Preset::of(self.provider).groups_claim)
            .unwrap_or("groups")
    }
}

impl SnowflakeConfig {
    /// The URL the gateway forwards to: the configured one or the account's default.
    pub fn effective_url(&self) -> Url {
        match &self.url {
            Some(url) => url.0.clone(),
            None => Url::parse(&format!(
                "https://{}.snowflakecomputing.com",
                self.account.0
            ))
            .expect("account names are validated to form a host name"),
        }
    }
}

/// `[gateway]`: the loopback endpoint that tools connect to.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayConfig {
    /// Loopback addresses to listen on: one address, or a list (for example IPv4 and IPv6).
    #[serde(default = "default_listen")]
    pub listen: ListenAddrs,
    /// Require each tool to log in with its own connection secret as the password
    /// (`snowgate tool-secret create NAME`).
    #[serde(default)]
    pub require_tool_secrets: bool,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: default_listen(),
            require_tool_secrets: false,
        }
    }
}

/// `[[roles]]`: a Snowflake role that can be requested, and the policy for it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    /// The Snowflake role name, as in `session:role:NAME`.
    pub name: Spanned<RoleName>,
    /// What the role is for, shown in the request form.
    #[serde(default)]
    pub description: String,
    /// The longest grant anyone may ask for.
    pub max_duration: ConfigDuration,
    /// IdP groups whose members may decide on requests for this role.
    #[serde(default)]
    pub approvers: Vec<NonEmpty>,
    /// How many distinct approvals activate a request.
    #[serde(default = "default_approvals_required")]
    pub approvals_required: ApprovalCount,
    /// Requests up to this duration are approved by policy, without an approver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_approve_up_to: Option<Spanned<ConfigDuration>>,
    /// How long a request may wait for a decision before it times out.
    #[serde(default = "default_pending_timeout")]
    pub pending_timeout: ConfigDuration,
    /// Whether an active grant may be extended (each extension is a new decision).
    #[serde(default = "default_true")]
    pub extensions: bool,
}

fn default_scopes() -> Vec<NonEmpty> {
    ["openid", "profile", "email", "offline_access"]
        .into_iter()
        .map(|s| NonEmpty(s.to_string()))
        .collect()
}
fn default_clock_skew() -> ClockSkew {
    ClockSkew(Duration::from_secs(60))
}
fn default_listen() -> ListenAddrs {
    ListenAddrs(vec![DEFAULT_LISTEN.parse().unwrap()])
}
fn default_approvals_required() -> ApprovalCount {
    ApprovalCount(1)
}
fn default_pending_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(24 * 3600))
}
fn default_true() -> bool {
    true
}

/// Why a config could not be used. Its `Display` names the file, the line and the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading config at {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("no config file at {} ({how_found}); create one (see the README's config reference) or pass --config PATH", path.display())]
    Missing { path: PathBuf, how_found: String },
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

impl Config {
    /// Reads and validates the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates config text; `path` is used in error messages only.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| {
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
        let mut config = config;
        config.validate(text, path)?;
        config.validate_provider(text, path)?;
        config.fill_in_preset();
        Ok(config)
    }

    /// Writes the preset's values into the keys the config left out, so the effective config
    /// shows them.
    fn fill_in_preset(&mut self) {
        let preset = Preset::of(self.identity.provider);
        let settings = self.identity.provider_settings();
        let id = &mut self.identity;
        id.audience_parameter = Some(settings.audience_parameter);
        id.consent_prompt = Some(settings.consent_prompt);
        id.offline_access = Some(settings.offline_access);
        id.groups_form = Some(settings.groups_form);
        id.groups_claim = Some(NonEmpty(settings.groups_claim));
        if self.snowflake.user_claim.is_none() {
            self.snowflake.user_claim = Some(NonEmpty(preset.user_claim.to_string()));
        }
    }

    /// Checks that the provider preset and its overrides can work with the rest of the config.
    fn validate_provider(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let at = |needle: &str| {
            let i = text.find(needle).unwrap_or(0);
            Some(line_of(text, i))
        };
        let invalid = |needle: &str, key: &str, message: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            line: at(needle),
            key: Some(key.to_string()),
            message,
        };
        let id = &self.identity;
        let preset = Preset::of(id.provider);
        let settings = id.provider_settings();
        if preset.groups_claim.is_none() && id.groups_claim.is_none() {
            return Err(invalid(
                "provider",
                "identity.groups_claim",
                format!(
                    "missing: {} sends groups only in a namespaced custom claim that an Action adds, so name it, e.g. groups_claim = \"https://example.com/groups\"",
                    id.provider.as_str()
                ),
            ));
        }
        if self.team.is_none() && !preset.solo {
            return Err(invalid(
                "provider",
                "identity.provider",
                format!(
                    "{} gives no access tokens for Snowflake, so it works only in team mode, where the team server mints Snowflake's tokens; add [team] server = \"...\"",
                    id.provider.as_str()
                ),
            ));
        }
        if settings.audience_parameter == AudienceParameter::ScopePrefix {
            if let Some(a) = &id.snowflake_audience {
                if a.as_str().trim_end_matches('/').is_empty() {
                    return Err(invalid(
                        "snowflake_audience",
                        "identity.snowflake_audience",
                        "must be the API's Application ID URI (e.g. \"api://snowflake\") when audience_parameter = \"scope_prefix\"".into(),
                    ));
                }
            }
        }
        for (i, role) in self.roles.iter().enumerate() {
            for approver in &role.approvers {
                let group = approver.as_str();
                if settings.groups_form != GroupsForm::None && !settings.groups_form.fits(group) {
                    // The approvers line of this role (no span is kept for list items).
                    let from = role.name.span().start;
                    let at = text[from..]
                        .find("approvers")
                        .map(|i| from + i)
                        .unwrap_or(from);
                    let line = Some(line_of(text, at));
                    return Err(ConfigError::Invalid {
                        path: path.to_path_buf(),
                        line,
                        key: Some(format!("roles[{i}].approvers")),
                        message: format!(
                            "{group:?} is not how this provider names groups: identity.groups_form is {:?}{}, so write approvers like {} (or set identity.groups_form = \"{}\")",
                            settings.groups_form.as_str(),
                            if id.groups_form.is_none() { format!(" (the {} preset)", id.provider.as_str()) } else { String::new() },
                            settings.groups_form.example(),
                            GroupsForm::of(group).as_str(),
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    fn validate(&self, text: &str, path: &Path) -> Result<(), ConfigError> {
        let invalid =
            |span: std::ops::Range<usize>, key: String, message: String| ConfigError::Invalid {
                path: path.to_path_buf(),
                line: Some(line_of(text, span.start)),
                key: Some(key),
                message,
            };
        if self.team.is_none() && self.identity.snowflake_audience.is_none() {
            let at = text.find("[identity]").unwrap_or(0);
            return Err(invalid(
                at..at,
                "identity.snowflake_audience".into(),
                "missing: in solo mode Snowgate asks the identity provider for Snowflake's tokens, so set the resource (audience) Snowflake's security integration accepts, e.g. snowflake_audience = \"https://snowflake.example.com\" (or add [team] server = \"...\" to use a team server)".into(),
            ));
        }
        if let Some(team) = &self.team {
            if team.auth == TeamAuth::IdToken && team.audience.is_some() {
                let at = text.find("[team]").unwrap_or(0);
                return Err(invalid(
                    at..at,
                    "team.audience".into(),
                    "is set, but auth = \"id_token\" asks the identity provider for no access token (the ID token is exchanged at the server); remove audience, or use auth = \"access_token\"".into(),
                ));
            }
            if team.auth == TeamAuth::AccessToken && !Preset::of(self.identity.provider).solo {
                let at = text.find("[team]").unwrap_or(0);
                return Err(invalid(
                    at..at,
                    "team.auth".into(),
                    format!(
                        "is \"access_token\" (the default), but {} mints no access tokens for the team server's API; set auth = \"id_token\" here and caller_auth = \"id_token\" (or \"both\") in the server's [identity]",
                        self.identity.provider.as_str()
                    ),
                ));
            }
        }
        let mut seen: Vec<&str> = Vec::new();
        for (i, role) in self.roles.iter().enumerate() {
            let name = role.name.get_ref().as_str();
            if seen.contains(&name) {
                return Err(invalid(
                    role.name.span(),
                    format!("roles[{i}].name"),
                    format!(
                        "role {name} is defined twice; each [[roles]] entry needs its own name"
                    ),
                ));
            }
            seen.push(name);
            if let Some(cap) = &role.auto_approve_up_to {
                if cap.get_ref().0 > role.max_duration.0 {
                    return Err(invalid(
                        cap.span(),
                        format!("roles[{i}].auto_approve_up_to"),
                        format!(
                            "{} is longer than max_duration ({}); lower it or raise max_duration",
                            cap.get_ref(),
                            role.max_duration
                        ),
                    ));
                }
            }
            if role.approvers.is_empty() && role.auto_approve_up_to.is_none() {
                return Err(invalid(
                    role.name.span(),
                    format!("roles[{i}]"),
                    format!(
                        "role {name} has no `approvers` and no `auto_approve_up_to`, so no request for it could ever be approved"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// The role with this name, if configured.
    pub fn role(&self, name: &str) -> Option<&RoleConfig> {
        self.roles
            .iter()
            .find(|r| r.name.get_ref().as_str() == name)
    }

    /// The effective config as TOML, with defaults filled in and secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serializes to TOML")
    }
}

/// 1-based line number of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
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

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The value as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                let check: fn(&str) -> Result<(), String> = $check;
                check(&s).map_err(serde::de::Error::custom)?;
                Ok($name(s))
            }
        }
    };
}

string_newtype!(
    /// A string that must not be empty or blank.
    NonEmpty,
    |s| if s.trim().is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(())
    }
);

string_newtype!(
    /// A Snowflake role name: letters, digits, `_` and `$`, not starting with a digit.
    RoleName,
    |s| {
        let ok = !s.is_empty()
            && s.len() <= 255
            && !s.starts_with(|c: char| c.is_ascii_digit())
            && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{s:?} is not a Snowflake role name (letters, digits, `_` and `$`, not starting with a digit)"
            ))
        }
    }
);

string_newtype!(
    /// A Snowflake account identifier, usable as the first label of a host name.
    AccountName,
    |s| {
        let ok = !s.is_empty()
            && s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{s:?} is not a Snowflake account identifier (for example `acme-prod` or `xy12345.eu-central-1`)"
            ))
        }
    }
);

/// An absolute `https://` URL; `http://` is accepted only for loopback hosts (local test parts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct HttpsUrl(pub Url);

impl<'de> Deserialize<'de> for HttpsUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let url = Url::parse(&s)
            .map_err(|e| serde::de::Error::custom(format!("{s:?} is not a URL: {e}")))?;
        let loopback = matches!(
            url.host(),
            Some(url::Host::Ipv4(ip)) if ip.is_loopback()
        ) || matches!(url.host(), Some(url::Host::Ipv6(ip)) if ip.is_loopback())
            || url.host_str() == Some("localhost");
        match url.scheme() {
            "https" => Ok(HttpsUrl(url)),
            "http" if loopback => Ok(HttpsUrl(url)),
            _ => Err(serde::de::Error::custom(format!(
                "{s:?} must be an https:// URL (http:// is allowed only for 127.0.0.1, [::1] and localhost)"
            ))),
        }
    }
}

impl fmt::Display for HttpsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// A path to a file that exists when the config is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ExistingFile(pub PathBuf);

impl<'de> Deserialize<'de> for ExistingFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = PathBuf::from(String::deserialize(d)?);
        if s.is_file() {
            Ok(ExistingFile(s))
        } else {
            Err(serde::de::Error::custom(format!(
                "{} does not exist or is not a file",
                s.display()
            )))
        }
    }
}

/// One or more loopback socket addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ListenAddrs(pub Vec<SocketAddr>);

impl<'de> Deserialize<'de> for ListenAddrs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        let items = match OneOrMany::deserialize(d)? {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        };
        if items.is_empty() {
            return Err(serde::de::Error::custom(
                "needs at least one address, for example \"127.0.0.1:8765\"",
            ));
        }
        let mut addrs = Vec::new();
        for s in items {
            let addr: SocketAddr = s.parse().map_err(|_| {
                serde::de::Error::custom(format!(
                    "{s:?} is not an address with a port, for example \"127.0.0.1:8765\" or \"[::1]:8765\""
                ))
            })?;
            if !addr.ip().is_loopback() {
                return Err(serde::de::Error::custom(format!(
                    "{s:?} is not a loopback address; the gateway serves only this machine, so use 127.0.0.1 or [::1]"
                )));
            }
            addrs.push(addr);
        }
        Ok(ListenAddrs(addrs))
    }
}

/// A duration written like `30m`, `2h` or `1h 30m`, at least one second and at most a year.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::duration::format(self.0))
    }
}

impl Serialize for ConfigDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let parsed = crate::duration::parse(&s).map_err(serde::de::Error::custom)?;
        if parsed < Duration::from_secs(1) {
            return Err(serde::de::Error::custom(format!(
                "{s:?} is too short; use at least 1s"
            )));
        }
        if parsed > Duration::from_secs(366 * 24 * 3600) {
            return Err(serde::de::Error::custom(format!(
                "{s:?} is longer than a year"
            )));
        }
        Ok(ConfigDuration(parsed))
    }
}

/// A tolerated clock difference: `0s` up to `5m`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockSkew(pub Duration);

impl Serialize for ClockSkew {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::duration::format(self.0))
    }
}

impl<'de> Deserialize<'de> for ClockSkew {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let parsed = crate::duration::parse(&s).map_err(serde::de::Error::custom)?;
        if parsed > Duration::from_secs(300) {
            return Err(serde::de::Error::custom(format!(
                "{s:?} is too much clock skew to tolerate; use at most 5m and fix the clock"
            )));
        }
        Ok(ClockSkew(parsed))
    }
}

/// How many approvals a request needs: 1 to 10.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ApprovalCount(pub u8);

impl<'de> Deserialize<'de> for ApprovalCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        if (1..=10).contains(&n) {
            Ok(ApprovalCount(n as u8))
        } else {
            Err(serde::de::Error::custom(format!(
                "{n} is out of range; a request needs between 1 and 10 approvals"
            )))
        }
    }
}

/// A secret from the config file: never printed, never serialized in the clear.
#[derive(Clone)]
pub struct Secret(pub SecretString);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() {
            return Err(serde::de::Error::custom("must not be empty"));
        }
        Ok(Secret(SecretString::from(s)))
    }
}

impl Secret {
    /// The secret's value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[identity]
issuer = "https://idp.example.com"
client_id = "snowgate-desktop"
snowflake_audience = "https://snowflake.example.com"

[snowflake]
account = "acme-prod"
user_claim = "email"

[[roles]]
name = "ANALYST"
description = "Read the marts"
max_duration = "8h"
approvers = ["managers"]
auto_approve_up_to = "1h"
"#;

    fn parse(text: &str) -> Result<Config, String> {
        Config::parse(text, Path::new("/etc/snowgate.toml")).map_err(|e| e.to_string())
    }

    #[test]
    fn a_minimal_config_gets_defaults() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.gateway.listen.0, vec![DEFAULT_LISTEN.parse().unwrap()]);
        assert!(!c.gateway.require_tool_secrets);
        assert_eq!(
            c.snowflake.effective_url().as_str(),
            "https://acme-prod.snowflakecomputing.com/"
        );
        assert_eq!(c.identity.groups_claim(), "groups");
        let role = c.role("ANALYST").unwrap();
        assert_eq!(role.max_duration.0, Duration::from_secs(8 * 3600));
        assert_eq!(role.approvals_required.0, 1);
        assert!(role.extensions);
    }

    fn with_provider(lines: &str) -> String {
        GOOD.replace(
            "client_id = \"snowgate-desktop\"",
            &format!("client_id = \"snowgate-desktop\"\n{lines}"),
        )
        .replace("user_claim = \"email\"\n", "")
    }

    #[test]
    fn a_provider_preset_fills_in_its_keys_and_each_can_be_overridden() {
        let c = parse(GOOD).unwrap();
        let s = c.identity.provider_settings();
        assert_eq!(s.provider, Provider::Generic);
        assert_eq!(s.audience_parameter, AudienceParameter::Resource);
        assert_eq!(s.consent_prompt, ConsentPrompt::Retry);

        let text = with_provider("provider = \"entra\"").replace(
            "approvers = [\"managers\"]",
            "approvers = [\"6f1c2a9e-3b7d-4c1e-9a2f-0d8b5e4c3a21\"]",
        );
        let c = parse(&text).unwrap();
        let s = c.identity.provider_settings();
        assert_eq!(s.audience_parameter, AudienceParameter::ScopePrefix);
        assert_eq!(s.groups_form, GroupsForm::ObjectIds);
        assert_eq!(s.consent_prompt, ConsentPrompt::Never);
        assert_eq!(c.snowflake.user_claim(), "preferred_username");
        // The effective config shows what the preset decided.
        let shown = c.to_redacted_toml();
        assert!(
            shown.contains("audience_parameter = \"scope_prefix\""),
            "{shown}"
        );
        assert!(
            shown.contains("user_claim = \"preferred_username\""),
            "{shown}"
        );

        let text = text.replace(
            "provider = \"entra\"",
            "provider = \"entra\"\nconsent_prompt = \"retry\"\naudience_parameter = \"resource\"",
        );
        let s = parse(&text).unwrap().identity.provider_settings();
        assert_eq!(s.consent_prompt, ConsentPrompt::Retry);
        assert_eq!(s.audience_parameter, AudienceParameter::Resource);
        assert_eq!(s.groups_form, GroupsForm::ObjectIds);
    }

    #[test]
    fn a_preset_that_cannot_work_with_the_rest_of_the_config_is_a_located_error() {
        let err = parse(&with_provider("provider = \"auth0\"")).unwrap_err();
        assert!(err.contains("line 5: key `identity.groups_claim`"), "{err}");
        assert!(err.contains("namespaced custom claim"), "{err}");

        let err = parse(&with_provider("provider = \"google\"")).unwrap_err();
        assert!(err.contains("key `identity.provider`"), "{err}");
        assert!(err.contains("only in team mode"), "{err}");

        let err = parse(&with_provider("provider = \"keycloak\"")).unwrap_err();
        assert!(err.contains("line 15: key `roles[0].approvers`"), "{err}");
        assert!(err.contains("\"/managers\""), "{err}");

        let err = parse(&with_provider("provider = \"azure\"")).unwrap_err();
        assert!(err.contains("line 5: key `identity.provider`"), "{err}");
        assert!(err.contains("entra"), "{err}");
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        let text = GOOD.replace(
            "user_claim = \"email\"",
            "user_claim = \"email\"\nrol = \"X\"",
        );
        let err = parse(&text).unwrap_err();
        assert!(err.contains("/etc/snowgate.toml"), "{err}");
        assert!(err.contains("line 10"), "{err}");
        assert!(err.contains("key `snowflake.rol`"), "{err}");
        assert!(err.contains("unknown key `rol`"), "{err}");
    }

    #[test]
    fn non_loopback_listen_is_refused() {
        let text = format!("{GOOD}\n[gateway]\nlisten = \"0.0.0.0:8765\"\n");
        let err = parse(&text).unwrap_err();
        assert!(err.contains("not a loopback address"), "{err}");
        assert!(err.contains("key `gateway.listen`"), "{err}");
    }

    #[test]
    fn tool_secrets_can_be_required() {
        let text = format!("{GOOD}\n[gateway]\nrequire_tool_secrets = true\n");
        assert!(parse(&text).unwrap().gateway.require_tool_secrets);
    }

    #[test]
    fn ipv4_and_ipv6_loopback_can_both_be_listened_on() {
        let text = format!("{GOOD}\n[gateway]\nlisten = [\"127.0.0.1:9000\", \"[::1]:9000\"]\n");
        let c = parse(&text).unwrap();
        assert_eq!(c.gateway.listen.0.len(), 2);
    }

    #[test]
    fn unparseable_duration_says_how_to_write_one() {
        let text = GOOD.replace("\"8h\"", "\"2 hrs\"");
        let err = parse(&text).unwrap_err();
        assert!(err.contains("\"2 hrs\" is not a duration"), "{err}");
        assert!(err.contains("max_duration"), "{err}");
    }

    #[test]
    fn plain_http_issuer_is_refused_unless_loopback() {
        let err =
            parse(&GOOD.replace("https://idp.example.com", "http://idp.example.com")).unwrap_err();
        assert!(err.contains("must be an https:// URL"), "{err}");
        parse(&GOOD.replace("https://idp.example.com", "http://127.0.0.1:9999")).unwrap();
    }

    #[test]
    fn auto_approval_above_the_maximum_is_refused() {
        let err = parse(&GOOD.replace("\"1h\"", "\"9h\"")).unwrap_err();
        assert!(err.contains("roles[0].auto_approve_up_to"), "{err}");
        assert!(err.contains("longer than max_duration"), "{err}");
    }

    #[test]
    fn duplicate_roles_are_refused() {
        let text = format!(
            "{GOOD}\n[[roles]]\nname = \"ANALYST\"\nmax_duration = \"1h\"\napprovers = [\"x\"]\n"
        );
        let err = parse(&text).unwrap_err();
        assert!(err.contains("defined twice"), "{err}");
    }

    #[test]
    fn a_role_nobody_can_approve_is_refused() {
        let text = format!("{GOOD}\n[[roles]]\nname = \"LONELY\"\nmax_duration = \"1h\"\n");
        let err = parse(&text).unwrap_err();
        assert!(err.contains("could ever be approved"), "{err}");
    }

    #[test]
    fn missing_section_is_named() {
        let err = parse(
            "[identity]\nissuer = \"https://x\"\nclient_id = \"c\"\nsnowflake_audience = \"a\"\n",
        )
        .unwrap_err();
        assert!(err.contains("missing required key `snowflake`"), "{err}");
    }

    #[test]
    fn without_a_team_table_the_broker_is_in_solo_mode() {
        assert!(parse(GOOD).unwrap().team.is_none());
    }

    #[test]
    fn a_team_server_is_read_with_its_audience_defaulting_to_its_url() {
        let text = format!("{GOOD}\n[team]\nserver = \"https://snowgate.example.com/\"\n");
        let team = parse(&text).unwrap().team.unwrap();
        assert_eq!(team.server.to_string(), "https://snowgate.example.com");
        assert_eq!(team.effective_audience(), "https://snowgate.example.com");
        assert!(team.extra_ca_file.is_none());
        let text = format!(
            "{GOOD}\n[team]\nserver = \"https://snowgate.example.com\"\naudience = \"api://snowgate\"\n"
        );
        let team = parse(&text).unwrap().team.unwrap();
        assert_eq!(team.effective_audience(), "api://snowgate");
    }

    #[test]
    fn the_snowflake_audience_is_required_in_solo_mode_only() {
        let without = GOOD.replace(
            "snowflake_audience = \"https://snowflake.example.com\"\n",
            "",
        );
        assert_ne!(without, GOOD);
        let err = parse(&without).unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        assert!(err.contains("identity.snowflake_audience"), "{err}");
        assert!(err.contains("missing"), "{err}");
        let team = format!("{without}\n[team]\nserver = \"https://snowgate.example.com\"\n");
        let c = parse(&team).unwrap();
        assert!(c.identity.snowflake_audience.is_none());
    }

    #[test]
    fn an_id_token_only_provider_needs_id_token_caller_auth() {
        let google = GOOD.replace(
            "snowflake_audience = \"https://snowflake.example.com\"\n",
            "provider = \"google\"\n",
        );
        let text = format!("{google}\n[team]\nserver = \"https://snowgate.example.com\"\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("key `team.auth`"), "{err}");
        assert!(err.contains("auth = \"id_token\""), "{err}");
        let text = format!(
            "{google}\n[team]\nserver = \"https://snowgate.example.com\"\nauth = \"id_token\"\n"
        );
        assert!(parse(&text).is_ok(), "{:?}", parse(&text).err());
    }

    #[test]
    fn team_auth_defaults_to_access_tokens_and_id_token_mode_takes_no_audience() {
        let text = format!("{GOOD}\n[team]\nserver = \"https://snowgate.example.com\"\n");
        assert_eq!(
            parse(&text).unwrap().team.unwrap().auth,
            TeamAuth::AccessToken
        );
        let text = format!(
            "{GOOD}\n[team]\nserver = \"https://snowgate.example.com\"\nauth = \"id_token\"\n"
        );
        assert_eq!(parse(&text).unwrap().team.unwrap().auth, TeamAuth::IdToken);
        let text = format!("{GOOD}\n[team]\nserver = \"https://snowgate.example.com\"\nauth = \"id_token\"\naudience = \"api://snowgate\"\n");
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("key `team.audience`"), "{err}");
        assert!(err.contains("no access token"), "{err}");
        let text = format!(
            "{GOOD}\n[team]\nserver = \"https://snowgate.example.com\"\nauth = \"cookie\"\n"
        );
        let err = parse(&text).unwrap_err().to_string();
        assert!(err.contains("team.auth"), "{err}");
    }

    #[test]
    fn team_mode_needs_no_roles_in_the_desktop_config() {
        let head = GOOD.split("[[roles]]").next().unwrap();
        let text = format!("{head}\n[team]\nserver = \"https://snowgate.example.com\"\n");
        let c = parse(&text).unwrap();
        assert!(c.roles.is_empty());
        assert!(c.team.is_some());
    }

    #[test]
    fn a_plain_http_team_server_is_refused_unless_loopback() {
        let text = format!("{GOOD}\n[team]\nserver = \"http://snowgate.example.com\"\n");
        let err = parse(&text).unwrap_err();
        assert!(err.contains("/etc/snowgate.toml"), "{err}");
        assert!(err.contains("line 19"), "{err}");
        assert!(err.contains("key `team.server`"), "{err}");
        assert!(err.contains("must be an https:// URL"), "{err}");
        let text = format!("{GOOD}\n[team]\nserver = \"http://127.0.0.1:8443\"\n");
        assert!(parse(&text).unwrap().team.is_some());
    }

    #[test]
    fn a_team_server_url_with_a_query_or_credentials_is_refused() {
        let text = format!("{GOOD}\n[team]\nserver = \"https://snowgate.example.com/?x=1\"\n");
        let err = parse(&text).unwrap_err();
        assert!(err.contains("key `team.server`"), "{err}");
        assert!(err.contains("without `?query`"), "{err}");
        let text = format!("{GOOD}\n[team]\nserver = \"https://me:pw@snowgate.example.com\"\n");
        let err = parse(&text).unwrap_err();
        assert!(err.contains("user name or password"), "{err}");
        assert!(!err.contains("pw@"), "{err}");
    }

    #[test]
    fn team_table_keys_are_strict() {
        let text =
            format!("{GOOD}\n[team]\nserver = \"https://snowgate.example.com\"\nsever = \"x\"\n");
        let err = parse(&text).unwrap_err();
        assert!(err.contains("line 20"), "{err}");
        assert!(err.contains("key `team.sever`"), "{err}");
        assert!(err.contains("unknown key `sever`"), "{err}");
        let text = format!("{GOOD}\n[team]\nextra_ca_file = \"/nonexistent/ca.pem\"\nserver = \"https://snowgate.example.com\"\n");
        let err = parse(&text).unwrap_err();
        assert!(err.contains("key `team.extra_ca_file`"), "{err}");
        assert!(err.contains("does not exist"), "{err}");
        let err = parse(&format!("{GOOD}\n[team]\n")).unwrap_err();
        assert!(err.contains("missing required key `server`"), "{err}");
    }

    #[test]
    fn client_secret_is_redacted_in_output() {
        let text = GOOD.replace(
            "client_id = \"snowgate-desktop\"",
            "client_id = \"snowgate-desktop\"\nclient_secret = \"hunter2-very-secret\"",
        );
        let c = parse(&text).unwrap();
        let shown = c.to_redacted_toml();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("[redacted]"), "{shown}");
        assert!(!format!("{c:?}").contains("hunter2"));
        assert_eq!(
            c.identity.client_secret.unwrap().expose(),
            "hunter2-very-secret"
        );
    }

    #[test]
    fn bad_role_name_is_explained() {
        let err = parse(&GOOD.replace("name = \"ANALYST\"", "name = \"1-bad role\"")).unwrap_err();
        assert!(err.contains("is not a Snowflake role name"), "{err}");
        assert!(err.contains("roles.name"), "{err}");
    }
}
