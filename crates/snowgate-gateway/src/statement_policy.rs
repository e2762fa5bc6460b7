//! A session's own statement rules, judged before a statement is recorded and sent upstream:
//! read-only ([`snowgate_sqlpolicy`], when the role's `statements = "read_only"` or the agent
//! is read-only) and an agent's statements per minute (a sliding minute, shared by all of the
//! agent's sessions).
//!
//! A refused statement never reaches Snowflake. It is recorded as refused
//! ([`GatewayEvent::StatementRefused`], naming the statement's kind and the rule), and the tool
//! gets a Snowflake-shaped error that says which rule refused it, or when to retry. A session
//! without rules (no agent, any statement) never comes here: the caller checks
//! [`SessionPolicy::restricts_statements`] first, so the usual path costs one branch.
//!
//! **The grant's tag stays**, for every session whatever its rules ([`keep_grant_tag`]): the
//! login puts `snowgate:grant=<id>[;agent=<name>]` in front of the tool's own QUERY_TAG, and a
//! statement that would replace or remove it is refused: `ALTER SESSION SET|UNSET QUERY_TAG`,
//! an `EXECUTE IMMEDIATE` or `CALL` whose text mentions QUERY_TAG, and a query-request whose
//! own `parameters` carry a `QUERY_TAG`. Refusing is chosen over rewriting the new tag into
//! `snowgate:grant=…;<tool's tag>` because a rewrite can't reach every way to set it: dynamic
//! SQL built at run time inside `EXECUTE IMMEDIATE` or a procedure is never seen as text,
//! while a refusal of the mention holds for all of them, and it never edits a tool's SQL or
//! body. A tool sets its own tag at login (the connection's `query_tag`), where it is kept
//! after the grant's. A procedure that sets the tag from inside its own body is not seen
//! here; its `CALL` is refused only under read-only.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use crate::authorizer::SessionPolicy;
use crate::events::GatewayEvent;
use crate::handle_table::Session;
use crate::snowflake_error::SnowflakeError;
use crate::state::Shared;

/// The window a rate counts statements in.
const WINDOW: Duration = Duration::from_secs(60);

impl SessionPolicy {
    /// Whether a statement of this session must be judged before it goes upstream.
    pub fn restricts_statements(&self) -> bool {
        self.read_only.is_some() || self.statements_per_minute.is_some()
    }
}

/// The statements each agent sent in the last minute, across its sessions.
#[derive(Default)]
pub(crate) struct AgentRates {
    sent: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl AgentRates {
    /// Counts one statement of `agent` at `now` if fewer than `per_minute` went in the minute
    /// before; else how long until one more may go.
    pub fn take(&self, agent: &str, per_minute: u32, now: Instant) -> Result<(), Duration> {
        let mut sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        let times = sent.entry(agent.to_string()).or_default();
        while times
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
        {
            times.pop_front();
        }
        if times.len() < per_minute as usize {
            times.push_back(now);
            return Ok(());
        }
        let oldest = *times.front().expect("full, so not empty");
        Err(WINDOW.saturating_sub(now.saturating_duration_since(oldest)))
    }
}

/// What the audit record of a statement says about it.
pub(crate) struct StatementFacts<'a> {
    pub sql: &'a str,
    pub sql_sha256: &'a str,
    pub sql_text: Option<&'a str>,
    pub request_id: Option<&'a str>,
}

/// Lets the statement through, or records its refusal and answers with the tool's error.
pub(crate) async fn admit(
    shared: &Shared,
    session: &Session,
    facts: StatementFacts<'_>,
) -> Result<(), SnowflakeError> {
    let Some((kind, rule, error)) = judge(&session.policy, &shared.rates, facts.sql) else {
        return Ok(());
    };
    shared
        .events
        .record(GatewayEvent::StatementRefused {
            session: session.id,
            grant_id: session.grant_id.clone(),
            request_id: facts.request_id.map(str::to_string),
            sql_sha256: facts.sql_sha256.to_string(),
            sql_text: facts.sql_text.map(str::to_string),
            kind,
            rule,
            at: SystemTime::now(),
        })
        .await
        .map_err(|e| SnowflakeError::audit_unavailable(&e.reason))?;
    Err(error)
}

