//! The newest audit checkpoint this desktop has seen: the team server's signed head of its
//! audit chain (`seq`, `hash`, `at`), kept in the data dir (`audit-checkpoint.json`), outside
//! the server's database.
//!
//! Checkpoints arrive on the event stream (`event: checkpoint`) and with `audit verify`. Each is
//! checked with the server's checkpoint key before it is kept: the key with that `kid` kept
//! with the previous checkpoint, or else the one the server publishes at
//! `/v1/audit/checkpoint-key` (kept from then on). Only a checkpoint with a higher `seq` replaces
//! the kept one; one at the same `seq` with another hash is a rewritten log, and is not kept.
//!
//! `snowgate audit verify` presents the kept checkpoint to the server, and also checks the
//! answer here: a log that ends before the kept `seq`, or whose record at that `seq` has
//! another hash, is not intact, whatever the server says. So a database rewritten or cut
//! short below a checkpoint any desktop saw is caught by that desktop.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use snowgate_grants::team_api::{Jwk, Verification};

/// The file in the data dir.
pub const FILE: &str = "audit-checkpoint.json";
use snowgate_grants::audit::checkpoint::{CheckpointClaims, CLAIM_TYP, HEADER_TYP as TYP};

/// A checkpoint whose signature was checked, with the key that checked it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct KeptCheckpoint {
    /// The compact JWS, as the server signed it.
    pub checkpoint: String,
    pub seq: u64,
    /// 64 lowercase hex digits.
    pub hash: String,
    /// RFC 3339.
    pub at: String,
    pub kid: String,
    /// The public key that checked it.
    pub key: Jwk,
}

/// The kid a checkpoint says it was signed with, or why it is not a checkpoint.
pub fn kid_of(token: &str) -> Result<String, String> {
    let header = jsonwebtoken::decode_header(token)
        .map_err(|e| format!("the server's checkpoint is not a JWS ({e})"))?;
    if header.typ.as_deref() != Some(TYP) {
        return Err(format!(
            "the server's checkpoint says typ {:?}, not {TYP:?}",
            header.typ.unwrap_or_default()
        ));
    }
    header
        .kid
        .ok_or_else(|| "the server's checkpoint names no key (kid)".to_string())
}

/// Checks `token`'s signature with `key` (an RSA JWK) and reads it.
pub fn check(token: &str, key: &Jwk) -> Result<KeptCheckpoint, String> {
    let kid = kid_of(token)?;
    if key.kty != "RSA" {
        return Err(format!("the checkpoint key {kid:?} is not an RSA key"));
    }
    let decoding = jsonwebtoken::DecodingKey::from_rsa_components(&key.n, &key.e)
        .map_err(|e| format!("the checkpoint key {kid:?} can't be read ({e})"))?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    let data = jsonwebtoken::decode::<CheckpointClaims>(token, &decoding, &validation).map_err(|e| {
        match e.kind() {
            jsonwebtoken::errors::ErrorKind::InvalidSignature => format!(
                "the server's checkpoint does not verify with its checkpoint key {kid:?}; it was not kept"
            ),
            _ => format!("the server's checkpoint can't be read ({e})"),
        }
    })?;
    let c = data.claims;
    if c.typ != CLAIM_TYP || c.seq == 0 || c.hash.len() != 64 {
        return Err("the server's checkpoint is not an audit checkpoint".into());
    }
    Ok(KeptCheckpoint {
        checkpoint: token.to_string(),
        seq: c.seq,
        hash: c.hash,
        at: c.at,
        kid,
        key: key.clone(),
    })
}

/// The kept checkpoint at `path`, if there is one.
pub fn load(path: &Path) -> Result<Option<KeptCheckpoint>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            format!(
                "the kept audit checkpoint {} can't be read: {e}",
                path.display()
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!(
            "the kept audit checkpoint {} can't be read: {e}",
            path.display()
        )),
    }
}

/// What keeping a checked checkpoint did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kept {
    /// It is newer than the kept one (or the first) and replaced it.
    Newer,
    /// The kept one is as new or newer.
    NotNewer,
    /// It has the kept one's `seq` and another hash: the log was rewritten.
    Conflict,
}

