//! Just-in-time grants for Snowgate: who may use which Snowflake role, for how long, and the
//! tamper-evident record of it.
//!
//! The crate is layered so that the rules can be read and tested without any I/O:
//!
//! - [`model`]: the values (grant ids, roles, actors, reasons, durations) and [`Grant`].
//! - [`policy`]: per-role rules from config: maximum length, approver groups, N of M,
//!   auto-approval cap, pending timeout, extensions. [`role_config`]: the `[[roles]]` table
//!   both configs (the desktop's and the team server's) read them from.
//! - [`machine`]: the pure state machine. Every operation takes the time as an argument and
//!   returns a [`Transition`] (the next grant version and its [`GrantEvent`]s) or a
//!   [`GrantError`] that says what to do instead.
//! - [`audit`]: audit entries and records, the hash chain, and the anchor kept outside the
//!   database.
//! - [`ledger`]: the [`Ledger`] trait (grant transitions and their audit records committed in
//!   one transaction), [`SqliteLedger`], the embedded implementation, and [`PgLedger`], the
//!   team server's, which also records events for listeners and applies deadlines in the
//!   database. The SQLite ledger keeps an audit [`journal`]: records kept with one write on the
//!   caller's thread, moved into the chain in batches, part of the log for every read.
//! - [`ops`]: the grant operations over any ledger (request, change with conflict retry,
//!   what awaits an approver), stateless, shared by [`Grants`] and the team server.
//! - [`team_api`]: the team server's HTTP API as types, shared by the server and the
//!   desktop's team client.
//! - [`service`]: [`Grants`], which ties these together with a [`Clock`], runs the deadline
//!   timer and broadcasts events.
//!
//! This crate's only I/O is its ledgers' (the SQLite file, PostgreSQL); it knows nothing of the engine, the gateway or the UI: the
//! engine builds a [`Policy`] from config and an [`Actor`] from a verified ID token, and
//! subscribes to events.

mod appender;
pub mod audit;
pub mod clock;
pub mod error;
pub mod event;
mod group_commit;
pub mod journal;
pub mod ledger;
pub mod machine;
pub mod model;
pub mod ops;
pub mod outbox;
pub mod policy;
pub mod postgres;
pub mod role_config;
pub mod service;
mod sql;
pub mod sqlite;
pub mod team_api;
pub mod timestamp;

pub use audit::{AnchorStore, AuditEntry, AuditRecord, ChainHead, MemoryAnchor, VerifyError};
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::GrantError;
pub use event::{Cause, GrantEvent, GrantEventKind};
pub use group_commit::GroupCommitOptions;
pub use ledger::{AuditCheckError, AuditQuery, GrantFilter, Ledger, LedgerError};
pub use machine::{GrantRequest, Transition};
pub use model::{
    Actor, Approval, Comment, Decider, Extension, ExtensionState, Grant, GrantDuration, GrantId,
    GrantState, InvalidValue, Reason, RoleName, Subject, Ticket,
};
pub use outbox::{Outbox, OutboxCounts, Waiting};
pub use policy::{Policy, PolicyError, RolePolicy, StatementRule};
pub use postgres::{PgLedger, ReportedAppend, StoredEvent};
pub use role_config::{ApprovalCount, RoleConfig};
pub use service::{Grants, ServiceError};
pub use sqlite::SqliteLedger;
pub use timestamp::Timestamp;
