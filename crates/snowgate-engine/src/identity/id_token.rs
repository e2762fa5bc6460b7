//! The desktop's ID-token check, without the network: an ID token (compact JWS) checked with
//! openidconnect's verifier against a JWKS already fetched, the issuer, the client id (and
//! secret, for HMAC-signed tokens of a confidential client), the algorithms the provider's
//! discovery allows, the clock (with its skew) and the nonce, then its payload read. The
//! [`super::oidc::OidcClient`] calls it with its cached JWKS (and again after a refetch on an
//! unknown key); the fuzz target `id_token` compiles this file by `#[path]`, so it must keep
//! needing nothing but openidconnect, chrono, base64 and serde_json.

use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use openidconnect::core::{
    CoreIdToken, CoreIdTokenVerifier, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
};
use openidconnect::{ClaimsVerificationError, ClientId, ClientSecret, IssuerUrl, Nonce};

/// How a "not yet issued" (`iat` in the future) failure begins, so it can be told apart from
/// an expired token (openidconnect reports both as `Expired`).
pub const IAT_FUTURE: &str = "iat ";

/// What an ID token is checked against.
pub struct IdTokenRules<'a> {
    pub issuer: &'a IssuerUrl,
    pub client_id: &'a str,
    /// A confidential client's secret (the key of HS256 tokens); `None` for a public client.
    pub client_secret: Option<&'a ClientSecret>,
    /// The algorithms discovery lists (`id_token_signing_alg_values_supported`).
    pub algs: &'a [CoreJwsSigningAlgorithm],
    pub jwks: &'a CoreJsonWebKeySet,
    pub now: SystemTime,
    /// Tolerated clock difference, on `exp` and `iat`.
    pub skew: Duration,
}

/// Reads `raw` as a compact signed JWT; `None` if it is not one, or if it is HMAC-signed
/// with a signature that is not the MAC's length (openidconnect 4.1 turns the signature into a
/// fixed-size array without checking its length, and panics on any other).
pub fn parse(raw: &str) -> Option<CoreIdToken> {
    if !hmac_signature_fits(raw) {
        return None;
    }
    raw.parse().ok()
}

/// False when `raw`'s header names an HMAC algorithm and its signature is not that MAC's size.
fn hmac_signature_fits(raw: &str) -> bool {
    let mut parts = raw.split('.');
    let (Some(header), Some(_), Some(signature)) = (parts.next(), parts.next(), parts.next())
    else {
        return true; // not three parts: openidconnect refuses it
    };
    let alg = URL_SAFE_NO_PAD
        .decode(header)
        .ok()
        .and_then(|h| serde_json::from_slice::<serde_json::Value>(&h).ok())
        .and_then(|h| h.get("alg").and_then(|a| a.as_str()).map(str::to_string));
    let size = match alg.as_deref() {
        Some("HS256") => 32,
        Some("HS384") => 48,
        Some("HS512") => 64,
        _ => return true,
    };
    URL_SAFE_NO_PAD
        .decode(signature)
        .is_ok_and(|s| s.len() == size)
}

/// Checks `token`: signature through the JWKS, `iss`, `aud` (and `azp`), `exp` and `iat` with
/// the skew, and `nonce` when one was sent (device-flow ID tokens carry none: none was sent).
pub fn check(
    token: &CoreIdToken,
    nonce: Option<&Nonce>,
    rules: &IdTokenRules<'_>,
) -> Result<(), ClaimsVerificationError> {
    let client_id = ClientId::new(rules.client_id.to_string());
    let verifier = match rules.client_secret {
        Some(secret) => CoreIdTokenVerifier::new_confidential_client(
            client_id,
            secret.clone(),
            rules.issuer.clone(),
            rules.jwks.clone(),
        ),
        None => CoreIdTokenVerifier::new_public_client(
            client_id,
            rules.issuer.clone(),
            rules.jwks.clone(),
        ),
    };
    let (now, skew) = (rules.now, rules.skew);
    let verifier = verifier
        .set_allowed_algs(rules.algs.to_vec())
        // Expired means `now - skew >= exp`.
        .set_time_fn(move || chrono::DateTime::<chrono::Utc>::from(earlier(now, skew)))
        .set_issue_time_verifier_fn(move |iat| {
            let latest = chrono::DateTime::<chrono::Utc>::from(now + skew);
            if iat > latest {
                Err(format!("{IAT_FUTURE}{iat} is after {latest}"))
            } else {
                Ok(())
            }
        });
    match nonce {
        Some(nonce) => token.claims(&verifier, nonce).map(|_| ()),
        None => token
            .claims(&verifier, |_: Option<&Nonce>| Ok(()))
            .map(|_| ()),
    }
}

/// The payload of a token that [`check`] accepted, as a JSON object; `None` if it is not one.
pub fn payload(raw: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    raw.split('.')
        .nth(1)
        .and_then(|p| URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
}

fn earlier(now: SystemTime, by: Duration) -> SystemTime {
    now.checked_sub(by).unwrap_or(SystemTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;

    use super::*;

    const SECRET: &str = "a-client-secret-of-thirty-two-b!";

    fn hs256_token(signature: &[u8]) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(
            br#"{"iss":"https://idp.example.com","aud":"snowgate-desktop","sub":"alice","iat":1699999940,"exp":1700003600}"#,
        );
        format!("{header}.{claims}.{}", URL_SAFE_NO_PAD.encode(signature))
    }

    /// Found by the `id_token` fuzz target: openidconnect 4.1 turns an HMAC signature into a
    /// fixed-size array without checking its length, and panics on one of another length.
    #[test]
    fn an_hmac_signature_of_the_wrong_length_is_refused_without_a_panic() {
        let issuer = IssuerUrl::new("https://idp.example.com".into()).unwrap();
        let secret = ClientSecret::new(SECRET.into());
        let jwks: CoreJsonWebKeySet = serde_json::from_str(r#"{"keys":[]}"#).unwrap();
        let algs = [CoreJwsSigningAlgorithm::HmacSha256];
        let rules = IdTokenRules {
            issuer: &issuer,
            client_id: "snowgate-desktop",
            client_secret: Some(&secret),
            algs: &algs,
            jwks: &jwks,
            now: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            skew: Duration::from_secs(30),
        };
        for len in [0, 31, 33, 64] {
            let raw = hs256_token(&vec![7u8; len]);
            let refused = match parse(&raw) {
                None => true,
                Some(token) => check(&token, None, &rules).is_err(),
            };
            assert!(refused, "a {len}-byte HS256 signature was accepted");
        }
        // A signature of the right length but the wrong value is refused as a bad signature.
        let token = parse(&hs256_token(&[7u8; 32])).expect("well formed");
        assert!(check(&token, None, &rules).is_err());
    }
}
