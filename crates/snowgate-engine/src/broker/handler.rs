//! The broker's answers to control-socket requests: [`Handler`] maps each [`Request`] to the
//! service that answers it ([`crate::grant_ops::GrantOps`], [`crate::sessions::SessionOps`], the
//! sign-in, the tool secrets, the agents) and serializes the typed answer; sign-out, `whoami` and creating a
//! tool secret or an agent are here too.

use crate::backend::GrantsBackend;
use crate::grant_ops::Decision;

use crate::agents::{Agent, AgentRequest};
use crate::control::answers::{
    AgentAdded, AgentRemoved, LogoutAnswer, RevealedSecret, ToolSecretCreated, ToolSecretRevoked,
    WhoAmIAnswer,
};
use crate::control::{ControlError, ErrorKind, Handler, Request};
use crate::identity::IdentityError;

use super::sign_in::identity_error;
use super::{agent_error, tool_secret_error, Broker};

fn to_value<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, ControlError> {
    serde_json::to_value(value).map_err(|e| ControlError::new(ErrorKind::Internal, e.to_string()))
}

impl Handler for Broker {
    async fn handle(&self, request: Request) -> Result<serde_json::Value, ControlError> {
        match request {
            Request::Status => to_value(&self.status()),
            Request::LoginBegin {
                device,
                session_only,
            } => to_value(&self.login_begin(device, session_only).await?),
            Request::LoginWait { login_id } => to_value(&self.login_wait(&login_id).await?),
            Request::Logout => to_value(&self.logout().await?),
            Request::Whoami => to_value(&self.whoami().await?),
            Request::Doctor => {
                let report = crate::doctor::examine(crate::doctor::Patient {
                    config: self.engine.config(),
                    identity: self.identity(),
                    grants: self.grants.as_ref().ok().cloned(),
                    gateway: self.gateway().map(|g| g.local_addrs()).unwrap_or_default(),
                })
                .await;
                to_value(&report)
            }
            Request::Roles => to_value(&self.ops.roles().await?),
            Request::RequestAccess {
                role,
                duration_secs,
                reason,
                ticket,
            } => to_value(
                &self
                    .ops
                    .request_access(&role, duration_secs, &reason, ticket.as_deref())
                    .await?,
            ),
            Request::Grants { all } => to_value(&self.ops.list_grants(all).await?),
            Request::GrantGet { id } => to_value(&self.ops.grant(&id).await?),
            Request::ApproverLoginBegin { grant_id } => {
                to_value(&self.ops.approver_login_begin(grant_id.as_deref()).await?)
            }
            Request::Approve {
                id,
                comment,
                approver_login_id,
            } => to_value(
                &self
                    .ops
                    .decide(
                        Decision::Approve,
                        &id,
                        comment.as_deref(),
                        approver_login_id.as_deref(),
                    )
                    .await?,
            ),
            Request::Deny {
                id,
                comment,
                approver_login_id,
            } => to_value(
                &self
                    .ops
                    .decide(
                        Decision::Deny,
                        &id,
                        Some(&comment),
                        approver_login_id.as_deref(),
                    )
                    .await?,
            ),
            Request::Revoke {
                id,
                comment,
                approver_login_id: Some(login),
            } => to_value(
                &self
                    .ops
                    .decide(Decision::Revoke, &id, comment.as_deref(), Some(&login))
                    .await?,
            ),
            Request::Revoke {
                id,
                comment,
                approver_login_id: None,
            } => to_value(&self.ops.revoke_own(&id, comment.as_deref()).await?),
            Request::Extend {
                id,
                by_secs,
                reason,
            } => to_value(&self.ops.extend(&id, by_secs, &reason).await?),
            Request::Cancel { id } => to_value(&self.ops.cancel(&id).await?),
            Request::Audit { since, limit } => {
                to_value(&self.ops.audit(since.as_deref(), limit).await?)
            }
            Request::AuditVerify => to_value(&self.ops.audit_verify().await?),
            Request::AuditExport => to_value(&self.ops.audit_export().await?),
            Request::Sessions => to_value(&self.session_ops.sessions()?),
            Request::SessionEnd { id } => to_value(&self.session_ops.end_session(&id).await?),
            Request::ConnectInfo => to_value(&self.connect_info()),
            Request::Token { role } => to_value(&self.ops.vend_token(&role).await?),
            Request::ToolSecretCreate { name, rotate } => {
                to_value(&self.create_tool_secret(&name, rotate).await?)
            }
            Request::ToolSecretList => {
                let list = self.tool_secrets.list().map_err(tool_secret_error)?;
                to_value(&list)
            }
            Request::ToolSecretRevoke { name } => {
                let ended = self.revoke_tool_secret(&name).await?;
                to_value(&ToolSecretRevoked {
                    name,
                    revoked: true,
                    sessions_ended: ended as u64,
                })
            }
            Request::AgentAdd {
                name,
                roles,
                read_only,
                max_rows,
                max_bytes,
                statements_per_minute,
                expires_secs,
            } => to_value(
                &self
                    .add_agent(
                        &name,
                        AgentRequest {
                            roles,
                            read_only,
                            max_rows,
                            max_bytes,
                            statements_per_minute,
                            expires_in: expires_secs.map(std::time::Duration::from_secs),
                        },
                    )
                    .await?,
            ),
            Request::AgentList => to_value(&self.agents.list().map_err(agent_error)?),
            Request::AgentRemove { name } => {
                let ended = self.remove_agent(&name).await?;
                to_value(&AgentRemoved {
                    name,
                    removed: true,
                    sessions_ended: ended as u64,
                })
            }
            Request::AgentWhoami { secret } => to_value(
                &self
                    .agent_whoami(&secrecy::SecretString::from(secret.expose().to_string()))
                    .await?,
            ),
            Request::AgentRequestAccess {
                secret,
                role,
                duration_secs,
                reason,
            } => to_value(
                &self
                    .agent_request_access(
                        &secrecy::SecretString::from(secret.expose().to_string()),
                        &role,
                        duration_secs,
                        &reason,
                    )
                    .await?,
            ),
        }
    }
}

