//! The hash chain, pure: its exact definition (pinned by a test vector, so another
//! implementation, such as the team server's, can check itself), and what verification catches.

mod common;

use common::*;
use serde_json::json;
use snowgate_grants::audit::chain::{canonical_json, canonical_record};
use snowgate_grants::audit::{verify, AuditActor, AuditKind, ChainHash, ChainHead, ChainVerifier};
use snowgate_grants::*;

fn entry(n: u64) -> AuditEntry {
    AuditEntry {
        at: Timestamp::from_unix_millis(1_750_000_000_000 + n as i64),
        actor: AuditActor::User(Subject::new("alice").unwrap()),
        kind: AuditKind::new("test.entry"),
        grant_id: None,
        role: Some(role("ANALYST")),
        details: json!({ "n": n, "b": [1, "two", null], "a": { "z": true, "y": 1.5 } }),
    }
}

fn chain(n: u64) -> Vec<AuditRecord> {
    let mut prev = ChainHash::GENESIS;
    (1..=n)
        .map(|seq| {
            let r = AuditRecord::seal(&entry(seq), seq, &prev);
            prev = r.hash.parse().unwrap();
            r
        })
        .collect()
}

fn head(records: &[AuditRecord]) -> ChainHead {
    let last = records.last().unwrap();
    ChainHead {
        seq: last.seq,
        hash: last.hash.parse().unwrap(),
    }
}

#[test]
fn canonical_json_sorts_keys_and_has_no_whitespace() {
    let v = json!({ "b": 1, "a": { "d": [3, { "f": null, "e": "x\"y\n" }], "c": 2.5 }, "é": true, "Z": false });
    assert_eq!(
        canonical_json(&v),
        r#"{"Z":false,"a":{"c":2.5,"d":[3,{"e":"x\"y\n","f":null}]},"b":1,"é":true}"#
    );
}

#[test]
fn the_first_record_is_pinned_by_a_test_vector() {
    let r = AuditRecord::seal(&entry(1), 1, &ChainHash::GENESIS);
    assert_eq!(
        canonical_record(&r),
        concat!(
            r#"{"actor":"user:alice","at":1750000000001,"#,
            r#""details":{"a":{"y":1.5,"z":true},"b":[1,"two",null],"n":1},"#,
            r#""grant_id":null,"kind":"test.entry","#,
            r#""prev_hash":"0000000000000000000000000000000000000000000000000000000000000000","#,
            r#""role":"ANALYST","seq":1}"#
        )
    );
    // sha256(32 zero bytes || the canonical text above)
    assert_eq!(r.hash, PINNED_HASH);
}

const PINNED_HASH: &str = "a7b5019310681ceb089807cc768662d805bf7a5e455cb22a474b2a6d627c9834";

#[test]
fn an_intact_chain_verifies_and_reports_its_head() {
    let records = chain(5);
    assert_eq!(verify(&records, None).unwrap(), Some(head(&records)));
    assert_eq!(
        verify(&records, Some(head(&records[..3]))).unwrap(),
        Some(head(&records))
    );
    assert_eq!(verify(&[], None).unwrap(), None);
}

#[test]
fn an_edited_record_is_named() {
    let mut records = chain(5);
    records[2].details = records[2].details.replace("\"n\":3", "\"n\":4");
    assert_eq!(verify(&records, None), Err(VerifyError::Altered { seq: 3 }));
}

#[test]
fn a_record_whose_hash_was_recomputed_breaks_the_next_link() {
    let mut records = chain(5);
    records[2].details = records[2].details.replace("\"n\":3", "\"n\":4");
    records[2].hash = audit::chain::record_hash(&records[2]).unwrap().to_string();
    assert_eq!(
        verify(&records, None),
        Err(VerifyError::BrokenLink { seq: 4 })
    );
}

#[test]
fn deleted_reordered_and_truncated_logs_are_caught() {
    let records = chain(6);
    let mut deleted = records.clone();
    deleted.remove(3);
    assert_eq!(
        verify(&deleted, None),
        Err(VerifyError::Missing { first: 4, last: 4 })
    );

    let mut head_gone = records.clone();
    head_gone.remove(0);
    let err = verify(&head_gone, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "audit record 1 is missing: the log starts at record 2"
    );

    let mut reordered = records.clone();
    reordered.swap(2, 3);
    let err = verify(&reordered, None).unwrap_err();
    assert_eq!(err, VerifyError::Missing { first: 3, last: 3 });
    assert_eq!(
        err.to_string(),
        "audit record 3 is missing: the log jumps from record 2 to 4 (records were deleted or moved)"
    );
    assert_eq!(
        verify(
            &[records[0].clone(), records[2].clone(), records[1].clone()],
            None
        ),
        Err(VerifyError::Missing { first: 2, last: 2 })
    );
    assert_eq!(
        verify(
            &[records[0].clone(), records[1].clone(), records[0].clone()],
            None
        ),
        Err(VerifyError::OutOfOrder { seq: 1, after: 2 })
    );

    let truncated = &records[..4];
    assert!(verify(truncated, None).is_ok());
    assert_eq!(
        verify(truncated, Some(head(&records))),
        Err(VerifyError::Truncated {
            last: 4,
            anchored: 6
        })
    );
}

#[test]
fn a_verifier_can_check_a_long_log_a_record_at_a_time() {
    let records = chain(50);
    let mut v = ChainVerifier::new(Some(head(&records[..20])));
    for r in &records {
        v.push(r).unwrap();
    }
    assert_eq!(v.finish().unwrap(), Some(head(&records)));
}

#[test]
fn records_for_grant_events_say_who_did_what() {
    let t = machine::request(
        &policy(),
        GrantId::generate(),
        &alice(),
        ask("ANALYST", hours(1), "why"),
        t0(),
    )
    .unwrap()
    .into_grant()
    .approve(
        &policy(),
        &bob(),
        Some(Comment::new("fine").unwrap()),
        t0() + mins(2),
    )
    .unwrap();
    let entries = t.audit_entries();
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].kind.as_str(), "grant.approved");
    assert_eq!(entries[0].actor.to_string(), "user:bob");
    assert_eq!(
        entries[0].details,
        json!({
            "comment": "fine",
            "remaining": 0,
            "by": { "subject": "bob", "email": "bob@example.com", "groups": ["managers"] }
        })
    );
    assert_eq!(entries[1].kind.as_str(), "grant.activated");
    assert_eq!(entries[1].details["expires_at"], "2025-06-15T16:08:40.000Z");
}

#[test]
fn the_expiry_warning_is_announced_but_not_audited() {
    let g = machine::request(
        &policy(),
        GrantId::generate(),
        &alice(),
        ask("READER", mins(30), "x"),
        t0(),
    )
    .unwrap()
    .into_grant();
    let warned = g.tick(t0() + mins(21));
    assert_eq!(warned.events().len(), 1);
    assert!(warned.audit_entries().is_empty());
}

#[tokio::test]
async fn the_memory_anchor_only_moves_forward() {
    let anchor = MemoryAnchor::new();
    let records = chain(3);
    assert_eq!(anchor.get().await.unwrap(), None);
    anchor.set(head(&records)).await.unwrap();
    anchor.set(head(&records[..1])).await.unwrap();
    assert_eq!(anchor.get().await.unwrap(), Some(head(&records)));
}
