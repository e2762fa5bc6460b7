//! Signed checkpoints of the audit chain's head, against a real PostgreSQL whose `audit`
//! table is cut short or rewritten behind the server's back, as anyone with write access to the
//! database could.

mod support;

use reqwest::StatusCode;
use serde_json::{json, Value};
use snowgate_grants::audit::chain::record_hash;
use snowgate_grants::{AuditQuery, Ledger as _, PgLedger};
use support::*;

/// Makes a few records: alice requests and bob approves, twice.
async fn some_records(server: &Replica, alice: &str, bob: &str) {
    for _ in 0..2 {
        let g = server.request(alice, "ANALYST", 3600).await;
        let id = g["id"].as_str().unwrap();
        let r = server
            .post(&format!("/v1/grants/{id}/approve"), bob, json!({}))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{r:?}");
    }
}

/// A checkpoint made now, on demand.
async fn checkpoint_now(server: &Replica, bob: &str) -> Value {
    let made = server.post("/v1/audit/checkpoint", bob, json!({})).await;
    assert_eq!(made.status, StatusCode::OK, "{made:?}");
    let served = server.get("/v1/audit/checkpoint", Some(bob)).await;
    assert_eq!(served.status, StatusCode::OK, "{served:?}");
    assert_eq!(served.json, made.json);
    served.json
}

