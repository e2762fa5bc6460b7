//! Who acts: a person whose identity was verified by the identity provider.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::InvalidValue;

/// The stable identifier of a person at the identity provider (the ID token's `sub`, or the
/// configured user claim). Two actors are the same person exactly when their subjects match.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    ts_rs::TS,
    schemars::JsonSchema,
)]
#[serde(try_from = "String", into = "String")]
#[ts(as = "String")]
pub struct Subject(String);

impl Subject {
    /// Wraps a non-empty subject.
    pub fn new(subject: impl Into<String>) -> Result<Subject, InvalidValue> {
        let s = subject.into();
        if s.trim().is_empty() {
            Err(InvalidValue::Subject)
        } else {
            Ok(Subject(s))
        }
    }

    /// The subject as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Subject {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Subject, InvalidValue> {
        Subject::new(s)
    }
}

impl From<Subject> for String {
    fn from(s: Subject) -> String {
        s.0
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A verified identity, as the engine builds it from an ID token whose signature, issuer,
/// audience, expiry and nonce it has checked. This crate trusts it as given: everything about
/// who may decide is computed from `subject` and `groups` at the moment of the decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS, schemars::JsonSchema)]
pub struct Actor {
    /// Who this is; the identity that self-approval and ownership are checked against.
    pub subject: Subject,
    /// The email claim, for showing people; never used for decisions.
    pub email: Option<String>,
    /// The groups claim at the time the token was issued.
    pub groups: Vec<String>,
}

impl Actor {
    /// An actor with these claims.
    pub fn new(subject: Subject, email: Option<String>, groups: Vec<String>) -> Actor {
        Actor {
            subject,
            email,
            groups,
        }
    }

    /// Whether this actor is in any of `groups`.
    pub fn in_any_of(&self, groups: &[String]) -> bool {
        self.groups.iter().any(|g| groups.contains(g))
    }

    /// Whether this is the same person as `other` (same subject).
    pub fn is(&self, other: &Actor) -> bool {
        self.subject == other.subject
    }
}

impl fmt::Display for Actor {
    /// The email if known, else the subject.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.email {
            Some(email) => f.write_str(email),
            None => f.write_str(self.subject.as_str()),
        }
    }
}
