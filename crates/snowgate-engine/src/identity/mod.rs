//! Signing in with the company's OpenID Connect provider, and keeping tokens fresh.
//!
//! [`Identity`] is the one entry point. It signs the user in through the browser
//! (authorization code + PKCE with a loopback redirect, RFC 8252) or the device flow
//! (RFC 8628), verifies the ID token fully, keeps the refresh token in a [`Vault`] (the OS
//! keyring, or memory in session-only mode), writes the non-secret [`Profile`] to the data
//! directory, and hands out access tokens: the IdP's own, and one Snowflake token per role
//! (a refresh grant with `resource=<snowflake_audience>` and `scope=session:role:<ROLE>`).
//!
//! Invariants that hold across the module:
//! - No token value reaches a log line, an error, an event or a file. Tokens live in the
//!   redacting types of [`secrets`]; errors carry the IdP's `error` and `error_description`.
//! - Every refresh goes through one lock, so no two refresh grants are ever in flight
//!   together (each rotates the refresh token; the IdP treats parallel use as reuse).
//! - A rotated refresh token is saved to the vault before it is used or the old one dropped.
//! - Time comes from the injected [`Clock`].
//!
//! Codemap: [`oidc`] (discovery, grants, ID-token checks) over [`http`]; [`loopback`] (the
//! redirect listener); [`login`] (sign-ins under way); [`session`] (the refresh lock, caches,
//! sign-out); [`refresh`] (the background task); [`schedule`] (when to refresh, backoff);
//! [`vault`], [`profile`], [`events`], [`error`], [`secrets`], [`clock`].

pub mod checks;
pub mod clock;
pub mod error;
pub mod events;
pub mod http;
pub mod id_token;
pub mod login;
pub mod loopback;
pub mod oidc;
pub mod preset;
pub mod profile;
pub mod refresh;
pub mod schedule;
pub mod secrets;
pub mod session;
pub mod vault;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast;

use crate::config::Config;

pub use clock::{Clock, ManualClock, SystemClock};
pub use error::{CallbackError, IdTokenError, IdentityError};
pub use events::{IdentityEvent, IdentityStatus, SignOutReason, TokenKind, WhoAmI};
pub use login::{PendingApproverLogin, PendingDeviceLogin, PendingLogin};
pub use profile::Profile;
pub use secrets::{AccessToken, IdTokenValue, IdpAccessToken, RefreshToken, SnowflakeToken};
pub use session::LogoutReport;
pub use vault::{KeyringVault, MemoryVault, Vault, VaultError, VaultKey, VaultKind};

use oidc::{normalize_issuer, OidcSettings, RefreshTarget};
use session::{Session, SessionSettings};

/// The broker's identity as it is now, shared with the services that read it (the gateway's
/// authorizer): none when the OS keyring could not be opened, replaced when a session-only
/// sign-in starts. Cheap to clone; every clone sees the same identity.
#[derive(Clone, Default)]
pub struct CurrentIdentity(Arc<std::sync::Mutex<Option<Identity>>>);

impl CurrentIdentity {
    /// Holds `identity`.
    pub fn new(identity: Option<Identity>) -> CurrentIdentity {
        CurrentIdentity(Arc::new(std::sync::Mutex::new(identity)))
    }

    /// The identity now, if there is one.
    pub fn get(&self) -> Option<Identity> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Replaces the identity for every holder.
    pub fn set(&self, identity: Identity) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(identity);
    }
}

/// How long a browser sign-in waits for the redirect, unless [`IdentityOptions`] says otherwise.
pub const DEFAULT_LOGIN_TIMEOUT: Duration = Duration::from_secs(5 * 60);

/// Knobs that are not in the config file.
#[derive(Debug, Clone)]
pub struct IdentityOptions {
    /// How long a browser sign-in waits for the redirect to the loopback listener.
    pub login_timeout: Duration,
}

impl Default for IdentityOptions {
    fn default() -> Self {
        IdentityOptions {
            login_timeout: DEFAULT_LOGIN_TIMEOUT,
        }
    }
}

/// The sign-in of the broker's user. Cheap to clone; all clones share one session, one
/// refresh lock and one background refresh task, which stops when the last clone is dropped.
#[derive(Clone)]
pub struct Identity {
    session: Arc<Session>,
    _task: Arc<refresh::RefreshTask>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("issuer", &self.session.settings.oidc.issuer)
            .field("status", &self.status())
            .finish()
    }
}

