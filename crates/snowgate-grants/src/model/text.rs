//! Free text people attach to grants: the reason for a request, a decision's comment, a ticket
//! reference. Each is trimmed, must not be blank, and is capped so a log line stays a line.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::InvalidValue;

macro_rules! bounded_text {
    ($(#[$doc:meta])* $name:ident, $what:literal, $empty:literal, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        #[derive(ts_rs::TS, schemars::JsonSchema)]
        #[ts(as = "String")]
        pub struct $name(String);

        impl $name {
            /// The most characters (not bytes) it may have after trimming.
            pub const MAX_CHARS: usize = $max;

            /// Trims `text` and checks it is neither blank nor longer than [`Self::MAX_CHARS`].
            pub fn new(text: impl AsRef<str>) -> Result<$name, InvalidValue> {
                let t = text.as_ref().trim();
                if t.is_empty() {
                    return Err(InvalidValue::EmptyText { what: $what, message: $empty });
                }
                let len = t.chars().count();
                if len > $max {
                    return Err(InvalidValue::TextTooLong { what: $what, len, max: $max });
                }
                Ok($name(t.to_string()))
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(s: String) -> Result<$name, InvalidValue> {
                $name::new(s)
            }
        }

        impl From<$name> for String {
            fn from(t: $name) -> String {
                t.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

bounded_text!(
    /// Why someone needs access. Required on every request and extension.
    Reason,
    "reason",
    "a reason is required; say in a few words why",
    500
);

bounded_text!(
    /// What an approver says with a decision. Required to deny, optional to approve or revoke.
    Comment,
    "comment",
    "a comment must not be blank; say in a few words why",
    500
);

bounded_text!(
    /// A reference to a ticket or change request (`OPS-1234`, a URL).
    Ticket,
    "ticket",
    "a ticket reference must not be blank; leave it out instead",
    200
);
