//! The grants service: policy, state machine and ledger put together, plus the timer.
//!
//! [`Grants`] is what the engine (and later the team server) calls. Each operation loads the
//! grant, asks the pure state machine for the transition, commits it to the ledger with its
//! audit records, and only then announces its events on a broadcast channel and moves the
//! audit anchor forward. Nothing is announced that could still be lost.
//!
//! The timer task sleeps until the earliest deadline of any live grant (a pending timeout, the
//! expiry warning, an expiry), then ticks the grants that are due. Deadlines are kept in
//! memory, loaded from the ledger at [`Grants::start`] (which first applies anything that fell
//! due while Snowgate was not running), and updated after every commit. The timer sleeps until
//! the exact deadline rather than polling, so an `Expired` event goes out within milliseconds
//! of the expiry, and the gateway can cut sessions well within a second.
//!
//! Refusals follow the team server's rule. Someone who may not see a grant is told only that
//! there is no grant they can act on ([`GrantError::UnknownGrant`], the same words for every
//! verb); someone who can see it is told why they can't act. On a desktop the ledger is its
//! person's own and `snowgate grants --all` shows all of it to whoever uses the desktop, so
//! every grant in it can be seen: an id that names no grant gets those words, and every other
//! refusal says why.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::SystemTime;

use tokio::sync::{broadcast, Notify};
use tokio::task::JoinHandle;

use crate::audit::{AnchorStore, AuditEntry, AuditRecord, ChainHead};
use crate::clock::Clock;
use crate::error::GrantError;
use crate::event::GrantEvent;
use crate::group_commit::{Anchoring, GroupCommit, GroupCommitOptions};
use crate::ledger::{verify_ledger, AuditCheckError, AuditQuery, GrantFilter, Ledger, LedgerError};
use crate::machine::{GrantRequest, Transition};
use crate::model::{Actor, Comment, Grant, GrantDuration, GrantId, Reason, RoleName, Subject};
use crate::policy::Policy;
use crate::timestamp::Timestamp;

/// How many events a slow subscriber may fall behind before it starts missing some (it then
/// gets `RecvError::Lagged` and should reload the grants it cares about).
pub const EVENT_BUFFER: usize = 1024;

/// Why a grants operation failed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The rules do not allow it; nothing was written. The message is for the person.
    #[error(transparent)]
    Refused(#[from] GrantError),
    /// The ledger failed; the operation may not have happened.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// Just-in-time grants over a ledger. Cheap to clone; all clones share one timer, which stops
/// when the last clone is dropped.
#[derive(Clone)]
pub struct Grants {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Grants {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grants")
            .field("next_deadline", &self.next_deadline())
            .finish_non_exhaustive()
    }
}

struct Inner {
    ledger: Arc<dyn Ledger>,
    clock: Arc<dyn Clock>,
    policy: RwLock<Arc<Policy>>,
    events: broadcast::Sender<GrantEvent>,
    anchoring: Arc<Anchoring>,
    audit: GroupCommit,
    deadlines: Mutex<HashMap<GrantId, Timestamp>>,
    wake: Arc<Notify>,
    ops: tokio::sync::Mutex<()>,
    timer: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(timer) = self.timer.lock().expect("timer lock").take() {
            timer.abort();
        }
    }
}

impl Grants {
    /// Starts the service: loads the live grants from `ledger`, applies every deadline that
    /// passed while nothing was running (a grant that should have expired is expired now, with
    /// its end time set to its expiry), and starts the timer for the rest.
    ///
    /// The events of that catch-up are broadcast before anyone can subscribe; they are in the
    /// audit log, and after a restart there are no sessions left to cut.
    ///
    /// `anchor`, if given, is moved to the chain's head after every append; a failure to
    /// write it is logged, not returned, because the append itself has been committed.
    /// Must be called within a tokio runtime.
    pub async fn start(
        ledger: Arc<dyn Ledger>,
        clock: Arc<dyn Clock>,
        policy: Policy,
        anchor: Option<Arc<dyn AnchorStore>>,
    ) -> Result<Grants, ServiceError> {
        Grants::start_with(ledger, clock, policy, anchor, GroupCommitOptions::default()).await
    }

