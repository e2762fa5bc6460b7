//! The records a desktop reports to the team server's audit log: sign-in and sign-out, gateway
//! sessions, statements, their query ids and later result fetches (`POST /v1/audit/records`).
//!
//! The records themselves wait in the durable outbox in the local ledger
//! ([`snowgate_grants::Outbox`]): a record is in it before the gateway acts, and leaves it only
//! once the server took it. [`flush`] sends them in order, in batches of at most [`MAX_BATCH`];
//! the team client calls it every [`FLUSH_EVERY`] or as soon as [`FLUSH_AT`] wait. [`Reporting`]
//! keeps the sending's state: the backoff after a failed send (from [`FIRST_BACKOFF`] doubling up
//! to [`MAX_BACKOFF`]), the last problem, and how far a refused batch has been narrowed.
//!
//! Delivery is exactly-once. Each record goes with its ledger's source id and its outbox id
//! ([`report_body`]), and the server acknowledges a record it already has without appending it
//! again. So when a send's answer is lost, or the broker dies between the server's answer and
//! the removal from the outbox, the batch simply goes again.
//!
//! Nothing is dropped. Records are sent with the signed-in person's token and the server makes
//! them the actor, so another person's records (one who signed out before they went out) wait
//! in the outbox until that person signs in again. A batch the server refuses for good (400,
//! 403) is narrowed, halving, until the one record it refuses is found; that record stays in
//! the outbox marked refused with the server's reason, is not sent again, and the status
//! counts it. The records around it go on.

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use snowgate_grants::team_api::{ReportBody, ReportedRecord};
use snowgate_grants::{AuditEntry, Outbox, Subject, Timestamp, Waiting};

/// A batch goes out at least this often while records wait.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// A batch goes out at once when this many records wait.
pub const FLUSH_AT: usize = 50;
/// The most records one call carries (the server's limit).
pub const MAX_BATCH: usize = 100;
/// The wait after the first failed send.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between tries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Why a batch was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendFailure {
    /// Worth trying again later (server away, signed out, rate limited, 5xx).
    Retry(String),
    /// The server refused the batch itself (400, or 403 for a grant that isn't this
    /// person's): sending the same records again would not help.
    Refused(String),
}

/// Where batches go: the team server, or a fake in the unit tests of [`flush`].
pub trait ReportSink {
    /// Sends one batch of `source`'s records, in order.
    fn send(
        &self,
        source: &str,
        batch: &[Waiting],
    ) -> impl Future<Output = Result<(), SendFailure>> + Send;
}

/// The state of the sending (the records themselves are in the outbox).
#[derive(Debug, Default)]
pub struct Reporting {
    backoff: Option<Duration>,
    next_try: Option<Instant>,
    last_problem: Option<String>,
    /// The batch size while a refused batch is narrowed down to the record refused.
    narrowed: Option<usize>,
}

impl Reporting {
    /// Why the last send failed, until one succeeds.
    pub fn problem(&self) -> Option<&str> {
        self.last_problem.as_deref()
    }

    /// Whether a send may be tried at `now` (not inside a backoff).
    pub fn ready(&self, now: Instant) -> bool {
        self.next_try.is_none_or(|t| now >= t)
    }

    fn batch_size(&self) -> usize {
        self.narrowed.unwrap_or(MAX_BATCH)
    }

    /// A batch went out: the backoff ends.
    fn sent(&mut self) {
        self.backoff = None;
        self.next_try = None;
        self.last_problem = None;
    }

    /// A send failed: the next try waits for the backoff (the records stay where they are).
    pub fn backoff(&mut self, problem: String, now: Instant) {
        let wait = match self.backoff {
            None => FIRST_BACKOFF,
            Some(b) => (b * 2).min(MAX_BACKOFF),
        };
        self.backoff = Some(wait);
        self.next_try = Some(now + wait);
        self.last_problem = Some(problem);
    }
}

/// What one [`flush`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Flushed {
    /// Records the server took (appended now, or already had).
    pub sent: usize,
    /// Records the server refused for good, now marked refused in the outbox.
    pub refused: usize,
    /// Whether every record `subject` may send went out (none left but other people's and
    /// refused ones).
    pub done: bool,
    /// Why sending stopped early, if it did.
    pub problem: Option<String>,
}

