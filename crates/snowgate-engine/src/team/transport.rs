//! The team client's transport: one call to the server's API, and the bearer it carries.
//!
//! The bearer is, per `[team] auth`, the signed-in user's IdP access token for the server's
//! audience (`access_token`, from `Identity::team_server_token`), or the server's own session
//! token (`id_token`): a fresh ID token (one refresh through the identity's one refresh lock)
//! exchanged at `POST /v1/session`, kept in memory only, and exchanged again when a fifth of
//! its life (at most a minute) is left, or once after the server answers 401. Only the
//! session the server refused is forgotten: calls that fail together after a server restart
//! don't throw away the session the first of them already exchanged again. The server takes
//! each ID token once, and an IdP may issue the very same ID token twice within a second (its
//! `iat` counts seconds and it may set no `jti`, as `oidc-provider` does on a refresh), so an
//! ID token identical to the last one exchanged is refreshed again in the next second.
//!
//! A call sends a [`snowgate_grants::team_api`] body and reads the answer into its type. A
//! call that reaches no server marks it unreachable (for the status) and fails with
//! [`TeamError::Unreachable`]; a refusal keeps the server's code and sentence
//! ([`TeamError::Refused`]); an answer that isn't the type is [`TeamError::BadAnswer`]. Tokens
//! travel only in headers and bodies, never in a URL, a log line or an error.

use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;
use snowgate_grants::team_api::{Empty, ErrorAnswer, SessionAnswer, SessionRequest, WireSecret};
use url::Url;

use super::{ServerCaller, TeamClient, TeamError, TOKEN_MARGIN};
use crate::config::TeamAuth;
use crate::identity::{Identity, IdentityError};

/// The server's session token, when `[team] auth = "id_token"`. Memory only.
#[derive(Clone)]
pub(super) struct ServerSession {
    subject: String,
    token: SecretString,
    renew_at: SystemTime,
}

/// The session token in use, and the SHA-256 of the last ID token exchanged for one (never the
/// token itself), so the same ID token is not sent twice.
#[derive(Default)]
pub(super) struct SessionSlot {
    current: Option<ServerSession>,
    last_exchanged: Option<[u8; 32]>,
}

/// How often an ID token identical to the last one exchanged is refreshed again (each time in
/// the next second) before the exchange gives up.
const SAME_ID_TOKEN_TRIES: u32 = 3;

fn id_token_digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The root cause of a transport error, as a short phrase (never a URL with secrets: the
/// server URL carries none, and tokens travel only in headers).
pub(super) fn cause_of(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        return "no answer in time".into();
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    if text.is_empty() || std::ptr::eq(cause as *const _ as *const u8, e as *const _ as *const u8) {
        if e.is_connect() {
            return "the connection failed".into();
        }
        return e.to_string();
    }
    text
}

/// How long from `now` until the next whole second of the Unix clock (at least a millisecond).
fn until_next_second(now: SystemTime) -> Duration {
    let into = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    Duration::from_nanos(u64::from(1_000_000_000 - into)).max(Duration::from_millis(1))
}

/// When a server session that lives `life` from `now` is exchanged again: a fifth of its life
/// before its end, but never more than [`TOKEN_MARGIN`] before it.
fn session_renew_at(now: SystemTime, life: Duration) -> SystemTime {
    now + (life - (life / 5).min(TOKEN_MARGIN))
}

/// `path` with `query` (a `team_api` query type) as its query string.
pub(super) fn with_query(path: &str, query: &impl Serialize) -> String {
    let q = serde_urlencoded::to_string(query).expect("an API query serializes");
    if q.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{q}")
    }
}

/// The server's refusal as a [`TeamError::Refused`]: its code and sentence from the error body
/// (`text`), or `fallback` when the body is not the API's error.
pub(super) fn refusal(
    status: StatusCode,
    text: &str,
    fallback: impl FnOnce() -> String,
) -> TeamError {
    match serde_json::from_str::<ErrorAnswer>(text) {
        Ok(a) => TeamError::Refused {
            status: status.as_u16(),
            code: a.error.code,
            message: a.error.message,
        },
        Err(_) => TeamError::Refused {
            status: status.as_u16(),
            code: String::new(),
            message: fallback(),
        },
    }
}