    /// [`Grants::start`] with the audit log's group commit tuned by `options`.
    pub async fn start_with(
        ledger: Arc<dyn Ledger>,
        clock: Arc<dyn Clock>,
        policy: Policy,
        anchor: Option<Arc<dyn AnchorStore>>,
        options: GroupCommitOptions,
    ) -> Result<Grants, ServiceError> {
        let wake = Arc::new(Notify::new());
        let anchoring = Arc::new(Anchoring::new(anchor));
        let inner = Arc::new(Inner {
            ledger: ledger.clone(),
            clock: clock.clone(),
            policy: RwLock::new(Arc::new(policy)),
            events: broadcast::channel(EVENT_BUFFER).0,
            anchoring: anchoring.clone(),
            audit: GroupCommit::start(ledger, anchoring, options),
            deadlines: Mutex::new(HashMap::new()),
            wake: wake.clone(),
            ops: tokio::sync::Mutex::new(()),
            timer: Mutex::new(None),
        });
        let grants = Grants { inner };
        for g in grants.inner.ledger.grants(&GrantFilter::live()).await? {
            grants.track(&g);
        }
        grants.fire_due().await;
        let timer = tokio::spawn(run_timer(Arc::downgrade(&grants.inner), clock, wake));
        *grants.inner.timer.lock().expect("timer lock") = Some(timer);
        Ok(grants)
    }

    /// Receives every event from now on, after its transition was committed.
    pub fn subscribe(&self) -> broadcast::Receiver<GrantEvent> {
        self.inner.events.subscribe()
    }

    /// The policy decisions are made under.
    pub fn policy(&self) -> Arc<Policy> {
        self.inner.policy.read().expect("policy lock").clone()
    }

    /// Replaces the policy (config reloaded). Applies to the next decision on any grant.
    pub fn set_policy(&self, policy: Policy) {
        *self.inner.policy.write().expect("policy lock") = Arc::new(policy);
    }

    /// The ledger underneath.
    pub fn ledger(&self) -> &Arc<dyn Ledger> {
        &self.inner.ledger
    }

    /// Asks for a role. Returns the new grant: `Active` if the policy auto-approved it,
    /// otherwise `Pending`. Refused requests write nothing.
    pub async fn request(
        &self,
        requester: &Actor,
        req: GrantRequest,
    ) -> Result<Grant, ServiceError> {
        let _op = self.inner.ops.lock().await;
        let policy = self.policy();
        let clock = self.inner.clock.clone();
        let (t, records) = crate::ops::request::<ServiceError>(
            self.inner.ledger.as_ref(),
            &policy,
            requester,
            req,
            || clock.now(),
        )
        .await?;
        Ok(self.committed(t, records).await)
    }

    /// Approves a pending request or a pending extension; see [`Grant::approve`].
    pub async fn approve(
        &self,
        approver: &Actor,
        id: &GrantId,
        comment: Option<Comment>,
    ) -> Result<Grant, ServiceError> {
        self.change(id, |g, p, now| g.approve(p, approver, comment.clone(), now))
            .await
    }

    /// Denies a pending request or a pending extension; see [`Grant::deny`].
    pub async fn deny(
        &self,
        approver: &Actor,
        id: &GrantId,
        comment: Comment,
    ) -> Result<Grant, ServiceError> {
        self.change(id, |g, p, now| g.deny(p, approver, comment.clone(), now))
            .await
    }

    /// Withdraws a pending request or a pending extension; see [`Grant::cancel`].
    pub async fn cancel(&self, actor: &Actor, id: &GrantId) -> Result<Grant, ServiceError> {
        self.change(id, |g, _, now| g.cancel(actor, now)).await
    }

