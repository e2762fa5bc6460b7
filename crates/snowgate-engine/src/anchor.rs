//! The audit chain's head, kept in the OS keyring (solo mode).
//!
//! Whoever can write the ledger file can cut records off its end and leave a valid chain. The
//! anchor defeats that: after every append the grants service writes the head (last `seq` and
//! `hash`) here, outside the database, and `snowgate audit verify` checks the log still holds
//! that record unchanged. The entry is service `snowgate`, account `audit-anchor|<data dir>`,
//! so two data dirs of one user keep two anchors. It holds no secret, only a position.

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use snowgate_grants::audit::AnchorError;
use snowgate_grants::{AnchorStore, ChainHead};

/// The keyring entry's service name (shared with the refresh-token vault).
const SERVICE: &str = "snowgate";
/// How long a keyring call may take before the anchor is reported unreachable.
const KEYRING_TIMEOUT: Duration = Duration::from_secs(10);

/// The chain's head in the OS keyring.
#[derive(Debug, Clone)]
pub struct KeyringAnchor {
    account: String,
}

impl KeyringAnchor {
    /// The anchor of the ledger in `data_dir`.
    pub fn new(data_dir: &Path) -> KeyringAnchor {
        KeyringAnchor {
            account: format!("audit-anchor|{}", data_dir.display()),
        }
    }

    async fn call<T, F>(&self, f: F) -> Result<T, AnchorError>
    where
        T: Send + 'static,
        F: FnOnce(keyring::Entry) -> Result<T, keyring::Error> + Send + 'static,
    {
        let account = self.account.clone();
        let task = tokio::task::spawn_blocking(move || {
            let entry = keyring::Entry::new(SERVICE, &account)?;
            f(entry)
        });
        match tokio::time::timeout(KEYRING_TIMEOUT, task).await {
            Ok(Ok(Ok(v))) => Ok(v),
            Ok(Ok(Err(e))) => Err(error(e.to_string())),
            Ok(Err(_)) => Err(error("the keyring call failed unexpectedly".into())),
            Err(_) => Err(error(format!(
                "it did not answer within {} s",
                KEYRING_TIMEOUT.as_secs()
            ))),
        }
    }
}

fn error(message: String) -> AnchorError {
    AnchorError {
        store: "OS keyring".into(),
        message,
    }
}

#[async_trait]
impl AnchorStore for KeyringAnchor {
    async fn get(&self) -> Result<Option<ChainHead>, AnchorError> {
        let text = self
            .call(|entry| match entry.get_password() {
                Ok(t) => Ok(Some(t)),
                Err(keyring::Error::NoEntry) => Ok(None),
                Err(e) => Err(e),
            })
            .await?;
        match text {
            None => Ok(None),
            Some(t) => serde_json::from_str(&t)
                .map(Some)
                .map_err(|e| error(format!("the stored anchor is not readable: {e}"))),
        }
    }

    async fn set(&self, head: ChainHead) -> Result<(), AnchorError> {
        let text = serde_json::to_string(&head).expect("a chain head serializes");
        self.call(move |entry| entry.set_password(&text)).await
    }
}
