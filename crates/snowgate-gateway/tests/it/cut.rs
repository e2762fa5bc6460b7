//! The cut, at its edges: a login still in flight when access ends gets no session, and a
//! query still running when access ends is cancelled before its session is closed.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use snowgate_gateway::{AuditLog, CloseReason, EndKind, EndReason, GatewayEvent, RecordFuture};
use snowgate_rig::clients::{spawn_python, ClientRun, PythonDriver};

use crate::common::*;
use crate::raw::{login_body, Answer, Raw};

/// Keeps every audit record in memory.
#[derive(Default)]
struct Kept(Mutex<Vec<GatewayEvent>>);

impl AuditLog for Kept {
    fn record<'a>(&'a self, event: &'a GatewayEvent) -> RecordFuture<'a> {
        Box::pin(async move {
            self.0.lock().unwrap().push(event.clone());
            Ok(())
        })
    }
}

/// A login whose answer Snowflake holds: authorized, its Snowflake session open, not yet
/// answered.
struct HeldLogin {
    rig: Rig,
    gw: RunningGateway,
    kept: Arc<Kept>,
    login: tokio::task::JoinHandle<Answer>,
}

async fn held_login() -> HeldLogin {
    let rig = rig(|_| {}).await;
    rig.auth
        .grant("G-late", "ANALYST", Duration::from_secs(600));
    let kept = Arc::new(Kept::default());
    let gw = start_audited_gateway_to(&rig.sf.url(), rig.auth.clone(), kept.clone(), |_| {});
    rig.sf.hold_logins().await.unwrap();
    let raw = Raw::new(&gw.url());
    let login = tokio::spawn(async move {
        raw.post(
            "/session/v1/login-request?roleName=ANALYST",
            None,
            login_body(),
        )
        .await
    });
    let front = &rig.sf;
    let opened = eventually(Duration::from_secs(20), || async {
        front.sessions().await.unwrap().iter().any(|s| s.open)
    })
    .await;
    assert!(opened, "the login never reached Snowflake");
    assert!(gw.gw.sessions().is_empty());
    HeldLogin {
        rig,
        gw,
        kept,
        login,
    }
}

