//! ID-token verification against real tokens from the rig's IdP: the wrong issuer, audience or
//! nonce is refused by the broker's verifier itself.

mod identity_support;

use std::sync::Arc;
use std::time::Duration;

use identity_support::*;
use openidconnect::Nonce;
use snowgate_engine::identity::http::{build_client, IdpHttp};
use snowgate_engine::identity::oidc::{OidcClient, OidcSettings};
use snowgate_engine::identity::secrets::IdTokenValue;
use snowgate_engine::identity::{IdTokenError, IdentityError, SystemClock};
use snowgate_rig::idp::{Idp, CLIENT_ID};

async fn verifier(rig: &Rig, idp: &Idp, client_id: &str) -> OidcClient {
    let settings = OidcSettings {
        issuer: idp.issuer(),
        client_id: client_id.to_string(),
        client_secret: None,
        snowflake_audience: AUDIENCE.to_string(),
        clock_skew: Duration::from_secs(60),
        provider: Default::default(),
    };
    let http = IdpHttp::new(build_client(Some(rig.idp.ca_file())).unwrap());
    OidcClient::discover(settings, http, Arc::new(SystemClock))
        .await
        .unwrap()
}

/// A real ID token for alice from `idp`, and the nonce its request carried.
async fn id_token(idp: &Idp) -> (IdTokenValue, Nonce) {
    let req = idp
        .authorize_request(&["openid", "profile", "email", "groups"], None)
        .unwrap();
    let redirect = idp.complete_login(req.url.as_str(), "alice").await.unwrap();
    let tokens = idp.exchange_code(&req, &redirect, None).await.unwrap();
    (
        IdTokenValue::new(tokens.id_token.unwrap()),
        Nonce::new(req.nonce.clone()),
    )
}

fn rejected(r: Result<impl std::fmt::Debug, IdentityError>) -> IdTokenError {
    match r {
        Err(IdentityError::IdToken(e)) => e,
        other => panic!("expected an ID-token rejection, got {other:?}"),
    }
}

#[tokio::test]
async fn a_token_for_this_client_verifies_and_carries_its_claims() {
    let rig = Rig::start_default().await;
    let (token, nonce) = id_token(&rig.idp).await;
    let v = verifier(&rig, &rig.idp, CLIENT_ID).await;
    let verified = v.verify_id_token(&token, Some(&nonce)).await.unwrap();
    assert_eq!(verified.subject, "alice");
    assert_eq!(verified.claims["aud"], CLIENT_ID);
    assert_eq!(verified.claims["nonce"], nonce.secret().as_str());
}

#[tokio::test]
async fn a_token_for_another_audience_is_rejected() {
    let rig = Rig::start_default().await;
    let (token, nonce) = id_token(&rig.idp).await;
    let v = verifier(&rig, &rig.idp, "some-other-client").await;
    let err = rejected(v.verify_id_token(&token, Some(&nonce)).await);
    assert!(matches!(err, IdTokenError::WrongAudience(_)), "{err}");
    assert!(err.to_string().contains("snowgate-desktop"), "{err}");
}

#[tokio::test]
async fn a_token_with_another_nonce_is_rejected() {
    let rig = Rig::start_default().await;
    let (token, _) = id_token(&rig.idp).await;
    let v = verifier(&rig, &rig.idp, CLIENT_ID).await;
    let err = rejected(
        v.verify_id_token(&token, Some(&Nonce::new("another".into())))
            .await,
    );
    assert!(matches!(err, IdTokenError::WrongNonce(_)), "{err}");
}

#[tokio::test]
async fn a_token_from_another_issuer_is_rejected() {
    let rig = Rig::start_default().await;
    let other = Rig::start_default().await;
    // Both IdPs trust-wise are reachable; the verifier is for the first one.
    let (token, nonce) = id_token(&other.idp).await;
    let settings = OidcSettings {
        issuer: rig.idp.issuer(),
        client_id: CLIENT_ID.to_string(),
        client_secret: None,
        snowflake_audience: AUDIENCE.to_string(),
        clock_skew: Duration::from_secs(60),
        provider: Default::default(),
    };
    let http = IdpHttp::new(build_client(Some(rig.idp.ca_file())).unwrap());
    let v = OidcClient::discover(settings, http, Arc::new(SystemClock))
        .await
        .unwrap();
    let err = rejected(v.verify_id_token(&token, Some(&nonce)).await);
    assert!(matches!(err, IdTokenError::WrongIssuer(_)), "{err}");
    assert!(err.to_string().contains(&other.idp.issuer()), "{err}");
}

#[tokio::test]
async fn a_forged_signature_is_rejected() {
    let rig = Rig::start_default().await;
    let (token, nonce) = id_token(&rig.idp).await;
    let parts: Vec<&str> = token.expose_secret().split('.').collect();
    // Another valid token's signature on this token's header and payload.
    let (other, _) = id_token(&rig.idp).await;
    let other_sig = other.expose_secret().split('.').nth(2).unwrap().to_string();
    let forged = IdTokenValue::new(format!("{}.{}.{}", parts[0], parts[1], other_sig));
    let v = verifier(&rig, &rig.idp, CLIENT_ID).await;
    let err = rejected(v.verify_id_token(&forged, Some(&nonce)).await);
    assert!(matches!(err, IdTokenError::Signature(_)), "{err}");
    let err = rejected(
        v.verify_id_token(&IdTokenValue::new("not-a-jwt"), Some(&nonce))
            .await,
    );
    assert!(matches!(err, IdTokenError::Malformed(_)), "{err}");
}
