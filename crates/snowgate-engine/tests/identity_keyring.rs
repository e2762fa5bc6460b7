//! The refresh token in a real Secret Service (gnome-keyring on the rig's private D-Bus).
//!
//! Each test starts the keyring, then runs its `child_*` twin in a new process whose
//! environment points at it (see `identity_support::run_in_child` for why). The children are
//! `#[ignore]`d so they run only that way.

mod identity_support;

use std::sync::Arc;
use std::time::Duration;

use identity_support::*;
use snowgate_engine::identity::profile::{Profile, ProfileStore};
use snowgate_engine::identity::{
    IdentityError, IdentityEvent, IdentityStatus, KeyringVault, MemoryVault, TokenKind, VaultError,
    VaultKind,
};
use snowgate_rig::idp::{IdpOptions, CLIENT_ID};
use snowgate_rig::secret_service::{KeyringState, SecretService};

const CHILD: &str = "runs in a child process started by its parent test, with the rig's keyring";

#[tokio::test]
async fn the_keyring_follows_rotation_and_a_restarted_broker_restores_the_session() {
    let ss = SecretService::start(KeyringState::Unlocked).await.unwrap();
    run_in_child("child_keyring_follows_rotation_and_restart", ss.env()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs in a child process started by its parent test, with the rig's keyring"]
async fn child_keyring_follows_rotation_and_restart() {
    assert!(in_child(), "{CHILD}");
    let rig = Rig::start(IdpOptions {
        access_token_ttl: Duration::from_secs(5),
        ..IdpOptions::default()
    })
    .await;
    let identity = rig.identity(Arc::new(KeyringVault::new())).await;
    assert_eq!(identity.vault_kind(), VaultKind::OsKeyring);
    let profile = browser_login(&identity, &rig.idp, "alice").await.0.unwrap();
    let account = profile.vault_key().account();
    assert_eq!(account, format!("{}|{CLIENT_ID}|alice", rig.idp.issuer()));
    let rt0 = secret_tool_lookup(&account)
        .await
        .expect("the refresh token is in the keyring");
    let at0 = identity.idp_access_token().await.unwrap();

    // The 5 s access token is refreshed in the background; the refresh token rotates and the
    // keyring holds the new one.
    let mut events = identity.subscribe();
    next_event(&mut events, Duration::from_secs(8), |e| {
        matches!(
            e,
            IdentityEvent::TokensRefreshed {
                token: TokenKind::Idp,
                ..
            }
        )
    })
    .await;
    let at1 = identity.idp_access_token().await.unwrap();
    assert_ne!(at1.token, at0.token);
    let rt1 = secret_tool_lookup(&account).await.unwrap();
    assert_ne!(rt1, rt0, "the keyring still holds the old refresh token");
    assert_eq!(rig.idp.introspect(&rt1).await.unwrap()["active"], true);
    assert_eq!(rig.idp.introspect(&rt0).await.unwrap()["active"], false);

    // A new broker over the same data dir and keyring is signed in at once.
    drop(identity);
    let restarted = rig.identity(Arc::new(KeyringVault::new())).await;
    assert_eq!(
        restarted.status(),
        IdentityStatus::SignedIn {
            subject: "alice".into()
        }
    );
    assert_eq!(restarted.whoami().unwrap().groups, ["analysts"]);
    let t = restarted.snowflake_token("ENGINEER").await.unwrap();
    assert_eq!(scp(t.token.expose_secret()), "session:role:ENGINEER");
    let rt2 = secret_tool_lookup(&account).await.unwrap();
    assert_ne!(rt2, rt1);

    // Logout removes the entry, and the IdP refuses the last refresh token.
    assert!(restarted.logout().await.unwrap().revoked);
    assert_eq!(secret_tool_lookup(&account).await, None);
    let err = rig.idp.refresh(&rt2, None, None).await.unwrap_err();
    assert!(err.to_string().contains("invalid_grant"), "{err}");
}

#[tokio::test]
async fn a_locked_keyring_says_so_plainly_and_session_only_mode_works() {
    let ss = SecretService::start(KeyringState::Locked).await.unwrap();
    run_in_child("child_locked_keyring", ss.env()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs in a child process started by its parent test, with the rig's keyring"]
async fn child_locked_keyring() {
    assert!(in_child(), "{CHILD}");
    let rig = Rig::start_default().await;
    let identity = rig.identity(Arc::new(KeyringVault::new())).await;
    let started = std::time::Instant::now();
    let err = browser_login(&identity, &rig.idp, "alice")
        .await
        .0
        .unwrap_err();
    eprintln!("locked keyring: {err} (after {:?})", started.elapsed());
    assert!(
        matches!(err, IdentityError::Vault(VaultError::Unavailable { .. })),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.starts_with("Snowgate can't reach the OS keyring"),
        "{text}"
    );
    assert!(text.contains("--session-only"), "{text}");
    assert_eq!(identity.status(), IdentityStatus::SignedOut);

    // A saved sign-in cannot be restored either, and the broker says why.
    ProfileStore::new(&rig.data_dir())
        .save(&Profile {
            subject: "alice".into(),
            email: None,
            name: None,
            groups: vec![],
            issuer: rig.idp.issuer(),
            client_id: CLIENT_ID.into(),
            last_sign_in: chrono::Utc::now(),
            claims: Default::default(),
        })
        .unwrap();
    let err = snowgate_engine::identity::Identity::new(
        &rig.config(),
        &rig.data_dir(),
        Arc::new(KeyringVault::new()),
        Arc::new(snowgate_engine::identity::SystemClock),
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("--session-only"), "{err}");

    // Session-only mode works without the keyring.
    let session_only = rig.identity(Arc::new(MemoryVault::new())).await;
    let profile = browser_login(&session_only, &rig.idp, "alice")
        .await
        .0
        .unwrap();
    assert_eq!(profile.subject, "alice");
    assert_eq!(session_only.whoami().unwrap().vault, VaultKind::SessionOnly);
    session_only.snowflake_token("ANALYST").await.unwrap();
}

#[tokio::test]
async fn no_keyring_on_the_machine_says_so_plainly() {
    let dir = tempfile::tempdir().unwrap();
    let p = |s: &str| dir.path().join(s).display().to_string();
    run_in_child(
        "child_missing_keyring",
        vec![
            (
                "DBUS_SESSION_BUS_ADDRESS".into(),
                format!("unix:path={}", p("no-such-bus")),
            ),
            ("HOME".into(), p("")),
            ("XDG_RUNTIME_DIR".into(), p("")),
        ],
    )
    .await;
}

#[test]
#[ignore = "runs in a child process started by its parent test, with no D-Bus session"]
fn child_missing_keyring() {
    use snowgate_engine::identity::{RefreshToken, Vault, VaultKey};
    assert!(in_child(), "{CHILD}");
    let key = VaultKey {
        issuer: "https://idp.example.com".into(),
        client_id: CLIENT_ID.into(),
        subject: "alice".into(),
    };
    let vault = KeyringVault::new();
    let store = vault
        .store(&key, &RefreshToken::new("rt-value-that-must-not-show"))
        .unwrap_err();
    let load = vault.load(&key).unwrap_err();
    for err in [store, load] {
        eprintln!("no keyring: {err}");
        assert!(matches!(err, VaultError::Unavailable { .. }), "{err:?}");
        let text = err.to_string();
        assert!(
            text.starts_with("Snowgate can't reach the OS keyring (the Secret Service on D-Bus)"),
            "{text}"
        );
        assert!(text.contains("--session-only"), "{text}");
        assert!(!text.contains("rt-value"), "{text}");
    }
}
