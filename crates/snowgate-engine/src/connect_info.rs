//! The settings that point a local tool at the gateway, as `snowgate connect-info`, the tray's
//! "Copy connection settings" and the UI's connection screen show them.
//!
//! The gateway speaks plain HTTP on a loopback address, or with `[gateway] tls = true` HTTPS
//! with a leaf from the local CA; when it serves HTTPS, the settings point at the HTTPS
//! listener and name the CA file to trust. The account is named explicitly (drivers otherwise
//! derive it from the host). The user is
//! the signed-in user's Snowflake login name when it is known; the gateway replaces whatever a
//! tool sends with it anyway. The password is anything, unless `require_tool_secrets` asks
//! for the tool's own connection secret.

use serde::{Deserialize, Serialize};

use crate::config::DEFAULT_LISTEN;
use crate::status::BrokerStatus;

/// What a tool is told when nobody is signed in: the gateway ignores the user a tool sends.
pub const ANY_USER: &str = "me";

/// Where and how a local tool connects. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
pub struct ConnectInfo {
    /// The gateway's loopback host, e.g. `127.0.0.1` or `::1`.
    pub host: String,
    /// The gateway's port.
    pub port: u16,
    /// The account tools name: the only one's identifier, or the default `[[snowflake]]` name.
    pub account: String,
    /// Every account the port serves (their names), the default first.
    #[serde(default)]
    pub accounts: Vec<String>,
    /// The account of each role in `roles` that is not the default one: a tool using that
    /// role sets this account instead.
    #[serde(default)]
    pub role_accounts: std::collections::BTreeMap<String, String>,
    /// The Snowflake login name to show in a tool ([`ANY_USER`] when nobody is signed in).
    pub user: String,
    /// `https` when the gateway serves HTTPS (the settings are its HTTPS listener's), else
    /// `http`.
    pub protocol: String,
    /// With `https`: the local CA's certificate, which the tool must trust
    /// (`snowgate trust install`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub ca_file: Option<String>,
    /// Whether each tool must log in with its own connection secret as the password.
    pub require_tool_secrets: bool,
    /// The roles that can be requested, in config order.
    pub roles: Vec<String>,
}

