//! Confirmation, by the person, of the control requests that hand out a secret.
//!
//! Any process of the same OS user can reach the control socket, so without more any such
//! process could ask for a raw Snowflake token (`token`), or create a tool's connection secret
//! (`tool_secret_create`) or an agent's secret (`agent_add`) and with it log in past the
//! gateway's tool-secret rule or an agent's narrower policy. When tool secrets are required and the broker runs inside the tray app, the app gives the broker a
//! [`Confirmer`]: each such request then waits until the person allows it in the tray, and is
//! refused when they deny it or do not answer within [`ConfirmGate::timeout`]. The request
//! names what is asked for and the asking process, as far as the OS tells (its pid from the
//! socket's peer credentials, and its executable and command name from `/proc`).
//!
//! `snowgate up` has no tray, so it runs without a gate and such requests go through; the
//! README says so. The tray's own window calls the broker directly, not over the socket, and
//! is never asked.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::protocol::{ControlError, ErrorKind, Request};

/// How long a request waits for the person's answer by default.
pub const DEFAULT_CONFIRM_TIMEOUT: Duration = Duration::from_secs(60);

/// One request waiting for the person's answer: what it asks for, and who asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ts_rs::TS)]
pub struct ConfirmAsk {
    /// Tells this ask apart from others waiting at the same time.
    #[ts(type = "number")]
    pub id: u64,
    /// The control method (`token`, `tool_secret_create` or `agent_add`).
    pub method: String,
    /// What is asked for, as a sentence ("a Snowflake token for role ANALYST").
    pub what: String,
    /// The asking process's id, when the OS tells.
    pub pid: Option<u32>,
    /// The asking process's executable (or command name), when the OS tells.
    pub process: Option<String>,
    /// How long the person has to answer before the request is refused.
    #[ts(type = "number")]
    pub timeout_secs: u64,
}

/// Asks the person to allow or deny a [`ConfirmAsk`]. `true` allows it. The gate drops the
/// future when the ask times out, so an implementation should take the question down then.
pub trait Confirmer: Send + Sync + 'static {
    fn confirm(&self, ask: ConfirmAsk) -> Pin<Box<dyn Future<Output = bool> + Send>>;
}

/// The rule: which control requests wait for a [`Confirmer`], and for how long.
pub struct ConfirmGate {
    confirmer: Arc<dyn Confirmer>,
    timeout: Duration,
    next_id: AtomicU64,
}

impl ConfirmGate {
    /// A gate that asks `confirmer`, and refuses after [`DEFAULT_CONFIRM_TIMEOUT`].
    pub fn new(confirmer: Arc<dyn Confirmer>) -> ConfirmGate {
        ConfirmGate::with_timeout(confirmer, DEFAULT_CONFIRM_TIMEOUT)
    }

    /// A gate that refuses when no answer came within `timeout`.
    pub fn with_timeout(confirmer: Arc<dyn Confirmer>, timeout: Duration) -> ConfirmGate {
        ConfirmGate {
            confirmer,
            timeout,
            next_id: AtomicU64::new(1),
        }
    }

    /// How long a request waits for an answer.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// What `request` asks for, as a sentence, if it needs the person's confirmation.
    pub fn asks_for(request: &Request) -> Option<String> {
        match request {
            Request::Token { role } => Some(format!("a Snowflake token for role {role}")),
            Request::ToolSecretCreate { name, rotate } => Some(if *rotate {
                format!("a new connection secret for tool \"{name}\", replacing its current one")
            } else {
                format!("a connection secret for tool \"{name}\"")
            }),
            Request::AgentAdd { name, .. } => Some(format!("a secret for a new agent \"{name}\"")),
            _ => None,
        }
    }

    /// Lets `request` through, or refuses it with a sentence: asks the person when the request
    /// hands out a secret, and waits at most [`ConfirmGate::timeout`].
    pub async fn check(&self, request: &Request, pid: Option<u32>) -> Result<(), ControlError> {
        let Some(what) = ConfirmGate::asks_for(request) else {
            return Ok(());
        };
        let method = request.method();
        let process = pid.and_then(process_name);
        let ask = ConfirmAsk {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            method: method.clone(),
            what: what.clone(),
            pid,
            process: process.clone(),
            timeout_secs: self.timeout.as_secs(),
        };
        let asker = match (&process, pid) {
            (Some(p), Some(pid)) => format!("{p} (pid {pid})"),
            (None, Some(pid)) => format!("process {pid}"),
            _ => "a process the OS did not name".to_string(),
        };
        match tokio::time::timeout(self.timeout, self.confirmer.confirm(ask)).await {
            Ok(true) => {
                tracing::info!(%method, asker = %asker, "allowed in the tray");
                Ok(())
            }
            Ok(false) => {
                tracing::warn!(%method, asker = %asker, "denied in the tray");
                Err(ControlError::new(
                    ErrorKind::Forbidden,
                    format!(
                        "{what} was denied in the Snowgate tray; ask again and choose Allow if \
                         you started this"
                    ),
                ))
            }
            Err(_) => {
                tracing::warn!(%method, asker = %asker, "not confirmed in time");
                Err(ControlError::new(
                    ErrorKind::Forbidden,
                    format!(
                        "{what} needs your confirmation in the Snowgate tray, and none came \
                         within {} s; ask again and choose Allow in the window that opens",
                        self.timeout.as_secs()
                    ),
                ))
            }
        }
    }
}

/// The process's executable path, or its command name, from `/proc`.
fn process_name(pid: u32) -> Option<String> {
    let proc = std::path::Path::new("/proc").join(pid.to_string());
    if let Ok(exe) = std::fs::read_link(proc.join("exe")) {
        return Some(exe.display().to_string());
    }
    std::fs::read_to_string(proc.join("comm"))
        .ok()
        .map(|c| c.trim().to_string())
        .filter(|c| !c.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_requests_that_hand_out_a_secret_need_confirmation() {
        let asks = |r: Request| ConfirmGate::asks_for(&r);
        assert_eq!(
            asks(Request::Token {
                role: "ANALYST".into()
            })
            .as_deref(),
            Some("a Snowflake token for role ANALYST")
        );
        assert_eq!(
            asks(Request::ToolSecretCreate {
                name: "dbt".into(),
                rotate: false
            })
            .as_deref(),
            Some("a connection secret for tool \"dbt\"")
        );
        assert!(asks(Request::ToolSecretCreate {
            name: "dbt".into(),
            rotate: true
        })
        .unwrap()
        .contains("replacing"));
        assert_eq!(
            asks(Request::AgentAdd {
                name: "bot".into(),
                roles: None,
                read_only: true,
                max_rows: None,
                max_bytes: None,
                statements_per_minute: None,
                expires_secs: None,
            })
            .as_deref(),
            Some("a secret for a new agent \"bot\"")
        );
        for r in [
            Request::AgentList,
            Request::AgentRemove { name: "bot".into() },
            Request::AgentWhoami {
                secret: super::super::PresentedSecret::new("sga_x"),
            },
            Request::Status,
            Request::ToolSecretList,
            Request::ToolSecretRevoke { name: "dbt".into() },
            Request::ConnectInfo,
            Request::Sessions,
        ] {
            assert_eq!(asks(r.clone()), None, "{r:?}");
        }
    }

    #[test]
    fn this_process_is_named() {
        let name = process_name(std::process::id()).expect("own process");
        let exe = std::env::current_exe().unwrap();
        assert_eq!(name, exe.display().to_string());
    }
}
