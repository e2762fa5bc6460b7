//! The grant operations the API offers, over the shared PostgreSQL ledger.
//!
//! The operations themselves (decide with the pure state machine, commit, decide again after a
//! conflict) are the grants crate's [`snowgate_grants::ops`], the same the desktop runs; this
//! adds the server's visibility rule (the requester and the role's approvers see a grant, and
//! nobody else learns it exists) and its HTTP errors. There is no in-memory state here: every
//! replica can serve every request, and the deadlines are applied by [`crate::expiry`] from the
//! database.

use std::sync::Arc;
use std::time::SystemTime;

use snowgate_grants::machine::{GrantRequest, Transition};
use snowgate_grants::{
    ops, Actor, Clock, Comment, Grant, GrantDuration, GrantError, GrantFilter, GrantId, GrantState,
    Ledger, PgLedger, Policy, Reason, RoleName,
};

use crate::error::ApiError;

/// Grant operations for the API.
#[derive(Clone)]
pub struct GrantOps {
    ledger: PgLedger,
    policy: Arc<Policy>,
    clock: Arc<dyn Clock>,
}

impl GrantOps {
    pub fn new(ledger: PgLedger, policy: Policy, clock: Arc<dyn Clock>) -> GrantOps {
        GrantOps {
            ledger,
            policy: Arc::new(policy),
            clock,
        }
    }

    pub fn ledger(&self) -> &PgLedger {
        &self.ledger
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn now(&self) -> SystemTime {
        self.clock.now()
    }

    /// The clock decisions are made by.
    pub fn clock(&self) -> Arc<dyn Clock> {
        self.clock.clone()
    }

    /// A new request; active at once if the policy auto-approves it.
    pub async fn request(&self, requester: &Actor, req: GrantRequest) -> Result<Grant, ApiError> {
        let (t, _) = ops::request::<ApiError>(&self.ledger, &self.policy, requester, req, || {
            self.clock.now()
        })
        .await?;
        Ok(t.into_grant())
    }

    pub async fn approve(
        &self,
        approver: &Actor,
        id: &GrantId,
        comment: Option<Comment>,
    ) -> Result<Grant, ApiError> {
        self.change(approver, id, |g, p, now| {
            g.approve(p, approver, comment.clone(), now)
        })
        .await
    }

    pub async fn deny(
        &self,
        approver: &Actor,
        id: &GrantId,
        comment: Comment,
    ) -> Result<Grant, ApiError> {
        self.change(approver, id, |g, p, now| {
            g.deny(p, approver, comment.clone(), now)
        })
        .await
    }

    pub async fn revoke(
        &self,
        actor: &Actor,
        id: &GrantId,
        comment: Option<Comment>,
    ) -> Result<Grant, ApiError> {
        self.change(actor, id, |g, p, now| {
            g.revoke(p, actor, comment.clone(), now)
        })
        .await
    }

    pub async fn extend(
        &self,
        actor: &Actor,
        id: &GrantId,
        extra: GrantDuration,
        reason: Reason,
    ) -> Result<Grant, ApiError> {
        self.change(actor, id, |g, p, now| {
            g.extend(p, actor, extra, reason.clone(), now)
        })
        .await
    }

    pub async fn cancel(&self, actor: &Actor, id: &GrantId) -> Result<Grant, ApiError> {
        self.change(actor, id, |g, _, now| g.cancel(actor, now))
            .await
    }

    /// The grant, if `who` may see it: its requester, or an approver of its role. Anyone else
    /// gets the refusal an id that names no grant gets, word for word (a 404, not a 403):
    /// whether a grant exists, whose it is and for which role is not their business.
    pub async fn visible(&self, who: &Actor, id: &GrantId) -> Result<Grant, ApiError> {
        let g = self.get(id).await?;
        if self.may_see(who, &g) {
            Ok(g)
        } else {
            Err(GrantError::UnknownGrant { id: id.clone() }.into())
        }
    }

    /// Whether `who` may see `g`: its requester, or an approver of its role.
    pub fn may_see(&self, who: &Actor, g: &Grant) -> bool {
        g.requester().is(who) || self.is_approver_of(who, g.role())
    }

    /// Grants `who` requested, newest first.
    pub async fn mine(
        &self,
        who: &Actor,
        states: Vec<GrantState>,
        limit: Option<u32>,
    ) -> Result<Vec<Grant>, ApiError> {
        let filter = GrantFilter {
            requester: Some(who.subject.clone()),
            states,
            limit,
            ..GrantFilter::default()
        };
        Ok(self.ledger.grants(&filter).await?)
    }

    /// Grants `who` requested or may decide on (every state), newest first.
    pub async fn mine_and_approvable(
        &self,
        who: &Actor,
        states: Vec<GrantState>,
        limit: Option<u32>,
    ) -> Result<Vec<Grant>, ApiError> {
        let roles = self.policy.roles_approvable_by(who);
        let mut all = self.mine(who, states.clone(), limit).await?;
        if !roles.is_empty() {
            let filter = GrantFilter {
                roles: Some(roles),
                states,
                limit,
                ..GrantFilter::default()
            };
            for g in self.ledger.grants(&filter).await? {
                if !g.requester().is(who) {
                    all.push(g);
                }
            }
        }
        all.sort_by(|a, b| {
            b.created_at()
                .cmp(&a.created_at())
                .then_with(|| b.id().cmp(a.id()))
        });
        if let Some(limit) = limit {
            all.truncate(limit as usize);
        }
        Ok(all)
    }

    /// What `approver` can decide on now: pending requests and extensions for roles they
    /// approve, excluding their own and those they already approved.
    pub async fn awaiting(&self, approver: &Actor) -> Result<Vec<Grant>, ApiError> {
        Ok(ops::awaiting(&self.ledger, &self.policy, approver).await?)
    }

    /// Whether `who` is in an approver group of `role`.
    pub fn is_approver_of(&self, who: &Actor, role: &RoleName) -> bool {
        self.policy.role(role).is_ok_and(|r| r.is_approver(who))
    }

    pub async fn get(&self, id: &GrantId) -> Result<Grant, ApiError> {
        ops::get(&self.ledger, id).await
    }

    /// Loads, decides and commits as `who`, re-deciding when another writer got there first.
    ///
    /// Visibility is checked before anything is decided, so someone who may not see the grant
    /// is told only that there is no grant they can act on, the same for every verb; the state
    /// machine's reasons (which name the requester, the role and its approver groups) go only
    /// to those who can see it.
    async fn change<F>(&self, who: &Actor, id: &GrantId, op: F) -> Result<Grant, ApiError>
    where
        F: Fn(&Grant, &Policy, SystemTime) -> Result<Transition, GrantError>,
    {
        let changed = ops::change::<ApiError, _, _, _>(
            &self.ledger,
            &self.policy,
            || self.clock.now(),
            || self.visible(who, id),
            op,
        )
        .await?;
        Ok(changed.into_grant())
    }
}
