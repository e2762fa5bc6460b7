//! The session reaper with real parts: the team server on the rig's PostgreSQL, the rig's
//! Snowflake front trusting the server's JWKS and knowing the reaper's service user by its
//! public key, and sessions opened by the real Python connector directly with a minted token,
//! as `snowgate token` hands it out (no gateway in between). The reaper learns nothing through
//! the front's inspection API; the tests use it only to check the outcome.

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};
use snowgate_grants::{ManualClock, SystemClock};
use snowgate_rig::clients::{spawn_python, ClientRun, PythonDriver, RunningClient};
use snowgate_rig::free_port;
use snowgate_rig::snowflake::{Snowflake, SnowflakeOptions};
use support::*;

/// How soon after its grant ends a session must be gone: the reaper wakes on the grant's event
/// at once, or polls every second here.
const REAP_BOUND: Duration = Duration::from_secs(10);
const SERVICE_USER: &str = "SNOWGATE_REAPER";

struct ReaperRig {
    rig: Rig,
    sf: Snowflake,
    /// The service user's private key, whose public half the front knows.
    key: PathBuf,
    port: u16,
}

fn public_key_of(private: &std::path::Path, public: &std::path::Path) {
    let out = std::process::Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(private)
        .arg("-out")
        .arg(public)
        .output()
        .expect("running openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl ReaperRig {
    async fn start() -> ReaperRig {
        let rig = Rig::start().await;
        let port = free_port().unwrap();
        let key = rig.dir.path().join("reaper.pem");
        make_rsa_key(&key);
        let public = rig.dir.path().join("reaper.pub.pem");
        public_key_of(&key, &public);
        let server_url = format!("https://127.0.0.1:{port}");
        let sf = Snowflake::start(SnowflakeOptions {
            jwks_urls: vec![format!("{server_url}/.well-known/jwks.json")],
            issuers: vec![server_url],
            audience: SNOWFLAKE_AUDIENCE.to_string(),
            ca_file: Some(rig.ca.ca_file.clone()),
            key_pair_users: vec![(SERVICE_USER.to_string(), public)],
            session_admins: vec![SERVICE_USER.to_string()],
            ..SnowflakeOptions::default()
        })
        .await
        .expect("starting the rig's Snowflake front");
        ReaperRig { rig, sf, key, port }
    }

    fn reaper_table(&self, key: &std::path::Path) -> String {
        format!(
            "[reaper]\naccount_url = \"{}\"\naccount = \"rig\"\nuser = \"{SERVICE_USER}\"\nprivate_key_file = \"{}\"\nrole = \"SNOWGATE_REAPER\"\npoll_interval = \"1s\"\n",
            self.sf.url(),
            key.display()
        )
    }

    fn options(&self, key: &std::path::Path) -> Options {
        Options {
            tail: self.reaper_table(key),
            ..Options::default()
        }
    }

    async fn replica(&self) -> Replica {
        self.rig
            .replica_at(self.port, &self.options(&self.key), Arc::new(SystemClock))
            .await
    }
}

fn id_of(grant: &Value) -> String {
    grant["id"].as_str().unwrap().to_string()
}

/// A Snowflake token for `grant`, minted for its requester: what `snowgate token` prints.
async fn token_for(server: &Replica, bearer: &str, grant: &str) -> String {
    let t = server
        .post(
            &format!("/v1/grants/{grant}/snowflake-token"),
            bearer,
            json!({}),
        )
        .await;
    assert_eq!(t.status, StatusCode::OK, "{t:?}");
    t.json["token"].as_str().unwrap().to_string()
}

/// A Python connector session opened with `token` that runs `sql` every 0.3 s; returns the
/// client and its Snowflake session id once a first query has answered.
async fn open_session(
    sf: &Snowflake,
    token: &str,
    sql: &str,
    tag: Option<&str>,
) -> (RunningClient, u64) {
    let mut run = ClientRun::oauth(&sf.url(), token, "hold")
        .role("READONLY")
        .arg(["--interval", "0.3", "--duration", "60", "--sql", sql])
        .timeout(Duration::from_secs(90));
    if let Some(tag) = tag {
        run = run.arg(["--query-tag", tag]);
    }
    let mut client = spawn_python(PythonDriver::V5, &run).await.unwrap();
    let connected = client
        .next_line(Duration::from_secs(30))
        .await
        .unwrap()
        .expect("the client connects");
    assert_eq!(
        connected["event"],
        "connected",
        "{connected}\n{}",
        sf.recent_output()
    );
    let session = connected["session_id"].as_u64().expect("a session id");
    if !sql.to_lowercase().contains("system$wait") {
        let first = client
            .next_line(Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(first["ok"], true, "{first}");
    }
    (client, session)
}

/// Waits until the front says `session` is closed; returns how long that took.
async fn closed_within(sf: &Snowflake, session: u64, bound: Duration) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < bound {
        if !sf.session(session).await.unwrap().open {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

/// The `session.reaped` records of `grant`, read as an approver.
async fn reaped_records(server: &Replica, approver: &str, grant: &str) -> Vec<Value> {
    let r = server
        .get(
            &format!("/v1/audit?grant={grant}&limit=1000"),
            Some(approver),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    let records = r.json["records"].as_array().cloned().unwrap_or_default();
    records
        .into_iter()
        .filter(|rec| rec["kind"] == "session.reaped")
        .collect()
}

/// The `session.reaped` records of `grant` once there are some (within 5 s).
async fn reaped_soon(server: &Replica, approver: &str, grant: &str) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let records = reaped_records(server, approver, grant).await;
        if !records.is_empty() || start.elapsed() > Duration::from_secs(5) {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn details(record: &Value) -> Value {
    match &record["details"] {
        Value::String(s) => serde_json::from_str(s).unwrap(),
        other => other.clone(),
    }
}

async fn revoke(server: &Replica, approver: &str, grant: &str) {
    let r = server
        .post(
            &format!("/v1/grants/{grant}/revoke"),
            approver,
            json!({ "comment": "done" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
}

async fn reaper_health(server: &Replica) -> Value {
    let h = server.get("/healthz", None).await;
    assert_eq!(h.status, StatusCode::OK, "{h:?}");
    h.json["reaper"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_session_is_ended_by_the_reaper_when_its_grant_is_revoked() {
    let r = ReaperRig::start().await;
    let server = r.replica().await;
    let (alice, bob) = tokio::join!(r.rig.token("alice"), r.rig.token("bob"));
    let g = server.request(&alice, "READONLY", 1800).await;
    let grant = id_of(&g);
    let token = token_for(&server, &alice, &grant).await;
    let (mut client, session) = open_session(&r.sf, &token, "select 1", None).await;

    revoke(&server, &bob, &grant).await;
    let took = closed_within(&r.sf, session, REAP_BOUND).await;
    assert!(
        took.is_some(),
        "the session opened with the grant's token was still open {REAP_BOUND:?} after the revoke\n{}",
        r.sf.recent_output()
    );
    let s = r.sf.session(session).await.unwrap();
    assert_eq!(
        s.close_reason.as_deref(),
        Some("aborted by SYSTEM$ABORT_SESSION")
    );
    // The tool sees Snowflake's "session gone".
    let failed = loop {
        let line = client
            .next_line(Duration::from_secs(10))
            .await
            .unwrap()
            .unwrap();
        if line["ok"] == false {
            break line;
        }
    };
    assert_eq!(failed["error"]["errno"], 390111, "{failed}");

    // Audited: grant, session id, Snowflake's answer.
    let records = reaped_soon(&server, &bob, &grant).await;
    assert_eq!(records.len(), 1, "{records:#?}");
    let d = details(&records[0]);
    assert_eq!(d["session"], session.to_string());
    assert_eq!(d["answer"], format!("session [{session}] terminated."));
    assert_eq!(d["login_name"], "alice");
    assert_eq!(records[0]["actor"], "system");
    assert_eq!(records[0]["role"], "READONLY");
    let h = reaper_health(&server).await;
    assert_eq!(h["state"], "working", "{h}");
    assert_eq!(h["pending"], 0, "{h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_session_and_its_running_query_end_when_the_grant_expires() {
    let r = ReaperRig::start().await;
    let clock = Arc::new(ManualClock::starting_now());
    let server = r
        .rig
        .replica_at(r.port, &r.options(&r.key), clock.clone())
        .await;
    let (alice, bob) = tokio::join!(r.rig.token("alice"), r.rig.token("bob"));
    let g = server.request(&alice, "READONLY", 1800).await;
    let grant = id_of(&g);
    let token = token_for(&server, &alice, &grant).await;
    let (mut client, session) = open_session(&r.sf, &token, "select system$wait(60)", None).await;
    eventually(Duration::from_secs(10), "the long query runs", || async {
        !r.sf.session(session).await.unwrap().running.is_empty()
    })
    .await;

    clock.advance(Duration::from_secs(1801));
    let took = closed_within(&r.sf, session, REAP_BOUND).await;
    assert!(
        took.is_some(),
        "the session was still open {REAP_BOUND:?} after its grant expired\n{}",
        r.sf.recent_output()
    );
    // Its running query ended with it, as Snowflake cancels a session's queries on abort.
    let canceled = client
        .next_line(Duration::from_secs(10))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(canceled["ok"], false, "{canceled}");
    assert_eq!(canceled["error"]["errno"], 604, "{canceled}");
    assert!(r.sf.session(session).await.unwrap().running.is_empty());

    let records = reaped_soon(&server, &bob, &grant).await;
    assert_eq!(details(&records[0])["session"], session.to_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_session_is_left_to_the_gateway_and_not_ended_twice() {
    let r = ReaperRig::start().await;
    let server = r.replica().await;
    let (alice, bob) = tokio::join!(r.rig.token("alice"), r.rig.token("bob"));
    let g = server.request(&alice, "READONLY", 1800).await;
    let grant = id_of(&g);
    let token = token_for(&server, &alice, &grant).await;
    // A session tagged as the gateway tags the sessions it opens for this grant, beside one
    // opened with the bare token.
    let gateway_tag = format!("snowgate:grant={grant} | my-tool");
    let (_gateway_client, gateway_session) =
        open_session(&r.sf, &token, "select 1", Some(&gateway_tag)).await;
    let (_client, token_session) = open_session(&r.sf, &token, "select 2", None).await;

    revoke(&server, &bob, &grant).await;
    assert!(
        closed_within(&r.sf, token_session, REAP_BOUND)
            .await
            .is_some(),
        "the bare token's session was not reaped\n{}",
        r.sf.recent_output()
    );
    let records = reaped_soon(&server, &bob, &grant).await;
    eventually(Duration::from_secs(5), "the reap is done", || async {
        reaper_health(&server).await["pending"] == 0
    })
    .await;
    let sessions: Vec<String> = records
        .iter()
        .map(|rec| details(rec)["session"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sessions, vec![token_session.to_string()]);
    // Still open: the reaper did not touch it (in a real deployment the gateway closes it).
    let gw = r.sf.session(gateway_session).await.unwrap();
    assert!(
        gw.open,
        "the gateway's session was ended by the reaper: {gw:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_reap_each_ended_grant_once() {
    let r = ReaperRig::start().await;
    let first = r.replica().await;
    let second = r
        .rig
        .replica_with_clock(&r.options(&r.key), Arc::new(SystemClock))
        .await;
    let (alice, carol, bob) = tokio::join!(
        r.rig.token("alice"),
        r.rig.token("carol"),
        r.rig.token("bob")
    );
    let mut opened = Vec::new();
    for (who, bearer) in [("alice", &alice), ("carol", &carol), ("alice", &alice)] {
        let g = first.request(bearer, "READONLY", 1800).await;
        let grant = id_of(&g);
        let token = token_for(&first, bearer, &grant).await;
        let (client, session) = open_session(&r.sf, &token, "select 1", None).await;
        opened.push((who, grant, client, session));
        // One grant per person and role at a time: end alice's first before her second.
        if opened.len() == 1 {
            revoke(&second, &bob, &opened[0].1).await;
        }
    }
    for (_, grant, _, _) in &opened[1..] {
        revoke(&second, &bob, grant).await;
    }
    for (who, _, _, session) in &opened {
        assert!(
            closed_within(&r.sf, *session, REAP_BOUND).await.is_some(),
            "{who}'s session {session} was not reaped\n{}",
            r.sf.recent_output()
        );
    }
    eventually(
        Duration::from_secs(10),
        "both replicas see no reap left",
        || async {
            reaper_health(&first).await["pending"] == 0
                && reaper_health(&second).await["pending"] == 0
        },
    )
    .await;
    // Each grant reaped once, each session named once, across both replicas.
    let mut all_sessions = Vec::new();
    for (_, grant, _, session) in &opened {
        let records = reaped_records(&first, &bob, grant).await;
        let all: Vec<(&str, &str, u64)> = opened
            .iter()
            .map(|(w, g, _, s)| (*w, g.as_str(), *s))
            .collect();
        assert_eq!(
            records.len(),
            1,
            "grant {grant}: {records:#?}\nopened: {all:?}"
        );
        let named = details(&records[0])["session"]
            .as_str()
            .unwrap()
            .to_string();
        assert_eq!(named, session.to_string());
        all_sessions.push(named);
    }
    all_sessions.sort();
    all_sessions.dedup();
    assert_eq!(all_sessions.len(), 3);
    // Each reap was one key-pair login of the service user (no replica did one twice).
    let reaper_logins =
        r.sf.login_attempts()
            .await
            .unwrap()
            .into_iter()
            .filter(|a| a.authenticator.as_deref() == Some("SNOWFLAKE_JWT") && a.success)
            .count();
    assert_eq!(reaper_logins, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_service_key_is_reported_and_the_server_goes_on() {
    let r = ReaperRig::start().await;
    let wrong = r.rig.dir.path().join("not-the-registered-key.pem");
    make_rsa_key(&wrong);
    let server = r
        .rig
        .replica_at(r.port, &r.options(&wrong), Arc::new(SystemClock))
        .await;
    assert_eq!(reaper_health(&server).await["state"], "starting");
    let (alice, bob) = tokio::join!(r.rig.token("alice"), r.rig.token("bob"));
    let g = server.request(&alice, "READONLY", 1800).await;
    let grant = id_of(&g);
    let token = token_for(&server, &alice, &grant).await;
    let (_client, session) = open_session(&r.sf, &token, "select 1", None).await;
    revoke(&server, &bob, &grant).await;

    let start = Instant::now();
    let health = loop {
        let h = reaper_health(&server).await;
        if h["state"] == "failing" {
            break h;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "the reaper did not report its failure: {h}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(health["pending"], 1, "{health}");
    assert_eq!(health["failing"], 1, "{health}");
    // Snowflake refused the key-pair login; the server still answers.
    let refused =
        r.sf.login_attempts()
            .await
            .unwrap()
            .into_iter()
            .find(|a| a.authenticator.as_deref() == Some("SNOWFLAKE_JWT"))
            .expect("the reaper tried to log in");
    assert!(!refused.success);
    assert_eq!(refused.code.as_deref(), Some("390144"));
    assert!(r.sf.session(session).await.unwrap().open);
    assert!(reaped_records(&server, &bob, &grant).await.is_empty());
    let again = server.request(&alice, "READONLY", 600).await;
    assert_eq!(again["state"], "active");
}

fn roles_in_two_accounts(text: String) -> String {
    text.replace(
        "name = \"ANALYST\"\n",
        "name = \"ANALYST\"\naccount = \"prod\"\n",
    )
    .replace(
        "name = \"READONLY\"\n",
        "name = \"READONLY\"\naccount = \"dev\"\n",
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_of_another_account_than_the_reapers_is_not_reaped_in_its_account() {
    let r = ReaperRig::start().await;
    // The reaper watches prod (the rig's front); READONLY belongs to dev.
    let options = Options {
        tail: format!(
            "{}snowflake = \"prod\"\n\n[[snowflake]]\nname = \"prod\"\n\n[[snowflake]]\nname = \"dev\"\n",
            r.reaper_table(&r.key)
        ),
        edit: Some(roles_in_two_accounts),
        ..Options::default()
    };
    let server = r
        .rig
        .replica_at(r.port, &options, Arc::new(SystemClock))
        .await;
    let (alice, bob) = tokio::join!(r.rig.token("alice"), r.rig.token("bob"));
    let g = server.request(&alice, "READONLY", 1800).await;
    assert_eq!(g["account"], "dev", "{g:#}");
    let grant = id_of(&g);
    // A session as READONLY in prod's account, which a grant of prod's READONLY would own.
    let token = token_for(&server, &alice, &grant).await;
    let (mut client, session) = open_session(&r.sf, &token, "select 1", None).await;

    revoke(&server, &bob, &grant).await;
    let took = closed_within(&r.sf, session, REAP_BOUND).await;
    assert!(
        took.is_none(),
        "the reaper ended a session in prod for a grant of dev after {took:?}"
    );
    assert!(reaped_records(&server, &bob, &grant).await.is_empty());
    let h = reaper_health(&server).await;
    assert_eq!(h["pending"], 0, "the grant is done with, not retried: {h}");
    client.kill();
}
