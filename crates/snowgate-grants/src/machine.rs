//! The grant state machine: pure functions from (grant, policy, actor, time) to the next grant.
//!
//! ```text
//!   request ──► Pending ──approve×N──► Active ──expiry──► Expired
//!                 │  ╰─deny─► Denied     │  ╰──revoke──► Revoked
//!                 ╰─cancel─► Cancelled   ╰─extend─► (extension: Pending ─approve×N─► expiry moves)
//!                 ╰─timeout─► TimedOut
//! ```
//!
//! Nothing here does I/O or reads a clock: every operation takes `now`, and returns either a
//! [`GrantError`] (and nothing changed) or a [`Transition`]: the new version of the grant plus
//! the events that led there. Before applying an operation, the machine first applies every
//! deadline that `now` has passed (a timeout, expiry), so an approval that arrives after the
//! request timed out is refused even if no timer has fired yet. Time within one grant never
//! runs backwards: a `now` earlier than the grant's last change is taken as that change's time.
//!
//! Why one long file: it is the whole state machine, every transition beside the others, so
//! that its rules read as one table; it has no I/O.

use std::time::SystemTime;

use crate::audit::AuditEntry;
use crate::error::GrantError;
use crate::event::{Cause, GrantEvent, GrantEventKind};
use crate::model::{
    Actor, Approval, Comment, Decider, Extension, ExtensionState, Grant, GrantDuration, GrantId,
    GrantState, Reason, RoleName, Ticket,
};
use crate::policy::{Policy, RolePolicy};
use crate::timestamp::Timestamp;

/// What someone asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRequest {
    /// The Snowflake role.
    pub role: RoleName,
    /// How long, counted from approval.
    pub duration: GrantDuration,
    /// Why.
    pub reason: Reason,
    /// A ticket reference, if any.
    pub ticket: Option<Ticket>,
}

/// The result of one operation: the grant's next version and the events, in order.
///
/// Guarantees: `grant().version()` is `replaces_version() + 1` (or 1 for a new grant), and
/// the events describe exactly the difference between the two versions. A `Transition` can
/// only be made by the state machine, so a ledger that stores one stores a legal step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    grant: Grant,
    events: Vec<GrantEvent>,
    replaces: Option<u64>,
}

impl Transition {
    /// The grant after the operation.
    pub fn grant(&self) -> &Grant {
        &self.grant
    }

    /// What happened, in order. Empty only for a `tick` that found nothing due.
    pub fn events(&self) -> &[GrantEvent] {
        &self.events
    }

    /// The version this one replaces, or `None` for a new grant.
    pub fn replaces_version(&self) -> Option<u64> {
        self.replaces
    }

    /// Whether nothing changed (a `tick` with nothing due); such a transition needs no write.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The audit records this transition must be stored with, in order.
    pub fn audit_entries(&self) -> Vec<AuditEntry> {
        self.events
            .iter()
            .filter_map(|e| AuditEntry::for_event(e, &self.grant))
            .collect()
    }

    /// The grant after the operation.
    pub fn into_grant(self) -> Grant {
        self.grant
    }
}

/// Makes a new request. With a policy that auto-approves its length, the grant is active at
/// once (approved by policy); otherwise it is pending until approved, denied, cancelled or
/// timed out.
///
/// Refused: an unknown role; a duration above the role's maximum; a duration above the
/// auto-approval cap on a role that has no approvers.
pub fn request(
    policy: &Policy,
    id: GrantId,
    requester: &Actor,
    req: GrantRequest,
    now: SystemTime,
) -> Result<Transition, GrantError> {
    let role = policy.role(&req.role)?;
    if req.duration > role.max_duration {
        return Err(GrantError::DurationTooLong {
            role: role.name.clone(),
            max: role.max_duration,
            asked: req.duration,
        });
    }
    let auto = role.auto_approves(req.duration.as_duration());
    if !auto && role.approver_groups.is_empty() {
        return Err(no_approvers(role));
    }
    let now = Timestamp::from(now);
    let grant = Grant {
        id,
        role: req.role,
        account: role.account.clone(),
        requester: requester.clone(),
        reason: req.reason.clone(),
        ticket: req.ticket.clone(),
        requested_duration: req.duration,
        state: GrantState::Pending,
        created_at: now,
        pending_until: now.plus(role.pending_timeout.as_duration()),
        decided_at: None,
        approved_at: None,
        expires_at: None,
        ended_at: None,
        ended_by: None,
        end_comment: None,
        approvals: Vec::new(),
        extensions: Vec::new(),
        expiry_warned_for: None,
        updated_at: now,
        version: 1,
    };
    let mut step = Step {
        g: grant,
        events: Vec::new(),
        now,
    };
    step.emit(
        now,
        Cause::Person(requester.clone()),
        GrantEventKind::Requested {
            duration: req.duration,
            reason: req.reason,
            ticket: req.ticket,
        },
    );
    if auto {
        step.g.approvals.push(Approval {
            by: Decider::Policy,
            comment: None,
            at: now,
        });
        step.emit(
            now,
            Cause::Policy,
            GrantEventKind::Approved {
                comment: None,
                remaining: 0,
            },
        );
        step.activate(Cause::Policy);
    }
    Ok(Transition {
        grant: step.g,
        events: step.events,
        replaces: None,
    })
}

