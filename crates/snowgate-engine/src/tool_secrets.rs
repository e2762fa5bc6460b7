//! Per-tool connection secrets: optional passwords that local tools must present to the
//! gateway (`[gateway] require_tool_secrets = true`).
//!
//! A secret is 32 random bytes, shown as `sg_` + base64url (no padding), exactly once: when it
//! is created. The secret itself lives only in the OS keyring (service `snowgate`, account
//! `tool-secret|<data dir>|<name>`). The names, with their creation times and never a secret,
//! are kept in `tool-secrets.json` in the data dir (mode 0600, written atomically) so they can
//! be listed. A login is checked by comparing the SHA-256 digest of the presented password with
//! the digest of each stored secret, in constant time.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine as _;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The keyring entries' service name (shared with the vault and the audit anchor).
const SERVICE: &str = "snowgate";
/// The file in the data dir that lists the tool names.
pub const LIST_FILE: &str = "tool-secrets.json";
/// How long a keyring call may take before the keyring is reported unreachable.
const KEYRING_TIMEOUT: Duration = Duration::from_secs(10);
/// The prefix of every tool secret.
pub const PREFIX: &str = "sg_";

/// Why a tool-secret operation failed. Never carries a secret.
#[derive(Debug, thiserror::Error)]
pub enum ToolSecretError {
    #[error("{0:?} is not a tool name: use 1 to 64 letters, digits, `-`, `_` or `.` (for example `dbeaver`)")]
    BadName(String),
    #[error("a connection secret for {0} already exists; pass --rotate to replace it (the old one stops working)")]
    Exists(String),
    #[error("there is no connection secret for {0}; `snowgate tool-secret list` shows the tools that have one")]
    NotFound(String),
    #[error(
        "the OS keyring can't be reached, so tool connection secrets can't be {doing}: {message}"
    )]
    Keyring {
        doing: &'static str,
        message: String,
    },
    #[error("the tool secret list {} could not be {doing}: {message}", path.display())]
    List {
        path: PathBuf,
        doing: &'static str,
        message: String,
    },
}

/// One tool with a connection secret, as listed (no secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
pub struct ToolSecretInfo {
    pub name: String,
    /// When the current secret was created (RFC 3339).
    pub created_at: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct ListFile {
    tools: Vec<ToolSecretInfo>,
}

/// The tool secrets of one data dir.
#[derive(Debug)]
pub struct ToolSecrets {
    data_dir: PathBuf,
    /// Serializes changes to the list file.
    lock: Mutex<()>,
}

/// Checks a tool name: 1–64 of letters, digits, `-`, `_`, `.`.
pub fn validate_name(name: &str) -> Result<(), ToolSecretError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ToolSecretError::BadName(name.chars().take(80).collect()))
    }
}

/// A fresh secret: `sg_` + base64url(32 random bytes), no padding.
pub fn generate() -> SecretString {
    generate_with(PREFIX)
}

/// A fresh secret: `prefix` + base64url(32 random bytes), no padding.
pub(crate) fn generate_with(prefix: &str) -> SecretString {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let text = format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    bytes.fill(0);
    SecretString::from(text)
}

