//! The grant operations of team mode, each one call to the server as the signed-in user:
//! the roles (`GET /v1/roles`, also kept as the policy for notices), a request, the caller's
//! grants (or also those of the roles they approve), one grant, what awaits their decision,
//! and the decisions (approve, deny, revoke, extend, cancel). The server applies its policy;
//! the grants in every answer are kept as seen ([`TeamClient::seen`]). A decision that ends a
//! grant marks it ended here at once, so the gateway stops using it before the event arrives.

use std::sync::Arc;

use snowgate_grants::team_api::{
    Empty, ExtendRequest, GrantList, GrantsQuery, NewRequest, OneGrant, OptionalComment,
    RequiredComment, RolesAnswer,
};
use snowgate_grants::{Comment, Grant, GrantDuration, GrantId, Policy, Reason};

use super::transport::with_query;
use super::{TeamClient, TeamError};

/// The policy described by a `GET /v1/roles` answer.
fn policy_from_roles(answer: &RolesAnswer) -> Result<Policy, String> {
    Policy::new(answer.roles.iter().map(|r| r.policy()).collect())
        .map_err(|e| format!("the server's roles can't be used: {e}"))
}

impl TeamClient {
    /// The requestable roles (`GET /v1/roles`), also kept as the policy for notices.
    pub async fn roles(&self) -> Result<Arc<Policy>, TeamError> {
        let answer: RolesAnswer = self.get_json("/v1/roles").await?;
        let policy = policy_from_roles(&answer).map_err(|e| self.bad_answer(e))?;
        let policy = Arc::new(policy);
        *self.inner.policy.write().unwrap() = policy.clone();
        Ok(policy)
    }

    /// Asks for `role` (`POST /v1/requests`).
    pub async fn request(
        &self,
        role: &str,
        duration_secs: u64,
        reason: &str,
        ticket: Option<&str>,
    ) -> Result<Grant, TeamError> {
        let body = NewRequest {
            role: role.to_string(),
            duration_secs,
            reason: reason.to_string(),
            ticket: ticket.map(str::to_string),
        };
        let answer: OneGrant = self.post_json("/v1/requests", &body).await?;
        Ok(self.seen_one(answer))
    }

    /// The caller's grants, or also those of the roles they approve (`all`).
    pub async fn list(&self, all: bool) -> Result<Vec<Grant>, TeamError> {
        let query = GrantsQuery {
            mine: !all,
            state: None,
            limit: Some(1000),
        };
        let answer: GrantList = self.get_json(&with_query("/v1/grants", &query)).await?;
        Ok(self.seen(answer.grants))
    }

    /// One grant.
    pub async fn get(&self, id: &GrantId) -> Result<Grant, TeamError> {
        let answer: OneGrant = self.get_json(&format!("/v1/grants/{id}")).await?;
        Ok(self.seen_one(answer))
    }

    /// Requests and extensions waiting for the caller's decision.
    pub async fn awaiting(&self) -> Result<Vec<Grant>, TeamError> {
        let answer: GrantList = self.get_json("/v1/approvals").await?;
        Ok(self.seen(answer.grants))
    }

    /// Approves a pending request or extension, as the caller.
    pub async fn approve(
        &self,
        id: &GrantId,
        comment: Option<&Comment>,
    ) -> Result<Grant, TeamError> {
        self.act(id, "approve", &optional_comment(comment)).await
    }

    /// Denies a pending request or extension, as the caller.
    pub async fn deny(&self, id: &GrantId, comment: &Comment) -> Result<Grant, TeamError> {
        let body = RequiredComment {
            comment: comment.as_str().to_string(),
        };
        self.act(id, "deny", &body).await
    }

    /// Ends an active grant early, as its requester or an approver.
    pub async fn revoke(
        &self,
        id: &GrantId,
        comment: Option<&Comment>,
    ) -> Result<Grant, TeamError> {
        self.act(id, "revoke", &optional_comment(comment)).await
    }

