//! The rig's Snowflake front, driven by real drivers: snowflake-connector-python 5.x and 4.x and
//! the Node.js snowflake-sdk, logging in with External OAuth tokens from the rig's real IdP.

use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use snowgate_rig::clients::{run_node, run_python, spawn_python, ClientRun, PythonDriver};
use snowgate_rig::idp::{Idp, IdpOptions};
use snowgate_rig::snowflake::{FrontSession, Snowflake, SnowflakeOptions};
use snowgate_rig::TestCa;

const ANALYST_SCOPES: &[&str] = &["openid", "offline_access", "session:role:ANALYST"];

struct Rig {
    idp: Idp,
    sf: Snowflake,
    _dir: tempfile::TempDir,
}

async fn rig(idp_opts: IdpOptions, tweak: impl FnOnce(&mut SnowflakeOptions)) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::generate(dir.path()).unwrap();
    let idp = Idp::start(&ca, idp_opts).await.unwrap();
    let mut opts = SnowflakeOptions::trusting(&idp);
    tweak(&mut opts);
    let sf = Snowflake::start(opts).await.unwrap();
    Rig { idp, sf, _dir: dir }
}

impl Rig {
    /// A Snowflake access token for `user` and `role`, the way Snowgate gets one: a login that
    /// asks for the role scope, then a refresh aimed at the Snowflake audience.
    async fn token(&self, user: &str, scopes: &[&str], role: &str) -> String {
        let audience = self.idp.options().snowflake_audience.clone();
        let login = self.idp.login(user, scopes, Some(&audience)).await.unwrap();
        let rt = login.refresh_token.expect("the IdP gave no refresh token");
        let scope = format!("session:role:{role}");
        self.idp
            .refresh(&rt, Some(&scope), Some(&audience))
            .await
            .unwrap()
            .access_token
    }

    async fn only_session(&self) -> FrontSession {
        let sessions = self.sf.sessions().await.unwrap();
        assert_eq!(sessions.len(), 1, "{sessions:#?}");
        sessions.into_iter().next().unwrap()
    }
}

fn ok(result: &Value) {
    assert_eq!(
        result["ok"], true,
        "the client reported a failure: {result:#}"
    );
}

/// The Python connector's errno of a failed run.
fn errno(result: &Value) -> i64 {
    assert_eq!(result["ok"], false, "expected a refusal: {result:#}");
    result["error"]["errno"]
        .as_i64()
        .unwrap_or_else(|| panic!("no errno in {result:#}"))
}

/// Flips one character in the middle of the JWT's signature.
fn tamper(token: &str) -> String {
    let sig_start = token.rfind('.').unwrap() + 1;
    let i = sig_start + (token.len() - sig_start) / 2;
    let c = token.as_bytes()[i];
    let flipped = if c == b'A' { 'B' } else { 'A' };
    format!("{}{}{}", &token[..i], flipped, &token[i + 1..])
}

