//! The grant operations over any [`Ledger`], stateless: the one place that turns a decision of
//! the state machine into a commit. The desktop's [`Grants`](crate::Grants) and the team
//! server's API both call these, and add only what is theirs (the desktop's deadline timer
//! and event broadcast; the server's visibility rule and HTTP errors).
//!
//! - [`request`]: a new grant; a clash of the random id is retried with a new one.
//! - [`change`]: load, decide, commit. The ledger refuses a commit made on a stale version
//!   ([`LedgerError::Conflict`]), so when two writers decide on one grant at once, the loser
//!   loads again and decides on what is now stored, up to [`CONFLICT_RETRIES`] times.
//! - [`awaiting`]: what an approver can decide now ([`Grant::awaits_decision_by`]).
//!
//! Errors are the caller's own type, made from [`GrantError`] and [`LedgerError`].

use std::future::Future;
use std::time::SystemTime;

use crate::audit::AuditRecord;
use crate::error::GrantError;
use crate::ledger::{GrantFilter, Ledger, LedgerError};
use crate::machine::{self, GrantRequest, Transition};
use crate::model::{Actor, Grant, GrantId};
use crate::policy::Policy;

/// How many times an operation is decided again when another writer changed the grant first
/// (or, for a request, when its random id was taken).
pub const CONFLICT_RETRIES: usize = 5;

/// What [`change`] did.
#[derive(Debug)]
pub enum Changed {
    /// The decision changed nothing (e.g. a timer tick before any deadline): the grant as
    /// loaded, nothing written.
    Unchanged(Grant),
    /// The transition was committed together with these audit records.
    Committed(Transition, Vec<AuditRecord>),
}

impl Changed {
    /// The grant as it now is.
    pub fn grant(&self) -> &Grant {
        match self {
            Changed::Unchanged(g) => g,
            Changed::Committed(t, _) => t.grant(),
        }
    }

    /// The grant as it now is, by value.
    pub fn into_grant(self) -> Grant {
        match self {
            Changed::Unchanged(g) => g,
            Changed::Committed(t, _) => t.into_grant(),
        }
    }
}

/// Asks for a role as `requester` and commits the new grant (active at once when the policy
/// auto-approves it). Returns the transition and its audit records. A refused request writes
/// nothing.
pub async fn request<E>(
    ledger: &dyn Ledger,
    policy: &Policy,
    requester: &Actor,
    req: GrantRequest,
    now: impl Fn() -> SystemTime,
) -> Result<(Transition, Vec<AuditRecord>), E>
where
    E: From<GrantError> + From<LedgerError>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        let t = machine::request(policy, GrantId::generate(), requester, req.clone(), now())?;
        match ledger.commit(&t).await {
            Ok(records) => return Ok((t, records)),
            Err(LedgerError::DuplicateId { .. }) if tries < CONFLICT_RETRIES => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Loads the grant with `load` (which may refuse, e.g. someone who may not see it), decides
/// with `op` on what is stored, and commits; decides again on a conflict.
pub async fn change<E, L, Fut, F>(
    ledger: &dyn Ledger,
    policy: &Policy,
    now: impl Fn() -> SystemTime,
    load: L,
    op: F,
) -> Result<Changed, E>
where
    E: From<GrantError> + From<LedgerError>,
    L: Fn() -> Fut,
    Fut: Future<Output = Result<Grant, E>>,
    F: Fn(&Grant, &Policy, SystemTime) -> Result<Transition, GrantError>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        let grant = load().await?;
        let t = op(&grant, policy, now())?;
        if t.is_empty() {
            return Ok(Changed::Unchanged(grant));
        }
        match ledger.commit(&t).await {
            Ok(records) => return Ok(Changed::Committed(t, records)),
            Err(LedgerError::Conflict { .. }) if tries < CONFLICT_RETRIES => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// The grant with this id, or [`GrantError::UnknownGrant`].
pub async fn get<E>(ledger: &dyn Ledger, id: &GrantId) -> Result<Grant, E>
where
    E: From<GrantError> + From<LedgerError>,
{
    ledger
        .grant(id)
        .await?
        .ok_or_else(|| GrantError::UnknownGrant { id: id.clone() }.into())
}

/// What `approver` can decide on now: pending requests and extensions for the roles they
/// approve, not their own and not those they already approved.
pub async fn awaiting(
    ledger: &dyn Ledger,
    policy: &Policy,
    approver: &Actor,
) -> Result<Vec<Grant>, LedgerError> {
    let roles = policy.roles_approvable_by(approver);
    if roles.is_empty() {
        return Ok(Vec::new());
    }
    let mut grants = ledger
        .grants(&GrantFilter::awaiting_decision(roles))
        .await?;
    grants.retain(|g| g.awaits_decision_by(approver));
    Ok(grants)
}
