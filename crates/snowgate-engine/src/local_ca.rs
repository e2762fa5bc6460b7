//! The per-machine local CA behind the gateway's HTTPS: created on first use in
//! `<data dir>/tls/`, and the short-lived leaves it signs for the TLS listeners.
//!
//! Invariants:
//! - The CA can vouch for loopback only: its NameConstraints extension (critical) permits
//!   the DNS name `localhost` and the addresses 127.0.0.1/32 and ::1/128, so a verifier that
//!   trusts it rejects any certificate it signed for another name, whatever the leaf says.
//!   It may sign no intermediate CA (path length 0).
//! - Its key (`ca-key.pem`) is written 0600 in a 0700 directory and is used only when no other
//!   user can read it and this user owns it; otherwise opening fails and says how to fix it.
//! - Leaves live in memory only (key and certificate) and are short-lived: the broker issues a
//!   new one when a third of the current one's life is left ([`LocalCa::needs_new_leaf`]).
//! - The CA's subject names it by a digest of its own public key, so the issuer can be rebuilt
//!   from the key alone; [`LocalCa::open`] checks that the stored certificate really is the
//!   key's, by verifying a fresh leaf against it as a trust anchor.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CidrSubnet, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, KeyPair, KeyUsagePurpose, NameConstraints,
    SanType,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, UnixTime};
use sha2::{Digest, Sha256};

/// The directory under the data dir that holds the CA.
pub const TLS_DIR: &str = "tls";
/// The CA certificate's file name (public: this is what tools are told to trust).
pub const CA_CERT_FILE: &str = "ca.pem";
/// The CA key's file name (0600).
pub const CA_KEY_FILE: &str = "ca-key.pem";
/// How long the CA itself is valid.
const CA_LIFETIME: Duration = Duration::from_secs(10 * 366 * 24 * 3600);
/// The default life of a leaf.
pub const DEFAULT_LEAF_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);
/// A leaf's validity starts this far back, for clocks a little behind ours.
const LEAF_BACKDATE: Duration = Duration::from_secs(60);

/// The names a leaf carries, and all the CA may vouch for.
pub const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// Why the local CA can't be used.
#[derive(Debug, thiserror::Error)]
pub enum LocalCaError {
    #[error("the local CA's key {} can be read by other users (mode {mode:04o}); run `chmod 600 {}`, or delete {} to make a new CA (then trust it again with `snowgate trust install`)", path.display(), path.display(), dir.display())]
    KeyExposed {
        path: PathBuf,
        dir: PathBuf,
        mode: u32,
    },
    #[error("the local CA's key {} belongs to another user (uid {owner}); delete {} to make a new CA", path.display(), dir.display())]
    KeyNotOurs {
        path: PathBuf,
        dir: PathBuf,
        owner: u32,
    },
    #[error("the local CA in {} is incomplete ({missing} is missing); delete the directory to make a new CA", dir.display())]
    Incomplete { dir: PathBuf, missing: &'static str },
    #[error("the local CA in {} can't be used: {reason}; delete the directory to make a new CA", dir.display())]
    Unusable { dir: PathBuf, reason: String },
    #[error("{action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("signing a certificate: {0}")]
    Signing(String),
}

/// A leaf certificate and its key, as PEM. `Debug` shows neither.
pub struct Leaf {
    /// The leaf's certificate, PEM.
    pub cert_pem: String,
    /// The leaf's private key, PEM (memory only).
    key_pem: String,
    /// When it stops being valid.
    pub not_after: SystemTime,
    /// When it started being valid.
    pub not_before: SystemTime,
}

impl std::fmt::Debug for Leaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leaf")
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Leaf {
    /// The leaf's private key, PEM, to hand to the TLS server.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }
}

/// The local CA: its key, its certificate, and the issuer rebuilt from them.
pub struct LocalCa {
    dir: PathBuf,
    key: KeyPair,
    issuer: rcgen::Certificate,
    cert_pem: String,
}

impl std::fmt::Debug for LocalCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalCa")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

impl LocalCa {
    /// The CA directory of a data dir.
    pub fn dir_in(data_dir: &Path) -> PathBuf {
        data_dir.join(TLS_DIR)
    }

    /// Opens the CA in `dir`, creating it (key 0600, directory 0700) when there is none.
    pub fn open_or_create(dir: &Path) -> Result<LocalCa, LocalCaError> {
        if dir.join(CA_KEY_FILE).exists() || dir.join(CA_CERT_FILE).exists() {
            return LocalCa::open(dir);
        }
        LocalCa::create(dir)
    }

