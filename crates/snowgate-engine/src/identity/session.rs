//! The signed-in session: the refresh token, the cached access tokens, and the one lock that
//! every refresh goes through.
//!
//! # One refresh at a time
//! Every refresh grant rotates the refresh token, and the IdP treats a rotated token presented
//! again as theft: it revokes the whole grant. Two refreshes in flight at once, even for
//! different roles, would both present the same token. So the refresh token lives inside
//! [`Session::grant`], a `tokio` mutex, and a refresh happens only while holding it. Callers
//! that find their token stale queue on the lock; whoever gets it first re-checks the cache
//! (another caller may have just refreshed the same token) and refreshes only if it is still
//! stale. Concurrent callers thus share one refresh per token, and refreshes are serialized.
//!
//! # Persist before use
//! When the IdP rotates the refresh token, the new one is written to the vault before it
//! replaces the old one in memory and before the new access token is handed out. If the vault
//! write fails, the new token is kept in memory (the old one is dead at the IdP already), the
//! session goes on until the broker stops, and a `VaultWriteFailed` event says so.
//!
//! # Failures
//! `invalid_grant` means the refresh token was revoked, expired or reused: the user is signed
//! out (memory, vault entry and profile cleared) with a `SignedOut` event that says why. An
//! unreachable IdP (no connection, timeout, 5xx, garbled answer) puts the session into
//! "offline, retrying": retries back off from 1 s to 30 s, and access tokens that have not yet
//! expired keep being handed out even when they are past their refresh point.
//!
//! Why one long file: the refresh lock, the token caches and sign-out share one state and one
//! lock order; split across files, the rule "every refresh goes through the one lock" could no
//! longer be checked by reading one place.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use chrono::{DateTime, Utc};
use openidconnect::Nonce;
use rand::Rng;
use tokio::sync::{broadcast, Mutex, Notify, OnceCell};

use super::clock::Clock;
use super::error::IdentityError;
use super::events::{
    IdentityEvent, IdentityStatus, RoleTokenInfo, SignOutReason, TokenKind, WhoAmI,
};
use super::http::IdpHttp;
use super::oidc::{OidcClient, OidcSettings, RefreshTarget, TokenSet};
use super::profile::{Profile, ProfileStore};
use super::schedule::{Backoff, Lifetime};
use super::secrets::{AccessToken, IdTokenValue, RefreshToken};
use super::vault::{KeyringVault, Vault, VaultError, VaultKey};

/// How long one vault call may take before the keyring counts as unreachable.
pub const VAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// The lifetime assumed for an access token whose lifetime the IdP did not state.
const ASSUMED_LIFETIME: Duration = Duration::from_secs(60);
/// How long the background task waits before retrying a refresh the IdP refused (other than
/// `invalid_grant`, which signs out).
const REFUSED_RETRY: Duration = Duration::from_secs(30);

/// Settings derived from the config once.
#[derive(Debug, Clone)]
pub(crate) struct SessionSettings {
    pub oidc: OidcSettings,
    /// The scopes asked for at sign-in (config scopes, groups, one per role).
    pub login_scopes: Vec<String>,
    /// The configured role names.
    pub roles: Vec<String>,
    pub groups_claim: String,
    /// The claim that names the Snowflake user (`[snowflake] user_claim`); its value is kept
    /// in the profile when it is not `sub`, `email` or `name`.
    pub user_claim: String,
    /// Whether the broker runs in team mode (Snowflake tokens come from the team server).
    pub team_mode: bool,
    pub device_poll_interval: Option<Duration>,
    pub login_timeout: Duration,
}

/// The refresh token and whose it is. Only touched while holding [`Session::grant`].
#[derive(Default)]
pub(crate) struct Grant {
    refresh: Option<RefreshToken>,
    key: Option<VaultKey>,
}

#[derive(Clone)]
struct Cached {
    token: AccessToken,
    life: Lifetime,
}

struct Offline {
    since: SystemTime,
    last_error: String,
    backoff: Backoff,
    next_retry_at: SystemTime,
}

/// What the synchronous readers (`status`, `whoami`, the cache fast path) see.
#[derive(Default)]
struct View {
    profile: Option<Profile>,
    refresh_present: bool,
    idp: Option<Cached>,
    idp_refresh_at: Option<SystemTime>,
    snowflake: HashMap<String, Cached>,
    team: Option<Cached>,
    offline: Option<Offline>,
    /// Why the last sign-in failed, until one succeeds (for `snowgate doctor`).
    last_sign_in_failure: Option<String>,
}