/// Keeps `new` at `path` when it is newer than what is kept there (written to a temporary
/// file and renamed, so a crash leaves the old one or the new one).
pub fn keep(path: &Path, new: &KeptCheckpoint) -> Result<Kept, String> {
    let old = load(path)?;
    if let Some(old) = &old {
        if old.seq == new.seq && old.hash != new.hash {
            return Ok(Kept::Conflict);
        }
        if old.seq >= new.seq {
            return Ok(Kept::NotNewer);
        }
    }
    let tmp: PathBuf = path.with_extension("json.tmp");
    let text = serde_json::to_vec_pretty(new).expect("a checkpoint serializes");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            format!(
                "the audit checkpoint can't be kept in {}: {e}",
                path.display()
            )
        })?;
    Ok(Kept::Newer)
}

/// Checks the server's verification `answer` against the kept checkpoint, with the server's
/// record's hash at the kept `seq` (`None` if it has none). Returns the problem, if any.
pub fn problem(
    kept: &KeptCheckpoint,
    answer: &Verification,
    record_hash: Option<&str>,
) -> Option<String> {
    if !answer.ok {
        return None;
    }
    let records = answer.records.unwrap_or(0);
    if records < kept.seq {
        return Some(format!(
            "the server's audit log ends at record {records}, but this desktop kept a checkpoint the server signed at record {} (at {}): records {}..={} were cut off",
            kept.seq,
            kept.at,
            records + 1,
            kept.seq
        ));
    }
    match record_hash {
        None => Some(format!(
            "the server did not give its audit record {}, which this desktop's checkpoint (at {}) anchors",
            kept.seq, kept.at
        )),
        Some(h) if h != kept.hash => Some(format!(
            "audit record {} differs from the one in the checkpoint this desktop kept (at {}): the log was rewritten from there or earlier",
            kept.seq, kept.at
        )),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Jwk {
        Jwk {
            kty: "RSA".into(),
            use_: "sig".into(),
            alg: "RS256".into(),
            kid: "k".into(),
            n: "AQAB".into(),
            e: "AQAB".into(),
        }
    }

    fn answer(ok: bool, records: u64) -> Verification {
        Verification {
            ok,
            records: Some(records),
            head: None,
            problem: None,
            checkpoint: None,
            checkpoints: None,
        }
    }

    fn kept(seq: u64, hash: char) -> KeptCheckpoint {
        KeptCheckpoint {
            checkpoint: format!("jws-{seq}"),
            seq,
            hash: hash.to_string().repeat(64),
            at: "2026-01-01T00:00:00Z".into(),
            kid: "k".into(),
            key: key(),
        }
    }

    #[test]
    fn only_a_newer_checkpoint_replaces_the_kept_one_and_another_hash_at_its_seq_is_a_conflict() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        assert_eq!(load(&path).unwrap(), None);
        assert_eq!(keep(&path, &kept(5, 'a')).unwrap(), Kept::Newer);
        assert_eq!(keep(&path, &kept(4, 'b')).unwrap(), Kept::NotNewer);
        assert_eq!(keep(&path, &kept(5, 'c')).unwrap(), Kept::Conflict);
        assert_eq!(load(&path).unwrap(), Some(kept(5, 'a')));
        assert_eq!(keep(&path, &kept(9, 'd')).unwrap(), Kept::Newer);
        assert_eq!(load(&path).unwrap().unwrap().seq, 9);
    }

    #[test]
    fn an_intact_answer_short_of_the_kept_seq_or_with_another_hash_there_is_a_problem() {
        let k = kept(5, 'a');
        let intact = |records: u64| answer(true, records);
        let p = problem(&k, &intact(3), None).unwrap();
        assert!(p.contains("records 4..=5 were cut off"), "{p}");
        let other = "b".repeat(64);
        let p = problem(&k, &intact(7), Some(&other)).unwrap();
        assert!(p.contains("rewritten"), "{p}");
        assert_eq!(problem(&k, &intact(7), Some(&k.hash)), None);
        // The server's own "not intact" stands as it is.
        assert_eq!(problem(&k, &answer(false, 0), None), None);
    }

    #[test]
    fn a_token_that_is_not_a_checkpoint_is_refused_before_any_key_is_looked_up() {
        assert!(kid_of("not-a-jws").is_err());
        let e = check("a.b.c", &key()).unwrap_err();
        assert!(e.contains("checkpoint"), "{e}");
    }
}
