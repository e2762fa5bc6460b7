//! The broker engine's entry point: one value that the CLI, the tray app and the server share.

use std::path::{Path, PathBuf};

use crate::config::Config;
use crate::identity::IdentityStatus;
use crate::status::BrokerStatus;

/// The broker for one OS user: its config and data directory, and (as they land) its identity,
/// ledger and gateway.
pub struct Engine {
    config: Config,
    data_dir: PathBuf,
}

impl Engine {
    /// Creates the engine from a validated config. The data directory is created (mode 0700)
    /// if it does not exist.
    pub fn new(config: Config, data_dir: PathBuf) -> std::io::Result<Engine> {
        create_private_dir(&data_dir)?;
        Ok(Engine { config, data_dir })
    }

    /// The config the engine runs with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The directory that holds the ledger and non-secret profile facts.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The config-derived part of the broker's status, signed out. [`crate::Broker::status`]
    /// adds the sign-in state.
    pub fn status(&self) -> BrokerStatus {
        let sign_in = IdentityStatus::SignedOut;
        let summary = sign_in.summary();
        BrokerStatus {
            version: env!("CARGO_PKG_VERSION").to_string(),
            sign_in,
            keyring_problem: None,
            issuer: self.config.identity.issuer.to_string(),
            account: self.config.snowflake.default_account().name().to_string(),
            snowflake_url: self
                .config
                .snowflake
                .default_account()
                .effective_url()
                .to_string(),
            accounts: self
                .config
                .snowflake
                .iter()
                .map(|a| crate::status::AccountStatus {
                    name: a.name().to_string(),
                    account: a.account.to_string(),
                    snowflake_url: a.effective_url().to_string(),
                })
                .collect(),
            gateway_listen: self
                .config
                .gateway
                .listen
                .0
                .iter()
                .map(|a| a.to_string())
                .collect(),
            roles: self
                .config
                .roles
                .iter()
                .map(|r| r.name.get_ref().to_string())
                .collect(),
            summary,
            gateway: crate::status::GatewayStatus {
                listen: self
                    .config
                    .gateway
                    .plain_listen()
                    .iter()
                    .map(|a| a.to_string())
                    .collect(),
                state: "not_serving".into(),
                problem: None,
                open_sessions: 0,
                tls: None,
            },
            mode: if self.config.team.is_some() {
                "team".into()
            } else {
                "solo".into()
            },
            team_server: self.config.team.as_ref().map(|t| t.server.to_string()),
            team: None,
            notes: Vec::new(),
            tool_asks: Vec::new(),
        }
    }
}

fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
    }
    #[cfg(not(unix))]
    {
        std::fs::create_dir_all(dir)
    }
}
