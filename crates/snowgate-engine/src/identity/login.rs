//! Sign-ins under way: the browser sign-in ([`PendingLogin`]) and the device sign-in
//! ([`PendingDeviceLogin`]).
//!
//! Each is started by [`Identity`](super::Identity), shows the person where to go, and is
//! finished by awaiting `wait()`, which returns the signed-in [`Profile`]. While one is
//! pending and nobody is signed in, the status reads "signing in". Dropping one abandons it.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use openidconnect::core::CoreDeviceAuthorizationResponse;
use openidconnect::{Nonce, PkceCodeVerifier};
use url::Url;

use super::error::CallbackError;
use super::error::{IdTokenError, IdentityError};
use super::loopback::{Arrival, LoopbackListener};
use super::oidc::TokenSet;
use super::preset::{ConsentPrompt, ProviderSettings};
use super::profile::Profile;
use super::session::Session;
use super::Identity;

/// Counts a pending sign-in for the "signing in" status while it lives.
struct SigningIn(Arc<Session>);

impl SigningIn {
    fn new(session: Arc<Session>) -> SigningIn {
        session.pending_logins.fetch_add(1, Ordering::SeqCst);
        SigningIn(session)
    }
}

impl Drop for SigningIn {
    fn drop(&mut self) {
        self.0.pending_logins.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A browser sign-in (authorization code + PKCE) waiting for the redirect to the loopback
/// listener. Open [`PendingLogin::authorize_url`] in the browser, then await
/// [`PendingLogin::wait`].
pub struct PendingLogin {
    identity: Identity,
    redirect: BrowserRedirect,
    _signing_in: SigningIn,
}

/// What both browser sign-ins (the user's and an approver's) hold while the browser is away: a
/// loopback listener armed for one authorization request, and that request's PKCE verifier
/// and nonce.
struct BrowserRedirect {
    listener: LoopbackListener,
    authorize_url: Url,
    nonce: Nonce,
    pkce_verifier: PkceCodeVerifier,
    timeout: Duration,
    /// Whether the request carried `prompt=consent`.
    consent: bool,
}

impl BrowserRedirect {
    /// Binds the listener and builds the authorization URL; with `fresh` the IdP must ask for
    /// the password again (`prompt=login`, `max_age=0`). `whose` names the sign-in in errors.
    /// The user's sign-in sends `prompt=consent` up front when `[identity] consent_prompt` is
    /// `always`.
    async fn begin(session: &Session, fresh: bool, whose: &str) -> Result<Self, IdentityError> {
        let listener = LoopbackListener::bind().await.map_err(|e| {
            IdentityError::Local(format!(
                "could not listen on 127.0.0.1 for {whose} sign-in redirect: {e}"
            ))
        })?;
        let consent =
            !fresh && session.settings.oidc.provider.consent_prompt == ConsentPrompt::Always;
        let mut redirect = BrowserRedirect {
            listener,
            authorize_url: Url::parse("about:blank").expect("a URL"),
            nonce: Nonce::new(String::new()),
            pkce_verifier: PkceCodeVerifier::new(String::new()),
            timeout: session.settings.login_timeout,
            consent,
        };
        redirect.rearm(session, fresh, consent).await?;
        tracing::debug!(redirect_uri = %redirect.listener.redirect_uri().as_str(), fresh, consent, "browser sign-in started");
        Ok(redirect)
    }

    /// Builds a new authorization request and arms the listener for it.
    async fn rearm(
        &mut self,
        session: &Session,
        fresh: bool,
        consent: bool,
    ) -> Result<(), IdentityError> {
        let oidc = session.oidc().await?;
        let start = oidc.authorize_with(
            self.listener.redirect_uri(),
            &session.settings.login_scopes,
            fresh,
            consent,
        );
        self.listener
            .arm(start.state, oidc.issuer(), start.url.clone());
        self.authorize_url = start.url;
        self.nonce = start.nonce;
        self.pkce_verifier = start.pkce_verifier;
        self.consent = consent;
        Ok(())
    }

    /// Redeems the code of `arrival` for this request.
    async fn exchange(
        &mut self,
        session: &Session,
        arrival: &Arrival,
    ) -> Result<TokenSet, IdentityError> {
        let oidc = session.oidc().await?;
        let verifier = std::mem::replace(
            &mut self.pkce_verifier,
            PkceCodeVerifier::new(String::new()),
        );
        oidc.exchange_code(
            arrival.code().to_string(),
            verifier,
            self.listener.redirect_uri(),
        )
        .await
    }
}

impl std::fmt::Debug for PendingLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingLogin")
            .field(
                "redirect_uri",
                &self.redirect.listener.redirect_uri().as_str(),
            )
            .finish_non_exhaustive()
    }
}

