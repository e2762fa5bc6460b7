//! The records a desktop reports to the team server's audit log: sign-in and sign-out, gateway
//! sessions, statements, their query ids and later result fetches (`POST /v1/audit/records`).
//!
//! The records themselves wait in the durable outbox in the local ledger
//! ([`snowgate_grants::Outbox`]): a record is in it before the gateway acts, and leaves it only
//! once the server took it, so neither a restart nor a long outage loses one. The team client
//! sends them in order, in batches of at most [`MAX_BATCH`], every [`FLUSH_EVERY`] or as soon as
//! [`FLUSH_AT`] wait. [`ReportQueue`] keeps the reporting's state: the backoff after a failed
//! send (from [`FIRST_BACKOFF`] doubling up to [`MAX_BACKOFF`]), the last problem, and how many
//! records were dropped; its in-memory queue and [`flush_once`] are the same logic over memory,
//! kept for its unit tests.
//!
//! Records are sent with the signed-in person's token and the server makes them the actor, so
//! records of another person (one who signed out before their records went out) are dropped
//! rather than sent as the one signed in now, and so are batches the server refuses for good
//! (400, 403). Both are counted in the status.

use std::collections::VecDeque;
use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use snowgate_grants::audit::AuditActor;
use snowgate_grants::AuditEntry;

/// A batch goes out at least this often while records wait.
pub const FLUSH_EVERY: Duration = Duration::from_secs(1);
/// A batch goes out at once when this many records wait.
pub const FLUSH_AT: usize = 50;
/// The most records one call carries (the server's limit).
pub const MAX_BATCH: usize = 100;
/// The most records kept waiting; beyond it the oldest are dropped.
pub const CAPACITY: usize = 10_000;
/// The wait after the first failed send.
pub const FIRST_BACKOFF: Duration = Duration::from_secs(1);
/// The longest wait between tries.
pub const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Why a batch was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendFailure {
    /// Worth trying again later (server away, signed out, rate limited, 5xx).
    Retry(String),
    /// The server refused the batch itself (400, or 403 for a grant that isn't this
    /// person's): trying again would not help.
    Refused(String),
}

/// Where batches go: the team server, or a fake in tests.
pub trait ReportSink {
    /// Sends one batch, in order.
    fn send(&self, batch: &[AuditEntry]) -> impl Future<Output = Result<(), SendFailure>> + Send;
}

/// The queue of records waiting for the server.
#[derive(Debug)]
pub struct ReportQueue {
    waiting: VecDeque<AuditEntry>,
    capacity: usize,
    dropped: u64,
    backoff: Option<Duration>,
    next_try: Option<Instant>,
    last_problem: Option<String>,
}

impl Default for ReportQueue {
    fn default() -> Self {
        ReportQueue::with_capacity(CAPACITY)
    }
}

impl ReportQueue {
    /// A queue keeping at most `capacity` records.
    pub fn with_capacity(capacity: usize) -> ReportQueue {
        ReportQueue {
            waiting: VecDeque::new(),
            capacity: capacity.max(1),
            dropped: 0,
            backoff: None,
            next_try: None,
            last_problem: None,
        }
    }

    /// Adds a record at the back. Returns how many old records were dropped to make room.
    pub fn push(&mut self, entry: AuditEntry) -> usize {
        self.waiting.push_back(entry);
        self.trim()
    }

    fn trim(&mut self) -> usize {
        let mut n = 0;
        while self.waiting.len() > self.capacity {
            self.waiting.pop_front();
            n += 1;
        }
        self.dropped += n as u64;
        n
    }

    /// How many records wait.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    /// How many records were dropped (overflow, or refused by the server) since the start.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Why the last send failed, until one succeeds.
    pub fn problem(&self) -> Option<&str> {
        self.last_problem.as_deref()
    }

    /// Whether a send may be tried at `now` (not inside a backoff).
    pub fn ready(&self, now: Instant) -> bool {
        self.next_try.is_none_or(|t| now >= t)
    }

    /// Takes the next batch for `subject` (the person signed in now): up to [`MAX_BATCH`]
    /// records from the front. Records of another person at the front are dropped (their
    /// number is the second value); records by Snowgate itself go with anyone's.
    pub fn take_batch(&mut self, subject: &str) -> (Vec<AuditEntry>, usize) {
        let mut batch = Vec::new();
        let mut foreign = 0;
        while batch.len() < MAX_BATCH {
            let Some(front) = self.waiting.front() else {
                break;
            };
            match &front.actor {
                AuditActor::User(s) if s.as_str() != subject => {
                    self.waiting.pop_front();
                    foreign += 1;
                }
                _ => batch.push(self.waiting.pop_front().expect("front exists")),
            }
        }
        self.dropped += foreign as u64;
        (batch, foreign)
    }

    /// The batch went out: the backoff ends.
    pub fn sent(&mut self) {
        self.backoff = None;
        self.next_try = None;
        self.last_problem = None;
    }

