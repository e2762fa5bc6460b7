//! The rig's identity provider, exercised through the rig's Rust API.

use std::time::Duration;

use snowgate_rig::idp::{jwt_header, jwt_payload, Idp, IdpOptions, CLIENT_ID};
use snowgate_rig::TestCa;

const AUDIENCE: &str = "https://snowflake.rig.test";

struct Rig {
    idp: Idp,
    _dir: tempfile::TempDir,
}

async fn start(opts: IdpOptions) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::generate(dir.path()).unwrap();
    let idp = Idp::start(&ca, opts).await.unwrap();
    Rig { idp, _dir: dir }
}

async fn start_default() -> Rig {
    start(IdpOptions::default()).await
}

const ALL_ROLES: &[&str] = &[
    "openid",
    "offline_access",
    "profile",
    "email",
    "groups",
    "session:role:ANALYST",
    "session:role:ENGINEER",
];

fn scopes_of(claims: &serde_json::Value, name: &str) -> Vec<String> {
    claims[name]
        .as_str()
        .unwrap_or_default()
        .split(' ')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test]
async fn pkce_login_gives_an_id_token_with_groups_and_nonce() {
    let rig = start_default().await;
    let idp = &rig.idp;
    let req = idp
        .authorize_request(
            &["openid", "offline_access", "profile", "email", "groups"],
            None,
        )
        .unwrap();
    let redirect = idp.complete_login(req.url.as_str(), "alice").await.unwrap();
    assert_eq!(redirect.path(), "/callback");
    assert_eq!(redirect.host_str(), Some("127.0.0.1"));
    let query: std::collections::HashMap<_, _> = redirect.query_pairs().into_owned().collect();
    assert!(query.contains_key("code"));
    assert_eq!(query.get("state"), Some(&req.state));
    assert_eq!(query.get("iss"), Some(&idp.issuer()));

    let tokens = idp.exchange_code(&req, &redirect, None).await.unwrap();
    let id_token = tokens.id_token.as_deref().expect("an ID token");
    let header = jwt_header(id_token).unwrap();
    assert_eq!(header["alg"], "RS256");
    let claims = jwt_payload(id_token).unwrap();
    assert_eq!(claims["iss"], idp.issuer());
    assert_eq!(claims["aud"], CLIENT_ID);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["nonce"], req.nonce.as_str());
    // Issued together with an access token, the ID token carries no user claims: they are at
    // userinfo (oidc-provider's conformIdTokenClaims default, OpenID Connect Core §5.4).
    for claim in ["groups", "email", "name"] {
        assert!(claims.get(claim).is_none(), "{claim} in {claims}");
    }
    assert!(claims["exp"].as_u64().unwrap() > now());
    // The rig's login asked with prompt=consent, so offline_access stood.
    assert!(tokens.refresh_token.is_some(), "a refresh token");

    // The ID token's kid is in the JWKS.
    let jwks = idp.jwks().await.unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(kids.contains(&header["kid"].as_str().unwrap()));
    assert!(idp.jwks_uri().starts_with(&idp.issuer()));

    // Without a resource the access token is opaque and good for userinfo.
    assert!(jwt_payload(&tokens.access_token).is_err());
    let info = idp.userinfo(&tokens.access_token).await.unwrap();
    assert_eq!(info["sub"], "alice");
    assert_eq!(info["groups"], serde_json::json!(["analysts"]));
    assert_eq!(info["email"], "alice@example.test");
    assert_eq!(info["name"], "Alice Analyst");

    // Debug never shows token values.
    let shown = format!("{tokens:?}");
    assert!(!shown.contains(&tokens.access_token));
    assert!(!shown.contains(id_token));
    assert!(!shown.contains(tokens.refresh_token.as_deref().unwrap()));
}

