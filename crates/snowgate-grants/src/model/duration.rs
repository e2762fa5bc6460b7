//! How long a grant lasts: a whole number of seconds, more than zero.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::InvalidValue;

/// A positive length of time in whole seconds, at most [`GrantDuration::LONGEST`].
///
/// Displays in Snowgate's duration grammar (`snowgate_config::duration`), largest units
/// first: `2h`, `1h30m`, `45s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u64", into = "u64")]
#[derive(ts_rs::TS, schemars::JsonSchema)]
#[ts(type = "number")]
pub struct GrantDuration(u64);

impl GrantDuration {
    /// The longest duration anything in Snowgate can have (366 days), which keeps all time
    /// arithmetic far from overflow.
    pub const LONGEST: GrantDuration = GrantDuration(366 * 86_400);

    /// `d`, if it is more than zero, whole seconds, and at most [`Self::LONGEST`].
    pub fn new(d: Duration) -> Result<GrantDuration, InvalidValue> {
        if d.subsec_nanos() != 0 {
            return Err(InvalidValue::FractionalDuration {
                millis: d.as_millis(),
            });
        }
        GrantDuration::from_secs(d.as_secs())
    }

    /// `secs` seconds, if more than zero and at most [`Self::LONGEST`].
    pub fn from_secs(secs: u64) -> Result<GrantDuration, InvalidValue> {
        if secs == 0 {
            Err(InvalidValue::ZeroDuration)
        } else if secs > Self::LONGEST.0 {
            Err(InvalidValue::DurationTooLong {
                given: GrantDuration(secs),
                max: Self::LONGEST,
            })
        } else {
            Ok(GrantDuration(secs))
        }
    }

    /// `mins` minutes; see [`GrantDuration::from_secs`].
    pub fn from_mins(mins: u64) -> Result<GrantDuration, InvalidValue> {
        GrantDuration::from_secs(mins.saturating_mul(60))
    }

    /// `hours` hours; see [`GrantDuration::from_secs`].
    pub fn from_hours(hours: u64) -> Result<GrantDuration, InvalidValue> {
        GrantDuration::from_secs(hours.saturating_mul(3600))
    }

    /// The length in seconds.
    pub fn as_secs(self) -> u64 {
        self.0
    }

    /// The length as a `Duration`.
    pub fn as_duration(self) -> Duration {
        Duration::from_secs(self.0)
    }
}

impl TryFrom<u64> for GrantDuration {
    type Error = InvalidValue;
    fn try_from(secs: u64) -> Result<GrantDuration, InvalidValue> {
        GrantDuration::from_secs(secs)
    }
}

impl TryFrom<Duration> for GrantDuration {
    type Error = InvalidValue;
    fn try_from(d: Duration) -> Result<GrantDuration, InvalidValue> {
        GrantDuration::new(d)
    }
}

impl From<GrantDuration> for u64 {
    fn from(d: GrantDuration) -> u64 {
        d.0
    }
}

impl From<GrantDuration> for Duration {
    fn from(d: GrantDuration) -> Duration {
        d.as_duration()
    }
}

impl fmt::Display for GrantDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        snowgate_config::duration::Human(self.as_duration()).fmt(f)
    }
}