/// Whether two secrets are equal, comparing their SHA-256 digests in constant time.
pub fn secrets_match(a: &str, b: &str) -> bool {
    let da = Sha256::digest(a.as_bytes());
    let db = Sha256::digest(b.as_bytes());
    da.iter()
        .zip(db.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

impl ToolSecrets {
    /// The tool secrets kept for `data_dir`.
    pub fn new(data_dir: &Path) -> ToolSecrets {
        ToolSecrets {
            data_dir: data_dir.to_path_buf(),
            lock: Mutex::new(()),
        }
    }

    fn list_path(&self) -> PathBuf {
        self.data_dir.join(LIST_FILE)
    }

    fn account(&self, name: &str) -> String {
        format!("tool-secret|{}|{name}", self.data_dir.display())
    }

    /// The tools that have a secret, oldest first.
    pub fn list(&self) -> Result<Vec<ToolSecretInfo>, ToolSecretError> {
        Ok(self.read_list()?.tools)
    }

    /// Creates (or with `rotate`, replaces) the secret for `name` and returns it. This is the
    /// only time the secret is ever shown.
    pub async fn create(&self, name: &str, rotate: bool) -> Result<SecretString, ToolSecretError> {
        validate_name(name)?;
        let exists = self.read_list()?.tools.iter().any(|t| t.name == name);
        if exists && !rotate {
            return Err(ToolSecretError::Exists(name.to_string()));
        }
        let secret = generate();
        let value = secret.expose_secret().to_string();
        self.keyring("stored", self.account(name), move |entry| {
            entry.set_password(&value)
        })
        .await?;
        let _guard = self.lock.lock().unwrap();
        let mut list = self.read_list()?;
        list.tools.retain(|t| t.name != name);
        list.tools.push(ToolSecretInfo {
            name: name.to_string(),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        });
        self.write_list(&list)?;
        tracing::info!(
            tool = name,
            rotated = exists,
            "created a tool connection secret"
        );
        Ok(secret)
    }

    /// Deletes the secret for `name` from the keyring and the list.
    pub async fn revoke(&self, name: &str) -> Result<(), ToolSecretError> {
        validate_name(name)?;
        if !self.read_list()?.tools.iter().any(|t| t.name == name) {
            return Err(ToolSecretError::NotFound(name.to_string()));
        }
        self.keyring("deleted", self.account(name), |entry| {
            match entry.delete_credential() {
                Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
                Err(e) => Err(e),
            }
        })
        .await?;
        let _guard = self.lock.lock().unwrap();
        let mut list = self.read_list()?;
        list.tools.retain(|t| t.name != name);
        self.write_list(&list)?;
        tracing::info!(tool = name, "revoked a tool connection secret");
        Ok(())
    }

    /// The name of the tool whose secret `presented` is, if any. Every stored secret is
    /// compared (in constant time), so the time taken does not tell which one matched.
    pub async fn verify(
        &self,
        presented: &SecretString,
    ) -> Result<Option<String>, ToolSecretError> {
        let names: Vec<String> = self
            .read_list()?
            .tools
            .into_iter()
            .map(|t| t.name)
            .collect();
        let mut found = None;
        for name in names {
            let stored = self
                .keyring("read", self.account(&name), |entry| {
                    match entry.get_password() {
                        Ok(t) => Ok(Some(SecretString::from(t))),
                        Err(keyring::Error::NoEntry) => Ok(None),
                        Err(e) => Err(e),
                    }
                })
                .await?;
            if let Some(stored) = stored {
                if secrets_match(stored.expose_secret(), presented.expose_secret())
                    && found.is_none()
                {
                    found = Some(name);
                }
            }
        }
        Ok(found)
    }

    async fn keyring<T, F>(
        &self,
        doing: &'static str,
        account: String,
        f: F,
    ) -> Result<T, ToolSecretError>
    where
        T: Send + 'static,
        F: FnOnce(keyring::Entry) -> Result<T, keyring::Error> + Send + 'static,
    {
        keyring_call(account, f)
            .await
            .map_err(|message| ToolSecretError::Keyring { doing, message })
    }

    fn read_list(&self) -> Result<ListFile, ToolSecretError> {
        let path = self.list_path();
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ToolSecretError::List {
                path,
                doing: "read",
                message: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ListFile::default()),
            Err(e) => Err(ToolSecretError::List {
                path,
                doing: "read",
                message: e.to_string(),
            }),
        }
    }

    fn write_list(&self, list: &ListFile) -> Result<(), ToolSecretError> {
        let json = serde_json::to_vec_pretty(list).expect("the list serializes");
        write_private(&self.data_dir, LIST_FILE, &json).map_err(|e| ToolSecretError::List {
            path: self.list_path(),
            doing: "written",
            message: e.to_string(),
        })
    }
}

/// Runs `f` on the keyring entry `account` of Snowgate's service, off the async threads, and
/// waits at most [`KEYRING_TIMEOUT`]. The error is a sentence about the store, never a secret.
pub(crate) async fn keyring_call<T, F>(account: String, f: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce(keyring::Entry) -> Result<T, keyring::Error> + Send + 'static,
{
    let task = tokio::task::spawn_blocking(move || {
        let entry = keyring::Entry::new(SERVICE, &account)?;
        f(entry)
    });
    Err(match tokio::time::timeout(KEYRING_TIMEOUT, task).await {
        Ok(Ok(Ok(v))) => return Ok(v),
        // keyring's errors describe the store, never the secret.
        Ok(Ok(Err(e))) => e.to_string(),
        Ok(Err(_)) => "the keyring call failed unexpectedly".into(),
        Err(_) => format!("it did not answer within {} s", KEYRING_TIMEOUT.as_secs()),
    })
}

/// Writes `bytes` to `dir/file` atomically (a temporary file, synced, then renamed), mode 0600.
pub(crate) fn write_private(dir: &Path, file: &str, bytes: &[u8]) -> std::io::Result<()> {
    let path = dir.join(file);
    let tmp = dir.join(format!(".{file}.{}.tmp", std::process::id()));
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok(())
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_letters_digits_dash_underscore_dot_up_to_64() {
        for good in [
            "dbeaver",
            "Tableau-2",
            "dbt_prod",
            "py.notebook",
            "a",
            &"x".repeat(64),
        ] {
            validate_name(good).unwrap();
        }
        for bad in [
            "",
            "has space",
            "semi;colon",
            "ünicode",
            "a/b",
            "a|b",
            &"x".repeat(65),
        ] {
            let err = validate_name(bad).unwrap_err().to_string();
            assert!(err.contains("is not a tool name"), "{err}");
            assert!(err.contains("1 to 64"), "{err}");
        }
    }

    #[test]
    fn secrets_are_sg_and_43_base64url_chars_and_differ() {
        let a = generate();
        let b = generate();
        let a = a.expose_secret();
        assert!(a.starts_with(PREFIX), "{a}");
        let body = &a[PREFIX.len()..];
        assert_eq!(body.len(), 43);
        assert!(body
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        let decoded = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .unwrap();
        assert_eq!(decoded.len(), 32);
        assert_ne!(a, b.expose_secret());
    }

    #[test]
    fn comparison_matches_only_equal_secrets() {
        let s = generate();
        let s = s.expose_secret();
        assert!(secrets_match(s, s));
        assert!(!secrets_match(s, &s[..s.len() - 1]));
        assert!(!secrets_match(s, &format!("{s}x")));
        assert!(!secrets_match(s, ""));
        let mut flipped = s.to_string().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        assert!(!secrets_match(s, std::str::from_utf8(&flipped).unwrap()));
    }

    #[test]
    fn the_list_file_is_private_and_holds_no_secret() {
        let dir = tempfile::tempdir().unwrap();
        let ts = ToolSecrets::new(dir.path());
        assert!(ts.list().unwrap().is_empty());
        let _g = ts.lock.lock().unwrap();
        ts.write_list(&ListFile {
            tools: vec![ToolSecretInfo {
                name: "dbeaver".into(),
                created_at: "2026-01-01T00:00:00Z".into(),
            }],
        })
        .unwrap();
        drop(_g);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join(LIST_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(ts.list().unwrap()[0].name, "dbeaver");
    }

    #[test]
    fn keyring_accounts_name_the_data_dir_and_the_tool() {
        let ts = ToolSecrets::new(Path::new("/home/a/.local/share/snowgate"));
        assert_eq!(
            ts.account("dbeaver"),
            "tool-secret|/home/a/.local/share/snowgate|dbeaver"
        );
    }
}
