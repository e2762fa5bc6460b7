//! Caller authentication when the IdP gives only ID tokens: a fresh ID token from the rig's
//! IdP (npm oidc-provider) is exchanged at `POST /v1/session` for the server's own session
//! token, on a real PostgreSQL; groups come from `[[groups]]`. Each refusal is checked: an ID
//! token used twice, one for another client, one too old, an access token offered as an ID
//! token, an ID token used as a bearer, a session token past its life or from another server,
//! and each mismatch between the server's mode and the caller's.

mod support;

use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use snowgate_grants::ManualClock;
use snowgate_rig::idp::{jwt_payload, IdpProfile};
use support::*;

/// A session key file (48 random bytes) in the rig's directory.
fn session_key(rig: &Rig, name: &str) -> std::path::PathBuf {
    let path = rig.dir.path().join(name);
    let out = std::process::Command::new("openssl")
        .args(["rand", "-out"])
        .arg(&path)
        .arg("48")
        .output()
        .expect("running openssl rand");
    assert!(out.status.success());
    path
}

/// A server that takes only ID tokens (no `audience`: it needs no access token at all), with
/// its groups from `[[groups]]`: bob a manager by his subject at `rig`'s IdP, carol an auditor
/// by her email.
fn id_token_options(rig: &Rig, key: &std::path::Path, extra_identity: &str) -> Options {
    Options {
        audience: String::new(),
        identity_extra: format!(
            "caller_auth = \"id_token\"\nclient_id = \"snowgate-desktop\"\n{extra_identity}"
        ),
        tail: format!(
            r#"
[sessions]
key_files = ["{key}"]
lifetime = "15m"

[[groups]]
name = "managers"
subjects = ["{bob}"]

[[groups]]
name = "auditors"
emails = ["CAROL@example.test"]
"#,
            key = key.display(),
            bob = rig.idp.subject_of("bob"),
        ),
        ..Options::default()
    }
}

/// An ID token for `user` with the scopes the desktop asks for, but without `groups`: the
/// provider sends no groups, as Google Workspace doesn't. (Google refuses `offline_access`.)
async fn id_token(rig: &Rig, user: &str) -> String {
    let scopes: &[&str] = match rig.idp.profile() {
        IdpProfile::Google => &["openid", "email"],
        _ => &["openid", "email", "offline_access"],
    };
    rig.idp
        .login(user, scopes, None)
        .await
        .unwrap_or_else(|e| panic!("signing {user} in: {e:#}"))
        .id_token
        .expect("the IdP issued an ID token")
}