    /// Ends an active grant early; see [`Grant::revoke`].
    pub async fn revoke(
        &self,
        actor: &Actor,
        id: &GrantId,
        comment: Option<Comment>,
    ) -> Result<Grant, ServiceError> {
        self.change(id, |g, p, now| g.revoke(p, actor, comment.clone(), now))
            .await
    }

    /// Asks for more time on an active grant; see [`Grant::extend`].
    pub async fn extend(
        &self,
        actor: &Actor,
        id: &GrantId,
        extra: GrantDuration,
        reason: Reason,
    ) -> Result<Grant, ServiceError> {
        self.change(id, |g, p, now| {
            g.extend(p, actor, extra, reason.clone(), now)
        })
        .await
    }

    /// The grant with this id, or [`GrantError::UnknownGrant`].
    pub async fn get(&self, id: &GrantId) -> Result<Grant, ServiceError> {
        crate::ops::get(self.inner.ledger.as_ref(), id).await
    }

    /// Grants matching `filter`, newest first.
    pub async fn list(&self, filter: &GrantFilter) -> Result<Vec<Grant>, ServiceError> {
        Ok(self.inner.ledger.grants(filter).await?)
    }

    /// Grants `who` requested, newest first.
    pub async fn mine(&self, who: &Subject) -> Result<Vec<Grant>, ServiceError> {
        self.list(&GrantFilter::requested_by(who)).await
    }

    /// What `approver` can decide on now: pending requests and extensions for roles they
    /// approve, excluding their own and those they already approved.
    pub async fn awaiting(&self, approver: &Actor) -> Result<Vec<Grant>, ServiceError> {
        Ok(crate::ops::awaiting(self.inner.ledger.as_ref(), &self.policy(), approver).await?)
    }

    /// The grants `who` may use right now (active and not past expiry), optionally for one
    /// role only. This is the check to authorize a session with.
    pub async fn usable(
        &self,
        who: &Subject,
        role: Option<&RoleName>,
    ) -> Result<Vec<Grant>, ServiceError> {
        let now = Timestamp::from(self.inner.clock.now());
        let mut filter = GrantFilter::active();
        filter.requester = Some(who.clone());
        filter.roles = role.map(|r| vec![r.clone()]);
        let mut grants = self.list(&filter).await?;
        grants.retain(|g| g.is_usable_at(now));
        Ok(grants)
    }

    /// Keeps a record that is not a grant transition (sign-in, session, statement), through
    /// the group commit: returns once the record is in the ledger's audit journal (one write on
    /// this thread) or, without one, its write-ahead log; either way it survives `kill -9` and
    /// every later read of the audit log shows it. It is in the hash chain and synced to disk
    /// within the group commit's window (10 ms by default), and only then does the anchor move
    /// past it. Waits while the queue is full; never drops. An `Err` means the record is not
    /// kept.
    pub async fn record(&self, entry: AuditEntry) -> Result<(), ServiceError> {
        Ok(self.inner.audit.append(entry).await?)
    }

    /// Queues a record of something already done that nobody waits on (a statement's query
    /// id): it goes into the ledger with the next batch of records, or within the group
    /// commit's sync interval. A failure to write it is logged.
    pub fn record_later(&self, entry: AuditEntry) {
        self.inner.audit.append_later(entry);
    }

    /// Why the audit log can't be written right now (disk full, read-only, damaged), if it
    /// can't. Cleared by the next successful write.
    pub fn audit_problem(&self) -> Option<String> {
        self.inner.audit.problem()
    }

    /// How many records wait for the audit writer.
    pub fn audit_queued(&self) -> usize {
        self.inner.audit.queued()
    }

    /// Audit records matching `query`, in order.
    pub async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, ServiceError> {
        Ok(self.inner.ledger.audit(query).await?)
    }

    /// Verifies the whole audit log against the anchor (if there is one). Returns the head.
    pub async fn verify_audit(&self) -> Result<Option<ChainHead>, AuditCheckError> {
        let anchor = match self.inner.anchoring.store() {
            Some(store) => store.get().await?,
            None => None,
        };
        verify_ledger(self.inner.ledger.as_ref(), anchor).await
    }

