//! Which Snowflake sessions belong to a grant that ended: a pure function of the grant's window
//! and the rows `QUERY_HISTORY_BY_USER` returned for its user.
//!
//! A session is the grant's when it ran a query as the grant's role (the only role its token
//! allowed) that started after the grant became active (less [`CLOCK_SKEW`] between the
//! server's clock and Snowflake's) and completed after it or is still running, which is what
//! the reaper asks for (`END_TIME_RANGE_START`, no `END_TIME_RANGE_END`), unless:
//! - **a later grant owns it.** When the same person has a later grant for the same role, a
//!   session whose first query came after that grant began is that grant's.
//! - **the gateway ends it.** Every query carries this grant's gateway QUERY_TAG
//!   (`snowgate:grant=<id>`, alone, before ` | ` and the tool's tag, or as `snowgate_grant` in
//!   a JSON tag) and none started more than [`GATEWAY_GRACE`] after the grant ended. The
//!   gateway ends those itself, within a second. A tag is set by the client, so it is only a
//!   hint: a tagged session still running queries after the grace is reaped anyway.
//!
//! Sessions that opened during the grant but ran no query are invisible here; the session
//! policy's idle timeout ends those (`docs/session-reaper.md`).

use std::collections::BTreeMap;
use std::time::Duration;

use snowgate_grants::Timestamp;

/// How long after a grant's end the gateway has to end its own sessions.
pub const GATEWAY_GRACE: Duration = Duration::from_secs(5);
/// How far Snowflake's clock may be behind the server's.
pub const CLOCK_SKEW: Duration = Duration::from_secs(2);

/// One row of `QUERY_HISTORY_BY_USER`, the columns the reaper reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryRow {
    pub session_id: u64,
    pub role: String,
    pub query_tag: String,
    pub start: Timestamp,
}

/// The grant whose sessions are looked for.
#[derive(Debug, Clone)]
pub struct GrantWindow<'a> {
    pub grant_id: &'a str,
    pub role: &'a str,
    /// When it became active.
    pub began: Timestamp,
    /// When it ended.
    pub ended_at: Timestamp,
    /// When the same person's next grant for the same role became active, if there is one.
    pub later_grant_from: Option<Timestamp>,
}

/// What the rows say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Sessions {
    /// Sessions to abort.
    pub reap: Vec<u64>,
    /// Sessions the gateway opened for this grant and ends itself.
    pub gateway: Vec<u64>,
}

/// Whether `tag` is the gateway's QUERY_TAG for `grant_id`.
pub fn is_gateway_tag(tag: &str, grant_id: &str) -> bool {
    let ours = format!("snowgate:grant={grant_id}");
    if tag == ours || tag.starts_with(&format!("{ours} | ")) {
        return true;
    }
    matches!(
        serde_json::from_str::<serde_json::Value>(tag),
        Ok(serde_json::Value::Object(o))
            if o.get("snowgate_grant").and_then(|v| v.as_str()) == Some(grant_id)
    )
}

