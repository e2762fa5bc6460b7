//! Who is calling: every `/v1` request carries `Authorization: Bearer <IdP access token>`.
//!
//! The token is a JWT from the configured IdP. [`IdpVerifier`] checks its signature against the
//! IdP's published keys (the JWKS named by discovery, cached; fetched again when a token names
//! a key id it does not know, at most once per [`REFETCH_AFTER`], and when the cache is older
//! than [`MAX_KEY_AGE`]), then `iss`, `aud`, `exp` and `nbf` with the configured leeway. The
//! caller's subject (`sub`), email and groups (the configured claim) become an [`Actor`]; every
//! decision about what they may do is made from it by the grants policy.
//!
//! Refusals are 401 with a sentence saying what to do. The token itself is held as a
//! `SecretString` and never appears in an error, a log line or a panic.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use snowgate_grants::{Actor, Subject};
use tokio::sync::{Mutex, RwLock};

use crate::error::ApiError;
use crate::state::AppState;

/// A key id the cache does not know triggers a new fetch only if the last one is older.
pub const REFETCH_AFTER: Duration = Duration::from_secs(10);
/// Keys are fetched again when a token arrives and the cache is older than this.
pub const MAX_KEY_AGE: Duration = Duration::from_secs(3600);

const ACCEPTED_ALGS: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// A caller whose bearer token verified.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who they are, with their groups as the token asserts them.
    pub actor: Actor,
}

/// Verifies IdP access tokens. Cheap to share behind an `Arc`.
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

#[derive(Clone)]
struct IdpKey {
    key: DecodingKey,
    alg: Option<Algorithm>,
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
    /// A verifier for tokens from `issuer` for `audience`. `http` must trust the IdP's TLS
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

    /// Checks `token` and returns who it names.
    pub async fn verify(&self, token: &SecretString) -> Result<Caller, ApiError> {
        let token = token.expose_secret();
        let header = jsonwebtoken::decode_header(token).map_err(|_| {
            ApiError::unauthenticated(format!(
                "the bearer token is not a JWT; send the access token the identity provider issues for audience {}",
                self.audience
            ))
        })?;
        if !ACCEPTED_ALGS.contains(&header.alg) {
            return Err(ApiError::unauthenticated(format!(
                "the bearer token is signed with {:?}, which this server does not accept; send an access token from {}",
                header.alg, self.issuer
            )));
        }
        let kid = header.kid.ok_or_else(|| {
            ApiError::unauthenticated(format!(
                "the bearer token names no signing key (kid); send an access token from {}",
                self.issuer
            ))
        })?;
        let key = self.key(&kid).await?.ok_or_else(|| {
            ApiError::unauthenticated(format!(
                "the bearer token is signed by a key {} does not publish; sign in again to get a token from it",
                self.issuer
            ))
        })?;
        if key.alg.is_some_and(|a| a != header.alg) {
            return Err(ApiError::unauthenticated(
                "the bearer token's algorithm does not match its signing key; sign in again",
            ));
        }
        let mut v = Validation::new(header.alg);
        let with_slash = format!("{}/", self.issuer);
        v.set_issuer(&[self.issuer.as_str(), with_slash.as_str()]);
        v.set_audience(&[self.audience.as_str()]);
        v.leeway = self.leeway.as_secs();
        v.validate_nbf = true;
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data =
            jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(token, &key.key, &v)
                .map_err(|e| self.refusal(e.kind()))?;
        let claims = data.claims;
        let std: StandardClaims = serde_json::from_value(serde_json::Value::Object(claims.clone()))
            .map_err(|_| {
                ApiError::unauthenticated(
                    "the bearer token has no usable `sub` claim; sign in again",
                )
            })?;
        let subject = Subject::new(std.sub).map_err(|_| {
            ApiError::unauthenticated("the bearer token's `sub` claim is empty; sign in again")
        })?;
        let groups = match claims.get(&self.groups_claim) {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|g| g.as_str().map(str::to_string))
                .collect(),
            Some(serde_json::Value::String(one)) => vec![one.clone()],
            _ => Vec::new(),
        };
        Ok(Caller {
            actor: Actor::new(subject, std.email, groups),
        })
    }

    fn refusal(&self, kind: &jsonwebtoken::errors::ErrorKind) -> ApiError {
        use jsonwebtoken::errors::ErrorKind::*;
        let message = match kind {
            ExpiredSignature => "the access token has expired; refresh it (or sign in again) and retry".to_string(),
            ImmatureSignature => "the access token is not valid yet (nbf); check this machine's clock".to_string(),
            InvalidAudience => format!(
                "the access token is for another audience; ask the identity provider for a token with audience {}",
                self.audience
            ),
            InvalidIssuer => format!(
                "the access token was not issued by {}; sign in there",
                self.issuer
            ),
            InvalidSignature | InvalidEcdsaKey | InvalidRsaKey(_) | InvalidAlgorithm => {
                "the access token's signature does not verify; sign in again".to_string()
            }
            MissingRequiredClaim(c) => {
                format!("the access token has no `{c}` claim; sign in again")
            }
            _ => "the access token could not be read; sign in again".to_string(),
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
        let mut keys = HashMap::new();
        for raw in set["keys"].as_array().into_iter().flatten() {
            // Skip keys this library cannot use (other key types) instead of failing them all.
            let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else {
                continue;
            };
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            let Ok(key) = DecodingKey::from_jwk(&jwk) else {
                continue;
            };
            let alg = jwk
                .common
                .key_algorithm
                .and_then(|a| a.to_string().parse::<Algorithm>().ok());
            keys.insert(kid, IdpKey { key, alg });
        }
        if keys.is_empty() {
            anyhow::bail!("{} publishes no usable signing key", d.jwks_uri);
        }
        Ok(keys)
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Caller, ApiError> {
        let token = bearer(parts)?;
        state.verifier.verify(&token).await
    }
}

/// The bearer token of a request, or a 401 that says how to send one.
fn bearer(parts: &Parts) -> Result<SecretString, ApiError> {
    let missing = || {
        ApiError::unauthenticated(
            "sign in first: send `Authorization: Bearer <access token>` with the access token from your identity provider",
        )
    };
    let value = parts.headers.get(AUTHORIZATION).ok_or_else(missing)?;
    let value = value.to_str().map_err(|_| missing())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(missing)?;
    if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
        return Err(missing());
    }
    Ok(SecretString::from(token.trim().to_string()))
}

/// Shared verifier.
pub type SharedVerifier = Arc<IdpVerifier>;
