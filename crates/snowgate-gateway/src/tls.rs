//! HTTPS on the gateway's TLS listeners: the server certificate, swappable while serving.
//!
//! BI tools whose Snowflake drivers speak only HTTPS (ODBC, JDBC by default) connect to the
//! listeners of [`crate::GatewayConfig::tls_listen`]. Their certificate is a [`ServerCert`]:
//! a rustls [`ResolvesServerCert`] holding the current chain and key behind a lock, so the
//! engine can put a new short-lived leaf in place ([`ServerCert::replace`]) without a restart.
//! A handshake reads the certificate once, when it starts: connections already open keep the
//! leaf they were shown, and every new connection gets the newest one.
//!
//! The plain-HTTP listeners never touch this module: TLS costs only the connections that ask
//! for it.

use std::sync::{Arc, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use crate::error::GatewayError;

/// The gateway's server certificate: a chain (leaf first) and its key, replaceable while the
/// gateway serves. Cheap to share (`Arc`); `Debug` shows no key.
pub struct ServerCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for ServerCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerCert").finish_non_exhaustive()
    }
}

impl ServerCert {
    /// A certificate from a PEM chain (leaf first, then any intermediates) and a PEM private
    /// key. Fails when either can't be read or the key does not belong to the leaf.
    pub fn from_pem(chain_pem: &str, key_pem: &str) -> Result<ServerCert, GatewayError> {
        Ok(ServerCert {
            current: RwLock::new(Arc::new(certified_key(chain_pem, key_pem)?)),
        })
    }

    /// Puts a new chain and key in place: every handshake from now on shows it. On an error the
    /// current certificate stays.
    pub fn replace(&self, chain_pem: &str, key_pem: &str) -> Result<(), GatewayError> {
        let next = Arc::new(certified_key(chain_pem, key_pem)?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = next;
        Ok(())
    }

    /// The DER of the leaf being shown now.
    pub fn leaf_der(&self) -> CertificateDer<'static> {
        self.current().cert[0].clone()
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl ResolvesServerCert for ServerCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

fn certified_key(chain_pem: &str, key_pem: &str) -> Result<CertifiedKey, GatewayError> {
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| GatewayError::ServerCert(format!("the certificate chain is not PEM: {e}")))?;
    if chain.is_empty() {
        return Err(GatewayError::ServerCert(
            "the certificate chain holds no certificate".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| GatewayError::ServerCert(format!("the private key is not PEM: {e}")))?;
    let provider = rustls::crypto::ring::default_provider();
    let certified = CertifiedKey::from_der(chain, key, &provider)
        .map_err(|e| GatewayError::ServerCert(format!("the key can't be used: {e}")))?;
    Ok(certified)
}

/// The acceptor every TLS listener shares: TLS 1.2 and 1.3 (rustls' safe defaults, ring),
/// HTTP/1.1 only, the certificate from `cert`.
pub(crate) fn acceptor(cert: Arc<ServerCert>) -> Result<TlsAcceptor, GatewayError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| GatewayError::ServerCert(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(cert);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}
