//! The boundary between the gateway and the audit log: the gateway asks, and waits, before it
//! acts.
//!
//! A statement goes upstream only after [`AuditLog::record`] has returned `Ok` for it, and a
//! tool gets its session's handles only after the session's open record is kept. When the log
//! answers `Err`, the gateway refuses the statement (or the login) with a Snowflake-shaped error
//! that carries [`Unrecorded::reason`]: fail closed. The engine implements the trait over its
//! ledger; [`TracingOnly`] is for a gateway run without one (tests, tools).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::events::GatewayEvent;

/// The future [`AuditLog::record`] returns.
pub type RecordFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Unrecorded>> + Send + 'a>>;

/// Keeps the gateway's audit records.
pub trait AuditLog: Send + Sync + 'static {
    /// Keeps `event`'s record. `Ok` means it is kept durably enough to act on (in solo mode:
    /// committed to the ledger's write-ahead log). May wait (backpressure); must not drop.
    /// Called for [`GatewayEvent::SessionOpened`], [`GatewayEvent::SessionClosed`],
    /// [`GatewayEvent::Statement`], [`GatewayEvent::StatementRefused`],
    /// [`GatewayEvent::StatementAnswered`] and
    /// [`GatewayEvent::ResultFetched`].
    fn record<'a>(&'a self, event: &'a GatewayEvent) -> RecordFuture<'a>;

    /// Keeps the record of something already done that nobody waits on: the gateway goes on
    /// at once. Called for [`GatewayEvent::StatementAnswered`] (the statement itself was
    /// recorded before it went upstream). The default records it from a task; a log with a
    /// cheaper way (a batch the record can join) overrides it. Must be called within a tokio
    /// runtime. A failure is logged: there is nothing left to refuse.
    fn record_later(self: Arc<Self>, event: GatewayEvent) {
        tokio::spawn(async move {
            if let Err(e) = self.record(&event).await {
                tracing::error!(reason = %e.reason, "an audit record could not be kept");
            }
        });
    }

    /// Why records can't be kept right now, if they can't (for a status display).
    fn problem(&self) -> Option<String> {
        None
    }
}

/// Why a record was not kept; the tool is told this sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unrecorded {
    pub reason: String,
}

impl Unrecorded {
    pub fn new(reason: impl Into<String>) -> Unrecorded {
        Unrecorded {
            reason: reason.into(),
        }
    }
}

/// An audit log that keeps nothing beyond the `snowgate::audit` tracing events every event
/// already produces. For a gateway run without a ledger.
#[derive(Debug, Default, Clone, Copy)]
pub struct TracingOnly;

impl AuditLog for TracingOnly {
    fn record<'a>(&'a self, _event: &'a GatewayEvent) -> RecordFuture<'a> {
        Box::pin(std::future::ready(Ok(())))
    }
}
