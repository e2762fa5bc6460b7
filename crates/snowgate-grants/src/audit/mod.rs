//! The audit log: an append-only, hash-chained record of everything that grants access.
//!
//! What goes in: sign-in and sign-out, every grant event that changes a grant (request,
//! decision, activation, extension, timeout, expiry, revocation), session open and close, and
//! statements (query id and a hash of the text; the text itself only when config asks).
//! Grant events are recorded by the ledger in the same transaction as the grant change, from
//! [`Transition::audit_entries`](crate::Transition::audit_entries); the rest are appended by the
//! engine through [`Grants::record`](crate::Grants::record).
//!
//! An [`AuditEntry`] is what a caller hands in; an [`AuditRecord`] is what the ledger stored,
//! with its sequence number and hashes, kept as the exact text that was stored so that
//! verification checks the bytes on disk, not a re-parsed copy of them. See [`chain`] for how
//! the hashes are computed and checked, and [`anchor`] for the copy of the chain's head kept
//! outside the database.

pub mod anchor;
pub mod chain;
pub mod checkpoint;
mod entry;
mod record;

pub use anchor::{AnchorError, AnchorStore, MemoryAnchor};
pub use chain::{verify, ChainHash, ChainHead, ChainVerifier, VerifyError};
pub use entry::{statement_hash, AuditActor, AuditEntry, AuditKind, SessionRef, StatementRef};
pub use record::{AuditRecord, UnsealedRecord};