#[tokio::test]
async fn snowflake_access_token_is_a_jwt_for_one_role() {
    let rig = start_default().await;
    let idp = &rig.idp;
    let login = idp.login("alice", ALL_ROLES, Some(AUDIENCE)).await.unwrap();

    // The code exchange with the resource gives the JWT with every granted role.
    let at = jwt_payload(&login.access_token).unwrap();
    assert_eq!(at["aud"], AUDIENCE);
    // RFC 9068: the scopes are in `scope`; the strict provider adds no `scp`.
    assert!(at.get("scp").is_none(), "{at}");
    let mut granted = scopes_of(&at, "scope");
    granted.sort();
    assert_eq!(granted, ["session:role:ANALYST", "session:role:ENGINEER"]);

    let rt = login.refresh_token.as_deref().unwrap();
    let one = idp
        .refresh(rt, Some("session:role:ANALYST"), Some(AUDIENCE))
        .await
        .unwrap();
    let header = jwt_header(&one.access_token).unwrap();
    assert_eq!(header["alg"], "RS256");
    assert_eq!(header["typ"], "at+jwt");
    let claims = jwt_payload(&one.access_token).unwrap();
    assert_eq!(claims["iss"], idp.issuer());
    assert_eq!(claims["aud"], AUDIENCE);
    assert_eq!(claims["sub"], "alice");
    assert_eq!(claims["email"], "alice@example.test");
    assert_eq!(claims["groups"], serde_json::json!(["analysts"]));
    assert_eq!(scopes_of(&claims, "scope"), ["session:role:ANALYST"]);
    assert_eq!(one.scope.as_deref(), Some("session:role:ANALYST"));
    let exp = claims["exp"].as_u64().unwrap();
    let iat = claims["iat"].as_u64().unwrap();
    assert_eq!(exp - iat, 300);
    // Signed with a key of the JWKS.
    let jwks = idp.jwks().await.unwrap();
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("the access token's kid is in the JWKS");
    assert_eq!(key["kty"], "RSA");
    assert!(
        key.get("d").is_none(),
        "the JWKS publishes no private parts"
    );
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_grant() {
    let rig = start_default().await;
    let idp = &rig.idp;
    let login = idp.login("alice", ALL_ROLES, Some(AUDIENCE)).await.unwrap();
    let rt1 = login.refresh_token.clone().unwrap();

    let second = idp.refresh(&rt1, None, Some(AUDIENCE)).await.unwrap();
    let rt2 = second
        .refresh_token
        .clone()
        .expect("a rotated refresh token");
    assert_ne!(rt1, rt2);

    // Reusing the old one fails...
    let err = idp
        .refresh(&rt1, None, Some(AUDIENCE))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid_grant"), "{err}");
    assert!(!err.contains(&rt1), "errors never show tokens");
    // ...and takes the new one with it.
    let err = idp
        .refresh(&rt2, None, Some(AUDIENCE))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid_grant"), "{err}");
    let intro = idp.introspect(&rt2).await.unwrap();
    assert_eq!(intro["active"], false);
}

#[tokio::test]
async fn device_flow_works_for_bob() {
    let rig = start_default().await;
    let idp = &rig.idp;
    let scopes = [
        "openid",
        "offline_access",
        "groups",
        "session:role:READONLY",
    ];
    let device = idp.device_authorize(&scopes, Some(AUDIENCE)).await.unwrap();
    assert!(device.verification_uri.starts_with(&idp.issuer()));
    // oidc-provider sends no interval (clients then wait 5 s, RFC 8628 §3.5).
    assert_eq!(device.interval, None);
    assert!(!format!("{device:?}").contains(&device.device_code));

    // Pending until bob confirms.
    let early = idp
        .poll_device(&device, Some(AUDIENCE), Duration::from_millis(150))
        .await
        .unwrap_err()
        .to_string();
    assert!(early.contains("not completed"), "{early}");

    idp.complete_device(&device.user_code, "bob").await.unwrap();
    let tokens = idp
        .poll_device(&device, Some(AUDIENCE), Duration::from_secs(3))
        .await
        .unwrap();
    let id = jwt_payload(tokens.id_token.as_deref().unwrap()).unwrap();
    assert_eq!(id["sub"], "bob");
    let at = jwt_payload(&tokens.access_token).unwrap();
    assert_eq!(at["aud"], AUDIENCE);
    assert_eq!(at["groups"], serde_json::json!(["managers"]));
    assert_eq!(scopes_of(&at, "scope"), ["session:role:READONLY"]);
    // The device flow has no prompt, so offline_access stands without a consent prompt.
    assert!(tokens.refresh_token.is_some());

    // A wrong user code is a clear error.
    let err = idp
        .complete_device("BCDF-GHJK", "bob")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("incorrect"), "{err}");
}

#[tokio::test]
async fn unknown_user_cannot_sign_in() {
    let rig = start_default().await;
    let err = rig
        .idp
        .login("zed", &["openid"], None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("refused to sign in \"zed\""), "{err}");
    assert!(err.contains("unknown user"), "{err}");
}

#[tokio::test]
async fn short_access_token_ttl_is_honoured() {
    let rig = start(IdpOptions {
        access_token_ttl: Duration::from_secs(2),
        ..IdpOptions::default()
    })
    .await;
    let idp = &rig.idp;
    let login = idp.login("carol", ALL_ROLES, Some(AUDIENCE)).await.unwrap();
    assert!(login.expires_in.unwrap() <= 2, "{:?}", login.expires_in);
    let at = jwt_payload(&login.access_token).unwrap();
    assert_eq!(at["exp"].as_u64().unwrap() - at["iat"].as_u64().unwrap(), 2);

    // An opaque token really dies after 2 s.
    let plain = idp
        .refresh(
            login.refresh_token.as_deref().unwrap(),
            Some("openid"),
            None,
        )
        .await
        .unwrap();
    assert!(plain.expires_in.unwrap() <= 2);
    assert_eq!(
        idp.introspect(&plain.access_token).await.unwrap()["active"],
        true
    );
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        idp.introspect(&plain.access_token).await.unwrap()["active"],
        false
    );
    assert!(idp.userinfo(&plain.access_token).await.is_err());
}

