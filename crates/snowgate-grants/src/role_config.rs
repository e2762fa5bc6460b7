//! `[[roles]]`: the one shape of a requestable role's policy in config, shared by the desktop's
//! `config.toml` (solo mode) and the team server's `server.toml`.
//!
//! [`RoleConfig`] is what a `[[roles]]` table deserializes into (each value checked by its type,
//! with the span kept where an error should point); [`check`] applies the rules across fields
//! and roles with errors located in the file; [`policy`] turns checked tables into the
//! [`Policy`] the grants service and the team server run under.

use std::num::NonZeroU32;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};
use snowgate_config::{ConfigDuration, ConfigText, LocatedError, NonEmpty};
use toml::Spanned;

use crate::model::{GrantDuration, RoleName};
use crate::policy::{Policy, RolePolicy, StatementRule};

/// `[[roles]]`: a Snowflake role that can be requested, and the policy for it.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RoleConfig {
    /// The Snowflake role name, as in `session:role:NAME`.
    pub name: Spanned<RoleName>,
    /// The Snowflake account the role belongs to: the `name` of a `[[snowflake]]` entry.
    /// Required when the config has several accounts; default: the only one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<Spanned<NonEmpty>>,
    /// What the role is for, shown in the request form.
    #[serde(default)]
    pub description: String,
    /// The longest grant anyone may ask for.
    pub max_duration: ConfigDuration,
    /// IdP groups whose members may decide on requests for this role.
    #[serde(default)]
    pub approvers: Vec<NonEmpty>,
    /// How many distinct approvals activate a request.
    #[serde(default = "default_approvals_required")]
    pub approvals_required: ApprovalCount,
    /// Requests up to this duration are approved by policy, without an approver.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_approve_up_to: Option<Spanned<ConfigDuration>>,
    /// How long a request may wait for a decision before it times out.
    #[serde(default = "default_pending_timeout")]
    pub pending_timeout: ConfigDuration,
    /// Whether an active grant may be extended (each extension is a new decision).
    #[serde(default = "default_true")]
    pub extensions: bool,
    /// Which statements the role's gateway sessions may run: `"any"` (the default) or
    /// `"read_only"`.
    #[serde(default)]
    pub statements: StatementRule,
    /// Whether the role's read-only sessions may list a stage's files with `LIST @stage` (or
    /// `LS`): `false` (the default) refuses it. A role with `statements = "any"` lists anyway.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub allow_list_stage: bool,
}

/// How many approvals a request needs: 1 to 10.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ApprovalCount(pub u8);

impl<'de> Deserialize<'de> for ApprovalCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        if (1..=10).contains(&n) {
            Ok(ApprovalCount(n as u8))
        } else {
            Err(serde::de::Error::custom(format!(
                "{n} is out of range; a request needs between 1 and 10 approvals"
            )))
        }
    }
}

fn default_approvals_required() -> ApprovalCount {
    ApprovalCount(1)
}
fn default_pending_timeout() -> ConfigDuration {
    ConfigDuration(Duration::from_secs(24 * 3600))
}
fn default_true() -> bool {
    true
}

/// Checks the rules across a role's fields and across roles, each error at the line of the
/// role (or of the value) at fault: a name defined twice, an auto-approval cap above the
/// maximum, and a role that nobody could ever approve.
pub fn check(roles: &[RoleConfig], source: &ConfigText) -> Result<(), LocatedError> {
    let at = |span: std::ops::Range<usize>, key: String, message: String| {
        source.error(Some(source.line_of(span.start)), key, message)
    };
    let mut seen: Vec<&RoleName> = Vec::new();
    for (i, role) in roles.iter().enumerate() {
        let name = role.name.get_ref();
        if seen.contains(&name) {
            return Err(at(
                role.name.span(),
                format!("roles[{i}].name"),
                format!("role {name} is defined twice; each [[roles]] entry needs its own name"),
            ));
        }
        seen.push(name);
        if let Some(cap) = &role.auto_approve_up_to {
            if cap.get_ref().0 > role.max_duration.0 {
                return Err(at(
                    cap.span(),
                    format!("roles[{i}].auto_approve_up_to"),
                    format!(
                        "{} is longer than max_duration ({}); lower it or raise max_duration",
                        cap.get_ref(),
                        role.max_duration
                    ),
                ));
            }
        }
        if role.approvers.is_empty() && role.auto_approve_up_to.is_none() {
            return Err(at(
                role.name.span(),
                format!("roles[{i}]"),
                format!(
                    "role {name} has no `approvers` and no `auto_approve_up_to`, so no request for it could ever be approved"
                ),
            ));
        }
    }
    if let Err((i, message)) = policy(roles) {
        return Err(at(roles[i].name.span(), format!("roles[{i}]"), message));
    }
    Ok(())
}