/// The shared state of one [`Identity`](super::Identity).
pub(crate) struct Session {
    pub settings: SessionSettings,
    http: IdpHttp,
    oidc: OnceCell<Arc<OidcClient>>,
    pub vault: Arc<dyn Vault>,
    pub clock: Arc<dyn Clock>,
    profiles: ProfileStore,
    events: broadcast::Sender<IdentityEvent>,
    /// The refresh lock. See the module docs.
    grant: Mutex<Grant>,
    view: RwLock<View>,
    /// Poked whenever the background task should look at the schedule again.
    pub wake: Notify,
    pub pending_logins: AtomicUsize,
}

/// A wall-clock time as a UTC timestamp (for events and `whoami`).
pub(crate) fn to_utc(t: SystemTime) -> DateTime<Utc> {
    DateTime::<Utc>::from(t)
}

impl Session {
    pub fn new(
        settings: SessionSettings,
        http: IdpHttp,
        vault: Arc<dyn Vault>,
        clock: Arc<dyn Clock>,
        profiles: ProfileStore,
    ) -> Session {
        Session {
            settings,
            http,
            oidc: OnceCell::new(),
            vault,
            clock,
            profiles,
            events: broadcast::channel(64).0,
            grant: Mutex::new(Grant::default()),
            view: RwLock::new(View::default()),
            wake: Notify::new(),
            pending_logins: AtomicUsize::new(0),
        }
    }

    /// The OIDC client, discovering the IdP on first use (and again after a failed attempt).
    pub async fn oidc(&self) -> Result<Arc<OidcClient>, IdentityError> {
        self.oidc
            .get_or_try_init(|| async {
                OidcClient::discover(
                    self.settings.oidc.clone(),
                    self.http.clone(),
                    self.clock.clone(),
                )
                .await
                .map(Arc::new)
            })
            .await
            .cloned()
    }

    pub fn subscribe(&self) -> broadcast::Receiver<IdentityEvent> {
        self.events.subscribe()
    }

    fn emit(&self, event: IdentityEvent) {
        tracing::debug!(?event, "identity event");
        let _ = self.events.send(event);
    }

    /// Runs a vault call on a blocking thread, with [`VAULT_TIMEOUT`].
    pub async fn vault_call<T, F>(&self, f: F) -> Result<T, VaultError>
    where
        T: Send + 'static,
        F: FnOnce(&dyn Vault) -> Result<T, VaultError> + Send + 'static,
    {
        let vault = self.vault.clone();
        match tokio::time::timeout(
            VAULT_TIMEOUT,
            tokio::task::spawn_blocking(move || f(&*vault)),
        )
        .await
        {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(VaultError::Unavailable {
                backend: KeyringVault::backend(),
                reason: "the keyring call failed unexpectedly".into(),
            }),
            Err(_) => Err(VaultError::Unavailable {
                backend: KeyringVault::backend(),
                reason: format!(
                    "it did not answer within {} s; it may be waiting for an unlock prompt",
                    VAULT_TIMEOUT.as_secs()
                ),
            }),
        }
    }

    /// Restores a sign-in from the profile on disk and the vault. A profile for another
    /// issuer or client, or without a vault entry, is removed.
    pub async fn restore(&self) -> Result<(), IdentityError> {
        let Some(profile) = self.profiles.load() else {
            return Ok(());
        };
        if profile.issuer != self.settings.oidc.issuer
            || profile.client_id != self.settings.oidc.client_id
        {
            tracing::info!(issuer = %profile.issuer, "the saved sign-in is for another IdP or client; ignoring it");
            return Ok(());
        }
        let key = profile.vault_key();
        let lookup = key.clone();
        match self.vault_call(move |v| v.load(&lookup)).await? {
            Some(refresh) => {
                tracing::info!(subject = %profile.subject, vault = %self.vault.kind(), "restored the sign-in");
                let mut grant = self.grant.lock().await;
                grant.refresh = Some(refresh);
                grant.key = Some(key);
                let mut view = self.view.write().expect("view lock");
                view.profile = Some(profile);
                view.refresh_present = true;
            }
            None => {
                tracing::info!(subject = %profile.subject, "no refresh token in the vault for the saved sign-in; signed out");
                self.profiles.remove()?;
            }
        }
        Ok(())
    }

    // ---------------------------------------------------------------------------------------
    // Reading

    pub fn status(&self) -> IdentityStatus {
        let view = self.view.read().expect("view lock");
        match (&view.profile, &view.offline) {
            (Some(p), Some(off)) => IdentityStatus::OfflineRetrying {
                subject: p.subject.clone(),
                since: to_utc(off.since),
                last_error: off.last_error.clone(),
                next_retry_at: to_utc(off.next_retry_at),
            },
            (Some(p), None) => IdentityStatus::SignedIn {
                subject: p.subject.clone(),
            },
            (None, _) if self.pending_logins.load(Ordering::SeqCst) > 0 => {
                IdentityStatus::SigningIn
            }
            (None, _) => IdentityStatus::SignedOut,
        }
    }

