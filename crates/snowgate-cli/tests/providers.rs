//! A Python query through the gateway for every solo-capable provider profile of the rig's
//! IdP: the real `snowgate up` broker signed in with the matching `[identity] provider`
//! preset, the Snowflake front trusting that provider as its security integration would
//! (audience, scope-mapping attribute, user-mapping claim), and the real Python connector.

use snowgate_rig::clients::{run_python, PythonDriver};
use snowgate_rig::idp::IdpProfile;

mod support;
use support::{stop, Rig};

async fn query_through_the_gateway(profile: IdpProfile, login_name: &str) {
    let rig = Rig::start_profile(profile).await;
    let broker = rig.broker().await;
    rig.login("alice").await;
    let id = rig.request("ANALYST", "5m").await;
    let r = run_python(PythonDriver::V5, &rig.python("smoke"))
        .await
        .unwrap();
    assert_eq!(r["ok"], true, "{profile}: {r:#}\n{}", rig.log_tail());
    let session = rig
        .sf
        .session(r["session_id"].as_u64().unwrap())
        .await
        .unwrap();
    assert_eq!(session.authenticator, "OAUTH");
    assert_eq!(session.role, "ANALYST");
    assert_eq!(session.login_name.to_lowercase(), login_name, "{profile}");
    assert!(
        session.query_tag.as_deref().unwrap_or("").contains(&id),
        "{session:#?}"
    );
    let out = rig.ok(&["logout"]).await;
    assert!(out.contains("revoked"), "{out}");
    stop(broker).await;
}

#[tokio::test]
async fn strict_openid_python_query_through_the_gateway() {
    query_through_the_gateway(IdpProfile::Strict, "alice").await;
}

#[tokio::test]
async fn entra_python_query_through_the_gateway() {
    query_through_the_gateway(IdpProfile::Entra, "alice@example.test").await;
}

#[tokio::test]
async fn okta_python_query_through_the_gateway() {
    query_through_the_gateway(IdpProfile::Okta, "alice@example.test").await;
}

#[tokio::test]
async fn auth0_python_query_through_the_gateway() {
    query_through_the_gateway(IdpProfile::Auth0, "auth0|alice").await;
}

#[tokio::test]
async fn keycloak_python_query_through_the_gateway() {
    query_through_the_gateway(IdpProfile::Keycloak, "alice").await;
}
