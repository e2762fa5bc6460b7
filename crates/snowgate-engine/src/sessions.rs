//! The gateway's sessions as the control socket and the tray see them: listing the live ones
//! and ending one from Snowgate's side. [`SessionOps`] holds the gateway (or why it could not
//! be bound) and nothing else.

use snowgate_gateway::{Gateway, SessionId};
use snowgate_grants::Timestamp;

use crate::control::answers::{SessionEnded, SessionInfo};
use crate::control::{ControlError, ErrorKind};

/// Lists and ends gateway sessions.
pub struct SessionOps {
    gateway: Result<Gateway, String>,
}

impl SessionOps {
    pub(crate) fn new(gateway: Result<Gateway, String>) -> SessionOps {
        SessionOps { gateway }
    }

    /// The gateway, or why it is not running.
    fn gateway(&self) -> Result<&Gateway, ControlError> {
        self.gateway
            .as_ref()
            .map_err(|problem| ControlError::new(ErrorKind::Unavailable, problem.clone()))
    }

    /// The gateway's live sessions.
    pub fn sessions(&self) -> Result<Vec<SessionInfo>, ControlError> {
        let gateway = self.gateway()?;
        Ok(gateway
            .sessions()
            .into_iter()
            .filter(|s| s.ended.is_none())
            .map(|s| SessionInfo {
                id: s.id.to_string(),
                tool: s.tool.app_id,
                tool_version: s.tool.app_version,
                tool_secret: s.tool.secret_name,
                agent: s.tool.agent,
                process: s.peer.process_name,
                pid: s.peer.pid,
                role: s.role,
                account: s.account,
                grant: s.grant_id,
                login_name: s.login_name,
                since: Timestamp::from(s.opened_at),
                grant_ends_at: Timestamp::from(s.grant_ends_at),
                statements: s.statements,
            })
            .collect())
    }

    /// Closes the gateway session `id` (`S12`, as `sessions` lists it, or `12`) from
    /// Snowgate's side: the upstream session is deleted, the tool's next request gets a
    /// Snowflake-format error saying it was closed in Snowgate, and the audit log records the
    /// close (see [`crate::enforcement::gateway_events`]). `ended: false` if it was not open.
    pub async fn end_session(&self, id: &str) -> Result<SessionEnded, ControlError> {
        let session = parse_session_id(id)?;
        let gateway = self.gateway()?;
        let ended = gateway.close_session(session).await;
        if ended {
            tracing::info!(session = %session, "session closed in Snowgate");
        }
        Ok(SessionEnded {
            id: session.to_string(),
            ended,
        })
    }
}

/// A gateway session id as `sessions` shows it (`S12`), or its bare number.
fn parse_session_id(id: &str) -> Result<SessionId, ControlError> {
    let trimmed = id.trim();
    let digits = trimmed
        .strip_prefix('S')
        .or_else(|| trimmed.strip_prefix('s'))
        .unwrap_or(trimmed);
    digits.parse::<u64>().map(SessionId).map_err(|_| {
        ControlError::new(
            ErrorKind::BadRequest,
            format!("{id:?} is not a session id; `snowgate sessions` lists them (S1, S2, ...)"),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_ids_are_read_as_listed_or_as_bare_numbers() {
        assert_eq!(parse_session_id("S12").unwrap(), SessionId(12));
        assert_eq!(parse_session_id(" s7 ").unwrap(), SessionId(7));
        assert_eq!(parse_session_id("3").unwrap(), SessionId(3));
        let e = parse_session_id("g_abc").unwrap_err();
        assert_eq!(e.kind, ErrorKind::BadRequest);
        assert!(e.message.contains("snowgate sessions"), "{}", e.message);
    }
}