    pub fn whoami(&self) -> Option<WhoAmI> {
        let view = self.view.read().expect("view lock");
        let p = view.profile.as_ref()?;
        let mut snowflake_tokens: Vec<RoleTokenInfo> = view
            .snowflake
            .iter()
            .map(|(role, c)| RoleTokenInfo {
                role: role.clone(),
                expires_at: to_utc(c.life.expires_at),
            })
            .collect();
        snowflake_tokens.sort_by(|a, b| a.role.cmp(&b.role));
        Some(WhoAmI {
            subject: p.subject.clone(),
            email: p.email.clone(),
            name: p.name.clone(),
            groups: p.groups.clone(),
            issuer: p.issuer.clone(),
            last_sign_in: p.last_sign_in,
            idp_access_token_expires_at: view.idp.as_ref().map(|c| to_utc(c.life.expires_at)),
            snowflake_tokens,
            refresh_token_present: view.refresh_present,
            vault: self.vault.kind(),
        })
    }

    pub fn profile(&self) -> Option<Profile> {
        self.view.read().expect("view lock").profile.clone()
    }

    fn cached(&self, target: &RefreshTarget) -> Option<Cached> {
        let view = self.view.read().expect("view lock");
        match target {
            RefreshTarget::Idp => view.idp.clone(),
            RefreshTarget::Snowflake { role } => view.snowflake.get(role).cloned(),
            RefreshTarget::TeamServer => view.team.clone(),
        }
    }

    fn fresh(&self, target: &RefreshTarget) -> Option<Cached> {
        let now = self.clock.now();
        self.cached(target).filter(|c| c.life.is_fresh(now))
    }

    // ---------------------------------------------------------------------------------------
    // Tokens

    /// An access token for `target`: from the cache while fresh, else through one refresh
    /// under the lock. While the IdP is unreachable, an unexpired cached token is returned.
    pub async fn access_token(
        &self,
        target: RefreshTarget,
    ) -> Result<(AccessToken, SystemTime), IdentityError> {
        if let Some(c) = self.fresh(&target) {
            return Ok((c.token, c.life.expires_at));
        }
        let mut grant = self.grant.lock().await;
        // Whoever held the lock before may have refreshed this very token.
        if let Some(c) = self.fresh(&target) {
            return Ok((c.token, c.life.expires_at));
        }
        if grant.refresh.is_none() {
            return Err(IdentityError::NotSignedIn);
        }
        let now = self.clock.now();
        if let Some(err) = self.offline_gate(now) {
            return self.unexpired_or(&target, now, err);
        }
        match self.refresh_locked(&mut grant, &target).await {
            Ok(c) => Ok((c.token, c.life.expires_at)),
            Err(e) if e.is_transient() => {
                let now = self.clock.now();
                let err = self.offline_gate(now).unwrap_or(e);
                self.unexpired_or(&target, now, err)
            }
            Err(e) => Err(e),
        }
    }

    /// While offline and before the next retry: the error to give instead of trying.
    fn offline_gate(&self, now: SystemTime) -> Option<IdentityError> {
        let view = self.view.read().expect("view lock");
        let off = view.offline.as_ref()?;
        (now < off.next_retry_at).then(|| IdentityError::Offline {
            since: off.since,
            last_error: off.last_error.clone(),
        })
    }

    fn unexpired_or(
        &self,
        target: &RefreshTarget,
        now: SystemTime,
        err: IdentityError,
    ) -> Result<(AccessToken, SystemTime), IdentityError> {
        match self.cached(target).filter(|c| c.life.is_unexpired(now)) {
            Some(c) => {
                tracing::debug!(
                    ?target,
                    "the IdP is unreachable; handing out the cached token until it expires"
                );
                Ok((c.token, c.life.expires_at))
            }
            None => Err(err),
        }
    }

    /// A fresh ID token: one refresh grant for the IdP's own token, under the refresh lock,
    /// whose answer's ID token is returned (the team server exchanges it for a session).
    pub async fn fresh_id_token(&self) -> Result<IdTokenValue, IdentityError> {
        let mut grant = self.grant.lock().await;
        if grant.refresh.is_none() {
            return Err(IdentityError::NotSignedIn);
        }
        if let Some(err) = self.offline_gate(self.clock.now()) {
            return Err(err);
        }
        let (_, id_token) = self
            .refresh_locked_with_id(&mut grant, &RefreshTarget::Idp)
            .await?;
        id_token.ok_or(IdentityError::NoIdToken)
    }

    /// One refresh of the IdP's own token, under the refresh lock, for `snowgate doctor`:
    /// whether the IdP answered with a new refresh token (rotation).
    pub async fn refresh_rotates(&self) -> Result<bool, IdentityError> {
        let mut grant = self.grant.lock().await;
        let before = grant.refresh.clone().ok_or(IdentityError::NotSignedIn)?;
        self.refresh_locked(&mut grant, &RefreshTarget::Idp).await?;
        Ok(grant.refresh.as_ref().is_some_and(|after| *after != before))
    }

