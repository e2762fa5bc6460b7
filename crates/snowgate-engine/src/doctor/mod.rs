//! `snowgate doctor`: checks the live setup from inside the broker, which holds the sign-in,
//! and says what to change for each check that fails.
//!
//! Every check reads content, not an HTTP status: the fields of the discovery document, where
//! the IdP's authorization endpoint sends a probe, the fields of a device authorization, whether
//! a refresh answer carried a new refresh token, the claims of the Snowflake tokens (decoded
//! here, never shown whole), the groups, the rows a `SELECT 1` returned through the gateway,
//! and in team mode the server's health answer, its key set and who it takes the caller for.
//! From the tokens it saw it writes the `CREATE SECURITY INTEGRATION ... TYPE = EXTERNAL_OAUTH`
//! values that match them. No token value ever enters the report.

mod gateway;
mod idp;
mod team;
mod tokens;

use gateway::*;
use idp::*;
use team::*;
use tokens::*;

use serde::Serialize;
use serde_json::Value;

use crate::backend::GrantsBackend;
use crate::config::Config;
use crate::identity::Identity;

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    /// Works, but worth changing; does not fail the run.
    Warn,
    Fail,
    /// Could not be run (say so in `detail`).
    Skip,
}

/// One line of the checklist.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Check {
    pub name: String,
    pub outcome: Outcome,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// The values of Snowflake's security integration that match the tokens seen.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Integration {
    pub issuer: String,
    pub jwks_url: String,
    pub audience_list: Vec<String>,
    pub user_mapping_claim: String,
    pub scope_mapping_attribute: String,
    pub sql: String,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Report {
    /// False when any check failed.
    pub ok: bool,
    pub checks: Vec<Check>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integration: Option<Integration>,
}

/// What the doctor looks at.
pub struct Patient<'a> {
    pub config: &'a Config,
    pub identity: Option<Identity>,
    pub grants: Option<GrantsBackend>,
    /// The gateway's addresses, when it serves.
    pub gateway: Vec<std::net::SocketAddr>,
}

struct Doctor {
    checks: Vec<Check>,
    http: reqwest::Client,
}

impl Doctor {
    fn add(&mut self, name: &str, outcome: Outcome, detail: String, fix: Option<String>) {
        self.checks.push(Check {
            name: name.to_string(),
            outcome,
            detail,
            fix,
        });
    }
    fn ok(&mut self, name: &str, detail: String) {
        self.add(name, Outcome::Ok, detail, None);
    }
    fn fail(&mut self, name: &str, detail: String, fix: String) {
        self.add(name, Outcome::Fail, detail, Some(fix));
    }
}

/// Runs every check that applies.
pub async fn examine(p: Patient<'_>) -> Report {
    let http = match crate::identity::http::build_client(
        p.config
            .identity
            .extra_ca_file
            .as_ref()
            .map(|f| f.0.as_path()),
    ) {
        Ok(c) => c,
        Err(e) => {
            return Report {
                ok: false,
                checks: vec![Check {
                    name: "setup".into(),
                    outcome: Outcome::Fail,
                    detail: e.to_string(),
                    fix: Some("fix identity.extra_ca_file".into()),
                }],
                integration: None,
            }
        }
    };
    let mut d = Doctor {
        checks: Vec::new(),
        http,
    };
    let team = p.config.team.as_ref();
    let discovery = discovery(&mut d, p.config).await;
    if let Some(disc) = &discovery {
        public_client(&mut d, p.config, disc).await;
        device_flow(&mut d, p.config, disc).await;
    }
    let identity = p.identity.clone().filter(|i| i.profile().is_some());
    let failure = p.identity.as_ref().and_then(|i| i.last_sign_in_failure());
    let Some(identity) = identity else {
        if let Some(failure) = failure {
            let advice = failure
                .split_once(": ")
                .map(|(_, a)| a.to_string())
                .unwrap_or_else(|| failure.clone());
            d.fail(
                "sign-in",
                format!("the last sign-in failed: {failure}"),
                format!("{advice}; then sign in again with `snowgate login`"),
            );
            return finish(d, None);
        }
        d.fail(
            "sign-in",
            "nobody is signed in, so the tokens can't be checked".into(),
            "sign in with `snowgate login`, then run `snowgate doctor` again".into(),
        );
        return finish(d, None);
    };
    refresh(&mut d, p.config, &identity).await;
    let mut integration = None;
    let team_client = match &p.grants {
        Some(GrantsBackend::Team(t)) => Some(t.clone()),
        _ => None,
    };
    match (&team_client, team) {
        (Some(t), Some(team)) => {
            server_checks(&mut d, t, team.auth, &identity).await;
            integration = minted_token(&mut d, t, &p, &identity).await;
        }
        _ => {
            if let Some(disc) = &discovery {
                integration = snowflake_tokens(&mut d, p.config, &identity, disc).await;
            }
            groups(&mut d, p.config, &identity);
        }
    }
    gateway_logins(&mut d, &p, &identity).await;
    finish(d, integration)
}

fn finish(d: Doctor, integration: Option<Integration>) -> Report {
    Report {
        ok: d.checks.iter().all(|c| c.outcome != Outcome::Fail),
        checks: d.checks,
        integration,
    }
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let resp = http.get(url).send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    serde_json::from_str(&text)
        .map_err(|_| format!("{url} answered {status} with something that is not JSON"))
}

/// The report as a checklist for people.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    for c in &report.checks {
        let mark = match c.outcome {
            Outcome::Ok => "[ok]  ",
            Outcome::Warn => "[warn]",
            Outcome::Fail => "[FAIL]",
            Outcome::Skip => "[skip]",
        };
        out.push_str(&format!("{mark} {}: {}\n", c.name, c.detail));
        if let Some(fix) = &c.fix {
            if c.outcome != Outcome::Ok {
                out.push_str(&format!("       fix: {fix}\n"));
            }
        }
    }
    if let Some(i) = &report.integration {
        out.push_str("\nSnowflake's security integration, matching the tokens seen:\n");
        out.push_str(&i.sql);
        out.push('\n');
    }
    out.push_str(if report.ok {
        "\nAll checks passed.\n"
    } else {
        "\nSome checks failed; see the fixes above.\n"
    });
    out
}
