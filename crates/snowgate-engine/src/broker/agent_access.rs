//! Access requests made by an agent (`snowgate mcp`'s `request_access` tool): the agent is
//! found by its secret (refused when it is no agent's, or expired), the role must be one its
//! policy allows, and the request is filed as the signed-in user's, since an agent only ever
//! uses the user's access, with a reason that starts "requested by agent NAME" so approvers,
//! the tray and the audit log see who asked. The role's policy decides as for any request:
//! approved at once up to `auto_approve_up_to`, else it waits for a person.

use secrecy::SecretString;

use crate::control::answers::GrantView;
use crate::control::{ControlError, ErrorKind};

use super::Broker;

/// What starts the reason of a request an agent made.
pub const REQUESTED_BY_AGENT: &str = "requested by agent";

/// The reason kept for an agent's request: who asked, then why.
pub fn agent_reason(agent: &str, reason: &str) -> String {
    format!("{REQUESTED_BY_AGENT} {agent}: {}", reason.trim())
}

impl Broker {
    /// Files a request for `role` as the agent whose secret `secret` is.
    pub async fn agent_request_access(
        &self,
        secret: &SecretString,
        role: &str,
        duration_secs: u64,
        reason: &str,
    ) -> Result<GrantView, ControlError> {
        let agent = self.agent_whoami(secret).await?;
        if !agent.allows_role(role) {
            return Err(ControlError::new(
                ErrorKind::Forbidden,
                format!(
                    "agent {} may not use role {role}; its policy allows {}",
                    agent.name,
                    agent.policy.roles.as_deref().unwrap_or_default().join(", ")
                ),
            ));
        }
        if reason.trim().is_empty() {
            return Err(ControlError::new(
                ErrorKind::BadRequest,
                "a reason is required: say why the agent needs the role",
            ));
        }
        self.ops
            .request_access(
                role,
                duration_secs,
                &agent_reason(&agent.name, reason),
                None,
            )
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_agents_reason_names_the_agent_first() {
        assert_eq!(
            agent_reason("claude", "  count the orders "),
            "requested by agent claude: count the orders"
        );
    }
}
