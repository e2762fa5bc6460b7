//! The grant state machine, specified by example. Pure: no ledger, no timer, no sleeping.

mod common;

use std::time::SystemTime;

use common::*;
use snowgate_grants::machine::request;
use snowgate_grants::*;

fn at(offset: std::time::Duration) -> SystemTime {
    t0() + offset
}

fn ts(t: SystemTime) -> Timestamp {
    Timestamp::from(t)
}

fn names(t: &Transition) -> Vec<&'static str> {
    t.events().iter().map(|e| e.kind.name()).collect()
}

/// alice asks for `role` for `length` at t0.
fn requested(role: &str, length: std::time::Duration) -> Grant {
    requested_by(&alice(), role, length)
}

fn requested_by(who: &Actor, role: &str, length: std::time::Duration) -> Grant {
    request(
        &policy(),
        GrantId::generate(),
        who,
        ask(role, length, "quarterly numbers"),
        t0(),
    )
    .unwrap()
    .into_grant()
}

/// alice's ANALYST grant for `length`, requested at t0 and approved by bob at t0+5m.
fn active_analyst(length: std::time::Duration) -> Grant {
    requested("ANALYST", length)
        .approve(&policy(), &bob(), None, at(mins(5)))
        .unwrap()
        .into_grant()
}

// ---- requests ----------------------------------------------------------------------------

#[test]
fn a_request_waits_for_approval_and_says_so() {
    let t = request(
        &policy(),
        GrantId::generate(),
        &alice(),
        ask("ANALYST", hours(2), "quarterly numbers"),
        t0(),
    )
    .unwrap();
    let g = t.grant();
    assert_eq!(g.state(), GrantState::Pending);
    assert_eq!(g.version(), 1);
    assert_eq!(t.replaces_version(), None);
    assert_eq!(g.pending_until(), ts(at(hours(1))));
    assert_eq!(g.approved_at(), None);
    assert_eq!(g.expires_at(), None);
    assert_eq!(names(&t), ["requested"]);
    assert_eq!(t.events()[0].cause, Cause::Person(alice()));
}