async fn verify_with(server: &Replica, bob: &str, checkpoint: Option<&str>) -> Reply {
    let path = match checkpoint {
        Some(c) => format!("/v1/audit/verify?checkpoint={c}"),
        None => "/v1/audit/verify".to_string(),
    };
    server.get(&path, Some(bob)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_cut_off_the_end_of_the_log_are_caught_by_a_checkpoint() {
    let rig = Rig::start().await;
    let server = rig.replica().await;
    let (alice, bob) = tokio::join!(rig.token("alice"), rig.token("bob"));
    some_records(&server, &alice, &bob).await;
    let cp = checkpoint_now(&server, &bob).await;
    let seq = cp["seq"].as_u64().unwrap();
    assert!(seq >= 6, "{cp}");
    let token = cp["checkpoint"].as_str().unwrap().to_string();
    // The public key that checks it is published.
    let key = server.get("/v1/audit/checkpoint-key", Some(&alice)).await;
    assert_eq!(key.status, StatusCode::OK, "{key:?}");
    assert_eq!(key.json["keys"][0]["kid"], cp["kid"]);

    // Cut the last two records off, and move the head back, as a careful intruder would.
    let pool = sqlx::PgPool::connect(&rig.pg.url()).await.unwrap();
    allow_edits(&pool).await;
    let keep = (seq - 2) as i64;
    sqlx::query("DELETE FROM audit WHERE seq > $1")
        .bind(keep)
        .execute(&pool)
        .await
        .unwrap();
    sqlx::query("UPDATE chain_head SET seq = $1, hash = (SELECT hash FROM audit WHERE seq = $1)")
        .bind(keep)
        .execute(&pool)
        .await
        .unwrap();

    // A fresh replica has no checkpoint of its own: without one the chain looks intact.
    let fresh = rig.replica().await;
    let blind = verify_with(&fresh, &bob, None).await;
    assert_eq!(blind.json["ok"], true, "{blind:?}");
    // Given the checkpoint a desktop kept, it is not.
    let caught = verify_with(&fresh, &bob, Some(&token)).await;
    assert_eq!(caught.status, StatusCode::OK, "{caught:?}");
    assert_eq!(caught.json["ok"], false, "{caught:?}");
    let problem = caught.json["problem"].as_str().unwrap();
    assert!(problem.contains("cut off"), "{problem}");
    assert_eq!(caught.json["checkpoint"]["seq"], seq);
    // The replica that made the checkpoint holds it, and catches it without being given one.
    let held = verify_with(&server, &bob, None).await;
    assert_eq!(held.json["ok"], false, "{held:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_rewritten_with_recomputed_hashes_is_caught_by_a_checkpoint() {
    let rig = Rig::start().await;
    let server = rig.replica().await;
    let (alice, bob) = tokio::join!(rig.token("alice"), rig.token("bob"));
    some_records(&server, &alice, &bob).await;
    let cp = checkpoint_now(&server, &bob).await;
    let seq = cp["seq"].as_u64().unwrap();
    let token = cp["checkpoint"].as_str().unwrap().to_string();

    // Rewrite from record 2 on: change its details, and recompute every hash after it so
    // the chain is valid again.
    let ledger = PgLedger::connect(&rig.pg.url()).await.unwrap();
    let mut records = ledger.audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(records.len() as u64, seq);
    records[1].details = r#"{"comment":"nothing to see"}"#.to_string();
    let mut prev = records[0].hash.clone();
    for r in records.iter_mut().skip(1) {
        r.prev_hash = prev;
        r.hash = record_hash(r).unwrap().to_string();
        prev = r.hash.clone();
    }
    let pool = ledger.pool();
    allow_edits(pool).await;
    for r in records.iter().skip(1) {
        sqlx::query("UPDATE audit SET details = $1, prev_hash = $2, hash = $3 WHERE seq = $4")
            .bind(&r.details)
            .bind(&r.prev_hash)
            .bind(&r.hash)
            .bind(r.seq as i64)
            .execute(pool)
            .await
            .unwrap();
    }
    sqlx::query("UPDATE chain_head SET hash = $1")
        .bind(&prev)
        .execute(pool)
        .await
        .unwrap();

    let fresh = rig.replica().await;
    let blind = verify_with(&fresh, &bob, None).await;
    assert_eq!(blind.json["ok"], true, "{blind:?}");
    let caught = verify_with(&fresh, &bob, Some(&token)).await;
    assert_eq!(caught.json["ok"], false, "{caught:?}");
    let problem = caught.json["problem"].as_str().unwrap();
    assert!(problem.contains("rewritten"), "{problem}");
    let held = verify_with(&server, &bob, None).await;
    assert_eq!(held.json["ok"], false, "{held:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkpoint_with_a_bad_signature_is_refused_with_a_reason() {
    let rig = Rig::start().await;
    let server = rig.replica().await;
    let (alice, bob) = tokio::join!(rig.token("alice"), rig.token("bob"));
    some_records(&server, &alice, &bob).await;
    let cp = checkpoint_now(&server, &bob).await;
    let token = cp["checkpoint"].as_str().unwrap();

    // A checkpoint whose claims were changed (a lower seq) keeps a signature that no longer
    // matches them.
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a compact JWS");
    let claims = format!(
        r#"{{"at":"2025-01-01T00:00:00Z","hash":"{}","seq":1}}"#,
        cp["hash"].as_str().unwrap()
    );
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        base64_url(claims.as_bytes()),
        parts[2]
    );
    let refused = verify_with(&server, &bob, Some(&forged)).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{refused:?}");
    assert!(refused.message().contains("signature"), "{refused:?}");

    // Not a checkpoint at all.
    let refused = verify_with(&server, &bob, Some("not-a-checkpoint")).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{refused:?}");
    assert!(refused.message().contains("checkpoint"), "{refused:?}");

    // The good one still verifies.
    let good = verify_with(&server, &bob, Some(token)).await;
    assert_eq!(good.json["ok"], true, "{good:?}");
}

/// The append-only trigger stops mistakes, not the table's owner: turn it off, as anyone
/// with that access can.
async fn allow_edits(pool: &sqlx::PgPool) {
    sqlx::query("ALTER TABLE audit DISABLE TRIGGER USER")
        .execute(pool)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_stream_is_told_of_each_new_checkpoint_and_of_the_newest_when_it_opens() {
    let rig = Rig::start().await;
    let server = rig.replica().await;
    let (alice, bob) = tokio::join!(rig.token("alice"), rig.token("bob"));
    let mut alice_events = server.events(&alice, None).await;
    some_records(&server, &alice, &bob).await;
    let made = server.post("/v1/audit/checkpoint", &bob, json!({})).await;
    assert_eq!(made.status, StatusCode::OK, "{made:?}");
    // The stream may first carry the one made at start, if the log had records then.
    let mut seen = Vec::new();
    loop {
        let ev = alice_events
            .next_checkpoint(std::time::Duration::from_secs(15))
            .await
            .unwrap_or_else(|| panic!("no checkpoint on alice's stream; saw {seen:?}"));
        if ev.json() == made.json {
            break;
        }
        seen.push(ev.json());
    }
    // A stream opened later gets the newest at once.
    let mut later = server.events(&alice, None).await;
    let first = later
        .next_checkpoint(std::time::Duration::from_secs(15))
        .await
        .expect("the newest checkpoint when the stream opens");
    assert_eq!(first.json(), made.json);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separate_checkpoint_key_signs_and_a_checkpoint_from_another_key_is_refused() {
    let rig = Rig::start().await;
    let key = rig.dir.path().join("checkpoint.pem");
    make_rsa_key(&key);
    let own_key = Options {
        tail: format!(
            "\n[audit]\ncheckpoint_key_files = [{:?}]\n",
            key.display().to_string()
        ),
        ..Options::default()
    };
    let server = rig.replica_with(&own_key).await;
    // A replica without it signs with the minting key.
    let other = rig.replica().await;
    let (alice, bob) = tokio::join!(rig.token("alice"), rig.token("bob"));
    some_records(&server, &alice, &bob).await;
    let cp = checkpoint_now(&server, &bob).await;
    let published = server.get("/v1/audit/checkpoint-key", Some(&alice)).await;
    let minting = server.get("/.well-known/jwks.json", None).await;
    assert_eq!(published.json["keys"][0]["kid"], cp["kid"]);
    assert_ne!(
        published.json["keys"][0]["kid"],
        minting.json["keys"][0]["kid"]
    );
    let token = cp["checkpoint"].as_str().unwrap();
    assert_eq!(
        verify_with(&server, &bob, Some(token)).await.json["ok"],
        true
    );

    // The other replica has not got that key: it says so, and what to do.
    let refused = verify_with(&other, &bob, Some(token)).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{refused:?}");
    assert!(
        refused.message().contains("checkpoint_key_files"),
        "{refused:?}"
    );
    // And its own checkpoint, signed by the minting key, is not one the first takes.
    let theirs = checkpoint_now(&other, &bob).await;
    assert_eq!(theirs["kid"], minting.json["keys"][0]["kid"]);
    let refused = verify_with(&server, &bob, theirs["checkpoint"].as_str()).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{refused:?}");
}

fn base64_url(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_records_is_anchored_without_waiting_for_the_timer() {
    let rig = Rig::start().await;
    // The timer alone would not sign again for an hour.
    let by_count = Options {
        tail: "\n[audit]\ncheckpoint_every = \"1h\"\ncheckpoint_every_records = 4\n".into(),
        ..Options::default()
    };
    let server = rig.replica_with(&by_count).await;
    let (alice, bob) = tokio::join!(rig.token("alice"), rig.token("bob"));
    let before = server.get("/v1/audit/checkpoint", Some(&bob)).await;
    let before_seq = before.json["seq"].as_u64().unwrap_or(0);
    // Two requests approved: four records or more past whatever was signed at start.
    some_records(&server, &alice, &bob).await;
    let head = {
        let pool = sqlx::PgPool::connect(&rig.pg.url()).await.unwrap();
        let seq: i64 = sqlx::query_scalar("SELECT seq FROM chain_head")
            .fetch_one(&pool)
            .await
            .unwrap();
        seq as u64
    };
    assert!(head >= before_seq + 4, "head {head}, signed {before_seq}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let signed = loop {
        let now = server.get("/v1/audit/checkpoint", Some(&bob)).await;
        let seq = now.json["seq"].as_u64().unwrap_or(0);
        if seq + 4 > head {
            break seq;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint within 15 s of the burst: head {head}, newest {:?}",
            now.json
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert!(signed > before_seq, "signed {signed}, before {before_seq}");

    // With the default count, the same burst waits for the timer.
    let by_timer = Options {
        tail: "\n[audit]\ncheckpoint_every = \"1h\"\n".into(),
        ..Options::default()
    };
    let slow = rig.replica_with(&by_timer).await;
    // The one it makes at start, once it has checked the chain.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    let at_start = loop {
        let r = slow.get("/v1/audit/checkpoint", Some(&bob)).await;
        if r.status == StatusCode::OK {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "{r:?}");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    some_records(&slow, &alice, &bob).await;
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let later = slow.get("/v1/audit/checkpoint", Some(&bob)).await;
    assert_eq!(later.json, at_start.json);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkpoint_key_is_only_for_signed_in_callers() {
    let rig = Rig::start().await;
    let server = rig.replica().await;
    let anonymous = server.get("/v1/audit/checkpoint-key", None).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{anonymous:?}");
    let forged = server
        .get("/v1/audit/checkpoint-key", Some("not-a-token"))
        .await;
    assert_eq!(forged.status, StatusCode::UNAUTHORIZED, "{forged:?}");
    let alice = rig.token("alice").await;
    let key = server.get("/v1/audit/checkpoint-key", Some(&alice)).await;
    assert_eq!(key.status, StatusCode::OK, "{key:?}");
    assert!(key.json["keys"][0]["kid"].is_string(), "{key:?}");
}