/// What a decision is about.
enum Target {
    Request,
    Extension(usize),
}

impl Grant {
    /// Applies every deadline `now` has passed: a pending request times out; an active grant
    /// warns ten minutes before its end, expires at its end, and a pending extension times out
    /// (or lapses when the grant ends first). Returns an empty transition if nothing was due.
    pub fn tick(&self, now: SystemTime) -> Transition {
        let step = self.step(now);
        step.finish(self)
    }

    /// An eligible approver approves the pending request or the pending extension. When the
    /// role's required number of distinct approvers is reached, a request becomes active
    /// (`expires_at = now + duration`) and an extension moves the expiry.
    ///
    /// Refused: the grant has ended or has nothing pending; the approver is the requester, is
    /// not in an approver group of the role, or already approved; the policy's maximum no
    /// longer allows the length.
    pub fn approve(
        &self,
        policy: &Policy,
        approver: &Actor,
        comment: Option<Comment>,
        now: SystemTime,
    ) -> Result<Transition, GrantError> {
        let mut step = self.step(now);
        step.require_live()?;
        let role = policy.role(&step.g.role)?;
        let target = step.decision_target()?;
        if approver.is(&step.g.requester) {
            return Err(GrantError::SelfApproval {
                grant: step.g.id.clone(),
                approver_groups: role.approver_groups_phrase(),
            });
        }
        require_approver(role, approver)?;
        let n = role.approvals_required.get();
        let approvals = match target {
            Target::Request => &step.g.approvals,
            Target::Extension(i) => &step.g.extensions[i].approvals,
        };
        if let Some(earlier) = approvals
            .iter()
            .find(|a| a.by.person().is_some_and(|p| p.is(approver)))
        {
            return Err(GrantError::AlreadyApproved {
                grant: step.g.id.clone(),
                at: earlier.at,
                remaining: n.saturating_sub(people(approvals)),
                approver_groups: role.approver_groups_phrase(),
            });
        }
        let approval = Approval {
            by: Decider::Person(approver.clone()),
            comment: comment.clone(),
            at: step.now,
        };
        let cause = Cause::Person(approver.clone());
        match target {
            Target::Request => {
                if step.g.requested_duration > role.max_duration {
                    return Err(GrantError::RequestAboveMax {
                        grant: step.g.id.clone(),
                        role: role.name.clone(),
                        max: role.max_duration,
                        asked: step.g.requested_duration,
                    });
                }
                step.g.approvals.push(approval);
                let remaining = n.saturating_sub(people(&step.g.approvals));
                let now = step.now;
                step.emit(
                    now,
                    cause.clone(),
                    GrantEventKind::Approved { comment, remaining },
                );
                if remaining == 0 {
                    step.activate(cause);
                }
            }
            Target::Extension(i) => {
                let extra = step.g.extensions[i].extra;
                check_total(&step.g, role, extra)?;
                step.g.extensions[i].approvals.push(approval);
                let remaining = n.saturating_sub(people(&step.g.extensions[i].approvals));
                let now = step.now;
                step.emit(
                    now,
                    cause.clone(),
                    GrantEventKind::ExtensionApproved { comment, remaining },
                );
                if remaining == 0 {
                    step.apply_extension(i, cause);
                }
            }
        }
        Ok(step.finish(self))
    }

