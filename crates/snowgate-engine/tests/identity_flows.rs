//! Sign-in, refresh, revocation and outage against the rig's real IdP (npm `oidc-provider`
//! over TLS), with the session-only vault. The OS keyring has its own test file.

mod identity_support;

use std::sync::Arc;
use std::time::Duration;

use identity_support::*;
use snowgate_engine::identity::profile::PROFILE_FILE;
use snowgate_engine::identity::{
    IdentityError, IdentityEvent, IdentityStatus, MemoryVault, SignOutReason, TokenKind, Vault,
    VaultKind,
};
use snowgate_rig::idp::{IdpOptions, CLIENT_ID};

#[tokio::test]
async fn a_browser_sign_in_gives_alice_her_groups_and_a_page_that_says_return_to_the_app() {
    let rig = Rig::start_default().await;
    let vault = Arc::new(MemoryVault::new());
    let identity = rig.identity(vault.clone()).await;
    assert_eq!(identity.status(), IdentityStatus::SignedOut);
    let mut events = identity.subscribe();

    let pending = identity.begin_browser_login().await.unwrap();
    assert_eq!(identity.status(), IdentityStatus::SigningIn);
    let url = pending.authorize_url().clone();
    let query: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(query["code_challenge_method"], "S256");
    assert_eq!(query["resource"], AUDIENCE);
    assert!(pending.redirect_uri().starts_with("http://127.0.0.1:"));
    let scopes: Vec<&str> = query["scope"].split(' ').collect();
    for s in [
        "openid",
        "offline_access",
        "groups",
        "session:role:ANALYST",
        "session:role:ENGINEER",
    ] {
        assert!(scopes.contains(&s), "{scopes:?} lacks {s}");
    }
    let (profile, page) = tokio::join!(
        pending.wait(),
        rig.idp.complete_login_and_follow(url.as_str(), "alice")
    );
    let profile = profile.unwrap();
    let (status, body) = page.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Signed in to Snowgate"), "{body}");
    assert!(
        body.contains("you can close this tab and return to the app"),
        "{body}"
    );

    assert_eq!(profile.subject, "alice");
    assert_eq!(profile.groups, ["analysts"]);
    assert_eq!(profile.email.as_deref(), Some("alice@example.test"));
    assert_eq!(profile.name.as_deref(), Some("Alice Analyst"));
    assert_eq!(
        identity.status(),
        IdentityStatus::SignedIn {
            subject: "alice".into()
        }
    );
    assert_eq!(
        next_event(&mut events, Duration::from_secs(1), |_| true).await,
        IdentityEvent::SignedIn {
            subject: "alice".into()
        }
    );

    let who = identity.whoami().unwrap();
    assert_eq!(who.subject, "alice");
    assert!(who.refresh_token_present);
    assert_eq!(who.vault, VaultKind::SessionOnly);
    assert!(who.idp_access_token_expires_at.is_some());
    let json = serde_json::to_string(&who).unwrap();
    assert!(json.contains("\"groups\":[\"analysts\"]"), "{json}");

    // The IdP access token is good for userinfo; the refresh token is in the vault.
    let at = identity.idp_access_token().await.unwrap();
    let info = rig.idp.userinfo(at.token.expose_secret()).await.unwrap();
    assert_eq!(info["sub"], "alice");
    let key = profile.vault_key();
    assert_eq!(
        key.account(),
        format!("{}|{CLIENT_ID}|alice", rig.idp.issuer())
    );
    assert!(vault.load(&key).unwrap().is_some());
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(rig.data_dir().join(PROFILE_FILE)).unwrap()).unwrap();
    assert_eq!(on_disk["subject"], "alice");
}

