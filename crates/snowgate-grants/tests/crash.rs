//! `kill -9` at random moments loses nothing that was reported committed.
//!
//! The parent test re-runs this test binary as a child ([`child_process_for_the_crash_test`],
//! which does nothing unless the child's env var is set). The child makes grant operations in a
//! loop on a ledger in a shared temp dir and prints a line after each returns: the grant's id,
//! version and state, and the audit anchor's head (what the keyring would hold). The parent
//! kills it with SIGKILL after a random delay, reopens the ledger, and checks that every
//! reported operation is there, the chain verifies against the last reported anchor, and a
//! restarted service finds the live grants and their deadlines and ends them on time.
//!
//! Between grant operations the child keeps bursts of records the way the gateway does
//! (through the audit journal, one write each) and prints `KEPT n` after each returns: every
//! one of them must be in the reopened ledger's chain, exactly once.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use common::*;
use rand::Rng;
use snowgate_grants::audit::verify;
use snowgate_grants::*;

const CHILD_DIR: &str = "SNOWGATE_GRANTS_CRASH_CHILD_DIR";
const CHILD_ROUND: &str = "SNOWGATE_GRANTS_CRASH_CHILD_ROUND";
const ROUNDS: usize = 6;

/// The child side: runs only when the parent sets `SNOWGATE_GRANTS_CRASH_CHILD_DIR`.
#[test]
fn child_process_for_the_crash_test() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let ledger = Arc::new(
            SqliteLedger::open_in(std::path::Path::new(&dir))
                .await
                .unwrap(),
        );
        let anchor = Arc::new(MemoryAnchor::new());
        let grants = Grants::start(
            ledger,
            Arc::new(SystemClock),
            policy(),
            Some(anchor.clone()),
        )
        .await
        .unwrap();
        println!("READY");
        let report = |g: &Grant| println!("COMMITTED {} {} {}", g.id(), g.version(), g.state());
        let head = || async {
            if let Some(h) = anchor.get().await.unwrap() {
                println!("HEAD {} {}", h.seq, h.hash);
            }
        };
        // Numbered apart per round, so a record replayed twice would show.
        let mut kept: u64 = std::env::var(CHILD_ROUND)
            .ok()
            .and_then(|r| r.parse::<u64>().ok())
            .unwrap_or(0)
            * 1_000_000;
        for i in 0u64.. {
            let g = grants
                .request(&alice(), ask("ANALYST", hours(1), "crash test"))
                .await
                .unwrap();
            report(&g);
            head().await;
            let g = grants.approve(&bob(), g.id(), None).await.unwrap();
            report(&g);
            head().await;
            if i % 3 == 0 {
                let g = grants.revoke(&bob(), g.id(), None).await.unwrap();
                report(&g);
                head().await;
            }
            if i % 4 == 0 {
                let g = grants
                    .request(&alice(), ask("PROD_ADMIN", hours(1), "left pending"))
                    .await
                    .unwrap();
                report(&g);
                head().await;
            }
            for _ in 0..20 {
                let mut entry = AuditEntry::sign_in(SystemTime::now(), &carol());
                entry.details["kept"] = kept.into();
                grants.record(entry).await.unwrap();
                println!("KEPT {kept}");
                kept += 1;
            }
            head().await;
        }
    });
}

#[derive(Default)]
struct Reported {
    /// Latest reported (version, state) per grant.
    grants: HashMap<GrantId, (u64, GrantState)>,
    head: Option<ChainHead>,
    lines: usize,
    /// Records the child was told were kept (by the number in their details).
    kept: Vec<u64>,
}

impl Reported {
    fn take(&mut self, line: &str) {
        let parts: Vec<&str> = line.split(' ').collect();
        match parts.as_slice() {
            ["COMMITTED", id, version, state] => {
                let (Ok(id), Ok(version), Ok(state)) = (id.parse(), version.parse(), state.parse())
                else {
                    return;
                };
                self.grants.insert(id, (version, state));
                self.lines += 1;
            }
            ["KEPT", n] => {
                if let Ok(n) = n.parse() {
                    self.kept.push(n);
                }
            }
            ["HEAD", seq, hash] => {
                if let (Ok(seq), Ok(hash)) = (seq.parse(), hash.parse()) {
                    self.head = Some(ChainHead { seq, hash });
                }
            }
            _ => {}
        }
    }
}