/// The rule a QUERY_TAG refusal names.
const TAG_RULE: &str = "the grant's QUERY_TAG (snowgate:grant=…) can't be replaced or removed";

/// Refuses, and records as refused, a statement or request that would replace or remove the
/// grant's QUERY_TAG (`parameters_tag`: the request's own `parameters` carry one).
pub(crate) async fn keep_grant_tag(
    shared: &Shared,
    session: &Session,
    facts: &StatementFacts<'_>,
    parameters_tag: bool,
) -> Result<(), SnowflakeError> {
    let Some((kind, message)) = tag_change(facts.sql, parameters_tag) else {
        return Ok(());
    };
    shared
        .events
        .record(GatewayEvent::StatementRefused {
            session: session.id,
            grant_id: session.grant_id.clone(),
            request_id: facts.request_id.map(str::to_string),
            sql_sha256: facts.sql_sha256.to_string(),
            sql_text: facts.sql_text.map(str::to_string),
            kind,
            rule: TAG_RULE.to_string(),
            at: SystemTime::now(),
        })
        .await
        .map_err(|e| SnowflakeError::audit_unavailable(&e.reason))?;
    Err(SnowflakeError::statement_refused(message))
}

/// The kind and the tool's message when `sql` (or the request's parameters) would change the
/// session's QUERY_TAG.
fn tag_change(sql: &str, parameters_tag: bool) -> Option<(String, String)> {
    let advice = "Set your own tag at login (the connection's query_tag): Snowgate keeps it after the grant's. Nothing was sent to Snowflake.";
    if parameters_tag {
        return Some((
            snowgate_sqlpolicy::statement_kind(sql),
            format!("Snowgate: the request's parameters set QUERY_TAG, and {TAG_RULE}. {advice}"),
        ));
    }
    let refusal = snowgate_sqlpolicy::sets_query_tag(sql)?;
    Some((
        refusal.kind.clone(),
        format!("Snowgate: {refusal}, and {TAG_RULE}. {advice}"),
    ))
}

