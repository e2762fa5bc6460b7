//! Where the refresh token is kept between broker runs.
//!
//! The refresh token is the one long-lived secret of a sign-in, so it goes to the OS keyring
//! and nowhere else: the Secret Service on Linux, the Keychain on macOS, the Credential Manager
//! on Windows ([`KeyringVault`]). When no keyring can be reached, the user can choose
//! session-only mode ([`MemoryVault`]): the token lives in memory until the broker stops, and
//! a restart needs a new sign-in. There is no plaintext-file fallback, by design.
//!
//! An entry is keyed by issuer, client id and subject ([`VaultKey`]): keyring service
//! `snowgate`, account `<issuer>|<client_id>|<subject>`. On the Secret Service that is the
//! item with attributes `service=snowgate` and `username=<issuer>|<client_id>|<subject>`.
//!
//! The trait is synchronous because the platform APIs are; the identity module calls it on a
//! blocking thread with a timeout, so a keyring stuck on an unlock prompt cannot stall the
//! broker.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::secrets::RefreshToken;

/// The keyring service name of every Snowgate entry.
pub const SERVICE: &str = "snowgate";

/// What the vault entry of one sign-in is keyed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VaultKey {
    /// The issuer URL, without a trailing slash.
    pub issuer: String,
    /// The OAuth client id.
    pub client_id: String,
    /// The IdP's subject (`sub`) of the signed-in user.
    pub subject: String,
}

impl VaultKey {
    /// The keyring account name: `<issuer>|<client_id>|<subject>`.
    pub fn account(&self) -> String {
        format!("{}|{}|{}", self.issuer, self.client_id, self.subject)
    }
}

/// Which kind of vault holds the refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
#[serde(rename_all = "snake_case")]
pub enum VaultKind {
    /// The OS keyring: the token survives a restart.
    OsKeyring,
    /// Memory only: the token is gone when the broker stops.
    SessionOnly,
}

impl fmt::Display for VaultKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            VaultKind::OsKeyring => "the OS keyring",
            VaultKind::SessionOnly => "memory only (session-only mode)",
        })
    }
}

/// Why the vault could not do what was asked. Never carries a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    /// The keyring cannot be reached or used: no D-Bus, locked, access denied, timed out.
    #[error("Snowgate can't reach the OS keyring ({backend}): {reason}. Make sure your keyring is running and unlocked, or sign in with --session-only to keep tokens in memory until the broker stops.")]
    Unavailable {
        backend: &'static str,
        reason: String,
    },
    /// The entry exists but does not hold a usable token.
    #[error("the OS keyring entry {account} does not hold a usable Snowgate token; sign in again")]
    Corrupt { account: String },
    /// The keyring refused the entry itself (too long, invalid, ambiguous).
    #[error("the OS keyring ({backend}) refused the entry {account}: {reason}")]
    Rejected {
        backend: &'static str,
        account: String,
        reason: String,
    },
}

/// A place to keep the refresh token. Implementations block; call them off the async runtime.
pub trait Vault: Send + Sync + 'static {
    /// Which kind of vault this is.
    fn kind(&self) -> VaultKind;
    /// The token stored under `key`, or `None` if there is none.
    fn load(&self, key: &VaultKey) -> Result<Option<RefreshToken>, VaultError>;
    /// Stores `token` under `key`, replacing any earlier one. When this returns `Ok` the token
    /// is durable as far as the platform promises.
    fn store(&self, key: &VaultKey, token: &RefreshToken) -> Result<(), VaultError>;
    /// Removes the entry under `key`; removing a missing entry is not an error.
    fn delete(&self, key: &VaultKey) -> Result<(), VaultError>;
}

/// The OS keyring through the `keyring` crate.
#[derive(Debug, Default, Clone, Copy)]
pub struct KeyringVault;

impl KeyringVault {
    /// A vault over the platform's default keyring.
    pub fn new() -> KeyringVault {
        KeyringVault
    }

    /// The platform store, in words a person recognises.
    pub fn backend() -> &'static str {
        if cfg!(target_os = "macos") {
            "the macOS Keychain"
        } else if cfg!(target_os = "windows") {
            "the Windows Credential Manager"
        } else {
            "the Secret Service on D-Bus"
        }
    }

    fn entry(key: &VaultKey) -> Result<keyring::Entry, VaultError> {
        keyring::Entry::new(SERVICE, &key.account()).map_err(|e| map_keyring_error(e, key))
    }
}

impl Vault for KeyringVault {
    fn kind(&self) -> VaultKind {
        VaultKind::OsKeyring
    }

    fn load(&self, key: &VaultKey) -> Result<Option<RefreshToken>, VaultError> {
        match Self::entry(key)?.get_password() {
            Ok(value) => Ok(Some(RefreshToken::new(value))),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(map_keyring_error(e, key)),
        }
    }

    fn store(&self, key: &VaultKey, token: &RefreshToken) -> Result<(), VaultError> {
        Self::entry(key)?
            .set_password(token.expose_secret())
            .map_err(|e| map_keyring_error(e, key))
    }

