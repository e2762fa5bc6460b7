//! Which grant events the signed-in person hears about on the desktop, and in what words.
//!
//! [`notice_for`] is pure: it takes one [`GrantEvent`], the grant as it stands after the event
//! (when the caller could load it), the signed-in person and the policy, and returns the
//! notification to show, or `None`. The tray app only delivers what it returns.
//!
//! - As the requester: a request one of the person's agents filed (`snowgate mcp`), an approval
//!   that made the grant active, a denial, a request that timed out, the ten-minute warning before the end, an extension approved or refused, the end by
//!   expiry or by someone else's revocation. What the person did themselves (a request, a
//!   cancellation, giving a grant up) and what the policy approved at once makes no notice.
//! - As an approver: a request or an extension from someone else, for a role whose approver
//!   groups include the person, that still waits for a decision (so an auto-approved one,
//!   decided in the same transaction, makes no notice).
//!
//! - A tool that logged in for a role the person holds no grant for ([`tool_ask_notice`],
//!   raised once per tool and role by [`crate::tool_asks::ToolAsks`]): the window offers a
//!   one-click request, or says which request Snowgate filed while the login waits.
//!
//! When the ten-minute warning fires is the grants service's business: it emits
//! [`GrantEventKind::ExpiringSoon`] once per expiry time, [`EXPIRY_WARNING`] before it, at the
//! exact deadline (and again after an extension moves the end).
//!
//! [`EXPIRY_WARNING`]: snowgate_grants::model::EXPIRY_WARNING

use serde::Serialize;
use snowgate_grants::{Actor, Cause, Grant, GrantDuration, GrantEvent, GrantEventKind, Policy};

/// A desktop notification about one grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notice {
    /// One short line: the role and what happened.
    pub title: String,
    /// What it means and what the person can do.
    pub body: String,
    /// The grant it is about (for a tool's ask, the request filed for it, or empty).
    pub grant: String,
    /// Whether the person is asked to decide (the window's Approvals view), rather than told
    /// about their own grant.
    pub needs_decision: bool,
}

/// The notification `me` should see for `event`, if any. `grant` is the grant as it stands
/// now, when the caller could load it.
pub fn notice_for(
    event: &GrantEvent,
    grant: Option<&Grant>,
    me: &Actor,
    policy: &Policy,
) -> Option<Notice> {
    if event.requester == me.subject {
        own_grant(event, me, policy)
    } else {
        awaiting_me(event, grant, me, policy)
    }
}

/// The notification for a tool's login that found no grant for `ask.role`.
pub fn tool_ask_notice(
    ask: &crate::tool_asks::ToolAsk,
    wait: Option<std::time::Duration>,
) -> Notice {
    let body = match (&ask.request, wait) {
        (Some(id), Some(wait)) => format!(
            "You have no access to {role}, so Snowgate requested it ({id}); the tool's login \
             waits up to {} for the decision.",
            snowgate_config::duration::format(wait),
            role = ask.role
        ),
        _ => format!(
            "You have no access to {role}. Open Snowgate and click Request to ask for it; the \
             tool can connect once it is granted.",
            role = ask.role
        ),
    };
    Notice {
        title: format!("{} asked for {}", ask.tool, ask.role),
        body,
        grant: ask.request.clone().unwrap_or_default(),
        needs_decision: false,
    }
}

/// The agent's name and its own words, for a request an agent filed with `snowgate mcp`
/// (its reason starts with [`crate::broker::REQUESTED_BY_AGENT`]).
fn requested_by_agent(reason: &str) -> Option<(&str, &str)> {
    let rest = reason
        .strip_prefix(crate::broker::REQUESTED_BY_AGENT)?
        .strip_prefix(' ')?;
    let (agent, why) = rest.split_once(": ")?;
    (!agent.is_empty()).then_some((agent, why))
}