    /// Opens the CA in `dir`; `Ok(None)` when there is none yet.
    pub fn open_existing(dir: &Path) -> Result<Option<LocalCa>, LocalCaError> {
        if dir.join(CA_KEY_FILE).exists() || dir.join(CA_CERT_FILE).exists() {
            return LocalCa::open(dir).map(Some);
        }
        Ok(None)
    }

    fn open(dir: &Path) -> Result<LocalCa, LocalCaError> {
        let key_path = dir.join(CA_KEY_FILE);
        let cert_path = dir.join(CA_CERT_FILE);
        for (path, missing) in [(&key_path, CA_KEY_FILE), (&cert_path, CA_CERT_FILE)] {
            if !path.exists() {
                return Err(LocalCaError::Incomplete {
                    dir: dir.to_path_buf(),
                    missing,
                });
            }
        }
        check_key_file(dir, &key_path)?;
        let key_pem = read(&key_path)?;
        let cert_pem = read(&cert_path)?;
        let key = KeyPair::from_pem(&key_pem).map_err(|e| LocalCaError::Unusable {
            dir: dir.to_path_buf(),
            reason: format!("{CA_KEY_FILE} is not a private key ({e})"),
        })?;
        let issuer = ca_params(&key)
            .self_signed(&key)
            .map_err(|e| LocalCaError::Signing(e.to_string()))?;
        let ca = LocalCa {
            dir: dir.to_path_buf(),
            key,
            issuer,
            cert_pem,
        };
        // The stored certificate must be the key's: a leaf signed now must chain to it.
        let probe = ca.issue_leaf(SystemTime::now(), Duration::from_secs(120))?;
        ca.verify_leaf(&probe.cert_pem, "localhost", SystemTime::now())
            .map_err(|reason| LocalCaError::Unusable {
                dir: dir.to_path_buf(),
                reason: format!("{CA_CERT_FILE} does not belong to {CA_KEY_FILE} ({reason})"),
            })?;
        Ok(ca)
    }

    fn create(dir: &Path) -> Result<LocalCa, LocalCaError> {
        std::fs::create_dir_all(dir).map_err(|source| LocalCaError::Io {
            action: "creating",
            path: dir.to_path_buf(),
            source,
        })?;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(
            |source| LocalCaError::Io {
                action: "restricting",
                path: dir.to_path_buf(),
                source,
            },
        )?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| LocalCaError::Signing(e.to_string()))?;
        let mut params = ca_params(&key);
        let now = SystemTime::now();
        params.not_before = (now - LEAF_BACKDATE).into();
        params.not_after = (now + CA_LIFETIME).into();
        let cert = params
            .self_signed(&key)
            .map_err(|e| LocalCaError::Signing(e.to_string()))?;
        write_private(&dir.join(CA_KEY_FILE), &key.serialize_pem(), 0o600)?;
        write_private(&dir.join(CA_CERT_FILE), &cert.pem(), 0o644)?;
        tracing::info!(dir = %dir.display(), "created the local CA for the gateway's HTTPS");
        LocalCa::open(dir)
    }

    /// The CA certificate's path: what a tool trusts.
    pub fn cert_path(&self) -> PathBuf {
        self.dir.join(CA_CERT_FILE)
    }

