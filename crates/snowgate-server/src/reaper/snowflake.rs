//! The reaper's own Snowflake session: a key-pair login as the service user, statements with
//! JSON results, and the logout.
//!
//! Key-pair authentication, as Snowflake documents it
//! (<https://docs.snowflake.com/en/user-guide/key-pair-auth>, and the claims in
//! <https://docs.snowflake.com/en/developer-guide/sql-api/authenticating>, "Using key-pair
//! authentication"): a JWT signed RS256 with the user's private key, with
//! `iss` = `ACCOUNT.USER.SHA256:<fingerprint>` (the base64 SHA-256 of the public key's DER
//! SubjectPublicKeyInfo, what `DESCRIBE USER` shows as `RSA_PUBLIC_KEY_FP`),
//! `sub` = `ACCOUNT.USER` (account and user upper-case), `iat`, and `exp` at most an hour later
//! (60 s here, as the drivers do). It goes in the login request as the drivers send it:
//! `AUTHENTICATOR: SNOWFLAKE_JWT` with the JWT as `TOKEN` (`POST /session/v1/login-request`).
//! Statements go to `POST /queries/v1/query-request` with the session token; results are read
//! from the JSON `rowset` (every value a string, as Snowflake's JSON results encode them).
//!
//! The private key, the JWT and the session token are secrets: they never reach a log, an error
//! or an audit record. Errors name the step, Snowflake's code and its message.

use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use jsonwebtoken::{EncodingKey, Header};
use ring::signature::KeyPair as _;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde_json::{json, Value};

use crate::config::ReaperConfig;

/// How long a request to Snowflake may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// The key-pair JWT's lifetime.
const JWT_LIFETIME: u64 = 60;

/// Why a Snowflake call failed. Holds no secret.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SnowflakeError {
    #[error("the reaper's key {path} is not usable: {message}")]
    Key { path: String, message: String },
    #[error("{what}: Snowflake at {url} could not be reached ({cause})")]
    Unreachable {
        what: String,
        url: String,
        cause: String,
    },
    #[error("{what}: Snowflake answered {code}: {message}")]
    Refused {
        what: String,
        code: String,
        message: String,
    },
    #[error("{what}: Snowflake's answer could not be read ({message})")]
    Answer { what: String, message: String },
}

/// The service user's key: the private half to sign with, the public key's fingerprint.
pub struct ReaperKey {
    encoding: EncodingKey,
    fingerprint: String,
}

impl std::fmt::Debug for ReaperKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReaperKey")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl ReaperKey {
    /// Reads an RSA private key (PEM, PKCS#8 or PKCS#1, unencrypted).
    pub fn load(path: &Path) -> Result<ReaperKey, SnowflakeError> {
        let invalid = |message: String| SnowflakeError::Key {
            path: path.display().to_string(),
            message,
        };
        let text: SecretSlice<u8> = std::fs::read(path)
            .map_err(|e| invalid(format!("it can't be read ({e})")))?
            .into();
        let block = pem::parse(text.expose_secret()).map_err(|_| {
            invalid("it is not a PEM file; give the RSA private key in PEM (unencrypted)".into())
        })?;
        let pair = match block.tag() {
            "PRIVATE KEY" => ring::rsa::KeyPair::from_pkcs8(block.contents()),
            "RSA PRIVATE KEY" => ring::rsa::KeyPair::from_der(block.contents()),
            "ENCRYPTED PRIVATE KEY" => {
                return Err(invalid(
                    "it is encrypted; give it unencrypted (openssl pkcs8 -topk8 -nocrypt) and protect the file instead".into(),
                ))
            }
            other => {
                return Err(invalid(format!(
                    "it holds a {other:?} block; give an RSA private key (BEGIN PRIVATE KEY)"
                )))
            }
        }
        .map_err(|e| invalid(format!("it is not an RSA private key of 2048 bits or more ({e})")))?;
        let fingerprint = fingerprint(pair.public_key().as_ref());
        let encoding = EncodingKey::from_rsa_pem(text.expose_secret())
            .map_err(|e| invalid(format!("it can't sign ({e})")))?;
        Ok(ReaperKey {
            encoding,
            fingerprint,
        })
    }

    /// `SHA256:<base64>`: what `DESCRIBE USER` shows as `RSA_PUBLIC_KEY_FP` once the public
    /// half is registered.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The login JWT for `account`.`user` at `now`.
    fn jwt(&self, account: &str, user: &str, now: SystemTime) -> Result<SecretString, String> {
        let iat = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let sub = format!("{}.{}", account.to_uppercase(), user.to_uppercase());
        let claims = json!({
            "iss": format!("{sub}.{}", self.fingerprint),
            "sub": sub,
            "iat": iat,
            "exp": iat + JWT_LIFETIME,
        });
        jsonwebtoken::encode(
            &Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            &self.encoding,
        )
        .map(SecretString::from)
        .map_err(|e| e.to_string())
    }
}