/// Sends what waits in `outbox` for `subject` (the person signed in now) through `sink`, batch
/// after batch, oldest first, until nothing is left for them or a send fails; nothing is tried
/// inside a backoff at `now`. A record leaves the outbox only after the sink took it. The lock
/// on `reporting` is not held while sending.
pub async fn flush<S: ReportSink>(
    outbox: &Outbox,
    reporting: &Mutex<Reporting>,
    sink: &S,
    subject: &Subject,
    now: Instant,
) -> Flushed {
    let mut out = Flushed::default();
    let source = match outbox.source().await {
        Ok(s) => s,
        Err(e) => {
            out.problem = Some(e.to_string());
            return out;
        }
    };
    loop {
        let size = {
            let r = reporting.lock().unwrap();
            if !r.ready(now) {
                return out;
            }
            r.batch_size()
        };
        let batch = match outbox.peek_for(subject, size as u32).await {
            Ok(b) => b,
            Err(e) => {
                out.problem = Some(e.to_string());
                return out;
            }
        };
        if batch.is_empty() {
            out.done = true;
            return out;
        }
        let ids: Vec<u64> = batch.iter().map(|w| w.id).collect();
        match sink.send(&source, &batch).await {
            Ok(()) => {
                reporting.lock().unwrap().sent();
                // If this fails the records go again; the server knows them and takes them once.
                if let Err(e) = outbox.remove(&ids).await {
                    out.problem = Some(e.to_string());
                    return out;
                }
                out.sent += ids.len();
            }
            Err(SendFailure::Retry(p)) => {
                reporting.lock().unwrap().backoff(p.clone(), now);
                out.problem = Some(p);
                return out;
            }
            Err(SendFailure::Refused(p)) if ids.len() > 1 => {
                // One record (or more) spoils the batch: look for it in smaller batches, so
                // the good records around it still go.
                reporting.lock().unwrap().narrowed = Some(ids.len() / 2);
                out.problem = Some(p);
            }
            Err(SendFailure::Refused(p)) => {
                if let Err(e) = outbox
                    .refuse(&ids, &p, Timestamp::from(SystemTime::now()))
                    .await
                {
                    out.problem = Some(e.to_string());
                    return out;
                }
                let mut r = reporting.lock().unwrap();
                r.narrowed = None;
                r.last_problem = Some(p.clone());
                out.refused += 1;
                out.problem = Some(p);
            }
        }
    }
}

/// The body of `POST /v1/audit/records` for `source`'s `batch`: each record with its
/// `source_seq`, which with `source` names it for the server, so a batch sent again is taken
/// once.
pub fn report_body(source: &str, batch: &[Waiting]) -> ReportBody {
    ReportBody {
        source: Some(source.to_string()),
        records: batch.iter().map(|w| wire(w.id, &w.entry)).collect(),
    }
}