#[test]
fn duration_above_maximum_is_refused() {
    let err = request(
        &policy(),
        GrantId::generate(),
        &alice(),
        ask("ANALYST", hours(12), "quarterly numbers"),
        t0(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "ANALYST allows at most 8h; you asked for 12h"
    );
}

#[test]
fn unknown_role_is_refused_with_the_known_roles() {
    let err = request(
        &policy(),
        GrantId::generate(),
        &alice(),
        ask("FOO", hours(1), "quarterly numbers"),
        t0(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown role FOO; known roles: ANALYST, READER, PROD_ADMIN, AUDITOR"
    );
}

#[test]
fn a_reason_is_required_trimmed_and_capped() {
    assert_eq!(
        Reason::new("   ").unwrap_err().to_string(),
        "a reason is required; say in a few words why"
    );
    assert_eq!(
        Reason::new("  fix the dashboard \n").unwrap().as_str(),
        "fix the dashboard"
    );
    let long = "x".repeat(501);
    assert_eq!(
        Reason::new(&long).unwrap_err().to_string(),
        "the reason is 501 characters long; keep it to at most 500"
    );
    assert!(
        Reason::new("é".repeat(500)).is_ok(),
        "the cap counts characters, not bytes"
    );
}

#[test]
fn durations_are_positive_whole_seconds() {
    assert_eq!(
        GrantDuration::new(std::time::Duration::ZERO).unwrap_err(),
        InvalidValue::ZeroDuration
    );
    assert!(GrantDuration::new(std::time::Duration::from_millis(1500)).is_err());
    assert_eq!(GrantDuration::from_secs(5400).unwrap().to_string(), "1h30m");
    assert_eq!(
        GrantDuration::from_secs(86_400 + 60).unwrap().to_string(),
        "1d1m"
    );
    assert!(GrantDuration::from_secs(400 * 86_400).is_err());
}

#[test]
fn grant_ids_are_typable_and_bad_ones_say_what_they_look_like() {
    let id = GrantId::generate();
    assert!(id.as_str().starts_with("g_"));
    assert_eq!(id.as_str().len(), 22);
    assert_eq!(id.to_string().parse::<GrantId>().unwrap(), id);
    assert_eq!(
        format!("  {}  ", id.as_str().to_uppercase())
            .parse::<GrantId>()
            .unwrap(),
        id,
        "pasted ids are forgiven surrounding space and case"
    );
    let err = "g_123".parse::<GrantId>().unwrap_err().to_string();
    assert!(
        err.starts_with("\"g_123\" is not a grant id; grant ids look like g_"),
        "{err}"
    );
    assert_ne!(GrantId::generate(), GrantId::generate());
}

#[test]
fn short_request_within_the_auto_cap_is_active_at_once_approved_by_policy() {
    let t = request(
        &policy(),
        GrantId::generate(),
        &alice(),
        ask("READER", mins(30), "look at a table"),
        t0(),
    )
    .unwrap();
    let g = t.grant();
    assert_eq!(g.state(), GrantState::Active);
    assert_eq!(g.approvals().len(), 1);
    assert_eq!(g.approvals()[0].by, Decider::Policy);
    assert_eq!(g.approved_at(), Some(ts(t0())));
    assert_eq!(g.expires_at(), Some(ts(at(mins(30)))));
    assert_eq!(names(&t), ["requested", "approved", "activated"]);
    assert_eq!(t.events()[1].cause, Cause::Policy);
}

#[test]
fn request_above_the_auto_cap_waits_for_an_approver() {
    let g = requested("READER", hours(2));
    assert_eq!(g.state(), GrantState::Pending);
}

#[test]
fn role_without_approvers_refuses_more_than_its_auto_cap() {
    let err = request(
        &policy(),
        GrantId::generate(),
        &alice(),
        ask("AUDITOR", hours(2), "year-end audit"),
        t0(),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "AUDITOR has no approvers and is approved by policy only for up to 1h in all; ask for at most that"
    );
}

// ---- approvals -----------------------------------------------------------------------------

#[test]
fn clock_starts_at_approval_not_at_request() {
    let g = requested("ANALYST", hours(2));
    let t = g.approve(&policy(), &bob(), None, at(mins(40))).unwrap();
    let g = t.grant();
    assert_eq!(g.state(), GrantState::Active);
    assert_eq!(g.approved_at(), Some(ts(at(mins(40)))));
    assert_eq!(g.expires_at(), Some(ts(at(mins(40) + hours(2)))));
    assert_eq!(names(&t), ["approved", "activated"]);
    assert_eq!(
        t.events()[1].kind,
        GrantEventKind::Activated {
            approved_at: ts(at(mins(40))),
            expires_at: ts(at(mins(160)))
        }
    );
}

#[test]
fn approver_cannot_approve_own_request() {
    let g = requested_by(&erin(), "ANALYST", hours(1));
    let err = g
        .approve(&policy(), &erin(), None, at(mins(1)))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "you can't approve your own request; ask someone in managers"
    );
}

#[test]
fn requester_cannot_deny_own_request_but_may_cancel_it() {
    let g = requested_by(&erin(), "ANALYST", hours(1));
    let err = g
        .deny(
            &policy(),
            &erin(),
            Comment::new("nah").unwrap(),
            at(mins(1)),
        )
        .unwrap_err();
    assert!(matches!(err, GrantError::SelfDecision { .. }), "{err}");
    let t = g.cancel(&erin(), at(mins(1))).unwrap();
    assert_eq!(t.grant().state(), GrantState::Cancelled);
    assert_eq!(names(&t), ["cancelled"]);
}

#[test]
fn someone_outside_the_approver_groups_cannot_approve() {
    let g = requested("ANALYST", hours(1));
    let err = g
        .approve(&policy(), &mallory(), None, at(mins(1)))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "mallory@example.com is not an approver for ANALYST: approvers are members of managers, and mallory@example.com's groups are analysts"
    );
    let err = g
        .approve(&policy(), &dave(), None, at(mins(1)))
        .unwrap_err();
    assert!(
        matches!(err, GrantError::NotAnApprover { .. }),
        "security does not approve ANALYST"
    );
}