impl HeldLogin {
    /// Lets Snowflake answer, then checks that no session survived the end of access.
    async fn answered_after(self, reason: EndReason) -> Answer {
        self.rig.sf.release_logins().await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(20), self.login)
            .await
            .expect("the login was answered")
            .unwrap();
        // Only what the test needs is shown: the answer carries handles.
        assert_eq!(
            answer.json["success"], false,
            "a login answered after the end of access got a session (Snowflake session {}, code {}, message {})",
            answer.json["data"]["sessionId"], answer.json["code"], answer.json["message"]
        );
        let m = answer.refused("390510");
        assert!(m.contains(&reason.sentence("ANALYST")), "{m}");
        let left = self.gw.gw.sessions();
        assert!(left.iter().all(|s| s.ended.is_some()), "{left:#?}");
        let sessions = self.rig.sessions().await;
        assert_eq!(sessions.len(), 1, "{sessions:#?}");
        assert!(
            !sessions[0].open,
            "Snowflake still has the session open: {sessions:#?}"
        );
        // The audit shows the session Snowflake opened, and why it was closed at once.
        let kept = self.kept.0.lock().unwrap().clone();
        let opened = kept
            .iter()
            .find_map(|e| match e {
                GatewayEvent::SessionOpened(info) if info.grant_id == "G-late" => Some(info.id),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no open record: {kept:#?}"));
        assert!(
            kept.iter().any(|e| matches!(
                e,
                GatewayEvent::SessionClosed { session, reason: CloseReason::Ended(r), .. }
                    if *session == opened && *r == reason
            )),
            "{kept:#?}"
        );
        answer
    }
}

#[tokio::test]
async fn a_login_answered_after_a_revoke_gets_no_session_and_is_closed_upstream() {
    let held = held_login().await;
    let reason = EndReason::new(EndKind::Revoked, SystemTime::now());
    // The engine marks the grant ended (new logins are refused), then ends its sessions:
    // none is registered yet.
    held.rig.auth.end("G-late", reason);
    assert_eq!(held.gw.gw.end_grant("G-late", reason).await, 0);
    held.answered_after(reason).await;
}

#[tokio::test]
async fn a_login_answered_after_a_sign_out_gets_no_session_and_is_closed_upstream() {
    let held = held_login().await;
    let reason = EndReason::new(EndKind::SignedOut, SystemTime::now());
    assert_eq!(held.gw.gw.end_all(reason).await, 0);
    let answer = held.answered_after(reason).await;
    assert!(answer.message().contains("(signed out)"));
}

/// The product promises a cut within a second of the revocation; the slack is for a loaded
/// two-core machine.
const CUT_WITH_SLACK: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_query_running_when_the_grant_is_revoked_is_cancelled_and_its_session_closed() {
    query_cancelled_at_revocation(PythonDriver::V5).await;
}

#[tokio::test]
async fn a_query_of_connector_4_running_when_the_grant_is_revoked_is_cancelled() {
    query_cancelled_at_revocation(PythonDriver::V4).await;
}

async fn query_cancelled_at_revocation(driver: PythonDriver) {
    let rig = rig(|_| {}).await;
    rig.auth
        .grant("G-long", "ANALYST", Duration::from_secs(600));
    let gw = rig.gateway();
    let run = ClientRun::password(&gw.url(), "me", TOOL_PASSWORD, "query")
        .role("ANALYST")
        .arg(["--sql", "SELECT SYSTEM$WAIT(40)"])
        .timeout(Duration::from_secs(90));
    let client = spawn_python(driver, &run).await.unwrap();
    let front = &rig.sf;
    let running = eventually(Duration::from_secs(30), || async {
        front
            .sessions()
            .await
            .unwrap()
            .iter()
            .any(|s| !s.running.is_empty())
    })
    .await;
    assert!(running, "the long query never started");

    let reason = EndReason::new(EndKind::Revoked, SystemTime::now());
    rig.auth.end("G-long", reason);
    let t0 = Instant::now();
    assert_eq!(gw.gw.end_grant("G-long", reason).await, 1);
    let result = tokio::time::timeout(CUT_WITH_SLACK, client.finish())
        .await
        .unwrap_or_else(|_| {
            panic!("the query was still running {CUT_WITH_SLACK:?} after the revocation")
        })
        .unwrap();
    let took = t0.elapsed();
    let (errno, msg) = py_error(&result);
    assert_eq!(errno, 604, "{result:#}");
    assert!(msg.contains("SQL execution canceled"), "{msg}");

    let s = rig.only_session().await;
    assert!(!s.open, "Snowflake still has the session open: {s:#?}");
    assert!(s.running.is_empty(), "{s:#?}");
    let last = s.statements.last().unwrap();
    assert_eq!(last.code.as_deref(), Some("000604"), "{s:#?}");
    eprintln!("revocation to canceled query: {took:?}");
}

#[tokio::test]
async fn an_async_query_running_when_the_grant_is_revoked_is_cancelled_by_its_query_id() {
    let rig = rig(|_| {}).await;
    rig.auth
        .grant("G-async", "ANALYST", Duration::from_secs(600));
    let gw = rig.gateway();
    let run = ClientRun::password(&gw.url(), "me", TOOL_PASSWORD, "async")
        .role("ANALYST")
        .arg(["--sql", "SELECT SYSTEM$WAIT(40)"])
        .timeout(Duration::from_secs(90));
    let mut client = spawn_python(PythonDriver::V5, &run).await.unwrap();
    // The tool has its answer (a query id) and is checking on the query: no request of it is
    // in flight, only the query runs on.
    let front = &rig.sf;
    let polling = eventually(Duration::from_secs(30), || async {
        front
            .sessions()
            .await
            .unwrap()
            .iter()
            .any(|s| !s.running.is_empty() && s.monitoring >= 1)
    })
    .await;
    assert!(
        polling,
        "the async query never started: {:#?}",
        rig.sessions().await
    );
    let query_id = rig.only_session().await.running[0].query_id.clone();

    let reason = EndReason::new(EndKind::Revoked, SystemTime::now());
    rig.auth.end("G-async", reason);
    let t0 = Instant::now();
    assert_eq!(gw.gw.end_grant("G-async", reason).await, 1);
    let cancelled = eventually(CUT_WITH_SLACK, || async {
        front.sessions().await.unwrap().iter().any(|s| {
            s.statements
                .iter()
                .any(|st| st.query_id.as_deref() == Some(query_id.as_str()))
        })
    })
    .await;
    assert!(
        cancelled,
        "the async query was still running {CUT_WITH_SLACK:?} after the revocation"
    );
    eprintln!("revocation to canceled async query: {:?}", t0.elapsed());
    let s = rig.only_session().await;
    assert!(!s.open, "Snowflake still has the session open: {s:#?}");
    assert!(s.running.is_empty(), "{s:#?}");
    let st = s
        .statements
        .iter()
        .find(|st| st.query_id.as_deref() == Some(query_id.as_str()))
        .unwrap();
    assert_eq!(st.code.as_deref(), Some("000604"), "{s:#?}");
    assert!(st.is_async);
    client.kill();
}