    /// The batch did not go out: it goes back to the front (the oldest dropped if that makes
    /// too many), and the next try waits for the backoff. Returns how many were dropped.
    pub fn failed(&mut self, batch: Vec<AuditEntry>, problem: String, now: Instant) -> usize {
        for e in batch.into_iter().rev() {
            self.waiting.push_front(e);
        }
        let wait = match self.backoff {
            None => FIRST_BACKOFF,
            Some(b) => (b * 2).min(MAX_BACKOFF),
        };
        self.backoff = Some(wait);
        self.next_try = Some(now + wait);
        self.last_problem = Some(problem);
        self.trim()
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

    /// Counts records dropped elsewhere (refused by the server, or another person's).
    pub fn count_dropped(&mut self, n: u64) {
        self.dropped += n;
    }

    /// The server refused the batch: it is dropped (and counted), and sending goes on.
    pub fn refused(&mut self, batch: Vec<AuditEntry>, problem: String) {
        self.dropped += batch.len() as u64;
        self.backoff = None;
        self.next_try = None;
        self.last_problem = Some(problem);
    }
}

/// What one [`flush_once`] did.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Flushed {
    /// Records the server took.
    pub sent: usize,
    /// Records dropped: another person's, refused by the server, or overflow on requeue.
    pub dropped: usize,
    /// Why the send failed, if it did.
    pub problem: Option<String>,
}

/// Sends one batch from `queue` (behind its lock) through `sink` as `subject`, if the queue is
/// not inside a backoff at `now`. The lock is not held while sending.
pub async fn flush_once<S: ReportSink>(
    queue: &std::sync::Mutex<ReportQueue>,
    sink: &S,
    subject: &str,
    now: Instant,
) -> Flushed {
    let (batch, foreign) = {
        let mut q = queue.lock().unwrap();
        if !q.ready(now) {
            return Flushed::default();
        }
        q.take_batch(subject)
    };
    let mut out = Flushed {
        dropped: foreign,
        ..Flushed::default()
    };
    if batch.is_empty() {
        return out;
    }
    let n = batch.len();
    match sink.send(&batch).await {
        Ok(()) => {
            queue.lock().unwrap().sent();
            out.sent = n;
        }
        Err(SendFailure::Retry(p)) => {
            out.dropped += queue.lock().unwrap().failed(batch, p.clone(), now);
            out.problem = Some(p);
        }
        Err(SendFailure::Refused(p)) => {
            queue.lock().unwrap().refused(batch, p.clone());
            out.dropped += n;
            out.problem = Some(p);
        }
    }
    out
}

