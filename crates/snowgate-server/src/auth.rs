//! Who is calling. Every `/v1` request carries `Authorization: Bearer <token>`, where the token
//! is, per `[identity] caller_auth`:
//!
//! - `access_token`: an IdP access token (a JWT) for the server's API audience;
//! - `id_token`: a session token this server signed ([`crate::session`]) at `POST /v1/session`
//!   in exchange for a fresh ID token;
//! - `both`: either.
//!
//! [`IdpVerifier`] checks IdP JWTs against the IdP's published keys (the JWKS named by
//! discovery, cached; fetched again when a token names a key id it does not know, at most once
//! per [`REFETCH_AFTER`], and when the cache is older than [`MAX_KEY_AGE`]), then `iss`, `aud`,
//! `exp` and `nbf` with the configured leeway. An ID token offered for exchange must in addition
//! be for the desktop's client (`aud`, and `azp` when present or when `aud` lists several),
//! be no older (by `iat`) than `[identity] id_token_max_age`, and not look like an access token
//! (`typ: at+jwt`, or a `scope`/`scp` claim). Its one-time use is recorded by the handler.
//!
//! [`Authenticator`] turns a bearer token into a [`Caller`]: subject, email and groups (the
//! token's claim combined with `[[groups]]` by [`crate::groups`]); every decision about what
//! they may do is made from that by the grants policy. A token of the kind this server does
//! not take is refused with a sentence naming the setting on both sides.
//!
//! Refusals are 401 with a sentence saying what to do. Tokens are held as `SecretString` and
//! never appear in an error, a log line or a panic.
//!
//! Why one long file: both caller modes (IdP access tokens and session tokens) and their
//! mismatch sentences are one decision per request, and the rules of each must be read
//! against the other's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::Validation;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use snowgate_grants::{Actor, Clock, Subject};
use tokio::sync::{Mutex, RwLock};

use crate::config::CallerAuth;
use crate::error::ApiError;
use crate::groups::{email_verified, GroupDirectory, Member};
use crate::jwks::{bearer_token, keys_from_jwks, IdpKey, ACCEPTED_ALGS};
use crate::session::{SessionKeys, SessionRefusal};
use crate::state::AppState;

/// A key id the cache does not know triggers a new fetch only if the last one is older.
pub const REFETCH_AFTER: Duration = Duration::from_secs(10);
/// Keys are fetched again when a token arrives and the cache is older than this.
pub const MAX_KEY_AGE: Duration = Duration::from_secs(3600);

/// A caller whose bearer token verified.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who they are, with their groups as the server resolved them.
    pub actor: Actor,
    /// How they authenticated: an IdP access token or a session token.
    pub via: snowgate_grants::team_api::CallerVia,
    /// Whether the IdP marked `actor.email` verified (`email_verified`).
    pub email_verified: bool,
    /// When the bearer token expires (its `exp`). What stays open on it, the event stream,
    /// ends then.
    pub expires_at: std::time::SystemTime,
}

fn unix_time(secs: i64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + Duration::from_secs(secs.max(0) as u64)
}

/// The claims of a verified IdP token.
pub type Claims = serde_json::Map<String, serde_json::Value>;

/// Verifies IdP JWTs (access tokens and ID tokens). Cheap to share behind an `Arc`.
pub struct IdpVerifier {
    issuer: String,
    audience: String,
    groups_claim: String,
    leeway: Duration,
    http: reqwest::Client,
    keys: RwLock<KeyCache>,
    fetching: Mutex<()>,
}

impl std::fmt::Debug for IdpVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdpVerifier")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct KeyCache {
    keys: HashMap<String, IdpKey>,
    fetched: Option<Instant>,
}

#[derive(Deserialize)]
struct Discovery {
    issuer: String,
    jwks_uri: String,
}

#[derive(Deserialize)]
struct StandardClaims {
    sub: String,
    #[serde(default)]
    email: Option<String>,
}

