//! A tool's login for a role the person holds no grant for: the ask the tray hears about, and
//! with `[gateway] wait_for_approval` the request filed for it and the wait for its decision.
//!
//! [`crate::access::Access`] hands such a login to an [`Asker`]. Without a wait, the ask is
//! noted ([`ToolAsks::note`]: one notice per tool and role within a few minutes) and the login
//! gets the refusal it had. With a wait, the person's pending request for the role is reused,
//! or one is filed as theirs for the policy's default duration ([`default_request_secs`]) with
//! the reason "requested by TOOL at login"; the policy decides it as any other (at once up to
//! `auto_approve_up_to`, with no notice: the tool simply connects). The login then waits on
//! the grant events of either backend (the ledger's broadcast in solo mode, the team server's
//! event stream in team mode): an activation lets it go on, a denial, a timeout or a
//! cancellation refuses it with what happened, and the end of the wait refuses it naming the
//! request still pending; a sign-out ends the wait at once. The wait is an `await` on the
//! gateway's async task, so it holds no thread.

use std::time::{Duration, SystemTime};

use snowgate_gateway::Refusal;
use snowgate_grants::{
    Cause, Grant, GrantDuration, GrantEventKind, GrantRequest, GrantState, Reason, RoleName,
    RolePolicy,
};
use tokio::sync::broadcast::error::RecvError;

use crate::backend::GrantsBackend;
use crate::engine::Engine;
use crate::identity::Identity;
use crate::tool_asks::ToolAsks;

/// What starts the reason of a request filed for a tool's login.
pub const REQUESTED_BY: &str = "requested by";

/// The reason kept for a request filed while `tool`'s login waits.
pub fn login_reason(tool: &str) -> String {
    format!("{REQUESTED_BY} {tool} at login")
}

/// The duration a request from a tool's ask defaults to: the role's auto-approval cap when it
/// has one (so the policy answers at once), else an hour, never more than the role's maximum.
pub fn default_request_secs(role: &RolePolicy) -> u64 {
    let max = role.max_duration.as_secs();
    match role.auto_approve_up_to {
        Some(auto) => auto.as_secs().min(max),
        None => 3600.min(max),
    }
}

/// One tool's login for `role`, which the person holds no usable grant for.
pub(crate) struct Asker<'a> {
    pub engine: &'a Engine,
    pub grants: &'a GrantsBackend,
    pub asks: &'a ToolAsks,
    /// The tool, as [`crate::tool_asks::tool_label`] names it.
    pub tool: String,
    pub role: String,
}

