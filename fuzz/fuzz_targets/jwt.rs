//! The team server's bearer-token handling without the network
//! (`snowgate-server/src/jwks.rs`, compiled here from the same file): the `Authorization`
//! header, the IdP's JWKS read into keys, and a token checked against them as the server
//! checks it (accepted algorithms only, the key's own algorithm, issuer, audience, `exp`,
//! `nbf`).
//!
//! The input is three lines: a JWKS document, an `Authorization` header value and a token
//! (the seeds in fuzz/corpus/jwt are a real key set and RS256 tokens signed with it). Properties: nothing
//! panics; a bearer token is a trimmed, non-empty part of the header value; every key read has
//! a key id that is in the document; and a token is never accepted with an algorithm outside
//! the accepted list or one that differs from its key's.
#![no_main]

use jsonwebtoken::{decode, decode_header, Validation};
use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../crates/snowgate-server/src/jwks.rs"]
mod jwks;

use jwks::{bearer_token, keys_from_jwks, ACCEPTED_ALGS};

struct Input<'a> {
    jwks: &'a str,
    authorization: &'a str,
    token: &'a str,
}

fn split(text: &str) -> Input<'_> {
    let mut lines = text.splitn(3, '\n');
    Input {
        jwks: lines.next().unwrap_or(""),
        authorization: lines.next().unwrap_or(""),
        token: lines.next().unwrap_or(""),
    }
}

const ISSUER: &str = "https://idp.example.com";

fuzz_target!(|text: &str| {
    let input = split(text);
    if let Some(token) = bearer_token(input.authorization) {
        assert!(!token.is_empty());
        assert_eq!(token, token.trim());
        assert!(input.authorization.contains(token));
    }
    let Ok(set) = serde_json::from_str::<serde_json::Value>(input.jwks) else {
        return;
    };
    let keys = keys_from_jwks(&set);
    let listed: Vec<&str> = set["keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| k["kid"].as_str())
        .collect();
    for kid in keys.keys() {
        assert!(listed.contains(&kid.as_str()), "{kid:?} is not in {listed:?}");
    }
    let Ok(header) = decode_header(input.token) else {
        return;
    };
    if !ACCEPTED_ALGS.contains(&header.alg) {
        return;
    }
    let Some(key) = header.kid.as_ref().and_then(|kid| keys.get(kid)) else {
        return;
    };
    if key.alg.is_some_and(|a| a != header.alg) {
        return;
    }
    let mut v = Validation::new(header.alg);
    v.set_issuer(&[ISSUER]);
    v.set_audience(&["snowgate"]);
    v.validate_nbf = true;
    v.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    if let Ok(data) = decode::<serde_json::Map<String, serde_json::Value>>(input.token, &key.key, &v) {
        assert!(ACCEPTED_ALGS.contains(&data.header.alg));
        assert_eq!(data.claims.get("iss").and_then(|i| i.as_str()), Some(ISSUER));
    }
});
