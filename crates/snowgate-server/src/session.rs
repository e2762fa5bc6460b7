//! The server's own session tokens: what a caller gets for a fresh ID token at
//! `POST /v1/session`, and then sends as `Authorization: Bearer` until it expires.
//!
//! A session token is a JWT signed with HMAC-SHA256 under a key from `[sessions] key_files`.
//! Only this server (and its replicas, which share the key files) ever verifies one, so a
//! symmetric key is enough, and it is deliberately not the Snowflake minting key: a session
//! token can never verify as a Snowflake token, nor the other way round (other algorithm, other
//! key, other `aud`). The header says `typ: snowgate-session+jwt` and names the key by a
//! fingerprint (`kid`), so a key can be rotated: add the new file first, keep the old one
//! listed until the longest session has run out.
//!
//! Claims: `iss` and `aud` = the server's public URL, `sub`, `email` and `email_verified` as the
//! ID token had them, `idp_groups` (the ID token's groups claim; `[[groups]]` are resolved per
//! request, not frozen here), `iat`, `exp` = `iat` + `[sessions] lifetime`, a random `jti`.
//! The token leaves this module only as a `SecretString`.

use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde::{Deserialize, Serialize};

/// The JWT `typ` of a session token.
pub const SESSION_TYP: &str = "snowgate-session+jwt";

/// Why the session keys could not be loaded. Never holds key material.
#[derive(Debug, thiserror::Error)]
pub enum SessionKeyError {
    #[error("reading the session key {path} ([sessions] key_files): {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the session key {path} ([sessions] key_files) holds {len} bytes; it needs at least 32 random bytes (`openssl rand -out {path} 48`)")]
    TooShort { path: String, len: usize },
}

struct SessionKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// The session keys: the first signs, all verify.
pub struct SessionKeys {
    keys: Vec<SessionKey>,
    issuer: String,
    lifetime: Duration,
}

impl std::fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKeys")
            .field(
                "kids",
                &self.keys.iter().map(|k| &k.kid).collect::<Vec<_>>(),
            )
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

/// What a session token says about its holder.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default)]
    pub email_verified: bool,
    /// The groups the ID token asserted.
    #[serde(default)]
    pub idp_groups: Vec<String>,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

/// Why a session token was refused; each is a sentence for the caller.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SessionRefusal {
    #[error("the session token has expired; exchange a fresh ID token at POST /v1/session")]
    Expired,
    #[error("the session token was signed with a key this server no longer has; exchange a fresh ID token at POST /v1/session")]
    UnknownKey,
    #[error("the session token does not verify; exchange a fresh ID token at POST /v1/session")]
    Invalid,
}

impl SessionKeys {
    /// Loads the key files; `issuer` is the server's public URL, `lifetime` how long a token
    /// lives.
    pub fn load(
        paths: &[&Path],
        issuer: &str,
        lifetime: Duration,
    ) -> Result<SessionKeys, SessionKeyError> {
        let mut keys = Vec::new();
        for path in paths {
            let shown = path.display().to_string();
            let bytes: SecretSlice<u8> = std::fs::read(path)
                .map_err(|source| SessionKeyError::Read {
                    path: shown.clone(),
                    source,
                })?
                .into();
            keys.push(SessionKey::from_bytes(bytes.expose_secret(), &shown)?);
        }
        Ok(SessionKeys {
            keys,
            issuer: issuer.trim_end_matches('/').to_string(),
            lifetime,
        })
    }

    /// How long a session token lives.
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// Signs a session token for `claims`' person, issued at `now`. Returns the token and its
    /// claims.
    pub fn issue(
        &self,
        sub: &str,
        email: Option<String>,
        email_verified: bool,
        idp_groups: Vec<String>,
        now: SystemTime,
    ) -> Result<(SecretString, SessionClaims), jsonwebtoken::errors::Error> {
        let iat = unix(now);
        let mut jti = [0u8; 16];
        rand::thread_rng().fill_bytes(&mut jti);
        let claims = SessionClaims {
            iss: self.issuer.clone(),
            aud: self.issuer.clone(),
            sub: sub.to_string(),
            email,
            email_verified,
            idp_groups,
            iat,
            exp: iat + self.lifetime.as_secs() as i64,
            jti: URL_SAFE_NO_PAD.encode(jti),
        };
        let signer = &self.keys[0];
        let mut header = Header::new(Algorithm::HS256);
        header.typ = Some(SESSION_TYP.into());
        header.kid = Some(signer.kid.clone());
        let token = jsonwebtoken::encode(&header, &claims, &signer.encoding)?;
        Ok((SecretString::from(token), claims))
    }