/// Notices about the person's own grant.
fn own_grant(event: &GrantEvent, me: &Actor, policy: &Policy) -> Option<Notice> {
    let role = event.role.as_str();
    let by_someone_else = match &event.cause {
        Cause::Person(who) if !who.is(me) => Some(who),
        _ => None,
    };
    let (title, body) = match &event.kind {
        // The person's own request makes no notice, unless one of their agents filed it: then
        // the person hears what the agent asked for and why.
        GrantEventKind::Requested {
            duration, reason, ..
        } => {
            let (agent, why) = requested_by_agent(reason.as_str())?;
            (
                format!("Agent {agent} asked for {role}"),
                format!(
                    "For {}: {why}. It waits for an approver's decision unless the policy \
                     approves it; open Snowgate to see it or cancel it.",
                    span(duration.as_secs())
                ),
            )
        }
        GrantEventKind::Activated {
            approved_at,
            expires_at,
        } => {
            // A policy approval answers the request at once; the person is looking at it.
            if event.cause == Cause::Policy {
                return None;
            }
            (
                format!("{role} access approved"),
                format!(
                    "Your request was approved; the access lasts {}. Your tools can connect now.",
                    span(expires_at.since(*approved_at).as_secs())
                ),
            )
        }
        GrantEventKind::Approved { remaining, .. } if *remaining > 0 => {
            let who = by_someone_else?;
            (
                format!("{role} request approved by {who}"),
                format!(
                    "{} more approval{} needed before the access starts.",
                    remaining,
                    if *remaining == 1 { " is" } else { "s are" }
                ),
            )
        }
        GrantEventKind::Denied { comment } => (
            format!("{role} request denied"),
            match by_someone_else {
                Some(who) => format!("{who} said: {comment}"),
                None => format!("The request was denied: {comment}"),
            },
        ),
        GrantEventKind::TimedOut => (
            format!("{role} request timed out"),
            "Nobody decided on it in time. Request access again if you still need it.".into(),
        ),
        GrantEventKind::ExpiringSoon { expires_at } => {
            let left = span_minutes(expires_at.since(event.at).as_secs());
            let extensible = policy.role(&event.role).is_ok_and(|r| r.extensions_allowed);
            (
                format!("{role} access ends in {left}"),
                if extensible {
                    "Open Snowgate to extend it; your tools are disconnected when it ends.".into()
                } else {
                    "Your tools are disconnected when it ends. Request access again if you need \
                     more time."
                        .into()
                },
            )
        }
        GrantEventKind::Extended { from, to } => (
            format!("{role} access extended"),
            format!(
                "The extension was approved; the access lasts {} longer.",
                span(to.since(*from).as_secs())
            ),
        ),
        GrantEventKind::ExtensionDenied { comment } => (
            format!("{role} extension denied"),
            match by_someone_else {
                Some(who) => format!("{who} said: {comment}. The access ends as planned."),
                None => format!("The extension was denied: {comment}. The access ends as planned."),
            },
        ),
        GrantEventKind::ExtensionTimedOut => (
            format!("{role} extension timed out"),
            "Nobody decided on it in time; the access ends as planned.".into(),
        ),
        GrantEventKind::Expired => (
            format!("{role} access ended"),
            "It expired, and the tools using it were disconnected. Request access again if you \
             need more time."
                .into(),
        ),
        GrantEventKind::Revoked { comment } => {
            let who = by_someone_else?;
            (
                format!("{role} access revoked"),
                match comment {
                    Some(c) => format!("{who} revoked it: {c}. Your tools were disconnected."),
                    None => format!("{who} revoked it. Your tools were disconnected."),
                },
            )
        }
        _ => return None,
    };
    Some(Notice {
        title,
        body,
        grant: event.grant.as_str().to_string(),
        needs_decision: false,
    })
}