#[tokio::test]
async fn accountadmin_is_never_granted() {
    let rig = start_default().await;
    let idp = &rig.idp;
    let login = idp
        .login(
            "alice",
            &[
                "openid",
                "offline_access",
                "session:role:ANALYST",
                "session:role:ACCOUNTADMIN",
            ],
            Some(AUDIENCE),
        )
        .await
        .unwrap();
    let at = jwt_payload(&login.access_token).unwrap();
    assert_eq!(scopes_of(&at, "scope"), ["session:role:ANALYST"]);

    let err = idp
        .refresh(
            login.refresh_token.as_deref().unwrap(),
            Some("session:role:ACCOUNTADMIN"),
            Some(AUDIENCE),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid_scope"), "{err}");
}

#[tokio::test]
async fn key_rotation_keeps_the_old_key_in_the_jwks() {
    let rig = start_default().await;
    let idp = &rig.idp;
    let login = idp.login("alice", ALL_ROLES, Some(AUDIENCE)).await.unwrap();
    let old_kid = jwt_header(&login.access_token).unwrap()["kid"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(idp.current_kid().await.unwrap(), old_kid);

    idp.rotate_keys().await.unwrap();
    let new_kid = idp.current_kid().await.unwrap();
    assert_ne!(new_kid, old_kid);
    let jwks = idp.jwks().await.unwrap();
    let kids: Vec<&str> = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap())
        .collect();
    assert!(kids.contains(&old_kid.as_str()) && kids.contains(&new_kid.as_str()));

    // Grants made before the rotation still refresh, and new tokens use the new key.
    let after = idp
        .refresh(
            login.refresh_token.as_deref().unwrap(),
            Some("session:role:ENGINEER"),
            Some(AUDIENCE),
        )
        .await
        .unwrap();
    assert_eq!(
        jwt_header(&after.access_token).unwrap()["kid"],
        new_kid.as_str()
    );
    // ID tokens too (a refresh with openid in its scope brings one).
    let plain = idp
        .refresh(after.refresh_token.as_deref().unwrap(), None, None)
        .await
        .unwrap();
    let id = plain.id_token.as_deref().expect("an ID token");
    assert_eq!(jwt_header(id).unwrap()["kid"], new_kid.as_str());
}

#[tokio::test]
async fn restart_keeps_port_keys_and_refresh_tokens() {
    let mut rig = start_default().await;
    let login = rig
        .idp
        .login("alice", ALL_ROLES, Some(AUDIENCE))
        .await
        .unwrap();
    let issuer = rig.idp.issuer();
    let kid = rig.idp.current_kid().await.unwrap();

    rig.idp.stop().await.unwrap();
    let err = rig
        .idp
        .refresh(
            login.refresh_token.as_deref().unwrap(),
            None,
            Some(AUDIENCE),
        )
        .await
        .unwrap_err();
    assert!(format!("{err:#}").contains("is it running"), "{err:#}");

    rig.idp.restart().await.unwrap();
    assert_eq!(rig.idp.issuer(), issuer);
    assert_eq!(rig.idp.current_kid().await.unwrap(), kid);
    let after = rig
        .idp
        .refresh(
            login.refresh_token.as_deref().unwrap(),
            Some("session:role:ANALYST"),
            Some(AUDIENCE),
        )
        .await
        .unwrap();
    assert_eq!(
        scopes_of(&jwt_payload(&after.access_token).unwrap(), "scope"),
        ["session:role:ANALYST"]
    );
}

#[tokio::test]
async fn complete_login_and_follow_reaches_the_callback() {
    let rig = start_default().await;
    let idp = &rig.idp;
    // A stand-in for the broker's loopback callback.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 8192];
        let n = sock.read(&mut buf).await.unwrap();
        let request = String::from_utf8_lossy(&buf[..n]).to_string();
        let body = "signed in";
        let reply = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        sock.write_all(reply.as_bytes()).await.unwrap();
        request
    });
    let mut req = idp.authorize_request(&["openid"], None).unwrap();
    // Point the request at our listener, like the broker would.
    let redirect_uri = format!("http://127.0.0.1:{port}/callback");
    let pairs: Vec<(String, String)> = req
        .url
        .query_pairs()
        .into_owned()
        .map(|(k, v)| {
            if k == "redirect_uri" {
                (k, redirect_uri.clone())
            } else {
                (k, v)
            }
        })
        .collect();
    req.url.query_pairs_mut().clear().extend_pairs(pairs);
    let (status, body) = idp
        .complete_login_and_follow(req.url.as_str(), "bob")
        .await
        .unwrap();
    assert_eq!((status, body.as_str()), (200, "signed in"));
    let request = server.await.unwrap();
    assert!(request.starts_with("GET /callback?code="), "{request}");
}