    /// Asks for more time on an active grant.
    pub async fn extend(
        &self,
        id: &GrantId,
        by: GrantDuration,
        reason: &Reason,
    ) -> Result<Grant, TeamError> {
        let body = ExtendRequest {
            by_secs: by.as_secs(),
            reason: reason.as_str().to_string(),
        };
        self.act(id, "extend", &body).await
    }

    /// Withdraws a pending request or extension.
    pub async fn cancel(&self, id: &GrantId) -> Result<Grant, TeamError> {
        self.act(id, "cancel", &Empty {}).await
    }

    /// `POST /v1/grants/{id}/{action}` with `body`, as the caller.
    async fn act(
        &self,
        id: &GrantId,
        action: &str,
        body: &(impl serde::Serialize + Sync),
    ) -> Result<Grant, TeamError> {
        let answer: OneGrant = self
            .post_json(&format!("/v1/grants/{id}/{action}"), body)
            .await?;
        let g = self.seen_one(answer);
        if g.state().is_ended() {
            self.inner.ended.lock().unwrap().insert(g.id().clone());
        }
        Ok(g)
    }

    /// Keeps the answer's grant as seen, and gives it back.
    fn seen_one(&self, answer: OneGrant) -> Grant {
        self.remember(std::slice::from_ref(&answer.grant));
        answer.grant
    }

    /// Updates the grant an event is about from the server (best effort), so the cache knows
    /// an extension's new end or an approval's activation.
    pub(super) async fn refresh_grant(&self, id: &GrantId) {
        if let Err(e) = self.get(id).await {
            tracing::debug!(grant = %id, error = %e, "could not re-read a grant after its event");
        }
    }

    /// Reads the caller's grants and the roles, to start from what the server knows.
    pub(super) async fn resync(&self) {
        if let Err(e) = self.list(true).await {
            tracing::debug!(error = %e, "could not read the grants from the team server");
        }
        if let Err(e) = self.roles().await {
            tracing::debug!(error = %e, "could not read the roles from the team server");
        }
        if let Err(e) = self.me().await {
            tracing::debug!(error = %e, "could not read who the team server takes this user for");
        }
    }
}

/// The body of approve and revoke.
fn optional_comment(comment: Option<&Comment>) -> OptionalComment {
    OptionalComment {
        comment: comment.map(|c| c.as_str().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_servers_roles_become_a_policy() {
        let answer: RolesAnswer = serde_json::from_value(json!({ "roles": [
            { "name": "ANALYST", "description": "Analytics", "max_duration_secs": 28800,
              "approver_groups": ["managers"], "approvals_required": 1,
              "auto_approve_up_to_secs": null, "pending_timeout_secs": 86400,
              "extensions_allowed": true, "you_can_approve": false },
            { "name": "READONLY", "max_duration_secs": 3600, "approver_groups": ["managers"],
              "approvals_required": 2, "auto_approve_up_to_secs": 3600,
              "pending_timeout_secs": 600, "extensions_allowed": false }
        ]}))
        .unwrap();
        let p = policy_from_roles(&answer).unwrap();
        assert_eq!(p.roles().len(), 2);
        let ro = &p.roles()[1];
        assert_eq!(ro.name.as_str(), "READONLY");
        assert_eq!(ro.approvals_required.get(), 2);
        assert_eq!(ro.auto_approve_up_to.unwrap().as_secs(), 3600);
        assert!(!ro.extensions_allowed);
        // The same role twice is no policy.
        let twice = RolesAnswer {
            roles: vec![answer.roles[0].clone(), answer.roles[0].clone()],
        };
        let err = policy_from_roles(&twice).unwrap_err();
        assert!(err.contains("the server's roles can't be used"), "{err}");
    }

    #[test]
    fn decision_bodies_carry_only_what_was_given() {
        assert_eq!(
            serde_json::to_value(optional_comment(None)).unwrap(),
            json!({})
        );
        let c = Comment::new("ok for the quarter").unwrap();
        assert_eq!(
            serde_json::to_value(optional_comment(Some(&c))).unwrap(),
            json!({ "comment": "ok for the quarter" })
        );
    }
}
