//! Sign-in against every solo-capable provider profile of the rig's IdP (oidc-provider as it
//! ships, under the rules of strict OpenID, Entra ID, Okta, Auth0 and Keycloak), with the
//! matching `[identity] provider` preset: the browser and device sign-ins, Snowflake tokens for
//! two roles, background refresh under the profile's rotation rules, and logout. Then the
//! prompt=consent retry, and a wrong preset against each provider, which must stop with an
//! error that names what the provider did.
//!
//! One IdP per test; the tests run in parallel.

mod identity_support;

use std::sync::Arc;
use std::time::Duration;

use identity_support::*;
use snowgate_engine::identity::{
    Identity, IdentityError, IdentityEvent, IdentityOptions, MemoryVault, SignOutReason,
    SystemClock, TokenKind, Vault,
};
use snowgate_engine::Config;
use snowgate_rig::idp::{jwt_payload, IdpOptions, IdpProfile, CLIENT_ID};

/// An identity over its own data directory (a second user next to [`Rig::identity`]).
async fn second_identity(
    rig: &Rig,
    config: &Config,
    vault: Arc<dyn Vault>,
) -> (Identity, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let identity = Identity::with_options(
        config,
        dir.path(),
        vault,
        Arc::new(SystemClock),
        IdentityOptions {
            login_timeout: Duration::from_secs(30),
        },
    )
    .await
    .unwrap();
    let _ = rig;
    (identity, dir)
}

fn query(url: &url::Url) -> std::collections::HashMap<String, String> {
    url.query_pairs().into_owned().collect()
}