impl Asker<'_> {
    /// Notes the ask; without `[gateway] wait_for_approval` refuses with `refusal`, with it
    /// waits for the request's decision: `Ok` once the role's grant is active.
    pub async fn ask(&self, identity: &Identity, refusal: Refusal) -> Result<(), Refusal> {
        let policy = self.grants.policy();
        let role_policy = RoleName::new(&self.role)
            .ok()
            .and_then(|r| policy.role(&r).ok().cloned());
        let duration_secs = role_policy
            .as_ref()
            .map(default_request_secs)
            .unwrap_or(3600);
        let new = self
            .asks
            .note(&self.tool, &self.role, duration_secs, SystemTime::now());
        let Some(wait) = self.engine.config().gateway.wait_for_approval.map(|d| d.0) else {
            if let Some(ask) = new {
                self.asks.announce(ask);
            }
            return Err(refusal);
        };
        // Before anything is filed, so that a sign-out from here on ends the wait.
        let mut identity_events = identity.subscribe();
        let filing = self.asks.filing.lock().await;
        let found = self.pending_or_filed(identity, duration_secs).await;
        drop(filing);
        let (id, settled) = match found {
            Ok(found) => found,
            Err(e) => {
                if let Some(ask) = new {
                    self.asks.announce(ask);
                }
                return Err(e);
            }
        };
        self.asks.set_request(&self.tool, &self.role, &id);
        // What the policy approved at once makes no notice (as in `notices`): the tool simply
        // connects. The status still lists the ask with its request.
        if new.is_some() && matches!(settled, Settled::No(_)) {
            if let Some(ask) = self.asks.get(&self.tool, &self.role) {
                self.asks.announce(ask);
            }
        }
        match settled {
            Settled::No(mut events) => {
                tracing::info!(tool = %self.tool, role = %self.role, grant = %id, wait = ?wait, "a tool's login waits for its request's decision");
                tokio::select! {
                    done = self.wait(&mut events, &id, wait) => done,
                    () = signed_out(&mut identity_events) => {
                        Err(Refusal::login(crate::access::SIGNED_OUT))
                    }
                }
            }
            Settled::Yes(grant) => self.outcome(&grant).unwrap_or(Ok(())),
        }
    }

    /// The person's pending request for the role, or one filed now; subscribed to the grant
    /// events first, so that no decision is missed.
    async fn pending_or_filed(
        &self,
        identity: &Identity,
        duration_secs: u64,
    ) -> Result<(String, Settled), Refusal> {
        let profile = identity
            .profile()
            .ok_or_else(|| Refusal::login(crate::access::SIGNED_OUT))?;
        let me = crate::grant_ops::actor_of(&profile).map_err(|e| Refusal::login(e.message))?;
        let events = self.grants.subscribe();
        let failed = |what: &str, e: String| {
            Refusal::role_not_granted(format!(
                "Snowgate: you have no active access to role {}, and {what} failed: {e}",
                self.role
            ))
        };
        let mine = self
            .grants
            .mine(&me.subject)
            .await
            .map_err(|e| failed("reading your requests", e.message))?;
        if let Some(pending) = mine.iter().find(|g| {
            g.role().as_str() == self.role
                && g.requester().subject == me.subject
                && g.state() == GrantState::Pending
        }) {
            return Ok((pending.id().as_str().to_string(), Settled::No(events)));
        }
        let role = RoleName::new(&self.role).map_err(|e| failed("requesting it", e.to_string()))?;
        let reason = Reason::new(login_reason(&self.tool))
            .map_err(|e| failed("requesting it", e.to_string()))?;
        let duration = GrantDuration::from_secs(duration_secs)
            .map_err(|e| failed("requesting it", e.to_string()))?;
        let req = GrantRequest {
            role,
            duration,
            reason,
            ticket: None,
        };
        let grant = self
            .grants
            .request(&me, req, duration_secs)
            .await
            .map_err(|e| failed("requesting it", e.message))?;
        tracing::info!(tool = %self.tool, role = %self.role, grant = %grant.id(), "filed a request for a tool's login");
        let id = grant.id().as_str().to_string();
        Ok(match grant.state() {
            GrantState::Pending => (id, Settled::No(events)),
            _ => (id, Settled::Yes(Box::new(grant))),
        })
    }

    /// Waits up to `wait` for the decision on `id`.
    async fn wait(
        &self,
        events: &mut tokio::sync::broadcast::Receiver<snowgate_grants::GrantEvent>,
        id: &str,
        wait: Duration,
    ) -> Result<(), Refusal> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, events.recv()).await {
                Err(_) | Ok(Err(RecvError::Closed)) => break,
                Ok(Ok(event)) if event.grant.as_str() == id => {
                    let by = match &event.cause {
                        Cause::Person(who) => Some(who.to_string()),
                        _ => None,
                    };
                    match &event.kind {
                        GrantEventKind::Activated { .. } => return Ok(()),
                        GrantEventKind::Denied { comment } => {
                            return Err(self.denied(by.as_deref(), Some(comment.as_str())))
                        }
                        GrantEventKind::TimedOut | GrantEventKind::Cancelled => {
                            return Err(self.ended(id, &event.kind))
                        }
                        _ => {}
                    }
                }
                Ok(Ok(_)) => {}
                // Events were missed: the grant itself says where it stands.
                Ok(Err(RecvError::Lagged(_))) => {
                    if let Some(done) = self.settled(id).await {
                        return done;
                    }
                }
            }
        }
        // An event may have come between the last look and the deadline.
        if let Some(done) = self.settled(id).await {
            return done;
        }
        Err(Refusal::role_not_granted(format!(
            "Snowgate: {} was not approved within {}; your request {id} is still pending — it will work once approved",
            self.role,
            snowgate_config::duration::format(wait)
        )))
    }

    /// The outcome when the grant `id` is decided, from the grant as it stands.
    async fn settled(&self, id: &str) -> Option<Result<(), Refusal>> {
        let grant = self.grants.get(&id.parse().ok()?).await.ok()?;
        self.outcome(&grant)
    }

    /// `Some(Ok)` for an active grant, `Some(Err)` for one that ended undecided or denied,
    /// `None` while it waits.
    fn outcome(&self, grant: &Grant) -> Option<Result<(), Refusal>> {
        match grant.state() {
            GrantState::Pending => None,
            GrantState::Active => Some(Ok(())),
            GrantState::Denied => {
                let by = grant.ended_by().map(|a| a.to_string());
                Some(Err(self.denied(
                    by.as_deref(),
                    grant.end_comment().map(|c| c.as_str()),
                )))
            }
            GrantState::TimedOut => Some(Err(
                self.ended(grant.id().as_str(), &GrantEventKind::TimedOut)
            )),
            GrantState::Cancelled => Some(Err(
                self.ended(grant.id().as_str(), &GrantEventKind::Cancelled)
            )),
            _ => Some(Err(Refusal::role_not_granted(format!(
                "Snowgate: your request {} for {} already ended ({}); request it again",
                grant.id(),
                self.role,
                grant.state().as_str()
            )))),
        }
    }

    fn denied(&self, by: Option<&str>, comment: Option<&str>) -> Refusal {
        let by = by.map(|b| format!(" by {b}")).unwrap_or_default();
        let comment = comment.map(|c| format!(": {c}")).unwrap_or_default();
        Refusal::role_not_granted(format!("Snowgate: {} was denied{by}{comment}", self.role))
    }

    fn ended(&self, id: &str, kind: &GrantEventKind) -> Refusal {
        let what = match kind {
            GrantEventKind::Cancelled => "was cancelled",
            _ => "timed out without a decision",
        };
        Refusal::role_not_granted(format!(
            "Snowgate: your request {id} for {} {what}; request it again from the Snowgate tray or with `snowgate request {}`",
            self.role, self.role
        ))
    }
}