#[test]
fn approver_eligibility_is_checked_at_decision_time() {
    let g = requested("ANALYST", hours(1));
    let bob_after_leaving_managers = person("bob", &["alumni"]);
    assert!(g
        .approve(&policy(), &bob_after_leaving_managers, None, at(mins(1)))
        .is_err());

    let mut roles = policy().roles().to_vec();
    roles[0].approver_groups = vec!["security".into()];
    let changed = Policy::new(roles).unwrap();
    assert!(g.approve(&changed, &bob(), None, at(mins(1))).is_err());
    assert!(g.approve(&changed, &dave(), None, at(mins(1))).is_ok());
}

#[test]
fn two_of_three_approvals_activate() {
    let g = requested("PROD_ADMIN", hours(1));
    assert!(g.awaits_decision_by(&bob()) && g.awaits_decision_by(&dave()));
    assert!(!g.awaits_decision_by(&alice()), "not the requester's own");
    let first = g.approve(&policy(), &bob(), None, at(mins(2))).unwrap();
    assert_eq!(first.grant().state(), GrantState::Pending);
    assert!(
        !first.grant().awaits_decision_by(&bob()),
        "bob has approved what is open"
    );
    assert!(first.grant().awaits_decision_by(&dave()));
    assert_eq!(
        first.events()[0].kind,
        GrantEventKind::Approved {
            comment: None,
            remaining: 1
        }
    );
    let second = first
        .grant()
        .approve(
            &policy(),
            &dave(),
            Some(Comment::new("ok for the migration").unwrap()),
            at(mins(7)),
        )
        .unwrap();
    let g = second.grant();
    assert_eq!(g.state(), GrantState::Active);
    assert_eq!(g.approvals().len(), 2);
    assert_eq!(
        g.approved_at(),
        Some(ts(at(mins(7)))),
        "active from the Nth approval"
    );
    assert_eq!(names(&second), ["approved", "activated"]);
    assert!(
        !g.awaits_decision_by(&dave()),
        "an active grant awaits nobody"
    );
}

#[test]
fn the_same_approver_cannot_approve_twice() {
    let g = requested("PROD_ADMIN", hours(1))
        .approve(&policy(), &bob(), None, at(mins(2)))
        .unwrap()
        .into_grant();
    let err = g.approve(&policy(), &bob(), None, at(mins(3))).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "you already approved {} at 2025-06-15T15:08:40Z; it needs 1 more approval from others in managers or security",
            g.id()
        )
    );
}

#[test]
fn one_denial_ends_a_request_that_needs_two_approvals() {
    let g = requested("PROD_ADMIN", hours(1))
        .approve(&policy(), &bob(), None, at(mins(2)))
        .unwrap()
        .into_grant();
    let t = g
        .deny(
            &policy(),
            &dave(),
            Comment::new("use a read role").unwrap(),
            at(mins(3)),
        )
        .unwrap();
    let g = t.grant();
    assert_eq!(g.state(), GrantState::Denied);
    assert_eq!(g.ended_by(), Some(&dave()));
    assert_eq!(g.end_comment().unwrap().as_str(), "use a read role");
    assert_eq!(g.approved_at(), None);
    assert!(t.events()[0].kind.ends_grant());
}

#[test]
fn approving_a_request_longer_than_a_since_lowered_maximum_is_refused() {
    let g = requested("ANALYST", hours(8));
    let mut roles = policy().roles().to_vec();
    roles[0].max_duration = dur(hours(4));
    let lowered = Policy::new(roles).unwrap();
    let err = g.approve(&lowered, &bob(), None, at(mins(1))).unwrap_err();
    assert!(matches!(err, GrantError::RequestAboveMax { .. }), "{err}");
}

#[test]
fn an_active_grant_without_pending_extension_has_nothing_to_decide() {
    let g = active_analyst(hours(1));
    let err = g
        .approve(&policy(), &carol(), None, at(mins(6)))
        .unwrap_err();
    assert!(matches!(err, GrantError::NothingToDecide { .. }), "{err}");
}

// ---- time ------------------------------------------------------------------------------------

#[test]
fn a_pending_request_times_out_at_its_deadline() {
    let g = requested("ANALYST", hours(1));
    assert!(g.tick(at(mins(59))).is_empty());
    let t = g.tick(at(hours(3)));
    assert_eq!(t.grant().state(), GrantState::TimedOut);
    assert_eq!(names(&t), ["timed_out"]);
    assert_eq!(
        t.events()[0].at,
        ts(at(hours(1))),
        "at the deadline, not when noticed"
    );
    assert_eq!(t.grant().ended_at(), Some(ts(at(hours(1)))));
}

