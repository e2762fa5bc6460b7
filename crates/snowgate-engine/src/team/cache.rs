//! What the team client keeps from the server's answers and events, so the desktop goes on
//! while the server can't be reached:
//! - the grants seen (newest version of each), and those known to have ended since (by an
//!   event, an answer, or the local deadline): while the server is unreachable, [`usable`]
//!   answers from them, so the gateway still authorizes logins for grants that are active and
//!   not past their `expires_at`;
//! - the Snowflake tokens minted per grant, reused until a minute (or a fifth of their life)
//!   before their `exp`, and while the server is unreachable until their `exp`; dropped when
//!   the grant ends.
//!
//! [`usable`]: TeamClient::usable

use std::time::{Duration, SystemTime};

use secrecy::SecretString;
use snowgate_grants::team_api::{Empty, GrantList, GrantsQuery, SnowflakeToken};
use snowgate_grants::{
    Grant, GrantEvent, GrantEventKind, GrantId, GrantState, RoleName, Subject, Timestamp,
};

use super::transport::with_query;
use super::{TeamClient, TeamError, TOKEN_MARGIN};

/// A Snowflake token minted by the server for one grant.
#[derive(Clone)]
pub(super) struct Minted {
    token: SecretString,
    expires_at: SystemTime,
    renew_at: SystemTime,
}

impl TeamClient {
    /// The grants `who` may use now, optionally for one role: from the server, or while it
    /// can't be reached, from the grants already seen (active and not past `expires_at`).
    pub async fn usable(
        &self,
        who: &Subject,
        role: Option<&RoleName>,
    ) -> Result<Vec<Grant>, TeamError> {
        let query = GrantsQuery {
            mine: true,
            state: Some(GrantState::Active.as_str().to_string()),
            limit: Some(1000),
        };
        let fresh = match self
            .get_json::<GrantList>(&with_query("/v1/grants", &query))
            .await
        {
            Ok(answer) => Some(self.seen(answer.grants)),
            Err(e) if e.is_unreachable() => None,
            Err(e) => return Err(e),
        };
        let now = Timestamp::from(SystemTime::now());
        let ended = self.inner.ended.lock().unwrap().clone();
        let candidates: Vec<Grant> = match fresh {
            Some(list) => list,
            None => self.inner.known.lock().unwrap().values().cloned().collect(),
        };
        let mut usable: Vec<Grant> = candidates
            .into_iter()
            .filter(|g| &g.requester().subject == who)
            .filter(|g| g.is_usable_at(now) && !ended.contains(g.id()))
            .filter(|g| role.is_none_or(|r| g.role() == r))
            .collect();
        usable.sort_by_key(|g| std::cmp::Reverse(g.created_at()));
        Ok(usable)
    }

    /// A grant as last seen, without a call.
    pub fn known_grant(&self, id: &GrantId) -> Option<Grant> {
        self.inner.known.lock().unwrap().get(id).cloned()
    }

    /// The caller's grants as last seen (for refusal sentences while the server is away).
    pub fn known_of(&self, who: &Subject) -> Vec<Grant> {
        let known = self.inner.known.lock().unwrap();
        known
            .values()
            .filter(|g| &g.requester().subject == who)
            .cloned()
            .collect()
    }

    /// A Snowflake token for `grant` minted by the server, reused until shortly before its
    /// `exp`; while the server can't be reached, a minted token is used until its `exp`.
    /// Returns the token and its expiry.
    pub async fn snowflake_token(
        &self,
        grant: &GrantId,
    ) -> Result<(SecretString, SystemTime), TeamError> {
        let now = SystemTime::now();
        if let Some(m) = self.cached_token(grant, now, false) {
            return Ok((m.token, m.expires_at));
        }
        let _one = self.inner.mint_lock.lock().await;
        if let Some(m) = self.cached_token(grant, SystemTime::now(), false) {
            return Ok((m.token, m.expires_at));
        }
        let answer: SnowflakeToken = match self
            .post_json(&format!("/v1/grants/{grant}/snowflake-token"), &Empty {})
            .await
        {
            Ok(a) => a,
            Err(e) if e.is_unreachable() => {
                return match self.cached_token(grant, SystemTime::now(), true) {
                    Some(m) => {
                        tracing::debug!(grant = %grant, "the team server is unreachable; using the token minted before");
                        Ok((m.token, m.expires_at))
                    }
                    None => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        let expires_at = answer.expires_at.to_system_time();
        let minted_at = SystemTime::now();
        let life = expires_at.duration_since(minted_at).unwrap_or_default();
        let renew_at = expires_at - TOKEN_MARGIN.min(life / 5);
        let m = Minted {
            token: SecretString::from(answer.token.into_inner()),
            expires_at,
            renew_at,
        };
        self.inner
            .tokens
            .lock()
            .unwrap()
            .insert(grant.clone(), m.clone());
        Ok((m.token, m.expires_at))
    }

    /// The cached token for `grant`: fresh (before its renewal time), or with `unexpired`, any
    /// that has not expired yet (with two seconds to spare for the login).
    fn cached_token(&self, grant: &GrantId, now: SystemTime, unexpired: bool) -> Option<Minted> {
        let tokens = self.inner.tokens.lock().unwrap();
        let m = tokens.get(grant)?;
        let ok = if unexpired {
            now + Duration::from_secs(2) < m.expires_at
        } else {
            now < m.renew_at
        };
        ok.then(|| m.clone())
    }

    /// Notes an event from the stream; returns whether to pass it on (a grant's end that the
    /// local deadline already announced is not announced twice).
    pub(super) fn note_event(&self, event: &GrantEvent) -> bool {
        if event.kind.ends_grant() {
            self.inner.tokens.lock().unwrap().remove(&event.grant);
            let first = self.inner.ended.lock().unwrap().insert(event.grant.clone());
            self.inner.changed.notify_one();
            return first || !matches!(event.kind, GrantEventKind::Expired);
        }
        true
    }

    /// Keeps `grants` as seen, and gives them back.
    pub(super) fn seen(&self, grants: Vec<Grant>) -> Vec<Grant> {
        self.remember(&grants);
        grants
    }

    /// Keeps the newest version of each grant seen.
    pub(super) fn remember(&self, grants: &[Grant]) {
        let mut known = self.inner.known.lock().unwrap();
        let mut ended = self.inner.ended.lock().unwrap();
        for g in grants {
            let newer = known
                .get(g.id())
                .is_none_or(|old| old.version() <= g.version());
            if newer {
                if g.state().is_ended() {
                    self.inner.tokens.lock().unwrap().remove(g.id());
                } else if g.is_usable_at(Timestamp::from(SystemTime::now())) {
                    // Active again on the server's word (an extension, say).
                    ended.remove(g.id());
                }
                known.insert(g.id().clone(), g.clone());
            }
        }
        drop((known, ended));
        self.inner.changed.notify_one();
    }
}
