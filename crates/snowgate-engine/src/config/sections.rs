//! The config's tables: `[identity]`, `[snowflake]`, `[gateway]`, `[audit]` and `[team]`, with
//! their defaults and the effective values derived from them. `[[roles]]` is
//! [`snowgate_grants::RoleConfig`], the shape the team server's config shares.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use url::Url;

use super::{
    AccountName, AudienceParameter, ClockSkew, ConfigDuration, ConsentPrompt, ExistingFile,
    GroupsForm, HttpsUrl, ListenAddrs, NonEmpty, OfflineAccess, Preset, Provider, ProviderSettings,
    Secret, ServerUrl, DEFAULT_LISTEN,
};

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

/// `[snowflake]` (one account) or `[[snowflake]]` (several, each with a `name`): the accounts
/// behind the gateway, in config order; the first is the default.
#[derive(Debug, Clone)]
pub struct Accounts(pub Vec<SnowflakeConfig>);

impl Accounts {
    /// The first account: the only one, or the default for what names none.
    pub fn default_account(&self) -> &SnowflakeConfig {
        &self.0[0]
    }

    /// The account a tool or a role names (case-insensitively); `None` names the default.
    pub fn by_name(&self, name: Option<&str>) -> Option<&SnowflakeConfig> {
        match name {
            None => Some(self.default_account()),
            Some(n) => self.0.iter().find(|a| a.name().eq_ignore_ascii_case(n)),
        }
    }

    /// The accounts' names, for sentences: "prod, dev".
    pub fn names(&self) -> String {
        self.0
            .iter()
            .map(|a| a.name())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Whether the config has more than one account.
    pub fn several(&self) -> bool {
        self.0.len() > 1
    }

    pub fn iter(&self) -> std::slice::Iter<'_, SnowflakeConfig> {
        self.0.iter()
    }
}

impl<'de> Deserialize<'de> for Accounts {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Accounts;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a [snowflake] table, or [[snowflake]] tables each with a name")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Accounts, A::Error> {
                let one = SnowflakeConfig::deserialize(
                    serde::de::value::MapAccessDeserializer::new(map),
                )?;
                Ok(Accounts(vec![one]))
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, seq: A) -> Result<Accounts, A::Error> {
                let many = Vec::<SnowflakeConfig>::deserialize(
                    serde::de::value::SeqAccessDeserializer::new(seq),
                )?;
                if many.is_empty() {
                    return Err(serde::de::Error::custom(
                        "no account: add a [[snowflake]] table with name and account",
                    ));
                }
                Ok(Accounts(many))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Serialize for Accounts {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] if one.name.is_none() => one.serialize(s),
            many => many.serialize(s),
        }
    }
}

/// One Snowflake account behind the gateway.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SnowflakeConfig {
    /// The name tools give as their `account` and `[[roles]] account` refers to; required in
    /// `[[snowflake]]` entries when there are several. Default: the account identifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<toml::Spanned<AccountName>>,
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
    /// The account's name: `name`, else its identifier.
    pub fn name(&self) -> &str {
        match &self.name {
            Some(n) => n.get_ref().as_str(),
            None => self.account.as_str(),
        }
    }

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
                self.account.as_str()
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
    /// (`snowgate tool-secret create NAME`). Unset: required exactly where the OS can't tell
    /// the gateway which user owns a connection (see [`GatewayConfig::tool_secrets_required`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub require_tool_secrets: Option<bool>,
    /// How long the gateway waits for Snowflake to start answering a request before the tool
    /// gets a Snowflake-shaped error (default 60s; Snowflake answers within about 45 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snowflake_answer_timeout: Option<ConfigDuration>,
    /// Serve HTTPS, with a leaf from the local CA (`<data dir>/tls/`): on `listen_tls` when it
    /// is set (and plain HTTP stays on `listen`), else on `listen` instead of plain HTTP.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tls: bool,
    /// Loopback addresses for HTTPS next to the plain-HTTP `listen` (needs `tls = true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listen_tls: Option<ListenAddrs>,
    /// How long each HTTPS leaf certificate is valid (default 7d, at most 30d); a new one is
    /// put in place when a third of its life is left.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_leaf_lifetime: Option<ConfigDuration>,
    /// How long a tool's login for a role with no grant waits while the request Snowgate files
    /// for it is decided (unset: no wait, the login is refused at once). At most
    /// [`MAX_WAIT_FOR_APPROVAL`], below the drivers' own login timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for_approval: Option<ConfigDuration>,
    /// How many threads serve the tools' connections (default: one per core, at most 4; 1 to
    /// [`MAX_GATEWAY_THREADS`]). Each connection stays on one thread.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threads: Option<u64>,
}

/// The most `[gateway] threads`.
pub const MAX_GATEWAY_THREADS: u64 = 64;

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: default_listen(),
            require_tool_secrets: None,
            snowflake_answer_timeout: None,
            tls: false,
            listen_tls: None,
            tls_leaf_lifetime: None,
            wait_for_approval: None,
            threads: None,
        }
    }
}

/// The longest `[gateway] wait_for_approval`: below the shortest default login timeout of the
/// drivers (the Python connector 4.x reads each request for 60 s, `socket_timeout`, and then
/// retries; 5.x's `login_timeout` is 120 s; the Node.js driver's `timeout` is 90 s per
/// request; JDBC's `loginTimeout` 300 s), with room for the login itself.
pub const MAX_WAIT_FOR_APPROVAL: Duration = Duration::from_secs(50);

/// The longest `[gateway] tls_leaf_lifetime`: leaves stay short-lived.
pub const MAX_TLS_LEAF_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

impl GatewayConfig {
    /// Where plain HTTP is served: `listen`, unless TLS takes it over.
    pub fn plain_listen(&self) -> Vec<SocketAddr> {
        match (self.tls, &self.listen_tls) {
            (true, None) => Vec::new(),
            _ => self.listen.0.clone(),
        }
    }

    /// Where HTTPS is served: `listen_tls`, or `listen` when only `tls = true` is set.
    pub fn https_listen(&self) -> Vec<SocketAddr> {
        match (self.tls, &self.listen_tls) {
            (false, _) => Vec::new(),
            (true, Some(tls)) => tls.0.clone(),
            (true, None) => self.listen.0.clone(),
        }
    }

    /// The life of each HTTPS leaf certificate.
    pub fn leaf_lifetime(&self) -> Duration {
        self.tls_leaf_lifetime
            .map(|d| d.0)
            .unwrap_or(crate::local_ca::DEFAULT_LEAF_LIFETIME)
    }

    /// Whether tools must log in with their own connection secret on this machine.
    pub fn tool_secrets_required(&self) -> bool {
        self.tool_secrets_required_where(snowgate_gateway::peer::same_user_check_supported())
    }

    /// [`GatewayConfig::tool_secrets_required`] on a machine whose OS can (`true`) or can't
    /// (`false`) say which user owns a loopback connection. Where it can't, another local user
    /// could reach the gateway, so secrets are required unless the config turns them off.
    pub fn tool_secrets_required_where(&self, same_user_check: bool) -> bool {
        self.require_tool_secrets.unwrap_or(!same_user_check)
    }
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
