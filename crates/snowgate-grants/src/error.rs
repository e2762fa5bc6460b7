//! Why the state machine refused an operation.
//!
//! Every refusal is a [`GrantError`] whose message is one sentence a person can act on: it
//! names the grant, role or limit involved and says what to do instead. A refused operation
//! changes nothing; the machine returns the error before making a new version of the grant.

use crate::model::{GrantDuration, GrantId, GrantState, RoleName};
use crate::timestamp::Timestamp;

/// An operation the rules do not allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    #[error("unknown role {role}; {}", known_roles(known))]
    UnknownRole {
        role: RoleName,
        known: Vec<RoleName>,
    },

    /// No grant the person can act on has this id: none has it, or (on the team server) they
    /// may not see the one that has. The same words either way, for every verb.
    #[error(
        "there is no grant {id} you can act on; `snowgate grants --all` lists the ones you can"
    )]
    UnknownGrant { id: GrantId },

    #[error("{role} allows at most {max}; you asked for {asked}")]
    DurationTooLong {
        role: RoleName,
        max: GrantDuration,
        asked: GrantDuration,
    },

    #[error("{role} has no approvers and is approved by policy only for up to {cap} in all; ask for at most that")]
    NoApprovers { role: RoleName, cap: GrantDuration },

    #[error("{role} now allows at most {max}, but {grant} asks for {asked}; deny it so it can be requested again within the limit")]
    RequestAboveMax {
        grant: GrantId,
        role: RoleName,
        max: GrantDuration,
        asked: GrantDuration,
    },

    #[error("{role} allows at most {max} in all; {grant} already runs {so_far}, so {}; you asked for {asked}", room_phrase(*room))]
    ExtensionAboveMax {
        grant: GrantId,
        role: RoleName,
        max: GrantDuration,
        so_far: GrantDuration,
        room: Option<GrantDuration>,
        asked: GrantDuration,
    },

    #[error("you can't approve your own request; ask someone in {approver_groups}")]
    SelfApproval {
        grant: GrantId,
        approver_groups: String,
    },

    #[error("you can't decide on your own request; to withdraw it, cancel it (`snowgate cancel {grant}`)")]
    SelfDecision { grant: GrantId },

    #[error("{who} is not an approver for {role}: approvers are members of {approver_groups}, and {who}'s groups are {}", list_or_none(their_groups))]
    NotAnApprover {
        who: String,
        role: RoleName,
        approver_groups: String,
        their_groups: Vec<String>,
    },

    #[error("you already approved {grant} at {at}; it needs {remaining} more approval{} from others in {approver_groups}", if *remaining == 1 { "" } else { "s" })]
    AlreadyApproved {
        grant: GrantId,
        at: Timestamp,
        remaining: u32,
        approver_groups: String,
    },

    #[error("grant {grant} already ended ({} at {at})", state.verb())]
    AlreadyEnded {
        grant: GrantId,
        state: GrantState,
        at: Timestamp,
    },

    #[error("grant {grant} is already active until {expires_at} and has no extension waiting; there is nothing to decide")]
    NothingToDecide {
        grant: GrantId,
        expires_at: Timestamp,
    },

    #[error("grant {grant} is still pending, so it can't be revoked; the requester can cancel it and approvers can deny it")]
    RevokePending { grant: GrantId },

    #[error("grant {grant} is still pending; it can be extended once it is approved")]
    ExtendPending { grant: GrantId },

    #[error("only the requester ({requester}) can {action} grant {grant}")]
    NotRequester {
        grant: GrantId,
        action: &'static str,
        requester: String,
    },

    #[error("only the requester or an approver for {role} (members of {approver_groups}) can revoke grant {grant}")]
    NotAllowedToRevoke {
        grant: GrantId,
        role: RoleName,
        approver_groups: String,
    },

    #[error("grant {grant} is already active; to give it up early, revoke it (`snowgate revoke {grant}`)")]
    NothingToCancel { grant: GrantId },

    #[error("{role} does not allow extensions; request a new grant when this one ends")]
    ExtensionsNotAllowed { role: RoleName },

    #[error("an extension of {grant} requested at {requested_at} is still waiting for a decision; wait for it, or cancel it (`snowgate cancel {grant}`) and ask again")]
    ExtensionAlreadyPending {
        grant: GrantId,
        requested_at: Timestamp,
    },
}

fn known_roles(known: &[RoleName]) -> String {
    if known.is_empty() {
        "no roles are configured; add [[roles]] entries to the config".to_string()
    } else {
        let names: Vec<&str> = known.iter().map(|r| r.as_str()).collect();
        format!("known roles: {}", names.join(", "))
    }
}

fn room_phrase(room: Option<GrantDuration>) -> String {
    match room {
        Some(room) => format!("it can be extended by at most {room}"),
        None => "it can't be extended further; request a new grant when it ends".to_string(),
    }
}

fn list_or_none(groups: &[String]) -> String {
    if groups.is_empty() {
        "none".to_string()
    } else {
        groups.join(", ")
    }
}
