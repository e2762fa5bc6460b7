//! The gateway's HTTPS certificate while the broker runs: the leaf in use, issued by the local
//! CA ([`crate::local_ca`]) at start, and its rotation.
//!
//! [`GatewayTls::rotate_when_due`] runs for the broker's life: it looks at the leaf every
//! twelfth of its lifetime (at most hourly) and, when a third of its life is left, issues a new
//! one and puts it in the gateway's [`ServerCert`]. New connections get the new leaf; open ones
//! keep theirs, which stays valid for the third of its life that is left. No restart.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use snowgate_gateway::ServerCert;

use crate::local_ca::{LocalCa, LocalCaError};

/// The longest wait between two looks at the leaf.
const MAX_CHECK_INTERVAL: Duration = Duration::from_secs(3600);

/// The local CA, the gateway's certificate and when the leaf in it expires.
pub struct GatewayTls {
    ca: LocalCa,
    cert: Arc<ServerCert>,
    lifetime: Duration,
    leaf_not_after: Mutex<SystemTime>,
}

impl GatewayTls {
    /// Opens (or creates) the CA in `ca_dir` and issues the first leaf.
    pub fn start(ca_dir: &std::path::Path, lifetime: Duration) -> Result<GatewayTls, String> {
        let ca = LocalCa::open_or_create(ca_dir).map_err(|e| e.to_string())?;
        let leaf = ca
            .issue_leaf(SystemTime::now(), lifetime)
            .map_err(|e| e.to_string())?;
        let cert =
            ServerCert::from_pem(&leaf.cert_pem, leaf.key_pem()).map_err(|e| e.to_string())?;
        Ok(GatewayTls {
            ca,
            cert: Arc::new(cert),
            lifetime,
            leaf_not_after: Mutex::new(leaf.not_after),
        })
    }

    /// The certificate the gateway's HTTPS listeners serve.
    pub fn server_cert(&self) -> Arc<ServerCert> {
        self.cert.clone()
    }

    /// The CA certificate's path, what tools trust.
    pub fn ca_file(&self) -> std::path::PathBuf {
        self.ca.cert_path()
    }

    /// When the leaf in use expires.
    pub fn leaf_not_after(&self) -> SystemTime {
        *self
            .leaf_not_after
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Issues a new leaf and puts it in place now.
    pub fn rotate(&self) -> Result<SystemTime, LocalCaError> {
        let leaf = self.ca.issue_leaf(SystemTime::now(), self.lifetime)?;
        self.cert
            .replace(&leaf.cert_pem, leaf.key_pem())
            .map_err(|e| LocalCaError::Signing(e.to_string()))?;
        *self
            .leaf_not_after
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = leaf.not_after;
        tracing::info!(not_after = %crate::agents::rfc3339(leaf.not_after), "the gateway's HTTPS leaf was renewed");
        Ok(leaf.not_after)
    }

    /// Renews the leaf whenever a third of its life is left; runs until dropped.
    pub async fn rotate_when_due(self: Arc<Self>) {
        let every = (self.lifetime / 12).clamp(Duration::from_millis(250), MAX_CHECK_INTERVAL);
        loop {
            tokio::time::sleep(every).await;
            if LocalCa::needs_new_leaf(self.leaf_not_after(), self.lifetime, SystemTime::now()) {
                if let Err(e) = self.rotate() {
                    tracing::error!(error = %e, "renewing the gateway's HTTPS leaf failed; trying again");
                }
            }
        }
    }
}
