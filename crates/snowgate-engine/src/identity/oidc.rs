//! The OpenID Connect client: discovery, the authorization-code and device grants, refresh,
//! revocation, userinfo, and ID-token verification.
//!
//! Built on `openidconnect` 4 with the IdP client from [`super::http`]. Endpoints come from the
//! issuer's discovery document; `openidconnect`'s provider metadata does not read the device
//! authorization and revocation endpoints, so they are taken from the same JSON by name.
//!
//! ID tokens are fully verified: RS256 (or what discovery lists) signature through the JWKS,
//! `iss`, `aud`, `exp`, `iat` and `nonce`. When a token is signed with a key id the cached JWKS
//! lacks, the JWKS is fetched again once (the IdP rotated its keys). `openidconnect` has no
//! clock-skew setting, so expiry is checked against the injected clock minus the configured
//! skew, and `iat` may be at most the skew in the future.
//!
//! Token responses are turned into [`TokenSet`] at once, whose fields are redacting secret
//! types; errors keep only the OAuth `error` and `error_description`.
//!
//! Why one long file: discovery, the grants and every ID-token check read the same discovery
//! document and settings, and a reviewer checks the token rules (OpenID Connect Core 3.1.3.7)
//! against the standard in one place.

use std::borrow::Cow;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use openidconnect::core::{
    CoreClient, CoreDeviceAuthorizationResponse, CoreIdToken, CoreJsonWebKeySet,
    CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreRevocableToken, CoreTokenResponse,
};
use openidconnect::{
    AuthenticationFlow, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret,
    CsrfToken, DeviceAuthorizationUrl, EndpointMaybeSet, EndpointNotSet, EndpointSet, IssuerUrl,
    Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl,
    RequestTokenError, RevocationUrl, Scope, SignatureVerificationError,
};
use url::Url;

use super::clock::Clock;
use super::error::{IdTokenError, IdentityError};
use super::http::{describe, shown, IdpHttp, TransportError};
use super::id_token::{self, IdTokenRules, IAT_FUTURE};
use super::preset::{AudienceParameter, OfflineAccess, ProviderSettings};
use super::secrets::{AccessToken, IdTokenValue, RefreshToken};

type Client = CoreClient<
    EndpointSet,      // authorization
    EndpointNotSet,   // device authorization (set per use)
    EndpointNotSet,   // introspection
    EndpointNotSet,   // revocation (set per use)
    EndpointSet,      // token
    EndpointMaybeSet, // userinfo
>;

/// What the OIDC client needs from the config.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// The configured issuer, without a trailing slash.
    pub issuer: String,
    pub client_id: String,
    /// A confidential client's secret; `Debug` prints it redacted.
    pub client_secret: Option<ClientSecret>,
    /// The resource indicator (RFC 8707) asked for at sign-in and in resource refreshes:
    /// Snowflake's audience in solo mode, the team server's API audience in team mode (where
    /// Snowflake tokens come from the server, not the IdP); empty (no `resource` sent) when the
    /// team server takes ID tokens instead of access tokens.
    pub snowflake_audience: String,
    /// Tolerated clock difference for `exp` and `iat`.
    pub clock_skew: Duration,
    /// How this provider wants the audience, the refresh token and the role scopes asked for.
    pub provider: ProviderSettings,
}

impl OidcSettings {
    /// The parameter that names the Snowflake API at the authorization and device endpoints,
    /// if the provider takes one.
    fn audience_param(&self) -> Option<(&'static str, String)> {
        if self.snowflake_audience.is_empty() {
            return None;
        }
        match self.provider.audience_parameter {
            AudienceParameter::Resource => Some(("resource", self.snowflake_audience.clone())),
            AudienceParameter::Audience => Some(("audience", self.snowflake_audience.clone())),
            AudienceParameter::ScopePrefix | AudienceParameter::None => None,
        }
    }