/// Record `source_seq` as `POST /v1/audit/records` takes it (without its actor: the server
/// makes the caller the actor).
fn wire(source_seq: u64, entry: &AuditEntry) -> ReportedRecord {
    ReportedRecord {
        source_seq: Some(source_seq),
        kind: entry.kind.as_str().to_string(),
        at: entry.at.to_rfc3339(),
        actor: None,
        grant_id: entry.grant_id.as_ref().map(|g| g.as_str().to_string()),
        role: entry.role.as_ref().map(|r| r.as_str().to_string()),
        details: Some(entry.details.clone()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use serde_json::{json, Value};
    use snowgate_grants::audit::AuditActor;
    use snowgate_grants::{Actor, SqliteLedger};

    use super::*;

    fn by(who: Option<&str>, n: u64) -> AuditEntry {
        let subject = Subject::new(who.unwrap_or("nobody")).unwrap();
        let mut e = AuditEntry::sign_in(SystemTime::now(), &Actor::new(subject, None, vec![]));
        if who.is_none() {
            e.actor = AuditActor::System;
        }
        e.details = json!({ "n": n });
        e
    }

    fn alice() -> Subject {
        Subject::new("alice").unwrap()
    }

    async fn outbox(entries: &[AuditEntry]) -> (tempfile::TempDir, Outbox) {
        let dir = tempfile::tempdir().unwrap();
        let ledger = SqliteLedger::open(&dir.path().join("ledger.sqlite3"))
            .await
            .unwrap();
        let o = ledger.outbox();
        o.push(entries).await.unwrap();
        (dir, o)
    }

    fn ns(w: &[Waiting]) -> Vec<u64> {
        w.iter()
            .map(|w| w.entry.details["n"].as_u64().unwrap())
            .collect()
    }

    /// A sink that keeps the bodies it took, and answers as told: a failure for every
    /// send, or a refusal of any batch holding a given record.
    #[derive(Default, Clone)]
    struct FakeSink {
        got: Arc<Mutex<Vec<Value>>>,
        fail: Arc<Mutex<Option<SendFailure>>>,
        refuse_n: Arc<Mutex<Option<u64>>>,
        tries: Arc<Mutex<usize>>,
    }

    impl FakeSink {
        fn fail(&self, f: Option<SendFailure>) {
            *self.fail.lock().unwrap() = f;
        }
        fn sizes(&self) -> Vec<usize> {
            let got = self.got.lock().unwrap();
            got.iter()
                .map(|b| b["records"].as_array().unwrap().len())
                .collect()
        }
        fn taken(&self) -> Vec<u64> {
            let got = self.got.lock().unwrap();
            got.iter()
                .flat_map(|b| b["records"].as_array().unwrap().clone())
                .map(|r| r["details"]["n"].as_u64().unwrap())
                .collect()
        }
    }

    impl ReportSink for FakeSink {
        async fn send(&self, source: &str, batch: &[Waiting]) -> Result<(), SendFailure> {
            *self.tries.lock().unwrap() += 1;
            if let Some(f) = self.fail.lock().unwrap().clone() {
                return Err(f);
            }
            let bad = *self.refuse_n.lock().unwrap();
            if ns(batch).iter().any(|n| Some(*n) == bad) {
                return Err(SendFailure::Refused("records[0]: there is no grant".into()));
            }
            let body = serde_json::to_value(report_body(source, batch)).unwrap();
            self.got.lock().unwrap().push(body);
            Ok(())
        }
    }

    #[tokio::test]
    async fn batches_go_out_in_order_and_at_most_max_batch_at_a_time() {
        let entries: Vec<AuditEntry> = (0..(MAX_BATCH as u64 + 20))
            .map(|n| by(Some("alice"), n))
            .collect();
        let (_dir, o) = outbox(&entries).await;
        let r = Mutex::new(Reporting::default());
        let sink = FakeSink::default();
        let f = flush(&o, &r, &sink, &alice(), Instant::now()).await;
        assert_eq!((f.sent, f.done), (MAX_BATCH + 20, true));
        assert_eq!(sink.sizes(), [MAX_BATCH, 20]);
        assert_eq!(
            sink.taken(),
            (0..(MAX_BATCH as u64 + 20)).collect::<Vec<_>>()
        );
        assert_eq!(o.waiting().await.unwrap(), 0);
        let again = flush(&o, &r, &sink, &alice(), Instant::now()).await;
        assert_eq!((again.sent, again.done), (0, true));
    }

    #[tokio::test]
    async fn every_record_goes_with_the_ledgers_source_and_its_own_growing_seq() {
        let (_dir, o) = outbox(&[by(Some("alice"), 1), by(Some("alice"), 2)]).await;
        let sink = FakeSink::default();
        flush(&o, &Mutex::default(), &sink, &alice(), Instant::now()).await;
        let body = sink.got.lock().unwrap()[0].clone();
        assert_eq!(body["source"], json!(o.source().await.unwrap()));
        let seqs: Vec<u64> = body["records"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["source_seq"].as_u64().unwrap())
            .collect();
        assert!(seqs[0] >= 1 && seqs[0] < seqs[1], "{seqs:?}");
        assert!(body["records"][0].get("actor").is_none());
        assert!(body["records"][0]["at"].as_str().unwrap().ends_with('Z'));
    }

    #[tokio::test]
    async fn a_failed_send_keeps_the_records_in_order_and_backs_off_doubling() {
        let (_dir, o) = outbox(&[by(None, 1), by(None, 2)]).await;
        let r = Mutex::new(Reporting::default());
        let sink = FakeSink::default();
        sink.fail(Some(SendFailure::Retry("away".into())));
        let t0 = Instant::now();
        let f = flush(&o, &r, &sink, &alice(), t0).await;
        assert_eq!((f.problem.as_deref(), f.done), (Some("away"), false));
        assert_eq!(o.waiting().await.unwrap(), 2);
        assert_eq!(r.lock().unwrap().problem(), Some("away"));
        // Inside the backoff nothing is tried.
        let tries = *sink.tries.lock().unwrap();
        flush(&o, &r, &sink, &alice(), t0 + FIRST_BACKOFF / 2).await;
        assert_eq!(*sink.tries.lock().unwrap(), tries);
        let t1 = t0 + FIRST_BACKOFF;
        flush(&o, &r, &sink, &alice(), t1).await;
        // The second failure waits twice as long.
        assert!(!r.lock().unwrap().ready(t1 + FIRST_BACKOFF));
        assert!(r.lock().unwrap().ready(t1 + FIRST_BACKOFF * 2));
        // Back up: both go, oldest first, and the backoff ends.
        sink.fail(None);
        let f = flush(&o, &r, &sink, &alice(), t1 + FIRST_BACKOFF * 2).await;
        assert_eq!(f.sent, 2);
        assert_eq!(sink.taken(), [1, 2]);
        assert!(r.lock().unwrap().problem().is_none());
        assert_eq!(o.waiting().await.unwrap(), 0);
    }

    #[test]
    fn the_backoff_stops_growing_at_the_maximum() {
        let mut r = Reporting::default();
        let now = Instant::now();
        for _ in 0..20 {
            r.backoff("away".into(), now);
        }
        assert!(!r.ready(now + MAX_BACKOFF - Duration::from_millis(1)));
        assert!(r.ready(now + MAX_BACKOFF));
    }

    #[tokio::test]
    async fn a_refused_record_is_kept_with_the_reason_and_the_records_around_it_go() {
        let entries: Vec<AuditEntry> = (0..10).map(|n| by(Some("alice"), n)).collect();
        let (_dir, o) = outbox(&entries).await;
        let r = Mutex::new(Reporting::default());
        let sink = FakeSink::default();
        *sink.refuse_n.lock().unwrap() = Some(6);
        let f = flush(&o, &r, &sink, &alice(), Instant::now()).await;
        assert_eq!((f.sent, f.refused, f.done), (9, 1, true));
        assert_eq!(sink.taken(), [0, 1, 2, 3, 4, 5, 7, 8, 9]);
        assert_eq!(o.waiting().await.unwrap(), 0);
        let counts = o.counts(Some(&alice())).await.unwrap();
        assert_eq!(counts.refused, 1);
        assert_eq!(
            counts.last_refusal.as_deref(),
            Some("records[0]: there is no grant")
        );
        // It is not offered again, and sending goes on with full batches.
        o.push(&[by(Some("alice"), 10)]).await.unwrap();
        let f = flush(&o, &r, &sink, &alice(), Instant::now()).await;
        assert_eq!((f.sent, f.refused), (1, 0));
        assert_eq!(r.lock().unwrap().batch_size(), MAX_BATCH);
    }

    #[tokio::test]
    async fn another_persons_records_wait_until_that_person_signs_in() {
        let (_dir, o) = outbox(&[by(Some("alice"), 1), by(None, 2), by(Some("bob"), 3)]).await;
        let r = Mutex::new(Reporting::default());
        let sink = FakeSink::default();
        let bob = Subject::new("bob").unwrap();
        let f = flush(&o, &r, &sink, &bob, Instant::now()).await;
        assert_eq!((f.sent, f.done), (2, true));
        assert_eq!(sink.taken(), [2, 3]);
        let counts = o.counts(Some(&bob)).await.unwrap();
        assert_eq!((counts.waiting, counts.others, counts.refused), (1, 1, 0));
        let f = flush(&o, &r, &sink, &alice(), Instant::now()).await;
        assert_eq!(f.sent, 1);
        assert_eq!(sink.taken(), [2, 3, 1]);
        assert_eq!(o.waiting().await.unwrap(), 0);
    }
}