/// The whole walk for one profile.
async fn walk(profile: IdpProfile) {
    let rig = Rig::start(IdpOptions {
        access_token_ttl: Duration::from_secs(4),
        ..IdpOptions::profile(profile)
    })
    .await;
    let config = rig.config();
    let vault = Arc::new(MemoryVault::new());
    let identity = rig
        .identity_with(&config, vault.clone(), Arc::new(SystemClock))
        .await;

    // The browser sign-in asks for Snowflake the provider's way, without prompt=consent.
    let pending = identity.begin_browser_login().await.unwrap();
    let url = pending.authorize_url().clone();
    let q = query(&url);
    assert!(!q.contains_key("prompt"), "{url}");
    let scopes: Vec<&str> = q["scope"].split(' ').collect();
    match profile {
        IdpProfile::Strict => assert_eq!(q.get("resource").map(String::as_str), Some(AUDIENCE)),
        IdpProfile::Auth0 => {
            assert_eq!(q.get("audience").map(String::as_str), Some(AUDIENCE));
            assert!(!q.contains_key("resource"), "{url}");
        }
        _ => assert!(
            !q.contains_key("resource") && !q.contains_key("audience"),
            "{url}"
        ),
    }
    let analyst_scope = if profile == IdpProfile::Entra {
        format!("{AUDIENCE}/session:role:ANALYST")
    } else {
        "session:role:ANALYST".to_string()
    };
    assert!(scopes.contains(&analyst_scope.as_str()), "{scopes:?}");
    assert!(scopes.contains(&"offline_access"), "{scopes:?}");

    let (signed_in, followed) = tokio::join!(
        pending.wait(),
        rig.idp.follow_sign_in(url.as_str(), "alice")
    );
    let followed = followed.unwrap();
    let alice = signed_in.unwrap_or_else(|e| panic!("{profile}: {e}"));
    assert_eq!(followed.status, 200, "{}", followed.body);
    // Only the strict provider needs the consent round for a refresh token.
    let rounds = if profile == IdpProfile::Strict { 2 } else { 1 };
    assert_eq!(followed.requests.len(), rounds, "{:?}", followed.requests);
    assert_eq!(alice.subject, rig.idp.subject_of("alice"));
    assert_eq!(alice.groups, [rig.idp.group_name("analysts")]);
    assert_eq!(alice.email.as_deref(), Some("alice@example.test"));

    // Snowflake tokens for two roles: JWTs for the Snowflake audience with one role each, in
    // the claim the provider uses.
    let facts = rig.idp.profile_facts().clone();
    for role in ["ANALYST", "ENGINEER"] {
        let token = identity.snowflake_token(role).await.unwrap();
        let jwt = token.token.expose_secret();
        assert_eq!(scp(jwt), format!("session:role:{role}"), "{profile}");
        let claims = jwt_payload(jwt).unwrap();
        let aud = &claims["aud"];
        let audience = rig.idp.token_audience();
        assert!(
            aud == &serde_json::json!(audience)
                || aud
                    .as_array()
                    .is_some_and(|a| a.contains(&serde_json::json!(audience))),
            "{profile}: aud {aud} is not {audience}"
        );
        assert!(
            claims.get(facts.scope_claim.as_deref().unwrap()).is_some(),
            "{profile}: {claims}"
        );
        assert!(
            claims.get(&facts.user_claim).is_some(),
            "{profile}: {claims}"
        );
    }

    // Background refresh before the 4 s access token expires; the refresh token rotates.
    let key = alice.vault_key();
    let before = vault.load(&key).unwrap().unwrap();
    let mut events = identity.subscribe();
    next_event(&mut events, Duration::from_secs(20), |e| {
        matches!(
            e,
            IdentityEvent::TokensRefreshed {
                token: TokenKind::Idp,
                ..
            }
        )
    })
    .await;
    let after = vault.load(&key).unwrap().unwrap();
    assert_ne!(before, after, "{profile}: the refresh token did not rotate");

    // The used refresh token, presented again: the provider's rule decides.
    let reuse = rig.idp.refresh(before.expose_secret(), None, None).await;
    match profile {
        IdpProfile::Strict | IdpProfile::Auth0 => {
            let err = reuse.unwrap_err().to_string();
            assert!(err.contains("invalid_grant"), "{profile}: {err}");
            // Reuse revoked the whole grant: Snowgate signs out at its next refresh.
            let event = next_event(&mut events, Duration::from_secs(20), |e| {
                matches!(e, IdentityEvent::SignedOut { .. })
            })
            .await;
            assert!(
                matches!(
                    event,
                    IdentityEvent::SignedOut {
                        reason: SignOutReason::Revoked,
                        ..
                    }
                ),
                "{event:?}"
            );
        }
        IdpProfile::Okta | IdpProfile::Entra | IdpProfile::Keycloak => {
            // Okta: within the grace period; Entra ID and Keycloak: used tokens stay valid.
            reuse.unwrap_or_else(|e| panic!("{profile}: {e:#}"));
            next_event(&mut events, Duration::from_secs(20), |e| {
                matches!(
                    e,
                    IdentityEvent::TokensRefreshed {
                        token: TokenKind::Idp,
                        ..
                    }
                )
            })
            .await;
            identity.snowflake_token("ANALYST").await.unwrap();
        }
        IdpProfile::Google => unreachable!("not a solo profile"),
    }

    // The device sign-in, as carol, next to alice; then her logout revokes at the IdP.
    let carol_vault = Arc::new(MemoryVault::new());
    let (carol_identity, _dir) = second_identity(&rig, &config, carol_vault.clone()).await;
    let carol = device_login(&carol_identity, &rig.idp, "carol").await;
    assert_eq!(carol.subject, rig.idp.subject_of("carol"));
    let mut groups = carol.groups.clone();
    groups.sort();
    let mut want = vec![
        rig.idp.group_name("analysts"),
        rig.idp.group_name("managers"),
    ];
    want.sort();
    assert_eq!(groups, want);
    let t = carol_identity.snowflake_token("ENGINEER").await.unwrap();
    assert_eq!(scp(t.token.expose_secret()), "session:role:ENGINEER");
    let carol_rt = carol_vault.load(&carol.vault_key()).unwrap().unwrap();
    let report = carol_identity.logout().await.unwrap();
    assert!(report.revoked, "{profile}: {report:?}");
    assert!(carol_vault.load(&carol.vault_key()).unwrap().is_none());
    let err = rig
        .idp
        .refresh(carol_rt.expose_secret(), None, None)
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("invalid_grant"), "{profile}: {err}");
}

