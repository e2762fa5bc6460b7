//! Snowflake External OAuth tokens: the server's signing keys, the tokens it mints for active
//! grants, and the JWKS that Snowflake's security integration trusts.
//!
//! Keys are RSA private keys in PEM files (PKCS#8 or PKCS#1). The first configured key signs;
//! every key is published at `/.well-known/jwks.json`, so a rotation is: add the new key second,
//! wait until Snowflake has fetched the JWKS, move it first, later drop the old one. Each key's
//! `kid` is its RFC 7638 thumbprint, so it is stable across restarts and replicas.
//!
//! A minted token is an RS256 JWT: `iss` = the server's public URL, `aud` = the configured
//! Snowflake audience, `sub` and the configured user claim, `scp` = `session:role:ROLE`, `iat`,
//! `exp` = the earlier of now + the configured lifetime and the grant's end, a random `jti`
//! and `snowgate_grant` = the grant id. The key material and the tokens are secrets: neither is
//! ever logged, and the token leaves this module only as a `SecretString`.

use std::path::Path;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{EncodingKey, Header};
use rand::RngCore;
use ring::signature::KeyPair as _;
use secrecy::{ExposeSecret, SecretSlice, SecretString};
use serde_json::{json, Value};
use snowgate_grants::team_api::{Jwk, Jwks};
use snowgate_grants::{Actor, Grant, RoleName, Timestamp};

use crate::config::UserValue;

/// Why the signing keys could not be loaded. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("reading the signing key {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the signing key {path} is not usable: {message}")]
    Invalid { path: String, message: String },
}

/// One signing key: the private half for signing, the public half as a JWK.
struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    jwk: Jwk,
}

/// The server's signing keys: the first signs, all are published.
pub struct SigningKeys {
    keys: Vec<SigningKey>,
}

impl std::fmt::Debug for SigningKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeys")
            .field("kids", &self.kids())
            .finish()
    }
}

impl SigningKeys {
    /// Loads each file in order. Fails on the first that is not an RSA private key.
    pub fn load(paths: &[&Path]) -> Result<SigningKeys, KeyError> {
        let mut keys = Vec::new();
        for path in paths {
            keys.push(load_key(path)?);
        }
        if keys.is_empty() {
            return Err(KeyError::Invalid {
                path: "(none)".into(),
                message: "no key files are configured".into(),
            });
        }
        Ok(SigningKeys { keys })
    }

    /// The key ids, signer first.
    pub fn kids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.kid.as_str()).collect()
    }

    /// The JWKS document: every public key.
    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: self.keys.iter().map(|k| k.jwk.clone()).collect(),
        }
    }

    /// Signs `claims` with the first key.
    fn sign(&self, claims: &Value) -> Result<SecretString, jsonwebtoken::errors::Error> {
        self.sign_typed(claims, "JWT").map(SecretString::from)
    }

    /// Signs `claims` with the first key, as a compact JWS whose header says `typ`. Returns the
    /// signer's kid and the JWS. For what is public once signed (audit checkpoints).
    pub(crate) fn sign_typed(
        &self,
        claims: &Value,
        typ: &str,
    ) -> Result<String, jsonwebtoken::errors::Error> {
        let signer = &self.keys[0];
        let mut header = Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = Some(signer.kid.clone());
        header.typ = Some(typ.into());
        jsonwebtoken::encode(&header, claims, &signer.encoding)
    }

    /// The public key with id `kid`, for checking a signature, if it is one of these keys.
    pub(crate) fn decoding_key(&self, kid: &str) -> Option<jsonwebtoken::DecodingKey> {
        let key = self.keys.iter().find(|k| k.kid == kid)?;
        jsonwebtoken::DecodingKey::from_rsa_components(&key.jwk.n, &key.jwk.e).ok()
    }
}

fn load_key(path: &Path) -> Result<SigningKey, KeyError> {
    let shown = path.display().to_string();
    let invalid = |message: String| KeyError::Invalid {
        path: shown.clone(),
        message,
    };
    let text: SecretSlice<u8> = std::fs::read(path)
        .map_err(|source| KeyError::Read {
            path: shown.clone(),
            source,
        })?
        .into();
    let block = pem::parse(text.expose_secret())
        .map_err(|_| invalid("it is not a PEM file; give an RSA private key in PEM".into()))?;
    let pair = match block.tag() {
        "PRIVATE KEY" => ring::rsa::KeyPair::from_pkcs8(block.contents()),
        "RSA PRIVATE KEY" => ring::rsa::KeyPair::from_der(block.contents()),
        other => {
            return Err(invalid(format!(
                "it holds a {other:?} block; give an RSA private key (BEGIN PRIVATE KEY or BEGIN RSA PRIVATE KEY)"
            )))
        }
    }
    .map_err(|e| invalid(format!("it is not an RSA private key of 2048 bits or more ({e})")))?;
    let public: ring::rsa::PublicKeyComponents<Vec<u8>> = pair.public_key().into();
    let n = URL_SAFE_NO_PAD.encode(strip_zeros(&public.n));
    let e = URL_SAFE_NO_PAD.encode(strip_zeros(&public.e));
    // RFC 7638: the SHA-256 of the required members in lexicographic order, no whitespace.
    let thumbprint_input = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
    let kid = URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        thumbprint_input.as_bytes(),
    ));
    let encoding = EncodingKey::from_rsa_pem(text.expose_secret())
        .map_err(|e| invalid(format!("it could not be read as a signing key ({e})")))?;
    Ok(SigningKey {
        jwk: Jwk {
            kty: "RSA".into(),
            use_: "sig".into(),
            alg: "RS256".into(),
            kid: kid.clone(),
            n,
            e,
        },
        kid,
        encoding,
    })
}