/// A record as `POST /v1/audit/records` takes it.
pub fn wire(entry: &AuditEntry) -> Value {
    let mut v = json!({
        "kind": entry.kind.as_str(),
        "at": entry.at.to_rfc3339(),
        "details": entry.details,
    });
    if let Some(g) = &entry.grant_id {
        v["grant_id"] = json!(g.as_str());
    }
    if let Some(r) = &entry.role {
        v["role"] = json!(r.as_str());
    }
    v
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::SystemTime;

    use snowgate_grants::{Actor, Subject};

    use super::*;

    fn sign_in(who: &str) -> AuditEntry {
        let actor = Actor::new(Subject::new(who).unwrap(), None, vec![]);
        AuditEntry::sign_in(SystemTime::now(), &actor)
    }

    fn system(why: &str) -> AuditEntry {
        let mut e = sign_in("alice");
        e.actor = AuditActor::System;
        e.details = json!({ "why": why });
        e
    }

    /// A sink that records what it got and answers as told.
    #[derive(Default, Clone)]
    struct FakeSink {
        got: Arc<Mutex<Vec<Vec<AuditEntry>>>>,
        answer: Arc<Mutex<Option<SendFailure>>>,
    }

    impl FakeSink {
        fn answer(&self, a: Option<SendFailure>) {
            *self.answer.lock().unwrap() = a;
        }
        fn batches(&self) -> Vec<usize> {
            self.got.lock().unwrap().iter().map(Vec::len).collect()
        }
    }

    impl ReportSink for FakeSink {
        async fn send(&self, batch: &[AuditEntry]) -> Result<(), SendFailure> {
            match self.answer.lock().unwrap().clone() {
                Some(f) => Err(f),
                None => {
                    self.got.lock().unwrap().push(batch.to_vec());
                    Ok(())
                }
            }
        }
    }

    #[tokio::test]
    async fn batches_go_out_in_order_and_at_most_max_batch_at_a_time() {
        let q = Mutex::new(ReportQueue::default());
        for _ in 0..(MAX_BATCH + 20) {
            q.lock().unwrap().push(sign_in("alice"));
        }
        let sink = FakeSink::default();
        let now = Instant::now();
        let first = flush_once(&q, &sink, "alice", now).await;
        assert_eq!(first.sent, MAX_BATCH);
        let second = flush_once(&q, &sink, "alice", now).await;
        assert_eq!(second.sent, 20);
        assert_eq!(sink.batches(), [MAX_BATCH, 20]);
        assert!(q.lock().unwrap().is_empty());
        assert_eq!(
            flush_once(&q, &sink, "alice", now).await,
            Flushed::default()
        );
    }

    #[tokio::test]
    async fn a_failed_send_keeps_the_records_in_order_and_backs_off_doubling() {
        let q = Mutex::new(ReportQueue::default());
        q.lock().unwrap().push(system("first"));
        q.lock().unwrap().push(system("second"));
        let sink = FakeSink::default();
        sink.answer(Some(SendFailure::Retry("away".into())));
        let t0 = Instant::now();
        let f = flush_once(&q, &sink, "alice", t0).await;
        assert_eq!(f.problem.as_deref(), Some("away"));
        assert_eq!(q.lock().unwrap().len(), 2);
        assert_eq!(q.lock().unwrap().problem(), Some("away"));
        // Inside the backoff nothing is tried.
        assert!(!q.lock().unwrap().ready(t0 + FIRST_BACKOFF / 2));
        let t1 = t0 + FIRST_BACKOFF;
        assert!(q.lock().unwrap().ready(t1));
        flush_once(&q, &sink, "alice", t1).await;
        // The second failure waits twice as long.
        assert!(!q.lock().unwrap().ready(t1 + FIRST_BACKOFF));
        assert!(q.lock().unwrap().ready(t1 + FIRST_BACKOFF * 2));
        // Back up: both go, oldest first, and the backoff ends.
        sink.answer(None);
        let f = flush_once(&q, &sink, "alice", t1 + FIRST_BACKOFF * 2).await;
        assert_eq!(f.sent, 2);
        let got = sink.got.lock().unwrap()[0].clone();
        assert_eq!(got[0].details["why"], "first");
        assert_eq!(got[1].details["why"], "second");
        assert!(q.lock().unwrap().problem().is_none());
        assert!(q.lock().unwrap().ready(t1 + FIRST_BACKOFF * 2));
    }

    #[test]
    fn the_backoff_stops_growing_at_the_maximum() {
        let mut q = ReportQueue::default();
        let now = Instant::now();
        for _ in 0..20 {
            q.failed(vec![], "away".into(), now);
        }
        assert!(!q.ready(now + MAX_BACKOFF - Duration::from_millis(1)));
        assert!(q.ready(now + MAX_BACKOFF));
    }

    #[test]
    fn an_overflowing_queue_drops_the_oldest_and_counts_them() {
        let mut q = ReportQueue::with_capacity(3);
        for why in ["1", "2", "3"] {
            assert_eq!(q.push(system(why)), 0);
        }
        assert_eq!(q.push(system("4")), 1);
        assert_eq!(q.len(), 3);
        assert_eq!(q.dropped(), 1);
        let (batch, _) = q.take_batch("alice");
        let whys: Vec<&str> = batch
            .iter()
            .map(|e| e.details["why"].as_str().unwrap())
            .collect();
        assert_eq!(whys, ["2", "3", "4"]);
        // A failed batch going back while new records came in also drops the oldest.
        q.push(system("5"));
        q.push(system("6"));
        assert_eq!(q.failed(batch, "away".into(), Instant::now()), 2);
        assert_eq!(q.dropped(), 3);
        let (batch, _) = q.take_batch("alice");
        let whys: Vec<&str> = batch
            .iter()
            .map(|e| e.details["why"].as_str().unwrap())
            .collect();
        assert_eq!(whys, ["4", "5", "6"]);
    }

    #[tokio::test]
    async fn a_refused_batch_is_dropped_and_sending_goes_on() {
        let q = Mutex::new(ReportQueue::default());
        q.lock().unwrap().push(sign_in("alice"));
        let sink = FakeSink::default();
        sink.answer(Some(SendFailure::Refused("bad kind".into())));
        let now = Instant::now();
        let f = flush_once(&q, &sink, "alice", now).await;
        assert_eq!(f.dropped, 1);
        assert!(q.lock().unwrap().is_empty());
        assert!(q.lock().unwrap().ready(now));
        assert_eq!(q.lock().unwrap().dropped(), 1);
    }

    #[tokio::test]
    async fn another_persons_records_are_not_sent_as_the_one_signed_in() {
        let q = Mutex::new(ReportQueue::default());
        q.lock().unwrap().push(sign_in("alice"));
        q.lock().unwrap().push(system("grant expired"));
        q.lock().unwrap().push(sign_in("bob"));
        let sink = FakeSink::default();
        let f = flush_once(&q, &sink, "bob", Instant::now()).await;
        assert_eq!((f.sent, f.dropped), (2, 1));
        let got = sink.got.lock().unwrap()[0].clone();
        assert_eq!(got[0].actor, AuditActor::System);
        assert_eq!(got[1].actor, AuditActor::User(Subject::new("bob").unwrap()));
    }

    #[test]
    fn the_wire_form_has_no_actor() {
        let v = wire(&sign_in("alice"));
        assert_eq!(v["kind"], "auth.sign_in");
        assert!(v.get("actor").is_none());
        assert!(v["at"].as_str().unwrap().ends_with('Z'));
    }
}