#[tokio::test]
async fn strict_openid_sign_in_refresh_roles_and_logout() {
    walk(IdpProfile::Strict).await;
}

#[tokio::test]
async fn entra_sign_in_refresh_roles_and_logout() {
    walk(IdpProfile::Entra).await;
}

#[tokio::test]
async fn okta_sign_in_refresh_roles_and_logout() {
    walk(IdpProfile::Okta).await;
}

#[tokio::test]
async fn auth0_sign_in_refresh_roles_and_logout() {
    walk(IdpProfile::Auth0).await;
}

#[tokio::test]
async fn keycloak_sign_in_refresh_roles_and_logout() {
    walk(IdpProfile::Keycloak).await;
}

/// A browser sign-in with `config`, as `user`; returns the outcome and what the browser saw.
async fn sign_in_with(
    rig: &Rig,
    config: &Config,
    user: &str,
) -> (
    Result<snowgate_engine::identity::Profile, IdentityError>,
    snowgate_rig::idp::FollowedSignIn,
) {
    let identity = rig
        .identity_with(config, Arc::new(MemoryVault::new()), Arc::new(SystemClock))
        .await;
    let pending = identity.begin_browser_login().await.unwrap();
    let url = pending.authorize_url().to_string();
    let (outcome, followed) = tokio::join!(pending.wait(), rig.idp.follow_sign_in(&url, user));
    (outcome, followed.unwrap())
}

