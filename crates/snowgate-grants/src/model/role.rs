//! Snowflake role names, with the same rule the config applies.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::InvalidValue;

/// A Snowflake role name: letters, digits, `_` and `$`, not starting with a digit, at most
/// 255 characters. Compared exactly, as written in config.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[derive(ts_rs::TS, schemars::JsonSchema)]
#[ts(as = "String")]
pub struct RoleName(String);

impl RoleName {
    /// Checks `name` and wraps it.
    pub fn new(name: impl Into<String>) -> Result<RoleName, InvalidValue> {
        let name = name.into();
        let ok = !name.is_empty()
            && name.len() <= 255
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
        if ok {
            Ok(RoleName(name))
        } else {
            Err(InvalidValue::RoleName { input: name })
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RoleName {
    type Err = InvalidValue;
    fn from_str(s: &str) -> Result<RoleName, InvalidValue> {
        RoleName::new(s)
    }
}

impl TryFrom<String> for RoleName {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<RoleName, InvalidValue> {
        RoleName::new(s)
    }
}

impl From<RoleName> for String {
    fn from(r: RoleName) -> String {
        r.0
    }
}

impl fmt::Display for RoleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