    /// The CA certificate, PEM.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate, DER.
    pub fn cert_der(&self) -> CertificateDer<'static> {
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
            .expect("the CA certificate was checked at open")
    }

    /// The CA's subject common name (names it in trust stores).
    pub fn common_name(&self) -> String {
        common_name(&self.key)
    }

    /// A leaf for [`LOOPBACK_NAMES`], valid from a minute before `now` for `lifetime`.
    pub fn issue_leaf(&self, now: SystemTime, lifetime: Duration) -> Result<Leaf, LocalCaError> {
        self.issue_leaf_for(&LOOPBACK_NAMES, now, lifetime)
    }

    /// A leaf for any `names`. The CA signs what it is asked to; verifiers refuse names outside
    /// its constraints, which is what the tests of those constraints use this for.
    pub fn issue_leaf_for(
        &self,
        names: &[&str],
        now: SystemTime,
        lifetime: Duration,
    ) -> Result<Leaf, LocalCaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .map_err(|e| LocalCaError::Signing(e.to_string()))?;
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().copied().unwrap_or("localhost"),
        );
        params.distinguished_name = dn;
        params.subject_alt_names = names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => Ok(SanType::IpAddress(ip)),
                Err(_) => (*n)
                    .try_into()
                    .map(SanType::DnsName)
                    .map_err(|e: rcgen::Error| LocalCaError::Signing(e.to_string())),
            })
            .collect::<Result<_, _>>()?;
        // No BasicConstraints at all: an encoded `cA: FALSE` is a DER default, which strict
        // parsers (Python's `cryptography`) refuse.
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let not_before = now - LEAF_BACKDATE;
        let not_after = now + lifetime;
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&rand::random::<[u8; 16]>()));
        let cert = params
            .signed_by(&key, &self.issuer, &self.key)
            .map_err(|e| LocalCaError::Signing(e.to_string()))?;
        Ok(Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            not_after: truncate_to_seconds(not_after),
            not_before: truncate_to_seconds(not_before),
        })
    }

    /// Whether a leaf valid until `not_after` should be replaced at `now`: when less than a
    /// third of its `lifetime` is left.
    pub fn needs_new_leaf(not_after: SystemTime, lifetime: Duration, now: SystemTime) -> bool {
        not_after
            .duration_since(now)
            .map(|left| left < lifetime / 3)
            .unwrap_or(true)
    }

    /// Verifies a PEM leaf for `name` (a DNS name or an IP address) at `at` with this CA as
    /// the only trust anchor, as a TLS client does (rustls-webpki, name constraints included).
    pub fn verify_leaf(&self, leaf_pem: &str, name: &str, at: SystemTime) -> Result<(), String> {
        let leaf = CertificateDer::from_pem_slice(leaf_pem.as_bytes())
            .map_err(|e| format!("the leaf is not PEM: {e}"))?;
        let ca = self.cert_der();
        let anchor = webpki::anchor_from_trusted_cert(&ca).map_err(|e| e.to_string())?;
        let end_entity = webpki::EndEntityCert::try_from(&leaf).map_err(|e| e.to_string())?;
        let time = UnixTime::since_unix_epoch(
            at.duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default(),
        );
        end_entity
            .verify_for_usage(
                webpki::ALL_VERIFICATION_ALGS,
                &[anchor],
                &[],
                time,
                webpki::KeyUsage::server_auth(),
                None,
                None,
            )
            .map_err(|e| format!("{e:?}"))?;
        let server_name = rustls_pki_types::ServerName::try_from(name)
            .map_err(|e| format!("{name:?} is not a server name: {e}"))?;
        end_entity
            .verify_is_valid_for_subject_name(&server_name)
            .map_err(|e| format!("{e:?}"))
    }
}

/// The CA's parameters, all derived from its key (so the issuer can be rebuilt from the key).
fn ca_params(key: &KeyPair) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Snowgate");
    dn.push(DnType::CommonName, common_name(key));
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: vec![
            GeneralSubtree::DnsName("localhost".into()),
            GeneralSubtree::IpAddress(CidrSubnet::V4([127, 0, 0, 1], [255; 4])),
            GeneralSubtree::IpAddress(CidrSubnet::V6(
                std::net::Ipv6Addr::LOCALHOST.octets(),
                [255; 16],
            )),
        ],
        excluded_subtrees: Vec::new(),
    });
    params
}

fn common_name(key: &KeyPair) -> String {
    let digest = Sha256::digest(key.public_key_der());
    let id: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    format!("Snowgate local CA {id} (loopback only)")
}