    /// One refresh grant for `target`. Must be called with the refresh lock held (`grant`).
    async fn refresh_locked(
        &self,
        grant: &mut Grant,
        target: &RefreshTarget,
    ) -> Result<Cached, IdentityError> {
        self.refresh_locked_with_id(grant, target)
            .await
            .map(|(cached, _)| cached)
    }

    /// [`Session::refresh_locked`], also returning the answer's ID token.
    async fn refresh_locked_with_id(
        &self,
        grant: &mut Grant,
        target: &RefreshTarget,
    ) -> Result<(Cached, Option<IdTokenValue>), IdentityError> {
        let refresh = grant.refresh.clone().ok_or(IdentityError::NotSignedIn)?;
        tracing::debug!(?target, "refreshing");
        let result = match self.oidc().await {
            Ok(oidc) => oidc.refresh(&refresh, target).await,
            Err(e) => Err(e),
        };
        let set = match result {
            Ok(set) => set,
            Err(IdentityError::Refused { error, .. }) if error == "invalid_grant" => {
                tracing::info!("the IdP refused the refresh token (invalid_grant); signing out");
                let _ = self.sign_out_locked(grant, SignOutReason::Revoked).await;
                return Err(IdentityError::Revoked);
            }
            Err(e) if e.is_transient() => {
                self.mark_offline(&e);
                return Err(e);
            }
            Err(e) => return Err(e),
        };
        if let Some(rotated) = set.refresh_token.clone().filter(|new| *new != refresh) {
            // Persist before use: see the module docs.
            if let Some(key) = grant.key.clone() {
                let token = rotated.clone();
                if let Err(e) = self.vault_call(move |v| v.store(&key, &token)).await {
                    tracing::warn!(error = %e, "could not save the rotated refresh token; keeping it in memory");
                    self.emit(IdentityEvent::VaultWriteFailed {
                        error: e.to_string(),
                    });
                }
            }
            grant.refresh = Some(rotated);
            tracing::debug!("the refresh token was rotated and saved");
        }
        let cached = self.cache(target, &set);
        self.mark_online();
        self.emit(IdentityEvent::TokensRefreshed {
            token: match target {
                RefreshTarget::Idp => TokenKind::Idp,
                RefreshTarget::Snowflake { role } => TokenKind::Snowflake { role: role.clone() },
                RefreshTarget::TeamServer => TokenKind::TeamServer,
            },
            expires_at: to_utc(cached.life.expires_at),
        });
        self.wake.notify_one();
        Ok((cached, set.id_token))
    }

    fn cache(&self, target: &RefreshTarget, set: &TokenSet) -> Cached {
        let now = self.clock.now();
        let lifetime = set
            .expires_in
            .or_else(|| jwt_lifetime(set.access_token.expose_secret(), now))
            .unwrap_or(ASSUMED_LIFETIME);
        let cached = Cached {
            token: set.access_token.clone(),
            life: Lifetime::starting(now, lifetime),
        };
        let mut view = self.view.write().expect("view lock");
        match target {
            RefreshTarget::Idp => {
                let jitter = rand::thread_rng().gen_range(-1.0..=1.0);
                view.idp_refresh_at = Some(cached.life.refresh_at(jitter));
                view.idp = Some(cached.clone());
            }
            RefreshTarget::Snowflake { role } => {
                view.snowflake.insert(role.clone(), cached.clone());
            }
            RefreshTarget::TeamServer => view.team = Some(cached.clone()),
        }
        cached
    }

    fn mark_offline(&self, err: &IdentityError) {
        let now = self.clock.now();
        let message = err.to_string();
        let mut view = self.view.write().expect("view lock");
        let first = view.offline.is_none();
        let off = view.offline.get_or_insert_with(|| Offline {
            since: now,
            last_error: String::new(),
            backoff: Backoff::new(),
            next_retry_at: now,
        });
        let delay = off.backoff.fail();
        off.last_error = message.clone();
        off.next_retry_at = now + delay;
        drop(view);
        tracing::warn!(error = %message, retry_in = ?delay, "the IdP is unreachable; retrying");
        if first {
            self.emit(IdentityEvent::Offline { error: message });
        }
        self.wake.notify_one();
    }

    fn mark_online(&self) {
        let was_offline = self
            .view
            .write()
            .expect("view lock")
            .offline
            .take()
            .is_some();
        if was_offline {
            tracing::info!("the IdP answers again");
            self.emit(IdentityEvent::Online);
        }
    }

    // ---------------------------------------------------------------------------------------
    // Background refresh

