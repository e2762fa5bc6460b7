//! The fault matrix: the real broker (`snowgate up`) and team server (`snowgate serve`) with the
//! rig's real parts, while the rig's fault proxy (`snowgate_rig::faults`) makes the IdP, the
//! Snowflake front or PostgreSQL fail in the ways they fail in the field, and the real Python
//! connector is the tool. Each case checks what the person and the tool see, and that nothing is
//! lost, within stated bounds (see the README's "Faults").

mod support;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use serde_json::Value;
use snowgate_rig::clients::{run_python, spawn_python, PythonDriver, RunningClient};
use snowgate_rig::faults::{Faketime, Fault, FaultProxy};
use snowgate_rig::idp::{BehindProxy, IdpOptions};
use snowgate_rig::secret_service::KeyringState;
use snowgate_rig::{free_port, TestCa};
use support::Rig;

/// How long the gateway under test waits for Snowflake to start answering
/// (`[gateway] snowflake_answer_timeout`; 60 s by default, shortened here to keep CI short).
const ANSWER_TIMEOUT: &str = "5s";
/// The longest a tool's statement may wait on a Snowflake that hangs, cuts or fails before the
/// tool has a Snowflake-shaped error in hand: the answer timeout plus the connector's own
/// retries of a 503 and slack for a loaded machine. With the default answer timeout the bound is
/// 60 s more (the README states both).
const SNOWFLAKE_FAULT_BOUND: Duration = Duration::from_secs(25);

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Points the broker's `[snowflake] url` at `proxy` instead of the front.
fn route_snowflake_through(rig: &Rig, proxy: &FaultProxy) {
    let path = rig.dir.path().join("config.toml");
    let config = std::fs::read_to_string(&path).unwrap();
    let direct = format!("url = \"{}\"", rig.sf.url());
    assert!(config.contains(&direct), "{config}");
    let via = format!("url = \"http://127.0.0.1:{}\"", proxy.port());
    std::fs::write(&path, config.replace(&direct, &via)).unwrap();
}

/// The next line of a held client, and how long it took to come.
async fn next_query(client: &mut RunningClient) -> (Value, Duration) {
    let started = Instant::now();
    let line = client
        .next_line(SNOWFLAKE_FAULT_BOUND + Duration::from_secs(30))
        .await
        .unwrap()
        .expect("the tool ended early");
    (line, started.elapsed())
}

#[tokio::test]
async fn snowflake_503_hang_and_cut_give_the_tool_a_snowflake_error_within_the_bound() {
    let rig = Rig::start_with(
        KeyringState::Unlocked,
        &format!("snowflake_answer_timeout = \"{ANSWER_TIMEOUT}\""),
        "info,snowgate_gateway=debug",
    )
    .await;
    let proxy = FaultProxy::start(loopback(rig.sf.port())).await.unwrap();
    route_snowflake_through(&rig, &proxy);
    let broker = rig.broker().await;
    rig.login("alice").await;
    rig.request("ANALYST", "30m").await;

    // A tool with an open session, one statement every 0.2 s.
    let run = rig
        .python("hold")
        .role("ANALYST")
        .arg(["--interval", "0.2", "--duration", "600"])
        .timeout(Duration::from_secs(900));
    let mut client = spawn_python(PythonDriver::V5, &run).await.unwrap();
    let (connected, _) = next_query(&mut client).await;
    assert_eq!(connected["event"], "connected", "{connected:#}");
    let (first, _) = next_query(&mut client).await;
    assert_eq!(first["ok"], true, "{first:#}");
    // A cut inside the answer's head (60 bytes), and one inside its JSON body (400 bytes).
    for fault in [
        Fault::Status(503),
        Fault::Hang,
        Fault::CutAfter(60),
        Fault::CutAfter(400),
    ] {
        proxy.set(fault);
        // Skip a statement that was under way when the fault began.
        let _ = next_query(&mut client).await;
        let (line, took) = next_query(&mut client).await;
        assert_eq!(line["ok"], false, "{fault:?}: {line:#}");
        let errno = line["error"]["errno"].as_i64().unwrap_or(0);
        let msg = line["error"]["msg"].as_str().unwrap_or("");
        println!("{fault:?}: the tool's error after {took:?}: {errno} {msg}");
        assert!(errno > 0, "{fault:?}: not a Snowflake error: {line:#}");
        assert!(!msg.is_empty(), "{fault:?}: {line:#}");
        assert!(
            took < SNOWFLAKE_FAULT_BOUND,
            "{fault:?}: the statement took {took:?}: {line:#}\n{}",
            rig.log_tail()
        );
        // The gateway keeps serving once Snowflake is back.
        proxy.set(Fault::Pass);
        let mut recovered = false;
        for _ in 0..20 {
            let (line, _) = next_query(&mut client).await;
            if line["ok"] == true {
                recovered = true;
                break;
            }
        }
        assert!(
            recovered,
            "{fault:?}: no statement went through after Snowflake came back"
        );
    }
    client.kill();
    // A new tool logs in and runs a statement.
    let fresh = run_python(PythonDriver::V5, &rig.python("smoke").role("ANALYST"))
        .await
        .unwrap();
    assert_eq!(fresh["ok"], true, "{fresh:#}\n{}", rig.log_tail());
    support::stop(broker).await;
}