/// `SHA256:` and the base64 SHA-256 of the SubjectPublicKeyInfo DER around `pkcs1`, an
/// RSAPublicKey in DER (what ring gives).
pub fn fingerprint(pkcs1: &[u8]) -> String {
    // SEQUENCE { SEQUENCE { OID 1.2.840.113549.1.1.1, NULL }, BIT STRING { 0 unused bits, pkcs1 } }
    const ALGORITHM: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bits = vec![0u8];
    bits.extend_from_slice(pkcs1);
    let mut body = ALGORITHM.to_vec();
    body.extend(der(0x03, &bits));
    let spki = der(0x30, &body);
    format!(
        "SHA256:{}",
        STANDARD.encode(ring::digest::digest(&ring::digest::SHA256, &spki))
    )
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// Where and as whom the reaper logs in.
#[derive(Debug)]
pub struct SnowflakeAccount {
    base: String,
    account: String,
    user: String,
    role: String,
    warehouse: Option<String>,
    key: ReaperKey,
    http: reqwest::Client,
}

/// A logged-in session of the service user. Its token never leaves this module.
pub struct ReaperSession<'a> {
    account: &'a SnowflakeAccount,
    token: SecretString,
    sequence: u64,
}

/// A result: column names (upper-case) and rows of optional strings.
#[derive(Debug, Clone, Default)]
pub struct Rows {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Option<String>>>,
}

impl Rows {
    /// The index of column `name`, or an error naming the statement.
    pub fn column(&self, name: &str, what: &str) -> Result<usize, SnowflakeError> {
        self.columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))
            .ok_or_else(|| SnowflakeError::Answer {
                what: what.to_string(),
                message: format!("the result has no column {name}"),
            })
    }
}

