//! One grant, from request to end.
//!
//! A [`Grant`] is a value: the state machine takes one and returns the next version, and the
//! ledger stores versions. Its fields are private so that no code outside this crate can make a
//! grant the machine would not have made; getters expose everything for display.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Actor, Comment, GrantDuration, GrantId, InvalidValue, Reason, RoleName, Ticket};
use crate::timestamp::Timestamp;

/// How long before a grant's end the [`ExpiringSoon`](crate::GrantEventKind::ExpiringSoon)
/// warning fires.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(10 * 60);

/// Where a grant is in its life. `Pending` and `Active` are live; the rest are ends, and a
/// grant that has reached one never changes again.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ts_rs::TS, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum GrantState {
    /// Waiting for approvals.
    Pending,
    /// Approved; the role may be used until `expires_at`.
    Active,
    /// An approver said no.
    Denied,
    /// The requester withdrew the request before it was decided.
    Cancelled,
    /// Nobody decided within the role's pending timeout.
    TimedOut,
    /// The grant ran its full length.
    Expired,
    /// Ended early by an approver, or relinquished by the requester.
    Revoked,
}

impl GrantState {
    /// Every state, in life order.
    pub const ALL: [GrantState; 7] = [
        GrantState::Pending,
        GrantState::Active,
        GrantState::Denied,
        GrantState::Cancelled,
        GrantState::TimedOut,
        GrantState::Expired,
        GrantState::Revoked,
    ];

    /// Whether this is an end state.
    pub fn is_ended(self) -> bool {
        !matches!(self, GrantState::Pending | GrantState::Active)
    }

    /// The state's name as stored and shown: `pending`, `timed_out`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            GrantState::Pending => "pending",
            GrantState::Active => "active",
            GrantState::Denied => "denied",
            GrantState::Cancelled => "cancelled",
            GrantState::TimedOut => "timed_out",
            GrantState::Expired => "expired",
            GrantState::Revoked => "revoked",
        }
    }

    /// The past-tense phrase for an end state, as in "already ended (expired at ...)".
    pub fn verb(self) -> &'static str {
        match self {
            GrantState::Pending => "requested",
            GrantState::Active => "approved",
            GrantState::Denied => "denied",
            GrantState::Cancelled => "cancelled",
            GrantState::TimedOut => "timed out",
            GrantState::Expired => "expired",
            GrantState::Revoked => "revoked",
        }
    }
}

impl FromStr for GrantState {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<GrantState, InvalidValue> {
        GrantState::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| InvalidValue::GrantState {
                input: s.to_string(),
            })
    }
}

impl fmt::Display for GrantState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who made an approval: a person, or the role's auto-approval policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "kind", content = "actor")]
pub enum Decider {
    /// An eligible approver, as verified at the time of the decision.
    Person(Actor),
    /// The role's `auto_approve_up_to` covered the request.
    Policy,
}

impl Decider {
    /// The person, if a person decided.
    pub fn person(&self) -> Option<&Actor> {
        match self {
            Decider::Person(a) => Some(a),
            Decider::Policy => None,
        }
    }
}

impl fmt::Display for Decider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decider::Person(a) => a.fmt(f),
            Decider::Policy => f.write_str("policy (auto-approval)"),
        }
    }
}

/// One approval of a request or an extension.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS, schemars::JsonSchema)]
pub struct Approval {
    /// Who approved.
    pub by: Decider,
    /// What they said.
    pub comment: Option<Comment>,
    /// When.
    pub at: Timestamp,
}

/// Where an extension request is.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ExtensionState {
    /// Waiting for approvals; the grant's expiry has not moved.
    Pending,
    /// Approved; the grant's expiry moved by `extra`.
    Approved,
    /// An approver said no; the grant keeps its expiry.
    Denied,
    /// Nobody decided within the role's pending timeout.
    TimedOut,
    /// The requester withdrew it.
    Cancelled,
    /// The grant ended (expired or revoked) while this was pending.
    Lapsed,
}

/// A request to make an active grant longer: a new decision under the same policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS, schemars::JsonSchema)]
pub struct Extension {
    pub(crate) requested_at: Timestamp,
    pub(crate) extra: GrantDuration,
    pub(crate) reason: Reason,
    pub(crate) pending_until: Timestamp,
    pub(crate) state: ExtensionState,
    pub(crate) approvals: Vec<Approval>,
    pub(crate) decided_at: Option<Timestamp>,
    pub(crate) decided_by: Option<Actor>,
    pub(crate) comment: Option<Comment>,
}