#[tokio::test]
async fn a_start_failure_shows_the_idp_output() {
    let dir = tempfile::tempdir().unwrap();
    let mut ca = TestCa::generate(dir.path()).unwrap();
    ca.key_file = dir.path().join("missing-key.pem");
    let err = Idp::start(&ca, IdpOptions::default()).await.unwrap_err();
    let text = format!("{err:#}");
    assert!(text.contains("did not start"), "{text}");
    assert!(text.contains("missing-key.pem"), "{text}");
}

#[tokio::test]
async fn errors_say_what_went_wrong() {
    let rig = start_default().await;
    let idp = &rig.idp;

    // The provider answers a reused refresh token with a generic description; the rig adds the
    // reason the IdP logged.
    let login = idp.login("alice", ALL_ROLES, Some(AUDIENCE)).await.unwrap();
    let rt = login.refresh_token.clone().unwrap();
    idp.refresh(&rt, None, None).await.unwrap();
    let err = format!("{:#}", idp.refresh(&rt, None, None).await.unwrap_err());
    assert!(err.contains("refresh token already used"), "{err}");

    // An unregistered redirect URI (localhost is not 127.0.0.1) ends on the IdP's error page.
    let req = idp.authorize_request(&["openid"], None).unwrap();
    let bad = req.url.as_str().replace("127.0.0.1%3A", "localhost%3A");
    assert_ne!(bad, req.url.as_str());
    let err = format!("{:#}", idp.complete_login(&bad, "alice").await.unwrap_err());
    assert!(err.contains("invalid_redirect_uri"), "{err}");

    // A resource the IdP does not know.
    let err = format!(
        "{:#}",
        idp.login("alice", &["openid"], Some("https://elsewhere.test"))
            .await
            .unwrap_err()
    );
    assert!(err.contains("invalid_target"), "{err}");
}

#[tokio::test]
async fn role_scopes_without_a_resource_are_not_granted() {
    let rig = start_default().await;
    let idp = &rig.idp;
    // RFC 8707: the role scopes belong to the Snowflake resource, so a request that does not
    // name it gets none of them, and a refresh cannot add them later.
    let login = idp
        .login(
            "alice",
            &["openid", "offline_access", "session:role:ANALYST"],
            None,
        )
        .await
        .unwrap();
    assert_eq!(login.scope.as_deref(), Some("openid offline_access"));
    let err = idp
        .refresh(
            login.refresh_token.as_deref().unwrap(),
            Some("session:role:ANALYST"),
            Some(AUDIENCE),
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("invalid_scope") || err.contains("invalid_target"),
        "{err}"
    );
}

#[tokio::test]
async fn offline_access_without_prompt_consent_gives_no_refresh_token() {
    let rig = start_default().await;
    let idp = &rig.idp;
    let req = idp
        .authorize_request(&["openid", "offline_access"], Some(AUDIENCE))
        .unwrap();
    let mut url = req.url.clone();
    let kept: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != "prompt")
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.query_pairs_mut().clear().extend_pairs(kept);
    let redirect = idp.complete_login(url.as_str(), "alice").await.unwrap();
    let tokens = idp.exchange_code(&req, &redirect, None).await.unwrap();
    assert!(tokens.refresh_token.is_none(), "{tokens:?}");
    assert_eq!(tokens.scope.as_deref(), Some("openid"));
}

#[tokio::test]
async fn revoking_the_refresh_token_ends_the_grant() {
    let rig = start_default().await;
    let idp = &rig.idp;
    let login = idp.login("carol", ALL_ROLES, Some(AUDIENCE)).await.unwrap();
    let rt = login.refresh_token.as_deref().unwrap();
    idp.revoke(rt).await.unwrap();
    let err = idp.refresh(rt, None, None).await.unwrap_err().to_string();
    assert!(err.contains("invalid_grant"), "{err}");
}

#[tokio::test]
async fn attach_drives_an_idp_started_elsewhere() {
    let rig = start_default().await;
    let mut other = Idp::attach(&rig.idp.issuer(), rig.idp.ca_file())
        .await
        .unwrap();
    assert_eq!(other.jwks_uri(), rig.idp.jwks_uri());
    let tokens = other
        .login("mallory", &["openid", "groups"], None)
        .await
        .unwrap();
    let id = jwt_payload(tokens.id_token.as_deref().unwrap()).unwrap();
    assert_eq!(id["sub"], "mallory");
    let info = other.userinfo(&tokens.access_token).await.unwrap();
    assert_eq!(info["groups"], serde_json::json!([]));
    assert!(other.stop().await.is_err());
}