/// Returns when the person signs out (a waiting login then ends at once).
async fn signed_out(events: &mut tokio::sync::broadcast::Receiver<crate::identity::IdentityEvent>) {
    loop {
        match events.recv().await {
            Ok(crate::identity::IdentityEvent::SignedOut { .. }) => return,
            Ok(_) | Err(RecvError::Lagged(_)) => {}
            Err(RecvError::Closed) => return,
        }
    }
}

/// Whether the request is decided already (the policy approved it at once).
enum Settled {
    No(tokio::sync::broadcast::Receiver<snowgate_grants::GrantEvent>),
    Yes(Box<Grant>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_request_names_the_tool() {
        assert_eq!(
            login_reason("PythonConnector (python)"),
            "requested by PythonConnector (python) at login"
        );
    }

    #[test]
    fn the_default_duration_is_the_auto_approval_cap_else_an_hour_within_the_maximum() {
        let d = |secs: u64| GrantDuration::from_secs(secs).unwrap();
        let role = |max: u64, auto: Option<u64>| RolePolicy {
            name: RoleName::new("ANALYST").unwrap(),
            description: String::new(),
            max_duration: d(max),
            approver_groups: vec!["managers".into()],
            approvals_required: std::num::NonZeroU32::new(1).unwrap(),
            auto_approve_up_to: auto.map(d),
            pending_timeout: d(1800),
            extensions_allowed: false,
            statements: snowgate_grants::StatementRule::Any,
            allow_list_stage: false,
            account: None,
        };
        assert_eq!(default_request_secs(&role(8 * 3600, Some(1800))), 1800);
        assert_eq!(default_request_secs(&role(8 * 3600, None)), 3600);
        assert_eq!(default_request_secs(&role(1200, None)), 1200);
    }
}