impl Extension {
    /// When it was asked for.
    pub fn requested_at(&self) -> Timestamp {
        self.requested_at
    }
    /// How much longer the grant would last.
    pub fn extra(&self) -> GrantDuration {
        self.extra
    }
    /// Why.
    pub fn reason(&self) -> &Reason {
        &self.reason
    }
    /// When it times out if still pending.
    pub fn pending_until(&self) -> Timestamp {
        self.pending_until
    }
    /// Where it is.
    pub fn state(&self) -> ExtensionState {
        self.state
    }
    /// Approvals so far (complete once approved).
    pub fn approvals(&self) -> &[Approval] {
        &self.approvals
    }
    /// When it left `Pending`.
    pub fn decided_at(&self) -> Option<Timestamp> {
        self.decided_at
    }
    /// Who denied or cancelled it.
    pub fn decided_by(&self) -> Option<&Actor> {
        self.decided_by.as_ref()
    }
    /// The denial's comment.
    pub fn comment(&self) -> Option<&Comment> {
        self.comment.as_ref()
    }
}

/// One request for a role and everything that happened to it.
///
/// Guarantees, for every grant the state machine produces (and so every grant in a ledger):
/// - `expires_at = approved_at + requested_duration + approved extensions`, and that total never
///   exceeded the role's maximum when each approval was made;
/// - no approval (of the request or an extension) is by the requester, and no person approves
///   the same thing twice;
/// - once `state` is an end state, no later version differs;
/// - at most one extension is pending at a time, and only while the grant is active.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS, schemars::JsonSchema)]
pub struct Grant {
    pub(crate) id: GrantId,
    pub(crate) role: RoleName,
    /// The Snowflake account of the role (`[[roles]] account`) when the grant was requested;
    /// absent: the config's only (or default) account, as for grants from before accounts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub(crate) account: Option<String>,
    pub(crate) requester: Actor,
    pub(crate) reason: Reason,
    pub(crate) ticket: Option<Ticket>,
    pub(crate) requested_duration: GrantDuration,
    pub(crate) state: GrantState,
    pub(crate) created_at: Timestamp,
    pub(crate) pending_until: Timestamp,
    pub(crate) decided_at: Option<Timestamp>,
    pub(crate) approved_at: Option<Timestamp>,
    pub(crate) expires_at: Option<Timestamp>,
    pub(crate) ended_at: Option<Timestamp>,
    pub(crate) ended_by: Option<Actor>,
    pub(crate) end_comment: Option<Comment>,
    pub(crate) approvals: Vec<Approval>,
    pub(crate) extensions: Vec<Extension>,
    pub(crate) expiry_warned_for: Option<Timestamp>,
    pub(crate) updated_at: Timestamp,
    #[ts(type = "number")]
    pub(crate) version: u64,
}