#[tokio::test]
async fn a_device_sign_in_signs_bob_in() {
    let rig = Rig::start_default().await;
    let identity = rig.identity(Arc::new(MemoryVault::new())).await;
    let pending = identity.begin_device_login().await.unwrap();
    assert!(!pending.user_code().is_empty());
    assert!(pending.verification_uri().starts_with(&rig.idp.issuer()));
    assert!(pending.expires_in() > Duration::from_secs(60));
    assert_eq!(identity.status(), IdentityStatus::SigningIn);
    let code = pending.user_code().to_string();
    let started = std::time::Instant::now();
    let (profile, confirmed) = tokio::join!(pending.wait(), rig.idp.complete_device(&code, "bob"));
    confirmed.unwrap();
    let profile = profile.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "polling is too slow"
    );
    assert_eq!(profile.subject, "bob");
    assert_eq!(profile.groups, ["managers"]);
    // The access token is the IdP's own, and the device grant covers the roles too.
    let at = identity.idp_access_token().await.unwrap();
    let info = rig.idp.userinfo(at.token.expose_secret()).await.unwrap();
    assert_eq!(info["sub"], "bob");
    let t = identity.snowflake_token("ENGINEER").await.unwrap();
    assert_eq!(scp(t.token.expose_secret()), "session:role:ENGINEER");
}

#[tokio::test]
async fn fifty_concurrent_callers_for_two_roles_share_two_serialized_refreshes() {
    let rig = Rig::start_default().await;
    let identity = rig.identity(Arc::new(MemoryVault::new())).await;
    browser_login(&identity, &rig.idp, "carol").await.0.unwrap();
    let mut events = identity.subscribe();

    let calls = (0..50).map(|i| {
        let identity = identity.clone();
        let role = if i % 2 == 0 { "ANALYST" } else { "ENGINEER" };
        tokio::spawn(async move { identity.snowflake_token(role).await })
    });
    let results = futures_join_all(calls).await;
    let mut distinct = std::collections::HashSet::new();
    for r in results {
        let t = r.unwrap();
        let claims = snowgate_rig::idp::jwt_payload(t.token.expose_secret()).unwrap();
        assert_eq!(
            scp(t.token.expose_secret()),
            format!("session:role:{}", t.role)
        );
        assert_eq!(claims["aud"], AUDIENCE);
        assert_eq!(claims["sub"], "carol");
        distinct.insert(t.token.expose_secret().to_string());
    }
    // One refresh per role, shared by every caller for that role.
    assert_eq!(distinct.len(), 2);
    let mut refreshed = Vec::new();
    while let Ok(e) = events.try_recv() {
        if let IdentityEvent::TokensRefreshed { token, .. } = e {
            refreshed.push(token);
        }
    }
    refreshed.sort_by_key(|t| format!("{t:?}"));
    assert_eq!(
        refreshed,
        [
            TokenKind::Snowflake {
                role: "ANALYST".into()
            },
            TokenKind::Snowflake {
                role: "ENGINEER".into()
            }
        ]
    );
    // No reuse was detected: still signed in, and the rotated token still refreshes.
    assert_eq!(
        identity.status(),
        IdentityStatus::SignedIn {
            subject: "carol".into()
        }
    );
    let who = identity.whoami().unwrap();
    assert_eq!(who.snowflake_tokens.len(), 2);
    assert!(matches!(
        identity.snowflake_token("NOT_CONFIGURED").await,
        Err(IdentityError::UnknownRole { .. })
    ));
}