/// What the clients' big_select checksum is for `n` rows: sha256 over "N:row-N\n".
fn big_select_checksum(n: u64) -> String {
    let mut h = Sha256::new();
    for i in 0..n {
        h.update(format!("{i}:row-{i}\n").as_bytes());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn python5_oauth_login_is_recorded_and_bad_logins_are_refused() {
    let rig = rig(IdpOptions::default(), |_| {}).await;
    let url = rig.sf.url();
    let token = rig.token("alice", ANALYST_SCOPES, "ANALYST").await;

    // A good login, then a query.
    let run = ClientRun::oauth(&url, &token, "smoke").role("ANALYST");
    let result = run_python(PythonDriver::V5, &run).await.unwrap();
    ok(&result);
    assert_eq!(result["rows"], serde_json::json!([[1]]));
    assert!(result["driver_version"].as_str().unwrap().starts_with('5'));
    let s = rig.only_session().await;
    assert_eq!(s.login_name, "alice");
    assert_eq!(s.role, "ANALYST");
    assert_eq!(s.authenticator, "OAUTH");
    assert_eq!(s.token_iss.as_deref(), Some(rig.idp.issuer().as_str()));
    assert_eq!(s.token_scopes, vec!["session:role:ANALYST".to_string()]);
    assert_eq!(s.client_app_id.as_deref(), Some("PythonConnector"));
    assert!(!s.open, "the smoke run closes its session: {s:#?}");
    assert_eq!(result["session_id"].as_u64(), Some(s.session_id));
    assert!(s
        .statements
        .iter()
        .any(|st| st.sql == "select 1" && st.success));

    // Without a role the token's only role is used.
    let result = run_python(PythonDriver::V5, &ClientRun::oauth(&url, &token, "smoke"))
        .await
        .unwrap();
    ok(&result);

    // A tampered signature.
    let run = ClientRun::oauth(&url, &tamper(&token), "smoke").role("ANALYST");
    let result = run_python(PythonDriver::V5, &run).await.unwrap();
    assert_eq!(errno(&result), 390303, "{result:#}");

    // A role the token does not carry.
    let run = ClientRun::oauth(&url, &token, "smoke").role("ENGINEER");
    let result = run_python(PythonDriver::V5, &run).await.unwrap();
    assert_eq!(errno(&result), 390189, "{result:#}");

    // A LOGIN_NAME that is not the token's user.
    let run = ClientRun::oauth(&url, &token, "smoke")
        .role("ANALYST")
        .user("bob");
    let result = run_python(PythonDriver::V5, &run).await.unwrap();
    assert_eq!(errno(&result), 390309, "{result:#}");
    // The same user in another case is fine.
    let run = ClientRun::oauth(&url, &token, "smoke")
        .role("ANALYST")
        .user("ALICE");
    ok(&run_python(PythonDriver::V5, &run).await.unwrap());

    // A password login, which this account does not allow.
    let secret = "correct horse battery staple";
    let run = ClientRun::password(&url, "alice", secret, "smoke");
    let result = run_python(PythonDriver::V5, &run).await.unwrap();
    assert_eq!(errno(&result), 390100, "{result:#}");

    // After a key rotation at the IdP, the front refetches the JWKS for the new kid.
    rig.idp.rotate_keys().await.unwrap();
    let rotated = rig.token("alice", ANALYST_SCOPES, "ANALYST").await;
    let run = ClientRun::oauth(&url, &rotated, "smoke").role("ANALYST");
    ok(&run_python(PythonDriver::V5, &run).await.unwrap());

    // Every attempt is recorded, without the password or any token.
    let attempts = rig.sf.login_attempts().await.unwrap();
    let codes: Vec<Option<&str>> = attempts.iter().map(|a| a.code.as_deref()).collect();
    assert_eq!(
        codes,
        vec![
            None,
            None,
            Some("390303"),
            Some("390189"),
            Some("390309"),
            None,
            Some("390100"),
            None
        ],
        "{attempts:#?}"
    );
    let password_attempt = &attempts[6];
    assert!(password_attempt.password_present);
    assert_eq!(password_attempt.authenticator.as_deref(), Some("SNOWFLAKE"));
    assert!(attempts[..6].iter().all(|a| !a.password_present));
    assert_eq!(attempts[3].requested_role.as_deref(), Some("ENGINEER"));
    assert_eq!(attempts[2].token_user.as_deref(), Some("alice"));
    let dump = format!("{attempts:?}{:?}", rig.sf.sessions().await.unwrap());
    assert!(!dump.contains(secret), "a password was recorded");
    assert!(
        !dump.contains(&token[token.len() - 40..]),
        "a token was recorded"
    );

    // The inspection API needs the admin key.
    let resp = reqwest::get(format!("{url}/__rig/sessions")).await.unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn expired_token_is_refused_with_390318() {
    let idp_opts = IdpOptions {
        access_token_ttl: Duration::from_secs(2),
        ..IdpOptions::default()
    };
    let rig = rig(idp_opts, |_| {}).await;
    let token = rig.token("alice", ANALYST_SCOPES, "ANALYST").await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let run = ClientRun::oauth(&rig.sf.url(), &token, "smoke").role("ANALYST");
    let result = run_python(PythonDriver::V5, &run).await.unwrap();
    assert_eq!(errno(&result), 390318, "{result:#}");
    let attempts = rig.sf.login_attempts().await.unwrap();
    assert_eq!(attempts.len(), 1, "{attempts:#?}");
    assert_eq!(attempts[0].code.as_deref(), Some("390318"));
    assert!(rig.sf.sessions().await.unwrap().is_empty());
}

#[tokio::test]
async fn node_driver_runs_smoke_binds_and_100k_rows() {
    let rig = rig(IdpOptions::default(), |_| {}).await;
    let url = rig.sf.url();
    let token = rig.token("carol", ANALYST_SCOPES, "ANALYST").await;
    let run = |scenario: &str| ClientRun::oauth(&url, &token, scenario).role("ANALYST");

    let result = run_node(&run("smoke")).await.unwrap();
    ok(&result);
    assert_eq!(result["rows"], serde_json::json!([{"ONE": 1}]));
    let s = rig.only_session().await;
    assert_eq!(s.login_name, "carol");
    assert_eq!(s.role, "ANALYST");
    assert_eq!(s.client_app_id.as_deref(), Some("JavaScript"));
    assert!(s.json_results);
    assert!(!s.open, "destroy closes the session: {s:#?}");

    let result = run_node(&run("binds")).await.unwrap();
    ok(&result);
    let r = &result["results"];
    assert_eq!(r["insert_positional"], 1, "{result:#}");
    assert_eq!(r["insert_numbered"], 1, "{result:#}");
    assert_eq!(r["insert_array"], 2, "{result:#}");
    assert_eq!(r["count"], 4, "{result:#}");
    assert_eq!(
        r["select"],
        serde_json::json!([
            {"ID": 2, "NAME": "two", "AMOUNT": 2.25, "D": "2024-02-03T00:00:00.000Z", "TS": "2024-02-03T04:05:06.000Z", "FLAG": false},
            {"ID": 3, "NAME": "three", "AMOUNT": 3.25, "D": "2024-03-04T00:00:00.000Z", "TS": "2024-03-04T05:06:07.000Z", "FLAG": true},
            {"ID": 4, "NAME": "four", "AMOUNT": 4.75, "D": "2024-04-05T00:00:00.000Z", "TS": "2024-04-05T06:07:08.000Z", "FLAG": false}
        ]),
        "{result:#}"
    );

    let result = run_node(&run("big_select")).await.unwrap();
    ok(&result);
    assert_eq!(result["row_count"], 100_000, "{result:#}");
    assert_eq!(result["sum"], 4_999_950_000u64, "{result:#}");
    assert_eq!(
        result["checksum"].as_str().unwrap(),
        big_select_checksum(100_000)
    );
}

#[tokio::test]
async fn python5_renews_an_expired_session_token() {
    let rig = rig(IdpOptions::default(), |o| o.session_validity = 5).await;
    let token = rig.token("alice", ANALYST_SCOPES, "ANALYST").await;
    let run = ClientRun::oauth(&rig.sf.url(), &token, "renew")
        .role("ANALYST")
        .arg(["--sleep", "6"]);
    let result = run_python(PythonDriver::V5, &run).await.unwrap();
    ok(&result);
    assert_eq!(result["query_after_sleep"], true, "{result:#}");
    assert_eq!(result["after"], serde_json::json!([[2]]));
    let s = rig.only_session().await;
    assert!(s.renewals >= 1, "{s:#?}");
    assert_eq!(s.statements.len(), 2, "{s:#?}");
}

#[tokio::test]
async fn python5_heartbeats_keep_an_idle_session_alive() {
    let rig = rig(IdpOptions::default(), |o| {
        o.session_validity = 2;
        o.master_validity = 4;
    })
    .await;
    let token = rig.token("alice", ANALYST_SCOPES, "ANALYST").await;
    let run = ClientRun::oauth(&rig.sf.url(), &token, "heartbeat")
        .role("ANALYST")
        .arg(["--sleep", "6", "--heartbeat-frequency", "1"]);
    let result = run_python(PythonDriver::V5, &run).await.unwrap();
    ok(&result);
    assert_eq!(result["query_after_sleep"], true, "{result:#}");
    let s = rig.only_session().await;
    assert!(s.heartbeats >= 2, "{s:#?}");
}

#[tokio::test]
async fn python5_async_ddl_big_select_and_query_tag() {
    let rig = rig(IdpOptions::default(), |_| {}).await;
    let url = rig.sf.url();
    let token = rig.token("alice", ANALYST_SCOPES, "ANALYST").await;
    let run = |scenario: &str| ClientRun::oauth(&url, &token, scenario).role("ANALYST");

    let result = run_python(PythonDriver::V5, &run("async")).await.unwrap();
    ok(&result);
    assert_eq!(result["rows"], serde_json::json!([[42, "async"]]));

    // A table made in one session is there in the next, as in one Snowflake account.
    let result = run_python(
        PythonDriver::V5,
        &run("ddl_dml").arg(["--table", "kept", "--keep-table"]),
    )
    .await
    .unwrap();
    ok(&result);
    assert_eq!(
        result["steps"]["select"],
        serde_json::json!([[1, "one", "1.50"], [2, "TWO", "2.25"], [3, "three", "3.00"]])
    );
    let result = run_python(
        PythonDriver::V5,
        &run("query")
            .arg(["--sql", "alter session set query_tag = 'changed-by-tool'"])
            .arg(["--query-tag", "grant-123"]),
    )
    .await
    .unwrap();
    ok(&result);
    let result = run_python(
        PythonDriver::V5,
        &run("query").arg(["--sql", "select count(*) from kept"]),
    )
    .await
    .unwrap();
    ok(&result);
    assert_eq!(result["rows"], serde_json::json!([[3]]));

    let result = run_python(PythonDriver::V5, &run("big_select"))
        .await
        .unwrap();
    ok(&result);
    assert_eq!(result["row_count"], 100_000, "{result:#}");
    assert_eq!(
        result["checksum"].as_str().unwrap(),
        big_select_checksum(100_000)
    );

    let sessions = rig.sf.sessions().await.unwrap();
    let tagged = sessions
        .iter()
        .find(|s| s.login_query_tag.is_some())
        .expect("a session with a login QUERY_TAG");
    assert_eq!(tagged.login_query_tag.as_deref(), Some("grant-123"));
    assert_eq!(tagged.query_tag.as_deref(), Some("changed-by-tool"));
    let async_session = sessions
        .iter()
        .find(|s| s.statements.iter().any(|st| st.is_async))
        .expect("a session with an async statement");
    assert!(!async_session.open);
}

#[tokio::test]
async fn python4_smoke_and_async() {
    let rig = rig(IdpOptions::default(), |_| {}).await;
    let url = rig.sf.url();
    let token = rig
        .token(
            "bob",
            &["openid", "offline_access", "session:role:READONLY"],
            "READONLY",
        )
        .await;
    let run = |scenario: &str| ClientRun::oauth(&url, &token, scenario).role("READONLY");
    let result = run_python(PythonDriver::V4, &run("smoke")).await.unwrap();
    ok(&result);
    assert!(result["driver_version"].as_str().unwrap().starts_with('4'));
    let s = rig.only_session().await;
    assert_eq!(s.login_name, "bob");
    assert_eq!(s.role, "READONLY");
    assert!(!s.open, "connector 4.x closes its session: {s:#?}");

    let result = run_python(PythonDriver::V4, &run("async")).await.unwrap();
    ok(&result);
    assert_eq!(result["rows"], serde_json::json!([[42, "async"]]));
}

#[tokio::test]
async fn held_connection_sees_its_session_closed_by_snowflake() {
    // No IdP here: a password login to a front that allows them.
    let sf = Snowflake::start(SnowflakeOptions {
        allow_password: true,
        ..SnowflakeOptions::default()
    })
    .await
    .unwrap();
    let run = ClientRun::password(&sf.url(), "alice", "pw", "hold")
        .arg(["--interval", "0.2", "--duration", "30"])
        .timeout(Duration::from_secs(40));
    let mut client = spawn_python(PythonDriver::V5, &run).await.unwrap();
    let wait = Duration::from_secs(15);
    let connected = client.next_line(wait).await.unwrap().unwrap();
    assert_eq!(connected["event"], "connected", "{connected:#}");
    let session_id = connected["session_id"].as_u64().unwrap();
    let first = client.next_line(wait).await.unwrap().unwrap();
    assert_eq!(first["ok"], true, "{first:#}");

    let s = sf.close_session(session_id).await.unwrap();
    assert!(!s.open);
    assert_eq!(s.authenticator, "SNOWFLAKE");
    let refused = loop {
        let line = client.next_line(wait).await.unwrap().unwrap();
        if line["ok"] == false {
            break line;
        }
    };
    assert_eq!(refused["error"]["errno"], 390111, "{refused:#}");
}

fn openssl(args: &[&str], path: &std::path::Path, out: Option<&std::path::Path>) {
    let mut cmd = std::process::Command::new("openssl");
    cmd.args(args).arg(path);
    if let Some(out) = out {
        cmd.arg("-out").arg(out);
    }
    let r = cmd.output().expect("running openssl");
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
}

/// A run as `user` with key-pair authentication (the connector signs its own JWT).
fn key_pair_run(url: &str, user: &str, key: &std::path::Path, sql: &str) -> ClientRun {
    ClientRun {
        user: Some(user.to_string()),
        token: None,
        password: None,
        ..ClientRun::oauth(url, "unused", "query")
    }
    .arg([
        "--private-key-file",
        &key.display().to_string(),
        "--sql",
        sql,
    ])
}

#[tokio::test]
async fn the_connectors_key_pair_login_and_the_session_functions_work_as_documented() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("svc.pem");
    let public = dir.path().join("svc.pub.pem");
    let other = dir.path().join("other.pem");
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ],
        &key,
        None,
    );
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ],
        &other,
        None,
    );
    openssl(&["pkey", "-pubout", "-in"], &key, Some(&public));
    let sf = Snowflake::start(SnowflakeOptions {
        allow_password: true,
        key_pair_users: vec![("SVC".into(), public)],
        session_admins: vec!["SVC".into()],
        ..SnowflakeOptions::default()
    })
    .await
    .unwrap();

    // alice runs a query that waits, in a session of her own.
    let run = ClientRun::password(&sf.url(), "alice", "pw", "hold")
        .arg([
            "--interval",
            "0.2",
            "--duration",
            "30",
            "--sql",
            "select system$wait(20)",
        ])
        .arg(["--query-tag", "etl"])
        .timeout(Duration::from_secs(40));
    let mut alice = spawn_python(PythonDriver::V5, &run).await.unwrap();
    let wait = Duration::from_secs(15);
    let connected = alice.next_line(wait).await.unwrap().unwrap();
    let session = connected["session_id"].as_u64().unwrap();
    for _ in 0..50 {
        if !sf.session(session).await.unwrap().running.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The service user logs in with its key (connector 4.x and 5.x) and sees her running query.
    let history = "select session_id, role_name, query_tag, execution_status from table(information_schema.query_history_by_user(user_name => 'ALICE', result_limit => 10))";
    for driver in [PythonDriver::V5, PythonDriver::V4] {
        let r = run_python(driver, &key_pair_run(&sf.url(), "svc", &key, history))
            .await
            .unwrap();
        ok(&r);
        let rows = r["rows"].as_array().unwrap();
        assert!(
            rows.iter().any(|row| row[0].as_u64() == Some(session)
                && row[2] == "etl"
                && row[3] == "RUNNING"),
            "{driver:?}: {r:#}"
        );
    }
    // A key Snowflake does not know is refused (390144), and so is an unregistered user.
    let r = run_python(
        PythonDriver::V5,
        &key_pair_run(&sf.url(), "svc", &other, "select 1"),
    )
    .await
    .unwrap();
    assert_eq!(errno(&r), 390144);
    let r = run_python(
        PythonDriver::V5,
        &key_pair_run(&sf.url(), "mallory", &key, "select 1"),
    )
    .await
    .unwrap();
    assert_eq!(errno(&r), 390144);
    // Another user may not see alice's history, nor end her session (003001).
    let bob = |sql: &str| {
        ClientRun::password(&sf.url(), "bob", "pw", "query")
            .arg(["--sql".to_string(), sql.to_string()])
    };
    let r = run_python(PythonDriver::V5, &bob(history)).await.unwrap();
    assert_eq!(errno(&r), 3001);
    let r = run_python(
        PythonDriver::V5,
        &bob(&format!("select system$abort_session({session})")),
    )
    .await
    .unwrap();
    assert_eq!(errno(&r), 3001);

    // The service user ends her session: Snowflake's answer, her query canceled, the session gone.
    let r = run_python(
        PythonDriver::V5,
        &key_pair_run(
            &sf.url(),
            "svc",
            &key,
            &format!("select system$abort_session({session})"),
        ),
    )
    .await
    .unwrap();
    ok(&r);
    assert_eq!(
        r["rows"],
        serde_json::json!([[format!("session [{session}] terminated.")]])
    );
    let canceled = alice.next_line(wait).await.unwrap().unwrap();
    assert_eq!(canceled["error"]["errno"], 604, "{canceled:#}");
    let next = alice.next_line(wait).await.unwrap().unwrap();
    assert_eq!(next["error"]["errno"], 390111, "{next:#}");
    let s = sf.session(session).await.unwrap();
    assert!(!s.open);
    assert_eq!(
        s.close_reason.as_deref(),
        Some("aborted by SYSTEM$ABORT_SESSION")
    );
    // Her login shows in her login history, as a password login.
    let logins = "select user_name, first_authentication_factor, is_success from table(information_schema.login_history_by_user(user_name => 'alice'))";
    let r = run_python(
        PythonDriver::V5,
        &key_pair_run(&sf.url(), "svc", &key, logins),
    )
    .await
    .unwrap();
    ok(&r);
    assert_eq!(r["rows"], serde_json::json!([["ALICE", "PASSWORD", "YES"]]));
}
