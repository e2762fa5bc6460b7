//! Snowgate's TOML config.
//!
//! Parsing and validation happen in one pass: each field has a type whose `Deserialize` impl
//! checks the value (a loopback address, an absolute URL, a duration within bounds), so every
//! error carries the span of the value that caused it. [`ConfigError`] turns that span into
//! `file: line N: key `a.b`: what is wrong`, which is what a person needs to fix it.
//!
//! Cross-field checks (duplicate role names, an auto-approval cap above the maximum duration)
//! run after parsing and also point at the offending key.
//!
//! The module is split by concern: `sections` holds the tables (`[identity]`, `[team]`,
//! `[[roles]]`, ...), `values` the checked values only the desktop has, `checks` the
//! cross-field checks. The values the team server's config shares (located errors, https URLs,
//! files, secrets, durations) come from `snowgate_config`, so the two can't drift apart.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use snowgate_config::ConfigText;

mod checks;
mod sections;
mod values;

#[cfg(test)]
mod tests;

pub use crate::identity::preset::{
    AudienceParameter, ConsentPrompt, GroupsForm, OfflineAccess, Preset, Provider, ProviderSettings,
};
pub use sections::{
    Accounts, AuditConfig, GatewayConfig, IdentityConfig, SnowflakeConfig, TeamAuth, TeamConfig,
};
pub use snowgate_config::{
    ClockSkew, ConfigDuration, ExistingFile, HttpsUrl, LocatedError, NonEmpty, Secret,
};
pub use snowgate_grants::{ApprovalCount, RoleConfig, RoleName};
pub use values::{AccountName, ListenAddrs, ServerUrl};

/// The gateway's default listen address: loopback only, a fixed port so tool settings stay valid.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8765";

/// The whole config file.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub identity: IdentityConfig,
    pub snowflake: Accounts,
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
    /// A value or a combination of values is wrong; names the file, line and key.
    #[error(transparent)]
    Invalid(#[from] LocatedError),
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
        let source = ConfigText::new(text, path);
        let mut config: Config = source.parse()?;
        config.validate(&source)?;
        config.validate_provider(&source)?;
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
        for account in &mut self.snowflake.0 {
            if account.user_claim.is_none() {
                account.user_claim = Some(NonEmpty(preset.user_claim.to_string()));
            }
        }
    }

    /// The role with this name, if configured.
    pub fn role(&self, name: &str) -> Option<&RoleConfig> {
        self.roles
            .iter()
            .find(|r| r.name.get_ref().as_str() == name)
    }

    /// The name of the account a role belongs to: its `[[roles]] account` as configured (the
    /// accounts' own spelling), else the default account's.
    pub fn role_account<'a>(&'a self, account: Option<&'a str>) -> &'a str {
        match account {
            Some(a) => self
                .snowflake
                .by_name(Some(a))
                .map(|c| c.name())
                .unwrap_or(a),
            None => self.snowflake.default_account().name(),
        }
    }

    /// The effective config as TOML, with defaults filled in and secrets redacted.
    pub fn to_redacted_toml(&self) -> String {
        toml::to_string_pretty(self).expect("config serializes to TOML")
    }
}