    /// When the background task should act next; `None` while signed out.
    pub fn next_due(&self) -> Option<SystemTime> {
        let view = self.view.read().expect("view lock");
        if !view.refresh_present {
            return None;
        }
        if let Some(off) = &view.offline {
            return Some(off.next_retry_at);
        }
        Some(match (&view.idp, view.idp_refresh_at) {
            (Some(_), Some(at)) => at,
            // Restored or just refused: refresh now (or at the retry time set below).
            (_, at) => at.unwrap_or_else(|| self.clock.now()),
        })
    }

    /// Refreshes the IdP access token if it is due.
    pub async fn background_refresh(&self) {
        let mut grant = self.grant.lock().await;
        let now = self.clock.now();
        match self.next_due() {
            Some(due) if due <= now => {}
            _ => return,
        }
        match self.refresh_locked(&mut grant, &RefreshTarget::Idp).await {
            Ok(_) => {}
            Err(e) if e.is_transient() => {}
            Err(IdentityError::Revoked) | Err(IdentityError::NotSignedIn) => {}
            Err(e) => {
                tracing::warn!(error = %e, "the background refresh failed; trying again later");
                self.view.write().expect("view lock").idp_refresh_at =
                    Some(self.clock.now() + REFUSED_RETRY);
            }
        }
    }

    // ---------------------------------------------------------------------------------------
    // Signing in and out

    /// Finishes a sign-in: verifies the ID token, reads the user's claims (from userinfo too
    /// where the ID token lacks them), checks that the provider did what the preset says (no
    /// groups overage, groups in the configured form, and in solo mode a Snowflake token that
    /// carries the first role's scope), stores the refresh token in the vault, writes the
    /// profile, and makes this the current session. A failed check revokes the refresh token.
    pub async fn complete_sign_in(
        &self,
        set: TokenSet,
        nonce: Option<&Nonce>,
    ) -> Result<Profile, IdentityError> {
        let oidc = self.oidc().await?;
        let id_token = set.id_token.clone().ok_or(IdentityError::NoIdToken)?;
        let verified = oidc.verify_id_token(&id_token, nonce).await?;
        let Some(mut refresh) = set.refresh_token.clone() else {
            return Err(self.no_refresh_token(false));
        };
        let checked = async {
            let profile = self.read_profile(&oidc, &set, &verified).await?;
            self.probe_snowflake_token(&oidc, &mut refresh).await?;
            Ok::<_, IdentityError>(profile)
        }
        .await;
        let profile = match checked {
            Ok(x) => x,
            Err(e) => {
                let _ = oidc.revoke(&refresh).await;
                return Err(e);
            }
        };
        let key = profile.vault_key();

        let mut grant = self.grant.lock().await;
        if let Some(old) = grant.key.clone().filter(|old| *old != key) {
            if let Err(e) = self.vault_call(move |v| v.delete(&old)).await {
                tracing::warn!(error = %e, "could not remove the previous sign-in's vault entry");
            }
        }
        let (k, t) = (key.clone(), refresh.clone());
        if let Err(e) = self.vault_call(move |v| v.store(&k, &t)).await {
            // Do not leave a live grant at the IdP that nothing holds.
            let _ = oidc.revoke(&refresh).await;
            return Err(e.into());
        }
        if let Err(e) = self.profiles.save(&profile) {
            let k = key.clone();
            let _ = self.vault_call(move |v| v.delete(&k)).await;
            let _ = oidc.revoke(&refresh).await;
            return Err(e);
        }
        grant.refresh = Some(refresh);
        grant.key = Some(key);
        {
            let mut view = self.view.write().expect("view lock");
            *view = View {
                profile: Some(profile.clone()),
                refresh_present: true,
                last_sign_in_failure: None,
                ..View::default()
            };
        }
        self.cache(&RefreshTarget::Idp, &set);
        drop(grant);
        tracing::info!(subject = %profile.subject, groups = ?profile.groups, vault = %self.vault.kind(), "signed in");
        self.emit(IdentityEvent::SignedIn {
            subject: profile.subject.clone(),
        });
        self.wake.notify_one();
        Ok(profile)
    }

    /// Remembers why a sign-in failed, for `snowgate doctor` (the message names the fix; it
    /// holds no token).
    pub fn record_sign_in_failure(&self, error: &IdentityError) {
        self.view.write().expect("view lock").last_sign_in_failure = Some(error.to_string());
    }

    /// Why the last sign-in failed, unless one succeeded since.
    pub fn last_sign_in_failure(&self) -> Option<String> {
        self.view
            .read()
            .expect("view lock")
            .last_sign_in_failure
            .clone()
    }