impl PendingLogin {
    pub(crate) async fn start(identity: Identity) -> Result<PendingLogin, IdentityError> {
        let session = identity.session.clone();
        let signing_in = SigningIn::new(session.clone());
        let redirect = BrowserRedirect::begin(&session, false, "the").await?;
        Ok(PendingLogin {
            identity,
            redirect,
            _signing_in: signing_in,
        })
    }

    /// The authorization request. It carries `state`, `nonce` and the PKCE challenge, none of
    /// which are secrets on their own; open [`PendingLogin::start_url`] rather than this.
    pub fn authorize_url(&self) -> &Url {
        &self.redirect.authorize_url
    }

    /// The URL to open in the system browser: a short local URL that sends the browser on to
    /// the authorization request, so the request is on no command line.
    pub fn start_url(&self) -> &Url {
        self.redirect.listener.start_url()
    }

    /// The loopback redirect URI, `http://127.0.0.1:<port>/callback`.
    pub fn redirect_uri(&self) -> &str {
        self.redirect.listener.redirect_uri().as_str()
    }

    /// Waits for the redirect (up to the login timeout, 5 minutes by default), redeems the
    /// code, verifies the ID token against this sign-in's nonce, stores the refresh token and
    /// returns who signed in. The browser page shows the outcome.
    ///
    /// When no refresh token came back although one was asked for, and `[identity]
    /// consent_prompt` is `retry`, the browser is sent back to the IdP once more with
    /// `prompt=consent` (strict providers grant `offline_access` only after their consent
    /// page); if that brings none either, the error names the setting to change at the IdP.
    pub async fn wait(mut self) -> Result<Profile, IdentityError> {
        let session = self.identity.session.clone();
        let provider = session.settings.oidc.provider.clone();
        loop {
            let arrival = self
                .redirect
                .listener
                .next(self.redirect.timeout)
                .await
                .map_err(|e| explain_refusal(e.into(), &provider))?;
            let exchanged = self.redirect.exchange(&session, &arrival).await;
            let result = match exchanged {
                Ok(set) if set.refresh_token.is_none() => {
                    let retry = !self.redirect.consent
                        && provider.consent_prompt == ConsentPrompt::Retry
                        && provider.asks_offline(&session.settings.login_scopes);
                    // The answer must belong to this sign-in before it is asked again.
                    let own = match (session.oidc().await, &set.id_token) {
                        (Ok(oidc), Some(id)) => oidc
                            .verify_id_token(id, Some(&self.redirect.nonce))
                            .await
                            .map(|_| ()),
                        (Err(e), _) => Err(e),
                        (_, None) => Err(IdentityError::NoIdToken),
                    };
                    if let Err(e) = own {
                        Err(e)
                    } else if retry {
                        match self.redirect.rearm(&session, false, true).await {
                            Ok(()) => {
                                tracing::info!("the IdP issued no refresh token; asking again with its consent page (prompt=consent)");
                                arrival.redirect(self.redirect.authorize_url.clone());
                                continue;
                            }
                            Err(e) => Err(e),
                        }
                    } else {
                        Err(session.no_refresh_token(self.redirect.consent))
                    }
                }
                Ok(set) => {
                    session
                        .complete_sign_in(set, Some(&self.redirect.nonce))
                        .await
                }
                Err(e) => Err(e),
            };
            arrival.finish(match &result {
                Ok(p) => Ok(p.email.clone().unwrap_or_else(|| p.subject.clone())),
                Err(e) => Err(e.to_string()),
            });
            if let Err(e) = &result {
                tracing::info!(error = %e, "browser sign-in failed");
                session.record_sign_in_failure(e);
            }
            return result;
        }
    }
}