impl ConnectInfo {
    /// Builds the settings from a status snapshot: the first address the gateway listens on
    /// (as bound; the configured one if it could not bind), the account and the roles.
    /// `login_name` is the signed-in user's Snowflake login name, if known.
    pub fn from_status(
        status: &BrokerStatus,
        require_tool_secrets: bool,
        login_name: Option<String>,
    ) -> ConnectInfo {
        let https = status.gateway.tls.as_ref().filter(|t| !t.listen.is_empty());
        let listen = match https {
            Some(tls) => tls.listen.first(),
            None => status
                .gateway
                .listen
                .first()
                .or(status.gateway_listen.first()),
        }
        .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
        .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("the default listen address"));
        ConnectInfo {
            host: listen.ip().to_string(),
            port: listen.port(),
            account: status.account.clone(),
            accounts: status.accounts.iter().map(|a| a.name.clone()).collect(),
            role_accounts: Default::default(),
            user: login_name.unwrap_or_else(|| ANY_USER.to_string()),
            protocol: if https.is_some() { "https" } else { "http" }.into(),
            ca_file: https.map(|t| t.ca_file.clone()),
            require_tool_secrets,
            roles: status.roles.clone(),
        }
    }

    /// Fills `role_accounts` from the roles' accounts: the policy in force (team mode: the
    /// server's), else `[[roles]]`.
    pub fn note_role_accounts(
        &mut self,
        config: &crate::config::Config,
        policy: Option<&snowgate_grants::Policy>,
    ) {
        let default = config.snowflake.default_account().name();
        for role in &self.roles {
            let configured = policy
                .and_then(|p| {
                    let name = snowgate_grants::RoleName::new(role).ok()?;
                    p.role(&name).ok().and_then(|r| r.account.clone())
                })
                .or_else(|| {
                    config
                        .role(role)
                        .and_then(|r| r.account.as_ref())
                        .map(|a| a.get_ref().as_str().to_string())
                });
            let account = config.role_account(configured.as_deref());
            if !account.eq_ignore_ascii_case(default) {
                self.role_accounts.insert(role.clone(), account.to_string());
            }
        }
    }

    /// The account a tool using `role` sets: the role's, else the default.
    pub fn account_for(&self, role: &str) -> &str {
        self.role_accounts
            .get(role)
            .map(String::as_str)
            .unwrap_or(&self.account)
    }

    /// The host as it goes into a URL: IPv6 addresses in brackets.
    pub fn url_host(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        }
    }

    /// What goes in a tool's password field.
    pub fn password_hint(&self) -> &'static str {
        if self.require_tool_secrets {
            "the tool's connection secret (snowgate tool-secret create NAME)"
        } else {
            "anything"
        }
    }

    /// Whether the settings are the gateway's HTTPS listener's.
    pub fn is_https(&self) -> bool {
        self.protocol == "https"
    }

    /// The protocol line a person reads: SSL off, or on with the CA to trust.
    pub fn protocol_hint(&self) -> String {
        match &self.ca_file {
            Some(ca) if self.is_https() => {
                format!("https (SSL on; trust the CA {ca}: snowgate trust install)")
            }
            _ => "http (SSL off)".into(),
        }
    }

    /// A few lines to paste into a tool's connection dialog or a message.
    pub fn summary(&self) -> String {
        let password = self.password_hint();
        format!(
            "Snowgate gateway\n\
             host: {}\n\
             port: {}\n\
             protocol: {}\n\
             account: {}\n\
             user: {}\n\
             password: {password}\n",
            self.host,
            self.port,
            self.protocol_hint(),
            self.account,
            self.user
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::IdentityStatus;

    fn status(listen: &[&str]) -> BrokerStatus {
        BrokerStatus {
            version: "0".into(),
            sign_in: IdentityStatus::SignedOut,
            keyring_problem: None,
            issuer: "https://idp.example.com".into(),
            account: "acme".into(),
            snowflake_url: "https://acme.snowflakecomputing.com".into(),
            accounts: Vec::new(),
            gateway_listen: vec!["127.0.0.1:8765".into()],
            roles: vec!["ANALYST".into(), "ENGINEER".into()],
            summary: String::new(),
            gateway: crate::status::GatewayStatus {
                listen: listen.iter().map(|s| s.to_string()).collect(),
                ..Default::default()
            },
            mode: "solo".into(),
            team_server: None,
            team: None,
            notes: Vec::new(),
            tool_asks: Vec::new(),
        }
    }

    #[test]
    fn the_bound_address_wins_over_the_configured_one() {
        let info = ConnectInfo::from_status(&status(&["127.0.0.1:40123"]), false, None);
        assert_eq!(info.host, "127.0.0.1");
        assert_eq!(info.port, 40123);
        assert_eq!(info.account, "acme");
        assert_eq!(info.user, ANY_USER);
        assert_eq!(info.protocol, "http");
        assert_eq!(info.roles, ["ANALYST", "ENGINEER"]);
    }

    #[test]
    fn an_unbound_gateway_falls_back_to_the_configured_address() {
        let info = ConnectInfo::from_status(&status(&[]), true, Some("ALICE".into()));
        assert_eq!((info.host.as_str(), info.port), ("127.0.0.1", 8765));
        assert_eq!(info.user, "ALICE");
        assert!(info.summary().contains("connection secret"));
    }

    #[test]
    fn with_tls_the_settings_are_the_https_listeners() {
        let mut status = status(&["127.0.0.1:8765"]);
        status.gateway.tls = Some(crate::status::GatewayTlsStatus {
            listen: vec!["127.0.0.1:8443".into()],
            ca_file: "/home/a/.local/share/snowgate/tls/ca.pem".into(),
            leaf_expires_at: None,
        });
        let info = ConnectInfo::from_status(&status, false, None);
        assert_eq!((info.port, info.protocol.as_str()), (8443, "https"));
        assert_eq!(
            info.ca_file.as_deref(),
            Some("/home/a/.local/share/snowgate/tls/ca.pem")
        );
        assert!(info.summary().contains(
            "protocol: https (SSL on; trust the CA /home/a/.local/share/snowgate/tls/ca.pem"
        ));
        let plain =
            ConnectInfo::from_status(&super::tests::status(&["127.0.0.1:8765"]), false, None);
        assert_eq!((plain.port, plain.protocol.as_str()), (8765, "http"));
        assert_eq!(plain.ca_file, None);
    }

    #[test]
    fn a_role_of_another_account_than_the_default_names_it() {
        let config = crate::config::Config::parse(
            "[identity]\nissuer = \"https://idp.example.com\"\nclient_id = \"c\"\n\
             snowflake_audience = \"https://sf.example.com\"\n\n\
             [[snowflake]]\nname = \"prod\"\naccount = \"acme\"\n\n\
             [[snowflake]]\nname = \"dev\"\naccount = \"acme-dev\"\n\n\
             [[roles]]\nname = \"ANALYST\"\naccount = \"prod\"\nmax_duration = \"1h\"\napprovers = [\"m\"]\n\n\
             [[roles]]\nname = \"ENGINEER\"\naccount = \"DEV\"\nmax_duration = \"1h\"\napprovers = [\"m\"]\n",
            std::path::Path::new("config.toml"),
        )
        .unwrap();
        let mut status = status(&["127.0.0.1:8765"]);
        status.account = "prod".into();
        let mut info = ConnectInfo::from_status(&status, false, None);
        info.note_role_accounts(&config, None);
        assert_eq!(info.role_accounts.len(), 1, "{:?}", info.role_accounts);
        assert_eq!(info.account_for("ENGINEER"), "dev");
        assert_eq!(info.account_for("ANALYST"), "prod");
    }

    #[test]
    fn ipv6_hosts_are_bracketed_in_urls() {
        let info = ConnectInfo::from_status(&status(&["[::1]:8765"]), false, None);
        assert_eq!(info.host, "::1");
        assert_eq!(info.url_host(), "[::1]");
    }

    #[test]
    fn the_wire_form_has_the_fields_the_ui_reads() {
        let info = ConnectInfo::from_status(&status(&["127.0.0.1:8765"]), false, None);
        let json = serde_json::to_value(&info).unwrap();
        for key in [
            "host",
            "port",
            "account",
            "user",
            "protocol",
            "require_tool_secrets",
            "roles",
        ] {
            assert!(json.get(key).is_some(), "{key} missing from {json}");
        }
        assert!(info.summary().contains("port: 8765"));
        assert!(info.summary().contains("password: anything"));
    }
}
