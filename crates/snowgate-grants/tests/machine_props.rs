//! Random sequences of operations by random people, with clock jumps either way, over the
//! state machine. After every step, every grant must satisfy the invariants, and every
//! transition's events must describe exactly what changed.

mod common;

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use common::*;
use proptest::prelude::*;
use snowgate_grants::machine::request;
use snowgate_grants::*;

fn people() -> Vec<Actor> {
    vec![alice(), erin(), bob(), carol(), dave(), mallory()]
}

const ROLES: [&str; 4] = ["ANALYST", "READER", "PROD_ADMIN", "AUDITOR"];

#[derive(Debug, Clone)]
enum Op {
    Request { who: usize, role: usize, mins: u64 },
    Approve { grant: usize, who: usize },
    Deny { grant: usize, who: usize },
    Cancel { grant: usize, who: usize },
    Revoke { grant: usize, who: usize },
    Extend { grant: usize, who: usize, mins: u64 },
    ExtendOwn { grant: usize, mins: u64 },
    CancelOwn { grant: usize },
    Tick { grant: usize },
    Forward { mins: u64 },
    Back { mins: u64 },
}

fn op() -> impl Strategy<Value = Op> {
    let who = 0..6usize;
    let grant = 0..8usize;
    prop_oneof![
        3 => (who.clone(), 0..4usize, 1..600u64).prop_map(|(who, role, mins)| Op::Request { who, role, mins }),
        4 => (grant.clone(), who.clone()).prop_map(|(grant, who)| Op::Approve { grant, who }),
        1 => (grant.clone(), who.clone()).prop_map(|(grant, who)| Op::Deny { grant, who }),
        1 => (grant.clone(), who.clone()).prop_map(|(grant, who)| Op::Cancel { grant, who }),
        1 => (grant.clone(), who.clone()).prop_map(|(grant, who)| Op::Revoke { grant, who }),
        1 => (grant.clone(), who, 1..240u64).prop_map(|(grant, who, mins)| Op::Extend { grant, who, mins }),
        3 => (grant.clone(), 1..120u64).prop_map(|(grant, mins)| Op::ExtendOwn { grant, mins }),
        1 => grant.clone().prop_map(|grant| Op::CancelOwn { grant }),
        2 => grant.prop_map(|grant| Op::Tick { grant }),
        3 => (0..40u64).prop_map(|mins| Op::Forward { mins }),
        1 => (0..30u64).prop_map(|mins| Op::Back { mins }),
    ]
}

fn persons(approvals: &[Approval]) -> Vec<&Actor> {
    approvals.iter().filter_map(|a| a.by.person()).collect()
}

/// The invariants every grant satisfies at all times.
fn check_grant(g: &Grant, policy: &Policy) {
    let role = policy.role(g.role()).unwrap();
    let n = role.approvals_required.get() as usize;
    let mut lists: Vec<(&[Approval], Duration)> =
        vec![(g.approvals(), g.requested_duration().as_duration())];
    let mut total = g.requested_duration().as_duration();
    for ext in g.extensions() {
        if ext.state() == ExtensionState::Approved {
            total += ext.extra().as_duration();
        }
        lists.push((ext.approvals(), total));
    }
    for (approvals, _) in &lists {
        let ps = persons(approvals);
        for (i, p) in ps.iter().enumerate() {
            assert!(!p.is(g.requester()), "self-approval recorded on {}", g.id());
            assert!(
                role.is_approver(p),
                "approval by a non-approver on {}",
                g.id()
            );
            assert!(
                !ps[..i].iter().any(|q| q.is(p)),
                "double approval on {}",
                g.id()
            );
        }
    }
    if let Some(approved_at) = g.approved_at() {
        let by_policy = g.approvals().iter().any(|a| a.by == Decider::Policy);
        if by_policy {
            assert_eq!(g.approvals().len(), 1);
            assert!(role.auto_approves(g.requested_duration().as_duration()));
        } else {
            assert!(
                persons(g.approvals()).len() >= n,
                "active without N approvals: {g:?}"
            );
        }
        let expires = g.expires_at().expect("approved grants have an expiry");
        assert_eq!(
            expires,
            approved_at.plus(total),
            "expiry = approval + approved lengths"
        );
        assert!(
            expires.since(approved_at) <= role.max_duration.as_duration(),
            "longer than max"
        );
    } else {
        assert!(g.expires_at().is_none());
        assert!(matches!(
            g.state(),
            GrantState::Pending | GrantState::Denied | GrantState::Cancelled | GrantState::TimedOut
        ));
    }
    let mut running = g.requested_duration().as_duration();
    for ext in g.extensions() {
        if ext.state() == ExtensionState::Approved {
            running += ext.extra().as_duration();
            let by_policy = ext.approvals().iter().any(|a| a.by == Decider::Policy);
            assert!(
                (by_policy && role.auto_approves(running)) || persons(ext.approvals()).len() >= n,
                "extension approved without N approvals on {}",
                g.id()
            );
        }
    }
    let pending_exts = g
        .extensions()
        .iter()
        .filter(|e| e.state() == ExtensionState::Pending)
        .count();
    assert!(pending_exts <= 1);
    if pending_exts == 1 {
        assert_eq!(
            g.state(),
            GrantState::Active,
            "a pending extension needs an active grant"
        );
    }
    assert_eq!(g.state().is_ended(), g.ended_at().is_some());
    assert_eq!(g.state().is_ended(), g.next_deadline().is_none());
}