/// Starts a rig whose IdP sits behind a fault proxy (its issuer is the proxy's address, so
/// discovery, token, JWKS and every other endpoint go through it), with `access_ttl` tokens.
async fn rig_with_idp_proxy(access_ttl: Duration) -> (Rig, FaultProxy) {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::generate(&dir.path().join("tls")).unwrap();
    let listen_port = free_port().unwrap();
    let proxy = FaultProxy::start_tls(loopback(listen_port), &ca)
        .await
        .unwrap();
    let opts = IdpOptions {
        access_token_ttl: access_ttl,
        behind_proxy: Some(BehindProxy {
            listen_port,
            public_port: proxy.port(),
        }),
        ..IdpOptions::default()
    };
    let rig = Rig::start_around(
        dir,
        ca,
        opts,
        Vec::new(),
        KeyringState::Unlocked,
        "",
        "info,snowgate_engine=debug",
    )
    .await;
    (rig, proxy)
}

/// Whether `text` holds anything shaped like a token (a JWT, or a long opaque secret).
fn has_token(text: &str) -> bool {
    let jwt = regex::Regex::new(r"eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}").unwrap();
    jwt.is_match(text)
}

async fn status(rig: &Rig) -> String {
    let (_, out, err) = rig.run(&["status"]).await;
    format!("{out}{err}")
}