/// A request or extension from someone else that `me` may decide on.
fn awaiting_me(
    event: &GrantEvent,
    grant: Option<&Grant>,
    me: &Actor,
    policy: &Policy,
) -> Option<Notice> {
    let role_policy = policy.role(&event.role).ok()?;
    if !role_policy.is_approver(me) || grant.is_some_and(|g| !g.awaits_decision()) {
        return None;
    }
    let who = match (grant, &event.cause) {
        (Some(g), _) => g.requester().to_string(),
        (None, Cause::Person(p)) => p.to_string(),
        (None, _) => event.requester.as_str().to_string(),
    };
    let role = event.role.as_str();
    let (title, asks) = match &event.kind {
        GrantEventKind::Requested {
            duration, reason, ..
        } => {
            if role_policy.auto_approves(duration.as_duration()) {
                return None;
            }
            (
                format!("{role} request waits for your decision"),
                format!("{who} asks for {duration}: {reason}."),
            )
        }
        GrantEventKind::ExtensionRequested { extra, reason } => (
            format!("{role} extension waits for your decision"),
            format!("{who} asks for {extra} more: {reason}."),
        ),
        _ => return None,
    };
    Some(Notice {
        title,
        body: format!("{asks} Open Snowgate to approve or deny."),
        grant: event.grant.as_str().to_string(),
        needs_decision: true,
    })
}

/// A length as the grammar writes it (`2h`, `1h30m`).
fn span(secs: u64) -> String {
    GrantDuration::from_secs(secs)
        .map(|d| d.to_string())
        .unwrap_or_else(|_| format!("{secs}s"))
}

/// A short wait in whole minutes, rounded up: `10 minutes`, `1 minute`.
fn span_minutes(secs: u64) -> String {
    let minutes = secs.div_ceil(60).max(1);
    if minutes == 1 {
        "1 minute".into()
    } else {
        format!("{minutes} minutes")
    }
}

#[cfg(test)]
mod tests {
    use std::num::NonZeroU32;
    use std::time::Duration;

    use snowgate_grants::{Comment, GrantId, Reason, RoleName, RolePolicy, Subject, Timestamp};

    use super::*;

    fn actor(subject: &str, groups: &[&str]) -> Actor {
        Actor::new(
            Subject::new(subject).unwrap(),
            Some(format!("{subject}@example.com")),
            groups.iter().map(|g| g.to_string()).collect(),
        )
    }

    fn policy(extensions_allowed: bool) -> Policy {
        Policy::new(vec![RolePolicy {
            name: RoleName::new("ANALYST").unwrap(),
            account: None,
            description: String::new(),
            max_duration: GrantDuration::from_secs(8 * 3600).unwrap(),
            approver_groups: vec!["managers".into()],
            approvals_required: NonZeroU32::new(1).unwrap(),
            auto_approve_up_to: Some(GrantDuration::from_secs(3600).unwrap()),
            pending_timeout: GrantDuration::from_secs(86_400).unwrap(),
            extensions_allowed,
            statements: Default::default(),
            allow_list_stage: false,
        }])
        .unwrap()
    }

    fn at(secs: u64) -> Timestamp {
        Timestamp::from(std::time::UNIX_EPOCH + Duration::from_secs(1_700_000_000 + secs))
    }

    fn event(requester: &str, cause: Cause, kind: GrantEventKind) -> GrantEvent {
        GrantEvent {
            grant: GrantId::generate(),
            role: RoleName::new("ANALYST").unwrap(),
            requester: Subject::new(requester).unwrap(),
            at: at(0),
            cause,
            kind,
        }
    }

    fn alice() -> Actor {
        actor("alice", &["analysts"])
    }

    fn bob() -> Actor {
        actor("bob", &["managers"])
    }

    #[test]
    fn an_approval_that_starts_the_access_is_announced_to_the_requester() {
        let e = event(
            "alice",
            Cause::Person(bob()),
            GrantEventKind::Activated {
                approved_at: at(0),
                expires_at: at(7200),
            },
        );
        let n = notice_for(&e, None, &alice(), &policy(true)).unwrap();
        assert_eq!(n.title, "ANALYST access approved");
        assert!(n.body.contains("lasts 2h"), "{}", n.body);
        assert!(!n.needs_decision);
        assert_eq!(n.grant, e.grant.as_str());
    }