/// Runs the child until a random moment after it is ready, then SIGKILLs it.
fn run_and_kill(dir: &std::path::Path, round: usize, reported: &mut Reported) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_for_the_crash_test",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR, dir)
        .env(CHILD_ROUND, round.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    // libtest prints "test NAME ... " without a newline before the test's own output.
    let give_up = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let left = give_up.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.ends_with("READY") => break,
            Ok(_) => {}
            Err(e) => {
                let _ = child.kill();
                panic!("the child did not get ready: {e}");
            }
        }
    }
    std::thread::sleep(Duration::from_millis(rand::thread_rng().gen_range(20..400)));
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    reader.join().unwrap();
    for line in rx.try_iter() {
        reported.take(&line);
    }
}

#[test]
fn kill_9_at_random_moments_loses_nothing_committed() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut reported = Reported::default();
    for round in 0..ROUNDS {
        run_and_kill(dir.path(), round, &mut reported);
        rt.block_on(async {
            let ledger = Arc::new(SqliteLedger::open_in(dir.path()).await.unwrap());

            for (id, (version, state)) in &reported.grants {
                let stored = ledger
                    .grant(id)
                    .await
                    .unwrap()
                    .unwrap_or_else(|| panic!("round {round}: reported grant {id} is gone"));
                assert!(
                    stored.version() >= *version,
                    "round {round}: {id} went back a version"
                );
                if stored.version() == *version {
                    assert_eq!(stored.state(), *state, "round {round}: {id}");
                }
            }
            let records = ledger.audit(&AuditQuery::default()).await.unwrap();
            verify(&records, reported.head).unwrap_or_else(|e| panic!("round {round}: {e}"));
            // Every record reported kept is in the chain, and no record is in it twice.
            let mut in_log: HashMap<u64, usize> = HashMap::new();
            for r in &records {
                if let Some(n) = r.details_value()["kept"].as_u64() {
                    *in_log.entry(n).or_default() += 1;
                }
            }
            for n in &reported.kept {
                assert!(
                    in_log.contains_key(n),
                    "round {round}: record {n} was reported kept and is not in the log"
                );
            }
            assert!(
                in_log.values().all(|c| *c == 1),
                "round {round}: a record is in the log twice"
            );

            // A restarted service finds every live grant's deadline and ends it on time.
            let live = ledger.grants(&GrantFilter::live()).await.unwrap();
            let earliest = live.iter().filter_map(Grant::next_deadline).min();
            // The last moment any live grant ends: its expiry, or its pending timeout.
            let latest = live
                .iter()
                .map(|g| g.expires_at().unwrap_or(g.pending_until()))
                .max();
            let clock = Arc::new(ManualClock::new(SystemTime::now()));
            let grants = Grants::start(ledger.clone(), clock.clone(), policy(), None)
                .await
                .unwrap();
            assert_eq!(grants.next_deadline(), earliest, "round {round}");
            let usable = grants.usable(&alice().subject, None).await.unwrap();
            let active = live
                .iter()
                .filter(|g| g.state() == GrantState::Active)
                .count();
            assert_eq!(
                usable.len(),
                active,
                "round {round}: active grants are usable again"
            );

            let mut rx = grants.subscribe();
            if let Some(latest) = latest {
                clock.set(latest.to_system_time() + Duration::from_secs(1));
                let mut ended = 0;
                while ended < live.len() {
                    let e = tokio::time::timeout(Duration::from_secs(5), rx.recv())
                        .await
                        .expect("every live grant ends")
                        .unwrap();
                    if e.kind.ends_grant() {
                        ended += 1;
                    }
                }
            }
            assert_eq!(grants.next_deadline(), None);
            grants.verify_audit().await.unwrap();
            drop(grants);
            ledger.close().await;
        });
    }
    assert!(
        reported.kept.len() >= ROUNDS,
        "the child kept only {} records in {ROUNDS} rounds",
        reported.kept.len()
    );
    assert!(
        reported.lines >= ROUNDS,
        "the child committed only {} operations in {ROUNDS} rounds",
        reported.lines
    );
}
