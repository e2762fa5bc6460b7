//! The records a desktop may report (`POST /v1/audit/records`), each kind with the one shape
//! of `details` the desktop writes for it (`snowgate_grants::AuditEntry::sign_in` and
//! `sign_out`, and the gateway's records in the engine's `enforcement.rs`).
//!
//! A report's details are read into the kind's type, which refuses unknown fields, missing
//! ones and wrong types, so what lands in the audit log is what a desktop would have written.
//! The details are stored as sent (with `"source": "desktop"` added), not re-serialized, so the
//! hash the desktop could compute stays the same.

use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::Value;
use snowgate_grants::audit::AuditKind;

/// The kinds a desktop may report: what its broker sees and the server does not.
pub const DESKTOP_KINDS: [AuditKind; 8] = [
    AuditKind::SIGN_IN,
    AuditKind::SIGN_OUT,
    AuditKind::SESSION_OPENED,
    AuditKind::SESSION_CLOSED,
    AuditKind::STATEMENT,
    AuditKind::STATEMENT_ANSWERED,
    AuditKind::STATEMENT_REFUSED,
    AuditKind::RESULT_FETCHED,
];

/// `auth.sign_in`: who signed in, as the IdP named them.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct SignIn {
    email: Option<String>,
    groups: Vec<String>,
}

/// `auth.sign_out`: why (`logout`, `refresh token revoked`, ...).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct SignOut {
    why: String,
}

/// `session.opened`: a gateway session and the tool that opened it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct SessionOpened {
    session: String,
    /// The agent whose session it is, if any.
    #[serde(default)]
    agent: Option<String>,
    /// The Snowflake account, when the desktop's gateway serves more than one.
    #[serde(default)]
    account: Option<String>,
    tool: String,
}

/// `session.closed`: the session, its tool, and who or what closed it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct SessionClosed {
    session: String,
    /// The agent whose session it is, if any.
    #[serde(default)]
    agent: Option<String>,
    tool: String,
    why: String,
}

/// `session.statement`: a statement's hash (its text only where the desktop keeps texts).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Statement {
    session: String,
    /// The agent whose session it is, if any.
    #[serde(default)]
    agent: Option<String>,
    tool: String,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    query_id: Option<String>,
    statement_sha256: Sha256Hex,
    #[serde(rename = "async")]
    is_async: bool,
    #[serde(default)]
    multi_statement: Option<bool>,
    #[serde(default)]
    statement_count: Option<u64>,
    /// Which statement of a split multi-statement request this is, from 1, of how many.
    #[serde(default)]
    statement_index: Option<u64>,
    #[serde(default)]
    statement_total: Option<u64>,
    /// `false`: a multi-statement request the parser could not split, in one record.
    #[serde(default)]
    split: Option<bool>,
    #[serde(default)]
    text: Option<String>,
}

/// `session.statement_answered`: the query id Snowflake gave a statement.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct StatementAnswered {
    session: String,
    /// The agent whose session it is, if any.
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    query_id: Option<String>,
}

/// `session.statement_refused`: a statement the session's rules refused before it went
/// upstream (read-only, an agent's rate), with its kind and the rule.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct StatementRefused {
    session: String,
    #[serde(default)]
    agent: Option<String>,
    tool: String,
    #[serde(default)]
    request_id: Option<String>,
    statement_sha256: Sha256Hex,
    kind: String,
    rule: String,
    #[serde(default)]
    text: Option<String>,
}

/// `session.result_fetched`: a query's result fetched later.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct ResultFetched {
    session: String,
    /// The agent whose session it is, if any.
    #[serde(default)]
    agent: Option<String>,
    tool: String,
    query_id: String,
}

/// A SHA-256 as 64 lowercase hex digits.
struct Sha256Hex;

impl<'de> Deserialize<'de> for Sha256Hex {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() == 64
            && s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            Ok(Sha256Hex)
        } else {
            Err(serde::de::Error::custom(
                "not a SHA-256: give 64 lowercase hex digits",
            ))
        }
    }
}

