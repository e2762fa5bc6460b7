//! Grant ids: `g_` and 20 random base32 characters (100 bits), so they can be typed, pasted
//! into a ticket and used as a Snowflake `QUERY_TAG` without quoting.

use std::fmt;
use std::str::FromStr;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::InvalidValue;

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
const PREFIX: &str = "g_";
const LEN: usize = 20;

/// The id of one grant. Always `g_` followed by 20 characters from `a-z2-7`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[derive(ts_rs::TS, schemars::JsonSchema)]
#[ts(as = "String")]
pub struct GrantId(String);

impl GrantId {
    /// A new id from the thread's cryptographic RNG. Collisions are not a practical concern
    /// (100 random bits); the ledger refuses one anyway.
    pub fn generate() -> GrantId {
        let mut rng = rand::thread_rng();
        let mut s = String::with_capacity(PREFIX.len() + LEN);
        s.push_str(PREFIX);
        for _ in 0..LEN {
            s.push(ALPHABET[rng.gen_range(0..32)] as char);
        }
        GrantId(s)
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for GrantId {
    type Err = InvalidValue;

    /// Accepts the canonical form; surrounding whitespace and upper case are forgiven, because
    /// ids get copied out of chat messages and tickets.
    fn from_str(input: &str) -> Result<GrantId, InvalidValue> {
        let s = input.trim().to_ascii_lowercase();
        let ok = s
            .strip_prefix(PREFIX)
            .is_some_and(|rest| rest.len() == LEN && rest.bytes().all(|b| ALPHABET.contains(&b)));
        if ok {
            Ok(GrantId(s))
        } else {
            Err(InvalidValue::GrantId {
                input: input.to_string(),
            })
        }
    }
}

impl TryFrom<String> for GrantId {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<GrantId, InvalidValue> {
        s.parse()
    }
}

impl From<GrantId> for String {
    fn from(id: GrantId) -> String {
        id.0
    }
}

impl fmt::Display for GrantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