impl SnowflakeAccount {
    /// The account of `[reaper]`, with its key loaded.
    pub fn new(config: &ReaperConfig) -> Result<SnowflakeAccount, SnowflakeError> {
        let key = ReaperKey::load(&config.private_key_file.0)?;
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| SnowflakeError::Unreachable {
                what: "building the HTTP client".into(),
                url: config.account_url.to_string(),
                cause: e.to_string(),
            })?;
        Ok(SnowflakeAccount {
            base: config.account_url.to_string(),
            account: config.account_name().expect("checked at load"),
            user: config.user.as_str().to_string(),
            role: config.role.as_str().to_string(),
            warehouse: config.warehouse.as_ref().map(|w| w.as_str().to_string()),
            key,
            http,
        })
    }

    /// The service user, for messages.
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The key's fingerprint.
    pub fn fingerprint(&self) -> &str {
        self.key.fingerprint()
    }

    /// Logs in with the key pair, as the configured role.
    pub async fn login(&self, now: SystemTime) -> Result<ReaperSession<'_>, SnowflakeError> {
        let what = format!("logging in as {} with its key pair", self.user);
        let jwt = self
            .key
            .jwt(&self.account, &self.user, now)
            .map_err(|message| SnowflakeError::Key {
                path: "(the reaper's key)".into(),
                message: format!("signing the login JWT failed: {message}"),
            })?;
        let mut query = vec![
            ("roleName", self.role.clone()),
            ("request_id", request_id()),
        ];
        if let Some(w) = &self.warehouse {
            query.push(("warehouse", w.clone()));
        }
        let body = json!({ "data": {
            "CLIENT_APP_ID": "Snowgate",
            "CLIENT_APP_VERSION": env!("CARGO_PKG_VERSION"),
            "ACCOUNT_NAME": self.account,
            "LOGIN_NAME": self.user,
            "AUTHENTICATOR": "SNOWFLAKE_JWT",
            "TOKEN": jwt.expose_secret(),
            "CLIENT_ENVIRONMENT": { "APPLICATION": "Snowgate session reaper" },
        }});
        let req = self
            .http
            .post(format!("{}/session/v1/login-request", self.base))
            .query(&query)
            .header("accept", "application/json")
            .json(&body);
        let data = self.call(req, &what).await?;
        let token =
            data.get("token")
                .and_then(Value::as_str)
                .ok_or_else(|| SnowflakeError::Answer {
                    what: what.clone(),
                    message: "no session token in the answer".into(),
                })?;
        Ok(ReaperSession {
            account: self,
            token: SecretString::from(token.to_string()),
            sequence: 0,
        })
    }

    /// Sends `req` and returns the answer's `data`, or Snowflake's refusal.
    async fn call(
        &self,
        req: reqwest::RequestBuilder,
        what: &str,
    ) -> Result<Value, SnowflakeError> {
        let resp = req.send().await.map_err(|e| SnowflakeError::Unreachable {
            what: what.to_string(),
            url: self.base.clone(),
            cause: without_url(&e),
        })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|e| SnowflakeError::Unreachable {
            what: what.to_string(),
            url: self.base.clone(),
            cause: without_url(&e),
        })?;
        let body: Value = serde_json::from_str(&text).map_err(|_| SnowflakeError::Answer {
            what: what.to_string(),
            message: format!("HTTP {status}, not JSON"),
        })?;
        if body.get("success").and_then(Value::as_bool) != Some(true) {
            return Err(SnowflakeError::Refused {
                what: what.to_string(),
                code: body
                    .get("code")
                    .and_then(Value::as_str)
                    .unwrap_or("(no code)")
                    .to_string(),
                message: body
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("(no message)")
                    .to_string(),
            });
        }
        Ok(body.get("data").cloned().unwrap_or(Value::Null))
    }
}

impl ReaperSession<'_> {
    /// Runs `sql` and reads its JSON result.
    pub async fn query(&mut self, sql: &str, what: &str) -> Result<Rows, SnowflakeError> {
        self.sequence += 1;
        let body = json!({
            "sqlText": sql,
            "asyncExec": false,
            "sequenceId": self.sequence,
            "querySubmissionTime": SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
        });
        let req = self
            .account
            .http
            .post(format!("{}/queries/v1/query-request", self.account.base))
            .query(&[("requestId", request_id())])
            .header("accept", "application/snowflake")
            .header(
                "authorization",
                format!("Snowflake Token=\"{}\"", self.token.expose_secret()),
            )
            .json(&body);
        let data = self.account.call(req, what).await?;
        read_rows(&data).map_err(|message| SnowflakeError::Answer {
            what: what.to_string(),
            message,
        })
    }

    /// Ends the session. A failure is only logged: the session times out by itself.
    pub async fn logout(self) {
        let req = self
            .account
            .http
            .post(format!("{}/session", self.account.base))
            .query(&[("delete", "true"), ("request_id", &request_id())])
            .header("accept", "application/json")
            .header(
                "authorization",
                format!("Snowflake Token=\"{}\"", self.token.expose_secret()),
            );
        if let Err(e) = self.account.call(req, "logging the reaper out").await {
            tracing::debug!(error = %e, "the reaper's logout failed; its session expires by itself");
        }
    }
}

