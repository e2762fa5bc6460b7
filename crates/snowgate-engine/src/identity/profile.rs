//! The non-secret facts about the signed-in user, kept on disk between runs.
//!
//! `<data_dir>/profile.json` holds who signed in (subject, email, name, groups), at which IdP
//! and client, and when. It holds no token: the refresh token is in the vault and access tokens
//! live only in memory. The file is written atomically (a temporary file in the same directory,
//! flushed, then renamed over the old one) with mode 0600, so a crash leaves the old profile or
//! the new one, never half of either.

use std::io::Write;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::error::IdentityError;
use super::vault::VaultKey;

/// The file name of the profile inside the data directory.
pub const PROFILE_FILE: &str = "profile.json";

/// Who is signed in. Safe to show and to store: it holds no secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
pub struct Profile {
    /// The IdP's subject (`sub`).
    pub subject: String,
    /// The user's email, if the IdP shared it.
    #[serde(default)]
    pub email: Option<String>,
    /// The user's display name, if the IdP shared it.
    #[serde(default)]
    pub name: Option<String>,
    /// The user's groups, from the configured groups claim.
    #[serde(default)]
    pub groups: Vec<String>,
    /// The issuer the user signed in at (without a trailing slash).
    pub issuer: String,
    /// The OAuth client id used.
    pub client_id: String,
    /// When the user last signed in interactively.
    pub last_sign_in: DateTime<Utc>,
    /// Other claims Snowgate needs by name: the Snowflake user claim when it is not `sub`,
    /// `email` or `name` (e.g. `preferred_username`).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub claims: std::collections::BTreeMap<String, String>,
}

impl Profile {
    /// The vault key of this sign-in's refresh token.
    pub fn vault_key(&self) -> VaultKey {
        VaultKey {
            issuer: self.issuer.clone(),
            client_id: self.client_id.clone(),
            subject: self.subject.clone(),
        }
    }
}

/// Reads and writes `profile.json` in one data directory.
#[derive(Debug, Clone)]
pub struct ProfileStore {
    path: PathBuf,
}

impl ProfileStore {
    /// The profile store of `data_dir`.
    pub fn new(data_dir: &Path) -> ProfileStore {
        ProfileStore {
            path: data_dir.join(PROFILE_FILE),
        }
    }

    /// Where the profile lives.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored profile; `None` if there is none or it cannot be read (a profile is a cache
    /// of facts the next sign-in restores, so an unreadable one is treated as absent).
    pub fn load(&self) -> Option<Profile> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        match serde_json::from_str(&text) {
            Ok(p) => Some(p),
            Err(e) => {
                tracing::warn!(path = %self.path.display(), error = %e, "ignoring an unreadable sign-in profile");
                None
            }
        }
    }

    /// Writes `profile` atomically with mode 0600.
    pub fn save(&self, profile: &Profile) -> Result<(), IdentityError> {
        let err = |source| IdentityError::Profile {
            action: "writing",
            path: self.path.clone(),
            source,
        };
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(err)?;
        let json = serde_json::to_vec_pretty(profile).expect("a profile serializes");
        let tmp = dir.join(format!(".{PROFILE_FILE}.{}.tmp", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let write = || -> std::io::Result<()> {
            let mut file = options.open(&tmp)?;
            // A file left by an older run may have a wider mode; `mode` applies only on create.
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            }
            file.write_all(&json)?;
            file.sync_all()?;
            std::fs::rename(&tmp, &self.path)?;
            Ok(())
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            err(e)
        })?;
        tracing::debug!(path = %self.path.display(), "saved the sign-in profile");
        Ok(())
    }

    /// Removes the profile; a missing profile is not an error.
    pub fn remove(&self) -> Result<(), IdentityError> {
        match std::fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(IdentityError::Profile {
                action: "removing",
                path: self.path.clone(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alice() -> Profile {
        Profile {
            subject: "alice".into(),
            email: Some("alice@example.test".into()),
            name: Some("Alice Analyst".into()),
            groups: vec!["analysts".into()],
            issuer: "https://idp.example.com".into(),
            client_id: "snowgate-desktop".into(),
            last_sign_in: Utc::now(),
            claims: Default::default(),
        }
    }

    #[test]
    fn a_profile_round_trips_and_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let store = ProfileStore::new(dir.path());
        assert_eq!(store.load(), None);
        let p = alice();
        store.save(&p).unwrap();
        store.save(&p).unwrap();
        assert_eq!(store.load(), Some(p));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(store.path())
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // Only the profile is left: no temporary files.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [PROFILE_FILE]);
        store.remove().unwrap();
        store.remove().unwrap();
        assert_eq!(store.load(), None);
    }

    #[test]
    fn an_unreadable_profile_counts_as_none() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(PROFILE_FILE), "{not json").unwrap();
        assert_eq!(ProfileStore::new(dir.path()).load(), None);
    }
}