#[test]
fn approval_after_the_timeout_is_refused_even_before_any_timer_fired() {
    let g = requested("ANALYST", hours(1));
    let err = g
        .approve(&policy(), &bob(), None, at(hours(2)))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "grant {} already ended (timed out at 2025-06-15T16:06:40Z)",
            g.id()
        )
    );
}

#[test]
fn an_active_grant_warns_once_ten_minutes_before_its_end_then_expires() {
    let g = active_analyst(hours(1)); // t0+5m .. t0+65m
    assert_eq!(g.next_deadline(), Some(ts(at(mins(55)))));
    assert!(g.tick(at(mins(54))).is_empty());
    let warned = g.tick(at(mins(56)));
    assert_eq!(names(&warned), ["expiring_soon"]);
    let g = warned.into_grant();
    assert!(g.tick(at(mins(60))).is_empty(), "the warning fires once");
    assert_eq!(g.next_deadline(), Some(ts(at(mins(65)))));
    let t = g.tick(at(mins(65)));
    assert_eq!(names(&t), ["expired"]);
    assert_eq!(t.grant().state(), GrantState::Expired);
    assert_eq!(t.grant().ended_at(), Some(ts(at(mins(65)))));
    assert!(t.grant().next_deadline().is_none());
}

#[test]
fn a_grant_noticed_long_after_its_end_expires_without_a_late_warning() {
    let g = active_analyst(hours(1));
    let t = g.tick(at(hours(5)));
    assert_eq!(names(&t), ["expired"]);
    assert_eq!(t.events()[0].at, ts(at(mins(65))));
}

#[test]
fn usable_means_active_and_before_the_end() {
    let g = active_analyst(hours(1));
    assert!(g.is_usable_at(ts(at(mins(64)))));
    assert!(
        !g.is_usable_at(ts(at(mins(65)))),
        "usable is false at expiry even before the timer fires"
    );
    assert!(!requested("ANALYST", hours(1)).is_usable_at(ts(t0())));
}

#[test]
fn wall_clock_going_backwards_never_moves_a_grant_back() {
    let g = active_analyst(hours(1)); // updated at t0+5m
    let t = g.revoke(&policy(), &bob(), None, t0()).unwrap();
    assert_eq!(t.grant().ended_at(), Some(ts(at(mins(5)))));
    assert!(t.grant().updated_at() >= g.updated_at());
}

// ---- extensions ------------------------------------------------------------------------------

#[test]
fn extension_moves_expiry_only_when_approved() {
    let g = active_analyst(hours(2)); // expires t0+125m
    let asked = g
        .extend(
            &policy(),
            &alice(),
            dur(hours(1)),
            reason("the load is slow"),
            at(mins(60)),
        )
        .unwrap();
    assert_eq!(names(&asked), ["extension_requested"]);
    let g = asked.into_grant();
    assert_eq!(
        g.expires_at(),
        Some(ts(at(mins(125)))),
        "not moved while pending"
    );
    assert!(g.awaits_decision());
    assert_eq!(
        g.granted_secs(),
        2 * 3600,
        "a pending extension is not granted"
    );
    let approved = g.approve(&policy(), &bob(), None, at(mins(70))).unwrap();
    assert_eq!(names(&approved), ["extension_approved", "extended"]);
    let g = approved.grant();
    assert_eq!(g.expires_at(), Some(ts(at(mins(185)))));
    assert!(!g.awaits_decision());
    assert_eq!(g.granted_secs(), 3 * 3600, "the approved hour counts");
    assert_eq!(
        Some(std::time::Duration::from_secs(g.granted_secs())),
        g.total_duration(),
        "what is granted is what runs from approval to expiry"
    );
    assert_eq!(g.extensions()[0].state(), ExtensionState::Approved);
    assert_eq!(
        g.approved_at(),
        Some(ts(at(mins(5)))),
        "the start does not move"
    );
    assert_eq!(g.state(), GrantState::Active);
}