impl IdpVerifier {
    /// A verifier for tokens from `issuer`; access tokens must be for `audience` (empty when
    /// none are accepted). `http` must trust the IdP's TLS
    /// certificate. Nothing is fetched until the first token arrives.
    pub fn new(
        issuer: &str,
        audience: &str,
        groups_claim: &str,
        leeway: Duration,
        http: reqwest::Client,
    ) -> IdpVerifier {
        IdpVerifier {
            issuer: issuer.trim_end_matches('/').to_string(),
            audience: audience.to_string(),
            groups_claim: groups_claim.to_string(),
            leeway,
            http,
            keys: RwLock::new(KeyCache::default()),
            fetching: Mutex::new(()),
        }
    }

    /// The issuer, without a trailing slash.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// Checks an access token for the API audience and returns its claims.
    pub async fn verify(&self, token: &SecretString) -> Result<Claims, ApiError> {
        let token = token.expose_secret();
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            ApiError::unauthenticated(format!(
                "the bearer token is not a JWT; send the access token the identity provider issues for audience {}",
                self.audience
            ))
        })?;
        self.decode(token, header, &self.audience, "access token")
            .await
    }

    /// Checks an ID token offered for exchange: signature, `iss`, `exp`, `aud` = `client_id`
    /// (and `azp`), issued no more than `max_age` before `now`, and not an access token.
    pub async fn verify_id_token(
        &self,
        token: &SecretString,
        client_id: &str,
        max_age: Duration,
        now: std::time::SystemTime,
    ) -> Result<Claims, ApiError> {
        let token = token.expose_secret();
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            ApiError::unauthenticated(
                "the id_token is not a JWT; send the ID token the identity provider issued to the desktop",
            )
        })?;
        let access_typ = header.typ.as_deref().is_some_and(|t| {
            let t = t.to_ascii_lowercase();
            t == "at+jwt" || t == "application/at+jwt"
        });
        if access_typ {
            return Err(ApiError::unauthenticated(
                "the id_token is an access token (typ at+jwt), not an ID token; send the ID token from the sign-in",
            ));
        }
        let claims = self.decode(token, header, client_id, "ID token").await?;
        if claims.contains_key("scope")
            || claims.contains_key("scp")
            || claims.get("token_use").and_then(|v| v.as_str()) == Some("access")
        {
            return Err(ApiError::unauthenticated(
                "the id_token carries scopes, so it is an access token, not an ID token; send the ID token from the sign-in",
            ));
        }
        let several = matches!(claims.get("aud"), Some(serde_json::Value::Array(a)) if a.len() > 1);
        match claims.get("azp").and_then(|v| v.as_str()) {
            Some(azp) if azp != client_id => {
                return Err(ApiError::unauthenticated(format!(
                    "the ID token was issued to another client (azp); sign in with client {client_id}"
                )))
            }
            None if several => {
                return Err(ApiError::unauthenticated(
                    "the ID token names several audiences but no authorized party (azp); it can't be exchanged",
                ))
            }
            _ => {}
        }
        let iat = claims.get("iat").and_then(|v| v.as_i64()).ok_or_else(|| {
            ApiError::unauthenticated("the ID token has no `iat`; it can't be exchanged")
        })?;
        let now = now
            .duration_since(std::time::SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs() as i64)
            .unwrap_or(0);
        let leeway = self.leeway.as_secs() as i64;
        if iat > now + leeway {
            return Err(ApiError::unauthenticated(
                "the ID token was issued in the future (iat); check this machine's clock",
            ));
        }
        if now - iat > max_age.as_secs() as i64 {
            return Err(ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "id_token_too_old",
                format!(
                    "the ID token was issued {} s ago; only ID tokens issued in the last {} s are exchanged. Refresh the sign-in for a new one and retry",
                    now - iat,
                    max_age.as_secs()
                ),
            ));
        }
        Ok(claims)
    }

    async fn decode(
        &self,
        token: &str,
        header: jsonwebtoken::Header,
        audience: &str,
        what: &str,
    ) -> Result<Claims, ApiError> {
        if !ACCEPTED_ALGS.contains(&header.alg) {
            return Err(ApiError::unauthenticated(format!(
                "the {what} is signed with {:?}, which this server does not accept; send a token from {}",
                header.alg, self.issuer
            )));
        }
        let kid = header.kid.ok_or_else(|| {
            ApiError::unauthenticated(format!(
                "the {what} names no signing key (kid); send a token from {}",
                self.issuer
            ))
        })?;
        let key = self.key(&kid).await?.ok_or_else(|| {
            ApiError::unauthenticated(format!(
                "the {what} is signed by a key {} does not publish; sign in again to get a token from it",
                self.issuer
            ))
        })?;
        if key.alg.is_some_and(|a| a != header.alg) {
            return Err(ApiError::unauthenticated(format!(
                "the {what}'s algorithm does not match its signing key; sign in again"
            )));
        }
        let mut v = Validation::new(header.alg);
        let with_slash = format!("{}/", self.issuer);
        v.set_issuer(&[self.issuer.as_str(), with_slash.as_str()]);
        v.set_audience(&[audience]);
        v.leeway = self.leeway.as_secs();
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Claims>(token, &key.key, &v)
            .map_err(|e| self.refusal(e.kind(), audience, what))?;
        Ok(data.claims)
    }

    /// The caller an IdP token's verified claims name, with `groups` resolved.
    fn actor(&self, claims: &Claims, groups: &GroupDirectory) -> Result<Actor, ApiError> {
        let std: StandardClaims = serde_json::from_value(serde_json::Value::Object(claims.clone()))
            .map_err(|_| {
                ApiError::unauthenticated("the token has no usable `sub` claim; sign in again")
            })?;
        let token_groups = groups_claim(claims, &self.groups_claim);
        let verified = email_verified(claims);
        actor_of(std.sub, std.email, verified, &token_groups, groups)
    }

    fn refusal(
        &self,
        kind: &jsonwebtoken::errors::ErrorKind,
        audience: &str,
        what: &str,
    ) -> ApiError {
        use jsonwebtoken::errors::ErrorKind::*;
        let message = match kind {
            ExpiredSignature => format!("the {what} has expired; refresh it (or sign in again) and retry"),
            ImmatureSignature => format!("the {what} is not valid yet (nbf); check this machine's clock"),
            InvalidAudience if what == "ID token" => format!(
                "the ID token was issued to another client (aud); this server exchanges only ID tokens for client {audience}"
            ),
            InvalidAudience => format!(
                "the {what} is for another audience; ask the identity provider for a token with audience {audience}"
            ),
            InvalidIssuer => format!(
                "the {what} was not issued by {}; sign in there",
                self.issuer
            ),
            InvalidSignature | InvalidEcdsaKey | InvalidRsaKey(_) | InvalidAlgorithm => {
                format!("the {what}'s signature does not verify; sign in again")
            }
            MissingRequiredClaim(c) => {
                format!("the {what} has no `{c}` claim; sign in again")
            }
            _ => format!("the {what} could not be read; sign in again"),
        };
        ApiError::unauthenticated(message)
    }

    /// The key named `kid`, fetching the JWKS again if it is unknown (rate-limited) or the
    /// cache is old.
    async fn key(&self, kid: &str) -> Result<Option<IdpKey>, ApiError> {
        {
            let cache = self.keys.read().await;
            let fresh = cache.fetched.is_some_and(|t| t.elapsed() < MAX_KEY_AGE);
            if let Some(k) = cache.keys.get(kid) {
                if fresh {
                    return Ok(Some(k.clone()));
                }
            } else if cache.fetched.is_some_and(|t| t.elapsed() < REFETCH_AFTER) {
                return Ok(None);
            }
        }
        let _one = self.fetching.lock().await;
        // Someone else may have fetched while this one waited.
        {
            let cache = self.keys.read().await;
            if let Some(t) = cache.fetched {
                if t.elapsed() < REFETCH_AFTER {
                    return Ok(cache.keys.get(kid).cloned());
                }
            }
        }
        match self.fetch().await {
            Ok(keys) => {
                let mut cache = self.keys.write().await;
                cache.keys = keys;
                cache.fetched = Some(Instant::now());
                Ok(cache.keys.get(kid).cloned())
            }
            Err(e) => {
                let mut cache = self.keys.write().await;
                if let Some(k) = cache.keys.get(kid) {
                    tracing::warn!(error = %e, "refreshing the identity provider's keys failed; using the cached ones");
                    return Ok(Some(k.clone()));
                }
                // Do not hammer an IdP that is down: count the failure as a fetch.
                cache.fetched = Some(Instant::now());
                Err(ApiError::unavailable(
                    "fetching the identity provider's signing keys",
                    &e,
                ))
            }
        }
    }

    async fn fetch(&self) -> anyhow::Result<HashMap<String, IdpKey>> {
        use anyhow::Context as _;
        let discovery_url = format!("{}/.well-known/openid-configuration", self.issuer);
        let d: Discovery = self
            .http
            .get(&discovery_url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("reading {discovery_url}"))?
            .json()
            .await
            .with_context(|| format!("reading {discovery_url}"))?;
        if d.issuer.trim_end_matches('/') != self.issuer {
            anyhow::bail!(
                "{discovery_url} names issuer {}, not {}",
                d.issuer,
                self.issuer
            );
        }
        let set: serde_json::Value = self
            .http
            .get(&d.jwks_uri)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .with_context(|| format!("reading {}", d.jwks_uri))?
            .json()
            .await
            .with_context(|| format!("reading {}", d.jwks_uri))?;
        let keys = keys_from_jwks(&set);
        if keys.is_empty() {
            anyhow::bail!("{} publishes no usable signing key", d.jwks_uri);
        }
        Ok(keys)
    }
}