    /// Verifies a session token at `now` (no leeway: only this server's clocks are involved).
    pub fn verify(&self, token: &str, now: SystemTime) -> Result<SessionClaims, SessionRefusal> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| SessionRefusal::Invalid)?;
        if header.alg != Algorithm::HS256 || header.typ.as_deref() != Some(SESSION_TYP) {
            return Err(SessionRefusal::Invalid);
        }
        let kid = header.kid.ok_or(SessionRefusal::Invalid)?;
        let key = self
            .keys
            .iter()
            .find(|k| k.kid == kid)
            .ok_or(SessionRefusal::UnknownKey)?;
        let mut v = Validation::new(Algorithm::HS256);
        v.set_issuer(&[self.issuer.as_str()]);
        v.set_audience(&[self.issuer.as_str()]);
        v.validate_exp = false;
        v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<SessionClaims>(token, &key.decoding, &v)
            .map_err(|_| SessionRefusal::Invalid)?
            .claims;
        if claims.exp <= unix(now) {
            return Err(SessionRefusal::Expired);
        }
        Ok(claims)
    }

    /// Whether `token` looks like one of ours (by its header), before any check.
    pub fn looks_like_session(token: &str) -> bool {
        jsonwebtoken::decode_header(token)
            .is_ok_and(|h| h.typ.as_deref() == Some(SESSION_TYP) && h.alg == Algorithm::HS256)
    }
}

impl SessionKey {
    fn from_bytes(bytes: &[u8], shown: &str) -> Result<SessionKey, SessionKeyError> {
        if bytes.len() < 32 {
            return Err(SessionKeyError::TooShort {
                path: shown.to_string(),
                len: bytes.len(),
            });
        }
        let digest = ring::digest::digest(&ring::digest::SHA256, bytes);
        Ok(SessionKey {
            kid: format!("s-{}", URL_SAFE_NO_PAD.encode(&digest.as_ref()[..9])),
            encoding: EncodingKey::from_secret(bytes),
            decoding: DecodingKey::from_secret(bytes),
        })
    }
}

fn unix(t: SystemTime) -> i64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(material: &[&[u8]]) -> SessionKeys {
        SessionKeys {
            keys: material
                .iter()
                .map(|m| SessionKey::from_bytes(m, "k").unwrap())
                .collect(),
            issuer: "https://snowgate.test".into(),
            lifetime: Duration::from_secs(900),
        }
    }

    #[test]
    fn a_token_verifies_until_its_exp_and_names_its_holder() {
        let k = keys(&[&[7u8; 32]]);
        let now = SystemTime::now();
        let (token, issued) = k
            .issue("alice", None, false, vec!["analysts".into()], now)
            .unwrap();
        assert!(SessionKeys::looks_like_session(token.expose_secret()));
        let c = k.verify(token.expose_secret(), now).unwrap();
        assert_eq!(c.sub, "alice");
        assert_eq!(c.idp_groups, ["analysts"]);
        assert_eq!(c.exp - c.iat, 900);
        assert_eq!(c.jti, issued.jti);
        let later = now + Duration::from_secs(901);
        assert_eq!(
            k.verify(token.expose_secret(), later).unwrap_err(),
            SessionRefusal::Expired
        );
    }

    #[test]
    fn a_rotated_key_still_verifies_and_a_dropped_one_does_not() {
        let old = keys(&[&[1u8; 32]]);
        let (token, _) = old
            .issue("alice", None, false, vec![], SystemTime::now())
            .unwrap();
        let rotated = keys(&[&[2u8; 32], &[1u8; 32]]);
        assert!(rotated
            .verify(token.expose_secret(), SystemTime::now())
            .is_ok());
        let dropped = keys(&[&[2u8; 32]]);
        assert_eq!(
            dropped
                .verify(token.expose_secret(), SystemTime::now())
                .unwrap_err(),
            SessionRefusal::UnknownKey
        );
    }

    #[test]
    fn a_tampered_token_or_a_short_key_is_refused() {
        let k = keys(&[&[3u8; 32]]);
        let (token, _) = k
            .issue("alice", None, false, vec![], SystemTime::now())
            .unwrap();
        let t = token.expose_secret();
        let mut parts: Vec<&str> = t.split('.').collect();
        let forged = URL_SAFE_NO_PAD.encode(
            br#"{"iss":"https://snowgate.test","aud":"https://snowgate.test","sub":"bob","iat":1,"exp":99999999999,"jti":"x"}"#,
        );
        parts[1] = &forged;
        assert_eq!(
            k.verify(&parts.join("."), SystemTime::now()).unwrap_err(),
            SessionRefusal::Invalid
        );
        assert!(matches!(
            SessionKey::from_bytes(&[0u8; 16], "short.key"),
            Err(SessionKeyError::TooShort { len: 16, .. })
        ));
    }
}