#[test]
fn extension_needs_n_approvals_like_a_request() {
    let g = requested("PROD_ADMIN", hours(1))
        .approve(&policy(), &bob(), None, at(mins(1)))
        .unwrap()
        .into_grant()
        .approve(&policy(), &dave(), None, at(mins(2)))
        .unwrap()
        .into_grant()
        .extend(
            &policy(),
            &alice(),
            dur(mins(30)),
            reason("more"),
            at(mins(30)),
        )
        .unwrap()
        .into_grant();
    let once = g.approve(&policy(), &carol(), None, at(mins(31))).unwrap();
    assert_eq!(names(&once), ["extension_approved"]);
    let twice = once
        .grant()
        .approve(&policy(), &dave(), None, at(mins(32)))
        .unwrap();
    assert_eq!(names(&twice), ["extension_approved", "extended"]);
}

#[test]
fn extension_within_the_auto_cap_is_approved_at_once() {
    let g = request(
        &policy(),
        GrantId::generate(),
        &alice(),
        ask("READER", mins(30), "look"),
        t0(),
    )
    .unwrap()
    .into_grant();
    let t = g
        .extend(
            &policy(),
            &alice(),
            dur(mins(15)),
            reason("a bit more"),
            at(mins(15)),
        )
        .unwrap();
    assert_eq!(
        names(&t),
        ["extension_requested", "extension_approved", "extended"]
    );
    assert_eq!(t.grant().expires_at(), Some(ts(at(mins(45)))));
    // 45m + 30m = 75m in all, above the 1h cap: needs a manager.
    let t = t
        .grant()
        .extend(
            &policy(),
            &alice(),
            dur(mins(30)),
            reason("more"),
            at(mins(25)),
        )
        .unwrap();
    assert_eq!(names(&t), ["extension_requested"]);
}

#[test]
fn extension_beyond_the_maximum_is_refused_with_the_room_left() {
    let g = active_analyst(hours(6));
    let err = g
        .extend(
            &policy(),
            &alice(),
            dur(hours(3)),
            reason("more"),
            at(mins(60)),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "ANALYST allows at most 8h in all; {} already runs 6h, so it can be extended by at most 2h; you asked for 3h",
            g.id()
        )
    );
    let full = active_analyst(hours(8));
    let err = full
        .extend(
            &policy(),
            &alice(),
            dur(mins(1)),
            reason("more"),
            at(mins(60)),
        )
        .unwrap_err();
    assert!(
        err.to_string().contains("it can't be extended further"),
        "{err}"
    );
}

#[test]
fn requester_cannot_approve_own_extension() {
    let g = requested_by(&erin(), "ANALYST", hours(1))
        .approve(&policy(), &bob(), None, at(mins(1)))
        .unwrap()
        .into_grant()
        .extend(
            &policy(),
            &erin(),
            dur(hours(1)),
            reason("more"),
            at(mins(30)),
        )
        .unwrap()
        .into_grant();
    let err = g
        .approve(&policy(), &erin(), None, at(mins(31)))
        .unwrap_err();
    assert!(matches!(err, GrantError::SelfApproval { .. }), "{err}");
}

#[test]
fn only_the_requester_extends_and_only_an_active_grant() {
    let g = active_analyst(hours(1));
    let err = g
        .extend(
            &policy(),
            &bob(),
            dur(hours(1)),
            reason("more"),
            at(mins(30)),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "only the requester (alice@example.com) can extend grant {}",
            g.id()
        )
    );
    let pending = requested("ANALYST", hours(1));
    let err = pending
        .extend(
            &policy(),
            &alice(),
            dur(hours(1)),
            reason("more"),
            at(mins(1)),
        )
        .unwrap_err();
    assert!(matches!(err, GrantError::ExtendPending { .. }), "{err}");
}

#[test]
fn a_role_may_forbid_extensions() {
    let g = request(
        &policy(),
        GrantId::generate(),
        &alice(),
        ask("AUDITOR", mins(30), "audit"),
        t0(),
    )
    .unwrap()
    .into_grant();
    let err = g
        .extend(
            &policy(),
            &alice(),
            dur(mins(10)),
            reason("more"),
            at(mins(1)),
        )
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "AUDITOR does not allow extensions; request a new grant when this one ends"
    );
}

