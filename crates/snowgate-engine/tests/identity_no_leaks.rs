//! No token reaches a log line or a file: a whole sign-in, refreshes, a reuse sign-out and a
//! logout run with every crate's tracing (and `log`) output at TRACE captured, and the test
//! looks for every token the broker was given in that output and under the data directory.
//!
//! Runs in a child process (see `identity_support::run_in_child`): it needs the rig's keyring
//! in its environment and a process-wide tracing subscriber of its own.

mod identity_support;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use identity_support::*;
use snowgate_engine::identity::{IdentityEvent, KeyringVault, TokenKind};
use snowgate_rig::idp::IdpOptions;
use snowgate_rig::secret_service::{KeyringState, SecretService};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn no_token_appears_in_trace_logs_or_in_the_data_dir() {
    let ss = SecretService::start(KeyringState::Unlocked).await.unwrap();
    run_in_child("child_no_token_leaks", ss.env()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "runs in a child process started by its parent test, with the rig's keyring"]
async fn child_no_token_leaks() {
    assert!(
        in_child(),
        "runs in a child process started by its parent test"
    );
    let logs = Captured::default();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
        .with_writer(logs.clone())
        .with_ansi(false)
        .try_init()
        .expect("this process has no subscriber yet");

    let rig = Rig::start(IdpOptions {
        access_token_ttl: Duration::from_secs(3),
        ..IdpOptions::default()
    })
    .await;
    let mut tokens: Vec<String> = Vec::new();
    let identity = rig.identity(Arc::new(KeyringVault::new())).await;
    let (profile, page) = browser_login(&identity, &rig.idp, "alice").await;
    let profile = profile.unwrap();
    assert_eq!(page.0, 200);
    let account = profile.vault_key().account();
    tokens.push(secret_tool_lookup(&account).await.unwrap());
    tokens.push(
        identity
            .idp_access_token()
            .await
            .unwrap()
            .token
            .expose_secret()
            .to_string(),
    );
    for role in ["ANALYST", "ENGINEER"] {
        let t = identity.snowflake_token(role).await.unwrap();
        tokens.push(t.token.expose_secret().to_string());
        tokens.push(secret_tool_lookup(&account).await.unwrap());
    }
    // A background refresh of the 3 s IdP token.
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
    tokens.push(
        identity
            .idp_access_token()
            .await
            .unwrap()
            .token
            .expose_secret()
            .to_string(),
    );
    tokens.push(secret_tool_lookup(&account).await.unwrap());
    let files_while_signed_in = files_under(&rig.data_dir());
    let last_refresh = tokens.last().unwrap().clone();
    assert!(identity.logout().await.unwrap().revoked);

    // A second sign-in whose refresh token is reused behind the broker's back.
    let profile = browser_login(&identity, &rig.idp, "bob").await.0.unwrap();
    let account = profile.vault_key().account();
    let old = secret_tool_lookup(&account).await.unwrap();
    tokens.push(old.clone());
    let t = identity.snowflake_token("ANALYST").await.unwrap();
    tokens.push(t.token.expose_secret().to_string());
    tokens.push(secret_tool_lookup(&account).await.unwrap());
    let _ = rig.idp.refresh(&old, None, None).await;
    let err = identity.snowflake_token("ENGINEER").await.unwrap_err();
    let errors = format!("{err} {err:?} {:?}", identity.whoami());
    let err = rig
        .idp
        .refresh(&last_refresh, None, None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("invalid_grant"), "{err}");

    tokens.sort();
    tokens.dedup();
    assert!(tokens.len() >= 8, "collected {} tokens", tokens.len());
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    if let Some(path) = std::env::var_os("SNOWGATE_TEST_LOG_DUMP") {
        std::fs::write(path, &logs).unwrap();
    }
    // The capture really saw TRACE output from the HTTP and TLS stacks and the keyring.
    assert!(logs.contains("TRACE"), "no TRACE lines captured");
    assert!(
        logs.contains("signed in"),
        "the identity module's own logs are missing"
    );
    let mut targets: Vec<&str> = logs
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .map(|t| t.split("::").next().unwrap_or(t).trim_end_matches(':'))
        .collect();
    targets.sort();
    targets.dedup();
    for dependency in ["reqwest", "hyper_util", "zbus", "snowgate_engine"] {
        assert!(
            targets.contains(&dependency),
            "nothing from {dependency} was captured; captured targets: {targets:?}"
        );
    }
    eprintln!(
        "captured {} lines of logs, looking for {} tokens",
        logs.lines().count(),
        tokens.len()
    );
    for (i, token) in tokens.iter().enumerate() {
        assert!(token.len() >= 20, "token {i} is suspiciously short");
        assert!(
            !logs.contains(token.as_str()),
            "token {i} appears in the logs"
        );
        assert!(
            !errors.contains(token.as_str()),
            "token {i} appears in an error"
        );
    }
    // Nothing shaped like a JWT (an ID token or a Snowflake token) appears either.
    let jwt = regex::Regex::new(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")
        .unwrap();
    assert!(jwt.find(&logs).is_none(), "a JWT appears in the logs");

    let mut files = files_while_signed_in;
    files.extend(files_under(&rig.data_dir()));
    assert!(!files.is_empty(), "the profile was never written");
    for (path, bytes) in files {
        let text = String::from_utf8_lossy(&bytes);
        for (i, token) in tokens.iter().enumerate() {
            assert!(
                !text.contains(token.as_str()),
                "token {i} is in {}",
                path.display()
            );
        }
        assert!(jwt.find(&text).is_none(), "a JWT is in {}", path.display());
    }
}