    fn delete(&self, key: &VaultKey) -> Result<(), VaultError> {
        match Self::entry(key)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(map_keyring_error(e, key)),
        }
    }
}

/// Turns a keyring error into a [`VaultError`] without ever formatting the variants that can
/// hold secret bytes (`BadEncoding`, `Ambiguous`).
pub(crate) fn map_keyring_error(err: keyring::Error, key: &VaultKey) -> VaultError {
    let backend = KeyringVault::backend();
    match err {
        keyring::Error::PlatformFailure(e) => VaultError::Unavailable {
            backend,
            reason: e.to_string(),
        },
        keyring::Error::NoStorageAccess(e) => VaultError::Unavailable {
            backend,
            reason: format!("it refused access ({e}); it may be locked"),
        },
        keyring::Error::BadEncoding(_) => VaultError::Corrupt {
            account: key.account(),
        },
        keyring::Error::NoEntry => VaultError::Rejected {
            backend,
            account: key.account(),
            reason: "no such entry".into(),
        },
        keyring::Error::TooLong(attr, limit) => VaultError::Rejected {
            backend,
            account: key.account(),
            reason: format!("{attr} is longer than the limit of {limit}"),
        },
        keyring::Error::Invalid(attr, why) => VaultError::Rejected {
            backend,
            account: key.account(),
            reason: format!("{attr} is invalid: {why}"),
        },
        keyring::Error::Ambiguous(items) => VaultError::Rejected {
            backend,
            account: key.account(),
            reason: format!(
                "{} entries match; remove the extra ones with your keyring tool",
                items.len()
            ),
        },
        _ => VaultError::Unavailable {
            backend,
            reason: "an unknown keyring error".into(),
        },
    }
}

/// Session-only mode: tokens in memory, gone when the broker stops.
#[derive(Default)]
pub struct MemoryVault {
    entries: Mutex<HashMap<String, RefreshToken>>,
}

impl MemoryVault {
    /// An empty vault.
    pub fn new() -> MemoryVault {
        MemoryVault::default()
    }
}

impl fmt::Debug for MemoryVault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.entries.lock().map(|e| e.len()).unwrap_or(0);
        f.debug_struct("MemoryVault").field("entries", &n).finish()
    }
}

impl Vault for MemoryVault {
    fn kind(&self) -> VaultKind {
        VaultKind::SessionOnly
    }

    fn load(&self, key: &VaultKey) -> Result<Option<RefreshToken>, VaultError> {
        Ok(self
            .entries
            .lock()
            .expect("memory vault lock")
            .get(&key.account())
            .cloned())
    }

    fn store(&self, key: &VaultKey, token: &RefreshToken) -> Result<(), VaultError> {
        self.entries
            .lock()
            .expect("memory vault lock")
            .insert(key.account(), token.clone());
        Ok(())
    }

    fn delete(&self, key: &VaultKey) -> Result<(), VaultError> {
        self.entries
            .lock()
            .expect("memory vault lock")
            .remove(&key.account());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(sub: &str) -> VaultKey {
        VaultKey {
            issuer: "https://idp.example.com".into(),
            client_id: "snowgate-desktop".into(),
            subject: sub.into(),
        }
    }

    #[test]
    fn entries_are_keyed_by_issuer_client_and_subject() {
        assert_eq!(
            key("alice").account(),
            "https://idp.example.com|snowgate-desktop|alice"
        );
        let v = MemoryVault::new();
        v.store(&key("alice"), &RefreshToken::new("a")).unwrap();
        v.store(&key("bob"), &RefreshToken::new("b")).unwrap();
        assert_eq!(v.load(&key("alice")).unwrap(), Some(RefreshToken::new("a")));
        let mut other_client = key("alice");
        other_client.client_id = "other".into();
        assert_eq!(v.load(&other_client).unwrap(), None);
        v.delete(&key("alice")).unwrap();
        v.delete(&key("alice")).unwrap();
        assert_eq!(v.load(&key("alice")).unwrap(), None);
        assert_eq!(format!("{v:?}"), "MemoryVault { entries: 1 }");
    }

    #[test]
    fn an_unreachable_keyring_names_session_only_mode() {
        let err = map_keyring_error(
            keyring::Error::NoStorageAccess("org.freedesktop.Secret.Error.IsLocked".into()),
            &key("alice"),
        );
        let text = err.to_string();
        assert!(
            text.starts_with("Snowgate can't reach the OS keyring"),
            "{text}"
        );
        assert!(text.contains("IsLocked"), "{text}");
        assert!(text.contains("--session-only"), "{text}");
    }

    #[test]
    fn bad_bytes_in_the_keyring_are_never_shown() {
        let err = map_keyring_error(
            keyring::Error::BadEncoding(b"\xffsecret-token-bytes".to_vec()),
            &key("alice"),
        );
        let text = format!("{err} {err:?}");
        assert!(!text.contains("secret-token"), "{text}");
        assert!(text.contains("sign in again"), "{text}");
    }
}
