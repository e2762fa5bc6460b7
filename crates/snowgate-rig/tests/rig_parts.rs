//! The rig's own parts that no other test file covers: PostgreSQL and the Secret Service.

use snowgate_rig::postgres::Postgres;
use snowgate_rig::secret_service::{KeyringState, SecretService};
use tokio::process::Command;

#[tokio::test]
async fn postgres_starts_answers_and_survives_a_restart() {
    let mut pg = Postgres::start().await.unwrap();
    let psql = |sql: &'static str, url: String| async move {
        let out = Command::new("psql")
            .args([&url, "-tAc", sql])
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    psql(
        "create table t (x int); insert into t values (42)",
        pg.url(),
    )
    .await;
    pg.restart().await.unwrap();
    assert_eq!(psql("select x from t", pg.url()).await, "42");
}

#[tokio::test]
async fn secret_service_stores_and_finds_a_secret() {
    let ss = SecretService::start(KeyringState::Unlocked).await.unwrap();
    let mut store = Command::new("secret-tool")
        .args([
            "store",
            "--label=rig",
            "service",
            "rig-test",
            "user",
            "alice",
        ])
        .envs(ss.env())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use tokio::io::AsyncWriteExt;
    store
        .stdin
        .take()
        .unwrap()
        .write_all(b"value-1")
        .await
        .unwrap();
    assert!(store.wait().await.unwrap().success());
    assert_eq!(
        ss.lookup(&[("service", "rig-test"), ("user", "alice")])
            .await
            .unwrap()
            .as_deref(),
        Some("value-1")
    );
    assert_eq!(
        ss.lookup(&[("service", "rig-test"), ("user", "bob")])
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn a_locked_keyring_refuses_to_store() {
    let ss = SecretService::start(KeyringState::Locked).await.unwrap();
    let out = Command::new("secret-tool")
        .args(["store", "--label=rig", "service", "rig-test"])
        .envs(ss.env())
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
}
