//! The property behind the read-only rule: nothing it allows changes state. Every corpus entry
//! the classifier allows (`LIST` included, as a role with `allow_list_stage` would) is run
//! against fakesnow (in process, in the rig's fakesnow venv) on a prepared schema by
//! `fakesnow_property.py`, which compares the tables, views and sequences, each table's row
//! count and checksum, and each sequence's last value before and after each statement.
//!
//! fakesnow can't run every Snowflake statement (it emulates Snowflake on DuckDB), so the test
//! also counts the statements it really executed and fails below [`MIN_EXECUTED`]: it can't
//! pass by erroring on everything. The venv is the rig's (`.rig/venv-fakesnow`, built by the
//! rig's setup); without it the test fails and says so.

use std::path::PathBuf;
use std::process::Command;

use snowgate_sqlpolicy::{check_read_only_with, ReadOnly};

mod common;

/// The fewest allowed corpus entries fakesnow must run without an error.
const MIN_EXECUTED: usize = 100;

#[test]
fn nothing_read_only_allows_changes_fakesnows_state() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".rig/venv-fakesnow/bin/python");
    assert!(
        python.exists(),
        "{} is missing: build the rig's venvs first (see crates/snowgate-rig)",
        python.display()
    );
    let allowed: Vec<String> = common::entries()
        .into_iter()
        .filter(|e| check_read_only_with(&e.sql, ReadOnly { list_stage: true }).is_ok())
        .map(|e| e.sql)
        .filter(|sql| !sql.trim().trim_matches(';').trim().is_empty())
        .collect();
    assert!(allowed.len() > MIN_EXECUTED, "{} allowed", allowed.len());
    let dir = std::env::temp_dir().join(format!("snowgate-sqlpolicy-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("statements");
    std::fs::write(&input, allowed.join("\0")).unwrap();
    let out = Command::new(&python)
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fakesnow_property.py"))
        .arg(&input)
        .output()
        .unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let summary = stdout
        .lines()
        .find_map(|l| l.strip_prefix("executed="))
        .unwrap_or_else(|| panic!("no summary from the script:\n{stdout}\n{stderr}"));
    let executed: usize = summary.split_whitespace().next().unwrap().parse().unwrap();
    let changed: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with("CHANGED"))
        .collect();
    assert!(
        changed.is_empty() && out.status.success(),
        "statements read-only allows changed fakesnow's state:\n{}\n{stderr}",
        changed.join("\n")
    );
    assert!(
        executed >= MIN_EXECUTED,
        "fakesnow executed only {executed} of {} allowed statements (at least {MIN_EXECUTED} must run):\n{stdout}",
        allowed.len()
    );
    println!(
        "fakesnow executed {executed} of {} allowed statements",
        allowed.len()
    );
}