/// Sorts the sessions in `rows` into those to abort and those the gateway ends.
pub fn sessions(rows: &[QueryRow], w: &GrantWindow<'_>) -> Sessions {
    let mut by_session: BTreeMap<u64, Vec<&QueryRow>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.role.eq_ignore_ascii_case(w.role)) {
        by_session.entry(r.session_id).or_default().push(r);
    }
    let grace_end = w.ended_at.plus(GATEWAY_GRACE);
    let began = Timestamp::from_unix_millis(w.began.unix_millis() - CLOCK_SKEW.as_millis() as i64);
    let mut out = Sessions::default();
    for (id, queries) in by_session {
        let first = queries.iter().map(|q| q.start).min().expect("non-empty");
        let last = queries.iter().map(|q| q.start).max().expect("non-empty");
        if last < began {
            // Its queries all began before this grant: an earlier grant's session.
            continue;
        }
        if w.later_grant_from.is_some_and(|later| first >= later) {
            continue;
        }
        let tagged = queries
            .iter()
            .all(|q| is_gateway_tag(&q.query_tag, w.grant_id));
        let active_after = queries.iter().any(|q| q.start > grace_end);
        if tagged && !active_after {
            out.gateway.push(id);
        } else {
            out.reap.push(id);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEGAN: i64 = 100_000;
    const END: i64 = 1_000_000;

    fn row(session: u64, role: &str, tag: &str, start_ms: i64) -> QueryRow {
        QueryRow {
            session_id: session,
            role: role.into(),
            query_tag: tag.into(),
            start: Timestamp::from_unix_millis(start_ms),
        }
    }

    fn window(later: Option<i64>) -> GrantWindow<'static> {
        GrantWindow {
            grant_id: "g1",
            role: "ANALYST",
            began: Timestamp::from_unix_millis(BEGAN),
            ended_at: Timestamp::from_unix_millis(END),
            later_grant_from: later.map(Timestamp::from_unix_millis),
        }
    }

    #[test]
    fn an_untagged_session_of_the_role_is_reaped_and_other_roles_are_not() {
        let rows = [
            row(1, "analyst", "", END - 500),
            row(2, "READONLY", "", END - 500),
        ];
        assert_eq!(sessions(&rows, &window(None)).reap, vec![1]);
    }

    #[test]
    fn the_gateways_sessions_for_this_grant_are_left_to_it() {
        let rows = [
            row(1, "ANALYST", "snowgate:grant=g1", END - 500),
            row(2, "ANALYST", "snowgate:grant=g1 | dbt", END - 400),
            row(
                3,
                "ANALYST",
                r#"{"app":"x","snowgate_grant":"g1"}"#,
                END - 300,
            ),
            row(4, "ANALYST", "snowgate:grant=g2", END - 300),
            row(5, "ANALYST", "snowgate:grant=g11", END - 300),
        ];
        let s = sessions(&rows, &window(None));
        assert_eq!(s.gateway, vec![1, 2, 3]);
        assert_eq!(s.reap, vec![4, 5]);
    }

    #[test]
    fn a_tagged_session_still_running_queries_after_the_grace_is_reaped() {
        let grace = GATEWAY_GRACE.as_millis() as i64;
        let rows = [
            row(1, "ANALYST", "snowgate:grant=g1", END - 500),
            row(1, "ANALYST", "snowgate:grant=g1", END + grace + 1),
            row(2, "ANALYST", "snowgate:grant=g1", END + grace - 1),
        ];
        let s = sessions(&rows, &window(None));
        assert_eq!(s.reap, vec![1]);
        assert_eq!(s.gateway, vec![2]);
    }

    #[test]
    fn a_session_that_mixes_tags_is_reaped() {
        let rows = [
            row(1, "ANALYST", "snowgate:grant=g1", END - 500),
            row(1, "ANALYST", "mine", END - 400),
        ];
        assert_eq!(sessions(&rows, &window(None)).reap, vec![1]);
    }

    #[test]
    fn sessions_whose_queries_all_began_before_the_grant_are_an_earlier_grants() {
        let skew = CLOCK_SKEW.as_millis() as i64;
        let rows = [
            row(1, "ANALYST", "", BEGAN - skew - 1),
            row(2, "ANALYST", "", BEGAN - skew + 1),
            row(3, "ANALYST", "", BEGAN - 50_000),
            row(3, "ANALYST", "", BEGAN + 10),
        ];
        assert_eq!(sessions(&rows, &window(None)).reap, vec![2, 3]);
    }

    #[test]
    fn sessions_that_began_under_a_later_grant_are_its_own() {
        let rows = [
            row(1, "ANALYST", "", END - 500),
            row(1, "ANALYST", "", END + 9_000),
            row(2, "ANALYST", "", END + 8_000),
        ];
        assert_eq!(sessions(&rows, &window(Some(END + 7_000))).reap, vec![1]);
        assert_eq!(sessions(&rows, &window(None)).reap, vec![1, 2]);
    }
}
