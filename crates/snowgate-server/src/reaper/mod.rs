//! The session reaper: ends the Snowflake sessions of grants that ended, which the gateway
//! never saw (`snowgate token`, `snowgate exec`). Optional (`[reaper]`); the design, with
//! Snowflake's documentation cited, is `docs/session-reaper.md`.
//!
//! Every replica with `[reaper]` runs this loop. The transaction that ends an active grant
//! (expiry or revoke) lists it in the `reaps` table; the loop claims one due row at a time
//! (`FOR UPDATE SKIP LOCKED`, so each ended grant is reaped by one replica), and then:
//! 1. logs in as the service user with its key pair ([`snowflake`]);
//! 2. reads `QUERY_HISTORY_BY_USER` for the grant's pinned login name since the grant began,
//!    including queries still running, and sorts the sessions ([`candidates`]);
//! 3. reads `LOGIN_HISTORY_BY_USER` over the grant's life, to log logins that ran no query
//!    (left to the session policy's idle timeout);
//! 4. `SELECT SYSTEM$ABORT_SESSION(<id>)` for each of the grant's sessions, skipping those
//!    already reaped (by an earlier attempt, or with the person's previous grant for the
//!    role); each answer becomes a `session.reaped` audit
//!    record (grant, role, session id, login name, Snowflake's answer);
//! 5. commits the records with the row marked done.
//!
//! On failure the records of what was done are kept, the row is due again after a backoff (5 s
//! doubling to 10 min), and the log says what failed and when it is tried again; the server
//! goes on serving. `/healthz` shows the reaper's state ([`ReaperStatus`]) and the rows waiting.
//! It wakes when a grant ends on any replica (the event hub) and at least every
//! `poll_interval`.

pub mod candidates;
pub mod snowflake;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use snowgate_grants::audit::{AuditActor, AuditKind};
use snowgate_grants::team_api::{ReaperHealth, ReaperState};
use snowgate_grants::{
    AuditEntry, AuditQuery, Clock, GrantFilter, Ledger, PgLedger, ReapClaim, Timestamp,
};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::config::ReaperConfig;
use crate::minting::MintPolicy;
use candidates::{GrantWindow, QueryRow};
use snowflake::{literal, timestamp_ms, SnowflakeAccount, SnowflakeError};

/// The first retry's delay; it doubles up to [`MAX_BACKOFF`].
pub const FIRST_BACKOFF: Duration = Duration::from_secs(5);
/// The longest delay between attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(600);
/// How far before the grant's start the history is read, for clocks that differ.
const CLOCK_MARGIN: Duration = Duration::from_secs(60);
/// How far back Snowflake's INFORMATION_SCHEMA history goes.
const HISTORY_DAYS: u64 = 7;
/// The most rows one history read returns (Snowflake's upper bound for RESULT_LIMIT).
const RESULT_LIMIT: u32 = 10_000;

/// The reaper's state, shared with `/healthz`.
#[derive(Debug, Default)]
pub struct ReaperStatus {
    state: Mutex<Option<bool>>,
}

impl ReaperStatus {
    fn set(&self, working: bool) {
        *self.state.lock().expect("not poisoned") = Some(working);
    }

    /// `starting`, `working` (the last Snowflake call succeeded) or `failing`.
    pub fn state(&self) -> ReaperState {
        match *self.state.lock().expect("not poisoned") {
            None => ReaperState::Starting,
            Some(true) => ReaperState::Working,
            Some(false) => ReaperState::Failing,
        }
    }

    /// The health report, with the counts of the work list.
    pub async fn health(&self, ledger: &PgLedger) -> Option<ReaperHealth> {
        let counts = ledger.reap_counts().await.ok()?;
        Some(ReaperHealth {
            state: self.state(),
            pending: counts.pending,
            failing: counts.failing,
        })
    }
}

/// The reaper of one replica.
pub struct Reaper {
    account: SnowflakeAccount,
    ledger: PgLedger,
    mint: Arc<MintPolicy>,
    clock: Arc<dyn Clock>,
    status: Arc<ReaperStatus>,
    database: Option<String>,
    /// `[reaper] snowflake`: the account it watches, when roles are in several.
    snowflake: Option<String>,
}

/// What one reap did.
#[derive(Debug, Default)]
struct Outcome {
    entries: Vec<AuditEntry>,
    gateway: usize,
    logins: Option<usize>,
}