    /// The earliest moment the timer will act, if any grant is live.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        self.inner.next_deadline()
    }

    /// Loads, decides and commits, retrying when another writer got there first.
    async fn change<F>(&self, id: &GrantId, op: F) -> Result<Grant, ServiceError>
    where
        F: Fn(&Grant, &Policy, SystemTime) -> Result<Transition, GrantError>,
    {
        let _op = self.inner.ops.lock().await;
        let clock = self.inner.clock.clone();
        let changed = crate::ops::change::<ServiceError, _, _, _>(
            self.inner.ledger.as_ref(),
            &self.policy(),
            || clock.now(),
            || self.get(id),
            op,
        )
        .await?;
        match changed {
            crate::ops::Changed::Unchanged(grant) => {
                self.track(&grant);
                Ok(grant)
            }
            crate::ops::Changed::Committed(t, records) => Ok(self.committed(t, records).await),
        }
    }

    /// After a commit: track the deadline, move the anchor, announce the events.
    async fn committed(&self, t: Transition, records: Vec<AuditRecord>) -> Grant {
        self.track(t.grant());
        self.anchor(&records).await;
        for event in t.events() {
            // No subscribers is fine.
            let _ = self.inner.events.send(event.clone());
        }
        self.inner.wake.notify_one();
        t.into_grant()
    }

    fn track(&self, g: &Grant) {
        let mut deadlines = self.inner.deadlines.lock().expect("deadlines lock");
        match g.next_deadline() {
            Some(t) => deadlines.insert(g.id().clone(), t),
            None => deadlines.remove(g.id()),
        };
    }

    async fn anchor(&self, records: &[AuditRecord]) {
        let Some(last) = records.last() else { return };
        let head = ChainHead {
            seq: last.seq,
            hash: last
                .hash
                .parse()
                .expect("the ledger returns sealed records"),
        };
        self.inner.anchoring.advance(head).await;
    }

    /// Ticks every grant whose deadline has come.
    async fn fire_due(&self) {
        let now = Timestamp::from(self.inner.clock.now());
        let due: Vec<GrantId> = {
            let deadlines = self.inner.deadlines.lock().expect("deadlines lock");
            deadlines
                .iter()
                .filter(|(_, t)| **t <= now)
                .map(|(id, _)| id.clone())
                .collect()
        };
        for id in due {
            match self.change(&id, |g, _, now| Ok(g.tick(now))).await {
                Ok(_) => {}
                Err(ServiceError::Refused(GrantError::UnknownGrant { .. })) => {
                    self.inner
                        .deadlines
                        .lock()
                        .expect("deadlines lock")
                        .remove(&id);
                }
                Err(e) => {
                    tracing::warn!(grant = %id, error = %e, "applying a grant's deadline failed; retrying in a second");
                    let retry = now.plus(std::time::Duration::from_secs(1));
                    self.inner
                        .deadlines
                        .lock()
                        .expect("deadlines lock")
                        .insert(id, retry);
                }
            }
        }
    }
}

impl Inner {
    fn next_deadline(&self) -> Option<Timestamp> {
        self.deadlines
            .lock()
            .expect("deadlines lock")
            .values()
            .min()
            .copied()
    }
}

/// Sleeps until the next deadline (or until woken because deadlines changed), then ticks the
/// grants that are due. Holds only a weak reference, so it ends with the service.
async fn run_timer(inner: Weak<Inner>, clock: Arc<dyn Clock>, wake: Arc<Notify>) {
    loop {
        let next = match inner.upgrade() {
            Some(inner) => inner.next_deadline(),
            None => return,
        };
        let sleep = async {
            match next {
                Some(t) => clock.sleep_until(t.to_system_time()).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = sleep => {}
            _ = wake.notified() => {}
        }
        let Some(inner) = inner.upgrade() else {
            return;
        };
        Grants { inner }.fire_due().await;
    }
}