/// Checks each role's `account` against the configured accounts' names (`accounts`, matched
/// case-insensitively): required when there are several, and it must name one of them.
pub fn check_accounts(
    roles: &[RoleConfig],
    accounts: &[&str],
    source: &ConfigText,
) -> Result<(), LocatedError> {
    for (i, role) in roles.iter().enumerate() {
        let name = role.name.get_ref();
        match &role.account {
            None if accounts.len() > 1 => {
                return Err(source.error(
                    Some(source.line_of(role.name.span().start)),
                    format!("roles[{i}].account"),
                    format!(
                        "missing: the config has several Snowflake accounts ({}), so role {name} must say which it belongs to, e.g. account = \"{}\"",
                        accounts.join(", "),
                        accounts[0]
                    ),
                ))
            }
            Some(a) if !accounts.iter().any(|n| n.eq_ignore_ascii_case(a.get_ref().as_str())) => {
                return Err(source.error(
                    Some(source.line_of(a.span().start)),
                    format!("roles[{i}].account"),
                    format!(
                        "{:?} is not a configured Snowflake account; the accounts are {}",
                        a.get_ref().as_str(),
                        accounts.join(", ")
                    ),
                ))
            }
            _ => {}
        }
    }
    Ok(())
}

/// The grants policy from `[[roles]]`. On a config that passed [`check`] this succeeds; else
/// the index of the role at fault and what is wrong with it.
pub fn policy(roles: &[RoleConfig]) -> Result<Policy, (usize, String)> {
    let mut out = Vec::with_capacity(roles.len());
    for (i, r) in roles.iter().enumerate() {
        let bad = |what: &str, e: &dyn std::fmt::Display| (i, format!("{what}: {e}"));
        out.push(RolePolicy {
            name: r.name.get_ref().clone(),
            account: r.account.as_ref().map(|a| a.get_ref().as_str().to_string()),
            description: r.description.clone(),
            max_duration: GrantDuration::new(r.max_duration.0)
                .map_err(|e| bad("max_duration", &e))?,
            approver_groups: r.approvers.iter().map(|g| g.as_str().to_string()).collect(),
            approvals_required: NonZeroU32::new(u32::from(r.approvals_required.0))
                .ok_or_else(|| (i, "approvals_required must be at least 1".to_string()))?,
            auto_approve_up_to: match &r.auto_approve_up_to {
                Some(d) => Some(
                    GrantDuration::new(d.get_ref().0).map_err(|e| bad("auto_approve_up_to", &e))?,
                ),
                None => None,
            },
            pending_timeout: GrantDuration::new(r.pending_timeout.0)
                .map_err(|e| bad("pending_timeout", &e))?,
            extensions_allowed: r.extensions,
            statements: r.statements,
            allow_list_stage: r.allow_list_stage,
        });
    }
    Policy::new(out).map_err(|e| {
        let at = match &e {
            crate::PolicyError::DuplicateRole(n)
            | crate::PolicyError::AutoApproveAboveMax { role: n, .. }
            | crate::PolicyError::Unapprovable(n) => roles
                .iter()
                .position(|r| r.name.get_ref() == n)
                .unwrap_or(0),
        };
        (at, e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    #[derive(Deserialize)]
    struct File {
        roles: Vec<RoleConfig>,
    }

    fn checked(text: &str) -> Result<Policy, String> {
        let source = ConfigText::new(text, Path::new("x.toml"));
        let file: File = source.parse().map_err(|e| e.to_string())?;
        check(&file.roles, &source).map_err(|e| e.to_string())?;
        Ok(policy(&file.roles).expect("a checked config gives a policy"))
    }

    #[test]
    fn a_role_with_its_defaults_becomes_its_policy() {
        let p = checked(
            "[[roles]]\nname = \"ANALYST\"\nmax_duration = \"8h\"\napprovers = [\"managers\"]\n",
        )
        .unwrap();
        let r = &p.roles()[0];
        assert_eq!(r.name.as_str(), "ANALYST");
        assert_eq!(r.max_duration.as_secs(), 8 * 3600);
        assert_eq!(r.approvals_required.get(), 1);
        assert_eq!(r.pending_timeout.as_secs(), 24 * 3600);
        assert!(r.extensions_allowed);
        assert_eq!(r.auto_approve_up_to, None);
        assert_eq!(r.statements, StatementRule::Any);
    }

    #[test]
    fn statements_are_any_or_read_only_and_nothing_else() {
        let role = |extra: &str| {
            format!(
                "[[roles]]\nname = \"A\"\nmax_duration = \"1h\"\napprovers = [\"m\"]\n{extra}\n"
            )
        };
        let p = checked(&role("statements = \"read_only\"")).unwrap();
        assert_eq!(p.roles()[0].statements, StatementRule::ReadOnly);
        let p = checked(&role("statements = \"any\"")).unwrap();
        assert_eq!(p.roles()[0].statements, StatementRule::Any);
        let e = checked(&role("statements = \"readonly\"")).unwrap_err();
        assert!(e.contains("line 5"), "{e}");
        assert!(e.contains("any") && e.contains("read_only"), "{e}");
    }

    #[test]
    fn allow_list_stage_is_off_unless_set() {
        let role = |extra: &str| {
            format!(
                "[[roles]]\nname = \"A\"\nmax_duration = \"1h\"\napprovers = [\"m\"]\nstatements = \"read_only\"\n{extra}\n"
            )
        };
        assert!(!checked(&role("")).unwrap().roles()[0].allow_list_stage);
        let p = checked(&role("allow_list_stage = true")).unwrap();
        assert!(p.roles()[0].allow_list_stage);
        let e = checked(&role("allow_list_stage = \"yes\"")).unwrap_err();
        assert!(e.contains("line 6"), "{e}");
    }

    #[test]
    fn each_rule_is_refused_at_the_line_of_the_role_at_fault() {
        let role = |name: &str, extra: &str| {
            format!("[[roles]]\nname = \"{name}\"\nmax_duration = \"1h\"\n{extra}\n")
        };
        let twice = format!(
            "{}{}",
            role("A", "approvers = [\"m\"]"),
            role("A", "approvers = [\"m\"]")
        );
        let e = checked(&twice).unwrap_err();
        assert!(e.contains("line 6") && e.contains("defined twice"), "{e}");

        let e = checked(&role("A", "auto_approve_up_to = \"2h\"")).unwrap_err();
        assert!(
            e.contains("line 4") && e.contains("longer than max_duration"),
            "{e}"
        );

        let e = checked(&role("A", "")).unwrap_err();
        assert!(
            e.contains("line 2") && e.contains("could ever be approved"),
            "{e}"
        );

        let e = checked(&role("A", "approvers = [\"m\"]\napprovals_required = 11")).unwrap_err();
        assert!(e.contains("between 1 and 10 approvals"), "{e}");

        let e = checked(&role("9A", "approvers = [\"m\"]")).unwrap_err();
        assert!(e.contains("is not a Snowflake role name"), "{e}");

        let e = checked(&role("A", "approvers = [\"m\"]\nexpires = \"1h\"")).unwrap_err();
        assert!(e.contains("unknown key `expires`"), "{e}");
    }
}