impl Reaper {
    /// The reaper of `[reaper]`; fails when its key can't be read.
    pub fn new(
        config: &ReaperConfig,
        ledger: PgLedger,
        mint: Arc<MintPolicy>,
        clock: Arc<dyn Clock>,
    ) -> Result<Reaper, SnowflakeError> {
        Ok(Reaper {
            account: SnowflakeAccount::new(config)?,
            ledger,
            mint,
            clock,
            status: Arc::new(ReaperStatus::default()),
            database: config.database.as_ref().map(|d| d.as_str().to_string()),
            snowflake: config.snowflake.as_ref().map(|s| s.as_str().to_string()),
        })
    }

    /// The shared status.
    pub fn status(&self) -> Arc<ReaperStatus> {
        self.status.clone()
    }

    /// Starts the loop; it runs until the handle is aborted.
    pub fn spawn(
        self,
        poll: Duration,
        mut grants: broadcast::Receiver<Arc<snowgate_grants::StoredEvent>>,
    ) -> JoinHandle<()> {
        tracing::info!(
            user = self.account.user(),
            key_fingerprint = self.account.fingerprint(),
            "session reaper started"
        );
        tokio::spawn(async move {
            loop {
                let now = self.clock.now();
                match self.ledger.claim_reap(now).await {
                    Ok(Some(claim)) => {
                        self.reap(claim).await;
                        continue;
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(target: "reaper", error = %e, "claiming an ended grant to reap failed; retrying in a second");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                }
                let cap = now + poll;
                let until = match self.ledger.next_reap().await {
                    Ok(Some(t)) => t.to_system_time().min(cap),
                    _ => cap,
                };
                tokio::select! {
                    _ = self.clock.sleep_until(until) => {}
                    ended = wait_for_an_end(&mut grants) => if !ended {
                        // The hub is gone (shutdown); keep polling.
                        self.clock.sleep_until(until).await;
                    },
                }
            }
        })
    }

    /// Reaps one claimed grant, and commits what happened.
    async fn reap(&self, claim: ReapClaim) {
        let grant = claim.grant.id().to_string();
        let attempt = claim.attempts + 1;
        let mut outcome = Outcome::default();
        let of = claim.grant.account().map(str::to_string);
        if let (Some(of), Some(mine)) = (of, self.snowflake.as_deref()) {
            if !of.eq_ignore_ascii_case(mine) {
                // Another account's sessions are not in this one's history.
                if let Err(e) = claim.finish(&outcome.entries, self.clock.now()).await {
                    tracing::warn!(target: "reaper", %grant, error = %e, "recording a grant of another account as done failed; it tries again");
                    return;
                }
                tracing::info!(target: "reaper", %grant, account = %of, reaper_account = %mine, "the grant is of another Snowflake account than the reaper's; nothing to reap here");
                return;
            }
        }
        let result = self.end_sessions(&claim, &mut outcome).await;
        let now = self.clock.now();
        let reaped = outcome.entries.len();
        match result {
            Ok(()) => {
                self.status.set(true);
                if let Err(e) = claim.finish(&outcome.entries, now).await {
                    tracing::warn!(target: "reaper", %grant, error = %e, "the reaper ended the grant's sessions but could not record it; it tries again");
                    return;
                }
                tracing::info!(
                    target: "reaper",
                    %grant,
                    reaped,
                    gateway_sessions = outcome.gateway,
                    logins = outcome.logins,
                    "reaped the Snowflake sessions of an ended grant"
                );
                if let Some(logins) = outcome.logins {
                    if logins > reaped + outcome.gateway {
                        tracing::warn!(
                            target: "reaper",
                            %grant,
                            logins,
                            sessions_seen = reaped + outcome.gateway,
                            "more logins than sessions with queries while the grant was live; sessions that ran no query are left to the session policy's idle timeout"
                        );
                    }
                }
            }
            Err(e) => {
                let delay = backoff(claim.attempts);
                tracing::warn!(
                    target: "reaper",
                    %grant,
                    attempt,
                    reaped_before_failure = reaped,
                    retry_in_secs = delay.as_secs(),
                    error = %e,
                    "the reaper could not end the Snowflake sessions of an ended grant; it retries"
                );
                if let Err(e) = claim
                    .postpone(&outcome.entries, &e.to_string(), now + delay)
                    .await
                {
                    tracing::warn!(target: "reaper", %grant, error = %e, "recording the reaper's failure failed");
                }
                self.status.set(false);
            }
        }
    }

    async fn end_sessions(
        &self,
        claim: &ReapClaim,
        outcome: &mut Outcome,
    ) -> Result<(), SnowflakeError> {
        let g = &claim.grant;
        let login = crate::minting::login_name(&self.mint, g.requester(), true).map_err(|e| {
            SnowflakeError::Answer {
                what: format!("naming the Snowflake user of grant {}", g.id()),
                message: e.to_string(),
            }
        })?;
        let now = self.clock.now();
        let began = g.approved_at().unwrap_or(g.created_at());
        let oldest = Timestamp::from(now - Duration::from_secs(HISTORY_DAYS * 86_400 - 60));
        let from = began
            .to_system_time()
            .checked_sub(CLOCK_MARGIN)
            .map(Timestamp::from)
            .unwrap_or(began)
            .max(oldest);
        let siblings = self.siblings(claim).await?;
        let later_grant_from = later_grant(&siblings, g);
        let already = self.already_reaped(&siblings, claim, from).await?;

        // The JWT is checked against Snowflake's clock, so it is dated by the system's.
        let mut session = self.account.login(std::time::SystemTime::now()).await?;
        let result = async {
            let qh = self.function("QUERY_HISTORY_BY_USER");
            let sql = format!(
                "SELECT SESSION_ID, ROLE_NAME, QUERY_TAG, START_TIME FROM TABLE({qh}(USER_NAME => {}, END_TIME_RANGE_START => TO_TIMESTAMP_LTZ({}, 3), RESULT_LIMIT => {RESULT_LIMIT}))",
                literal(&login),
                from.unix_millis()
            );
            let what = format!("reading the query history of {login}");
            let rows = session.query(&sql, &what).await?;
            let (sid, role, tag, start) = (
                rows.column("SESSION_ID", &what)?,
                rows.column("ROLE_NAME", &what)?,
                rows.column("QUERY_TAG", &what)?,
                rows.column("START_TIME", &what)?,
            );
            let mut queries = Vec::with_capacity(rows.rows.len());
            for r in &rows.rows {
                let bad = |m: &str| SnowflakeError::Answer {
                    what: what.clone(),
                    message: m.to_string(),
                };
                queries.push(QueryRow {
                    session_id: r[sid]
                        .as_deref()
                        .and_then(|s| s.parse().ok())
                        .ok_or_else(|| bad("a SESSION_ID that is not a number"))?,
                    role: r[role].clone().unwrap_or_default(),
                    query_tag: r[tag].clone().unwrap_or_default(),
                    start: r[start]
                        .as_deref()
                        .and_then(timestamp_ms)
                        .map(Timestamp::from_unix_millis)
                        .ok_or_else(|| bad("a START_TIME that is not a timestamp"))?,
                });
            }
            let found = candidates::sessions(
                &queries,
                &GrantWindow {
                    grant_id: g.id().as_str(),
                    role: g.role().as_str(),
                    began,
                    ended_at: claim.ended_at,
                    later_grant_from,
                },
            );
            outcome.gateway = found.gateway.len();

            let lh = self.function("LOGIN_HISTORY_BY_USER");
            let sql = format!(
                "SELECT IS_SUCCESS, FIRST_AUTHENTICATION_FACTOR FROM TABLE({lh}(USER_NAME => {}, TIME_RANGE_START => TO_TIMESTAMP_LTZ({}, 3), TIME_RANGE_END => TO_TIMESTAMP_LTZ({}, 3), RESULT_LIMIT => {RESULT_LIMIT}))",
                literal(&login),
                from.unix_millis(),
                claim.ended_at.unix_millis().max(from.unix_millis()),
            );
            let what = format!("reading the login history of {login}");
            let logins = session.query(&sql, &what).await?;
            let (ok, factor) = (
                logins.column("IS_SUCCESS", &what)?,
                logins.column("FIRST_AUTHENTICATION_FACTOR", &what)?,
            );
            outcome.logins = Some(
                logins
                    .rows
                    .iter()
                    .filter(|r| r[ok].as_deref() == Some("YES"))
                    .filter(|r| r[factor].as_deref() == Some("OAUTH_ACCESS_TOKEN"))
                    .count(),
            );

            for id in found.reap.iter().filter(|id| !already.contains(id)) {
                let what = format!("ending session {id} of {login}");
                let answer = session
                    .query(&format!("SELECT SYSTEM$ABORT_SESSION({id})"), &what)
                    .await?;
                let text = answer
                    .rows
                    .first()
                    .and_then(|r| r.first().cloned().flatten())
                    .unwrap_or_default();
                outcome.entries.push(AuditEntry {
                    at: Timestamp::from(self.clock.now()),
                    actor: AuditActor::System,
                    kind: AuditKind::SESSION_REAPED,
                    grant_id: Some(g.id().clone()),
                    role: Some(g.role().clone()),
                    details: json!({
                        "session": id.to_string(),
                        "login_name": login,
                        "answer": text,
                    }),
                });
            }
            Ok(())
        }
        .await;
        session.logout().await;
        result
    }

    /// `[<db>.]INFORMATION_SCHEMA.<name>`.
    fn function(&self, name: &str) -> String {
        match &self.database {
            Some(db) => format!("\"{}\".INFORMATION_SCHEMA.{name}", db.replace('"', "\"\"")),
            None => format!("INFORMATION_SCHEMA.{name}"),
        }
    }

    /// The same person's grants for the same role (this one included).
    async fn siblings(
        &self,
        claim: &ReapClaim,
    ) -> Result<Vec<snowgate_grants::Grant>, SnowflakeError> {
        let g = &claim.grant;
        self.ledger
            .grants(&GrantFilter {
                requester: Some(g.requester().subject.clone()),
                roles: Some(vec![g.role().clone()]),
                ..GrantFilter::default()
            })
            .await
            .map_err(|e| SnowflakeError::Answer {
                what: "reading the person's grants for the role".into(),
                message: e.to_string(),
            })
    }

    /// Sessions already reaped: by an earlier attempt for this grant, or for one of the
    /// person's grants for the role that ended since `from` (their sessions show in the same
    /// history, and are over).
    async fn already_reaped(
        &self,
        siblings: &[snowgate_grants::Grant],
        claim: &ReapClaim,
        from: Timestamp,
    ) -> Result<HashSet<u64>, SnowflakeError> {
        let mut out = HashSet::new();
        for o in siblings {
            let this = o.id() == claim.grant.id();
            if this && claim.attempts == 0 {
                continue;
            }
            if !this && o.ended_at().is_none_or(|t| t < from) {
                continue;
            }
            let records = self
                .ledger
                .audit(&AuditQuery {
                    grant: Some(o.id().clone()),
                    ..AuditQuery::default()
                })
                .await
                .map_err(|e| SnowflakeError::Answer {
                    what: "reading what was reaped before".into(),
                    message: e.to_string(),
                })?;
            out.extend(
                records
                    .iter()
                    .filter(|r| r.kind == AuditKind::SESSION_REAPED.as_str())
                    .filter_map(|r| {
                        let d: serde_json::Value = serde_json::from_str(&r.details).ok()?;
                        d.get("session")?.as_str()?.parse::<u64>().ok()
                    }),
            );
        }
        Ok(out)
    }
}

/// When the person's next grant for the role (after `g`) became active, if there is one.
fn later_grant(
    siblings: &[snowgate_grants::Grant],
    g: &snowgate_grants::Grant,
) -> Option<Timestamp> {
    let began = g.approved_at().unwrap_or(g.created_at());
    siblings
        .iter()
        .filter(|o| o.id() != g.id())
        .filter_map(|o| o.approved_at())
        .filter(|t| *t > began)
        .min()
}

/// Waits for an event that ends a grant; `false` when the hub has closed.
async fn wait_for_an_end(
    grants: &mut broadcast::Receiver<Arc<snowgate_grants::StoredEvent>>,
) -> bool {
    loop {
        match grants.recv().await {
            Ok(e) if e.event.kind.ends_grant() => return true,
            Ok(_) => continue,
            Err(broadcast::error::RecvError::Lagged(_)) => return true,
            Err(broadcast::error::RecvError::Closed) => return false,
        }
    }
}

/// The delay after `failed` failed attempts: 5 s doubling, at most 10 min.
pub fn backoff(failed: u32) -> Duration {
    FIRST_BACKOFF
        .checked_mul(1u32 << failed.min(16))
        .unwrap_or(MAX_BACKOFF)
        .min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_ten_minutes() {
        assert_eq!(backoff(0), Duration::from_secs(5));
        assert_eq!(backoff(1), Duration::from_secs(10));
        assert_eq!(backoff(6), Duration::from_secs(320));
        assert_eq!(backoff(7), MAX_BACKOFF);
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
