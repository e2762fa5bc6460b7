//! The team server with real parts: the rig's IdP (npm oidc-provider over TLS), a real
//! PostgreSQL, the server over TLS, and the rig's Snowflake front with the Python connector.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use jsonwebtoken::{DecodingKey, Validation};
use reqwest::StatusCode;
use serde_json::{json, Value};
use snowgate_rig::clients::{run_python, ClientRun, PythonDriver};
use snowgate_rig::snowflake::{Snowflake, SnowflakeOptions};
use support::*;

const WAIT: Duration = Duration::from_secs(15);

fn id_of(grant: &Value) -> String {
    grant["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_approved_over_the_api_and_its_token_verifies_against_the_jwks() {
    let rig = Rig::start().await;
    let server = rig.replica().await;
    let (alice, bob) = tokio::join!(rig.token("alice"), rig.token("bob"));
    let mut bob_events = server.events(&bob, None).await;
    let mut alice_events = server.events(&alice, None).await;

    let g = server.request(&alice, "ANALYST", 3600).await;
    let id = id_of(&g);
    assert_eq!(g["state"], "pending");

    // Bob sees it waiting for him, in the list and on his stream.
    let waiting = server.get("/v1/approvals", Some(&bob)).await;
    assert_eq!(waiting.status, StatusCode::OK);
    let ids: Vec<&str> = waiting.json["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [id.as_str()]);
    let seen = bob_events.until("requested", &id, WAIT).await;
    let requested = seen.last().unwrap().json();
    assert_eq!(requested["requester"], "alice");
    assert_eq!(requested["role"], "ANALYST");
    assert_eq!(requested["awaiting_decision"], true);
    // Alice is not an approver: nothing waits for her.
    let none = server.get("/v1/approvals", Some(&alice)).await;
    assert_eq!(none.json["grants"], json!([]));

    let approved = server
        .post(
            &format!("/v1/grants/{id}/approve"),
            &bob,
            json!({ "comment": "ok for Q3" }),
        )
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{approved:?}");
    assert_eq!(approved.json["grant"]["state"], "active");
    let seen = alice_events.until("activated", &id, WAIT).await;
    let kinds: Vec<&str> = seen.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains(&"approved"), "{kinds:?}");
    assert!(seen.windows(2).all(|w| w[0].id < w[1].id));

    // Alice's own list has it, active.
    let mine = server.get("/v1/grants?mine=true", Some(&alice)).await;
    assert_eq!(mine.json["grants"][0]["id"], id.as_str());
    assert_eq!(mine.json["grants"][0]["state"], "active");

    // A Snowflake token for it, whose claims are right and which verifies against the JWKS.
    let t = server
        .post(
            &format!("/v1/grants/{id}/snowflake-token"),
            &alice,
            json!({}),
        )
        .await;
    assert_eq!(t.status, StatusCode::OK, "{t:?}");
    assert_eq!(t.json["role"], "ANALYST");
    let token = t.json["token"].as_str().unwrap();
    let header = jsonwebtoken::decode_header(token).unwrap();
    assert_eq!(header.alg, jsonwebtoken::Algorithm::RS256);
    let jwks = server.get("/.well-known/jwks.json", None).await;
    assert_eq!(jwks.status, StatusCode::OK);
    let jwk_set: jsonwebtoken::jwk::JwkSet = serde_json::from_value(jwks.json.clone()).unwrap();
    let jwk = jwk_set
        .find(header.kid.as_deref().unwrap())
        .expect("the token's kid is published");
    let mut v = Validation::new(jsonwebtoken::Algorithm::RS256);
    v.set_audience(&[SNOWFLAKE_AUDIENCE]);
    v.set_issuer(&[server.url.as_str()]);
    v.leeway = 0;
    let claims = jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
        .expect("the minted token verifies")
        .claims;
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["scp"], "session:role:ANALYST");
    assert_eq!(claims["snowgate_grant"], id.as_str());
    let (iat, exp) = (
        claims["iat"].as_i64().unwrap(),
        claims["exp"].as_i64().unwrap(),
    );
    assert!(
        exp - iat <= 600 && exp - iat >= 590,
        "lifetime {}",
        exp - iat
    );
    let expires_at =
        snowgate_grants::Timestamp::parse_rfc3339(t.json["expires_at"].as_str().unwrap()).unwrap();
    assert_eq!(expires_at.unix_millis(), exp * 1000);

    // A token signed by another key with the same kid does not verify against the JWKS.
    let other = rig.dir.path().join("other.pem");
    make_rsa_key(&other);
    let mut forged_header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    forged_header.kid = header.kid.clone();
    let forged = jsonwebtoken::encode(
        &forged_header,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(&other).unwrap()).unwrap(),
    )
    .unwrap();
    assert!(
        jsonwebtoken::decode::<Value>(&forged, &DecodingKey::from_jwk(jwk).unwrap(), &v).is_err()
    );

    // The minting is in the audit log (bob, an approver, may read it), without the token.
    let audit = server.get("/v1/audit?limit=1000", Some(&bob)).await;
    assert_eq!(audit.status, StatusCode::OK, "{audit:?}");
    let kinds: Vec<&str> = audit.json["records"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    assert_eq!(
        kinds,
        [
            "grant.requested",
            "grant.approved",
            "grant.activated",
            "token.minted"
        ]
    );
    assert!(!audit.text.contains(token));
    let verified = server.get("/v1/audit/verify", Some(&bob)).await;
    assert_eq!(verified.json["ok"], true, "{verified:?}");
    assert_eq!(verified.json["records"], 4);
    let export = server.get("/v1/audit/export", Some(&bob)).await;
    assert_eq!(export.text.lines().count(), 4);
    // Alice is not an audit reader.
    let refused = server.get("/v1/audit", Some(&alice)).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert!(refused.message().contains("managers"), "{refused:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_snowflake_front_trusting_the_servers_jwks_accepts_a_minted_token() {
    let rig = Rig::start().await;
    let server = rig.replica().await;
    let sf = Snowflake::start(SnowflakeOptions {
        jwks_urls: vec![format!("{}/.well-known/jwks.json", server.url)],
        issuers: vec![server.url.clone()],
        audience: SNOWFLAKE_AUDIENCE.to_string(),
        ca_file: Some(rig.ca.ca_file.clone()),
        ..SnowflakeOptions::default()
    })
    .await
    .expect("starting the rig's Snowflake front");
    let alice = rig.token("alice").await;
    // READONLY is approved by policy up to 1h.
    let g = server.request(&alice, "READONLY", 1800).await;
    assert_eq!(g["state"], "active");
    let t = server
        .post(
            &format!("/v1/grants/{}/snowflake-token", id_of(&g)),
            &alice,
            json!({}),
        )
        .await;
    assert_eq!(t.status, StatusCode::OK, "{t:?}");
    let token = t.json["token"].as_str().unwrap();

    let run = ClientRun::oauth(&sf.url(), token, "smoke").role("READONLY");
    let result = run_python(PythonDriver::V5, &run).await.unwrap();
    assert_eq!(result["ok"], true, "{result:#}\n{}", sf.recent_output());
    let sessions = sf.sessions().await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(sessions[0].login_name, "alice");
    assert_eq!(sessions[0].role, "READONLY");
    assert_eq!(sessions[0].token_iss.as_deref(), Some(server.url.as_str()));

    // The IdP's own token is not trusted by this front: only the server's.
    let run = ClientRun::oauth(&sf.url(), &alice, "smoke").role("READONLY");
    let result = run_python(PythonDriver::V5, &run).await.unwrap();
    assert_eq!(result["ok"], false, "{result:#}");
    // Nor is a role the token does not carry.
    let run = ClientRun::oauth(&sf.url(), token, "smoke").role("ANALYST");
    let result = run_python(PythonDriver::V5, &run).await.unwrap();
    assert_eq!(result["ok"], false, "{result:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nobody_decides_their_own_request_and_only_approvers_decide() {
    let rig = Rig::start().await;
    let server = rig.replica().await;
    let (alice, mallory, carol, bob) = tokio::join!(
        rig.token("alice"),
        rig.token("mallory"),
        rig.token("carol"),
        rig.token("bob")
    );
    let g = server.request(&alice, "ANALYST", 3600).await;
    let id = id_of(&g);

    let own = server
        .post(&format!("/v1/grants/{id}/approve"), &alice, json!({}))
        .await;
    assert_eq!(own.status, StatusCode::FORBIDDEN, "{own:?}");
    assert!(own.message().contains("your own request"), "{own:?}");
    // Mallory may not see it, so she is told only that there is no grant she can act on.
    let by_mallory = server
        .post(&format!("/v1/grants/{id}/approve"), &mallory, json!({}))
        .await;
    assert_eq!(by_mallory.status, StatusCode::NOT_FOUND, "{by_mallory:?}");
    assert!(by_mallory.message().contains("no grant"), "{by_mallory:?}");
    let deny = server
        .post(
            &format!("/v1/grants/{id}/deny"),
            &mallory,
            json!({ "comment": "no" }),
        )
        .await;
    assert_eq!(deny.status, StatusCode::NOT_FOUND);
    // Nor can she read it.
    assert_eq!(
        server
            .get(&format!("/v1/grants/{id}"), Some(&mallory))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    // Nothing was written by the refusals.
    let still = server.get(&format!("/v1/grants/{id}"), Some(&alice)).await;
    assert_eq!(still.json["grant"]["state"], "pending");
    assert_eq!(still.json["grant"]["version"], 1);

    // Carol is an approver and an analyst: she may approve alice's request, not her own.
    let carols = server.request(&carol, "ANALYST", 600).await;
    let self_approval = server
        .post(
            &format!("/v1/grants/{}/approve", id_of(&carols)),
            &carol,
            json!({}),
        )
        .await;
    assert_eq!(self_approval.status, StatusCode::FORBIDDEN);
    assert!(
        self_approval.message().contains("your own request"),
        "{self_approval:?}"
    );
    let waiting_for_carol = server.get("/v1/approvals", Some(&carol)).await;
    let ids: BTreeSet<&str> = waiting_for_carol.json["grants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, BTreeSet::from([id.as_str()]), "her own is not listed");
    let ok = server
        .post(&format!("/v1/grants/{id}/approve"), &carol, json!({}))
        .await;
    assert_eq!(ok.status, StatusCode::OK, "{ok:?}");
    let twice = server
        .post(&format!("/v1/grants/{id}/approve"), &bob, json!({}))
        .await;
    assert_eq!(twice.status, StatusCode::CONFLICT, "{twice:?}");

    // Only alice gets tokens for alice's grant.
    let by_bob = server
        .post(&format!("/v1/grants/{id}/snowflake-token"), &bob, json!({}))
        .await;
    assert_eq!(by_bob.status, StatusCode::FORBIDDEN, "{by_bob:?}");
    let pending = server
        .post(
            &format!("/v1/grants/{}/snowflake-token", id_of(&carols)),
            &carol,
            json!({}),
        )
        .await;
    assert_eq!(pending.status, StatusCode::CONFLICT);
    assert!(
        pending.message().contains("waiting for approval"),
        "{pending:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bearer_tokens_are_refused_with_a_sentence_and_never_echoed() {
    let rig = Rig::start_with_ttl(Duration::from_secs(2)).await;
    let server = rig
        .replica_with(&Options {
            clock_skew: "1s".into(),
            ..Options::default()
        })
        .await;
    let good = rig.token("alice").await;
    assert_eq!(
        server.get("/v1/roles", Some(&good)).await.status,
        StatusCode::OK
    );

    let none = server.get("/v1/roles", None).await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
    assert_eq!(none.code(), "unauthenticated");
    assert!(none.message().contains("Authorization: Bearer"), "{none:?}");

    let garbage = server.get("/v1/roles", Some("not-a-jwt")).await;
    assert_eq!(garbage.status, StatusCode::UNAUTHORIZED);
    assert!(!garbage.text.contains("not-a-jwt"));

    // The same claims signed with another key under the IdP's kid.
    let header = jsonwebtoken::decode_header(&good).unwrap();
    let claims: Value = snowgate_rig::idp::jwt_payload(&good).unwrap();
    let other = rig.dir.path().join("forger.pem");
    make_rsa_key(&other);
    let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    h.kid = header.kid.clone();
    let forged = jsonwebtoken::encode(
        &h,
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(&std::fs::read(&other).unwrap()).unwrap(),
    )
    .unwrap();
    let r = server.get("/v1/roles", Some(&forged)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.message().contains("signature"), "{r:?}");
    assert!(!r.text.contains(&forged));
    // An unsigned token ("alg": "none") is refused too.
    let unsigned = format!(
        "{}.{}.",
        base64_url(br#"{"alg":"none","typ":"JWT"}"#),
        good.split('.').nth(1).unwrap()
    );
    assert_eq!(
        server.get("/v1/roles", Some(&unsigned)).await.status,
        StatusCode::UNAUTHORIZED
    );

    // A token for another audience: a server that wants another audience refuses the IdP's.
    let other_aud = rig
        .replica_with(&Options {
            audience: "https://other.rig.test".into(),
            ..Options::default()
        })
        .await;
    let r = other_aud.get("/v1/roles", Some(&good)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.message().contains("https://other.rig.test"), "{r:?}");

    // Expired: the IdP's tokens live 2 s, and the server tolerates 1 s. `exp` is in whole
    // seconds, so wait well past 3 s.
    tokio::time::sleep(Duration::from_millis(5000)).await;
    let r = server.get("/v1/roles", Some(&good)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.message().contains("expired"), "{r:?}");
    assert!(!r.text.contains(&good));
    assert!(r.headers.contains_key("www-authenticate"));
}

fn base64_url(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_expires_once_and_no_token_is_minted_for_it_afterwards() {
    let rig = Rig::start().await;
    let server = rig.replica().await;
    let (alice, bob) = tokio::join!(rig.token("alice"), rig.token("bob"));
    let mut events = server.events(&alice, None).await;
    let g = server.request(&alice, "READONLY", 2).await;
    let id = id_of(&g);
    assert_eq!(g["state"], "active");
    let before = server
        .post(
            &format!("/v1/grants/{id}/snowflake-token"),
            &alice,
            json!({}),
        )
        .await;
    assert_eq!(before.status, StatusCode::OK);
    let claims = snowgate_rig::idp::jwt_payload(before.json["token"].as_str().unwrap()).unwrap();
    let end = snowgate_grants::Timestamp::parse_rfc3339(g["expires_at"].as_str().unwrap()).unwrap();
    assert!(
        claims["exp"].as_i64().unwrap() * 1000 <= end.unix_millis(),
        "the token does not outlive the grant"
    );

    let seen = events.until("expired", &id, WAIT).await;
    let expired_at = std::time::SystemTime::now();
    assert!(seen.iter().any(|e| e.kind == "expiring_soon"));
    let after = server
        .post(
            &format!("/v1/grants/{id}/snowflake-token"),
            &alice,
            json!({}),
        )
        .await;
    assert_eq!(after.status, StatusCode::CONFLICT, "{after:?}");
    assert!(after.message().contains("ended"), "{after:?}");
    assert!(after.message().contains("request a new grant"), "{after:?}");
    let stored = server.get(&format!("/v1/grants/{id}"), Some(&alice)).await;
    assert_eq!(stored.json["grant"]["state"], "expired");
    // The expiry was applied promptly (within a second of the deadline).
    let ended = snowgate_grants::Timestamp::parse_rfc3339(
        stored.json["grant"]["ended_at"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(ended, end, "ended at the deadline itself");
    assert!(snowgate_grants::Timestamp::from(expired_at).since(end) < Duration::from_secs(2));
    let audit = server
        .get(&format!("/v1/audit?grant={id}"), Some(&bob))
        .await;
    let expired = audit.json["records"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "grant.expired")
        .count();
    assert_eq!(expired, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_two_replicas_and_one_killed_no_event_is_lost_and_each_grant_expires_once() {
    let rig = Rig::start().await;
    let mut a = rig.replica().await;
    let b = rig.replica().await;
    let alice = rig.token("alice").await;
    let mut on_a = a.events(&alice, None).await;

    // Grants that end at different times: some while both replicas run, some after A is gone.
    let mut ids = Vec::new();
    for secs in [1, 2, 6, 7, 8] {
        let g = a.request(&alice, "READONLY", secs).await;
        ids.push(id_of(&g));
    }
    // One made on B too, so both replicas wrote.
    let g = b.request(&alice, "READONLY", 3).await;
    ids.push(id_of(&g));

    // Read from A until the first grant expired, then kill A mid-stream.
    let mut received = on_a.until("expired", &ids[0], WAIT).await;
    let last_seen = received.last().unwrap().id.unwrap();
    a.kill();
    drop(on_a);

    // Reconnect to B with Last-Event-ID and follow until every grant has expired.
    let mut on_b = b.events(&alice, Some(last_seen)).await;
    let mut expired: BTreeSet<String> = received
        .iter()
        .filter(|e| e.kind == "expired")
        .map(|e| e.grant())
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while expired.len() < ids.len() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let ev = on_b
            .next(left)
            .await
            .unwrap_or_else(|| panic!("only {} of {} grants expired", expired.len(), ids.len()));
        if ev.kind == "expired" {
            expired.insert(ev.grant());
        }
        received.push(ev);
    }

    // Every event about alice's grants arrived exactly once, in order, across both replicas.
    let received_ids: Vec<i64> = received.iter().map(|e| e.id.unwrap()).collect();
    assert!(
        received_ids.windows(2).all(|w| w[0] < w[1]),
        "ids strictly increase: {received_ids:?}"
    );
    let pool = sqlx::PgPool::connect(&rig.pg.url()).await.unwrap();
    let stored: Vec<(i64, String)> =
        sqlx::query_as("SELECT id, kind FROM events WHERE 'alice' = ANY(subjects) ORDER BY id")
            .fetch_all(&pool)
            .await
            .unwrap();
    let stored_ids: Vec<i64> = stored.iter().map(|(id, _)| *id).collect();
    assert_eq!(
        received_ids, stored_ids,
        "every stored event was delivered once"
    );

    // Each grant expired exactly once in the audit log.
    let counts: Vec<(String, i64)> = sqlx::query_as(
        "SELECT grant_id, count(*) FROM audit WHERE kind = 'grant.expired' GROUP BY grant_id",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    let counts: BTreeMap<String, i64> = counts.into_iter().collect();
    assert_eq!(counts.len(), ids.len());
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
    let bob = rig.token("bob").await;
    let verified = b.get("/v1/audit/verify", Some(&bob)).await;
    assert_eq!(verified.json["ok"], true, "{verified:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_comes_back_after_postgresql_restarts() {
    let mut rig = Rig::start().await;
    let server = rig.replica().await;
    let alice = rig.token("alice").await;
    assert_eq!(server.get("/healthz", None).await.status, StatusCode::OK);
    let mut events = server.events(&alice, None).await;
    rig.pg.stop().await;
    let down = server.get("/healthz", None).await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE, "{down:?}");
    assert_eq!(down.json["status"], "unavailable");
    let refused = server
        .post(
            "/v1/requests",
            &alice,
            json!({ "role": "READONLY", "duration_secs": 60, "reason": "during the outage" }),
        )
        .await;
    assert_eq!(
        refused.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{refused:?}"
    );
    assert!(!refused.text.contains("postgres://"));

    rig.pg.restart().await.unwrap();
    eventually(Duration::from_secs(30), "healthz turns healthy", || async {
        server.get("/healthz", None).await.status == StatusCode::OK
    })
    .await;
    let g = server.request(&alice, "READONLY", 60).await;
    assert_eq!(g["state"], "active");
    // The event stream follows again (the listener reconnected, or the poll caught it).
    let seen = events
        .until("activated", &id_of(&g), Duration::from_secs(20))
        .await;
    assert!(!seen.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bodies_get_a_400_that_names_the_problem_and_write_nothing() {
    let rig = Rig::start().await;
    let server = rig.replica().await;
    let alice = rig.token("alice").await;

    let r = server
        .post_raw("/v1/requests", &alice, "application/json", "{not json")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.message().contains("not valid JSON"), "{r:?}");

    let r = server
        .post(
            "/v1/requests",
            &alice,
            json!({ "role": "ANALYST", "duration_secs": "2h", "reason": "x" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.message().contains("duration_secs"), "{r:?}");

    let r = server
        .post(
            "/v1/requests",
            &alice,
            json!({ "role": "ANALYST", "duration_secs": 60, "reason": "x", "rol": 1 }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.message().contains("rol"), "{r:?}");

    let r = server
        .post(
            "/v1/requests",
            &alice,
            json!({ "role": "ANALYST", "duration_secs": 60, "reason": "  " }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.message().contains("reason"), "{r:?}");

    let r = server
        .post_raw(
            "/v1/requests",
            &alice,
            "text/plain",
            r#"{"role":"ANALYST"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.message().contains("Content-Type: application/json"),
        "{r:?}"
    );

    let r = server
        .post(
            "/v1/requests",
            &alice,
            json!({ "role": "ACCOUNTADMIN", "duration_secs": 60, "reason": "x" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.message().contains("known roles: ANALYST, READONLY"),
        "{r:?}"
    );

    let r = server
        .post("/v1/grants/nope/approve", &alice, json!({}))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.message().contains("not a grant id"), "{r:?}");

    let r = server.get("/v1/nothing-here", Some(&alice)).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.code(), "not_found");

    let mine = server.get("/v1/grants", Some(&alice)).await;
    assert_eq!(mine.json["grants"], json!([]), "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_making_too_many_changes_gets_429_with_retry_after() {
    let rig = Rig::start().await;
    let server = rig
        .replica_with(&Options {
            server_extra: "mutations_per_minute = 6\nmutation_burst = 2".into(),
            ..Options::default()
        })
        .await;
    let (alice, bob) = tokio::join!(rig.token("alice"), rig.token("bob"));
    server.request(&alice, "READONLY", 60).await;
    server.request(&alice, "READONLY", 60).await;
    let r = server
        .post(
            "/v1/requests",
            &alice,
            json!({ "role": "READONLY", "duration_secs": 60, "reason": "x" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{r:?}");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=10).contains(&retry), "{retry}");
    // Reading is not limited, and bob has his own budget.
    assert_eq!(
        server.get("/v1/grants", Some(&alice)).await.status,
        StatusCode::OK
    );
    server.request(&bob, "READONLY", 60).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_key_is_published_and_the_first_one_signs() {
    let rig = Rig::start().await;
    let second = rig.dir.path().join("next.pem");
    make_rsa_key(&second);
    // The second key as PKCS#1 ("BEGIN RSA PRIVATE KEY"), which is accepted too.
    let pkcs1 = rig.dir.path().join("next-pkcs1.pem");
    let out = std::process::Command::new("openssl")
        .args(["rsa", "-traditional", "-in"])
        .arg(&second)
        .arg("-out")
        .arg(&pkcs1)
        .output()
        .unwrap();
    assert!(out.status.success());
    let server = rig
        .replica_with(&Options {
            key_files: Some(vec![rig.key_file.clone(), pkcs1]),
            ..Options::default()
        })
        .await;
    let jwks = server.get("/.well-known/jwks.json", None).await;
    let kids: Vec<&str> = jwks.json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert_eq!(kids.len(), 2);
    assert_ne!(kids[0], kids[1]);
    for k in jwks.json["keys"].as_array().unwrap() {
        assert_eq!(k["kty"], "RSA");
        assert!(k.get("d").is_none(), "no private part is published");
    }
    let alice = rig.token("alice").await;
    let g = server.request(&alice, "READONLY", 600).await;
    let t = server
        .post(
            &format!("/v1/grants/{}/snowflake-token", id_of(&g)),
            &alice,
            json!({}),
        )
        .await;
    let header = jsonwebtoken::decode_header(t.json["token"].as_str().unwrap()).unwrap();
    assert_eq!(header.kid.as_deref(), Some(kids[0]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_desktop_reports_its_session_records_as_the_caller_and_only_those_kinds() {
    let rig = Rig::start().await;
    let server = rig.replica().await;
    let (alice, bob) = tokio::join!(rig.token("alice"), rig.token("bob"));
    let g = server.request(&alice, "ANALYST", 3600).await;
    let id = id_of(&g);
    let approved = server
        .post(&format!("/v1/grants/{id}/approve"), &bob, json!({}))
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{approved:?}");

    // Alice's desktop reports a session opening, claiming to be bob.
    let at = snowgate_grants::Timestamp::from(std::time::SystemTime::now()).to_rfc3339();
    let r = server
        .post(
            "/v1/audit/records",
            &alice,
            json!({ "records": [{
                "kind": "session.opened",
                "at": at,
                "actor": "user:bob",
                "grant_id": id,
                "role": "ANALYST",
                "details": { "session": "s-1", "tool": "PythonConnector 3.12" },
            }] }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json["appended"], 1);

    // A kind a desktop may not report is refused, and nothing of the batch is written.
    let r = server
        .post(
            "/v1/audit/records",
            &alice,
            json!({ "records": [
                { "kind": "auth.sign_in", "at": at, "details": { "email": null, "groups": [] } },
                { "kind": "grant.approved", "at": at, "grant_id": id, "role": "ANALYST" },
            ] }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(r.message().contains("records[1]"), "{r:?}");
    assert!(r.message().contains("grant.approved"), "{r:?}");

    // A desktop reports only on its own person's grants, for the grant's role.
    let r = server
        .post(
            "/v1/audit/records",
            &bob,
            json!({ "records": [{ "kind": "session.opened", "at": at, "grant_id": id, "role": "ANALYST",
                                  "details": { "session": "s-1", "tool": "x" } }] }),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    assert!(r.message().contains("not yours"), "{r:?}");
    let r = server
        .post(
            "/v1/audit/records",
            &alice,
            json!({ "records": [{ "kind": "session.opened", "at": at, "grant_id": id, "role": "ENGINEER",
                                  "details": { "session": "s-1", "tool": "x" } }] }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(r.message().contains("is for ANALYST"), "{r:?}");

    // Bad bodies name the problem.
    let r = server
        .post("/v1/audit/records", &alice, json!({ "record": [] }))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    let r = server
        .post(
            "/v1/audit/records",
            &alice,
            json!({ "records": [{ "kind": "session.opened", "at": "yesterday" }] }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(r.message().contains("RFC 3339"), "{r:?}");
    let r = server
        .post(
            "/v1/audit/records",
            &alice,
            json!({ "records": [{ "kind": "session.closed", "at": at }] }),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(r.message().contains("grant_id"), "{r:?}");
    let many: Vec<Value> = (0..101)
        .map(|_| json!({ "kind": "auth.sign_in", "at": at }))
        .collect();
    let r = server
        .post("/v1/audit/records", &alice, json!({ "records": many }))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(r.message().contains("at most 100"), "{r:?}");

    let audit = server.get("/v1/audit?limit=1000", Some(&bob)).await;
    assert_eq!(audit.status, StatusCode::OK, "{audit:?}");
    let records = audit.json["records"].as_array().unwrap();
    let sessions: Vec<&Value> = records
        .iter()
        .filter(|r| r["kind"] == "session.opened")
        .collect();
    assert_eq!(sessions.len(), 1, "{records:?}");
    assert_eq!(sessions[0]["actor"], "user:alice");
    assert_eq!(sessions[0]["grant_id"], id.as_str());
    assert_eq!(sessions[0]["details"]["tool"], "PythonConnector 3.12");
    assert_eq!(sessions[0]["details"]["source"], "desktop");
    assert!(
        !records.iter().any(|r| r["kind"] == "auth.sign_in"),
        "{records:?}"
    );
    let verified = server.get("/v1/audit/verify", Some(&bob)).await;
    assert_eq!(verified.json["ok"], true, "{verified:?}");
    assert_eq!(verified.json["records"], records.len());
}

async fn post(server: &Replica, token: &str, body: Value) -> Reply {
    server.post("/v1/audit/records", token, body).await
}

/// A report of `seqs` from desktop ledger `source`, each record a sign-out carrying its number
/// as its reason (`n7`).
fn numbered(source: &str, seqs: std::ops::RangeInclusive<u64>) -> Value {
    let at = snowgate_grants::Timestamp::from(std::time::SystemTime::now()).to_rfc3339();
    let records: Vec<Value> = seqs
        .map(
            |n| json!({ "source_seq": n, "kind": "auth.sign_out", "at": at, "details": { "why": format!("n{n}") } }),
        )
        .collect();
    json!({ "source": source, "records": records })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_report_sent_again_or_overlapping_lands_once_in_order() {
    let rig = Rig::start().await;
    let (one, two) = tokio::join!(rig.replica(), rig.replica());
    let (alice, bob) = tokio::join!(rig.token("alice"), rig.token("bob"));
    let source = "4f1c2d9e8a7b6c5d4e3f2a1b0c9d8e7f";

    let r = post(&one, &alice, numbered(source, 1..=3)).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        (r.json["appended"].as_u64(), r.json["duplicates"].as_u64()),
        (Some(3), Some(0))
    );

    // The answer was lost and the desktop sends the same batch again: acknowledged, not appended.
    let r = post(&one, &alice, numbered(source, 1..=3)).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        (r.json["appended"].as_u64(), r.json["duplicates"].as_u64()),
        (Some(0), Some(3))
    );

    // A batch overlapping the last one: only the new records are appended.
    let r = post(&two, &alice, numbered(source, 2..=5)).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        (r.json["appended"].as_u64(), r.json["duplicates"].as_u64()),
        (Some(2), Some(2))
    );

    // The same batch reaching two replicas at once still lands once.
    let (a, b) = tokio::join!(
        post(&one, &alice, numbered(source, 6..=8)),
        post(&two, &alice, numbered(source, 6..=8)),
    );
    assert_eq!(
        (a.status, b.status),
        (StatusCode::OK, StatusCode::OK),
        "{a:?} {b:?}"
    );
    let appended = a.json["appended"].as_u64().unwrap() + b.json["appended"].as_u64().unwrap();
    assert_eq!(appended, 3, "{a:?} {b:?}");

    // A record older than the last one taken from the source for this person is a duplicate.
    let r = post(&one, &alice, numbered(source, 4..=4)).await;
    assert_eq!(r.json["appended"], 0, "{r:?}");

    // Another person's records from the same desktop, sent later (they signed in again after
    // alice's went), are taken although their numbers are lower than alice's last.
    let r = post(&one, &alice, numbered(source, 10..=11)).await;
    assert_eq!(r.json["appended"], 2, "{r:?}");
    let r = post(&one, &bob, numbered(source, 9..=9)).await;
    assert_eq!(r.json["appended"], 1, "{r:?}");
    let r = post(&two, &bob, numbered(source, 9..=9)).await;
    assert_eq!(
        (r.json["appended"].as_u64(), r.json["duplicates"].as_u64()),
        (Some(0), Some(1))
    );
    // Another desktop numbers its own records.
    let r = post(&one, &bob, numbered("b0b5-desktop", 1..=1)).await;
    assert_eq!(r.json["appended"], 1, "{r:?}");

    // Bad identities name the problem and write nothing.
    let mut no_source = numbered(source, 20..=21);
    no_source.as_object_mut().unwrap().remove("source");
    let r = post(&one, &alice, no_source).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(r.message().contains("needs the report's `source`"), "{r:?}");
    let mut backwards = numbered(source, 20..=21);
    backwards["records"][1]["source_seq"] = json!(19);
    let r = post(&one, &alice, backwards).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    assert!(r.message().contains("records[1]"), "{r:?}");
    let mut missing = numbered(source, 20..=21);
    missing["records"][0]
        .as_object_mut()
        .unwrap()
        .remove("source_seq");
    let r = post(&one, &alice, missing).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    let r = post(&one, &alice, numbered("not a source!", 20..=20)).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");

    // An older desktop's report without ids is still taken, as it comes.
    let at = snowgate_grants::Timestamp::from(std::time::SystemTime::now()).to_rfc3339();
    let legacy =
        json!({ "records": [{ "kind": "auth.sign_out", "at": at, "details": { "why": "n100" } }] });
    let r = post(&one, &alice, legacy).await;
    assert_eq!(r.json["appended"], 1, "{r:?}");

    let audit = one.get("/v1/audit?limit=1000", Some(&bob)).await;
    assert_eq!(audit.status, StatusCode::OK, "{audit:?}");
    let of = |who: &str| -> Vec<u64> {
        audit.json["records"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["kind"] == "auth.sign_out" && r["actor"] == format!("user:{who}"))
            .map(|r| r["details"]["why"].as_str().unwrap()[1..].parse().unwrap())
            .collect()
    };
    assert_eq!(of("alice"), [1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 100]);
    assert_eq!(of("bob"), [9, 1]);
    let verified = one.get("/v1/audit/verify", Some(&bob)).await;
    assert_eq!(verified.json["ok"], true, "{verified:?}");
}
