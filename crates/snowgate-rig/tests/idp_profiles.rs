//! The rig IdP's provider profiles enforce their provider's documented rules: what each one
//! refuses, ignores, or does differently from the stock (strict) setup.

use std::time::Duration;

use snowgate_rig::idp::{jwt_payload, Idp, IdpOptions, IdpProfile};
use snowgate_rig::TestCa;

const AUDIENCE: &str = "https://snowflake.rig.test";

async fn start(opts: IdpOptions) -> (Idp, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::generate(dir.path()).unwrap();
    (Idp::start(&ca, opts).await.unwrap(), dir)
}

fn with_param(req: &mut snowgate_rig::idp::AuthRequest, name: &str, value: &str) {
    req.url.query_pairs_mut().append_pair(name, value);
}

#[tokio::test]
async fn entra_refuses_the_resource_parameter_everywhere() {
    let (idp, _dir) = start(IdpOptions::profile(IdpProfile::Entra)).await;
    // The issuer is tenant-scoped, as https://login.microsoftonline.com/<tenant>/v2.0 is.
    let path = url::Url::parse(&idp.issuer()).unwrap().path().to_string();
    assert!(path.ends_with("/v2.0") && path.len() > 10, "{path}");
    assert_eq!(idp.discovery()["issuer"], idp.issuer().as_str());
    let req = idp
        .authorize_request(&["openid", "offline_access"], Some(AUDIENCE))
        .unwrap();
    let redirect = idp.complete_login(req.url.as_str(), "alice").await.unwrap();
    let q: std::collections::HashMap<_, _> = redirect.query_pairs().into_owned().collect();
    assert_eq!(q["error"], "invalid_request");
    assert!(q["error_description"].contains("AADSTS901002"), "{q:?}");

    let err = idp
        .device_authorize(&["openid"], Some(AUDIENCE))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("AADSTS901002"), "{err}");

    // Scopes prefixed with the Application ID URI name the API instead; `scp` holds them
    // unprefixed, `aud` is the API's client ID, and there is no `scope` claim.
    let scope = format!("{AUDIENCE}/session:role:ANALYST");
    let tokens = idp
        .login("alice", &["openid", "offline_access", &scope], None)
        .await
        .unwrap();
    let at = jwt_payload(&tokens.access_token).unwrap();
    assert_eq!(at["scp"], "session:role:ANALYST");
    assert!(at.get("scope").is_none(), "{at}");
    assert_eq!(at["aud"], idp.token_audience().as_str());
    assert_eq!(at["upn"], "alice@example.test");
    assert_eq!(
        at["groups"],
        serde_json::json!([idp.group_name("analysts")])
    );
    let err = idp
        .refresh(
            tokens.refresh_token.as_deref().unwrap(),
            Some(&scope),
            Some(AUDIENCE),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("AADSTS901002"), "{err}");
}

#[tokio::test]
async fn entra_sends_an_overage_claim_instead_of_more_than_200_groups() {
    let (idp, _dir) = start(IdpOptions::profile(IdpProfile::Entra)).await;
    let tokens = idp
        .login("dana", &["openid", "offline_access", "profile"], None)
        .await
        .unwrap();
    let id = jwt_payload(tokens.id_token.as_deref().unwrap()).unwrap();
    assert!(id.get("groups").is_none(), "{id}");
    assert_eq!(id["_claim_names"]["groups"], "src1");
    assert!(id["_claim_sources"]["src1"]["endpoint"]
        .as_str()
        .unwrap()
        .starts_with("https://graph.microsoft.com/"));
}

#[tokio::test]
async fn auth0_ignores_resource_and_takes_audience_at_the_authorization_endpoint() {
    let (idp, _dir) = start(IdpOptions::profile(IdpProfile::Auth0)).await;
    // `resource` is ignored: no role scope, an opaque token (for userinfo only).
    let ignored = idp
        .login(
            "alice",
            &["openid", "offline_access", "session:role:ANALYST"],
            Some(AUDIENCE),
        )
        .await
        .unwrap();
    assert!(jwt_payload(&ignored.access_token).is_err());
    assert_eq!(ignored.scope.as_deref(), Some("openid offline_access"));

    let mut req = idp
        .authorize_request(&["openid", "offline_access", "session:role:ANALYST"], None)
        .unwrap();
    with_param(&mut req, "audience", AUDIENCE);
    let redirect = idp.complete_login(req.url.as_str(), "alice").await.unwrap();
    let tokens = idp.exchange_code(&req, &redirect, None).await.unwrap();
    let at = jwt_payload(&tokens.access_token).unwrap();
    assert_eq!(
        at["aud"],
        serde_json::json!([AUDIENCE, format!("{}/userinfo", idp.issuer())])
    );
    assert_eq!(at["scope"], "session:role:ANALYST");
    let id = jwt_payload(tokens.id_token.as_deref().unwrap()).unwrap();
    assert!(id.get("groups").is_none(), "{id}");
    assert_eq!(
        id["https://example.com/groups"],
        serde_json::json!(["analysts"])
    );
    assert_eq!(id["sub"], "auth0|alice");
}

