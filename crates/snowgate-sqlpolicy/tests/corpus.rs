//! The classifier corpus: every entry of `corpus.txt` judged under read-only, and the test
//! fails listing every entry whose verdict or kind differs from the one written there.
//!
//! An entry is one line, `VERDICT | KIND | SQL`:
//! - `VERDICT` is `allow`, `refuse`, or `allow-list` (refused by default, allowed where the
//!   role has `allow_list_stage = true`);
//! - `KIND` is, for a refusal, the kind of the refused statement (`INSERT`, `CREATE TABLE`);
//!   for an allowed entry, the kinds of its statements joined by `, `;
//! - `SQL` is the text, where `\n` stands for a line break. Lines starting with `#` and blank
//!   lines are skipped.

use snowgate_sqlpolicy::{check_read_only, check_read_only_with, kinds, ReadOnly};

mod common;

use common::entries;

/// What the classifier says about `sql`, in the corpus's terms.
fn classify(sql: &str) -> (String, String) {
    let strict = check_read_only(sql);
    let listing = check_read_only_with(sql, ReadOnly { list_stage: true });
    match (strict, listing) {
        (Ok(_), _) => ("allow".into(), kinds(sql).unwrap_or_default().join(", ")),
        (Err(_), Ok(_)) => (
            "allow-list".into(),
            kinds(sql).unwrap_or_default().join(", "),
        ),
        (Err(r), Err(_)) => ("refuse".into(), r.kind),
    }
}

#[test]
fn every_corpus_entry_gets_its_written_verdict_and_kind() {
    let entries = entries();
    assert!(
        entries.len() >= 300,
        "the corpus has {} entries; it should have several hundred",
        entries.len()
    );
    let mut wrong = Vec::new();
    for e in &entries {
        assert!(
            ["allow", "refuse", "allow-list"].contains(&e.verdict.as_str()),
            "corpus.txt line {}: unknown verdict {:?}",
            e.line,
            e.verdict
        );
        let (verdict, kind) = classify(&e.sql);
        if verdict != e.verdict || kind != e.kind {
            wrong.push(format!(
                "line {}: expected {} | {}, got {} | {}: {:?}",
                e.line, e.verdict, e.kind, verdict, kind, e.sql
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} corpus entries differ:\n{}",
        wrong.len(),
        entries.len(),
        wrong.join("\n")
    );
}

#[test]
fn the_corpus_covers_both_verdicts_and_many_kinds() {
    let entries = entries();
    let allowed = entries.iter().filter(|e| e.verdict == "allow").count();
    let refused = entries.iter().filter(|e| e.verdict == "refuse").count();
    assert!(
        allowed >= 100 && refused >= 150,
        "{allowed} allowed, {refused} refused"
    );
    let mut kinds: Vec<&str> = entries.iter().map(|e| e.kind.as_str()).collect();
    kinds.sort_unstable();
    kinds.dedup();
    assert!(kinds.len() >= 60, "only {} kinds: {kinds:?}", kinds.len());
}

#[test]
fn every_readable_corpus_text_splits_into_its_statements() {
    let mut wrong = Vec::new();
    let mut several = 0;
    for e in entries() {
        let Some(kinds) = kinds(&e.sql) else { continue };
        match snowgate_sqlpolicy::split(&e.sql) {
            Some(pieces) => {
                several += usize::from(pieces.len() > 1);
                let rejoined: Vec<String> = pieces.iter().map(|p| kinds_of_one(p.text)).collect();
                if rejoined != kinds {
                    wrong.push(format!(
                        "line {}: {:?} -> {rejoined:?}, parsed {kinds:?}",
                        e.line, e.sql
                    ));
                }
            }
            // Only a scripting block keeps `;` of its own.
            None if e.kind == "BEGIN" || e.kind == "DECLARE" => {}
            None => wrong.push(format!("line {}: {:?} did not split", e.line, e.sql)),
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
    assert!(
        several >= 20,
        "only {several} entries have several statements"
    );
}

/// The kind of a text that must hold exactly one statement.
fn kinds_of_one(sql: &str) -> String {
    let k = kinds(sql).unwrap_or_default();
    assert_eq!(k.len(), 1, "{sql:?} is not one statement: {k:?}");
    k[0].clone()
}