/// The groups in `claim` of a token: an array of strings, or one string.
pub fn groups_claim(claims: &Claims, claim: &str) -> Vec<String> {
    match claims.get(claim) {
        Some(serde_json::Value::Array(items)) => items
            .iter()
            .filter_map(|g| g.as_str().map(str::to_string))
            .collect(),
        Some(serde_json::Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    }
}

fn actor_of(
    sub: String,
    email: Option<String>,
    verified: bool,
    token_groups: &[String],
    groups: &GroupDirectory,
) -> Result<Actor, ApiError> {
    let resolved = groups.resolve(&Member {
        subject: &sub,
        verified_email: email.as_deref().filter(|_| verified),
        token_groups,
    });
    let subject = Subject::new(sub).map_err(|_| {
        ApiError::unauthenticated("the token's `sub` claim is empty; sign in again")
    })?;
    Ok(Actor::new(subject, email, resolved))
}

/// Turns bearer tokens into callers, per `[identity] caller_auth`.
pub struct Authenticator {
    mode: CallerAuth,
    idp: IdpVerifier,
    sessions: Option<SessionKeys>,
    groups: GroupDirectory,
    client_id: Option<String>,
    id_token_max_age: Duration,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("mode", &self.mode)
            .field("idp", &self.idp)
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator for `mode`. `sessions` and `client_id` are needed when `mode`
    /// exchanges ID tokens (the config checks that).
    pub fn new(
        mode: CallerAuth,
        idp: IdpVerifier,
        sessions: Option<SessionKeys>,
        groups: GroupDirectory,
        client_id: Option<String>,
        id_token_max_age: Duration,
        clock: Arc<dyn Clock>,
    ) -> Authenticator {
        Authenticator {
            mode,
            idp,
            sessions,
            groups,
            client_id,
            id_token_max_age,
            clock,
        }
    }

    /// The time session tokens and ID-token ages are judged by.
    pub fn now(&self) -> std::time::SystemTime {
        self.clock.now()
    }

    /// How callers authenticate.
    pub fn mode(&self) -> CallerAuth {
        self.mode
    }

    /// The session keys, when ID tokens are exchanged.
    pub fn sessions(&self) -> Option<&SessionKeys> {
        self.sessions
            .as_ref()
            .filter(|_| self.mode.exchanges_id_tokens())
    }

    /// The caller a bearer token names.
    pub async fn caller(&self, token: &SecretString) -> Result<Caller, ApiError> {
        let now = self.clock.now();
        if SessionKeys::looks_like_session(token.expose_secret()) {
            let Some(keys) = self.sessions() else {
                return Err(mismatch(
                    "the bearer token is a Snowgate session token, but this server takes IdP access tokens (caller_auth = \"access_token\"); set [team] auth = \"access_token\" in the desktop's config",
                ));
            };
            let c = keys
                .verify(token.expose_secret(), now)
                .map_err(|r| match r {
                    SessionRefusal::Expired => ApiError::new(
                        axum::http::StatusCode::UNAUTHORIZED,
                        "session_expired",
                        r.to_string(),
                    ),
                    _ => ApiError::unauthenticated(r.to_string()),
                })?;
            let actor = actor_of(
                c.sub,
                c.email,
                c.email_verified,
                &c.idp_groups,
                &self.groups,
            )?;
            return Ok(Caller {
                actor,
                via: snowgate_grants::team_api::CallerVia::Session,
                email_verified: c.email_verified,
                expires_at: unix_time(c.exp),
            });
        }
        if !self.mode.accepts_access_tokens() {
            return Err(mismatch(
                "this server takes only its own session tokens (caller_auth = \"id_token\"): exchange a fresh ID token at POST /v1/session first; in the desktop's config set [team] auth = \"id_token\"",
            ));
        }
        let claims = self.idp.verify(token).await?;
        let actor = self.idp.actor(&claims, &self.groups)?;
        // `exp` is required by the verification, so it is there.
        let exp = claims
            .get("exp")
            .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
            .unwrap_or(0);
        Ok(Caller {
            actor,
            via: snowgate_grants::team_api::CallerVia::AccessToken,
            email_verified: email_verified(&claims),
            expires_at: unix_time(exp),
        })
    }

    /// Verifies an ID token offered for exchange and returns its claims, subject, email (and
    /// whether verified) and token groups. Refused when this server does not exchange.
    pub async fn exchangeable(&self, id_token: &SecretString) -> Result<Exchangeable, ApiError> {
        let (Some(client_id), Some(_)) = (self.client_id.as_deref(), self.sessions()) else {
            return Err(mismatch(
                "this server does not exchange ID tokens (caller_auth = \"access_token\"); set [team] auth = \"access_token\" in the desktop's config, or ask the admin for caller_auth = \"id_token\"",
            ));
        };
        let claims = self
            .idp
            .verify_id_token(id_token, client_id, self.id_token_max_age, self.clock.now())
            .await?;
        let std: StandardClaims = serde_json::from_value(serde_json::Value::Object(claims.clone()))
            .map_err(|_| {
                ApiError::unauthenticated("the ID token has no usable `sub` claim; sign in again")
            })?;
        if std.sub.trim().is_empty() {
            return Err(ApiError::unauthenticated(
                "the ID token's `sub` claim is empty; sign in again",
            ));
        }
        let exp = claims.get("exp").and_then(|v| v.as_i64()).unwrap_or(0);
        Ok(Exchangeable {
            email_verified: email_verified(&claims),
            token_groups: groups_claim(&claims, &self.idp.groups_claim),
            subject: std.sub,
            email: std.email,
            exp,
        })
    }

    /// The groups the server resolves for a person.
    pub fn resolve_groups(
        &self,
        subject: &str,
        email: Option<&str>,
        verified: bool,
        token_groups: &[String],
    ) -> Vec<String> {
        self.groups.resolve(&Member {
            subject,
            verified_email: email.filter(|_| verified),
            token_groups,
        })
    }
}

/// The facts of an ID token that verified for exchange.
#[derive(Debug, Clone)]
pub struct Exchangeable {
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub token_groups: Vec<String>,
    /// The ID token's `exp` (Unix seconds): its one-time-use record is kept until then.
    pub exp: i64,
}

fn mismatch(message: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::UNAUTHORIZED,
        "caller_auth_mismatch",
        message,
    )
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        let token = bearer(parts)?;
        state.auth.caller(&token).await
    }
}

/// The bearer token of a request, or a 401 that says how to send one.
fn bearer(parts: &Parts) -> Result<SecretString, ApiError> {
    let missing = || {
        ApiError::unauthenticated(
            "sign in first: send `Authorization: Bearer <token>` with an access token from your identity provider, or the session token from POST /v1/session",
        )
    };
    let value = parts.headers.get(AUTHORIZATION).ok_or_else(missing)?;
    let value = value.to_str().map_err(|_| missing())?;
    let token = bearer_token(value).ok_or_else(missing)?;
    Ok(SecretString::from(token.to_string()))
}

/// The shared authenticator.
pub type SharedAuthenticator = Arc<Authenticator>;
