//! Where grants and the audit log are kept: the [`Ledger`] trait.
//!
//! The engine in solo mode uses [`SqliteLedger`](crate::SqliteLedger); team mode will put
//! PostgreSQL behind the same trait, and the same test suite (`tests/suite/`) runs against
//! every implementation. What every implementation guarantees:
//!
//! - **Atomicity.** [`Ledger::commit`] stores a grant's new version together with the audit
//!   records of its events, in one transaction. After a crash there is never one without the
//!   other.
//! - **Durability.** When a call returns `Ok`, what it wrote survives the process being
//!   killed (`kill -9`) at any later moment. [`Ledger::commit`] (grant transitions) also
//!   survives a power cut once it returns; [`Ledger::append`] does once [`Ledger::sync`] has
//!   returned after it (the group commit calls it at least every 10 ms).
//! - **No lost updates.** A commit whose grant version is not the stored version + 1 is
//!   refused with [`LedgerError::Conflict`], so two deciders racing cannot both win on stale
//!   copies; the loser reloads and re-decides.
//! - **A gapless chain.** Audit sequence numbers are assigned inside the writing transaction
//!   under a lock, so concurrent appends (from any number of tasks or processes) produce
//!   1, 2, 3, ... with each record chained to the one before.

use async_trait::async_trait;

use crate::audit::{AuditEntry, AuditRecord, ChainHead};
use crate::journal::Journal;
use crate::machine::Transition;
use crate::model::{Grant, GrantId, GrantState, RoleName, Subject};
use crate::timestamp::Timestamp;

/// Why the ledger could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Someone else changed the grant since it was loaded.
    #[error("grant {grant} changed while this change was being made; load it again and retry")]
    Conflict { grant: GrantId },
    /// A new grant's id is taken.
    #[error("a grant with id {grant} already exists")]
    DuplicateId { grant: GrantId },
    /// The storage failed. `context` says what was being done and where.
    #[error("{context}: {source}")]
    Storage {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// Stored data cannot be read back.
    #[error(
        "{context}: the stored data is not valid ({message}); the ledger file may have been edited"
    )]
    Corrupt { context: String, message: String },
}

/// Which grants to list. Results are newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantFilter {
    /// Only grants requested by this person.
    pub requester: Option<Subject>,
    /// Only grants in one of these states (all states if empty).
    pub states: Vec<GrantState>,
    /// Only grants for one of these roles (all roles if `None`).
    pub roles: Option<Vec<RoleName>>,
    /// Only grants waiting for a decision (a pending request, or an active grant with a
    /// pending extension).
    pub awaiting_decision: bool,
    /// At most this many.
    pub limit: Option<u32>,
}

impl GrantFilter {
    /// Every grant.
    pub fn all() -> GrantFilter {
        GrantFilter::default()
    }

    /// Grants requested by `who`.
    pub fn requested_by(who: &Subject) -> GrantFilter {
        GrantFilter {
            requester: Some(who.clone()),
            ..GrantFilter::default()
        }
    }

    /// Pending and active grants: those a timer must watch.
    pub fn live() -> GrantFilter {
        GrantFilter {
            states: vec![GrantState::Pending, GrantState::Active],
            ..GrantFilter::default()
        }
    }

    /// Active grants.
    pub fn active() -> GrantFilter {
        GrantFilter {
            states: vec![GrantState::Active],
            ..GrantFilter::default()
        }
    }

    /// Grants for `roles` waiting for a decision.
    pub fn awaiting_decision(roles: Vec<RoleName>) -> GrantFilter {
        GrantFilter {
            roles: Some(roles),
            awaiting_decision: true,
            ..GrantFilter::default()
        }
    }

    /// Whether `g` passes the filter (ignoring `limit`). Implementations may filter in the
    /// database, but must agree with this.
    pub fn matches(&self, g: &Grant) -> bool {
        self.requester
            .as_ref()
            .is_none_or(|r| &g.requester().subject == r)
            && (self.states.is_empty() || self.states.contains(&g.state()))
            && self.roles.as_ref().is_none_or(|rs| rs.contains(g.role()))
            && (!self.awaiting_decision || g.awaits_decision())
    }
}

/// Which audit records to read. Results are in `seq` order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only records after this sequence number (for paging and following).
    pub after_seq: Option<u64>,
    /// Only records at or after this time.
    pub since: Option<Timestamp>,
    /// Only records about this grant.
    pub grant: Option<GrantId>,
    /// At most this many.
    pub limit: Option<u32>,
}

