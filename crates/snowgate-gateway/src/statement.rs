//! The second half of a statement's audit: its query id, read from the answer as it streams to
//! the tool. (The first half, [`GatewayEvent::Statement`], was recorded before the request went
//! upstream; see [`crate::passthrough`].)
//!
//! [`StatementTap`] wraps the upstream answer's body. It passes every frame on unchanged and
//! lets a [`QueryIdScanner`](crate::query_id::QueryIdScanner) look at the bytes; the
//! [`GatewayEvent::StatementAnswered`] is recorded as soon as the query id is seen, or when the
//! answer ends or is dropped without one (then with `query_id: None`). Nothing is buffered, and
//! the answer does not wait for that record: a task of its own, run once the answer's bytes
//! went to the tool, hands it to the audit log with
//! [`AuditLog::record_later`](crate::AuditLog::record_later). In solo mode that holds it in the
//! ledger's journal for the next write there: the next statement's record, or one flush for
//! all the query ids recorded in the same turn of the serving thread's event loop.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::SystemTime;

use std::sync::Arc;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::cancel::InFlightGuard;
use crate::events::{EventSink, GatewayEvent, SessionId};
use crate::handle_table::Session;
use crate::query_id::{GzipQueryIdScanner, QueryIdScanner};

/// A recorded statement waiting for its query id.
pub(crate) struct PendingStatement {
    pub events: EventSink,
    pub session: SessionId,
    pub grant_id: String,
    pub request_id: Option<String>,
    /// For an asynchronous statement, its session: the query runs on after this answer, so
    /// its id is kept for a cut to abort ([`crate::cancel`]).
    pub detached: Option<Arc<Session>>,
    /// Keeps the request among the session's running queries until its answer has been read
    /// for its query id (then an asynchronous query is kept by id, with no gap between).
    pub in_flight: Option<InFlightGuard>,
}

impl PendingStatement {
    fn emit(self, query_id: Option<String>) {
        if let (Some(session), Some(q)) = (&self.detached, &query_id) {
            session.running.detached(q);
        }
        // Only now does the request leave the running queries, so a cut sees no gap.
        drop(self.in_flight);
        let event = GatewayEvent::StatementAnswered {
            session: self.session,
            grant_id: self.grant_id,
            request_id: self.request_id,
            query_id,
            at: SystemTime::now(),
        };
        match tokio::runtime::Handle::try_current() {
            // A task of its own, so the record is made after the answer's bytes went to the
            // tool (the task runs once the connection's task yields) and not on their way. A
            // task that never runs (the runtime stopping) still records it, when dropped.
            Ok(rt) => {
                let deferred = Deferred {
                    events: self.events,
                    event: Some(event),
                };
                drop(rt.spawn(async move { drop(deferred) }));
            }
            Err(_) => tracing::error!("no runtime to record a statement's query id on"),
        }
    }
}

/// A statement's query id record, kept when this is dropped.
struct Deferred {
    events: EventSink,
    event: Option<GatewayEvent>,
}

impl Drop for Deferred {
    fn drop(&mut self) {
        if let Some(event) = self.event.take() {
            self.events.record_later(event);
        }
    }
}

enum Scanner {
    Plain(QueryIdScanner),
    Gzip(Box<GzipQueryIdScanner>),
}

impl Scanner {
    fn feed(&mut self, bytes: &[u8]) {
        match self {
            Scanner::Plain(s) => s.feed(bytes),
            Scanner::Gzip(s) => s.feed(bytes),
        }
    }

    fn found(&self) -> Option<&str> {
        match self {
            Scanner::Plain(s) => s.found(),
            Scanner::Gzip(s) => s.found(),
        }
    }

    fn is_done(&self) -> bool {
        match self {
            Scanner::Plain(s) => s.is_done(),
            Scanner::Gzip(s) => s.is_done(),
        }
    }
}

/// Watches an answer for its query id and emits the statement event exactly once.
struct Watch {
    scanner: Option<Scanner>,
    pending: Option<PendingStatement>,
}