    #[test]
    fn an_auto_approval_makes_no_notice() {
        let e = event(
            "alice",
            Cause::Policy,
            GrantEventKind::Activated {
                approved_at: at(0),
                expires_at: at(1800),
            },
        );
        assert_eq!(notice_for(&e, None, &alice(), &policy(true)), None);
    }

    #[test]
    fn a_denial_carries_the_approvers_comment() {
        let e = event(
            "alice",
            Cause::Person(bob()),
            GrantEventKind::Denied {
                comment: Comment::new("use READONLY").unwrap(),
            },
        );
        let n = notice_for(&e, None, &alice(), &policy(true)).unwrap();
        assert_eq!(n.title, "ANALYST request denied");
        assert_eq!(n.body, "bob@example.com said: use READONLY");
    }

    #[test]
    fn the_expiry_warning_says_how_to_extend_when_the_role_allows_it() {
        let e = event(
            "alice",
            Cause::Clock,
            GrantEventKind::ExpiringSoon {
                expires_at: at(600),
            },
        );
        let n = notice_for(&e, None, &alice(), &policy(true)).unwrap();
        assert_eq!(n.title, "ANALYST access ends in 10 minutes");
        assert!(
            n.body.starts_with("Open Snowgate to extend it"),
            "{}",
            n.body
        );
        let n = notice_for(&e, None, &alice(), &policy(false)).unwrap();
        assert!(!n.body.contains("extend"), "{}", n.body);
        assert!(n.body.contains("Request access again"), "{}", n.body);
    }

    #[test]
    fn expiry_and_someone_elses_revocation_are_announced() {
        let expired = event("alice", Cause::Clock, GrantEventKind::Expired);
        let n = notice_for(&expired, None, &alice(), &policy(true)).unwrap();
        assert_eq!(n.title, "ANALYST access ended");
        assert!(n.body.contains("disconnected"));

        let revoked = event(
            "alice",
            Cause::Person(bob()),
            GrantEventKind::Revoked {
                comment: Some(Comment::new("project ended").unwrap()),
            },
        );
        let n = notice_for(&revoked, None, &alice(), &policy(true)).unwrap();
        assert_eq!(n.title, "ANALYST access revoked");
        assert!(n
            .body
            .starts_with("bob@example.com revoked it: project ended"));
    }

    #[test]
    fn what_the_person_did_themselves_makes_no_notice() {
        let me = alice();
        let gave_up = event(
            "alice",
            Cause::Person(me.clone()),
            GrantEventKind::Revoked { comment: None },
        );
        assert_eq!(notice_for(&gave_up, None, &me, &policy(true)), None);
        let cancelled = event(
            "alice",
            Cause::Person(me.clone()),
            GrantEventKind::Cancelled,
        );
        assert_eq!(notice_for(&cancelled, None, &me, &policy(true)), None);
        let requested = event(
            "alice",
            Cause::Person(me.clone()),
            GrantEventKind::Requested {
                duration: GrantDuration::from_secs(7200).unwrap(),
                reason: Reason::new("Q3").unwrap(),
                ticket: None,
            },
        );
        assert_eq!(notice_for(&requested, None, &me, &policy(true)), None);
    }