#[tokio::test]
async fn a_strict_provider_gets_one_more_round_with_prompt_consent_and_then_a_refresh_token() {
    let rig = Rig::start_default().await;
    let (outcome, followed) = sign_in_with(&rig, &rig.config(), "bob").await;
    let profile = outcome.unwrap();
    assert_eq!(profile.subject, "bob");
    assert_eq!(followed.requests.len(), 2, "{:?}", followed.requests);
    let first = query(&followed.requests[0]);
    let second = query(&followed.requests[1]);
    assert!(!first.contains_key("prompt"), "{first:?}");
    assert_eq!(second.get("prompt").map(String::as_str), Some("consent"));
    assert_ne!(first["state"], second["state"]);
    assert!(
        followed.body.contains("Signed in to Snowgate"),
        "{}",
        followed.body
    );

    // Without the retry the same provider gives no refresh token, and the error says what
    // Snowgate asked for and what to change at the provider.
    let config = rig.config_with(&rig.idp.issuer(), CLIENT_ID, "consent_prompt = \"never\"");
    let (outcome, followed) = sign_in_with(&rig, &config, "bob").await;
    let err = outcome.unwrap_err();
    assert!(matches!(err, IdentityError::NoRefreshToken { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains("asked for one with the offline_access scope"),
        "{text}"
    );
    assert!(!text.contains("add `offline_access`"), "{text}");
    assert!(text.contains("refresh_token grant"), "{text}");
    assert_eq!(followed.requests.len(), 1);
    assert_eq!(followed.status, 400);
    assert!(
        followed.body.contains("no refresh token"),
        "{}",
        followed.body
    );
}

#[tokio::test]
async fn when_even_the_consent_round_brings_no_refresh_token_the_error_names_the_provider_setting()
{
    // Auth0 with "Allow Offline Access" off on the Snowflake API.
    let rig = Rig::start(IdpOptions {
        auth0_allow_offline_access: false,
        ..IdpOptions::profile(IdpProfile::Auth0)
    })
    .await;
    // The auth0 preset does not retry: the error names Auth0's setting at once.
    let (outcome, followed) = sign_in_with(&rig, &rig.config(), "alice").await;
    let text = outcome.unwrap_err().to_string();
    assert!(text.contains("Allow Offline Access"), "{text}");
    assert_eq!(followed.requests.len(), 1);

    // With a retry configured, the consent round happens, and the error says so.
    let config = rig.config_with(&rig.idp.issuer(), CLIENT_ID, "consent_prompt = \"retry\"");
    let (outcome, followed) = sign_in_with(&rig, &config, "alice").await;
    let text = outcome.unwrap_err().to_string();
    assert!(
        text.contains("and again with the provider's consent page"),
        "{text}"
    );
    assert!(text.contains("Allow Offline Access"), "{text}");
    assert_eq!(followed.requests.len(), 2);
}

/// The generic preset against a provider, for the wrong-preset checks.
fn generic(rig: &Rig, extra: &str) -> Config {
    rig.config_with(
        &rig.idp.issuer(),
        CLIENT_ID,
        &format!("provider = \"generic\"\nconsent_prompt = \"never\"\n{extra}"),
    )
}

#[tokio::test]
async fn the_generic_preset_against_entra_is_refused_with_what_entra_said_and_what_to_set() {
    let rig = Rig::start(IdpOptions::profile(IdpProfile::Entra)).await;
    let config = rig.config_with(
        &rig.idp.issuer(),
        CLIENT_ID,
        "provider = \"generic\"\ngroups_form = \"object_ids\"",
    );
    let (outcome, _) = sign_in_with(&rig, &config, "alice").await;
    let text = outcome.unwrap_err().to_string();
    assert!(text.contains("AADSTS901002"), "{text}");
    assert!(text.contains("does not take RFC 8707 `resource`"), "{text}");
    assert!(text.contains("identity.provider"), "{text}");
}

#[tokio::test]
async fn the_generic_preset_against_auth0_finds_the_audience_ignored() {
    let rig = Rig::start(IdpOptions::profile(IdpProfile::Auth0)).await;
    let config = generic(&rig, "groups_claim = \"https://example.com/groups\"");
    let (outcome, _) = sign_in_with(&rig, &config, "alice").await;
    let err = outcome.unwrap_err();
    assert!(matches!(err, IdentityError::ProviderMismatch(_)), "{err}");
    let text = err.to_string();
    assert!(text.contains("Snowflake token for role ANALYST"), "{text}");
    assert!(text.contains("`resource`"), "{text}");
    assert!(text.contains("\"auth0\""), "{text}");
}

#[tokio::test]
async fn the_generic_preset_against_keycloak_finds_groups_as_paths() {
    let rig = Rig::start(IdpOptions::profile(IdpProfile::Keycloak)).await;
    // Approvers written as names, as the config says: it loads; the provider disagrees.
    let config = config_text(
        &rig.idp.issuer(),
        CLIENT_ID,
        rig.idp.ca_file(),
        "provider = \"keycloak\"\ngroups_form = \"names\"",
    );
    let text = config.to_redacted_toml();
    assert!(text.contains("groups_form = \"names\""), "{text}");
    let (outcome, _) = sign_in_with(&rig, &config, "alice").await;
    let text = outcome.unwrap_err().to_string();
    assert!(text.contains("sent groups as paths"), "{text}");
    assert!(text.contains("\"/analysts\""), "{text}");
    assert!(text.contains("identity.groups_form = \"paths\""), "{text}");
}

#[tokio::test]
async fn an_entra_groups_overage_stops_the_sign_in_with_advice_and_revokes_it() {
    let rig = Rig::start(IdpOptions::profile(IdpProfile::Entra)).await;
    let (outcome, followed) = sign_in_with(&rig, &rig.config(), "dana").await;
    let err = outcome.unwrap_err();
    assert!(matches!(err, IdentityError::ProviderMismatch(_)), "{err}");
    let text = err.to_string();
    assert!(text.contains("overage"), "{text}");
    assert!(text.contains("does not call Microsoft Graph"), "{text}");
    assert!(
        text.contains("Groups assigned to the application"),
        "{text}"
    );
    assert!(text.contains("app roles"), "{text}");
    assert_eq!(followed.status, 400);
}

#[tokio::test]
async fn the_okta_preset_against_a_strict_provider_finds_no_role_scopes() {
    let rig = Rig::start_default().await;
    let config = rig.config_with(
        &rig.idp.issuer(),
        CLIENT_ID,
        "provider = \"okta\"\nconsent_prompt = \"retry\"",
    );
    let (outcome, _) = sign_in_with(&rig, &config, "alice").await;
    let text = outcome.unwrap_err().to_string();
    assert!(text.contains("role ANALYST"), "{text}");
    assert!(text.contains("audience_parameter"), "{text}");
}
