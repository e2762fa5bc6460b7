//! The checked values both configs share. Each `Deserialize` refuses a bad value with a
//! sentence a person can act on, and the TOML parser puts the value's line and key in front.

use std::fmt;
use std::path::PathBuf;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use url::{Host, Url};

/// Whether `url`'s host is this machine: an IPv4 address in 127.0.0.0/8, `::1`, or
/// `localhost`. Nothing else counts, not even another name that resolves to loopback.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(name)) => name == "localhost",
        None => false,
    }
}

/// An absolute `https://` URL; `http://` is accepted only for a loopback host (see
/// [`is_loopback`]), which only local test parts use. Displays without a trailing slash, as
/// people write base URLs; serializes as the parsed URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct HttpsUrl(pub Url);

impl<'de> Deserialize<'de> for HttpsUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let url = Url::parse(&s)
            .map_err(|e| serde::de::Error::custom(format!("{s:?} is not a URL: {e}")))?;
        match url.scheme() {
            "https" => Ok(HttpsUrl(url)),
            "http" if is_loopback(&url) => Ok(HttpsUrl(url)),
            _ => Err(serde::de::Error::custom(format!(
                "{s:?} must be an https:// URL (http:// is allowed only for 127.0.0.1, [::1] and localhost)"
            ))),
        }
    }
}

impl fmt::Display for HttpsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str().trim_end_matches('/'))
    }
}

/// A path to a file that exists when the config is read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ExistingFile(pub PathBuf);

impl<'de> Deserialize<'de> for ExistingFile {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let path = PathBuf::from(String::deserialize(d)?);
        if path.is_file() {
            Ok(ExistingFile(path))
        } else {
            Err(serde::de::Error::custom(format!(
                "{} does not exist or is not a file",
                path.display()
            )))
        }
    }
}

/// A secret from a config file (a client secret, a database URL with its password): never
/// printed, never serialized in the clear, and not blank.
#[derive(Clone)]
pub struct Secret(pub SecretString);

impl Secret {
    /// The secret's value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("[redacted]")
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim().is_empty() {
            return Err(serde::de::Error::custom("must not be empty"));
        }
        Ok(Secret(SecretString::from(s)))
    }
}

/// A string that is not empty or blank.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct NonEmpty(pub String);

impl NonEmpty {
    /// The value as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NonEmpty {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for NonEmpty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.trim().is_empty() {
            Err(serde::de::Error::custom("must not be empty"))
        } else {
            Ok(NonEmpty(s))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Holder<T> {
        v: T,
    }

    fn read<T: for<'de> Deserialize<'de>>(value: &str) -> Result<T, String> {
        toml::from_str::<Holder<T>>(&format!("v = {value:?}"))
            .map(|h| h.v)
            .map_err(|e| e.message().to_string())
    }

    #[test]
    fn plain_http_is_allowed_for_loopback_hosts_only() {
        for ok in [
            "https://idp.example.com",
            "http://127.0.0.1:9000",
            "http://127.5.6.7/x",
            "http://[::1]:8443",
            "http://localhost:8080",
            "http://LOCALHOST",
        ] {
            assert!(read::<HttpsUrl>(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://idp.example.com",
            "http://128.0.0.1",
            "http://0.0.0.0:80",
            "http://[::ffff:127.0.0.1]",
            "http://[::2]",
            "http://localhost.example.com",
            "http://127.0.0.1.nip.io",
            "ftp://127.0.0.1",
        ] {
            let err = read::<HttpsUrl>(bad).unwrap_err();
            assert!(err.contains("must be an https:// URL"), "{bad}: {err}");
        }
        let err = read::<HttpsUrl>("not a url").unwrap_err();
        assert!(err.contains("is not a URL"), "{err}");
    }

    #[test]
    fn an_https_url_displays_without_its_trailing_slash() {
        let url = read::<HttpsUrl>("https://idp.example.com/").unwrap();
        assert_eq!(url.to_string(), "https://idp.example.com");
        assert_eq!(url.0.as_str(), "https://idp.example.com/");
    }

    #[test]
    fn an_existing_file_must_be_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, "x").unwrap();
        assert_eq!(
            read::<ExistingFile>(file.to_str().unwrap()).unwrap().0,
            file
        );
        let err = read::<ExistingFile>(dir.path().to_str().unwrap()).unwrap_err();
        assert!(err.contains("does not exist or is not a file"), "{err}");
        let err = read::<ExistingFile>("/nonexistent/ca.pem").unwrap_err();
        assert!(err.contains("/nonexistent/ca.pem does not exist"), "{err}");
    }

    #[test]
    fn a_secret_is_never_shown_and_never_blank() {
        let s = read::<Secret>("hunter2").unwrap();
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(format!("{s:?}"), "Secret([redacted])");
        assert_eq!(
            toml::Value::try_from(&s).unwrap().as_str(),
            Some("[redacted]")
        );
        for blank in ["", "  "] {
            assert!(read::<Secret>(blank)
                .unwrap_err()
                .contains("must not be empty"));
        }
    }

    #[test]
    fn non_empty_refuses_blank_text() {
        assert_eq!(read::<NonEmpty>("groups").unwrap().as_str(), "groups");
        assert!(read::<NonEmpty>(" ")
            .unwrap_err()
            .contains("must not be empty"));
    }
}
