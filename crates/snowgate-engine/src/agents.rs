//! Agent identities: a named secret with a policy, for AI agents and automation.
//!
//! An agent is a tool secret with a policy. Its secret is 32 random bytes shown as `sga_` +
//! base64url (no padding), exactly once, when the agent is added; it lives only in the OS
//! keyring (service `snowgate`, account `agent|<data dir>|<name>`). The names and policies,
//! never a secret, are kept in `agents.json` in the data dir (mode 0600, written atomically).
//!
//! The policy narrows what the agent may do with the user's access, never widens it: the roles
//! it may log in as (among those the user holds a usable grant for), read-only statements,
//! result caps (rows and bytes, for `snowgate mcp`), a statement rate, and an expiry. The
//! gateway recognises an agent's login by the `sga_` prefix of its password
//! ([`snowgate_gateway::AGENT_SECRET_PREFIX`]) and finds the agent with
//! [`Agents::find_by_secret`], which compares the SHA-256 digest of the presented secret with
//! every stored one in constant time.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use crate::tool_secrets::{
    generate_with, keyring_call, secrets_match, validate_name, write_private,
};

/// The file in the data dir that lists the agents and their policies.
pub const LIST_FILE: &str = "agents.json";
/// The prefix of every agent secret (the gateway's own constant, so both agree).
pub const PREFIX: &str = snowgate_gateway::AGENT_SECRET_PREFIX;
/// The longest `--expires` an agent may have.
pub const MAX_LIFETIME: Duration = Duration::from_secs(366 * 24 * 3600);

/// Why an agent operation failed. Never carries a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    #[error("{0:?} is not an agent name: use 1 to 64 letters, digits, `-`, `_` or `.` (for example `claude-code`)")]
    BadName(String),
    #[error("an agent named {0} already exists; remove it first with `snowgate agent remove {0}`")]
    Exists(String),
    #[error("there is no agent named {0}; `snowgate agent list` shows the agents")]
    NotFound(String),
    #[error("{0}")]
    BadPolicy(String),
    #[error("Snowgate: this agent's secret is not one Snowgate knows (wrong, or the agent was removed); `snowgate agent list` shows the agents, and `snowgate agent add NAME` makes a new one")]
    UnknownSecret,
    #[error("Snowgate: agent {name} expired at {at}; add it again with `snowgate agent add {name}` after `snowgate agent remove {name}`")]
    Expired { name: String, at: String },
    #[error("the OS keyring can't be reached, so agent secrets can't be {doing}: {message}")]
    Keyring {
        doing: &'static str,
        message: String,
    },
    #[error("the agent list {} could not be {doing}: {message}", path.display())]
    List {
        path: PathBuf,
        doing: &'static str,
        message: String,
    },
}

/// What an agent may do with the user's access. Each field only narrows it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
pub struct AgentPolicy {
    /// The roles the agent may log in as; `None`: any role the user holds a usable grant for.
    #[serde(default)]
    pub roles: Option<Vec<String>>,
    /// Only read-only statements (see `snowgate_sqlpolicy`), whatever the role allows.
    #[serde(default)]
    pub read_only: bool,
    /// The most rows a result may carry to the agent (`snowgate mcp` stops reading there).
    #[serde(default)]
    #[ts(type = "number | null")]
    pub max_rows: Option<u64>,
    /// The most bytes a result may carry to the agent.
    #[serde(default)]
    #[ts(type = "number | null")]
    pub max_bytes: Option<u64>,
    /// The most statements the agent may send in any minute, across its sessions.
    #[serde(default)]
    pub statements_per_minute: Option<u32>,
    /// When the agent stops working (RFC 3339 on the wire); `None`: never.
    #[serde(default, with = "rfc3339_opt")]
    #[ts(type = "string | null")]
    pub expires_at: Option<SystemTime>,
}

/// One agent, as listed: its name and policy, never its secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
pub struct Agent {
    pub name: String,
    pub policy: AgentPolicy,
    /// When the agent was added (RFC 3339).
    #[serde(default)]
    pub created_at: String,
}

impl Agent {
    /// Whether the agent's expiry has passed at `now`.
    pub fn is_expired_at(&self, now: SystemTime) -> bool {
        self.policy.expires_at.is_some_and(|at| at <= now)
    }

    /// Whether the policy lets the agent use `role` (Snowflake role names compare
    /// case-insensitively).
    pub fn allows_role(&self, role: &str) -> bool {
        match &self.policy.roles {
            None => true,
            Some(roles) => roles.iter().any(|r| r.eq_ignore_ascii_case(role)),
        }
    }