impl Broker {
    /// Signs out: revokes at the IdP, forgets the tokens, and ends every gateway session.
    pub async fn logout(&self) -> Result<LogoutAnswer, ControlError> {
        let identity = self
            .identity()
            .ok_or_else(|| ControlError::new(ErrorKind::SignedOut, "not signed in"))?;
        let report = identity.logout().await.map_err(identity_error)?;
        if let Some(gateway) = self.gateway() {
            crate::enforcement::end_all_sessions(&gateway).await;
        }
        Ok(LogoutAnswer {
            was_signed_in: report.was_signed_in,
            revoked: report.revoked,
            message: report.message(),
        })
    }

    /// Who is signed in; in team mode, with the groups the server resolved, which its
    /// decisions use and which may differ from the IdP's.
    pub async fn whoami(&self) -> Result<WhoAmIAnswer, ControlError> {
        let who = self
            .identity()
            .and_then(|i| i.whoami())
            .ok_or_else(|| identity_error(IdentityError::NotSignedIn))?;
        let mut answer = WhoAmIAnswer {
            who,
            server_groups: None,
            server_problem: None,
        };
        if let Ok(GrantsBackend::Team(team)) = &self.grants {
            match team.me().await {
                Ok(caller) => answer.server_groups = Some(caller.groups),
                Err(e) => answer.server_problem = Some(e.to_string()),
            }
        }
        Ok(answer)
    }

    /// Adds an agent with the policy `request` asks for, checked against the configured roles;
    /// the answer holds its secret.
    pub async fn add_agent(
        &self,
        name: &str,
        request: AgentRequest,
    ) -> Result<AgentAdded, ControlError> {
        crate::agents::validate_agent_name(name).map_err(agent_error)?;
        let known = crate::grant_ops::role_names(self.engine.config(), self.grants.as_ref().ok());
        let policy = request
            .policy(&known, std::time::SystemTime::now())
            .map_err(agent_error)?;
        let secret = self
            .agents
            .add(name, policy.clone())
            .await
            .map_err(agent_error)?;
        let agent = self
            .agents
            .get(name)
            .map_err(agent_error)?
            .unwrap_or(Agent {
                name: name.to_string(),
                policy,
                created_at: String::new(),
            });
        Ok(AgentAdded {
            agent,
            secret: RevealedSecret::new(secret),
        })
    }

    /// The agent whose secret `secret` is, with its policy; refused with a sentence when it is
    /// no agent's or the agent expired.
    pub async fn agent_whoami(
        &self,
        secret: &secrecy::SecretString,
    ) -> Result<Agent, ControlError> {
        self.agents
            .authenticate(secret, std::time::SystemTime::now())
            .await
            .map_err(agent_error)
    }

    /// Creates (or with `rotate`, replaces) a tool's connection secret; the answer holds it.
    pub async fn create_tool_secret(
        &self,
        name: &str,
        rotate: bool,
    ) -> Result<ToolSecretCreated, ControlError> {
        let secret = self
            .tool_secrets
            .create(name, rotate)
            .await
            .map_err(tool_secret_error)?;
        Ok(ToolSecretCreated {
            name: name.to_string(),
            secret: RevealedSecret::new(secret),
            required: self.engine.config().gateway.tool_secrets_required(),
        })
    }
}