/// The events of a transition match the difference between the two versions.
fn check_step(before: &Grant, t: &Transition) {
    let after = t.grant();
    if t.is_empty() {
        assert_eq!(after, before, "an empty transition changes nothing");
        return;
    }
    assert!(
        !before.state().is_ended(),
        "an ended grant changed: {before:?} -> {after:?}"
    );
    assert_eq!(after.version(), before.version() + 1);
    assert_eq!(t.replaces_version(), Some(before.version()));
    assert_eq!(after.id(), before.id());
    assert!(
        after.updated_at() >= before.updated_at(),
        "time ran backwards"
    );
    let kinds: Vec<&GrantEventKind> = t.events().iter().map(|e| &e.kind).collect();
    for e in t.events() {
        assert_eq!(&e.grant, after.id());
        assert!(e.at <= after.updated_at());
    }
    let activated = kinds
        .iter()
        .filter(|k| matches!(k, GrantEventKind::Activated { .. }))
        .count();
    assert_eq!(
        activated == 1,
        before.approved_at().is_none() && after.approved_at().is_some()
    );
    assert!(activated <= 1);

    let ends: Vec<_> = kinds.iter().filter(|k| k.ends_grant()).collect();
    if after.state().is_ended() {
        assert_eq!(ends.len(), 1);
        assert!(
            kinds.last().unwrap().ends_grant(),
            "the end is the last event"
        );
        let expected = match ends[0] {
            GrantEventKind::Denied { .. } => GrantState::Denied,
            GrantEventKind::Cancelled => GrantState::Cancelled,
            GrantEventKind::TimedOut => GrantState::TimedOut,
            GrantEventKind::Expired => GrantState::Expired,
            GrantEventKind::Revoked { .. } => GrantState::Revoked,
            _ => unreachable!(),
        };
        assert_eq!(after.state(), expected);
    } else {
        assert!(ends.is_empty());
    }

    let requested = kinds
        .iter()
        .filter(|k| matches!(k, GrantEventKind::ExtensionRequested { .. }))
        .count();
    assert_eq!(
        before.extensions().len() + requested,
        after.extensions().len()
    );

    let mut expiry = before.expires_at();
    for k in &kinds {
        match k {
            GrantEventKind::Activated { expires_at, .. } => expiry = Some(*expires_at),
            GrantEventKind::Extended { from, to } => {
                assert_eq!(
                    expiry,
                    Some(*from),
                    "Extended starts from the current expiry"
                );
                assert!(to > from);
                expiry = Some(*to);
            }
            _ => {}
        }
    }
    assert_eq!(
        expiry,
        after.expires_at(),
        "only Activated and Extended move the expiry"
    );

    let newly_approved = after
        .extensions()
        .iter()
        .enumerate()
        .filter(|(i, e)| {
            e.state() == ExtensionState::Approved
                && before
                    .extensions()
                    .get(*i)
                    .is_none_or(|b| b.state() != ExtensionState::Approved)
        })
        .count();
    let extended = kinds
        .iter()
        .filter(|k| matches!(k, GrantEventKind::Extended { .. }))
        .count();
    assert_eq!(newly_approved, extended);

    let last_warning = kinds
        .iter()
        .rposition(|k| matches!(k, GrantEventKind::ExpiringSoon { .. }));
    if let Some(w) = last_warning {
        let moved_since = kinds[w..]
            .iter()
            .any(|k| matches!(k, GrantEventKind::Extended { .. }));
        if !moved_since && !after.state().is_ended() {
            assert!(
                after.expiry_warning_due().is_none(),
                "the warning fires once per expiry"
            );
        }
    }
    let approvals_added = after.approvals().len() - before.approvals().len();
    let approved_events = kinds
        .iter()
        .filter(|k| matches!(k, GrantEventKind::Approved { .. }))
        .count();
    assert_eq!(approvals_added, approved_events);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn invariants_hold_after_every_step(ops in prop::collection::vec(op(), 1..60)) {
        let policy = policy();
        let people = people();
        let mut now: SystemTime = t0();
        let mut grants: Vec<Grant> = Vec::new();
        let mut ended: HashMap<GrantId, Grant> = HashMap::new();

        for op in ops {
            let pick = |i: usize, grants: &Vec<Grant>| (!grants.is_empty()).then(|| i % grants.len());
            let result: Option<(usize, Result<Transition, GrantError>)> = match &op {
                Op::Request { who, role, mins } => {
                    let req = ask(ROLES[*role], Duration::from_secs(mins * 60), "work");
                    match request(&policy, GrantId::generate(), &people[*who], req, now) {
                        Ok(t) => {
                            check_grant(t.grant(), &policy);
                            assert_eq!(t.grant().version(), 1);
                            assert!(matches!(t.events()[0].kind, GrantEventKind::Requested { .. }));
                            grants.push(t.into_grant());
                        }
                        Err(e) => {
                            let role = policy.role(&common::role(ROLES[*role])).unwrap();
                            let d = Duration::from_secs(mins * 60);
                            prop_assert!(
                                d > role.max_duration.as_duration()
                                    || (role.approver_groups.is_empty() && !role.auto_approves(d)),
                                "refused for no reason: {e}"
                            );
                        }
                    }
                    None
                }
                Op::Approve { grant, who } => pick(*grant, &grants).map(|i| {
                    let r = grants[i].approve(&policy, &people[*who], None, now);
                    let role = policy.role(grants[i].role()).unwrap();
                    if people[*who].is(grants[i].requester()) || !role.is_approver(&people[*who]) {
                        assert!(r.is_err(), "approval by requester or outsider accepted");
                    }
                    (i, r)
                }),
                Op::Deny { grant, who } => pick(*grant, &grants).map(|i| {
                    let comment = Comment::new("no").unwrap();
                    (i, grants[i].deny(&policy, &people[*who], comment, now))
                }),
                Op::Cancel { grant, who } => pick(*grant, &grants).map(|i| {
                    let r = grants[i].cancel(&people[*who], now);
                    if !people[*who].is(grants[i].requester()) {
                        assert!(r.is_err(), "cancel by someone else accepted");
                    }
                    (i, r)
                }),
                Op::Revoke { grant, who } => pick(*grant, &grants).map(|i| {
                    let r = grants[i].revoke(&policy, &people[*who], None, now);
                    let role = policy.role(grants[i].role()).unwrap();
                    if !people[*who].is(grants[i].requester()) && !role.is_approver(&people[*who]) {
                        assert!(r.is_err(), "revoke by an outsider accepted");
                    }
                    (i, r)
                }),
                Op::Extend { grant, who, mins } => pick(*grant, &grants).map(|i| {
                    let extra = GrantDuration::from_mins(*mins).unwrap();
                    (i, grants[i].extend(&policy, &people[*who], extra, reason("more"), now))
                }),
                Op::ExtendOwn { grant, mins } => pick(*grant, &grants).map(|i| {
                    let extra = GrantDuration::from_mins(*mins).unwrap();
                    let owner = grants[i].requester().clone();
                    (i, grants[i].extend(&policy, &owner, extra, reason("more"), now))
                }),
                Op::CancelOwn { grant } => pick(*grant, &grants).map(|i| {
                    let owner = grants[i].requester().clone();
                    (i, grants[i].cancel(&owner, now))
                }),
                Op::Tick { grant } => pick(*grant, &grants).map(|i| (i, Ok(grants[i].tick(now)))),
                Op::Forward { mins } => {
                    now += Duration::from_secs(mins * 60);
                    None
                }
                Op::Back { mins } => {
                    now -= Duration::from_secs(mins * 60);
                    None
                }
            };
            if let Some((i, Ok(t))) = result {
                check_step(&grants[i], &t);
                check_grant(t.grant(), &policy);
                grants[i] = t.into_grant();
            }
            for g in &grants {
                check_grant(g, &policy);
                if g.state().is_ended() {
                    let first = ended.entry(g.id().clone()).or_insert_with(|| g.clone());
                    prop_assert_eq!(&*first, g, "an ended grant changed");
                }
            }
        }
    }
}