/// The kind a desktop reports under the name `kind`, or why it may not.
pub fn desktop_kind(kind: &str) -> Result<AuditKind, String> {
    DESKTOP_KINDS
        .iter()
        .find(|k| k.as_str() == kind)
        .cloned()
        .ok_or_else(|| {
            format!(
                "a desktop may not report {kind:?} records; it may report {}",
                DESKTOP_KINDS
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
}

fn shaped<T: DeserializeOwned>(details: &Value) -> Result<(), String> {
    serde_path_to_error::deserialize::<_, T>(details.clone())
        .map(|_| ())
        .map_err(|e| {
            let path = e.path().to_string();
            if path == "." || path.is_empty() {
                e.inner().to_string()
            } else {
                format!("`{path}`: {}", e.inner())
            }
        })
}

/// Checks `details` against the shape of `kind` (a desktop kind). `Err` says what is wrong,
/// naming the field.
pub fn check_details(kind: &AuditKind, details: Option<&Value>) -> Result<(), String> {
    let Some(details) = details.filter(|d| !d.is_null()) else {
        return Err(format!(
            "`details` is missing; a {kind} record carries its details"
        ));
    };
    if !details.is_object() {
        return Err("`details` must be a JSON object".into());
    }
    let checked = match kind.as_str() {
        "auth.sign_in" => shaped::<SignIn>(details),
        "auth.sign_out" => shaped::<SignOut>(details),
        "session.opened" => shaped::<SessionOpened>(details),
        "session.closed" => shaped::<SessionClosed>(details),
        "session.statement" => shaped::<Statement>(details),
        "session.statement_answered" => shaped::<StatementAnswered>(details),
        "session.statement_refused" => shaped::<StatementRefused>(details),
        "session.result_fetched" => shaped::<ResultFetched>(details),
        other => Err(format!("a desktop may not report {other:?} records")),
    };
    checked.map_err(|e| format!("`details` of a {kind} record: {e}"))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn each_kind_takes_its_own_shape_only() {
        let ok = check_details(
            &AuditKind::SESSION_OPENED,
            Some(&json!({ "session": "7", "tool": "x" })),
        );
        assert_eq!(ok, Ok(()));
        let extra = check_details(
            &AuditKind::SESSION_OPENED,
            Some(&json!({ "session": "7", "tool": "x", "rows": 1 })),
        )
        .unwrap_err();
        assert!(extra.contains("unknown field `rows`"), "{extra}");
        let wrong = check_details(
            &AuditKind::SESSION_OPENED,
            Some(&json!({ "session": 7, "tool": "x" })),
        )
        .unwrap_err();
        assert!(wrong.contains("`session`"), "{wrong}");
        let hash = check_details(
            &AuditKind::STATEMENT,
            Some(&json!({ "session": "7", "tool": "x", "request_id": null,
                          "statement_sha256": "nope", "async": false })),
        )
        .unwrap_err();
        assert!(hash.contains("statement_sha256"), "{hash}");
        assert!(check_details(&AuditKind::SIGN_OUT, None)
            .unwrap_err()
            .contains("missing"));
    }

    #[test]
    fn an_agents_records_and_refused_statements_are_taken() {
        let sha = "a".repeat(64);
        assert_eq!(
            check_details(
                &AuditKind::SESSION_OPENED,
                Some(&json!({ "session": "7", "tool": "x", "agent": "bot" })),
            ),
            Ok(())
        );
        assert_eq!(
            check_details(
                &AuditKind::STATEMENT_REFUSED,
                Some(
                    &json!({ "session": "7", "tool": "x", "agent": "bot", "request_id": "r",
                              "statement_sha256": sha, "kind": "INSERT",
                              "rule": "agent bot is read-only" })
                ),
            ),
            Ok(())
        );
        let no_rule = check_details(
            &AuditKind::STATEMENT_REFUSED,
            Some(
                &json!({ "session": "7", "tool": "x", "statement_sha256": sha, "kind": "INSERT" }),
            ),
        )
        .unwrap_err();
        assert!(no_rule.contains("rule"), "{no_rule}");
    }
}
