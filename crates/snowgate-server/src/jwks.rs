//! The pure parts of checking an IdP's bearer tokens: reading the `Authorization` header, the
//! algorithms accepted, and the IdP's JWKS turned into decoding keys by key id.
//!
//! They need no network and nothing of the server but `jsonwebtoken` and `serde_json`, so the
//! fuzz target `jwt` (fuzz/fuzz_targets/jwt.rs) compiles this very file and feeds it hostile
//! key sets, headers and tokens; [`crate::auth`] uses it for every request.

use std::collections::HashMap;

use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, DecodingKey};

/// The signing algorithms accepted on IdP tokens: asymmetric only, so a token can't be signed
/// with a published key used as an HMAC secret.
pub const ACCEPTED_ALGS: [Algorithm; 8] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
];

/// One usable key of the IdP's JWKS, with the algorithm it is published for, if any.
#[derive(Clone)]
pub struct IdpKey {
    pub key: DecodingKey,
    pub alg: Option<Algorithm>,
}

/// The usable keys of a JWKS document, by key id. Keys this library can't use (other key
/// types, no `kid`, bad numbers) are skipped rather than failing the others.
pub fn keys_from_jwks(set: &serde_json::Value) -> HashMap<String, IdpKey> {
    let mut keys = HashMap::new();
    for raw in set["keys"].as_array().into_iter().flatten() {
        let Ok(jwk) = serde_json::from_value::<Jwk>(raw.clone()) else {
            continue;
        };
        let Some(kid) = jwk.common.key_id.clone() else {
            continue;
        };
        let Ok(key) = DecodingKey::from_jwk(&jwk) else {
            continue;
        };
        let alg = jwk
            .common
            .key_algorithm
            .and_then(|a| a.to_string().parse::<Algorithm>().ok());
        keys.insert(kid, IdpKey { key, alg });
    }
    keys
}

/// The token of an `Authorization` header value `Bearer <token>` (the scheme in any letter
/// case), trimmed; `None` for another scheme or an empty token.
pub fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bearer_token_is_read_in_any_letter_case_and_nothing_else_is() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("BEARER abc"), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn unusable_keys_are_skipped_and_the_others_kept() {
        let set = serde_json::json!({ "keys": [
            { "kty": "oct", "kid": "hmac", "k": "c2VjcmV0" },
            { "kty": "RSA", "n": "AQAB", "e": "AQAB" },
            { "kty": "RSA", "kid": "rsa", "alg": "RS256", "n": "sXch", "e": "AQAB" },
            "not a key",
        ]});
        let keys = keys_from_jwks(&set);
        assert!(keys.contains_key("rsa"));
        assert_eq!(keys["rsa"].alg, Some(Algorithm::RS256));
        assert!(!keys.contains_key("hmac") || !ACCEPTED_ALGS.contains(&Algorithm::HS256));
        assert!(keys_from_jwks(&serde_json::json!({ "keys": 3 })).is_empty());
    }
}
