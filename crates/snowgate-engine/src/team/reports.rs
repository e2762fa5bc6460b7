//! The team client's side of the audit outbox: the desktop's own records (sign-in and
//! sign-out, gateway sessions and statements) are committed to the durable outbox in the local
//! ledger before the gateway acts ([`TeamClient::report_durably`]), and sent to
//! `POST /v1/audit/records` by [`TeamClient::report_audit`]: a batch every second, or as soon as
//! enough wait, with the signed-in person's token, by [`audit::flush`] (batching, backoff,
//! narrowing a refused batch down to the record at fault). Another person's records wait for
//! that person's next sign-in. The counts the status shows are read back after each send.

use std::time::{Duration, Instant};

use snowgate_grants::team_api::ReportAnswer;
use snowgate_grants::{AuditEntry, Outbox, Subject, Waiting};

use super::audit::{self, ReportSink, SendFailure};
use super::{TeamClient, TeamError};

impl TeamClient {
    /// The person signed in now, whose token sends the records.
    fn signed_in_subject(&self) -> Option<Subject> {
        self.inner
            .identity
            .read()
            .unwrap()
            .as_ref()
            .and_then(|i| i.profile())
            .and_then(|p| Subject::new(p.subject).ok())
    }

    /// Reads the outbox's counts again, for the status.
    async fn recount(&self, outbox: &Outbox) {
        let subject = self.signed_in_subject();
        match outbox.counts(subject.as_ref()).await {
            Ok(c) => *self.inner.counts.lock().unwrap() = c,
            Err(e) => tracing::warn!(error = %e, "could not count the audit outbox"),
        }
    }

    /// Keeps the desktop's audit records in `outbox` (in the local ledger) until the server
    /// has them; `Err` (the ledger could not be opened) makes every record fail, so the
    /// gateway refuses statements rather than run them unrecorded.
    pub async fn set_outbox(&self, outbox: Result<Outbox, String>) {
        if let Ok(o) = &outbox {
            self.recount(o).await;
        }
        *self.inner.outbox.write().unwrap() = outbox;
        self.inner.reports_ready.notify_one();
    }

    fn outbox(&self) -> Result<Outbox, String> {
        self.inner.outbox.read().unwrap().clone()
    }

    /// Puts an audit record in the durable outbox for the server's log. `Ok` once it is
    /// committed to the local ledger (it survives a restart and any outage); waits, never drops.
    pub async fn report_durably(&self, entry: AuditEntry) -> Result<(), String> {
        let outbox = self.outbox()?;
        outbox
            .push(std::slice::from_ref(&entry))
            .await
            .map_err(|e| e.to_string())?;
        let waiting = {
            let mut c = self.inner.counts.lock().unwrap();
            c.waiting += 1;
            c.waiting
        };
        if waiting >= audit::FLUSH_AT as u64 {
            self.inner.reports_ready.notify_one();
        }
        Ok(())
    }

    /// Why audit records can't be kept for the server right now, if they can't.
    pub fn outbox_problem(&self) -> Option<String> {
        self.outbox().err()
    }

    /// Sends the audit records in the outbox: a batch every second, or as soon as enough
    /// wait, retrying with a backoff while the server can't take them. Runs until the broker
    /// stops.
    pub async fn report_audit(self) {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(audit::FLUSH_EVERY) => {}
                _ = self.inner.reports_ready.notified() => {}
            }
            self.flush_reports(Instant::now()).await;
        }
    }

    /// Sends what the signed-in person may send, batch after batch, until nothing of theirs
    /// waits or a send fails ([`audit::flush`]). Returns whether everything of theirs went out.
    /// While nobody is signed in, records wait.
    async fn flush_reports(&self, now: Instant) -> bool {
        let Ok(outbox) = self.outbox() else {
            return false;
        };
        if self.inner.counts.lock().unwrap().waiting == 0 {
            return true;
        }
        let Some(subject) = self.signed_in_subject() else {
            return false;
        };
        let flushed = audit::flush(&outbox, &self.inner.reports, &Sink(self), &subject, now).await;
        if flushed.refused > 0 {
            tracing::warn!(
                refused = flushed.refused,
                problem = flushed.problem.as_deref().unwrap_or(""),
                "the team server refused audit records; they are kept in the local outbox, marked refused"
            );
        } else if let Some(p) = &flushed.problem {
            tracing::warn!(problem = %p, "audit records could not go to the team server yet; trying again");
        }
        self.recount(&outbox).await;
        flushed.done
    }

    /// Best effort at shutdown: sends what waits, for at most `within`, ignoring the backoff.
    /// What is left stays in the outbox for the next start.
    pub async fn flush_reports_now(&self, within: Duration) {
        if self.inner.counts.lock().unwrap().waiting == 0 {
            return;
        }
        let at = Instant::now() + audit::MAX_BACKOFF;
        if tokio::time::timeout(within, self.flush_reports(at))
            .await
            .map_or(true, |all| !all)
        {
            let left = self.inner.counts.lock().unwrap().waiting;
            if left > 0 {
                tracing::info!(
                    left,
                    server = %self.inner.server_text,
                    "stopping with audit records the team server did not take yet; they wait in the outbox"
                );
            }
        }
    }
}

/// The team server as the sink of the audit outbox.
struct Sink<'a>(&'a TeamClient);

impl ReportSink for Sink<'_> {
    async fn send(&self, source: &str, batch: &[Waiting]) -> Result<(), SendFailure> {
        match self
            .0
            .post_json::<ReportAnswer>("/v1/audit/records", &audit::report_body(source, batch))
            .await
        {
            Ok(_) => Ok(()),
            // The batch itself is wrong (400), or names a grant that isn't this person's
            // (403): sending it again would not help.
            Err(TeamError::Refused {
                status: 400 | 403,
                message,
                ..
            }) => Err(SendFailure::Refused(message)),
            Err(e) => Err(SendFailure::Retry(e.to_string())),
        }
    }
}