async fn exchange(server: &Replica, id_token: &str) -> Reply {
    let r = server
        .http
        .post(format!("{}/v1/session", server.url))
        .json(&json!({ "id_token": id_token }))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    Reply {
        status,
        headers: Default::default(),
        json: serde_json::from_str(&text).unwrap_or_default(),
        text,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fresh_id_token_buys_a_session_that_carries_the_configured_groups_through_a_grant() {
    // Google puts the verified email into the ID token; a strict OpenID provider puts it only
    // into userinfo when it also issues an access token (OpenID Connect Core 5.4), so
    // `[[groups]] emails` match only at providers like Google.
    let rig = Rig::start_profile(IdpProfile::Google).await;
    let key = session_key(&rig, "session.key");
    let server = rig.replica_with(&id_token_options(&rig, &key, "")).await;
    let (alice_id, bob_id, carol_id) = tokio::join!(
        id_token(&rig, "alice"),
        id_token(&rig, "bob"),
        id_token(&rig, "carol")
    );
    assert!(
        jwt_payload(&bob_id).unwrap().get("groups").is_none(),
        "the ID token carries no groups"
    );

    let alice = exchange(&server, &alice_id).await;
    assert_eq!(alice.status, StatusCode::CREATED, "{alice:?}");
    assert_eq!(alice.json["token_type"], "Bearer");
    assert_eq!(alice.json["subject"], rig.idp.subject_of("alice").as_str());
    assert_eq!(alice.json["groups"], json!([]));
    assert_eq!(alice.json["expires_in"], 900);
    let alice_session = alice.json["token"].as_str().unwrap().to_string();
    assert!(
        alice_session != alice_id,
        "the session token is not the ID token"
    );
    assert!(
        !alice.text.contains(&alice_id),
        "the answer never echoes the ID token"
    );
    // Its claims: issued by this server for this server, for 15 minutes.
    let claims = jwt_payload(&alice_session).unwrap();
    assert_eq!(claims["iss"], server.url.as_str());
    assert_eq!(claims["aud"], server.url.as_str());
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        900
    );

    // Bob is a manager by subject, carol an auditor by her verified email (case aside).
    let bob = exchange(&server, &bob_id).await;
    assert_eq!(bob.json["groups"], json!(["managers"]), "{bob:?}");
    let bob_session = bob.json["token"].as_str().unwrap().to_string();
    let carol = exchange(&server, &carol_id).await;
    assert_eq!(carol.json["groups"], json!(["auditors"]), "{carol:?}");

    let me = server.get("/v1/me", Some(&bob_session)).await;
    assert_eq!(me.status, StatusCode::OK, "{me:?}");
    assert_eq!(me.json["subject"], rig.idp.subject_of("bob").as_str());
    assert_eq!(me.json["groups"], json!(["managers"]));
    assert_eq!(me.json["via"], "session");
    assert_eq!(me.json["caller_auth"], "id_token");
    let health = server.get("/healthz", None).await;
    assert_eq!(health.json["caller_auth"], "id_token");

    // The whole grant flow on session tokens: bob approves as a manager from [[groups]].
    let g = server.request(&alice_session, "ANALYST", 3600).await;
    let id = g["id"].as_str().unwrap();
    let no = server
        .post(
            &format!("/v1/grants/{id}/approve"),
            &alice_session,
            json!({}),
        )
        .await;
    assert_eq!(no.status, StatusCode::FORBIDDEN, "{no:?}");
    let yes = server
        .post(
            &format!("/v1/grants/{id}/approve"),
            &bob_session,
            json!({ "comment": "ok" }),
        )
        .await;
    assert_eq!(yes.status, StatusCode::OK, "{yes:?}");
    let t = server
        .post(
            &format!("/v1/grants/{id}/snowflake-token"),
            &alice_session,
            json!({}),
        )
        .await;
    assert_eq!(t.status, StatusCode::OK, "{t:?}");
    assert_eq!(
        jwt_payload(t.json["token"].as_str().unwrap()).unwrap()["sub"],
        rig.idp.subject_of("alice").as_str()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_exchange_refuses_replays_other_clients_old_tokens_and_access_tokens() {
    let rig = Rig::start().await;
    let key = session_key(&rig, "session.key");
    let clock = Arc::new(ManualClock::starting_now());
    let server = rig
        .replica_with_clock(&id_token_options(&rig, &key, ""), clock.clone())
        .await;

    // Exchanged once only.
    let once = id_token(&rig, "alice").await;
    assert_eq!(exchange(&server, &once).await.status, StatusCode::CREATED);
    let again = exchange(&server, &once).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "{again:?}");
    assert_eq!(again.json["error"]["code"], "id_token_replayed");

    // Too old: issued more than id_token_max_age (5m) ago by the server's clock.
    let old = id_token(&rig, "alice").await;
    clock.set(std::time::SystemTime::now() + Duration::from_secs(302));
    let r = exchange(&server, &old).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    assert_eq!(r.json["error"]["code"], "id_token_too_old");
    assert!(r.message().contains("Refresh the sign-in"), "{r:?}");
    clock.set(std::time::SystemTime::now());

    // An access token offered as an ID token (the IdP's JWT for an API audience).
    let access = rig.token("alice").await;
    let r = exchange(&server, &access).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    assert!(r.message().contains("access token"), "{r:?}");

    // Garbage and forgeries.
    let r = exchange(&server, "not-a-jwt").await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    let fresh = id_token(&rig, "bob").await;
    let mut parts: Vec<String> = fresh.split('.').map(str::to_string).collect();
    let mut payload = jwt_payload(&fresh).unwrap();
    payload["sub"] = json!("carol");
    parts[1] = base64_url(&serde_json::to_vec(&payload).unwrap());
    let r = exchange(&server, &parts.join(".")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    assert!(r.message().contains("signature"), "{r:?}");

    // An ID token is no bearer: the server takes only its own session tokens.
    let raw = id_token(&rig, "alice").await;
    let r = server.get("/v1/roles", Some(&raw)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    assert_eq!(r.json["error"]["code"], "caller_auth_mismatch");
    assert!(r.message().contains("POST /v1/session"), "{r:?}");

    // A session token lives 15 minutes.
    let s = exchange(&server, &raw).await;
    let session = s.json["token"].as_str().unwrap().to_string();
    assert_eq!(
        server.get("/v1/roles", Some(&session)).await.status,
        StatusCode::OK
    );
    clock.advance(Duration::from_secs(901));
    let r = server.get("/v1/roles", Some(&session)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    assert_eq!(r.json["error"]["code"], "session_expired");
    clock.set(std::time::SystemTime::now());

    // Another server's session key: its tokens do not verify here.
    let other_key = session_key(&rig, "other.key");
    let other = rig
        .replica_with(&id_token_options(&rig, &other_key, ""))
        .await;
    let foreign = exchange(&other, &id_token(&rig, "alice").await).await;
    let r = server
        .get("/v1/roles", foreign.json["token"].as_str())
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_id_token_for_another_client_is_refused() {
    let rig = Rig::start().await;
    let key = session_key(&rig, "session.key");
    // This server exchanges ID tokens of client `reporting-app` only; the rig's are for
    // `snowgate-desktop`.
    let mut o = id_token_options(&rig, &key, "");
    o.identity_extra = o
        .identity_extra
        .replace("snowgate-desktop", "reporting-app");
    let server = rig.replica_with(&o).await;
    let r = exchange(&server, &id_token(&rig, "alice").await).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    assert!(r.message().contains("another client"), "{r:?}");
    assert!(r.message().contains("reporting-app"), "{r:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_side_names_the_setting_when_the_modes_do_not_match() {
    let rig = Rig::start().await;
    let key = session_key(&rig, "session.key");
    // An access-token server: the exchange is refused with the setting to change.
    let bearer_only = rig.replica().await;
    let r = exchange(&bearer_only, &id_token(&rig, "alice").await).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    assert_eq!(r.json["error"]["code"], "caller_auth_mismatch");
    assert!(
        r.message().contains("[team] auth = \"access_token\""),
        "{r:?}"
    );
    // An ID-token server's session token, shown to the access-token server.
    let sessions = rig.replica_with(&id_token_options(&rig, &key, "")).await;
    let s = exchange(&sessions, &id_token(&rig, "alice").await).await;
    let r = bearer_only.get("/v1/roles", s.json["token"].as_str()).await;
    assert_eq!(r.json["error"]["code"], "caller_auth_mismatch", "{r:?}");
    // An access token shown to the ID-token server.
    let r = sessions
        .get("/v1/roles", Some(&rig.token("alice").await))
        .await;
    assert_eq!(r.json["error"]["code"], "caller_auth_mismatch", "{r:?}");
    assert!(r.message().contains("[team] auth = \"id_token\""), "{r:?}");

    // `both` takes either, and merges the token's groups with [[groups]].
    let mut o = id_token_options(&rig, &key, "");
    o.audience = API_AUDIENCE.to_string();
    o.identity_extra = o.identity_extra.replace("\"id_token\"", "\"both\"");
    // The rig's access tokens carry no email_verified, so carol is listed by subject here.
    o.tail = o.tail.replace(
        "emails = [\"CAROL@example.test\"]",
        "subjects = [\"carol\"]",
    );
    let both = rig.replica_with(&o).await;
    let access = rig.token("carol").await;
    let me = both.get("/v1/me", Some(&access)).await;
    assert_eq!(me.status, StatusCode::OK, "{me:?}");
    assert_eq!(me.json["via"], "access_token");
    // carol: analysts and managers from the IdP's groups claim, auditors from [[groups]].
    assert_eq!(
        me.json["groups"],
        json!(["analysts", "auditors", "managers"])
    );
    let s = exchange(&both, &id_token(&rig, "bob").await).await;
    assert_eq!(s.status, StatusCode::CREATED, "{s:?}");
    let me = both.get("/v1/me", s.json["token"].as_str()).await;
    assert_eq!(me.json["via"], "session");
}

fn base64_url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// A server minting with `user_value = "email"` (Google profile, ID-token sessions), and the
/// session tokens of alice (verified email) and erin (unverified email).
async fn email_minting(rig: &Rig) -> (Replica, String, String) {
    let key = session_key(rig, "session.key");
    let server = rig
        .replica_with(&Options {
            minting_extra: "user_claim = \"email\"\nuser_value = \"email\"\n".into(),
            ..id_token_options(rig, &key, "")
        })
        .await;
    let (alice_id, erin_id) = tokio::join!(id_token(rig, "alice"), id_token(rig, "erin"));
    let erin_claims = jwt_payload(&erin_id).unwrap();
    assert_eq!(erin_claims["email"], "erin@example.test");
    assert_eq!(
        erin_claims["email_verified"], false,
        "the rig's unverified account"
    );
    let mut sessions = Vec::new();
    for id_token in [&alice_id, &erin_id] {
        let r = exchange(&server, id_token).await;
        assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
        sessions.push(r.json["token"].as_str().unwrap().to_string());
    }
    let erin = sessions.pop().unwrap();
    let alice = sessions.pop().unwrap();
    (server, alice, erin)
}

async fn mint(server: &Replica, token: &str, grant: &str) -> Reply {
    server
        .post(
            &format!("/v1/grants/{grant}/snowflake-token"),
            token,
            json!({}),
        )
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn minting_by_email_uses_only_an_email_the_provider_verified() {
    let rig = Rig::start_profile(IdpProfile::Google).await;
    let (server, alice, erin) = email_minting(&rig).await;

    // READONLY is approved by policy, so a grant is active at once.
    let g = server.request(&alice, "READONLY", 600).await;
    assert_eq!(g["state"], "active", "{g:#}");
    let t = mint(&server, &alice, g["id"].as_str().unwrap()).await;
    assert_eq!(t.status, StatusCode::OK, "{t:?}");
    assert_eq!(
        jwt_payload(t.json["token"].as_str().unwrap()).unwrap()["email"],
        "alice@example.test"
    );

    // Erin's email would name her to Snowflake, but nobody verified it: she gets no grant
    // that could be minted for it, and is told why.
    let r = server
        .post(
            "/v1/requests",
            &erin,
            json!({ "role": "READONLY", "duration_secs": 600, "reason": "a quick look" }),
        )
        .await;
    println!("erin's request: {} {}", r.status, r.message());
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    assert!(r.json["grant"].is_null(), "{r:?}");
    assert!(
        r.message().contains("not verified"),
        "the reason is named: {r:?}"
    );
    let mine = server.get("/v1/grants", Some(&erin)).await;
    assert_eq!(mine.json["grants"], json!([]), "{mine:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snowflake_login_name_is_the_one_pinned_in_the_grant_when_it_was_requested() {
    let rig = Rig::start_profile(IdpProfile::Google).await;
    let (server, alice, _) = email_minting(&rig).await;
    let g = server.request(&alice, "READONLY", 600).await;
    let id = g["id"].as_str().unwrap().to_string();
    assert_eq!(g["requester"]["email"], "alice@example.test", "{g:#}");

    // The grant says which login was asked for and approved. Were the person's email to change
    // at the IdP after the request (here the stored grant says another one), tokens for the
    // grant still name the login pinned in it, not whatever the current token says.
    let db = sqlx::PgPool::connect(&rig.pg.url()).await.unwrap();
    sqlx::query(
        "UPDATE grants SET body = jsonb_set(body::jsonb, '{requester,email}', to_jsonb($1::text))::text WHERE id = $2",
    )
    .bind("alice.pinned@example.test")
    .bind(&id)
    .execute(&db)
    .await
    .unwrap();
    let t = mint(&server, &alice, &id).await;
    assert_eq!(t.status, StatusCode::OK, "{t:?}");
    let login = jwt_payload(t.json["token"].as_str().unwrap()).unwrap()["email"].clone();
    println!("the token names {login}");
    assert_eq!(login, "alice.pinned@example.test");
}
