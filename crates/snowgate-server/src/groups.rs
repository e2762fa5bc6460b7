//! A caller's groups: what the IdP asserts, what `[[groups]]` in the server's config says, or
//! both, per `[identity] groups_from`.
//!
//! The rule, one place for it: with `both` (the default) a caller's groups are the union of
//! the IdP's groups claim and every `[[groups]]` table that lists them, by subject or by an
//! email the IdP marks verified (`email_verified: true`). `token` uses only the claim, `config`
//! only the tables. An unverified email never matches: anyone can put any address in an
//! account at some IdPs. Groups are resolved on every request, so a change to the config takes
//! effect at the next restart without anybody signing in again.

use std::collections::BTreeSet;

use crate::config::{GroupConfig, GroupsFrom};

/// Who a caller is, as far as group membership goes.
#[derive(Debug, Clone)]
pub struct Member<'a> {
    /// The IdP subject.
    pub subject: &'a str,
    /// The email, only when the IdP says it is verified.
    pub verified_email: Option<&'a str>,
    /// The groups in the token's groups claim.
    pub token_groups: &'a [String],
}

/// The `[[groups]]` tables and the rule for combining them with the token's groups.
#[derive(Debug, Clone)]
pub struct GroupDirectory {
    from: GroupsFrom,
    groups: Vec<(String, BTreeSet<String>, BTreeSet<String>)>,
}

impl GroupDirectory {
    /// The directory for `groups` under `from`.
    pub fn new(from: GroupsFrom, groups: &[GroupConfig]) -> GroupDirectory {
        GroupDirectory {
            from,
            groups: groups
                .iter()
                .map(|g| {
                    (
                        g.name.as_str().to_string(),
                        g.subjects.iter().map(|s| s.as_str().to_string()).collect(),
                        g.emails
                            .iter()
                            .map(|e| e.as_str().to_ascii_lowercase())
                            .collect(),
                    )
                })
                .collect(),
        }
    }

    /// The caller's groups, sorted and without duplicates.
    pub fn resolve(&self, who: &Member<'_>) -> Vec<String> {
        let mut out = BTreeSet::new();
        if self.from != GroupsFrom::Config {
            out.extend(who.token_groups.iter().cloned());
        }
        if self.from != GroupsFrom::Token {
            let email = who.verified_email.map(str::to_ascii_lowercase);
            for (name, subjects, emails) in &self.groups {
                let by_email = email.as_ref().is_some_and(|e| emails.contains(e));
                if subjects.contains(who.subject) || by_email {
                    out.insert(name.clone());
                }
            }
        }
        out.into_iter().collect()
    }
}

/// Whether a claims object says its email is verified: `email_verified` is `true` (or the
/// string `"true"`, as some IdPs send it).
pub fn email_verified(claims: &serde_json::Map<String, serde_json::Value>) -> bool {
    match claims.get("email_verified") {
        Some(serde_json::Value::Bool(b)) => *b,
        Some(serde_json::Value::String(s)) => s.eq_ignore_ascii_case("true"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NonEmpty;

    fn dir(from: GroupsFrom) -> GroupDirectory {
        GroupDirectory::new(
            from,
            &[
                GroupConfig {
                    name: NonEmpty("managers".into()),
                    subjects: vec![NonEmpty("bob".into())],
                    emails: vec![NonEmpty("Carol@Example.test".into())],
                },
                GroupConfig {
                    name: NonEmpty("auditors".into()),
                    subjects: vec![NonEmpty("dave".into())],
                    emails: vec![],
                },
            ],
        )
    }

    #[test]
    fn config_groups_are_merged_with_the_tokens_by_default() {
        let token = vec!["analysts".to_string()];
        let bob = Member {
            subject: "bob",
            verified_email: None,
            token_groups: &token,
        };
        assert_eq!(
            dir(GroupsFrom::Both).resolve(&bob),
            ["analysts", "managers"]
        );
        assert_eq!(dir(GroupsFrom::Token).resolve(&bob), ["analysts"]);
        assert_eq!(dir(GroupsFrom::Config).resolve(&bob), ["managers"]);
    }

    #[test]
    fn an_email_matches_only_when_verified_and_case_insensitively() {
        let carol = |verified: Option<&'static str>| Member {
            subject: "carol",
            verified_email: verified,
            token_groups: &[],
        };
        assert_eq!(
            dir(GroupsFrom::Both).resolve(&carol(Some("carol@example.TEST"))),
            ["managers"]
        );
        assert!(dir(GroupsFrom::Both).resolve(&carol(None)).is_empty());
    }

    #[test]
    fn email_verified_reads_a_bool_or_the_string_true() {
        let m = |v: serde_json::Value| {
            let mut c = serde_json::Map::new();
            c.insert("email_verified".into(), v);
            email_verified(&c)
        };
        assert!(m(serde_json::json!(true)));
        assert!(m(serde_json::json!("true")));
        assert!(!m(serde_json::json!(false)));
        assert!(!m(serde_json::json!("yes")));
        assert!(!email_verified(&serde_json::Map::new()));
    }
}