#[tokio::test]
async fn auth0_gives_no_refresh_token_without_allow_offline_access() {
    let (idp, _dir) = start(IdpOptions {
        auth0_allow_offline_access: false,
        ..IdpOptions::profile(IdpProfile::Auth0)
    })
    .await;
    let tokens = idp
        .login("alice", &["openid", "offline_access"], None)
        .await
        .unwrap();
    assert!(tokens.refresh_token.is_none());
}

#[tokio::test]
async fn okta_keeps_a_rotated_refresh_token_usable_for_its_grace_period_only() {
    let (idp, _dir) = start(IdpOptions {
        refresh_grace: Some(Duration::from_secs(2)),
        ..IdpOptions::profile(IdpProfile::Okta)
    })
    .await;
    let tokens = idp
        .login(
            "alice",
            &["openid", "offline_access", "session:role:ANALYST"],
            None,
        )
        .await
        .unwrap();
    let at = jwt_payload(&tokens.access_token).unwrap();
    assert_eq!(at["scp"], serde_json::json!(["session:role:ANALYST"]));
    assert_eq!(at["sub"], "alice@example.test");
    let old = tokens.refresh_token.unwrap();
    let rotated = idp.refresh(&old, None, None).await.unwrap();
    assert_ne!(rotated.refresh_token.as_deref(), Some(old.as_str()));
    // Within the grace period the old one still works...
    idp.refresh(&old, None, None).await.unwrap();
    // ...after it, it is reuse.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let err = idp.refresh(&old, None, None).await.unwrap_err().to_string();
    assert!(err.contains("invalid_grant"), "{err}");
}

#[tokio::test]
async fn keycloak_sends_groups_as_paths_and_a_refresh_token_without_offline_access() {
    let (idp, _dir) = start(IdpOptions::profile(IdpProfile::Keycloak)).await;
    assert!(idp.issuer().ends_with("/realms/acme"), "{}", idp.issuer());
    let tokens = idp
        .login(
            "carol",
            &["openid", "groups", "session:role:ENGINEER"],
            None,
        )
        .await
        .unwrap();
    let id = jwt_payload(tokens.id_token.as_deref().unwrap()).unwrap();
    let mut groups: Vec<String> = serde_json::from_value(id["groups"].clone()).unwrap();
    groups.sort();
    assert_eq!(groups, ["/analysts", "/managers"]);
    let at = jwt_payload(&tokens.access_token).unwrap();
    assert_eq!(at["preferred_username"], "carol");
    assert_eq!(at["aud"], AUDIENCE);
    assert!(tokens.refresh_token.is_some());
}

#[tokio::test]
async fn google_mints_no_api_tokens_refuses_offline_access_and_takes_access_type_offline() {
    let (idp, _dir) = start(IdpOptions::profile(IdpProfile::Google)).await;
    assert!(!idp.profile_facts().solo);

    let req = idp
        .authorize_request(&["openid", "offline_access"], None)
        .unwrap();
    let redirect = idp.complete_login(req.url.as_str(), "alice").await.unwrap();
    let q: std::collections::HashMap<_, _> = redirect.query_pairs().into_owned().collect();
    assert_eq!(q["error"], "invalid_scope", "{q:?}");

    let mut req = idp
        .authorize_request(&["openid", "email", "profile"], None)
        .unwrap();
    with_param(&mut req, "access_type", "offline");
    let redirect = idp.complete_login(req.url.as_str(), "alice").await.unwrap();
    let tokens = idp.exchange_code(&req, &redirect, None).await.unwrap();
    assert!(tokens.refresh_token.is_some());
    assert!(jwt_payload(&tokens.access_token).is_err(), "opaque");
    let id = jwt_payload(tokens.id_token.as_deref().unwrap()).unwrap();
    assert_eq!(id["email"], "alice@example.test");
    assert!(id.get("groups").is_none(), "{id}");
    // No access token for a custom API.
    let err = idp
        .refresh(
            tokens.refresh_token.as_deref().unwrap(),
            None,
            Some(AUDIENCE),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("resource"), "{err}");

    // Without access_type=offline there is no refresh token.
    let tokens = idp
        .login("alice", &["openid", "email"], None)
        .await
        .unwrap();
    assert!(tokens.refresh_token.is_none());
}