/// Polls `snowgate status` until `pred` holds; returns the text and when.
async fn status_until(rig: &Rig, within: Duration, pred: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + within;
    let mut last = String::new();
    while Instant::now() < deadline {
        last = status(rig).await;
        if pred(&last) {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!(
        "`snowgate status` did not change as expected within {within:?}; last:\n{last}\n{}",
        rig.log_tail()
    );
}

#[tokio::test]
async fn idp_500s_and_timeouts_during_refresh_keep_the_sign_in_and_recover_without_a_new_one() {
    // Tokens live 20 s, so the broker refreshes after about 15 s.
    let (rig, idp) = rig_with_idp_proxy(Duration::from_secs(20)).await;
    let broker = rig.broker().await;
    rig.login("alice").await;
    rig.request("ANALYST", "30m").await;
    let mut seen = Vec::new();
    let signed_in = status(&rig).await;
    assert!(signed_in.starts_with("Signed in as alice"), "{signed_in}");

    // The IdP answers every request with a 500.
    idp.set(Fault::Status(500));
    let offline = status_until(&rig, Duration::from_secs(40), |s| s.contains("offline")).await;
    seen.push(offline.clone());
    assert!(
        offline.starts_with("Signed in as alice; the IdP is offline, retrying"),
        "{offline}"
    );
    assert!(
        !offline.trim_start().starts_with('{'),
        "plain text: {offline}"
    );
    // It retries with backoff (1 s, 2 s, 4 s ...): a few attempts in 8 s, not a storm.
    let before = idp.canned_answers();
    tokio::time::sleep(Duration::from_secs(8)).await;
    let retries = idp.canned_answers() - before;
    assert!(
        (1..=6).contains(&retries),
        "{retries} refresh attempts in 8 s\n{}",
        rig.log_tail()
    );

    // The IdP stops answering at all. The broker's attempt hangs until its request timeout
    // (30 s) ends it, and it tries again after its backoff: a second connection comes. The
    // sign-in is kept all along.
    idp.set(Fault::Hang);
    let at_hang = idp.accepted();
    let hang_started = Instant::now();
    while idp.accepted() < at_hang + 2 {
        assert!(
            hang_started.elapsed() < Duration::from_secs(75),
            "no new attempt after a hung one within 75 s ({} connections)\n{}",
            idp.accepted() - at_hang,
            rig.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!(
        "a hung refresh was given up and retried after {:?}",
        hang_started.elapsed()
    );
    let hanging = status(&rig).await;
    seen.push(hanging.clone());
    assert!(
        hanging.starts_with("Signed in as alice; the IdP is offline, retrying"),
        "{hanging}"
    );

    // The IdP is back: the broker refreshes by itself, without a new sign-in.
    let logins_before = rig.idp.recent_output().matches("POST /interaction").count();
    idp.set(Fault::Pass);
    let back = status_until(&rig, Duration::from_secs(45), |s| {
        s.starts_with("Signed in as alice") && !s.contains("offline")
    })
    .await;
    seen.push(back);
    // The access token of the sign-in expired long ago; a tool still logs in.
    let tool = run_python(PythonDriver::V5, &rig.python("smoke").role("ANALYST"))
        .await
        .unwrap();
    assert_eq!(tool["ok"], true, "{tool:#}\n{}", rig.log_tail());
    assert_eq!(
        rig.idp.recent_output().matches("POST /interaction").count(),
        logins_before,
        "a new sign-in happened"
    );
    seen.push(tool.to_string());
    seen.push(std::fs::read_to_string(rig.dir.path().join("broker.log")).unwrap());
    for text in &seen {
        assert!(!has_token(text), "a token in the output: {text}");
    }
    support::stop(broker).await;
}

#[tokio::test]
async fn kill_9_with_open_sessions_loses_no_record_and_logins_work_after_restart() {
    let rig = Rig::start_with(KeyringState::Unlocked, "", "info").await;
    let mut broker = rig.broker().await;
    rig.login("alice").await;
    rig.request("ANALYST", "30m").await;

    let (mut a, _) = rig.hold("ANALYST", 120).await;
    let (mut b, _) = rig.hold("ANALYST", 120).await;
    let sessions: Value = serde_json::from_str(&rig.ok(&["sessions", "--json"]).await).unwrap();
    let ids: Vec<String> = sessions
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 2, "{sessions:#}");
    // Both tools have statements answered, and are mid-stream when the broker dies.
    for client in [&mut a, &mut b] {
        let (line, _) = next_query(client).await;
        assert_eq!(line["ok"], true, "{line:#}");
    }
    broker.start_kill().unwrap();
    broker.wait().await.unwrap();
    a.kill();
    b.kill();

    let broker = rig.broker().await;
    let verify = rig.ok(&["audit", "verify"]).await;
    assert!(verify.contains("intact"), "{verify}");
    let audit: Value = serde_json::from_str(&rig.ok(&["audit", "--json"]).await).unwrap();
    let records = audit.as_array().unwrap();
    for id in &ids {
        assert!(
            records
                .iter()
                .any(|r| r["kind"] == "session.opened" && r["details"]["session"] == id.as_str()),
            "no session.opened record for {id}: {audit:#}"
        );
        let statements = records
            .iter()
            .filter(|r| r["kind"] == "session.statement" && r["details"]["session"] == id.as_str())
            .count();
        assert!(statements >= 2, "{statements} statement records for {id}");
    }
    // The grant survived the crash, and a tool logs in with no new sign-in.
    let tool = run_python(PythonDriver::V5, &rig.python("smoke").role("ANALYST"))
        .await
        .unwrap();
    assert_eq!(tool["ok"], true, "{tool:#}\n{}", rig.log_tail());
    support::stop(broker).await;
}

#[tokio::test]
async fn after_a_laptop_sleep_tools_carry_on_and_the_broker_renews_by_itself() {
    // The IdP's and the Snowflake front's clocks follow an offset file; the broker's do not,
    // as a suspended laptop's monotonic clock stops while the world's clocks run on.
    let world = Faketime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::generate(&dir.path().join("tls")).unwrap();
    let opts = IdpOptions {
        env: world.env(),
        ..IdpOptions::default()
    };
    let rig = Rig::start_around(
        dir,
        ca,
        opts,
        world.env(),
        KeyringState::Unlocked,
        "",
        "info,snowgate_engine=debug",
    )
    .await;
    let broker = rig.broker().await;
    rig.login("alice").await;
    rig.request("ANALYST", "30m").await;
    let run = rig
        .python("hold")
        .role("ANALYST")
        .arg(["--interval", "0.5", "--duration", "600"])
        .timeout(Duration::from_secs(700));
    let mut tool = spawn_python(PythonDriver::V5, &run).await.unwrap();
    let (connected, _) = next_query(&mut tool).await;
    assert_eq!(connected["event"], "connected", "{connected:#}");
    let (first, _) = next_query(&mut tool).await;
    assert_eq!(first["ok"], true, "{first:#}");

    // Two hours pass for the world: the IdP's access tokens (5 min) and the front's session
    // tokens (1 h) are expired; the master token (4 h) and the refresh token (24 h) are not.
    world.jump(2 * 3600).unwrap();
    let jumped = Instant::now();
    // The held tool carries on: at most a few statements fail while its driver renews.
    let mut failed = Vec::new();
    loop {
        let (line, _) = next_query(&mut tool).await;
        if line["ok"] == true {
            break;
        }
        failed.push(line);
        assert!(
            failed.len() <= 3 && jumped.elapsed() < Duration::from_secs(30),
            "the held tool did not carry on after the jump: {failed:#?}\n{}",
            rig.log_tail()
        );
    }
    // A new tool logs in through the gateway without a new sign-in: the broker notices that
    // the world considers its token expired and gets a fresh one by itself.
    let fresh = run_python(PythonDriver::V5, &rig.python("smoke").role("ANALYST"))
        .await
        .unwrap();
    assert_eq!(fresh["ok"], true, "{fresh:#}\n{}", rig.log_tail());
    assert!(
        jumped.elapsed() < Duration::from_secs(60),
        "recovery took {:?}",
        jumped.elapsed()
    );
    let now = status(&rig).await;
    assert!(now.starts_with("Signed in as alice"), "{now}");
    tool.kill();
    support::stop(broker).await;
}

#[tokio::test]
async fn the_brokers_wall_clock_jumping_forward_and_back_keeps_tools_and_the_ledger_whole() {
    // libfaketime on the broker process itself (a dynamically linked Rust binary: its clock
    // calls go through glibc, which libfaketime intercepts).
    let clock = Faketime::new().unwrap();
    let rig = Rig::start_with(KeyringState::Unlocked, "", "info").await;
    let broker = rig.broker_with_env(&clock.env()).await;
    rig.login("alice").await;
    rig.request("ANALYST", "30m").await;
    let (mut tool, _) = rig.hold("ANALYST", 55).await;

    // Forward 10 minutes (inside the grant), then back 10 minutes before the true time.
    for offset in [600, -600] {
        clock.jump(offset).unwrap();
        let mut ok = 0;
        for _ in 0..10 {
            let (line, _) = next_query(&mut tool).await;
            if line["ok"] == true {
                ok += 1;
            }
        }
        assert!(
            ok >= 8,
            "offset {offset}: only {ok} of 10 statements went through\n{}",
            rig.log_tail()
        );
        let now = status(&rig).await;
        assert!(
            now.starts_with("Signed in as alice"),
            "offset {offset}: {now}"
        );
        let grants = rig.grants_all().await;
        assert_eq!(grants[0]["state"], "active", "offset {offset}: {grants:#}");
    }
    tool.kill();
    // Records written while the clock went back still form an intact chain.
    let verify = rig.ok(&["audit", "verify"]).await;
    assert!(verify.contains("intact"), "{verify}");
    support::stop(broker).await;
}

#[tokio::test]
async fn after_a_sleep_that_moves_every_wall_clock_the_broker_sees_its_tokens_stale_by_itself() {
    // A real suspend: every wall clock, the broker's too, is 20 minutes on at resume, while the
    // broker's monotonic clock (its timers) stood still. The IdP's access tokens (5 min) are
    // expired; the grant (1 h) and the front's sessions (1 h) are not.
    let world = Faketime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::generate(&dir.path().join("tls")).unwrap();
    let opts = IdpOptions {
        env: world.env(),
        ..IdpOptions::default()
    };
    let rig = Rig::start_around(
        dir,
        ca,
        opts,
        world.env(),
        KeyringState::Unlocked,
        "",
        "info,snowgate_engine=debug",
    )
    .await;
    let broker = rig.broker_with_env(&world.env()).await;
    rig.login("alice").await;
    rig.request("ANALYST", "1h").await;
    let (mut tool, _) = rig.hold("ANALYST", 120).await;

    world.jump(20 * 60).unwrap();
    let jumped = Instant::now();
    let mut failed = 0;
    loop {
        let (line, _) = next_query(&mut tool).await;
        if line["ok"] == true {
            break;
        }
        failed += 1;
        assert!(failed <= 3, "the held tool did not carry on: {line:#}");
    }
    // A new tool logs in at once: the broker saw by its own clock that its cached token was
    // stale and refreshed before using it, so Snowflake never saw an expired token.
    let fresh = run_python(PythonDriver::V5, &rig.python("smoke").role("ANALYST"))
        .await
        .unwrap();
    assert_eq!(fresh["ok"], true, "{fresh:#}\n{}", rig.log_tail());
    assert!(
        jumped.elapsed() < Duration::from_secs(30),
        "{:?}",
        jumped.elapsed()
    );
    let expired: Vec<_> = rig
        .sf
        .login_attempts()
        .await
        .unwrap()
        .into_iter()
        .filter(|a| a.code.as_deref() == Some("390318"))
        .collect();
    assert!(
        expired.is_empty(),
        "Snowflake saw expired tokens: {expired:#?}"
    );
    let now = status(&rig).await;
    assert!(now.starts_with("Signed in as alice"), "{now}");
    let grants = rig.grants_all().await;
    assert_eq!(grants[0]["state"], "active", "{grants:#}");
    tool.kill();
    support::stop(broker).await;
}