    /// The `resource` parameter for refresh grants, where the provider takes RFC 8707.
    fn token_resource(&self) -> Option<String> {
        (self.provider.audience_parameter == AudienceParameter::Resource
            && !self.snowflake_audience.is_empty())
        .then(|| self.snowflake_audience.clone())
    }
}

/// The tokens of one token-endpoint answer. `Debug` shows which are present, never values.
#[derive(Debug, Clone)]
pub struct TokenSet {
    pub access_token: AccessToken,
    pub refresh_token: Option<RefreshToken>,
    pub id_token: Option<IdTokenValue>,
    pub expires_in: Option<Duration>,
    /// The granted scopes, if the IdP said.
    pub scope: Option<String>,
}

impl TokenSet {
    fn from_response(resp: &CoreTokenResponse) -> TokenSet {
        TokenSet {
            access_token: AccessToken::new(resp.access_token().secret().clone()),
            refresh_token: resp
                .refresh_token()
                .map(|t| RefreshToken::new(t.secret().clone())),
            id_token: resp
                .extra_fields()
                .id_token()
                .map(|t| IdTokenValue::new(t.to_string())),
            expires_in: resp.expires_in(),
            scope: resp
                .scopes()
                .map(|s| s.iter().map(|x| x.as_str()).collect::<Vec<_>>().join(" ")),
        }
    }
}

/// An authorization request about to be sent to the browser, and what is needed to redeem it.
pub struct AuthorizationStart {
    /// The URL to open in the browser.
    pub url: Url,
    /// The `state` sent; the redirect must carry it back.
    pub state: CsrfToken,
    /// The `nonce` sent; the ID token must carry it.
    pub nonce: Nonce,
    /// The PKCE verifier for the code exchange.
    pub pkce_verifier: PkceCodeVerifier,
}

/// What refresh grant to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshTarget {
    /// An IdP access token (no resource, the sign-in's OpenID scopes).
    Idp,
    /// A Snowflake access token for one role: `resource=<audience>`, `scope=session:role:<ROLE>`.
    Snowflake { role: String },
    /// An access token for the team server's API: `resource=<audience>` (the team server's, in
    /// team mode) with the sign-in's scopes, so it carries the user's groups.
    TeamServer,
}

/// The verified facts of an ID token.
#[derive(Debug, Clone)]
pub struct VerifiedIdToken {
    pub subject: String,
    pub email: Option<String>,
    pub name: Option<String>,
    /// All claims of the verified payload (for the configurable groups claim).
    pub claims: serde_json::Map<String, serde_json::Value>,
}

/// An OpenID Connect client for one issuer, built from its discovery document.
pub struct OidcClient {
    settings: OidcSettings,
    issuer: IssuerUrl,
    client: Client,
    device_endpoint: Option<DeviceAuthorizationUrl>,
    revocation_endpoint: Option<RevocationUrl>,
    userinfo_endpoint: Option<Url>,
    jwks_uri: Url,
    jwks: RwLock<CoreJsonWebKeySet>,
    signing_algs: Vec<CoreJwsSigningAlgorithm>,
    http: IdpHttp,
    clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for OidcClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcClient")
            .field("issuer", &self.issuer.as_str())
            .field("client_id", &self.settings.client_id)
            .finish_non_exhaustive()
    }
}

fn discovery_url(issuer: &str) -> String {
    format!(
        "{}/.well-known/openid-configuration",
        issuer.trim_end_matches('/')
    )
}

/// Removes the trailing slash `Url` adds to a bare origin, so `https://idp` and `https://idp/`
/// are the same issuer.
pub fn normalize_issuer(issuer: &str) -> String {
    issuer.trim_end_matches('/').to_string()
}

