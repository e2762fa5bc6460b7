//! `snowgate agent add|list|remove`: agent identities, thin clients of the broker's
//! `agent_add`, `agent_list` and `agent_remove`. The secret is printed once, alone on stdout.

use std::process::ExitCode;

use clap::Subcommand;
use snowgate_engine::agents::{rfc3339, Agent};
use snowgate_engine::control::answers::{AgentAdded, AgentRemoved};
use snowgate_engine::control::Request;

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Add an agent: a secret with a policy; prints the secret once, alone on stdout
    Add {
        /// The agent's name: 1 to 64 letters, digits, `-`, `_` or `.` (e.g. claude-code)
        name: String,
        /// The roles it may use, comma-separated (default: any role you hold a grant for)
        #[arg(long, value_delimiter = ',')]
        roles: Option<Vec<String>>,
        /// Only read-only statements (SELECT, SHOW, DESCRIBE, EXPLAIN, USE WAREHOUSE, ...)
        #[arg(long)]
        read_only: bool,
        /// The most rows a result may carry to it
        #[arg(long, value_name = "N")]
        max_rows: Option<String>,
        /// The most bytes a result may carry to it
        #[arg(long, value_name = "N")]
        max_bytes: Option<String>,
        /// The most statements it may send in any minute
        #[arg(long, value_name = "N")]
        statements_per_minute: Option<String>,
        /// How long it lasts (30m, 12h, 7d; at most 366d)
        #[arg(long, value_name = "DURATION")]
        expires: Option<String>,
    },
    /// List the agents with their roles, policy and expiry (never a secret)
    List {
        #[arg(long)]
        json: bool,
    },
    /// Remove an agent: its secret stops working and its open sessions are closed
    Remove { name: String },
}

/// A whole number of at least 1 that fits `T`, or a sentence naming the flag.
fn count<T: TryFrom<u64>>(flag: &str, text: Option<String>) -> anyhow::Result<Option<T>> {
    let Some(text) = text else { return Ok(None) };
    match text.trim().replace('_', "").parse::<u64>() {
        Ok(v) if v >= 1 => match T::try_from(v) {
            Ok(v) => Ok(Some(v)),
            Err(_) => anyhow::bail!("{flag} {text:?}: that is too large"),
        },
        _ => anyhow::bail!(
            "{flag} {text:?}: give a whole number of at least 1 (for example {flag} 1000)"
        ),
    }
}

pub async fn run(command: AgentCommand) -> anyhow::Result<ExitCode> {
    match command {
        AgentCommand::Add {
            name,
            roles,
            read_only,
            max_rows,
            max_bytes,
            statements_per_minute,
            expires,
        } => {
            let expires_secs = match expires {
                None => None,
                Some(text) => Some(
                    snowgate_engine::duration::parse(&text)
                        .map_err(|e| anyhow::anyhow!("--expires {text:?}: {e}"))?
                        .as_secs(),
                ),
            };
            let answer: AgentAdded = crate::call(Request::AgentAdd {
                name: name.clone(),
                roles,
                read_only,
                max_rows: count("--max-rows", max_rows)?,
                max_bytes: count("--max-bytes", max_bytes)?,
                statements_per_minute: count("--statements-per-minute", statements_per_minute)?,
                expires_secs,
            })
            .await?;
            // Shown this once, on stdout: the person asked for it.
            println!("{}", answer.secret.expose());
            eprintln!(
                "Agent {name} added ({}). Give it this secret as its Snowflake password through the gateway, or run `snowgate mcp --agent {name}`. It is shown only now.",
                policy_summary(&answer.agent)
            );
        }
        AgentCommand::List { json } => {
            let agents: Vec<Agent> = crate::call(Request::AgentList).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&agents)?);
            } else {
                if agents.is_empty() {
                    eprintln!("No agents; add one with `snowgate agent add NAME`.");
                }
                for a in &agents {
                    println!("{:<24} {}", a.name, policy_summary(a));
                }
            }
        }
        AgentCommand::Remove { name } => {
            let answer: AgentRemoved =
                crate::call(Request::AgentRemove { name: name.clone() }).await?;
            println!(
                "Removed agent {name}; its secret no longer works{}.",
                match answer.sessions_ended {
                    0 => String::new(),
                    1 => " and its open session was closed".into(),
                    n => format!(" and its {n} open sessions were closed"),
                }
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// "roles ANALYST; read-only; 1000 rows; 60/min; expires 2026-05-01T10:00:00Z".
fn policy_summary(a: &Agent) -> String {
    let p = &a.policy;
    let mut parts = vec![match &p.roles {
        Some(r) => format!("roles {}", r.join(",")),
        None => "any role you hold".into(),
    }];
    parts.push(
        if p.read_only {
            "read-only"
        } else {
            "any statement the role allows"
        }
        .into(),
    );
    if let Some(n) = p.max_rows {
        parts.push(format!("at most {n} rows"));
    }
    if let Some(n) = p.max_bytes {
        parts.push(format!("at most {n} bytes"));
    }
    if let Some(n) = p.statements_per_minute {
        parts.push(format!("{n} statements/min"));
    }
    parts.push(match p.expires_at {
        Some(t) if t <= std::time::SystemTime::now() => format!("expired {}", rfc3339(t)),
        Some(t) => format!("expires {}", rfc3339(t)),
        None => "never expires".into(),
    });
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_are_whole_numbers_of_at_least_one() {
        assert_eq!(
            count::<u64>("--max-rows", Some("1000".into())).unwrap(),
            Some(1000)
        );
        assert_eq!(
            count::<u64>("--max-rows", Some("1_000".into())).unwrap(),
            Some(1000)
        );
        assert_eq!(count::<u64>("--max-rows", None).unwrap(), None);
        assert!(
            count::<u32>("--statements-per-minute", Some("99999999999".into()))
                .unwrap_err()
                .to_string()
                .contains("too large")
        );
        for bad in ["0", "00", "-1", "ten", "1.5", ""] {
            let err = count::<u32>("--statements-per-minute", Some(bad.into()))
                .unwrap_err()
                .to_string();
            assert!(err.contains("--statements-per-minute"), "{err}");
            assert!(err.contains("at least 1"), "{err}");
        }
    }
}
