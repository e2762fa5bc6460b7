//! A stored audit record, exactly as it was written.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::value::RawValue;
use serde_json::Value;

use super::chain::{self, ChainHash};
use super::entry::{AuditActor, AuditEntry};
use crate::model::GrantId;
use crate::timestamp::Timestamp;

/// One record of the audit log as the ledger holds it.
///
/// Every text field is the exact stored text (not re-parsed into a typed value), so that
/// [`verify`](super::verify) checks the bytes on disk: an edit that happens to parse to the
/// same value is still an edit. Use the accessors for typed views.
///
/// Serializes as one JSON object (the JSONL export format) with `details` inline.
#[derive(Debug, Clone, PartialEq, Eq, ts_rs::TS)]
#[ts(as = "In")]
pub struct AuditRecord {
    /// Position in the log: 1, 2, 3, ... with no gaps.
    pub seq: u64,
    /// When it happened.
    pub at: Timestamp,
    /// Who, in [`AuditActor`]'s stored form (`user:SUB`, `policy`, `clock`, `system`).
    pub actor: String,
    /// What kind of record (`grant.approved`).
    pub kind: String,
    /// The grant id, if the record concerns a grant.
    pub grant_id: Option<String>,
    /// The role, if the record concerns one.
    pub role: Option<String>,
    /// The details object as canonical JSON text.
    pub details: String,
    /// The previous record's hash (64 zeros for the first), lowercase hex.
    pub prev_hash: String,
    /// This record's hash, lowercase hex.
    pub hash: String,
}

impl AuditRecord {
    /// Makes record number `seq` from `entry`, chained after `prev` (the previous record's
    /// hash, or [`ChainHash::GENESIS`] for the first).
    pub fn seal(entry: &AuditEntry, seq: u64, prev: &ChainHash) -> AuditRecord {
        UnsealedRecord::from(entry).seal(seq, prev)
    }

    /// The details as a JSON value (`Null` if the stored text is not JSON).
    pub fn details_value(&self) -> Value {
        serde_json::from_str(&self.details).unwrap_or(Value::Null)
    }

    /// The actor, if the stored text is a valid one.
    pub fn actor(&self) -> Option<AuditActor> {
        AuditActor::from_stored(&self.actor)
    }

    /// The grant id, if there is one and it is valid.
    pub fn grant(&self) -> Option<GrantId> {
        self.grant_id.as_deref().and_then(|g| g.parse().ok())
    }

    /// One line of the JSONL export (no trailing newline).
    pub fn to_json_line(&self) -> String {
        serde_json::to_string(self).expect("audit records serialize")
    }
}

/// A record before it takes its place in the chain: the stored text of every field that
/// comes from its [`AuditEntry`], without the position and the hashes. The audit journal
/// ([`crate::journal`]) keeps records in this form until they are moved into the chain, so a
/// record sealed from it is the record [`AuditRecord::seal`] makes from the entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsealedRecord {
    pub at: Timestamp,
    pub actor: String,
    pub kind: String,
    pub grant_id: Option<String>,
    pub role: Option<String>,
    /// The details object as canonical JSON text.
    pub details: String,
}

impl From<&AuditEntry> for UnsealedRecord {
    fn from(entry: &AuditEntry) -> UnsealedRecord {
        UnsealedRecord {
            at: entry.at,
            actor: entry.actor.as_stored().into_owned(),
            kind: entry.kind.as_str().to_string(),
            grant_id: entry.grant_id.as_ref().map(|g| g.as_str().to_string()),
            role: entry.role.as_ref().map(|r| r.as_str().to_string()),
            details: chain::canonical_json(&entry.details),
        }
    }
}

impl UnsealedRecord {
    /// Makes record number `seq`, chained after `prev`.
    pub fn seal(&self, seq: u64, prev: &ChainHash) -> AuditRecord {
        self.seal_after(seq, prev).0
    }

    /// [`UnsealedRecord::seal`], with the new record's hash as bytes (the next one's `prev`).
    pub(crate) fn seal_after(&self, seq: u64, prev: &ChainHash) -> (AuditRecord, ChainHash) {
        let mut record = AuditRecord {
            seq,
            at: self.at,
            actor: self.actor.clone(),
            kind: self.kind.clone(),
            grant_id: self.grant_id.clone(),
            role: self.role.clone(),
            details: self.details.clone(),
            prev_hash: prev.to_string(),
            hash: String::new(),
        };
        let hash = chain::record_hash_after(prev, &record);
        record.hash = hash.to_string();
        (record, hash)
    }
}

#[derive(Serialize)]
struct Out<'a> {
    seq: u64,
    at: Timestamp,
    actor: &'a str,
    kind: &'a str,
    grant_id: Option<&'a str>,
    role: Option<&'a str>,
    details: &'a RawValue,
    prev_hash: &'a str,
    hash: &'a str,
}

/// An [`AuditRecord`] as it is read back (one JSONL line); also its shape in the UI's
/// generated types.
#[doc(hidden)]
#[derive(Deserialize, ts_rs::TS, schemars::JsonSchema)]
#[ts(rename = "AuditRecord")]
#[schemars(
    rename = "AuditRecord",
    description = "One record of the hash-chained audit log, exactly as stored (a line of the JSONL export)."
)]
pub struct In {
    #[ts(type = "number")]
    seq: u64,
    at: Timestamp,
    /// `user:SUBJECT`, `policy`, `clock` or `system`.
    actor: String,
    /// A dotted kind like `grant.approved`.
    kind: String,
    grant_id: Option<String>,
    role: Option<String>,
    /// The kind's own fields, as JSON.
    #[ts(type = "unknown")]
    #[schemars(with = "Value")]
    details: Box<RawValue>,
    prev_hash: String,
    hash: String,
}

/// The same shape as [`In`], which reads it back.
impl schemars::JsonSchema for AuditRecord {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        <In as schemars::JsonSchema>::schema_name()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        <In as schemars::JsonSchema>::json_schema(generator)
    }
}

impl Serialize for AuditRecord {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let details: Box<RawValue> = RawValue::from_string(self.details.clone())
            .map_err(|e| serde::ser::Error::custom(format!("record {}: {e}", self.seq)))?;
        Out {
            seq: self.seq,
            at: self.at,
            actor: &self.actor,
            kind: &self.kind,
            grant_id: self.grant_id.as_deref(),
            role: self.role.as_deref(),
            details: &details,
            prev_hash: &self.prev_hash,
            hash: &self.hash,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for AuditRecord {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = In::deserialize(d)?;
        Ok(AuditRecord {
            seq: r.seq,
            at: r.at,
            actor: r.actor,
            kind: r.kind,
            grant_id: r.grant_id,
            role: r.role,
            details: r.details.get().to_string(),
            prev_hash: r.prev_hash,
            hash: r.hash,
        })
    }
}
