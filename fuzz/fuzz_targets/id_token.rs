//! The desktop's ID-token check without the network (`snowgate-engine/src/identity/id_token.rs`,
//! compiled here from the same file): an ID token checked with openidconnect's verifier against
//! a JWKS document, the issuer, the client, the discovery's algorithms, a fixed clock and a
//! nonce, then its payload read, as the desktop does after every sign-in and refresh.
//!
//! The input is up to three lines: a JWKS document, an ID token, and options (`nonce=VALUE`
//! checks that nonce; `secret` makes the client confidential, so HS256 tokens are keyed by its
//! secret). The seeds in fuzz/corpus/id_token are real RS256, ES256 and HS256 key sets and
//! tokens (valid, expired, issued in the future, for another audience or issuer, with and
//! without a nonce). Properties: nothing panics; a token that is accepted has a payload that is
//! a JSON object naming the configured issuer, the client among its audiences, an `exp` after
//! the clock less the skew, and (when a nonce was asked for) that nonce.
#![no_main]

use std::time::{Duration, SystemTime};

use libfuzzer_sys::fuzz_target;
use openidconnect::core::{CoreJsonWebKeySet, CoreJwsSigningAlgorithm};
use openidconnect::{ClientSecret, IssuerUrl, Nonce};

#[allow(dead_code)]
#[path = "../../crates/snowgate-engine/src/identity/id_token.rs"]
mod id_token;

use id_token::{check, parse, payload, IdTokenRules};

const ISSUER: &str = "https://idp.example.com";
const CLIENT_ID: &str = "snowgate-desktop";
const SECRET: &str = "fuzz-client-secret-with-32-bytes!";
/// The fixed clock, Unix seconds (the seeds' tokens are dated around it).
const NOW: u64 = 1_700_000_000;
const SKEW: Duration = Duration::from_secs(30);

fuzz_target!(|text: &str| {
    let mut lines = text.splitn(3, '\n');
    let jwks = lines.next().unwrap_or("");
    let raw = lines.next().unwrap_or("");
    let options = lines.next().unwrap_or("");
    let Ok(jwks) = serde_json::from_str::<CoreJsonWebKeySet>(jwks) else {
        return;
    };
    let Some(token) = parse(raw) else {
        return;
    };
    let nonce = options
        .split_whitespace()
        .find_map(|o| o.strip_prefix("nonce="))
        .map(|n| Nonce::new(n.to_string()));
    let secret = options
        .split_whitespace()
        .any(|o| o == "secret")
        .then(|| ClientSecret::new(SECRET.to_string()));
    let issuer = IssuerUrl::new(ISSUER.to_string()).expect("a valid issuer");
    let algs = [
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        CoreJwsSigningAlgorithm::HmacSha256,
    ];
    let now = SystemTime::UNIX_EPOCH + Duration::from_secs(NOW);
    let rules = IdTokenRules {
        issuer: &issuer,
        client_id: CLIENT_ID,
        client_secret: secret.as_ref(),
        algs: &algs,
        jwks: &jwks,
        now,
        skew: SKEW,
    };
    if check(&token, nonce.as_ref(), &rules).is_err() {
        return;
    }
    let claims = payload(raw).expect("an accepted token's payload is a JSON object");
    assert_eq!(claims.get("iss").and_then(|v| v.as_str()), Some(ISSUER));
    let aud_ok = match claims.get("aud") {
        Some(serde_json::Value::String(a)) => a == CLIENT_ID,
        Some(serde_json::Value::Array(a)) => a.iter().any(|v| v.as_str() == Some(CLIENT_ID)),
        _ => false,
    };
    assert!(aud_ok, "accepted for another audience: {:?}", claims.get("aud"));
    let exp = claims.get("exp").and_then(|v| v.as_f64()).expect("an exp");
    assert!(exp > (NOW - SKEW.as_secs()) as f64, "accepted after its exp");
    if let Some(n) = &nonce {
        assert_eq!(
            claims.get("nonce").and_then(|v| v.as_str()),
            Some(n.secret().as_str())
        );
    }
});
