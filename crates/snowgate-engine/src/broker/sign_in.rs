//! Signing the user in from the broker: browser or device sign-ins started by `login_begin` and
//! finished by `login_wait`, and the session-only identity (tokens in memory) used when the OS
//! keyring can't be reached.

use std::sync::Arc;

use crate::backend::GrantsBackend;

use crate::control::{ControlError, ErrorKind};
use crate::identity::{Identity, IdentityError, MemoryVault, Profile, Vault};

use super::{clock, random_id, Broker, LoginStart, Pending};

impl Broker {
    /// Starts a browser or device sign-in. `session_only` keeps the tokens in memory only.
    pub async fn login_begin(
        &self,
        device: bool,
        session_only: bool,
    ) -> Result<LoginStart, ControlError> {
        let identity = self.identity_for_login(session_only).await?;
        let login_id = random_id();
        let (pending, start) = if device {
            let p = identity
                .begin_device_login()
                .await
                .map_err(identity_error)?;
            let start = LoginStart::Device {
                login_id: login_id.clone(),
                user_code: p.user_code().to_string(),
                verification_uri: p.verification_uri().to_string(),
                verification_uri_complete: p.verification_uri_complete().map(str::to_string),
                expires_in_secs: p.expires_in().as_secs(),
            };
            (Pending::Device(Box::new(p)), start)
        } else {
            let p = identity
                .begin_browser_login()
                .await
                .map_err(identity_error)?;
            let start = LoginStart::Browser {
                login_id: login_id.clone(),
                authorize_url: p.start_url().to_string(),
            };
            (Pending::Browser(Box::new(p)), start)
        };
        self.pending.lock().unwrap().insert(login_id, pending);
        Ok(start)
    }

    /// Waits for a sign-in started with [`Broker::login_begin`] and returns who signed in.
    pub async fn login_wait(&self, login_id: &str) -> Result<Profile, ControlError> {
        let pending = self
            .pending
            .lock()
            .unwrap()
            .remove(login_id)
            .ok_or_else(|| {
                ControlError::new(
                    ErrorKind::BadRequest,
                    "no sign-in with that id is under way; start one with `snowgate login`",
                )
            })?;
        match pending {
            Pending::Browser(p) => p.wait().await,
            Pending::Device(p) => p.wait().await,
        }
        .map_err(identity_error)
    }

    async fn identity_for_login(&self, session_only: bool) -> Result<Identity, ControlError> {
        if session_only {
            let vault: Arc<dyn Vault> = Arc::new(MemoryVault::new());
            let identity = Identity::with_options(
                self.engine.config(),
                self.engine.data_dir(),
                vault,
                clock(),
                self.options.clone(),
            )
            .await
            .map_err(identity_error)?;
            self.identity.set(identity.clone());
            *self.keyring_problem.lock().unwrap() = None;
            if let Ok(GrantsBackend::Team(team)) = &self.grants {
                team.set_identity(Some(identity.clone()));
            }
            self.watch_identity(&identity);
            return Ok(identity);
        }
        if let Some(identity) = self.identity() {
            return Ok(identity);
        }
        let problem = self.keyring_problem.lock().unwrap().clone();
        Err(ControlError::new(
            ErrorKind::Unavailable,
            problem.unwrap_or_else(|| "the OS keyring can't be reached".into()),
        ))
    }
}

pub(super) fn identity_error(e: IdentityError) -> ControlError {
    let kind = match &e {
        IdentityError::NotSignedIn => ErrorKind::SignedOut,
        IdentityError::Unreachable { .. }
        | IdentityError::Offline { .. }
        | IdentityError::Discovery { .. } => ErrorKind::Unavailable,
        _ => ErrorKind::BadRequest,
    };
    ControlError::new(kind, e.to_string())
}