impl TeamClient {
    /// The URL of `path_and_query` (`/v1/grants?mine=true`) under the server's base URL.
    pub(super) fn url(&self, path_and_query: &str) -> Url {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let mut url = self.inner.server.clone();
        let base = url.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base}{path}"));
        url.set_query(query.filter(|q| !q.is_empty()));
        url
    }

    /// The bearer token: the signed-in user's access token for the server's audience, or
    /// (`[team] auth = "id_token"`) the server's session token.
    pub(super) async fn bearer(&self) -> Result<SecretString, TeamError> {
        let identity = self
            .inner
            .identity
            .read()
            .unwrap()
            .clone()
            .ok_or(TeamError::SignedOut)?;
        if self.inner.auth == TeamAuth::IdToken {
            return self.session_token(&identity).await;
        }
        match identity.team_server_token().await {
            Ok(t) => Ok(SecretString::from(t.token.expose_secret().to_string())),
            Err(IdentityError::NotSignedIn) => Err(TeamError::SignedOut),
            Err(e) => Err(TeamError::Identity(e.to_string())),
        }
    }

    /// The server's session token for the signed-in person: the cached one until its renewal
    /// time, else a fresh ID token exchanged at `POST /v1/session`.
    async fn session_token(&self, identity: &Identity) -> Result<SecretString, TeamError> {
        let mut slot = self.inner.session.lock().await;
        let Some(subject) = identity.profile().map(|p| p.subject) else {
            slot.current = None;
            return Err(TeamError::SignedOut);
        };
        if let Some(s) = slot.current.as_ref() {
            if s.subject == subject && SystemTime::now() < s.renew_at {
                return Ok(s.token.clone());
            }
        }
        slot.current = None;
        let mut tries = 0;
        let (id_token, digest) = loop {
            let id_token = match identity.fresh_id_token().await {
                Ok(t) => t,
                Err(IdentityError::NotSignedIn) => return Err(TeamError::SignedOut),
                Err(e) => return Err(TeamError::Identity(e.to_string())),
            };
            let digest = id_token_digest(id_token.expose_secret());
            if slot.last_exchanged != Some(digest) {
                break (id_token, digest);
            }
            tries += 1;
            if tries >= SAME_ID_TOKEN_TRIES {
                return Err(TeamError::Identity(
                    "the identity provider keeps answering a refresh with the ID token already exchanged; sign in again".into(),
                ));
            }
            tracing::debug!("the IdP answered the refresh with the ID token already exchanged; refreshing in the next second");
            tokio::time::sleep(until_next_second(SystemTime::now())).await;
        };
        let body = SessionRequest {
            id_token: WireSecret::new(id_token.expose_secret()),
        };
        drop(id_token);
        let resp = self
            .inner
            .http
            .post(self.url("/v1/session"))
            .json(&body)
            .send()
            .await
            .map_err(|e| self.unreachable(cause_of(&e)))?;
        drop(body);
        slot.last_exchanged = Some(digest);
        self.mark_reachable();
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let refused = refusal(status, &text, || {
                format!(
                    "the team server at {} answered POST /v1/session with {status}",
                    self.inner.server_text
                )
            });
            tracing::warn!(%status, error = %refused, "the team server did not exchange the ID token");
            return Err(refused);
        }
        let answer: SessionAnswer = serde_json::from_str(&text)
            .map_err(|e| self.bad_answer(format!("the session answer: {e}")))?;
        let life = Duration::from_secs(answer.expires_in.max(1));
        *self.inner.caller.lock().unwrap() = Some(ServerCaller {
            subject: answer.subject,
            groups: answer.groups,
        });
        let s = ServerSession {
            subject,
            token: SecretString::from(answer.token.into_inner()),
            renew_at: session_renew_at(SystemTime::now(), life),
        };
        tracing::debug!(expires_in = ?life, "exchanged an ID token for a team server session");
        let token = s.token.clone();
        slot.current = Some(s);
        Ok(token)
    }

    /// Forgets the session token `refused` after the server answered it with 401, so the next
    /// call exchanges a fresh ID token. A newer session (exchanged meanwhile by another call
    /// that was refused too) is kept.
    pub(super) async fn forget_session(&self, refused: &SecretString) {
        let mut slot = self.inner.session.lock().await;
        if slot
            .current
            .as_ref()
            .is_some_and(|s| s.token.expose_secret() == refused.expose_secret())
        {
            slot.current = None;
        }
    }

    /// An unauthenticated `GET` of `path` (`/healthz`, `/.well-known/jwks.json`): its JSON
    /// whatever the status, or why it could not be read.
    pub async fn public_json(&self, path: &str) -> Result<Value, String> {
        let resp = self
            .inner
            .http
            .get(self.url(path))
            .send()
            .await
            .map_err(|e| cause_of(&e))?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| cause_of(&e))?;
        serde_json::from_str(&text)
            .map_err(|_| format!("{path} answered {status} with something that is not JSON"))
    }

    /// `GET path`, its answer read as `A`.
    pub(super) async fn get_json<A: DeserializeOwned>(&self, path: &str) -> Result<A, TeamError> {
        self.call(Method::GET, path, None::<&Empty>).await
    }

    /// `POST path` with `body`, its answer read as `A`.
    pub(super) async fn post_json<A: DeserializeOwned>(
        &self,
        path: &str,
        body: &(impl Serialize + Sync),
    ) -> Result<A, TeamError> {
        self.call(Method::POST, path, Some(body)).await
    }

    /// One API call with `body` (if any); its answer read as `A`.
    pub(super) async fn call<A: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + Sync)>,
    ) -> Result<A, TeamError> {
        let text = self
            .call_text(&self.inner.http, method.clone(), path, body)
            .await?;
        serde_json::from_str(&text).map_err(|e| {
            self.bad_answer(format!(
                "{method} {}: {e}",
                path.split_once('?').map_or(path, |(p, _)| p)
            ))
        })
    }

    /// One API call on `http` (the API client with its request timeout, or the one without
    /// for answers that stream long, such as the audit export): the answer's text on success.
    pub(super) async fn call_text(
        &self,
        http: &reqwest::Client,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + Sync)>,
    ) -> Result<String, TeamError> {
        let bearer = self.bearer().await?;
        match self
            .call_once(http, &bearer, method.clone(), path, body)
            .await
        {
            // A session the server no longer takes (expired, or its key rotated away): one
            // more try with a fresh exchange.
            Err(TeamError::Refused { status: 401, .. }) if self.inner.auth == TeamAuth::IdToken => {
                self.forget_session(&bearer).await;
                let bearer = self.bearer().await?;
                self.call_once(http, &bearer, method, path, body).await
            }
            other => other,
        }
    }

    /// One try of a call: the answer's text on success.
    async fn call_once(
        &self,
        http: &reqwest::Client,
        bearer: &SecretString,
        method: Method,
        path: &str,
        body: Option<&(impl Serialize + Sync)>,
    ) -> Result<String, TeamError> {
        let mut req = http
            .request(method.clone(), self.url(path))
            .bearer_auth(bearer.expose_secret());
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| self.unreachable(cause_of(&e)))?;
        self.mark_reachable();
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| self.unreachable(cause_of(&e)))?;
        if status.is_success() {
            return Ok(text);
        }
        let refused = refusal(status, &text, || {
            format!(
                "the team server at {} answered {method} {path} with {status}",
                self.inner.server_text
            )
        });
        if status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::BAD_GATEWAY {
            self.mark_unreachable(&refused.to_string());
        }
        Err(refused)
    }

    /// An answer that could not be read.
    pub(super) fn bad_answer(&self, problem: impl std::fmt::Display) -> TeamError {
        TeamError::BadAnswer {
            server: self.inner.server_text.clone(),
            problem: problem.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use snowgate_grants::team_api::{AuditParams, GrantsQuery};

    #[test]
    fn an_id_token_identical_to_the_last_is_refreshed_in_the_next_second() {
        let second = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(
            until_next_second(second + Duration::from_millis(250)),
            Duration::from_millis(750)
        );
        assert_eq!(until_next_second(second), Duration::from_secs(1));
        assert_eq!(
            until_next_second(second + Duration::from_nanos(999_999_999)),
            Duration::from_millis(1)
        );
        assert_eq!(id_token_digest("a.b.c"), id_token_digest("a.b.c"));
        assert_ne!(id_token_digest("a.b.c"), id_token_digest("a.b.d"));
    }

    #[test]
    fn a_server_session_is_renewed_before_it_ends() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        // 15 minutes: renewed a minute before the end.
        assert_eq!(
            session_renew_at(now, Duration::from_secs(900)),
            now + Duration::from_secs(840)
        );
        // 1 minute: a fifth of it before the end.
        assert_eq!(
            session_renew_at(now, Duration::from_secs(60)),
            now + Duration::from_secs(48)
        );
    }

    #[test]
    fn a_query_leaves_out_what_is_not_given_and_encodes_the_rest() {
        let q = GrantsQuery {
            mine: true,
            state: Some("active".into()),
            limit: Some(1000),
        };
        assert_eq!(
            with_query("/v1/grants", &q),
            "/v1/grants?mine=true&state=active&limit=1000"
        );
        let since = AuditParams {
            since: Some("2026-01-01T00:00:00.000+01:00".into()),
            ..AuditParams::default()
        };
        assert_eq!(
            with_query("/v1/audit", &since),
            "/v1/audit?since=2026-01-01T00%3A00%3A00.000%2B01%3A00"
        );
        assert_eq!(
            with_query("/v1/audit", &AuditParams::default()),
            "/v1/audit"
        );
    }

    #[test]
    fn a_refusal_keeps_the_servers_code_and_sentence_or_says_what_answered() {
        let body =
            r#"{"error":{"code":"forbidden","message":"you cannot approve your own request"}}"#;
        match refusal(StatusCode::FORBIDDEN, body, || "fallback".into()) {
            TeamError::Refused {
                status,
                code,
                message,
            } => {
                assert_eq!((status, code.as_str()), (403, "forbidden"));
                assert_eq!(message, "you cannot approve your own request");
            }
            other => panic!("{other:?}"),
        }
        let e = refusal(StatusCode::BAD_GATEWAY, "<html>", || {
            "the proxy said 502".into()
        });
        assert_eq!(e.to_string(), "the proxy said 502");
    }
}