    #[test]
    fn a_request_one_of_my_agents_filed_tells_me_what_it_asked_for_and_why() {
        let me = alice();
        let e = event(
            "alice",
            Cause::Person(me.clone()),
            GrantEventKind::Requested {
                duration: GrantDuration::from_secs(3600).unwrap(),
                reason: Reason::new("requested by agent claude: count the orders").unwrap(),
                ticket: None,
            },
        );
        let n = notice_for(&e, None, &me, &policy(true)).unwrap();
        assert_eq!(n.title, "Agent claude asked for ANALYST");
        assert!(
            n.body.starts_with("For 1h: count the orders."),
            "{}",
            n.body
        );
        assert!(!n.needs_decision);
        // Words that only look like it are the person's own.
        for reason in [
            "requested by agent",
            "requested by agentclaude: x",
            "requested by agent : x",
        ] {
            let e = event(
                "alice",
                Cause::Person(me.clone()),
                GrantEventKind::Requested {
                    duration: GrantDuration::from_secs(3600).unwrap(),
                    reason: Reason::new(reason).unwrap(),
                    ticket: None,
                },
            );
            assert_eq!(notice_for(&e, None, &me, &policy(true)), None, "{reason}");
        }
    }

    #[test]
    fn a_request_from_someone_else_waits_for_an_approvers_decision() {
        let e = event(
            "alice",
            Cause::Person(alice()),
            GrantEventKind::Requested {
                duration: GrantDuration::from_secs(7200).unwrap(),
                reason: Reason::new("Q3 revenue").unwrap(),
                ticket: None,
            },
        );
        let n = notice_for(&e, None, &bob(), &policy(true)).unwrap();
        assert_eq!(n.title, "ANALYST request waits for your decision");
        assert_eq!(
            n.body,
            "alice@example.com asks for 2h: Q3 revenue. Open Snowgate to approve or deny."
        );
        assert!(n.needs_decision);
        // Someone outside the approver groups is not asked.
        let mallory = actor("mallory", &[]);
        assert_eq!(notice_for(&e, None, &mallory, &policy(true)), None);
    }

    #[test]
    fn an_auto_approved_request_from_someone_else_asks_nobody() {
        let e = event(
            "alice",
            Cause::Person(alice()),
            GrantEventKind::Requested {
                duration: GrantDuration::from_secs(1800).unwrap(),
                reason: Reason::new("quick look").unwrap(),
                ticket: None,
            },
        );
        assert_eq!(notice_for(&e, None, &bob(), &policy(true)), None);
    }

    #[test]
    fn an_extension_request_asks_the_approver() {
        let e = event(
            "alice",
            Cause::Person(alice()),
            GrantEventKind::ExtensionRequested {
                extra: GrantDuration::from_secs(3600).unwrap(),
                reason: Reason::new("not done").unwrap(),
            },
        );
        let n = notice_for(&e, None, &bob(), &policy(true)).unwrap();
        assert_eq!(n.title, "ANALYST extension waits for your decision");
        assert!(n
            .body
            .starts_with("alice@example.com asks for 1h more: not done."));
    }

    #[test]
    fn minutes_round_up_and_agree_in_number() {
        assert_eq!(span_minutes(600), "10 minutes");
        assert_eq!(span_minutes(61), "2 minutes");
        assert_eq!(span_minutes(5), "1 minute");
        assert_eq!(span(5400), "1h30m");
    }

    #[test]
    fn a_tools_ask_names_the_tool_and_the_role_and_what_happens_next() {
        let mut ask = crate::tool_asks::ToolAsk {
            tool: "PythonConnector (python)".into(),
            role: "ANALYST".into(),
            first_at: 1,
            last_at: 1,
            logins: 1,
            duration_secs: 3600,
            notice_raised: true,
            request: None,
        };
        let n = tool_ask_notice(&ask, None);
        assert_eq!(n.title, "PythonConnector (python) asked for ANALYST");
        assert!(n.body.contains("click Request"), "{}", n.body);
        assert_eq!(n.grant, "");
        ask.request = Some("g_abc".into());
        let n = tool_ask_notice(&ask, Some(std::time::Duration::from_secs(60)));
        assert!(
            n.body.contains("requested it (g_abc)") && n.body.contains("up to 1m"),
            "{}",
            n.body
        );
        assert_eq!(n.grant, "g_abc");
    }
}
