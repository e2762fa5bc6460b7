//! People, roles and times the tests share.
#![allow(dead_code)]

use std::num::NonZeroU32;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use snowgate_grants::{
    Actor, GrantDuration, GrantRequest, Policy, Reason, RoleName, RolePolicy, Subject,
};

/// A fixed start: 2025-06-15T15:06:40Z.
pub fn t0() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_750_000_000)
}

pub fn mins(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}

pub fn hours(n: u64) -> Duration {
    Duration::from_secs(n * 3600)
}

pub fn dur(d: Duration) -> GrantDuration {
    GrantDuration::new(d).unwrap()
}

pub fn person(sub: &str, groups: &[&str]) -> Actor {
    Actor::new(
        Subject::new(sub).unwrap(),
        Some(format!("{sub}@example.com")),
        groups.iter().map(|g| g.to_string()).collect(),
    )
}

/// An analyst who requests access.
pub fn alice() -> Actor {
    person("alice", &["analysts"])
}
/// A manager: approves ANALYST, READER and PROD_ADMIN.
pub fn bob() -> Actor {
    person("bob", &["managers"])
}
/// Another manager.
pub fn carol() -> Actor {
    person("carol", &["managers"])
}
/// Security: approves PROD_ADMIN only.
pub fn dave() -> Actor {
    person("dave", &["security"])
}
/// A manager who also requests access herself.
pub fn erin() -> Actor {
    person("erin", &["managers", "analysts"])
}
/// Approves nothing.
pub fn mallory() -> Actor {
    person("mallory", &["analysts"])
}

pub fn role(name: &str) -> RoleName {
    RoleName::new(name).unwrap()
}

fn rp(
    name: &str,
    max: Duration,
    approvers: &[&str],
    n: u32,
    auto: Option<Duration>,
    pending: Duration,
    extensions: bool,
) -> RolePolicy {
    RolePolicy {
        name: role(name),
        account: None,
        description: format!("{name} for tests"),
        max_duration: dur(max),
        approver_groups: approvers.iter().map(|g| g.to_string()).collect(),
        approvals_required: NonZeroU32::new(n).unwrap(),
        auto_approve_up_to: auto.map(dur),
        pending_timeout: dur(pending),
        extensions_allowed: extensions,
        statements: Default::default(),
        allow_list_stage: false,
    }
}

/// - ANALYST: up to 8h, one manager approves, pending 1h.
/// - READER: up to 4h, auto-approved up to 1h in all, else one manager.
/// - PROD_ADMIN: up to 2h, two of managers/security, pending 30m.
/// - AUDITOR: up to 2h, no approvers, auto-approved up to 1h, no extensions.
pub fn policy() -> Policy {
    Policy::new(vec![
        rp("ANALYST", hours(8), &["managers"], 1, None, hours(1), true),
        rp(
            "READER",
            hours(4),
            &["managers"],
            1,
            Some(hours(1)),
            hours(1),
            true,
        ),
        rp(
            "PROD_ADMIN",
            hours(2),
            &["managers", "security"],
            2,
            None,
            mins(30),
            true,
        ),
        rp("AUDITOR", hours(2), &[], 1, Some(hours(1)), hours(1), false),
    ])
    .unwrap()
}

pub fn ask(role_name: &str, length: Duration, why: &str) -> GrantRequest {
    GrantRequest {
        role: role(role_name),
        duration: dur(length),
        reason: Reason::new(why).unwrap(),
        ticket: None,
    }
}

pub fn reason(why: &str) -> Reason {
    Reason::new(why).unwrap()
}

/// [`policy`] with READER in Snowflake account `dev` (`[[roles]] account = "dev"`).
pub fn policy_with_accounts() -> Policy {
    let roles = policy()
        .roles()
        .iter()
        .cloned()
        .map(|mut r| {
            if r.name.as_str() == "READER" {
                r.account = Some("dev".into());
            }
            r
        })
        .collect();
    Policy::new(roles).unwrap()
}

/// The migrations of `dir` (`migrations/sqlite` or `migrations/postgres`) from before grants
/// had an account: every one below version 5.
pub async fn previous_schema(dir: &str) -> sqlx::migrate::Migrator {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let mut migrator = sqlx::migrate::Migrator::new(path).await.unwrap();
    let before: Vec<_> = migrator
        .migrations
        .iter()
        .filter(|m| m.version < 5)
        .cloned()
        .collect();
    assert_eq!(before.len(), 4, "the previous schema is migrations 1 to 4");
    migrator.migrations = std::borrow::Cow::Owned(before);
    migrator
}

/// An active READER grant as the previous schema's ledgers kept it: no account in its body.
pub fn previous_grant() -> snowgate_grants::Grant {
    let t = snowgate_grants::machine::request(
        &policy(),
        snowgate_grants::GrantId::generate(),
        &alice(),
        ask("READER", mins(30), "kept across the migration"),
        t0(),
    )
    .unwrap();
    let grant = t.grant().clone();
    let body = serde_json::to_value(&grant).unwrap();
    assert!(body.get("account").is_none(), "{body}");
    grant
}