fn strip_zeros(b: &[u8]) -> &[u8] {
    let first = b
        .iter()
        .position(|x| *x != 0)
        .unwrap_or(b.len().saturating_sub(1));
    &b[first..]
}

/// What the configuration says minted tokens look like.
#[derive(Debug, Clone)]
pub struct MintPolicy {
    /// `iss`: the server's public URL.
    pub issuer: String,
    /// `aud`: Snowflake's audience.
    pub audience: String,
    /// The claim Snowflake maps to LOGIN_NAME.
    pub user_claim: String,
    /// What goes in it.
    pub user_value: UserValue,
    /// The longest a token lives.
    pub lifetime: Duration,
    /// `[[snowflake]]`: the accounts whose tokens differ (`iss`, `aud`, user claim), by name.
    pub accounts: Vec<AccountMint>,
}

/// How tokens for one `[[snowflake]]` account are minted.
#[derive(Debug, Clone)]
pub struct AccountMint {
    pub name: String,
    pub issuer: String,
    pub audience: String,
    pub user_claim: String,
}

impl MintPolicy {
    /// `iss`, `aud` and the user claim for a grant of `account` (`None`, or an account with no
    /// `[[snowflake]]` entry: `[minting]`'s).
    pub fn for_account(&self, account: Option<&str>) -> (&str, &str, &str) {
        match account.and_then(|a| {
            self.accounts
                .iter()
                .find(|m| m.name.eq_ignore_ascii_case(a))
        }) {
            Some(m) => (&m.issuer, &m.audience, &m.user_claim),
            None => (&self.issuer, &self.audience, &self.user_claim),
        }
    }
}

/// A minted token. `Debug` hides the token.
pub struct MintedToken {
    pub token: SecretString,
    pub expires_at: Timestamp,
    pub role: RoleName,
    pub jti: String,
}

impl std::fmt::Debug for MintedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MintedToken")
            .field("token", &"[redacted]")
            .field("expires_at", &self.expires_at)
            .field("role", &self.role)
            .finish()
    }
}

/// Why no token was minted.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("the Snowflake user is taken from your email, but your identity provider's token carries none; ask an admin to check the server's [minting] user_value")]
    NoEmail,
    #[error("the Snowflake user is taken from your email, but your identity provider has not verified it (its token says email_verified is not true), so it can't name you to Snowflake; verify the email with the identity provider and sign in again, or ask an admin to check the server's [minting] user_value")]
    UnverifiedEmail,
    #[error("signing the token failed: {0}")]
    Sign(#[from] jsonwebtoken::errors::Error),
    #[error("grant {0} has no expiry, so no token can be bounded by it")]
    NoExpiry(String),
}

/// The Snowflake login name `who` would get under `policy`: their subject, or with
/// `user_value = "email"` their email, only when the IdP verified it (`email_verified`): an
/// unverified email could be anyone's. Checked when a grant is requested, so every grant
/// pins a login name that can be minted.
pub fn login_name(
    policy: &MintPolicy,
    who: &Actor,
    email_verified: bool,
) -> Result<String, MintError> {
    match policy.user_value {
        UserValue::Subject => Ok(who.subject.as_str().to_string()),
        UserValue::Email => match &who.email {
            None => Err(MintError::NoEmail),
            Some(_) if !email_verified => Err(MintError::UnverifiedEmail),
            Some(email) => Ok(email.clone()),
        },
    }
}

/// Mints a token for the requester of the active `grant` at `now`. The caller has checked
/// that they are the requester and that the grant is usable at `now`. The login name is the
/// one pinned in the grant when it was requested (its requester as the request named them),
/// so the token names the login that was approved; `email_verified` is the caller's current
/// token's, so an email the IdP no longer vouches for names nobody.
pub fn mint(
    keys: &SigningKeys,
    policy: &MintPolicy,
    grant: &Grant,
    email_verified: bool,
    now: SystemTime,
) -> Result<MintedToken, MintError> {
    let owner = grant.requester();
    let end = grant
        .expires_at()
        .ok_or_else(|| MintError::NoExpiry(grant.id().to_string()))?;
    let now_ts = Timestamp::from(now);
    let iat = now_ts.unix_millis().div_euclid(1000);
    // Whole seconds, never past the grant's end.
    let exp = (now_ts.plus(policy.lifetime).min(end).unix_millis()).div_euclid(1000);
    let user = login_name(policy, owner, email_verified)?;
    let mut jti = [0u8; 16];
    rand::thread_rng().fill_bytes(&mut jti);
    let jti = URL_SAFE_NO_PAD.encode(jti);
    let (issuer, audience, user_claim) = policy.for_account(grant.account());
    let mut claims = json!({
        "iss": issuer,
        "aud": audience,
        "sub": owner.subject.as_str(),
        "scp": format!("session:role:{}", grant.role()),
        "iat": iat,
        "exp": exp,
        "jti": jti,
        "snowgate_grant": grant.id().as_str(),
    });
    claims[user_claim] = Value::String(user);
    let token = keys.sign(&claims)?;
    Ok(MintedToken {
        token,
        expires_at: Timestamp::from_unix_millis(exp * 1000),
        role: grant.role().clone(),
        jti,
    })
}