fn read_rows(data: &Value) -> Result<Rows, String> {
    if data
        .get("rowsetBase64")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
    {
        return Err("the result came in Arrow; the reaper reads JSON results".into());
    }
    let columns = data
        .get("rowtype")
        .and_then(Value::as_array)
        .ok_or("no rowtype")?
        .iter()
        .map(|c| {
            c.get("name")
                .and_then(Value::as_str)
                .map(|n| n.to_uppercase())
                .ok_or("a column without a name")
        })
        .collect::<Result<Vec<_>, _>>()?;
    let rows = data
        .get("rowset")
        .and_then(Value::as_array)
        .ok_or("no rowset")?
        .iter()
        .map(|row| {
            row.as_array()
                .ok_or("a row that is not an array")?
                .iter()
                .map(|v| match v {
                    Value::Null => Ok(None),
                    Value::String(s) => Ok(Some(s.clone())),
                    Value::Number(n) => Ok(Some(n.to_string())),
                    Value::Bool(b) => Ok(Some(b.to_string())),
                    _ => Err("a value that is not a string"),
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Rows { columns, rows })
}

/// A reqwest error's sentence without its URL (which holds the query string).
fn without_url(e: &reqwest::Error) -> String {
    let mut cause = e.to_string();
    if let Some(url) = e.url() {
        cause = cause.replace(url.as_str(), "");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause.push_str(&format!(": {s}"));
        source = s.source();
    }
    cause
}

/// A random UUID (v4) for Snowflake's `requestId`.
fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A SQL string literal: `'` doubled.
pub fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// A Snowflake JSON TIMESTAMP_LTZ (`<seconds>.<fraction>`) as Unix milliseconds.
pub fn timestamp_ms(s: &str) -> Option<i64> {
    let (secs, frac) = s.trim().split_once('.').unwrap_or((s.trim(), ""));
    let secs: i64 = secs.parse().ok()?;
    let mut millis = 0i64;
    for (i, c) in frac.chars().take(3).enumerate() {
        millis += i64::from(c.to_digit(10)?) * 10i64.pow(2 - i as u32);
    }
    Some(secs * 1000 + if secs < 0 { -millis } else { millis })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_read_as_snowflake_writes_them() {
        assert_eq!(
            timestamp_ms("1700000000.123456789"),
            Some(1_700_000_000_123)
        );
        assert_eq!(timestamp_ms("1700000000"), Some(1_700_000_000_000));
        assert_eq!(timestamp_ms("1700000000.5"), Some(1_700_000_000_500));
        assert_eq!(timestamp_ms("soon"), None);
    }

    #[test]
    fn literals_double_their_quotes() {
        assert_eq!(literal("o'brien"), "'o''brien'");
    }

    #[test]
    fn the_fingerprint_is_that_of_openssls_public_key_der() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("k.pem");
        let der = dir.path().join("k.der");
        let ok = std::process::Command::new("openssl")
            .args([
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                "rsa_keygen_bits:2048",
                "-out",
            ])
            .arg(&key)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let ok = std::process::Command::new("openssl")
            .args(["pkey", "-pubout", "-outform", "DER", "-in"])
            .arg(&key)
            .arg("-out")
            .arg(&der)
            .status()
            .unwrap()
            .success();
        assert!(ok);
        let expected = format!(
            "SHA256:{}",
            STANDARD.encode(ring::digest::digest(
                &ring::digest::SHA256,
                &std::fs::read(&der).unwrap()
            ))
        );
        assert_eq!(ReaperKey::load(&key).unwrap().fingerprint(), expected);
    }
}
