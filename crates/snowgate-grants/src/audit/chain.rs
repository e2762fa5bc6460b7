//! The hash chain over audit records, and its verification.
//!
//! ## Definition
//! For record `n` (sequence numbers start at 1 and have no gaps):
//!
//! ```text
//! hash(n) = SHA-256( prev_hash(n) as 32 raw bytes || canonical(n) as UTF-8 )
//! prev_hash(1) = 32 zero bytes;  prev_hash(n) = hash(n-1)
//! ```
//!
//! `canonical(n)` is this JSON object, with the keys in exactly this (lexicographic) order and
//! no whitespace:
//!
//! ```text
//! {"actor":S,"at":I,"details":D,"grant_id":S|null,"kind":S,"prev_hash":H,"role":S|null,"seq":I}
//! ```
//!
//! where `S` is a JSON string as serde_json writes it (`"` and `\` escaped, control characters
//! escaped, everything else literal UTF-8), `I` a decimal integer (`at` in Unix milliseconds),
//! `H` the previous hash as 64 lowercase hex digits, and `D` the details text exactly as
//! stored. The ledger stores details in canonical JSON ([`canonical_json`]): object keys
//! sorted by their UTF-8 bytes, no whitespace, arrays in order, numbers as serde_json writes
//! them. Hashing the stored text rather than a re-parsed value means any edit to a byte is
//! caught, even one that parses to the same value.
//!
//! ## What verification catches
//! An edited record fails its own hash; a deleted record leaves a gap in `seq`; reordered or
//! inserted records break a `prev_hash` link. Cutting records off the end leaves a valid
//! chain, which is why the head (last `seq` and `hash`) is also kept outside the database
//! ([`ChainHead`], [`super::AnchorStore`]): with that anchor, a log that ends early, or whose
//! record at the anchored `seq` differs, fails too.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::record::AuditRecord;

/// A SHA-256 hash in the chain. Displays and parses as 64 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(try_from = "String", into = "String")]
pub struct ChainHash(pub [u8; 32]);

impl ChainHash {
    /// The `prev_hash` of the first record: 32 zero bytes.
    pub const GENESIS: ChainHash = ChainHash([0; 32]);
}

impl fmt::Display for ChainHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl FromStr for ChainHash {
    type Err = String;
    /// Strict: exactly 64 lowercase hex digits.
    fn from_str(s: &str) -> Result<ChainHash, String> {
        let bad = || format!("{s:?} is not a hash (64 lowercase hex digits)");
        if s.len() != 64 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(ChainHash(out))
    }
}

impl TryFrom<String> for ChainHash {
    type Error = String;
    fn try_from(s: String) -> Result<ChainHash, String> {
        s.parse()
    }
}

impl From<ChainHash> for String {
    fn from(h: ChainHash) -> String {
        h.to_string()
    }
}

/// The last record of a log: what is anchored outside the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ChainHead {
    /// The last record's sequence number.
    pub seq: u64,
    /// The last record's hash.
    pub hash: ChainHash,
}

impl fmt::Display for ChainHead {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "record {} ({})", self.seq, self.hash)
    }
}

/// Why a log failed verification. Names the first bad record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("{}", missing_message(*first, *last))]
    Missing { first: u64, last: u64 },
    #[error("audit record {seq} appears after record {after}: records were reordered")]
    OutOfOrder { seq: u64, after: u64 },
    #[error("audit record {seq} does not follow record {}: its prev_hash is not that record's hash (a record before it was removed, inserted or reordered)", seq - 1)]
    BrokenLink { seq: u64 },
    #[error("audit record {seq} was altered: its contents do not match its hash")]
    Altered { seq: u64 },
    #[error("the audit log ends at record {last} but the anchor kept outside the database says record {anchored} existed: records {}..={anchored} were cut off", last + 1)]
    Truncated { last: u64, anchored: u64 },
    #[error("audit record {seq} differs from the one anchored outside the database: the log was rewritten from there or earlier")]
    AnchorMismatch { seq: u64 },
}

fn missing_message(first: u64, last: u64) -> String {
    let which = if first == last {
        format!("audit record {first} is missing")
    } else {
        format!("audit records {first}..={last} are missing")
    };
    if first == 1 {
        format!("{which}: the log starts at record {}", last + 1)
    } else {
        format!(
            "{which}: the log jumps from record {} to {} (records were deleted or moved)",
            first - 1,
            last + 1
        )
    }
}

/// Checks a log one record at a time, so a long log is verified without holding it all.
///
/// Feed records in the order the ledger returns them (by `seq`), then call
/// [`ChainVerifier::finish`]. The first error is final: later records are not examined.
#[derive(Debug, Clone)]
pub struct ChainVerifier {
    anchor: Option<ChainHead>,
    next_seq: u64,
    prev: ChainHash,
}

impl ChainVerifier {
    /// A verifier for a log that should contain `anchor` (if given) as one of its records.
    pub fn new(anchor: Option<ChainHead>) -> ChainVerifier {
        ChainVerifier {
            anchor,
            next_seq: 1,
            prev: ChainHash::GENESIS,
        }
    }