/// The statement's kind, the rule that refuses it, and the tool's error; `None` to let it go.
fn judge(
    policy: &SessionPolicy,
    rates: &AgentRates,
    sql: &str,
) -> Option<(String, String, SnowflakeError)> {
    if let Some(rule) = &policy.read_only {
        let allowances = snowgate_sqlpolicy::ReadOnly {
            list_stage: policy.list_stage,
        };
        if let Err(refusal) = snowgate_sqlpolicy::check_read_only_with(sql, allowances) {
            let message = format!(
                "Snowgate: {refusal}. It was refused because {rule}; nothing was sent to Snowflake."
            );
            return Some((
                refusal.kind,
                rule.clone(),
                SnowflakeError::statement_refused(message),
            ));
        }
    }
    if let (Some(agent), Some(per_minute)) = (&policy.agent, policy.statements_per_minute) {
        if let Err(wait) = rates.take(agent, per_minute, Instant::now()) {
            let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
            let rule = format!("agent {agent} may send {per_minute} statements a minute");
            let message = format!(
                "Snowgate: {rule}, and it sent that many in the last minute; retry in {secs} s. Nothing was sent to Snowflake."
            );
            return Some((
                snowgate_sqlpolicy::statement_kind(sql),
                rule,
                SnowflakeError::rate_limited(message),
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(read_only: bool, rate: Option<u32>) -> SessionPolicy {
        SessionPolicy {
            agent: Some("bot".into()),
            read_only: read_only.then(|| "agent bot is read-only".to_string()),
            statements_per_minute: rate,
            list_stage: false,
        }
    }

    #[test]
    fn a_session_without_rules_is_not_judged() {
        assert!(!SessionPolicy::default().restricts_statements());
        assert!(!SessionPolicy {
            agent: Some("bot".into()),
            ..Default::default()
        }
        .restricts_statements());
        assert!(policy(true, None).restricts_statements());
        assert!(policy(false, Some(3)).restricts_statements());
    }

    #[test]
    fn read_only_refuses_dml_naming_the_statement_and_the_rule() {
        let rates = AgentRates::default();
        let (kind, rule, err) = judge(
            &policy(true, None),
            &rates,
            "SELECT 1; INSERT INTO t VALUES (1)",
        )
        .unwrap();
        assert_eq!(kind, "INSERT");
        assert_eq!(rule, "agent bot is read-only");
        assert_eq!(err.code(), crate::codes::STATEMENT_REFUSED);
        assert!(
            err.message().contains("statement 2 (INSERT)"),
            "{}",
            err.message()
        );
        assert!(
            err.message().contains("because agent bot is read-only"),
            "{}",
            err.message()
        );
        assert!(judge(&policy(true, None), &rates, "SELECT 1").is_none());
        assert!(judge(&policy(false, None), &rates, "DROP TABLE t").is_none());
    }

    #[test]
    fn a_tag_change_is_refused_naming_the_statement_and_the_rule() {
        let (kind, msg) = tag_change("select 1; alter session set query_tag = 'x'", false).unwrap();
        assert_eq!(kind, "ALTER SESSION");
        assert!(msg.contains("statement 2 (ALTER SESSION)"), "{msg}");
        assert!(msg.contains("can't be replaced or removed"), "{msg}");
        let (kind, msg) = tag_change("select 1", true).unwrap();
        assert_eq!(kind, "SELECT");
        assert!(msg.contains("parameters set QUERY_TAG"), "{msg}");
        assert!(tag_change("select query_tag from t", false).is_none());
    }

    #[test]
    fn list_stage_follows_the_roles_allowance() {
        let rates = AgentRates::default();
        let (kind, _, err) = judge(&policy(true, None), &rates, "LIST @st").unwrap();
        assert_eq!(kind, "LIST");
        assert!(
            err.message().contains("allow_list_stage"),
            "{}",
            err.message()
        );
        let listing = SessionPolicy {
            list_stage: true,
            ..policy(true, None)
        };
        assert!(judge(&listing, &rates, "LIST @st").is_none());
        assert!(judge(&listing, &rates, "REMOVE @st").is_some());
    }

    #[test]
    fn a_rate_counts_a_sliding_minute_and_says_when_to_retry() {
        let rates = AgentRates::default();
        let t0 = Instant::now();
        assert!(rates.take("bot", 2, t0).is_ok());
        assert!(rates.take("bot", 2, t0 + Duration::from_secs(10)).is_ok());
        let wait = rates
            .take("bot", 2, t0 + Duration::from_secs(20))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(40));
        // Another agent has its own budget.
        assert!(rates.take("other", 2, t0 + Duration::from_secs(20)).is_ok());
        // The first statement leaves the window after a minute.
        assert!(rates.take("bot", 2, t0 + Duration::from_secs(60)).is_ok());
        assert!(rates.take("bot", 2, t0 + Duration::from_secs(61)).is_err());
    }

    #[test]
    fn the_rate_refusal_is_snowflake_shaped_and_names_the_wait() {
        let rates = AgentRates::default();
        let p = policy(false, Some(1));
        assert!(judge(&p, &rates, "SELECT 1").is_none());
        let (kind, rule, err) = judge(&p, &rates, "select 2").unwrap();
        assert_eq!(kind, "SELECT");
        assert!(rule.contains("1 statements a minute"), "{rule}");
        assert_eq!(err.code(), crate::codes::RATE_LIMITED);
        assert!(err.message().contains("retry in"), "{}", err.message());
    }
}