async fn futures_join_all<T>(handles: impl Iterator<Item = tokio::task::JoinHandle<T>>) -> Vec<T> {
    let mut out = Vec::new();
    for h in handles.collect::<Vec<_>>() {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_reused_refresh_token_signs_the_user_out_and_says_why() {
    let rig = Rig::start_default().await;
    let vault = Arc::new(MemoryVault::new());
    let identity = rig.identity(vault.clone()).await;
    let profile = browser_login(&identity, &rig.idp, "alice").await.0.unwrap();
    let key = profile.vault_key();
    let first = vault.load(&key).unwrap().unwrap();

    // The broker refreshes and rotates; the vault follows.
    identity.snowflake_token("ANALYST").await.unwrap();
    let second = vault.load(&key).unwrap().unwrap();
    assert_ne!(first, second, "the refresh token was not rotated");

    // Someone presents the old one: the IdP revokes the whole grant.
    let err = rig
        .idp
        .refresh(first.expose_secret(), None, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid_grant"), "{err}");

    let mut events = identity.subscribe();
    let err = identity.snowflake_token("ENGINEER").await.unwrap_err();
    assert!(matches!(err, IdentityError::Revoked), "{err}");
    assert_eq!(
        err.to_string(),
        "your sign-in was revoked or reused; sign in again"
    );
    let event = next_event(&mut events, Duration::from_secs(2), |e| {
        matches!(e, IdentityEvent::SignedOut { .. })
    })
    .await;
    assert_eq!(
        event,
        IdentityEvent::SignedOut {
            reason: SignOutReason::Revoked,
            message: "your sign-in was revoked or reused; sign in again".into()
        }
    );
    assert_eq!(identity.status(), IdentityStatus::SignedOut);
    assert!(identity.whoami().is_none());
    assert!(vault.load(&key).unwrap().is_none());
    assert!(!rig.data_dir().join(PROFILE_FILE).exists());
    assert!(matches!(
        identity.snowflake_token("ANALYST").await,
        Err(IdentityError::NotSignedIn)
    ));
}

#[tokio::test]
async fn logout_revokes_the_refresh_token_at_the_idp_and_forgets_everything() {
    let rig = Rig::start_default().await;
    let vault = Arc::new(MemoryVault::new());
    let identity = rig.identity(vault.clone()).await;
    let profile = browser_login(&identity, &rig.idp, "alice").await.0.unwrap();
    identity.snowflake_token("ANALYST").await.unwrap();
    let refresh = vault.load(&profile.vault_key()).unwrap().unwrap();
    let mut events = identity.subscribe();

    let report = identity.logout().await.unwrap();
    assert!(report.revoked, "{report:?}");
    assert!(report.message().contains("revoked"), "{}", report.message());
    assert_eq!(
        next_event(&mut events, Duration::from_secs(1), |_| true).await,
        IdentityEvent::SignedOut {
            reason: SignOutReason::Logout,
            message: "you signed out".into()
        }
    );
    let err = rig
        .idp
        .refresh(refresh.expose_secret(), None, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid_grant"), "{err}");
    assert!(vault.load(&profile.vault_key()).unwrap().is_none());
    assert!(!rig.data_dir().join(PROFILE_FILE).exists());
    assert!(identity.whoami().is_none());
    assert_eq!(identity.status(), IdentityStatus::SignedOut);
    assert!(matches!(
        identity.idp_access_token().await,
        Err(IdentityError::NotSignedIn)
    ));
    // A second logout is harmless.
    assert!(!identity.logout().await.unwrap().was_signed_in);
}

#[tokio::test]
async fn logout_while_the_idp_is_down_signs_out_here_and_says_revocation_failed() {
    let mut rig = Rig::start_default().await;
    let vault = Arc::new(MemoryVault::new());
    let identity = rig.identity(vault.clone()).await;
    let profile = browser_login(&identity, &rig.idp, "alice").await.0.unwrap();
    rig.idp.stop().await.unwrap();
    let report = identity.logout().await.unwrap();
    assert!(!report.revoked);
    assert!(
        report.message().contains("could not revoke"),
        "{}",
        report.message()
    );
    assert_eq!(identity.status(), IdentityStatus::SignedOut);
    assert!(vault.load(&profile.vault_key()).unwrap().is_none());
}

#[tokio::test]
async fn an_unreachable_idp_reads_offline_keeps_unexpired_tokens_and_recovers() {
    let mut rig = Rig::start(IdpOptions {
        access_token_ttl: Duration::from_secs(5),
        ..IdpOptions::default()
    })
    .await;
    let identity = rig.identity(Arc::new(MemoryVault::new())).await;
    browser_login(&identity, &rig.idp, "alice").await.0.unwrap();
    let analyst = identity.snowflake_token("ANALYST").await.unwrap();
    let mut events = identity.subscribe();

    rig.idp.stop().await.unwrap();
    // A token nobody has yet cannot be had; the status says why.
    let err = identity.snowflake_token("ENGINEER").await.unwrap_err();
    assert!(err.is_transient(), "{err}");
    assert!(
        err.to_string().contains("can't be reached") || err.to_string().contains("unreachable"),
        "{err}"
    );
    assert!(matches!(
        identity.status(),
        IdentityStatus::OfflineRetrying { .. }
    ));
    assert!(matches!(
        next_event(&mut events, Duration::from_secs(1), |e| matches!(
            e,
            IdentityEvent::Offline { .. }
        ))
        .await,
        IdentityEvent::Offline { .. }
    ));
    let status = serde_json::to_value(identity.status()).unwrap();
    assert_eq!(status["state"], "offline_retrying");
    assert!(status["last_error"].as_str().unwrap().contains("127.0.0.1"));

    // The ANALYST token keeps being served until it expires, even past its refresh point.
    let wait_until = analyst.expires_at - Duration::from_millis(400);
    tokio::time::sleep(
        wait_until
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default(),
    )
    .await;
    let again = identity.snowflake_token("ANALYST").await.unwrap();
    assert_eq!(again.token, analyst.token);
    tokio::time::sleep(
        analyst
            .expires_at
            .duration_since(std::time::SystemTime::now())
            .unwrap_or_default()
            + Duration::from_millis(100),
    )
    .await;
    let err = identity.snowflake_token("ANALYST").await.unwrap_err();
    assert!(err.is_transient(), "{err}");

    // Back up: the background retry recovers without anyone asking.
    rig.idp.restart().await.unwrap();
    next_event(&mut events, Duration::from_secs(20), |e| {
        matches!(e, IdentityEvent::Online)
    })
    .await;
    assert_eq!(
        identity.status(),
        IdentityStatus::SignedIn {
            subject: "alice".into()
        }
    );
    let fresh = identity.snowflake_token("ANALYST").await.unwrap();
    assert_ne!(fresh.token, analyst.token);
    assert_eq!(scp(fresh.token.expose_secret()), "session:role:ANALYST");
}

#[tokio::test]
async fn the_idp_access_token_is_refreshed_in_the_background_before_it_expires() {
    let rig = Rig::start(IdpOptions {
        access_token_ttl: Duration::from_secs(4),
        ..IdpOptions::default()
    })
    .await;
    let vault = Arc::new(MemoryVault::new());
    let identity = rig.identity(vault.clone()).await;
    let profile = browser_login(&identity, &rig.idp, "alice").await.0.unwrap();
    let before = identity.idp_access_token().await.unwrap();
    let rt_before = vault.load(&profile.vault_key()).unwrap().unwrap();
    let mut events = identity.subscribe();
    next_event(&mut events, Duration::from_secs(6), |e| {
        matches!(
            e,
            IdentityEvent::TokensRefreshed {
                token: TokenKind::Idp,
                ..
            }
        )
    })
    .await;
    // Refreshed at about 75 % of the lifetime: before the old one expired.
    assert!(std::time::SystemTime::now() < before.expires_at);
    let after = identity.idp_access_token().await.unwrap();
    assert_ne!(after.token, before.token);
    assert!(after.expires_at > before.expires_at);
    let rt_after = vault.load(&profile.vault_key()).unwrap().unwrap();
    assert_ne!(rt_after, rt_before);
    let info = rig.idp.userinfo(after.token.expose_secret()).await.unwrap();
    assert_eq!(info["sub"], "alice");
}

#[tokio::test]
async fn a_new_broker_over_the_same_data_dir_and_vault_restores_the_session() {
    let rig = Rig::start_default().await;
    let vault = Arc::new(MemoryVault::new());
    {
        let identity = rig.identity(vault.clone()).await;
        browser_login(&identity, &rig.idp, "carol").await.0.unwrap();
    }
    let identity = rig.identity(vault.clone()).await;
    assert_eq!(
        identity.status(),
        IdentityStatus::SignedIn {
            subject: "carol".into()
        }
    );
    let who = identity.whoami().unwrap();
    assert_eq!(who.groups, ["analysts", "managers"]);
    let t = identity.snowflake_token("ANALYST").await.unwrap();
    assert_eq!(scp(t.token.expose_secret()), "session:role:ANALYST");

    // Without the vault entry there is no session, and the stale profile goes.
    let empty = rig.identity(Arc::new(MemoryVault::new())).await;
    assert_eq!(empty.status(), IdentityStatus::SignedOut);
    assert!(!rig.data_dir().join(PROFILE_FILE).exists());
}

#[tokio::test]
async fn signing_keys_rotated_at_the_idp_are_fetched_again() {
    let rig = Rig::start_default().await;
    let identity = rig.identity(Arc::new(MemoryVault::new())).await;
    browser_login(&identity, &rig.idp, "alice").await.0.unwrap();
    rig.idp.rotate_keys().await.unwrap();
    let (profile, _) = browser_login(&identity, &rig.idp, "bob").await;
    assert_eq!(profile.unwrap().subject, "bob");
}

#[tokio::test]
async fn a_redirect_with_the_wrong_state_is_refused_and_the_real_sign_in_still_completes() {
    let rig = Rig::start_default().await;
    let identity = rig.identity(Arc::new(MemoryVault::new())).await;
    let pending = identity.begin_browser_login().await.unwrap();
    let url = pending.authorize_url().to_string();
    let forged = format!("{}?code=stolen&state=not-this-one", pending.redirect_uri());
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let resp = client.get(&forged).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    let page = resp.text().await.unwrap();
    assert!(page.contains("does not belong"), "{page}");
    // The stray redirect ended nothing: the person's own sign-in goes through.
    let (outcome, followed) = tokio::join!(
        pending.wait(),
        rig.idp.complete_login_and_follow(&url, "alice")
    );
    assert_eq!(followed.unwrap().0, 200);
    assert_eq!(outcome.unwrap().subject, "alice");
    assert!(matches!(identity.status(), IdentityStatus::SignedIn { .. }));
}

#[tokio::test]
async fn a_redirect_nobody_asked_for_does_nothing() {
    let rig = Rig::start_default().await;
    // This test plays the browser itself for one redirect: ask for consent up front, so the
    // strict IdP grants offline_access on the first round.
    let config = rig.config_with(&rig.idp.issuer(), CLIENT_ID, "consent_prompt = \"always\"");
    let identity = rig
        .identity_with(
            &config,
            Arc::new(MemoryVault::new()),
            Arc::new(snowgate_engine::identity::SystemClock),
        )
        .await;
    let pending = identity.begin_browser_login().await.unwrap();
    let url = pending.authorize_url().to_string();
    let redirect_uri = pending.redirect_uri().to_string();
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let origin = redirect_uri.trim_end_matches("/callback").to_string();

    // Other paths on the listener are 404s and leave the sign-in alone.
    let stray = client
        .get(format!("{origin}/favicon.ico"))
        .send()
        .await
        .unwrap();
    assert_eq!(stray.status().as_u16(), 404);
    let redirect = rig.idp.complete_login(&url, "alice").await.unwrap();
    let (profile, page) = tokio::join!(pending.wait(), client.get(redirect.as_str()).send());
    assert_eq!(profile.unwrap().subject, "alice");
    assert_eq!(page.unwrap().status().as_u16(), 200);
    let mut events = identity.subscribe();

    // The same redirect again, when no sign-in waits: nothing answers it, nothing changes.
    if let Ok(resp) = client.get(redirect.as_str()).send().await {
        assert_eq!(resp.status().as_u16(), 404);
    }
    // A redirect for a sign-in another program started (a real code, a state we never sent).
    let other = rig.idp.authorize_request(&["openid"], None).unwrap();
    let foreign = rig
        .idp
        .complete_login(other.url.as_str(), "mallory")
        .await
        .unwrap();
    let mut to_us = foreign.clone();
    to_us.set_port(redirect.port()).unwrap();
    if let Ok(resp) = client.get(to_us.as_str()).send().await {
        assert_eq!(resp.status().as_u16(), 404);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        events.try_recv().is_err(),
        "an unasked-for redirect made an event"
    );
    assert_eq!(identity.whoami().unwrap().subject, "alice");
}

#[tokio::test]
async fn a_discovery_document_for_another_issuer_is_refused() {
    let rig = Rig::start_default().await;
    // The same IdP, reached as localhost: its discovery says https://127.0.0.1:PORT.
    let issuer = format!("https://localhost:{}", rig.idp.port());
    let config = rig.config_with(&issuer, CLIENT_ID, "");
    let identity = rig
        .identity_with(
            &config,
            Arc::new(MemoryVault::new()),
            Arc::new(snowgate_engine::identity::SystemClock),
        )
        .await;
    let err = identity.begin_browser_login().await.unwrap_err();
    assert!(matches!(err, IdentityError::IssuerMismatch { .. }), "{err}");
    let text = err.to_string();
    assert!(text.contains(&rig.idp.issuer()), "{text}");
    assert!(text.contains("set identity.issuer to exactly"), "{text}");
    assert_eq!(identity.status(), IdentityStatus::SignedOut);
}

#[tokio::test]
async fn an_id_token_with_another_nonce_is_rejected_and_the_page_says_so() {
    let rig = Rig::start_default().await;
    let identity = rig.identity(Arc::new(MemoryVault::new())).await;
    let pending = identity.begin_browser_login().await.unwrap();
    // The authorization response the broker gets belongs to a request with another nonce
    // (as when an attacker injects a code obtained for their own request).
    let mut tampered = pending.authorize_url().clone();
    let pairs: Vec<(String, String)> = tampered
        .query_pairs()
        .into_owned()
        .map(|(k, v)| {
            if k == "nonce" {
                (k, "a-nonce-the-broker-never-sent".to_string())
            } else {
                (k, v)
            }
        })
        .collect();
    tampered.query_pairs_mut().clear().extend_pairs(pairs);
    let (outcome, page) = tokio::join!(
        pending.wait(),
        rig.idp
            .complete_login_and_follow(tampered.as_str(), "alice")
    );
    let err = outcome.unwrap_err();
    assert!(
        matches!(
            err,
            IdentityError::IdToken(snowgate_engine::identity::IdTokenError::WrongNonce(_))
        ),
        "{err}"
    );
    let (status, body) = page.unwrap();
    assert_eq!(status, 400);
    assert!(body.contains("nonce"), "{body}");
    assert_eq!(identity.status(), IdentityStatus::SignedOut);
}

#[tokio::test]
async fn an_expired_id_token_is_rejected_and_clock_skew_is_tolerated() {
    let rig = Rig::start_default().await;
    let now = std::time::SystemTime::now();
    // The rig's ID tokens live 3600 s. A clock 2 h ahead sees them expired...
    let ahead = Arc::new(snowgate_engine::identity::ManualClock::new(
        now + Duration::from_secs(7200),
    ));
    let identity = rig
        .identity_with(&rig.config(), Arc::new(MemoryVault::new()), ahead)
        .await;
    let err = browser_login(&identity, &rig.idp, "alice")
        .await
        .0
        .unwrap_err();
    assert!(
        matches!(
            err,
            IdentityError::IdToken(snowgate_engine::identity::IdTokenError::Expired(_))
        ),
        "{err}"
    );
    assert!(err.to_string().contains("clock"), "{err}");

    // ...a clock 2 h behind sees them issued in the future...
    let behind = Arc::new(snowgate_engine::identity::ManualClock::new(
        now - Duration::from_secs(7200),
    ));
    let identity = rig
        .identity_with(&rig.config(), Arc::new(MemoryVault::new()), behind)
        .await;
    let err = browser_login(&identity, &rig.idp, "alice")
        .await
        .0
        .unwrap_err();
    assert!(
        matches!(
            err,
            IdentityError::IdToken(snowgate_engine::identity::IdTokenError::IssuedInFuture(_))
        ),
        "{err}"
    );

    // ...and a clock 30 s past expiry is within the configured 60 s of skew.
    let skewed = Arc::new(snowgate_engine::identity::ManualClock::new(
        now + Duration::from_secs(3630),
    ));
    let identity = rig
        .identity_with(&rig.config(), Arc::new(MemoryVault::new()), skewed)
        .await;
    let profile = browser_login(&identity, &rig.idp, "alice").await.0.unwrap();
    assert_eq!(profile.subject, "alice");
}

#[tokio::test]
async fn a_groups_claim_the_idp_does_not_send_gives_no_groups_but_a_working_sign_in() {
    let rig = Rig::start_default().await;
    // Not in the ID token, so userinfo is asked, which lacks it too.
    let config = rig.config_with(&rig.idp.issuer(), CLIENT_ID, "groups_claim = \"teams\"");
    let identity = rig
        .identity_with(
            &config,
            Arc::new(MemoryVault::new()),
            Arc::new(snowgate_engine::identity::SystemClock),
        )
        .await;
    let profile = browser_login(&identity, &rig.idp, "carol").await.0.unwrap();
    assert_eq!(profile.subject, "carol");
    assert!(profile.groups.is_empty());
}