/// A device sign-in (RFC 8628) waiting for the person to confirm the code at the IdP. Show
/// [`user_code`](Self::user_code) and [`verification_uri`](Self::verification_uri), then await
/// [`wait`](Self::wait).
pub struct PendingDeviceLogin {
    identity: Identity,
    details: CoreDeviceAuthorizationResponse,
    _signing_in: SigningIn,
}

impl std::fmt::Debug for PendingDeviceLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingDeviceLogin")
            .field("user_code", &self.user_code())
            .field("verification_uri", &self.verification_uri())
            .field("expires_in", &self.expires_in())
            .finish_non_exhaustive()
    }
}

impl PendingDeviceLogin {
    pub(crate) async fn start(identity: Identity) -> Result<PendingDeviceLogin, IdentityError> {
        let session = identity.session.clone();
        let signing_in = SigningIn::new(session.clone());
        let oidc = session.oidc().await?;
        let details = oidc.start_device(&session.settings.login_scopes).await?;
        tracing::debug!(verification_uri = %details.verification_uri().as_str(), "device sign-in started");
        Ok(PendingDeviceLogin {
            identity,
            details,
            _signing_in: signing_in,
        })
    }

    /// The code the person types at the verification page.
    pub fn user_code(&self) -> &str {
        self.details.user_code().secret()
    }

    /// Where the person goes to enter the code.
    pub fn verification_uri(&self) -> &str {
        self.details.verification_uri().as_str()
    }

    /// A link that carries the code already, if the IdP offers one (for a QR code).
    pub fn verification_uri_complete(&self) -> Option<&str> {
        self.details
            .verification_uri_complete()
            .map(|u| u.secret().as_str())
    }

    /// How long the code stays valid.
    pub fn expires_in(&self) -> Duration {
        self.details.expires_in()
    }

    /// Polls until the person confirms (honouring `interval`, `slow_down` and expiry; the
    /// config's `device_poll_interval` replaces the IdP's interval), then finishes the sign-in.
    pub async fn wait(self) -> Result<Profile, IdentityError> {
        let session = self.identity.session.clone();
        let oidc = session.oidc().await?;
        let set = oidc
            .poll_device(&self.details, session.settings.device_poll_interval)
            .await?;
        let result = session.complete_sign_in(set, None).await;
        if let Err(e) = &result {
            tracing::info!(error = %e, "device sign-in failed");
            session.record_sign_in_failure(e);
        }
        result
    }
}

/// An approver's sign-in on this machine (solo mode), separate from the signed-in user: a
/// browser login with `prompt=login` and `max_age=0`, so the IdP asks for a password whatever
/// session the browser holds. [`PendingApproverLogin::wait`] returns the approver's verified
/// [`Profile`] and keeps nothing: the user's sign-in is untouched, no token is stored, and a
/// refresh token, if the IdP issued one, is revoked at once.
pub struct PendingApproverLogin {
    identity: Identity,
    redirect: BrowserRedirect,
    /// When this sign-in began: the approver must have entered their password after it.
    started: std::time::SystemTime,
}

impl std::fmt::Debug for PendingApproverLogin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingApproverLogin")
            .field(
                "redirect_uri",
                &self.redirect.listener.redirect_uri().as_str(),
            )
            .finish_non_exhaustive()
    }
}

impl PendingApproverLogin {
    pub(crate) async fn start(identity: Identity) -> Result<PendingApproverLogin, IdentityError> {
        let session = identity.session.clone();
        let started = session.clock.now();
        let redirect = BrowserRedirect::begin(&session, true, "the approver's").await?;
        Ok(PendingApproverLogin {
            identity,
            redirect,
            started,
        })
    }

    /// The authorization request (`prompt=login`, `max_age=0`).
    pub fn authorize_url(&self) -> &Url {
        &self.redirect.authorize_url
    }

    /// The URL the approver opens in a browser: a short local URL that sends the browser on
    /// to the authorization request.
    pub fn start_url(&self) -> &Url {
        self.redirect.listener.start_url()
    }

