//! Who may have which role, for how long, and who must agree.
//!
//! The engine builds a [`Policy`] from the `[[roles]]` in config (the user's in solo mode, the
//! server's in team mode). The state machine reads it at every decision, so a change in config
//! applies to the next decision, including on requests made before the change.

use std::num::NonZeroU32;
use std::time::Duration;

use crate::error::GrantError;
use crate::model::{Actor, GrantDuration, RoleName};

/// The rules for one requestable role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolePolicy {
    /// The Snowflake role.
    pub name: RoleName,
    /// The Snowflake account it belongs to (a `[[snowflake]]` name); `None`: the only one.
    pub account: Option<String>,
    /// What the role is for, shown in the request form.
    pub description: String,
    /// The longest a grant may run in total, extensions included.
    pub max_duration: GrantDuration,
    /// Identity-provider groups whose members may approve, deny and revoke.
    pub approver_groups: Vec<String>,
    /// How many distinct approvers must approve a request (or an extension).
    pub approvals_required: NonZeroU32,
    /// Grants whose total length is at most this are approved by policy, without an approver.
    pub auto_approve_up_to: Option<GrantDuration>,
    /// How long a request (or an extension) may wait for a decision before it times out.
    pub pending_timeout: GrantDuration,
    /// Whether an active grant may be extended.
    pub extensions_allowed: bool,
    /// Which statements the role's sessions may run through the gateway.
    pub statements: StatementRule,
    /// Whether read-only sessions of the role may list a stage's files (`LIST @stage`).
    pub allow_list_stage: bool,
}

/// Which statements a role's gateway sessions may run: `[[roles]] statements`.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    serde::Serialize,
    serde::Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum StatementRule {
    /// Whatever the Snowflake role allows (the default).
    #[default]
    Any,
    /// Only read-only statements (SELECT, SHOW, DESCRIBE, EXPLAIN, USE WAREHOUSE/DATABASE/
    /// SCHEMA, ALTER SESSION of display settings), judged by `snowgate_sqlpolicy`.
    ReadOnly,
}

impl RolePolicy {
    /// Whether `actor` is in one of this role's approver groups. Says nothing about
    /// self-approval, which depends on the grant.
    pub fn is_approver(&self, actor: &Actor) -> bool {
        actor.in_any_of(&self.approver_groups)
    }

    /// Whether a grant running `total` in all would be approved by policy.
    pub fn auto_approves(&self, total: Duration) -> bool {
        self.auto_approve_up_to
            .is_some_and(|cap| total <= cap.as_duration())
    }

    /// The approver groups as people read them: `managers`, `managers or security`.
    pub fn approver_groups_phrase(&self) -> String {
        match self.approver_groups.as_slice() {
            [] => "no group (this role has no approvers)".to_string(),
            [one] => one.clone(),
            [init @ .., last] => format!("{} or {last}", init.join(", ")),
        }
    }
}

/// Why a set of role policies cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("role {0} is defined twice; each role needs its own entry")]
    DuplicateRole(RoleName),
    #[error("role {role}: auto_approve_up_to ({cap}) is longer than max_duration ({max}); lower it or raise max_duration")]
    AutoApproveAboveMax {
        role: RoleName,
        cap: GrantDuration,
        max: GrantDuration,
    },
    #[error("role {0} has no approver groups and no auto_approve_up_to, so no request for it could ever be approved")]
    Unapprovable(RoleName),
}

/// Every requestable role and its rules.
///
/// Guarantees: role names are unique, an auto-approval cap never exceeds the role's maximum,
/// and every role can be approved somehow (it has approver groups or an auto-approval cap).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Policy {
    roles: Vec<RolePolicy>,
}

impl Policy {
    /// Checks the roles and builds the policy.
    pub fn new(roles: Vec<RolePolicy>) -> Result<Policy, PolicyError> {
        for (i, role) in roles.iter().enumerate() {
            if roles[..i].iter().any(|r| r.name == role.name) {
                return Err(PolicyError::DuplicateRole(role.name.clone()));
            }
            if let Some(cap) = role.auto_approve_up_to {
                if cap > role.max_duration {
                    return Err(PolicyError::AutoApproveAboveMax {
                        role: role.name.clone(),
                        cap,
                        max: role.max_duration,
                    });
                }
            }
            if role.approver_groups.is_empty() && role.auto_approve_up_to.is_none() {
                return Err(PolicyError::Unapprovable(role.name.clone()));
            }
        }
        Ok(Policy { roles })
    }

    /// Every role, in config order.
    pub fn roles(&self) -> &[RolePolicy] {
        &self.roles
    }

    /// The role's rules, or [`GrantError::UnknownRole`] listing the roles that exist.
    pub fn role(&self, name: &RoleName) -> Result<&RolePolicy, GrantError> {
        self.roles
            .iter()
            .find(|r| &r.name == name)
            .ok_or_else(|| GrantError::UnknownRole {
                role: name.clone(),
                known: self.roles.iter().map(|r| r.name.clone()).collect(),
            })
    }

    /// The roles `actor` may decide on.
    pub fn roles_approvable_by(&self, actor: &Actor) -> Vec<RoleName> {
        self.roles
            .iter()
            .filter(|r| r.is_approver(actor))
            .map(|r| r.name.clone())
            .collect()
    }
}