    /// The error for a sign-in that brought no refresh token; `after_consent` when Snowgate
    /// already asked again with the provider's consent page.
    pub fn no_refresh_token(&self, after_consent: bool) -> IdentityError {
        let provider = &self.settings.oidc.provider;
        if !provider.asks_offline(&self.settings.login_scopes) {
            return IdentityError::NoRefreshToken {
                advice: "add `offline_access` to identity.scopes".into(),
            };
        }
        let how = match provider.offline_access {
            super::preset::OfflineAccess::Scope => "the offline_access scope",
            super::preset::OfflineAccess::AccessType => "access_type=offline",
        };
        if provider.provider == super::preset::Provider::Generic
            && provider.consent_prompt == super::preset::ConsentPrompt::Never
            && provider.offline_access == super::preset::OfflineAccess::Scope
        {
            return IdentityError::NoRefreshToken {
                advice: format!(
                    "Snowgate asked for one with the offline_access scope but without the provider's consent page (consent_prompt = \"never\"), and providers that follow OpenID Connect strictly grant offline_access only with prompt=consent: set identity.consent_prompt = \"retry\" (the default) or \"always\"; otherwise {}",
                    provider.no_refresh_token_advice()
                ),
            };
        }
        let again = if after_consent {
            ", and again with the provider's consent page"
        } else {
            ""
        };
        IdentityError::NoRefreshToken {
            advice: format!(
                "Snowgate asked for one with {how}{again}; {}",
                provider.no_refresh_token_advice()
            ),
        }
    }

    /// The signed-in user's profile from a verified ID token, completed from userinfo where
    /// the ID token lacks the groups, email, name or user claim (providers that follow OpenID
    /// Connect strictly put only `sub` into an ID token issued with an access token).
    pub(crate) async fn read_profile(
        &self,
        oidc: &OidcClient,
        set: &TokenSet,
        verified: &super::oidc::VerifiedIdToken,
    ) -> Result<Profile, IdentityError> {
        let provider = &self.settings.oidc.provider;
        let groups_claim = &self.settings.groups_claim;
        let user_claim = &self.settings.user_claim;
        let mut claims = verified.claims.clone();
        super::checks::no_groups_overage(&claims, provider)?;
        let wants_groups = provider.groups_form != super::preset::GroupsForm::None;
        let missing = (wants_groups && !claims.contains_key(groups_claim))
            || !claims.contains_key("email")
            || !claims.contains_key("name")
            || !claims.contains_key(user_claim);
        if missing {
            match oidc.userinfo(&set.access_token, &verified.subject).await {
                Ok(info) => {
                    super::checks::no_groups_overage(&info, provider)?;
                    for (k, v) in info {
                        claims.entry(k).or_insert(v);
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the ID token lacks claims Snowgate reads and userinfo failed; going on without them");
                }
            }
        }
        let text = |name: &str| {
            claims
                .get(name)
                .and_then(|v| v.as_str())
                .map(str::to_string)
        };
        let groups = claims.get(groups_claim).map(groups_of).unwrap_or_default();
        super::checks::groups_in_configured_form(&groups, provider, true)?;
        let mut extra = std::collections::BTreeMap::new();
        if !matches!(user_claim.as_str(), "sub" | "email" | "name") {
            if let Some(v) = text(user_claim) {
                extra.insert(user_claim.clone(), v);
            }
        }
        Ok(Profile {
            subject: verified.subject.clone(),
            email: text("email"),
            name: text("name"),
            groups,
            issuer: self.settings.oidc.issuer.clone(),
            client_id: self.settings.oidc.client_id.clone(),
            last_sign_in: to_utc(self.clock.now()),
            claims: extra,
        })
    }

    /// In solo mode, asks for a Snowflake token for the first configured role and checks that
    /// it carries the role's scope, so a provider that ignored how the Snowflake audience was
    /// asked for is caught at sign-in, not at the first query. The refresh token it rotated
    /// replaces `refresh`; the access token is dropped (the first use asks for its own).
    async fn probe_snowflake_token(
        &self,
        oidc: &OidcClient,
        refresh: &mut RefreshToken,
    ) -> Result<(), IdentityError> {
        let Some(role) = self
            .settings
            .roles
            .first()
            .filter(|_| !self.settings.team_mode)
        else {
            return Ok(());
        };
        let target = RefreshTarget::Snowflake { role: role.clone() };
        let provider = &self.settings.oidc.provider;
        let set = match oidc.refresh(refresh, &target).await {
            Ok(set) => set,
            Err(IdentityError::Refused {
                error, description, ..
            }) => {
                return Err(IdentityError::ProviderMismatch(format!(
                "the identity provider refused a Snowflake token for role {role}: {error}{}; {}",
                description.map(|d| format!(" ({d})")).unwrap_or_default(),
                provider.audience_advice()
            )))
            }
            Err(e) => return Err(e),
        };
        if let Some(rotated) = set.refresh_token.clone() {
            *refresh = rotated;
        }
        super::checks::carries_role(set.access_token.expose_secret(), role, provider)
    }

    /// Signs out, revoking the refresh token at the IdP first. Local state is cleared even when
    /// the IdP cannot be reached; the returned report says whether revocation happened.
    pub async fn logout(&self) -> Result<LogoutReport, IdentityError> {
        let mut grant = self.grant.lock().await;
        let Some(refresh) = grant.refresh.clone() else {
            self.profiles.remove()?;
            return Ok(LogoutReport {
                was_signed_in: false,
                revoked: false,
                revocation_error: None,
            });
        };
        let revoked = match self.oidc().await {
            Ok(oidc) => oidc.revoke(&refresh).await,
            Err(e) => Err(e),
        };
        if let Err(e) = &revoked {
            tracing::warn!(error = %e, "could not revoke the refresh token at the IdP; signing out locally");
        }
        let vault_result = self
            .sign_out_locked(&mut grant, SignOutReason::Logout)
            .await;
        vault_result?;
        Ok(LogoutReport {
            was_signed_in: true,
            revoked: revoked.is_ok(),
            revocation_error: revoked.err().map(|e| e.to_string()),
        })
    }

    /// Clears the session: memory, vault entry, profile. Emits `SignedOut`.
    async fn sign_out_locked(
        &self,
        grant: &mut Grant,
        reason: SignOutReason,
    ) -> Result<(), IdentityError> {
        grant.refresh = None;
        let key = grant.key.take();
        let subject = {
            let mut view = self.view.write().expect("view lock");
            let subject = view.profile.as_ref().map(|p| p.subject.clone());
            *view = View::default();
            subject
        };
        let mut result = Ok(());
        if let Some(key) = key {
            if let Err(e) = self.vault_call(move |v| v.delete(&key)).await {
                tracing::warn!(error = %e, "could not remove the refresh token from the vault");
                result = Err(e.into());
            }
        }
        if let Err(e) = self.profiles.remove() {
            tracing::warn!(error = %e, "could not remove the sign-in profile");
            result = result.and(Err(e));
        }
        tracing::info!(subject = ?subject, %reason, "signed out");
        self.emit(IdentityEvent::SignedOut {
            reason,
            message: reason.message().to_string(),
        });
        self.wake.notify_one();
        result
    }
}

/// What a logout did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LogoutReport {
    /// Whether anyone was signed in.
    pub was_signed_in: bool,
    /// Whether the IdP revoked the refresh token.
    pub revoked: bool,
    /// Why revocation did not happen, when it did not.
    pub revocation_error: Option<String>,
}