#[test]
fn one_extension_at_a_time() {
    let g = active_analyst(hours(1))
        .extend(
            &policy(),
            &alice(),
            dur(hours(1)),
            reason("more"),
            at(mins(30)),
        )
        .unwrap()
        .into_grant();
    let err = g
        .extend(
            &policy(),
            &alice(),
            dur(hours(1)),
            reason("more"),
            at(mins(31)),
        )
        .unwrap_err();
    assert!(
        matches!(err, GrantError::ExtensionAlreadyPending { .. }),
        "{err}"
    );
}

#[test]
fn a_denied_extension_leaves_the_expiry_alone() {
    let g = active_analyst(hours(1))
        .extend(
            &policy(),
            &alice(),
            dur(hours(1)),
            reason("more"),
            at(mins(30)),
        )
        .unwrap()
        .into_grant();
    let t = g
        .deny(
            &policy(),
            &bob(),
            Comment::new("wrap up").unwrap(),
            at(mins(31)),
        )
        .unwrap();
    assert_eq!(names(&t), ["extension_denied"]);
    assert_eq!(t.grant().state(), GrantState::Active);
    assert_eq!(t.grant().expires_at(), g.expires_at());
    assert_eq!(t.grant().extensions()[0].state(), ExtensionState::Denied);
    assert!(!t.events()[0].kind.ends_grant());
}

#[test]
fn cancelling_on_an_active_grant_withdraws_its_pending_extension_only() {
    let g = active_analyst(hours(1));
    let err = g.cancel(&alice(), at(mins(10))).unwrap_err();
    assert!(
        err.to_string().contains("to give it up early, revoke it"),
        "{err}"
    );
    let g = g
        .extend(
            &policy(),
            &alice(),
            dur(hours(1)),
            reason("more"),
            at(mins(30)),
        )
        .unwrap()
        .into_grant();
    let t = g.cancel(&alice(), at(mins(31))).unwrap();
    assert_eq!(names(&t), ["extension_cancelled"]);
    assert_eq!(t.grant().state(), GrantState::Active);
}

#[test]
fn a_pending_extension_times_out_and_the_grant_keeps_its_expiry() {
    let g = active_analyst(hours(3)) // expires t0+185m
        .extend(
            &policy(),
            &alice(),
            dur(hours(1)),
            reason("more"),
            at(mins(60)),
        )
        .unwrap()
        .into_grant();
    let t = g.tick(at(mins(120)));
    assert_eq!(names(&t), ["extension_timed_out"]);
    assert_eq!(t.grant().expires_at(), Some(ts(at(mins(185)))));
    assert_eq!(t.grant().state(), GrantState::Active);
}

#[test]
fn a_pending_extension_lapses_when_the_grant_expires_first() {
    let g = active_analyst(hours(1)) // expires t0+65m
        .extend(
            &policy(),
            &alice(),
            dur(hours(1)),
            reason("more"),
            at(mins(50)),
        )
        .unwrap()
        .into_grant();
    let t = g.tick(at(mins(70)));
    assert_eq!(names(&t), ["expired"]);
    assert_eq!(t.grant().extensions()[0].state(), ExtensionState::Lapsed);
    let err = t
        .grant()
        .approve(&policy(), &bob(), None, at(mins(71)))
        .unwrap_err();
    assert!(matches!(err, GrantError::AlreadyEnded { .. }));
}

#[test]
fn an_extension_earns_a_fresh_expiry_warning() {
    let g = active_analyst(hours(1)).tick(at(mins(56))).into_grant(); // warned
    let g = g
        .extend(
            &policy(),
            &alice(),
            dur(hours(1)),
            reason("more"),
            at(mins(57)),
        )
        .unwrap()
        .into_grant()
        .approve(&policy(), &bob(), None, at(mins(58)))
        .unwrap()
        .into_grant(); // expires t0+125m
    assert_eq!(g.next_deadline(), Some(ts(at(mins(115)))));
    assert_eq!(names(&g.tick(at(mins(116)))), ["expiring_soon"]);
}

// ---- revocation and ends -------------------------------------------------------------------