    /// An eligible approver refuses the pending request (which ends the grant) or the pending
    /// extension (the grant keeps its expiry). One denial is enough, whatever N is.
    ///
    /// Refused: the grant has ended or has nothing pending; the decider is the requester or is
    /// not in an approver group of the role.
    pub fn deny(
        &self,
        policy: &Policy,
        approver: &Actor,
        comment: Comment,
        now: SystemTime,
    ) -> Result<Transition, GrantError> {
        let mut step = self.step(now);
        step.require_live()?;
        let role = policy.role(&step.g.role)?;
        let target = step.decision_target()?;
        if approver.is(&step.g.requester) {
            return Err(GrantError::SelfDecision {
                grant: step.g.id.clone(),
            });
        }
        require_approver(role, approver)?;
        let now = step.now;
        let cause = Cause::Person(approver.clone());
        match target {
            Target::Request => {
                step.g.state = GrantState::Denied;
                step.g.decided_at = Some(now);
                step.g.ended_at = Some(now);
                step.g.ended_by = Some(approver.clone());
                step.g.end_comment = Some(comment.clone());
                step.emit(now, cause, GrantEventKind::Denied { comment });
            }
            Target::Extension(i) => {
                let ext = &mut step.g.extensions[i];
                ext.state = ExtensionState::Denied;
                ext.decided_at = Some(now);
                ext.decided_by = Some(approver.clone());
                ext.comment = Some(comment.clone());
                step.emit(now, cause, GrantEventKind::ExtensionDenied { comment });
            }
        }
        Ok(step.finish(self))
    }

    /// The requester withdraws the pending request (which ends the grant) or the pending
    /// extension of an active grant.
    ///
    /// Refused: the grant has ended; the actor is not the requester; the grant is active with
    /// no extension pending (revoke it instead).
    pub fn cancel(&self, actor: &Actor, now: SystemTime) -> Result<Transition, GrantError> {
        let mut step = self.step(now);
        step.require_live()?;
        step.require_requester(actor, "cancel")?;
        let now = step.now;
        let cause = Cause::Person(actor.clone());
        match step.decision_target() {
            Ok(Target::Request) => {
                step.g.state = GrantState::Cancelled;
                step.g.ended_at = Some(now);
                step.g.ended_by = Some(actor.clone());
                step.emit(now, cause, GrantEventKind::Cancelled);
            }
            Ok(Target::Extension(i)) => {
                let ext = &mut step.g.extensions[i];
                ext.state = ExtensionState::Cancelled;
                ext.decided_at = Some(now);
                ext.decided_by = Some(actor.clone());
                step.emit(now, cause, GrantEventKind::ExtensionCancelled);
            }
            Err(_) => {
                return Err(GrantError::NothingToCancel {
                    grant: step.g.id.clone(),
                })
            }
        }
        Ok(step.finish(self))
    }

    /// Ends an active grant early. An eligible approver may revoke; so may the requester, to
    /// give up access they no longer need. A pending extension lapses with it.
    ///
    /// Refused: the grant has ended or is still pending; the actor is neither the requester
    /// nor in an approver group of the role.
    pub fn revoke(
        &self,
        policy: &Policy,
        actor: &Actor,
        comment: Option<Comment>,
        now: SystemTime,
    ) -> Result<Transition, GrantError> {
        let mut step = self.step(now);
        step.require_live()?;
        if step.g.state == GrantState::Pending {
            return Err(GrantError::RevokePending {
                grant: step.g.id.clone(),
            });
        }
        if !actor.is(&step.g.requester) {
            let role = policy.role(&step.g.role)?;
            if !role.is_approver(actor) {
                return Err(GrantError::NotAllowedToRevoke {
                    grant: step.g.id.clone(),
                    role: role.name.clone(),
                    approver_groups: role.approver_groups_phrase(),
                });
            }
        }
        let now = step.now;
        step.end(GrantState::Revoked, now);
        step.g.ended_by = Some(actor.clone());
        step.g.end_comment = comment.clone();
        step.emit(
            now,
            Cause::Person(actor.clone()),
            GrantEventKind::Revoked { comment },
        );
        Ok(step.finish(self))
    }