    /// Checks the next record.
    pub fn push(&mut self, record: &AuditRecord) -> Result<(), VerifyError> {
        let seq = record.seq;
        if seq > self.next_seq {
            return Err(VerifyError::Missing {
                first: self.next_seq,
                last: seq - 1,
            });
        }
        if seq < self.next_seq {
            return Err(VerifyError::OutOfOrder {
                seq,
                after: self.next_seq - 1,
            });
        }
        if record.prev_hash != self.prev.to_string() {
            return Err(VerifyError::BrokenLink { seq });
        }
        let computed = record_hash(record).map_err(|_| VerifyError::BrokenLink { seq })?;
        if record.hash != computed.to_string() {
            return Err(VerifyError::Altered { seq });
        }
        if let Some(anchor) = self.anchor {
            if anchor.seq == seq && anchor.hash != computed {
                return Err(VerifyError::AnchorMismatch { seq });
            }
        }
        self.prev = computed;
        self.next_seq += 1;
        Ok(())
    }

    /// Ends verification: checks the log reached the anchor, and returns the verified head
    /// (`None` for an empty log).
    pub fn finish(self) -> Result<Option<ChainHead>, VerifyError> {
        let last = self.next_seq - 1;
        if let Some(anchor) = self.anchor {
            if anchor.seq > last {
                return Err(VerifyError::Truncated {
                    last,
                    anchored: anchor.seq,
                });
            }
        }
        Ok((last > 0).then_some(ChainHead {
            seq: last,
            hash: self.prev,
        }))
    }
}

/// Verifies a whole log, in order, against an optional anchor. Returns the verified head.
///
/// Guarantees: `Ok` only if the records are numbered 1..=n without gaps, each hash matches its
/// record's stored bytes, each `prev_hash` is the previous record's hash, and (with an
/// anchor) the log contains the anchored record unchanged.
pub fn verify(
    records: &[AuditRecord],
    anchor: Option<ChainHead>,
) -> Result<Option<ChainHead>, VerifyError> {
    let mut v = ChainVerifier::new(anchor);
    for r in records {
        v.push(r)?;
    }
    v.finish()
}

/// The hash of a record, from its stored fields (its own `hash` field is ignored).
/// Fails only if `prev_hash` is not 64 lowercase hex digits.
pub fn record_hash(r: &AuditRecord) -> Result<ChainHash, String> {
    let prev: ChainHash = r.prev_hash.parse()?;
    Ok(record_hash_after(&prev, r))
}

/// [`record_hash`] with the previous hash given as bytes (`r.prev_hash` must be its text).
pub(crate) fn record_hash_after(prev: &ChainHash, r: &AuditRecord) -> ChainHash {
    let mut h = Sha256::new();
    h.update(prev.0);
    h.update(canonical_record_bytes(r));
    ChainHash(h.finalize().into())
}

/// `canonical(n)` from the module docs.
pub fn canonical_record(r: &AuditRecord) -> String {
    String::from_utf8(canonical_record_bytes(r)).expect("canonical JSON is UTF-8")
}

fn canonical_record_bytes(r: &AuditRecord) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        160 + r.actor.len() + r.details.len() + r.kind.len() + r.prev_hash.len(),
    );
    let opt = |out: &mut Vec<u8>, v: &Option<String>| match v {
        Some(v) => push_json_str(out, v),
        None => out.extend_from_slice(b"null"),
    };
    out.extend_from_slice(b"{\"actor\":");
    push_json_str(&mut out, &r.actor);
    out.extend_from_slice(b",\"at\":");
    out.extend_from_slice(r.at.unix_millis().to_string().as_bytes());
    out.extend_from_slice(b",\"details\":");
    out.extend_from_slice(r.details.as_bytes());
    out.extend_from_slice(b",\"grant_id\":");
    opt(&mut out, &r.grant_id);
    out.extend_from_slice(b",\"kind\":");
    push_json_str(&mut out, &r.kind);
    out.extend_from_slice(b",\"prev_hash\":");
    push_json_str(&mut out, &r.prev_hash);
    out.extend_from_slice(b",\"role\":");
    opt(&mut out, &r.role);
    out.extend_from_slice(b",\"seq\":");
    out.extend_from_slice(r.seq.to_string().as_bytes());
    out.push(b'}');
    out
}

/// A JSON string, escaped exactly as `serde_json::to_string` escapes it.
fn push_json_str(out: &mut Vec<u8>, v: &str) {
    serde_json::to_writer(&mut *out, v).expect("strings serialize");
}

/// Canonical JSON text of a value: object keys sorted by their UTF-8 bytes, no whitespace.
///
/// Written here rather than relying on `serde_json::Map` ordering, which changes to insertion
/// order when any crate in the build enables serde_json's `preserve_order` feature.
pub fn canonical_json(v: &Value) -> String {
    let mut out = Vec::with_capacity(128);
    write_canonical(v, &mut out);
    String::from_utf8(out).expect("canonical JSON is UTF-8")
}

fn write_canonical(v: &Value, out: &mut Vec<u8>) {
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            out.push(b'{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                push_json_str(out, k);
                out.push(b':');
                write_canonical(&map[k], out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_canonical(item, out);
            }
            out.push(b']');
        }
        scalar => serde_json::to_writer(&mut *out, scalar).expect("scalars serialize"),
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}