impl Watch {
    fn feed(&mut self, bytes: &[u8]) {
        let scanner = self.scanner.get_or_insert_with(|| {
            // Decided on the first bytes: gzip by magic, whatever the headers say.
            if crate::codec::is_gzip(bytes) {
                Scanner::Gzip(Box::default())
            } else {
                Scanner::Plain(QueryIdScanner::new())
            }
        });
        scanner.feed(bytes);
        if scanner.is_done() {
            let found = scanner.found().map(str::to_string);
            self.finish(found);
        }
    }

    fn finish(&mut self, query_id: Option<String>) {
        if let Some(p) = self.pending.take() {
            p.emit(query_id);
        }
    }

    fn is_finished(&self) -> bool {
        self.pending.is_none()
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let found = self
            .scanner
            .as_ref()
            .and_then(|s| s.found().map(str::to_string));
        self.finish(found);
    }
}

pin_project! {
    /// An answer body passed through unchanged while its query id is looked for.
    pub(crate) struct StatementTap<B> {
        #[pin]
        inner: B,
        watch: Watch,
    }
}

impl<B> StatementTap<B> {
    pub fn new(inner: B, pending: PendingStatement) -> StatementTap<B> {
        StatementTap {
            inner,
            watch: Watch {
                scanner: None,
                pending: Some(pending),
            },
        }
    }
}

impl<B> Body for StatementTap<B>
where
    B: Body<Data = Bytes>,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let polled = this.inner.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if !this.watch.is_finished() {
                    if let Some(data) = frame.data_ref() {
                        this.watch.feed(data);
                    }
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => {
                let found = this
                    .watch
                    .scanner
                    .as_ref()
                    .and_then(|s| s.found().map(str::to_string));
                this.watch.finish(found);
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, Full};

    /// A statement of session `session` waiting for its query id.
    fn pending(events: &EventSink, session: u64, request_id: Option<&str>) -> PendingStatement {
        PendingStatement {
            events: events.clone(),
            session: SessionId(session),
            grant_id: "g".into(),
            request_id: request_id.map(str::to_string),
            detached: None,
            in_flight: None,
        }
    }

    #[tokio::test]
    async fn emits_once_with_the_query_id_and_passes_bytes_unchanged() {
        let events = EventSink::new();
        let mut rx = events.subscribe();
        let body = r#"{"data":{"rowset":[[1]],"queryId":"q-1"},"success":true}"#;
        let tap = StatementTap::new(
            Full::new(Bytes::from_static(body.as_bytes())),
            pending(&events, 3, Some("r-1")),
        );
        let out = tap.collect().await.unwrap().to_bytes();
        assert_eq!(out, body.as_bytes());
        match rx.recv().await.unwrap() {
            GatewayEvent::StatementAnswered {
                query_id,
                session,
                request_id,
                ..
            } => {
                assert_eq!(query_id.as_deref(), Some("q-1"));
                assert_eq!(request_id.as_deref(), Some("r-1"));
                assert_eq!(session, SessionId(3));
            }
            other => panic!("{other:?}"),
        }
        tokio::task::yield_now().await;
        assert!(rx.try_recv().is_err(), "emitted twice");
    }

    #[test]
    fn the_record_is_kept_even_if_its_task_never_runs() {
        let events = EventSink::new();
        let mut rx = events.subscribe();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        {
            let _entered = rt.enter();
            let tap = StatementTap::new(
                Full::new(Bytes::from_static(b"{\"queryId\":\"q-9\"}")),
                pending(&events, 9, None),
            );
            drop(tap);
            assert!(rx.try_recv().is_err(), "recorded before its task ran");
        }
        // The runtime stops with the task never run: dropping it keeps the record.
        drop(rt);
        assert!(matches!(
            rx.try_recv().unwrap(),
            GatewayEvent::StatementAnswered {
                session: SessionId(9),
                ..
            }
        ));
    }

    #[tokio::test]
    async fn emits_without_query_id_when_dropped_early() {
        let events = EventSink::new();
        let mut rx = events.subscribe();
        let tap = StatementTap::new(
            Full::new(Bytes::from_static(b"{\"data\":")),
            pending(&events, 1, None),
        );
        drop(tap);
        assert!(matches!(
            rx.recv().await.unwrap(),
            GatewayEvent::StatementAnswered { query_id: None, .. }
        ));
    }
}