impl LogoutReport {
    /// The sentence to show.
    pub fn message(&self) -> String {
        match (self.was_signed_in, self.revoked, &self.revocation_error) {
            (false, _, _) => "Nobody was signed in.".into(),
            (true, true, _) => "Signed out; the IdP revoked the sign-in.".into(),
            (true, false, Some(e)) => format!(
                "Signed out on this machine, but the IdP could not revoke the sign-in ({e}); it ends when the refresh token expires."
            ),
            (true, false, None) => "Signed out on this machine.".into(),
        }
    }
}

/// Groups from a claim value: an array of strings, or one string.
pub(crate) fn groups_of(value: &serde_json::Value) -> Vec<String> {
    match value {
        serde_json::Value::Array(items) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        serde_json::Value::String(s) => vec![s.clone()],
        _ => Vec::new(),
    }
}

/// The remaining life of a JWT access token, from its `exp` (unverified: used only to decide
/// how long to cache it).
fn jwt_lifetime(token: &str, now: SystemTime) -> Option<Duration> {
    let payload = token.split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    let claims: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = SystemTime::UNIX_EPOCH + Duration::from_secs(claims.get("exp")?.as_u64()?);
    exp.duration_since(now).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::clock::ManualClock;
    use crate::identity::vault::MemoryVault;

    /// A signed-in session on a manual clock, with no IdP behind it (nothing here may call it).
    async fn session(clock: Arc<ManualClock>) -> Session {
        let dir = std::env::temp_dir();
        let settings = SessionSettings {
            oidc: OidcSettings {
                issuer: "https://idp.invalid".into(),
                client_id: "snowgate-desktop".into(),
                client_secret: None,
                snowflake_audience: "https://snowflake.invalid".into(),
                clock_skew: Duration::from_secs(60),
                provider: Default::default(),
            },
            login_scopes: vec!["openid".into()],
            roles: vec!["ANALYST".into()],
            groups_claim: "groups".into(),
            user_claim: "sub".into(),
            team_mode: false,
            device_poll_interval: None,
            login_timeout: Duration::from_secs(1),
        };
        let http = IdpHttp::new(super::super::http::build_client(None).unwrap());
        let s = Session::new(
            settings,
            http,
            Arc::new(MemoryVault::new()),
            clock,
            ProfileStore::new(&dir.join("snowgate-session-unit-test-never-written")),
        );
        s.grant.lock().await.refresh = Some(RefreshToken::new("rt"));
        {
            let mut view = s.view.write().unwrap();
            view.refresh_present = true;
            view.profile = Some(Profile {
                subject: "alice".into(),
                email: None,
                name: None,
                groups: vec![],
                issuer: "https://idp.invalid".into(),
                client_id: "snowgate-desktop".into(),
                last_sign_in: Utc::now(),
                claims: Default::default(),
            });
        }
        s
    }

    fn tokens(value: &str, lifetime: u64) -> TokenSet {
        TokenSet {
            access_token: AccessToken::new(value),
            refresh_token: None,
            id_token: None,
            expires_in: Some(Duration::from_secs(lifetime)),
            scope: None,
        }
    }

    #[tokio::test]
    async fn the_idp_token_is_due_for_refresh_at_three_quarters_of_its_life() {
        let clock = Arc::new(ManualClock::starting_now());
        let s = session(clock.clone()).await;
        let start = clock.now();
        // Restored, no access token yet: due at once.
        assert_eq!(s.next_due(), Some(start));
        s.cache(&RefreshTarget::Idp, &tokens("at", 300));
        let due = s.next_due().unwrap();
        assert!(due >= start + Duration::from_secs(210), "{due:?}");
        assert!(due <= start + Duration::from_secs(240), "{due:?}");
        assert!(s.fresh(&RefreshTarget::Idp).is_some());
        clock.advance(Duration::from_secs(271));
        assert!(
            s.fresh(&RefreshTarget::Idp).is_none(),
            "stale 30 s before expiry"
        );
        // Signed out: nothing is due.
        s.view.write().unwrap().refresh_present = false;
        assert_eq!(s.next_due(), None);
    }

    #[tokio::test]
    async fn offline_serves_unexpired_tokens_until_they_expire_and_backs_off() {
        let clock = Arc::new(ManualClock::starting_now());
        let s = session(clock.clone()).await;
        let mut events = s.subscribe();
        let role = RefreshTarget::Snowflake {
            role: "ANALYST".into(),
        };
        s.cache(&role, &tokens("jwt-analyst", 100));
        let unreachable = IdentityError::Unreachable {
            what: "refresh",
            reason: "could not connect".into(),
        };
        s.mark_offline(&unreachable);
        assert!(matches!(
            events.try_recv(),
            Ok(IdentityEvent::Offline { .. })
        ));
        let start = clock.now();
        assert_eq!(s.next_due(), Some(start + Duration::from_secs(1)));
        s.mark_offline(&unreachable);
        assert_eq!(s.next_due(), Some(start + Duration::from_secs(2)));
        assert!(events.try_recv().is_err(), "one Offline event per outage");
        assert!(matches!(s.status(), IdentityStatus::OfflineRetrying { .. }));

        // Past the stale margin but before expiry, before the next retry: the cached token.
        clock.advance(Duration::from_millis(95_500));
        s.view
            .write()
            .unwrap()
            .offline
            .as_mut()
            .unwrap()
            .next_retry_at = clock.now() + Duration::from_secs(30);
        let (token, _) = s.access_token(role.clone()).await.unwrap();
        assert_eq!(token.expose_secret(), "jwt-analyst");
        // Expired: a clear offline error, still without asking the IdP.
        clock.advance(Duration::from_secs(5));
        let err = s.access_token(role.clone()).await.unwrap_err();
        assert!(matches!(err, IdentityError::Offline { .. }), "{err}");
        assert!(err.to_string().contains("could not connect"), "{err}");

        s.mark_online();
        assert!(matches!(events.try_recv(), Ok(IdentityEvent::Online)));
        assert_eq!(
            s.status(),
            IdentityStatus::SignedIn {
                subject: "alice".into()
            }
        );
    }

    #[test]
    fn groups_come_from_an_array_or_a_single_string() {
        assert_eq!(
            groups_of(&serde_json::json!(["analysts", "managers", 3])),
            ["analysts", "managers"]
        );
        assert_eq!(groups_of(&serde_json::json!("analysts")), ["analysts"]);
        assert!(groups_of(&serde_json::json!({"a": 1})).is_empty());
    }

    #[test]
    fn a_jwt_without_expires_in_is_cached_until_its_exp() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let payload = URL_SAFE_NO_PAD.encode(br#"{"exp":1300}"#);
        let jwt = format!("eyJhbGciOiJSUzI1NiJ9.{payload}.sig");
        assert_eq!(jwt_lifetime(&jwt, now), Some(Duration::from_secs(300)));
        assert_eq!(jwt_lifetime("opaque-token", now), None);
    }

    #[test]
    fn a_logout_that_could_not_revoke_says_so() {
        let r = LogoutReport {
            was_signed_in: true,
            revoked: false,
            revocation_error: Some("the IdP can't be reached".into()),
        };
        assert!(r.message().contains("could not revoke"), "{}", r.message());
    }
}
