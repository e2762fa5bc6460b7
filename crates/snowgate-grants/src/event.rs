//! What happened to a grant, as the rest of Snowgate hears it.
//!
//! Every transition of the state machine returns the events it caused, in order. The service
//! broadcasts them only after the ledger has committed the transition, so a subscriber never
//! acts on a change that could still be lost. The gateway listens for the events that end a
//! grant ([`GrantEventKind::ends_grant`]) to close its sessions; the UI and notifications
//! listen to all of them.

use serde::{Deserialize, Serialize};

use crate::model::{Actor, Comment, GrantDuration, GrantId, Reason, RoleName, Subject, Ticket};
use crate::timestamp::Timestamp;

/// Who or what caused an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "kind", content = "actor")]
pub enum Cause {
    /// A person: the requester, an approver, or whoever revoked.
    Person(Actor),
    /// The role's auto-approval policy.
    Policy,
    /// Time: a timeout, the expiry warning, or expiry.
    Clock,
}

/// One thing that happened to one grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GrantEvent {
    /// The grant it happened to.
    pub grant: GrantId,
    /// The grant's role.
    pub role: RoleName,
    /// Who the grant belongs to, so subscribers can route without loading the grant.
    pub requester: Subject,
    /// When it happened. For timeouts and expiry, the deadline itself, even if it was noticed
    /// later (after a restart, say).
    pub at: Timestamp,
    /// Who or what caused it.
    pub cause: Cause,
    /// What happened.
    #[serde(flatten)]
    pub kind: GrantEventKind,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case", tag = "event")]
pub enum GrantEventKind {
    /// A new request.
    Requested {
        duration: GrantDuration,
        reason: Reason,
        ticket: Option<Ticket>,
    },
    /// An approval of the request; `remaining` more are needed (0: it is now active).
    Approved {
        comment: Option<Comment>,
        remaining: u32,
    },
    /// The grant became active; its clock started at `approved_at`.
    Activated {
        approved_at: Timestamp,
        expires_at: Timestamp,
    },
    /// An approver refused the request. Ends the grant.
    Denied { comment: Comment },
    /// The requester withdrew the request. Ends the grant.
    Cancelled,
    /// Nobody decided in time. Ends the grant.
    TimedOut,
    /// The grant ends within ten minutes. Fires once per expiry time (again after an extension).
    ExpiringSoon { expires_at: Timestamp },
    /// The requester asked for more time.
    ExtensionRequested {
        extra: GrantDuration,
        reason: Reason,
    },
    /// An approval of the pending extension; `remaining` more are needed.
    ExtensionApproved {
        comment: Option<Comment>,
        remaining: u32,
    },
    /// The extension was approved and the expiry moved from `from` to `to`.
    Extended { from: Timestamp, to: Timestamp },
    /// An approver refused the extension; the grant keeps its expiry.
    ExtensionDenied { comment: Comment },
    /// Nobody decided on the extension in time.
    ExtensionTimedOut,
    /// The requester withdrew the extension.
    ExtensionCancelled,
    /// The grant reached its expiry. Ends the grant.
    Expired,
    /// An approver revoked the grant, or the requester gave it up. Ends the grant.
    Revoked { comment: Option<Comment> },
}

impl GrantEventKind {
    /// Whether the grant has ended with this event: sessions under it must close.
    pub fn ends_grant(&self) -> bool {
        matches!(
            self,
            GrantEventKind::Denied { .. }
                | GrantEventKind::Cancelled
                | GrantEventKind::TimedOut
                | GrantEventKind::Expired
                | GrantEventKind::Revoked { .. }
        )
    }

    /// The event's name, as in its serialized `event` field: `requested`, `extended`, ...
    pub fn name(&self) -> &'static str {
        match self {
            GrantEventKind::Requested { .. } => "requested",
            GrantEventKind::Approved { .. } => "approved",
            GrantEventKind::Activated { .. } => "activated",
            GrantEventKind::Denied { .. } => "denied",
            GrantEventKind::Cancelled => "cancelled",
            GrantEventKind::TimedOut => "timed_out",
            GrantEventKind::ExpiringSoon { .. } => "expiring_soon",
            GrantEventKind::ExtensionRequested { .. } => "extension_requested",
            GrantEventKind::ExtensionApproved { .. } => "extension_approved",
            GrantEventKind::Extended { .. } => "extended",
            GrantEventKind::ExtensionDenied { .. } => "extension_denied",
            GrantEventKind::ExtensionTimedOut => "extension_timed_out",
            GrantEventKind::ExtensionCancelled => "extension_cancelled",
            GrantEventKind::Expired => "expired",
            GrantEventKind::Revoked { .. } => "revoked",
        }
    }
}