    /// This agent, or [`AgentError::Expired`] if its expiry has passed at `now`.
    pub fn unexpired_at(self, now: SystemTime) -> Result<Agent, AgentError> {
        match self.policy.expires_at {
            Some(at) if at <= now => Err(AgentError::Expired {
                at: rfc3339(at),
                name: self.name,
            }),
            _ => Ok(self),
        }
    }
}

/// What `snowgate agent add` asks for, before it is checked.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentRequest {
    pub roles: Option<Vec<String>>,
    pub read_only: bool,
    pub max_rows: Option<u64>,
    pub max_bytes: Option<u64>,
    pub statements_per_minute: Option<u32>,
    /// How long the agent lasts from now.
    pub expires_in: Option<Duration>,
}

impl AgentRequest {
    /// The policy this asks for, checked: each role must be one of `known_roles` (matched
    /// case-insensitively, kept in its configured spelling), numbers at least 1, a lifetime of
    /// 1 s to 366 days.
    pub fn policy(
        &self,
        known_roles: &[String],
        now: SystemTime,
    ) -> Result<AgentPolicy, AgentError> {
        let bad = |s: String| Err(AgentError::BadPolicy(s));
        let roles = match &self.roles {
            None => None,
            Some(asked) => {
                if asked.is_empty() {
                    return bad("--roles names no role; leave it out to allow every role you hold, or name them (`--roles ANALYST,REPORTING`)".into());
                }
                let mut roles: Vec<String> = Vec::new();
                for r in asked {
                    let r = r.trim();
                    match known_roles.iter().find(|k| k.eq_ignore_ascii_case(r)) {
                        Some(k) if !roles.contains(k) => roles.push(k.clone()),
                        Some(_) => {}
                        None => {
                            return bad(format!(
                                "role {r:?} is not one Snowgate grants (roles: {}); `snowgate roles` lists them",
                                if known_roles.is_empty() {
                                    "none configured".to_string()
                                } else {
                                    known_roles.join(", ")
                                }
                            ))
                        }
                    }
                }
                Some(roles)
            }
        };
        for (flag, v) in [
            ("--max-rows", self.max_rows),
            ("--max-bytes", self.max_bytes),
        ] {
            if v == Some(0) {
                return bad(format!(
                    "{flag} must be at least 1 (leave it out for no cap)"
                ));
            }
        }
        if self.statements_per_minute == Some(0) {
            return bad(
                "--statements-per-minute must be at least 1 (leave it out for no limit)".into(),
            );
        }
        let expires_at = match self.expires_in {
            None => None,
            Some(d) if d.is_zero() || d > MAX_LIFETIME => {
                return bad(format!(
                    "--expires must be between 1s and 366d, not {}",
                    snowgate_config::duration::format(d)
                ))
            }
            Some(d) => Some(now + d),
        };
        Ok(AgentPolicy {
            roles,
            read_only: self.read_only,
            max_rows: self.max_rows,
            max_bytes: self.max_bytes,
            statements_per_minute: self.statements_per_minute,
            expires_at,
        })
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ListFile {
    agents: Vec<Agent>,
}

/// The agents of one data dir.
#[derive(Debug)]
pub struct Agents {
    data_dir: PathBuf,
    /// Serializes changes to the list file.
    lock: Mutex<()>,
}

/// Checks an agent name: 1–64 of letters, digits, `-`, `_`, `.` (the tool names' rule).
pub fn validate_agent_name(name: &str) -> Result<(), AgentError> {
    validate_name(name).map_err(|_| AgentError::BadName(name.chars().take(80).collect()))
}

impl Agents {
    /// The agents kept for `data_dir`.
    pub fn new(data_dir: &Path) -> Agents {
        Agents {
            data_dir: data_dir.to_path_buf(),
            lock: Mutex::new(()),
        }
    }

    fn list_path(&self) -> PathBuf {
        self.data_dir.join(LIST_FILE)
    }

    fn account(&self, name: &str) -> String {
        format!("agent|{}|{name}", self.data_dir.display())
    }

    /// The agents, oldest first.
    pub fn list(&self) -> Result<Vec<Agent>, AgentError> {
        Ok(self.read_list()?.agents)
    }

    /// The agent named `name`, if there is one.
    pub fn get(&self, name: &str) -> Result<Option<Agent>, AgentError> {
        Ok(self.list()?.into_iter().find(|a| a.name == name))
    }

    /// Adds the agent `name` with `policy` and returns its secret. This is the only time the
    /// secret is ever shown.
    pub async fn add(&self, name: &str, policy: AgentPolicy) -> Result<SecretString, AgentError> {
        validate_agent_name(name)?;
        if self.read_list()?.agents.iter().any(|a| a.name == name) {
            return Err(AgentError::Exists(name.to_string()));
        }
        let secret = generate_with(PREFIX);
        let value = secret.expose_secret().to_string();
        keyring_call(self.account(name), move |entry| entry.set_password(&value))
            .await
            .map_err(|message| AgentError::Keyring {
                doing: "stored",
                message,
            })?;
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut list = self.read_list()?;
        list.agents.retain(|a| a.name != name);
        list.agents.push(Agent {
            name: name.to_string(),
            policy,
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        self.write_list(&list)?;
        tracing::info!(agent = name, "added an agent");
        Ok(secret)
    }

    /// Deletes the agent `name`: its secret from the keyring and its entry from the list.
    pub async fn remove(&self, name: &str) -> Result<(), AgentError> {
        validate_agent_name(name)?;
        if !self.read_list()?.agents.iter().any(|a| a.name == name) {
            return Err(AgentError::NotFound(name.to_string()));
        }
        keyring_call(self.account(name), |entry| {
            match entry.delete_credential() {
                Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await
        .map_err(|message| AgentError::Keyring {
            doing: "deleted",
            message,
        })?;
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut list = self.read_list()?;
        list.agents.retain(|a| a.name != name);
        self.write_list(&list)?;
        tracing::info!(agent = name, "removed an agent");
        Ok(())
    }

    /// The secret of the agent `name` as the keyring holds it, or `None` when the keyring has
    /// none (no such agent, or it was removed). For a process that acts as the agent, such as
    /// `snowgate mcp --agent NAME` over stdio.
    pub async fn secret(&self, name: &str) -> Result<Option<SecretString>, AgentError> {
        validate_agent_name(name)?;
        keyring_call(self.account(name), |entry| match entry.get_password() {
            Ok(t) => Ok(Some(SecretString::from(t))),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(e),
        })
        .await
        .map_err(|message| AgentError::Keyring {
            doing: "read",
            message,
        })
    }

    /// The agent whose secret `presented` is, if any, expired or not. Every stored secret is
    /// compared (in constant time), so the time taken does not tell which one matched.
    pub async fn find_by_secret(
        &self,
        presented: &SecretString,
    ) -> Result<Option<Agent>, AgentError> {
        let agents = self.read_list()?.agents;
        let mut found = None;
        for agent in agents {
            let stored = keyring_call(self.account(&agent.name), |entry| {
                match entry.get_password() {
                    Ok(t) => Ok(Some(SecretString::from(t))),
                    Err(keyring::Error::NoEntry) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .await
            .map_err(|message| AgentError::Keyring {
                doing: "read",
                message,
            })?;
            if let Some(stored) = stored {
                if secrets_match(stored.expose_secret(), presented.expose_secret())
                    && found.is_none()
                {
                    found = Some(agent);
                }
            }
        }
        Ok(found)
    }

    /// The agent whose secret `presented` is, refused with a sentence when it is no agent's
    /// or the agent has expired at `now`.
    pub async fn authenticate(
        &self,
        presented: &SecretString,
        now: SystemTime,
    ) -> Result<Agent, AgentError> {
        self.find_by_secret(presented)
            .await?
            .ok_or(AgentError::UnknownSecret)?
            .unexpired_at(now)
    }

    fn read_list(&self) -> Result<ListFile, AgentError> {
        let path = self.list_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| AgentError::List {
                path,
                doing: "read",
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ListFile::default()),
            Err(e) => Err(AgentError::List {
                path,
                doing: "read",
                message: e.to_string(),
            }),
        }
    }

    fn write_list(&self, list: &ListFile) -> Result<(), AgentError> {
        let json = serde_json::to_vec_pretty(list).expect("the list serializes");
        write_private(&self.data_dir, LIST_FILE, &json).map_err(|e| AgentError::List {
            path: self.list_path(),
            doing: "written",
            message: e.to_string(),
        })
    }
}

/// `at` as RFC 3339 in UTC, to the second.
pub fn rfc3339(at: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// `Option<SystemTime>` as an RFC 3339 string or `null`.
mod rfc3339_opt {
    use std::time::SystemTime;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(t) => s.serialize_str(&super::rfc3339(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SystemTime>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        chrono::DateTime::parse_from_rfc3339(&text)
            .map(|t| Some(SystemTime::from(t)))
            .map_err(|e| serde::de::Error::custom(format!("{text:?} is not an RFC 3339 time: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles() -> Vec<String> {
        vec!["ANALYST".into(), "REPORTING".into()]
    }

    #[test]
    fn a_policy_keeps_configured_role_spellings_and_refuses_unknown_roles() {
        let now = SystemTime::now();
        let req = AgentRequest {
            roles: Some(vec!["analyst".into(), "ANALYST".into()]),
            ..Default::default()
        };
        assert_eq!(
            req.policy(&roles(), now).unwrap().roles,
            Some(vec!["ANALYST".to_string()])
        );
        let req = AgentRequest {
            roles: Some(vec!["SYSADMIN".into()]),
            ..Default::default()
        };
        let err = req.policy(&roles(), now).unwrap_err().to_string();
        assert!(
            err.contains("\"SYSADMIN\" is not one Snowgate grants"),
            "{err}"
        );
        assert!(err.contains("ANALYST, REPORTING"), "{err}");
        let req = AgentRequest {
            roles: Some(vec![]),
            ..Default::default()
        };
        assert!(req.policy(&roles(), now).is_err());
    }

    #[test]
    fn zero_caps_and_out_of_range_lifetimes_are_refused_with_the_flag_named() {
        let now = SystemTime::now();
        for (req, flag) in [
            (
                AgentRequest {
                    max_rows: Some(0),
                    ..Default::default()
                },
                "--max-rows",
            ),
            (
                AgentRequest {
                    max_bytes: Some(0),
                    ..Default::default()
                },
                "--max-bytes",
            ),
            (
                AgentRequest {
                    statements_per_minute: Some(0),
                    ..Default::default()
                },
                "--statements-per-minute",
            ),
            (
                AgentRequest {
                    expires_in: Some(Duration::from_secs(367 * 24 * 3600)),
                    ..Default::default()
                },
                "--expires",
            ),
        ] {
            let err = req.policy(&roles(), now).unwrap_err().to_string();
            assert!(err.contains(flag), "{err}");
        }
        let ok = AgentRequest {
            expires_in: Some(Duration::from_secs(7 * 24 * 3600)),
            max_rows: Some(100),
            read_only: true,
            ..Default::default()
        }
        .policy(&roles(), now)
        .unwrap();
        assert_eq!(
            ok.expires_at,
            Some(now + Duration::from_secs(7 * 24 * 3600))
        );
        assert!(ok.read_only);
        assert_eq!(ok.roles, None);
    }

    #[test]
    fn expiry_and_roles_are_judged_by_the_policy() {
        let now = SystemTime::now();
        let agent = Agent {
            name: "bot".into(),
            policy: AgentPolicy {
                roles: Some(vec!["ANALYST".into()]),
                expires_at: Some(now + Duration::from_secs(60)),
                ..Default::default()
            },
            created_at: String::new(),
        };
        assert!(agent.allows_role("analyst"));
        assert!(!agent.allows_role("REPORTING"));
        assert!(!agent.is_expired_at(now));
        assert!(agent.is_expired_at(now + Duration::from_secs(60)));
        let err = agent
            .clone()
            .unexpired_at(now + Duration::from_secs(61))
            .unwrap_err()
            .to_string();
        assert!(err.contains("agent bot expired at"), "{err}");
        assert!(agent.unexpired_at(now).is_ok());
    }

    #[test]
    fn the_policy_travels_as_json_with_an_rfc3339_expiry() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let p = AgentPolicy {
            read_only: true,
            expires_at: Some(at),
            ..Default::default()
        };
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["expires_at"], "2027-01-15T08:00:00Z");
        let back: AgentPolicy = serde_json::from_value(json).unwrap();
        assert_eq!(back, p);
        let none: AgentPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(none, AgentPolicy::default());
        let bad = serde_json::from_str::<AgentPolicy>(r#"{"expires_at":"tomorrow"}"#)
            .unwrap_err()
            .to_string();
        assert!(bad.contains("not an RFC 3339 time"), "{bad}");
    }

    #[test]
    fn names_follow_the_tool_name_rule() {
        validate_agent_name("claude-code").unwrap();
        let err = validate_agent_name("has space").unwrap_err().to_string();
        assert!(err.contains("is not an agent name"), "{err}");
    }

    #[test]
    fn the_list_file_is_private_and_holds_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let agents = Agents::new(dir.path());
        assert!(agents.list().unwrap().is_empty());
        agents
            .write_list(&ListFile {
                agents: vec![Agent {
                    name: "bot".into(),
                    policy: AgentPolicy::default(),
                    created_at: "2026-01-01T00:00:00Z".into(),
                }],
            })
            .unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(LIST_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(agents.get("bot").unwrap().unwrap().name, "bot");
        assert_eq!(
            agents.account("bot"),
            format!("agent|{}|bot", dir.path().display())
        );
    }
}