impl Grant {
    /// The grant's id.
    pub fn id(&self) -> &GrantId {
        &self.id
    }
    /// The Snowflake role asked for.
    pub fn role(&self) -> &RoleName {
        &self.role
    }
    /// The Snowflake account its role belongs to; `None`: the default account.
    pub fn account(&self) -> Option<&str> {
        self.account.as_deref()
    }
    /// Who asked (and who may use it).
    pub fn requester(&self) -> &Actor {
        &self.requester
    }
    /// Why.
    pub fn reason(&self) -> &Reason {
        &self.reason
    }
    /// The ticket reference, if one was given.
    pub fn ticket(&self) -> Option<&Ticket> {
        self.ticket.as_ref()
    }
    /// How long the grant lasts from approval (before extensions).
    pub fn requested_duration(&self) -> GrantDuration {
        self.requested_duration
    }
    /// Where it is.
    pub fn state(&self) -> GrantState {
        self.state
    }
    /// When it was requested.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }
    /// When the request times out if nobody decides.
    pub fn pending_until(&self) -> Timestamp {
        self.pending_until
    }
    /// When the request was finally decided (approved, denied, or timed out).
    pub fn decided_at(&self) -> Option<Timestamp> {
        self.decided_at
    }
    /// When it became active; the grant's clock starts here.
    pub fn approved_at(&self) -> Option<Timestamp> {
        self.approved_at
    }
    /// When it ends (or ended) if not revoked; moves only when an extension is approved.
    pub fn expires_at(&self) -> Option<Timestamp> {
        self.expires_at
    }
    /// When it reached its end state.
    pub fn ended_at(&self) -> Option<Timestamp> {
        self.ended_at
    }
    /// Who ended it (the denier, canceller or revoker); `None` for timeouts and expiry.
    pub fn ended_by(&self) -> Option<&Actor> {
        self.ended_by.as_ref()
    }
    /// The comment given with a denial or revocation.
    pub fn end_comment(&self) -> Option<&Comment> {
        self.end_comment.as_ref()
    }
    /// Approvals of the request, in order.
    pub fn approvals(&self) -> &[Approval] {
        &self.approvals
    }
    /// Extension requests, in order.
    pub fn extensions(&self) -> &[Extension] {
        &self.extensions
    }
    /// When this version was made. Never goes backwards, even if the wall clock does.
    pub fn updated_at(&self) -> Timestamp {
        self.updated_at
    }
    /// Starts at 1 and grows by one with each transition; the ledger refuses a stale version.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Whether the grant is `Active` and `now` is before its expiry. Use this, not the state
    /// alone, to authorize: it holds even if the expiry timer has not fired yet.
    pub fn is_usable_at(&self, now: Timestamp) -> bool {
        self.state == GrantState::Active && self.expires_at.is_some_and(|end| now < end)
    }

    /// The pending extension, if there is one.
    pub fn pending_extension(&self) -> Option<&Extension> {
        self.extensions
            .iter()
            .rev()
            .find(|e| e.state == ExtensionState::Pending)
    }

    /// Whether someone is waiting for a decision: a pending request or a pending extension.
    pub fn awaits_decision(&self) -> bool {
        self.state == GrantState::Pending
            || (self.state == GrantState::Active && self.pending_extension().is_some())
    }

    /// Whether `approver` could decide on this grant now, as far as the grant says: it awaits
    /// a decision, it is not their own request, and they have not approved what is open.
    /// (Whether they approve its role at all is the policy's answer.)
    pub fn awaits_decision_by(&self, approver: &Actor) -> bool {
        self.awaits_decision()
            && !self.requester.is(approver)
            && !self
                .open_approvals()
                .iter()
                .any(|a| a.by.person().is_some_and(|p| p.is(approver)))
    }

    /// The approvals of whatever currently awaits a decision (the request or its extension).
    pub fn open_approvals(&self) -> &[Approval] {
        match (self.state, self.pending_extension()) {
            (GrantState::Pending, _) => &self.approvals,
            (GrantState::Active, Some(ext)) => &ext.approvals,
            _ => &[],
        }
    }

    /// Seconds the grant runs in all: the duration asked for plus every approved extension.
    /// Known before approval, unlike [`Grant::total_duration`].
    pub fn granted_secs(&self) -> u64 {
        self.extensions
            .iter()
            .filter(|e| e.state == ExtensionState::Approved)
            .fold(self.requested_duration.as_secs(), |sum, e| {
                sum.saturating_add(e.extra.as_secs())
            })
    }

    /// How long the grant runs in total so far: from approval to the current expiry.
    pub fn total_duration(&self) -> Option<Duration> {
        Some(self.expires_at?.since(self.approved_at?))
    }

    /// The time the ExpiringSoon warning is due, if it has not fired for the current expiry.
    pub fn expiry_warning_due(&self) -> Option<Timestamp> {
        let end = self.expires_at?;
        if self.state != GrantState::Active || self.expiry_warned_for == Some(end) {
            return None;
        }
        Some(end.minus(EXPIRY_WARNING))
    }

    /// The next moment at which time alone changes this grant (a timeout, the expiry warning,
    /// expiry), or `None` once it has ended. A timer should call `tick` then.
    pub fn next_deadline(&self) -> Option<Timestamp> {
        match self.state {
            GrantState::Pending => Some(self.pending_until),
            GrantState::Active => [
                self.expires_at,
                self.expiry_warning_due(),
                self.pending_extension().map(|e| e.pending_until),
            ]
            .into_iter()
            .flatten()
            .min(),
            _ => None,
        }
    }
}