    /// The requester asks for `extra` more time on an active grant: a new decision under the
    /// same policy. The expiry moves only when the extension is approved: at once if the
    /// grant's new total length is within the auto-approval cap, else after N approvals.
    ///
    /// Refused: the grant has ended or is still pending; the actor is not the requester; the
    /// role allows no extensions; one is already pending; the new total would exceed the
    /// role's maximum.
    pub fn extend(
        &self,
        policy: &Policy,
        actor: &Actor,
        extra: GrantDuration,
        reason: Reason,
        now: SystemTime,
    ) -> Result<Transition, GrantError> {
        let mut step = self.step(now);
        step.require_live()?;
        if step.g.state == GrantState::Pending {
            return Err(GrantError::ExtendPending {
                grant: step.g.id.clone(),
            });
        }
        step.require_requester(actor, "extend")?;
        let role = policy.role(&step.g.role)?;
        if !role.extensions_allowed {
            return Err(GrantError::ExtensionsNotAllowed {
                role: role.name.clone(),
            });
        }
        if let Some(ext) = step.g.pending_extension() {
            return Err(GrantError::ExtensionAlreadyPending {
                grant: step.g.id.clone(),
                requested_at: ext.requested_at,
            });
        }
        let total = check_total(&step.g, role, extra)?;
        let auto = role.auto_approves(total);
        if !auto && role.approver_groups.is_empty() {
            return Err(no_approvers(role));
        }
        let now = step.now;
        step.g.extensions.push(Extension {
            requested_at: now,
            extra,
            reason: reason.clone(),
            pending_until: now.plus(role.pending_timeout.as_duration()),
            state: ExtensionState::Pending,
            approvals: Vec::new(),
            decided_at: None,
            decided_by: None,
            comment: None,
        });
        step.emit(
            now,
            Cause::Person(actor.clone()),
            GrantEventKind::ExtensionRequested { extra, reason },
        );
        if auto {
            let i = step.g.extensions.len() - 1;
            step.g.extensions[i].approvals.push(Approval {
                by: Decider::Policy,
                comment: None,
                at: now,
            });
            step.emit(
                now,
                Cause::Policy,
                GrantEventKind::ExtensionApproved {
                    comment: None,
                    remaining: 0,
                },
            );
            step.apply_extension(i, Cause::Policy);
        }
        Ok(step.finish(self))
    }

    fn step(&self, now: SystemTime) -> Step {
        let now = Timestamp::from(now).max(self.updated_at);
        let mut step = Step {
            g: self.clone(),
            events: Vec::new(),
            now,
        };
        step.advance();
        step
    }
}

/// A grant being changed, with the events so far.
struct Step {
    g: Grant,
    events: Vec<GrantEvent>,
    now: Timestamp,
}

impl Step {
    fn emit(&mut self, at: Timestamp, cause: Cause, kind: GrantEventKind) {
        self.events.push(GrantEvent {
            grant: self.g.id.clone(),
            role: self.g.role.clone(),
            requester: self.g.requester.subject.clone(),
            at,
            cause,
            kind,
        });
    }

    fn finish(self, before: &Grant) -> Transition {
        if self.events.is_empty() {
            return Transition {
                grant: before.clone(),
                events: Vec::new(),
                replaces: Some(before.version),
            };
        }
        let mut g = self.g;
        g.updated_at = self.now;
        g.version = before.version + 1;
        Transition {
            grant: g,
            events: self.events,
            replaces: Some(before.version),
        }
    }

    /// Applies every deadline at or before `now`, earliest first.
    fn advance(&mut self) {
        loop {
            let now = self.now;
            match self.g.state {
                GrantState::Pending if self.g.pending_until <= now => {
                    let at = self.g.pending_until;
                    self.g.state = GrantState::TimedOut;
                    self.g.decided_at = Some(at);
                    self.g.ended_at = Some(at);
                    self.emit(at, Cause::Clock, GrantEventKind::TimedOut);
                }
                GrantState::Active => {
                    let end = self.g.expires_at.unwrap_or(self.g.updated_at);
                    let ext = self
                        .g
                        .extensions
                        .iter()
                        .position(|e| e.state == ExtensionState::Pending)
                        .map(|i| (i, self.g.extensions[i].pending_until))
                        .filter(|(_, until)| *until <= now && *until < end);
                    if let Some((i, until)) = ext {
                        let ext = &mut self.g.extensions[i];
                        ext.state = ExtensionState::TimedOut;
                        ext.decided_at = Some(until);
                        self.emit(until, Cause::Clock, GrantEventKind::ExtensionTimedOut);
                    } else if end <= now {
                        self.end(GrantState::Expired, end);
                        self.emit(end, Cause::Clock, GrantEventKind::Expired);
                    } else if self.g.expiry_warning_due().is_some_and(|due| due <= now) {
                        self.g.expiry_warned_for = Some(end);
                        self.emit(
                            now,
                            Cause::Clock,
                            GrantEventKind::ExpiringSoon { expires_at: end },
                        );
                    } else {
                        return;
                    }
                }
                _ => return,
            }
        }
    }