    /// Waits for the redirect, redeems the code, verifies the ID token against this login's
    /// nonce, reads the approver's groups, revokes any refresh token, and returns who they are.
    pub async fn wait(mut self) -> Result<Profile, IdentityError> {
        let arrival = self.redirect.listener.next(self.redirect.timeout).await?;
        let session = self.identity.session.clone();
        let result = async {
            let oidc = session.oidc().await?;
            let set = self.redirect.exchange(&session, &arrival).await?;
            if let Some(refresh) = &set.refresh_token {
                if let Err(e) = oidc.revoke(refresh).await {
                    tracing::warn!(error = %e, "could not revoke the approver's refresh token");
                }
            }
            let id_token = set.id_token.clone().ok_or(IdentityError::NoIdToken)?;
            let verified = oidc
                .verify_id_token(&id_token, Some(&self.redirect.nonce))
                .await?;
            check_fresh(
                &verified.claims,
                self.started,
                session.settings.oidc.clock_skew,
            )?;
            session.read_profile(&oidc, &set, &verified).await
        }
        .await;
        arrival.finish(match &result {
            Ok(p) => Ok(p.email.clone().unwrap_or_else(|| p.subject.clone())),
            Err(e) => Err(e.to_string()),
        });
        if let Err(e) = &result {
            tracing::info!(error = %e, "approver sign-in failed");
        }
        result
    }
}

/// Whether an approver's ID token proves a password was entered for this sign-in: its
/// `auth_time` (which OpenID Connect Core 1.0 §3.1.2.1 requires when `max_age` is sent) is no
/// earlier than when the sign-in began, less the clock skew allowed. Freshness then rests on
/// the token, not on the provider honouring `prompt=login`.
fn check_fresh(
    claims: &serde_json::Map<String, serde_json::Value>,
    started: std::time::SystemTime,
    skew: Duration,
) -> Result<(), IdentityError> {
    let auth_time = claims
        .get("auth_time")
        .and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)))
        .ok_or_else(|| IdTokenError::NotFresh("the ID token has no auth_time".into()))?;
    let started_secs = started
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs() as i64;
    if auth_time + (skew.as_secs() as i64) < started_secs {
        return Err(IdTokenError::NotFresh(format!(
            "the approver last entered a password {}s before this sign-in began",
            started_secs - auth_time
        ))
        .into());
    }
    Ok(())
}

/// An authorization refused because of how the Snowflake audience was asked for becomes an
/// error that says which setting to change; others stay as they are.
fn explain_refusal(err: IdentityError, provider: &ProviderSettings) -> IdentityError {
    if let IdentityError::Callback(CallbackError::Denied { error, description }) = &err {
        let text = format!("{error} {}", description.as_deref().unwrap_or_default());
        if error == "invalid_target" || text.contains("resource") || text.contains("audience") {
            return IdentityError::ProviderMismatch(format!(
                "the identity provider refused the sign-in: {error}{}; {}",
                description
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default(),
                provider.audience_advice()
            ));
        }
    }
    err
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{SystemTime, UNIX_EPOCH};

    fn claims(auth_time: Option<serde_json::Value>) -> serde_json::Map<String, serde_json::Value> {
        let mut m = serde_json::Map::new();
        m.insert("sub".into(), "bob".into());
        if let Some(t) = auth_time {
            m.insert("auth_time".into(), t);
        }
        m
    }

    const SKEW: Duration = Duration::from_secs(60);

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    #[test]
    fn an_approver_sign_in_is_fresh_only_with_a_password_entered_after_it_began() {
        let started = at(1_800_000_000);
        // Entered after the sign-in began: fresh.
        assert!(check_fresh(&claims(Some(1_800_000_030.into())), started, SKEW).is_ok());
        // A little before, within the clock skew allowed: fresh.
        assert!(check_fresh(&claims(Some(1_799_999_950.into())), started, SKEW).is_ok());
        // An hour before: an IdP session reused, not a fresh sign-in.
        let err = check_fresh(&claims(Some(1_799_996_400.into())), started, SKEW).unwrap_err();
        assert!(
            matches!(err, IdentityError::IdToken(IdTokenError::NotFresh(_))),
            "{err}"
        );
        assert!(err.to_string().contains("3600s before"), "{err}");
        // No auth_time at all although max_age was sent: not proven fresh.
        let err = check_fresh(&claims(None), started, SKEW).unwrap_err();
        assert!(err.to_string().contains("no auth_time"), "{err}");
        assert!(err.to_string().contains("prompt=login"), "{err}");
    }
}