/// Durable storage for grants and the audit log. See the module docs for the guarantees.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// Stores `change`'s grant (inserting it if `replaces_version()` is `None`, else replacing
    /// exactly that version) together with `change.audit_entries()`, atomically. Returns the
    /// audit records written (possibly none).
    async fn commit(&self, change: &Transition) -> Result<Vec<AuditRecord>, LedgerError>;

    /// Appends records that are not grant transitions (sign-in, sessions, statements).
    async fn append(&self, entries: &[AuditEntry]) -> Result<Vec<AuditRecord>, LedgerError>;

    /// [`Ledger::append`] done on the calling thread, if that can be done at once without
    /// waiting for a lock or for I/O beyond a local write; `None` means "use `append`". For the
    /// audit log's group commit, which tries it first so a lone record costs no hand-off.
    fn append_now(&self, _entries: &[AuditEntry]) -> Option<Result<Vec<AuditRecord>, LedgerError>> {
        None
    }

    /// The ledger's audit journal, if it keeps one ([`Journal`]): records kept there with one
    /// write on the caller's thread are part of the audit log for every later read and
    /// commit. The group commit uses it when it is active.
    fn journal(&self) -> Option<&Journal> {
        None
    }

    /// The latest version of a grant.
    async fn grant(&self, id: &GrantId) -> Result<Option<Grant>, LedgerError>;

    /// Grants matching `filter`, newest first.
    async fn grants(&self, filter: &GrantFilter) -> Result<Vec<Grant>, LedgerError>;

    /// Audit records matching `query`, in `seq` order.
    async fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditRecord>, LedgerError>;

    /// The last audit record's position, or `None` for an empty log.
    async fn chain_head(&self) -> Result<Option<ChainHead>, LedgerError>;

    /// Makes everything appended so far survive a power cut (an fsync). A ledger whose
    /// appends are already that durable does nothing.
    async fn sync(&self) -> Result<(), LedgerError> {
        Ok(())
    }
}

/// How many records [`verify_ledger`] and [`export_jsonl`] read at a time.
const PAGE: u32 = 1000;

/// Why the audit log could not be verified.
#[derive(Debug, thiserror::Error)]
pub enum AuditCheckError {
    /// The log is not intact; names the first bad record.
    #[error(transparent)]
    Broken(#[from] crate::audit::VerifyError),
    /// The log could not be read.
    #[error("reading the audit log: {0}")]
    Read(#[from] LedgerError),
    /// The anchor could not be read.
    #[error(transparent)]
    Anchor(#[from] crate::audit::AnchorError),
}

/// Verifies the ledger's whole audit log against `anchor`, a page at a time. Returns the
/// verified head (`None` for an empty log).
pub async fn verify_ledger(
    ledger: &dyn Ledger,
    anchor: Option<ChainHead>,
) -> Result<Option<ChainHead>, AuditCheckError> {
    let mut v = crate::audit::ChainVerifier::new(anchor);
    let mut after = None;
    loop {
        let page = ledger
            .audit(&AuditQuery {
                after_seq: after,
                limit: Some(PAGE),
                ..AuditQuery::default()
            })
            .await?;
        for r in &page {
            v.push(r)?;
        }
        match page.last() {
            Some(last) if page.len() == PAGE as usize => after = Some(last.seq),
            _ => return Ok(v.finish()?),
        }
    }
}

/// Writes the audit records matching `query` (ignoring its `limit`) as JSON Lines, one
/// record per line, in `seq` order. Returns how many were written.
pub async fn export_jsonl(
    ledger: &dyn Ledger,
    query: &AuditQuery,
    out: &mut (dyn std::io::Write + Send),
) -> Result<u64, LedgerError> {
    let mut after = query.after_seq;
    let mut n = 0;
    loop {
        let page = ledger
            .audit(&AuditQuery {
                after_seq: after,
                limit: Some(PAGE),
                ..query.clone()
            })
            .await?;
        for r in &page {
            writeln!(out, "{}", r.to_json_line()).map_err(|e| LedgerError::Storage {
                context: "writing the audit export".into(),
                source: Box::new(e),
            })?;
            n += 1;
        }
        match page.last() {
            Some(last) if page.len() == PAGE as usize => after = Some(last.seq),
            _ => return Ok(n),
        }
    }
}