/// The scopes asked for at sign-in: the configured ones, `groups` when the groups claim is
/// `groups`, the provider has such a scope and it is not listed, and one role scope per
/// configured role (`session:role:<NAME>`, prefixed with the Snowflake audience where the
/// provider wants that), because a refresh grant cannot widen the scope later. Where the
/// provider asks for refresh tokens another way (`access_type=offline`), `offline_access` is
/// left out: such providers refuse it.
pub fn login_scopes(config: &Config) -> Vec<String> {
    let settings = config.identity.provider_settings();
    let mut scopes: Vec<String> = config
        .identity
        .scopes
        .iter()
        .map(|s| s.as_str().to_string())
        .filter(|s| {
            !(s == "offline_access" && settings.offline_access == preset::OfflineAccess::AccessType)
        })
        .collect();
    if !scopes.iter().any(|s| s == "openid") {
        scopes.insert(0, "openid".into());
    }
    let has_groups_scope = matches!(
        settings.provider,
        preset::Provider::Generic | preset::Provider::Okta | preset::Provider::Keycloak
    );
    if has_groups_scope
        && config.identity.groups_claim() == "groups"
        && !scopes.iter().any(|s| s == "groups")
    {
        scopes.push("groups".into());
    }
    let audience = config
        .identity
        .snowflake_audience
        .as_ref()
        .map(|a| a.as_str())
        .unwrap_or_default();
    for role in &config.roles {
        let scope = settings.role_scope(audience, role.name.get_ref().as_str());
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    scopes
}

impl Identity {
    /// Sets up the identity of the broker with default [`IdentityOptions`]. See
    /// [`Identity::with_options`].
    pub async fn new(
        config: &Config,
        data_dir: &Path,
        vault: Arc<dyn Vault>,
        clock: Arc<dyn Clock>,
    ) -> Result<Identity, IdentityError> {
        Identity::with_options(config, data_dir, vault, clock, IdentityOptions::default()).await
    }

    /// Sets up the identity of the broker and restores the previous sign-in, if
    /// `<data_dir>/profile.json` names one for this issuer and client and the vault still holds
    /// its refresh token: the user is then signed in at once, and the background task refreshes
    /// the IdP access token right away (an `invalid_grant` then signs out with an event).
    /// Nothing is sent to the IdP here; discovery happens on first use.
    ///
    /// Fails if the vault cannot be read (the error names session-only mode as the way on) or
    /// `extra_ca_file` is unusable. Must be called inside a Tokio runtime.
    pub async fn with_options(
        config: &Config,
        data_dir: &Path,
        vault: Arc<dyn Vault>,
        clock: Arc<dyn Clock>,
        options: IdentityOptions,
    ) -> Result<Identity, IdentityError> {
        let id = &config.identity;
        let settings = SessionSettings {
            oidc: OidcSettings {
                issuer: normalize_issuer(id.issuer.0.as_str()),
                client_id: id.client_id.as_str().to_string(),
                client_secret: id
                    .client_secret
                    .as_ref()
                    .map(|s| openidconnect::ClientSecret::new(s.expose().to_string())),
                snowflake_audience: match &config.team {
                    // The team server takes ID tokens: no access token is asked for.
                    Some(team) if team.auth == crate::config::TeamAuth::IdToken => String::new(),
                    Some(team) => team.effective_audience(),
                    None => id
                        .snowflake_audience
                        .as_ref()
                        .map(|a| a.as_str().to_string())
                        .unwrap_or_default(),
                },
                clock_skew: id.clock_skew.0,
                provider: id.provider_settings(),
            },
            login_scopes: login_scopes(config),
            roles: config
                .roles
                .iter()
                .map(|r| r.name.get_ref().as_str().to_string())
                .collect(),
            groups_claim: id.groups_claim().to_string(),
            user_claim: config.snowflake.default_account().user_claim().to_string(),
            team_mode: config.team.is_some(),
            device_poll_interval: id.device_poll_interval.map(|d| d.0),
            login_timeout: options.login_timeout,
        };
        let client = http::build_client(id.extra_ca_file.as_ref().map(|f| f.0.as_path()))?;
        let session = Arc::new(Session::new(
            settings,
            http::IdpHttp::new(client),
            vault,
            clock,
            profile::ProfileStore::new(data_dir),
        ));
        session.restore().await?;
        let task = Arc::new(refresh::spawn(session.clone()));
        Ok(Identity {
            session,
            _task: task,
        })
    }

    /// Starts a browser sign-in: discovers the IdP if needed, listens on a loopback port, and
    /// builds the authorization URL to open. Finish it with [`PendingLogin::wait`].
    pub async fn begin_browser_login(&self) -> Result<PendingLogin, IdentityError> {
        PendingLogin::start(self.clone()).await
    }

    /// Starts a device sign-in. Show its code and URL, then finish it with
    /// [`PendingDeviceLogin::wait`].
    pub async fn begin_device_login(&self) -> Result<PendingDeviceLogin, IdentityError> {
        PendingDeviceLogin::start(self.clone()).await
    }

    /// Starts an approver's fresh browser sign-in (`prompt=login`), separate from the user's
    /// sign-in, which it never touches. See [`PendingApproverLogin`].
    pub async fn begin_approver_login(&self) -> Result<PendingApproverLogin, IdentityError> {
        PendingApproverLogin::start(self.clone()).await
    }

    /// Signs out: revokes the refresh token at the IdP, deletes the vault entry and the
    /// profile, and drops every cached token. When the IdP cannot be reached the local
    /// sign-out still happens and the report says revocation was not done. Fails only if the
    /// vault entry or profile could not be removed (the session is cleared from memory anyway).
    pub async fn logout(&self) -> Result<LogoutReport, IdentityError> {
        self.session.logout().await
    }

    /// Who is signed in and which tokens are cached (never their values); `None` when signed
    /// out.
    pub fn whoami(&self) -> Option<WhoAmI> {
        self.session.whoami()
    }

    /// Why the last sign-in failed (its message names what to change), unless one succeeded
    /// since.
    pub fn last_sign_in_failure(&self) -> Option<String> {
        self.session.last_sign_in_failure()
    }

    /// The signed-in user's profile; `None` when signed out.
    pub fn profile(&self) -> Option<Profile> {
        self.session.profile()
    }

    /// Where the user stands: signed out, signing in, signed in, or offline and retrying.
    pub fn status(&self) -> IdentityStatus {
        self.session.status()
    }

    /// Which kind of vault keeps the refresh token.
    pub fn vault_kind(&self) -> VaultKind {
        self.session.vault.kind()
    }

    /// A Snowflake access token for `role`: a JWT for the Snowflake audience with
    /// `scp: session:role:<role>`. Cached until shortly before it expires; concurrent callers
    /// share one refresh. While the IdP is unreachable, an unexpired cached token is returned.
    pub async fn snowflake_token(&self, role: &str) -> Result<SnowflakeToken, IdentityError> {
        if !self.session.settings.roles.iter().any(|r| r == role) {
            return Err(IdentityError::UnknownRole {
                role: role.to_string(),
            });
        }
        let (token, expires_at) = self
            .session
            .access_token(RefreshTarget::Snowflake {
                role: role.to_string(),
            })
            .await?;
        Ok(SnowflakeToken {
            role: role.to_string(),
            token,
            expires_at,
        })
    }

    /// Drops the cached Snowflake token for `role` (Snowflake called it expired while this
    /// clock called it fresh), so the next [`Identity::snowflake_token`] refreshes.
    pub fn forget_snowflake_token(&self, role: &str) {
        self.session.forget(&RefreshTarget::Snowflake {
            role: role.to_string(),
        });
    }

    /// The IdP access token (for userinfo and the team server), refreshed as needed.
    pub async fn idp_access_token(&self) -> Result<IdpAccessToken, IdentityError> {
        let (token, expires_at) = self.session.access_token(RefreshTarget::Idp).await?;
        Ok(IdpAccessToken { token, expires_at })
    }

    /// An access token for the team server's API (`resource` = `[team]`'s audience), through
    /// the one refresh lock; cached until shortly before it expires.
    pub async fn team_server_token(&self) -> Result<IdpAccessToken, IdentityError> {
        let (token, expires_at) = self.session.access_token(RefreshTarget::TeamServer).await?;
        Ok(IdpAccessToken { token, expires_at })
    }

    /// A fresh ID token for the team server's exchange (`[team] auth = "id_token"`): one
    /// refresh grant through the one refresh lock; the IdP's answer carries a new ID token.
    pub async fn fresh_id_token(&self) -> Result<IdTokenValue, IdentityError> {
        self.session.fresh_id_token().await
    }

    /// One refresh of the IdP's own token through the one refresh lock; whether the refresh
    /// token was rotated (for `snowgate doctor`).
    pub async fn refresh_rotates(&self) -> Result<bool, IdentityError> {
        self.session.refresh_rotates().await
    }

    /// Events from now on: sign-in, sign-out (with the reason), offline, online, refreshes.
    pub fn subscribe(&self) -> broadcast::Receiver<IdentityEvent> {
        self.session.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(identity_extra: &str, approvers: &str) -> Config {
        let text = format!(
            r#"
[identity]
issuer = "https://idp.example.com"
client_id = "snowgate-desktop"
snowflake_audience = "api://snowflake"
{identity_extra}

[snowflake]
account = "acme"

[[roles]]
name = "ANALYST"
max_duration = "1h"
approvers = [{approvers}]

{team}
"#,
            team = if identity_extra.contains("google") {
                "[team]\nserver = \"https://snowgate.example.com\"\nauth = \"id_token\""
            } else {
                ""
            }
        );
        Config::parse(&text, Path::new("/test.toml")).unwrap()
    }

    #[test]
    fn sign_in_scopes_follow_the_provider_preset() {
        let generic = login_scopes(&config("", "\"managers\""));
        assert_eq!(
            generic,
            [
                "openid",
                "profile",
                "email",
                "offline_access",
                "groups",
                "session:role:ANALYST"
            ]
        );
        // Entra: role scopes prefixed with the Application ID URI; no `groups` scope (groups
        // come by the app registration's token configuration).
        let entra = login_scopes(&config(
            "provider = \"entra\"",
            "\"6f1c2a9e-3b7d-4c1e-9a2f-0d8b5e4c3a21\"",
        ));
        assert!(entra.contains(&"api://snowflake/session:role:ANALYST".to_string()));
        assert!(!entra.contains(&"groups".to_string()), "{entra:?}");
        // Google refuses offline_access: refresh tokens come by access_type=offline.
        let google = login_scopes(&config("provider = \"google\"", "\"managers\""));
        assert!(
            !google.contains(&"offline_access".to_string()),
            "{google:?}"
        );
        assert!(!google.contains(&"groups".to_string()), "{google:?}");
    }
}
