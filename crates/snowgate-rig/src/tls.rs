//! A throwaway certificate authority for the rig.
//!
//! rustls refuses a self-signed certificate that is its own CA, so the rig makes a small CA and
//! a leaf for `127.0.0.1` and `localhost` signed by it (`CA:FALSE`, `serverAuth`). Parts serve
//! the leaf; Snowgate trusts the CA through `extra_ca_file`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};

/// PEM files of the rig's CA and of a server leaf it signed, in a directory the rig owns.
#[derive(Debug, Clone)]
pub struct TestCa {
    /// The CA certificate: what clients trust.
    pub ca_file: PathBuf,
    /// The leaf certificate for 127.0.0.1, localhost and [::1].
    pub cert_file: PathBuf,
    /// The leaf's private key.
    pub key_file: PathBuf,
}

impl TestCa {
    /// Generates a fresh CA and leaf into `dir`.
    pub fn generate(dir: &Path) -> Result<TestCa> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;

        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "Snowgate test rig CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca_key = KeyPair::generate()?;
        let ca_cert = ca_params.self_signed(&ca_key)?;

        let mut leaf_params = CertificateParams::new(vec!["localhost".to_string()])?;
        leaf_params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        leaf_params
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V6(Ipv6Addr::LOCALHOST)));
        leaf_params
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        leaf_params.is_ca = IsCa::ExplicitNoCa;
        leaf_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        leaf_params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let leaf_key = KeyPair::generate()?;
        let leaf_cert = leaf_params.signed_by(&leaf_key, &ca_cert, &ca_key)?;

        let ca = TestCa {
            ca_file: dir.join("ca.pem"),
            cert_file: dir.join("server.pem"),
            key_file: dir.join("server-key.pem"),
        };
        std::fs::write(&ca.ca_file, ca_cert.pem())?;
        std::fs::write(&ca.cert_file, leaf_cert.pem())?;
        std::fs::write(&ca.key_file, leaf_key.serialize_pem())?;
        Ok(ca)
    }

    /// Copies an existing CA certificate and the leaf it signed (`ca.pem`, `server.pem`,
    /// `server-key.pem` in `from`) into `dir`, for parts that must serve a leaf of a CA
    /// someone already trusts, such as Snowgate's local CA on a desktop.
    pub fn copy_from(from: &Path, dir: &Path) -> Result<TestCa> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let ca = TestCa {
            ca_file: dir.join("ca.pem"),
            cert_file: dir.join("server.pem"),
            key_file: dir.join("server-key.pem"),
        };
        for (file, to) in [
            ("ca.pem", &ca.ca_file),
            ("server.pem", &ca.cert_file),
            ("server-key.pem", &ca.key_file),
        ] {
            let src = from.join(file);
            std::fs::copy(&src, to).with_context(|| {
                format!(
                    "--tls-from needs {file} in {} (the CA, the leaf for 127.0.0.1 and localhost, its key)",
                    from.display()
                )
            })?;
        }
        Ok(ca)
    }

    /// The CA as a reqwest root certificate.
    pub fn reqwest_root(&self) -> Result<reqwest::Certificate> {
        let pem = std::fs::read(&self.ca_file)?;
        Ok(reqwest::Certificate::from_pem(&pem)?)
    }
}