#[test]
fn an_approver_revokes_an_active_grant() {
    let g = active_analyst(hours(2));
    let t = g
        .revoke(
            &policy(),
            &carol(),
            Some(Comment::new("incident over").unwrap()),
            at(mins(30)),
        )
        .unwrap();
    assert_eq!(t.grant().state(), GrantState::Revoked);
    assert_eq!(t.grant().ended_at(), Some(ts(at(mins(30)))));
    assert_eq!(t.grant().ended_by(), Some(&carol()));
    assert!(t.events()[0].kind.ends_grant());
}

#[test]
fn the_requester_may_give_up_their_own_grant_early() {
    let g = active_analyst(hours(2));
    let t = g.revoke(&policy(), &alice(), None, at(mins(30))).unwrap();
    assert_eq!(t.grant().state(), GrantState::Revoked);
    assert_eq!(t.grant().ended_by(), Some(&alice()));
}

#[test]
fn an_outsider_cannot_revoke_and_nobody_revokes_a_pending_request() {
    let g = active_analyst(hours(2));
    let err = g
        .revoke(&policy(), &mallory(), None, at(mins(30)))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!(
            "only the requester or an approver for ANALYST (members of managers) can revoke grant {}",
            g.id()
        )
    );
    let pending = requested("ANALYST", hours(1));
    let err = pending
        .revoke(&policy(), &bob(), None, at(mins(1)))
        .unwrap_err();
    assert!(matches!(err, GrantError::RevokePending { .. }), "{err}");
}

#[test]
fn only_the_requester_cancels() {
    let g = requested("ANALYST", hours(1));
    let err = g.cancel(&bob(), at(mins(1))).unwrap_err();
    assert!(
        matches!(
            err,
            GrantError::NotRequester {
                action: "cancel",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn nobody_decides_on_a_grant_that_has_ended() {
    let g = active_analyst(hours(1)).tick(at(hours(2))).into_grant();
    assert_eq!(g.state(), GrantState::Expired);
    let expect = format!(
        "grant {} already ended (expired at 2025-06-15T16:11:40Z)",
        g.id()
    );
    let now = at(hours(3));
    let p = policy();
    let c = || Comment::new("x").unwrap();
    let attempts = [
        g.approve(&p, &bob(), None, now).unwrap_err(),
        g.deny(&p, &bob(), c(), now).unwrap_err(),
        g.cancel(&alice(), now).unwrap_err(),
        g.revoke(&p, &bob(), None, now).unwrap_err(),
        g.extend(&p, &alice(), dur(hours(1)), reason("more"), now)
            .unwrap_err(),
    ];
    for err in attempts {
        assert_eq!(err.to_string(), expect);
    }
    assert!(
        g.tick(at(hours(10))).is_empty(),
        "an ended grant never changes"
    );
}

// ---- policy and serialization --------------------------------------------------------------

#[test]
fn a_policy_refuses_roles_that_could_never_be_approved_or_are_defined_twice() {
    let mut roles = policy().roles().to_vec();
    roles[0].approver_groups.clear();
    assert_eq!(
        Policy::new(roles).unwrap_err().to_string(),
        "role ANALYST has no approver groups and no auto_approve_up_to, so no request for it could ever be approved"
    );
    let mut roles = policy().roles().to_vec();
    roles.push(roles[0].clone());
    assert!(matches!(
        Policy::new(roles),
        Err(PolicyError::DuplicateRole(_))
    ));
    let mut roles = policy().roles().to_vec();
    roles[1].auto_approve_up_to = Some(dur(hours(5)));
    assert!(matches!(
        Policy::new(roles),
        Err(PolicyError::AutoApproveAboveMax { .. })
    ));
}

#[test]
fn grants_and_events_round_trip_through_json() {
    let t = active_analyst(hours(1))
        .extend(
            &policy(),
            &alice(),
            dur(hours(1)),
            reason("more"),
            at(mins(30)),
        )
        .unwrap();
    let json = serde_json::to_string(t.grant()).unwrap();
    let back: Grant = serde_json::from_str(&json).unwrap();
    assert_eq!(&back, t.grant());
    for e in t.events() {
        let json = serde_json::to_string(e).unwrap();
        assert!(json.contains("\"event\":\"extension_requested\""), "{json}");
        let back: GrantEvent = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, e);
    }
}