    /// Ends an active grant; a pending extension lapses with it.
    fn end(&mut self, state: GrantState, at: Timestamp) {
        self.g.state = state;
        self.g.ended_at = Some(at);
        for ext in &mut self.g.extensions {
            if ext.state == ExtensionState::Pending {
                ext.state = ExtensionState::Lapsed;
                ext.decided_at = Some(at);
            }
        }
    }

    fn activate(&mut self, cause: Cause) {
        let now = self.now;
        let expires_at = now.plus(self.g.requested_duration.as_duration());
        self.g.state = GrantState::Active;
        self.g.decided_at = Some(now);
        self.g.approved_at = Some(now);
        self.g.expires_at = Some(expires_at);
        self.emit(
            now,
            cause,
            GrantEventKind::Activated {
                approved_at: now,
                expires_at,
            },
        );
    }

    fn apply_extension(&mut self, i: usize, cause: Cause) {
        let now = self.now;
        let from = self.g.expires_at.unwrap_or(self.g.updated_at);
        let to = from.plus(self.g.extensions[i].extra.as_duration());
        let ext = &mut self.g.extensions[i];
        ext.state = ExtensionState::Approved;
        ext.decided_at = Some(now);
        self.g.expires_at = Some(to);
        self.emit(now, cause, GrantEventKind::Extended { from, to });
    }

    fn require_live(&self) -> Result<(), GrantError> {
        if self.g.state.is_ended() {
            return Err(GrantError::AlreadyEnded {
                grant: self.g.id.clone(),
                state: self.g.state,
                at: self.g.ended_at.unwrap_or(self.g.updated_at),
            });
        }
        Ok(())
    }

    fn require_requester(&self, actor: &Actor, action: &'static str) -> Result<(), GrantError> {
        if actor.is(&self.g.requester) {
            Ok(())
        } else {
            Err(GrantError::NotRequester {
                grant: self.g.id.clone(),
                action,
                requester: self.g.requester.to_string(),
            })
        }
    }

    fn decision_target(&self) -> Result<Target, GrantError> {
        match self.g.state {
            GrantState::Pending => Ok(Target::Request),
            _ => self
                .g
                .extensions
                .iter()
                .position(|e| e.state == ExtensionState::Pending)
                .map(Target::Extension)
                .ok_or_else(|| GrantError::NothingToDecide {
                    grant: self.g.id.clone(),
                    expires_at: self.g.expires_at.unwrap_or(self.g.updated_at),
                }),
        }
    }
}

/// The number of distinct people among `approvals` (the machine never records one twice).
fn people(approvals: &[Approval]) -> u32 {
    approvals.iter().filter(|a| a.by.person().is_some()).count() as u32
}

fn require_approver(role: &RolePolicy, actor: &Actor) -> Result<(), GrantError> {
    if role.is_approver(actor) {
        Ok(())
    } else {
        Err(GrantError::NotAnApprover {
            who: actor.to_string(),
            role: role.name.clone(),
            approver_groups: role.approver_groups_phrase(),
            their_groups: actor.groups.clone(),
        })
    }
}

/// The grant's total length with `extra` added, if the role's maximum allows it.
fn check_total(
    g: &Grant,
    role: &RolePolicy,
    extra: GrantDuration,
) -> Result<std::time::Duration, GrantError> {
    let so_far = g.total_duration().unwrap_or_default();
    let total = so_far + extra.as_duration();
    if total > role.max_duration.as_duration() {
        let room = role.max_duration.as_duration().saturating_sub(so_far);
        return Err(GrantError::ExtensionAboveMax {
            grant: g.id.clone(),
            role: role.name.clone(),
            max: role.max_duration,
            so_far: GrantDuration::from_secs(so_far.as_secs()).unwrap_or(role.max_duration),
            room: GrantDuration::from_secs(room.as_secs()).ok(),
            asked: extra,
        });
    }
    Ok(total)
}

fn no_approvers(role: &RolePolicy) -> GrantError {
    GrantError::NoApprovers {
        role: role.name.clone(),
        cap: role.auto_approve_up_to.unwrap_or(role.max_duration),
    }
}