impl OidcClient {
    /// Reads the discovery document and the JWKS of `settings.issuer`.
    pub async fn discover(
        settings: OidcSettings,
        http: IdpHttp,
        clock: Arc<dyn Clock>,
    ) -> Result<OidcClient, IdentityError> {
        let url = discovery_url(&settings.issuer);
        let discovery_err = |reason: String| IdentityError::Discovery {
            url: url.clone(),
            reason,
        };
        tracing::debug!(%url, "reading the IdP's discovery document");
        let resp = http
            .client()
            .get(&url)
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| IdentityError::Unreachable {
                what: "discovery",
                reason: describe(&e),
            })?;
        let status = resp.status();
        if status.is_server_error() {
            return Err(IdentityError::Unreachable {
                what: "discovery",
                reason: format!("HTTP {status} from {url}"),
            });
        }
        if !status.is_success() {
            return Err(discovery_err(format!(
                "HTTP {status}; is identity.issuer the IdP's issuer URL?"
            )));
        }
        let doc: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| discovery_err(format!("not JSON: {}", describe(&e))))?;
        let reported = doc
            .get("issuer")
            .and_then(|v| v.as_str())
            .ok_or_else(|| discovery_err("it has no `issuer`".into()))?;
        if normalize_issuer(reported) != normalize_issuer(&settings.issuer) {
            return Err(IdentityError::IssuerMismatch {
                configured: settings.issuer.clone(),
                reported: reported.to_string(),
            });
        }
        let metadata: CoreProviderMetadata = serde_json::from_value(doc.clone())
            .map_err(|e| discovery_err(format!("it is not valid OpenID Connect metadata: {e}")))?;
        let endpoint = |name: &str| -> Result<Option<String>, IdentityError> {
            match doc.get(name) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(discovery_err(format!("`{name}` is not a URL string"))),
            }
        };
        let device_endpoint = endpoint("device_authorization_endpoint")?
            .map(DeviceAuthorizationUrl::new)
            .transpose()
            .map_err(|e| discovery_err(format!("`device_authorization_endpoint`: {e}")))?;
        let revocation_endpoint = endpoint("revocation_endpoint")?
            .map(RevocationUrl::new)
            .transpose()
            .map_err(|e| discovery_err(format!("`revocation_endpoint`: {e}")))?;
        let token_url = metadata
            .token_endpoint()
            .cloned()
            .ok_or_else(|| discovery_err("it has no `token_endpoint`".into()))?;
        let userinfo_endpoint = metadata.userinfo_endpoint().map(|u| u.url().clone());
        let jwks_uri = metadata.jwks_uri().url().clone();
        let signing_algs = metadata.id_token_signing_alg_values_supported().clone();
        let issuer = metadata.issuer().clone();

        let jwks = fetch_jwks(&http, &jwks_uri).await?;
        let client = CoreClient::from_provider_metadata(
            metadata,
            ClientId::new(settings.client_id.clone()),
            settings.client_secret.clone(),
        )
        .set_token_uri(token_url);
        tracing::debug!(issuer = %issuer.as_str(), device = device_endpoint.is_some(), revocation = revocation_endpoint.is_some(), "discovered the IdP");
        Ok(OidcClient {
            settings,
            issuer,
            client,
            device_endpoint,
            revocation_endpoint,
            userinfo_endpoint,
            jwks_uri,
            jwks: RwLock::new(jwks),
            signing_algs,
            http,
            clock,
        })
    }

    /// The issuer exactly as the IdP names itself.
    pub fn issuer(&self) -> &str {
        self.issuer.as_str()
    }

    /// Builds an authorization request: code flow, PKCE S256, a fresh `state` and `nonce`,
    /// `scopes` (plus `openid`), the loopback `redirect_uri`, and `resource` = the Snowflake
    /// audience so the role scopes can be granted.
    pub fn authorize(&self, redirect_uri: &RedirectUrl, scopes: &[String]) -> AuthorizationStart {
        self.authorize_with(redirect_uri, scopes, false, false)
    }

    /// Like [`OidcClient::authorize`]; with `fresh`, the IdP is told to ask for the password
    /// again whatever session the browser has (`prompt=login`, `max_age=0`): an approver
    /// proving who they are on a machine someone else is signed in to. With `consent`, the
    /// IdP is told to show its consent page (`prompt=consent`), which strict providers need
    /// before they grant `offline_access` (OpenID Connect Core §11).
    pub fn authorize_with(
        &self,
        redirect_uri: &RedirectUrl,
        scopes: &[String],
        fresh: bool,
        consent: bool,
    ) -> AuthorizationStart {
        let (challenge, pkce_verifier) = PkceCodeChallenge::new_random_sha256();
        let mut request = self
            .client
            .authorize_url(
                AuthenticationFlow::<openidconnect::core::CoreResponseType>::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_redirect_uri(Cow::Borrowed(redirect_uri))
            .set_pkce_challenge(challenge);
        if let Some((name, value)) = self.settings.audience_param() {
            request = request.add_extra_param(name, value);
        }
        if self.settings.provider.offline_access == OfflineAccess::AccessType {
            request = request.add_extra_param("access_type", "offline");
        }
        for scope in scopes.iter().filter(|s| s.as_str() != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        if fresh {
            request = request
                .add_prompt(openidconnect::core::CoreAuthPrompt::Login)
                .set_max_age(std::time::Duration::from_secs(0));
        }
        if consent {
            request = request.add_prompt(openidconnect::core::CoreAuthPrompt::Consent);
        }
        let (url, state, nonce) = request.url();
        AuthorizationStart {
            url,
            state,
            nonce,
            pkce_verifier,
        }
    }

    /// Redeems an authorization code. The access token that comes back is the IdP's own (no
    /// resource is named), for userinfo and the team server.
    pub async fn exchange_code(
        &self,
        code: String,
        pkce_verifier: PkceCodeVerifier,
        redirect_uri: &RedirectUrl,
    ) -> Result<TokenSet, IdentityError> {
        let resp = self
            .client
            .exchange_code(AuthorizationCode::new(code))
            .set_pkce_verifier(pkce_verifier)
            .set_redirect_uri(Cow::Borrowed(redirect_uri))
            .request_async(&self.http)
            .await
            .map_err(|e| token_error("code exchange", e))?;
        Ok(TokenSet::from_response(&resp))
    }

    /// One refresh grant. The caller must hold the refresh lock: every grant rotates the token.
    pub async fn refresh(
        &self,
        refresh_token: &RefreshToken,
        target: &RefreshTarget,
    ) -> Result<TokenSet, IdentityError> {
        let rt = openidconnect::RefreshToken::new(refresh_token.expose_secret().to_string());
        let mut request = self.client.exchange_refresh_token(&rt);
        match target {
            RefreshTarget::Snowflake { role } => {
                let scope = self
                    .settings
                    .provider
                    .role_scope(&self.settings.snowflake_audience, role);
                request = request.add_scope(Scope::new(scope));
                if let Some(resource) = self.settings.token_resource() {
                    request = request.add_extra_param("resource", resource);
                }
            }
            RefreshTarget::TeamServer => {
                if let Some(resource) = self.settings.token_resource() {
                    request = request.add_extra_param("resource", resource);
                }
            }
            RefreshTarget::Idp => {}
        }
        let resp = request
            .request_async(&self.http)
            .await
            .map_err(|e| token_error("refresh", e))?;
        Ok(TokenSet::from_response(&resp))
    }

    /// Starts a device authorization (RFC 8628) for `scopes` and the Snowflake resource.
    pub async fn start_device(
        &self,
        scopes: &[String],
    ) -> Result<CoreDeviceAuthorizationResponse, IdentityError> {
        let url = self.device_endpoint.clone().ok_or_else(|| {
            IdentityError::Unsupported(format!(
                "the IdP {} offers no device sign-in (its discovery document has no device_authorization_endpoint); use the browser sign-in",
                self.issuer.as_str()
            ))
        })?;
        let client = self.client.clone().set_device_authorization_url(url);
        let mut request = client.exchange_device_code();
        if let Some((name, value)) = self.settings.audience_param() {
            request = request.add_extra_param(name, value);
        }
        for scope in scopes.iter().filter(|s| s.as_str() != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        request
            .request_async(&self.http)
            .await
            .map_err(|e| token_error("device authorization", e))
    }

    /// Polls the token endpoint until the device sign-in is confirmed, declined or expired.
    /// Like the code exchange it names no resource, so the access token is the IdP's own.
    /// Waits `interval` between polls (the IdP's, or `interval_override`), and 5 s more after
    /// each `slow_down`.
    pub async fn poll_device(
        &self,
        details: &CoreDeviceAuthorizationResponse,
        interval_override: Option<Duration>,
    ) -> Result<TokenSet, IdentityError> {
        let base = details.interval();
        let sleep = move |interval: Duration| {
            // `interval` is the IdP's plus any slow_down increments; keep the increments.
            let wait = match interval_override {
                Some(o) => o + interval.saturating_sub(base),
                None => interval,
            };
            tokio::time::sleep(wait)
        };
        let resp = self
            .client
            .exchange_device_access_token(details)
            .request_async(&self.http, sleep, None)
            .await;
        match resp {
            Ok(resp) => Ok(TokenSet::from_response(&resp)),
            Err(RequestTokenError::ServerResponse(e)) => {
                use openidconnect::DeviceCodeErrorResponseType as T;
                match e.error() {
                    T::ExpiredToken => Err(IdentityError::DeviceExpired),
                    T::AccessDenied => Err(IdentityError::DeviceDenied {
                        error: "access_denied".into(),
                        description: e.error_description().cloned(),
                    }),
                    other => Err(IdentityError::Refused {
                        what: "device sign-in",
                        error: other.to_string(),
                        description: e.error_description().cloned(),
                    }),
                }
            }
            Err(e) => Err(token_error("device sign-in", e)),
        }
    }

    /// Revokes a refresh token (RFC 7009); at the IdPs we know, that ends its whole grant.
    pub async fn revoke(&self, refresh_token: &RefreshToken) -> Result<(), IdentityError> {
        let url = self.revocation_endpoint.clone().ok_or_else(|| {
            IdentityError::Unsupported(format!(
                "the IdP {} has no revocation endpoint in its discovery document",
                self.issuer.as_str()
            ))
        })?;
        let client = self.client.clone().set_revocation_url(url);
        let token = CoreRevocableToken::from(openidconnect::RefreshToken::new(
            refresh_token.expose_secret().to_string(),
        ));
        client
            .revoke_token(token)
            .map_err(|e| IdentityError::Unsupported(format!("revocation: {e}")))?
            .request_async(&self.http)
            .await
            .map_err(|e| token_error("revocation", e))
    }

    /// Calls userinfo with the IdP access token and checks that it is about `subject`.
    pub async fn userinfo(
        &self,
        access_token: &AccessToken,
        subject: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, IdentityError> {
        let url = self.userinfo_endpoint.clone().ok_or_else(|| {
            IdentityError::Unsupported(format!(
                "the IdP {} has no userinfo endpoint",
                self.issuer.as_str()
            ))
        })?;
        let resp = self
            .http
            .client()
            .get(url.clone())
            .bearer_auth(access_token.expose_secret())
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| IdentityError::Unreachable {
                what: "userinfo",
                reason: describe(&e),
            })?;
        let status = resp.status();
        if status.is_server_error() {
            return Err(IdentityError::Unreachable {
                what: "userinfo",
                reason: format!("HTTP {status} from {}", shown(&url)),
            });
        }
        if !status.is_success() {
            return Err(IdentityError::Refused {
                what: "userinfo request",
                error: format!("HTTP {status}"),
                description: None,
            });
        }
        let claims: serde_json::Map<String, serde_json::Value> =
            resp.json().await.map_err(|e| IdentityError::BadResponse {
                what: "userinfo request",
                reason: describe(&e),
            })?;
        if claims.get("sub").and_then(|s| s.as_str()) != Some(subject) {
            return Err(IdentityError::BadResponse {
                what: "userinfo request",
                reason: "its `sub` is not the ID token's subject".into(),
            });
        }
        Ok(claims)
    }

    /// Verifies an ID token: signature through the JWKS (refetched once on an unknown key),
    /// `iss`, `aud`, `exp` and `iat` with the clock skew, and `nonce` when one was sent.
    pub async fn verify_id_token(
        &self,
        raw: &IdTokenValue,
        nonce: Option<&Nonce>,
    ) -> Result<VerifiedIdToken, IdentityError> {
        let token: CoreIdToken = id_token::parse(raw.expose_secret())
            .ok_or_else(|| IdTokenError::Malformed("it is not a compact signed JWT".into()))?;
        match self.check(&token, nonce) {
            Err(ClaimsVerificationError::SignatureVerification(
                SignatureVerificationError::NoMatchingKey,
            )) => {
                tracing::debug!("the ID token's key is not in the cached JWKS; fetching it again");
                let jwks = fetch_jwks(&self.http, &self.jwks_uri).await?;
                *self.jwks.write().expect("jwks lock") = jwks;
                self.check(&token, nonce).map_err(map_claims_error)?;
            }
            other => {
                other.map_err(map_claims_error)?;
            }
        }
        // The token is verified, so its payload can be read as it stands.
        let claims = id_token::payload(raw.expose_secret())
            .ok_or_else(|| IdTokenError::Malformed("its payload is not a JSON object".into()))?;
        let text = |name: &str| {
            claims
                .get(name)
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        let subject =
            text("sub").ok_or_else(|| IdTokenError::Malformed("it has no `sub`".into()))?;
        Ok(VerifiedIdToken {
            subject,
            email: text("email"),
            name: text("name"),
            claims,
        })
    }

    fn check(
        &self,
        token: &CoreIdToken,
        nonce: Option<&Nonce>,
    ) -> Result<(), ClaimsVerificationError> {
        let jwks = self.jwks.read().expect("jwks lock").clone();
        let issuer = self.issuer.clone();
        id_token::check(
            token,
            nonce,
            &IdTokenRules {
                issuer: &issuer,
                client_id: &self.settings.client_id,
                client_secret: self.settings.client_secret.as_ref(),
                algs: &self.signing_algs,
                jwks: &jwks,
                now: self.clock.now(),
                skew: self.settings.clock_skew,
            },
        )
    }
}

async fn fetch_jwks(http: &IdpHttp, url: &Url) -> Result<CoreJsonWebKeySet, IdentityError> {
    let resp = http
        .client()
        .get(url.clone())
        .header("accept", "application/json")
        .send()
        .await
        .map_err(|e| IdentityError::Unreachable {
            what: "JWKS",
            reason: describe(&e),
        })?;
    let status = resp.status();
    if status.is_server_error() {
        return Err(IdentityError::Unreachable {
            what: "JWKS",
            reason: format!("HTTP {status} from {}", shown(url)),
        });
    }
    if !status.is_success() {
        return Err(IdentityError::BadResponse {
            what: "JWKS request",
            reason: format!("HTTP {status} from {}", shown(url)),
        });
    }
    resp.json().await.map_err(|e| IdentityError::BadResponse {
        what: "JWKS request",
        reason: describe(&e),
    })
}

fn map_claims_error(e: ClaimsVerificationError) -> IdentityError {
    let err = match e {
        ClaimsVerificationError::InvalidIssuer(m) => IdTokenError::WrongIssuer(m),
        ClaimsVerificationError::InvalidAudience(m) => IdTokenError::WrongAudience(m),
        ClaimsVerificationError::InvalidNonce(m) => IdTokenError::WrongNonce(m),
        ClaimsVerificationError::Expired(m) if m.starts_with(IAT_FUTURE) => {
            IdTokenError::IssuedInFuture(m[IAT_FUTURE.len()..].to_string())
        }
        ClaimsVerificationError::Expired(m) => IdTokenError::Expired(m),
        ClaimsVerificationError::SignatureVerification(s) => IdTokenError::Signature(s.to_string()),
        other => IdTokenError::Malformed(other.to_string()),
    };
    IdentityError::IdToken(err)
}

/// Maps a token-endpoint error without ever showing the response body (it could hold tokens).
fn token_error<T>(what: &'static str, err: RequestTokenError<TransportError, T>) -> IdentityError
where
    T: openidconnect::ErrorResponse + 'static,
{
    match err {
        RequestTokenError::ServerResponse(e) => {
            // StandardErrorResponse serializes as {"error", "error_description", "error_uri"}.
            let v = serde_json::to_value(&e).unwrap_or_default();
            IdentityError::Refused {
                what,
                error: v["error"].as_str().unwrap_or("unknown_error").to_string(),
                description: v["error_description"].as_str().map(str::to_string),
            }
        }
        RequestTokenError::Request(e) => IdentityError::Unreachable {
            what,
            reason: e.to_string(),
        },
        RequestTokenError::Parse(e, _body) => {
            let kind = match e.inner().classify() {
                serde_json::error::Category::Syntax => "it is not JSON",
                serde_json::error::Category::Eof => "it ended early",
                serde_json::error::Category::Data => "a field is missing or has the wrong type",
                serde_json::error::Category::Io => "it could not be read",
            };
            IdentityError::BadResponse {
                what,
                reason: format!("{kind} (at `{}`)", e.path()),
            }
        }
        RequestTokenError::Other(m) => IdentityError::BadResponse { what, reason: m },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_secret_never_shows_in_debug_output() {
        let settings = OidcSettings {
            issuer: "https://idp.example.com".into(),
            client_id: "snowgate-desktop".into(),
            client_secret: Some(ClientSecret::new("hunter2-client-secret".into())),
            snowflake_audience: "https://snowflake.example.com".into(),
            clock_skew: Duration::from_secs(60),
            provider: Default::default(),
        };
        let shown = format!("{settings:?}");
        assert!(!shown.contains("hunter2-client-secret"), "{shown}");
        assert!(shown.contains("snowgate-desktop"), "{shown}");
    }

    #[test]
    fn a_trailing_slash_does_not_make_another_issuer() {
        assert_eq!(
            normalize_issuer("https://idp.example.com/"),
            "https://idp.example.com"
        );
        assert_eq!(
            discovery_url("https://idp.example.com/"),
            "https://idp.example.com/.well-known/openid-configuration"
        );
        assert_eq!(
            discovery_url("https://idp.example.com/realms/acme"),
            "https://idp.example.com/realms/acme/.well-known/openid-configuration"
        );
    }

    #[test]
    fn token_errors_keep_error_and_description_only() {
        let body = br#"{"access_token":"secret-at","refresh_token":"secret-rt"}"#.to_vec();
        let parse_err = serde_path_to_error::deserialize::<_, u32>(
            &mut serde_json::Deserializer::from_slice(&body),
        )
        .unwrap_err();
        let err = token_error::<
            openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
        >("refresh", RequestTokenError::Parse(parse_err, body));
        let text = format!("{err} {err:?}");
        assert!(!text.contains("secret"), "{text}");

        let server: openidconnect::StandardErrorResponse<
            openidconnect::core::CoreErrorResponseType,
        > = serde_json::from_str(
            r#"{"error":"invalid_grant","error_description":"grant request is invalid"}"#,
        )
        .unwrap();
        let err = token_error::<
            openidconnect::StandardErrorResponse<openidconnect::core::CoreErrorResponseType>,
        >("refresh", RequestTokenError::ServerResponse(server));
        assert_eq!(
            err.to_string(),
            "the IdP refused the refresh: invalid_grant (grant request is invalid)"
        );
    }
}