/// Refuses a key file another user can read or write, or that another user owns.
pub fn check_key_file(dir: &Path, path: &Path) -> Result<(), LocalCaError> {
    let meta = std::fs::metadata(path).map_err(|source| LocalCaError::Io {
        action: "reading",
        path: path.to_path_buf(),
        source,
    })?;
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    if meta.uid() != uid {
        return Err(LocalCaError::KeyNotOurs {
            path: path.to_path_buf(),
            dir: dir.to_path_buf(),
            owner: meta.uid(),
        });
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(LocalCaError::KeyExposed {
            path: path.to_path_buf(),
            dir: dir.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

fn read(path: &Path) -> Result<String, LocalCaError> {
    std::fs::read_to_string(path).map_err(|source| LocalCaError::Io {
        action: "reading",
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `text` to `path` atomically, created with `mode` (never wider at any moment).
fn write_private(path: &Path, text: &str, mode: u32) -> Result<(), LocalCaError> {
    let tmp = path.with_extension("tmp");
    let io = |action, source| LocalCaError::Io {
        action,
        path: path.to_path_buf(),
        source,
    };
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(|e| io("writing", e))?;
    file.write_all(text.as_bytes())
        .and_then(|_| file.sync_all())
        .map_err(|e| io("writing", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("writing", e))
}

fn truncate_to_seconds(t: SystemTime) -> SystemTime {
    let secs = t
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca() -> (tempfile::TempDir, LocalCa) {
        let dir = tempfile::tempdir().unwrap();
        let ca = LocalCa::open_or_create(&dir.path().join(TLS_DIR)).unwrap();
        (dir, ca)
    }

    #[test]
    fn a_leaf_for_loopback_verifies_for_each_loopback_name() {
        let (_dir, ca) = ca();
        let now = SystemTime::now();
        let leaf = ca.issue_leaf(now, DEFAULT_LEAF_LIFETIME).unwrap();
        for name in LOOPBACK_NAMES {
            ca.verify_leaf(&leaf.cert_pem, name, now)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
        let err = ca
            .verify_leaf(&leaf.cert_pem, "127.0.0.2", now)
            .unwrap_err();
        assert!(err.contains("NotValidForName"), "{err}");
    }

    #[test]
    fn the_ca_can_vouch_for_no_name_outside_loopback() {
        let (_dir, ca) = ca();
        let now = SystemTime::now();
        for names in [
            &["example.com"][..],
            &["localhost", "snowflakecomputing.com"],
            &["10.0.0.1"],
            &["localhost", "127.0.0.2"],
            &["::2"],
        ] {
            let leaf = ca
                .issue_leaf_for(names, now, DEFAULT_LEAF_LIFETIME)
                .unwrap();
            let err = ca.verify_leaf(&leaf.cert_pem, names[0], now).unwrap_err();
            assert!(
                err.contains("NameConstraintViolation"),
                "{names:?} was not refused for its name: {err}"
            );
        }
    }

    #[test]
    fn the_name_constraints_are_critical() {
        let (_dir, ca) = ca();
        let der = ca.cert_der();
        // id-ce-nameConstraints (2.5.29.30), then critical = TRUE.
        let oid_then_critical = [0x06, 0x03, 0x55, 0x1d, 0x1e, 0x01, 0x01, 0xff];
        assert!(
            der.windows(oid_then_critical.len())
                .any(|w| w == oid_then_critical),
            "no critical NameConstraints extension in the CA"
        );
    }

    #[test]
    fn a_leaf_is_refused_once_expired() {
        let (_dir, ca) = ca();
        let now = SystemTime::now();
        let leaf = ca.issue_leaf(now, Duration::from_secs(600)).unwrap();
        assert!(ca.verify_leaf(&leaf.cert_pem, "localhost", now).is_ok());
        let later = now + Duration::from_secs(601);
        let err = ca
            .verify_leaf(&leaf.cert_pem, "localhost", later)
            .unwrap_err();
        assert!(err.contains("CertExpired"), "{err}");
    }

    #[test]
    fn a_leaf_is_replaced_when_a_third_of_its_life_is_left() {
        let life = Duration::from_secs(7 * 24 * 3600);
        let (_dir, ca) = ca();
        let issued = SystemTime::now();
        let leaf = ca.issue_leaf(issued, life).unwrap();
        assert!(!LocalCa::needs_new_leaf(leaf.not_after, life, issued));
        let day4 = issued + Duration::from_secs(4 * 24 * 3600);
        assert!(!LocalCa::needs_new_leaf(leaf.not_after, life, day4));
        let day5 = issued + Duration::from_secs(5 * 24 * 3600);
        assert!(LocalCa::needs_new_leaf(leaf.not_after, life, day5));
        assert!(LocalCa::needs_new_leaf(
            leaf.not_after,
            life,
            issued + life * 2
        ));
        let next = ca.issue_leaf(day5, life).unwrap();
        assert!(next.not_after > leaf.not_after);
        assert_ne!(next.cert_pem, leaf.cert_pem);
        assert!(ca.verify_leaf(&next.cert_pem, "localhost", day5).is_ok());
    }

    #[test]
    fn the_ca_is_kept_and_reopened_with_its_key_private() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join(TLS_DIR);
        let first = LocalCa::open_or_create(&tls).unwrap();
        let key_mode = std::fs::metadata(tls.join(CA_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(key_mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(&tls).unwrap().permissions().mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        let again = LocalCa::open_or_create(&tls).unwrap();
        assert_eq!(first.cert_pem(), again.cert_pem());
        // A leaf from the reopened CA chains to the certificate made the first time.
        let leaf = again
            .issue_leaf(SystemTime::now(), DEFAULT_LEAF_LIFETIME)
            .unwrap();
        first
            .verify_leaf(&leaf.cert_pem, "::1", SystemTime::now())
            .unwrap();
    }

    #[test]
    fn a_key_other_users_can_read_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join(TLS_DIR);
        LocalCa::open_or_create(&tls).unwrap();
        let key = tls.join(CA_KEY_FILE);
        for mode in [0o644, 0o640, 0o604, 0o660] {
            std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
            let err = LocalCa::open_or_create(&tls).unwrap_err();
            assert!(matches!(err, LocalCaError::KeyExposed { .. }), "{err}");
            let text = err.to_string();
            assert!(
                text.contains(&format!("chmod 600 {}", key.display())),
                "{text}"
            );
        }
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        LocalCa::open_or_create(&tls).unwrap();
    }

    #[test]
    fn a_certificate_that_is_not_the_keys_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a");
        let b = dir.path().join("b");
        LocalCa::open_or_create(&a).unwrap();
        LocalCa::open_or_create(&b).unwrap();
        std::fs::copy(b.join(CA_CERT_FILE), a.join(CA_CERT_FILE)).unwrap();
        let err = LocalCa::open_or_create(&a).unwrap_err();
        assert!(err.to_string().contains("does not belong"), "{err}");
        std::fs::remove_file(b.join(CA_CERT_FILE)).unwrap();
        let err = LocalCa::open_or_create(&b).unwrap_err();
        assert!(err.to_string().contains("ca.pem is missing"), "{err}");
    }

    /// OpenSSL (the Python connector 4.x, Node.js, curl) checks the same chain its own way.
    #[test]
    fn openssl_accepts_a_loopback_leaf_and_refuses_one_outside_the_constraints() {
        let (dir, ca) = ca();
        let now = SystemTime::now();
        let verify = |names: &[&str], check: &[&str]| {
            let leaf = ca
                .issue_leaf_for(names, now, DEFAULT_LEAF_LIFETIME)
                .unwrap();
            let path = dir.path().join("leaf.pem");
            std::fs::write(&path, &leaf.cert_pem).unwrap();
            let out = std::process::Command::new("openssl")
                .arg("verify")
                .arg("-CAfile")
                .arg(ca.cert_path())
                .args(check)
                .arg(&path)
                .output()
                .expect("openssl is installed");
            (
                out.status.success(),
                String::from_utf8_lossy(&out.stdout).into_owned()
                    + &String::from_utf8_lossy(&out.stderr),
            )
        };
        for check in [
            &["-verify_ip", "127.0.0.1"][..],
            &["-verify_ip", "::1"],
            &["-verify_hostname", "localhost"],
        ] {
            let (ok, text) = verify(&LOOPBACK_NAMES, check);
            assert!(ok, "{check:?}: {text}");
        }
        let (ok, text) = verify(
            &["localhost", "example.com"],
            &["-verify_hostname", "localhost"],
        );
        assert!(!ok, "{text}");
        assert!(text.contains("permitted subtree violation"), "{text}");
    }

    /// DER forbids encoding a default value; strict parsers (Python's `cryptography`, under the
    /// connector 4.x) refuse a leaf whose BasicConstraints spells out `cA: FALSE`.
    #[test]
    fn the_leaf_carries_no_basic_constraints_with_an_encoded_default() {
        let (_dir, ca) = ca();
        let leaf = ca
            .issue_leaf(SystemTime::now(), DEFAULT_LEAF_LIFETIME)
            .unwrap();
        let der = CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes()).unwrap();
        // id-ce-basicConstraints (2.5.29.19)
        let oid = [0x06, 0x03, 0x55, 0x1d, 0x13];
        assert!(
            !der.windows(oid.len()).any(|w| w == oid),
            "the leaf has a BasicConstraints extension"
        );
    }

    #[test]
    fn debug_shows_no_key() {
        let (_dir, ca) = ca();
        let leaf = ca
            .issue_leaf(SystemTime::now(), DEFAULT_LEAF_LIFETIME)
            .unwrap();
        let shown = format!("{leaf:?} {ca:?}");
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
    }
}
