//! Durations as people write them in Snowgate: `30m`, `2h`, `1h30m`, `1d 12h`.
//!
//! The grammar is deliberately strict: whole numbers followed by one of `d`, `h`, `m` or `s`,
//! optionally separated by spaces. Anything else (`2 hrs`, `-1h`, `1.5h`) is refused with a
//! message that shows the right form, because a grant's length is not a thing to guess at.
//!
//! This is the grammar's one home: the desktop's config and CLI, the team server's config and
//! the grants model all parse and format through it. `ui/src/lib/duration.ts` is a copy for
//! the UI, tested against the same cases (`tests/duration_cases.json` in this crate).
//!
//! [`ConfigDuration`] and [`ClockSkew`] are the grammar as config values, with their bounds.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a duration could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{input:?} is not a duration; write it like \"30m\", \"2h\" or \"1h30m\" (units: d, h, m, s)"
)]
pub struct DurationError {
    pub input: String,
}

/// Parses a duration in Snowgate's grammar. Zero is allowed here; callers decide the bounds.
pub fn parse(input: &str) -> Result<Duration, DurationError> {
    let err = || DurationError {
        input: input.to_string(),
    };
    let mut total: u64 = 0;
    let mut digits = String::new();
    let mut parts = 0;
    for c in input.trim().chars() {
        match c {
            '0'..='9' => digits.push(c),
            'd' | 'h' | 'm' | 's' => {
                if digits.is_empty() {
                    return Err(err());
                }
                let n: u64 = digits.parse().map_err(|_| err())?;
                let unit = match c {
                    'd' => 86_400,
                    'h' => 3_600,
                    'm' => 60,
                    _ => 1,
                };
                total = n
                    .checked_mul(unit)
                    .and_then(|v| total.checked_add(v))
                    .ok_or_else(err)?;
                digits.clear();
                parts += 1;
            }
            ' ' if digits.is_empty() => {}
            _ => return Err(err()),
        }
    }
    if parts == 0 || !digits.is_empty() {
        return Err(err());
    }
    Ok(Duration::from_secs(total))
}

/// Formats whole seconds in the same grammar, largest units first: `1h30m`, `45s`, `0s`.
/// Fractions of a second are dropped.
pub fn format(d: Duration) -> String {
    Human(d).to_string()
}

/// A duration that displays in Snowgate's grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Human(pub Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut secs = self.0.as_secs();
        if secs == 0 {
            return f.write_str("0s");
        }
        for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
            if secs >= size {
                write!(f, "{}{unit}", secs / size)?;
                secs %= size;
            }
        }
        Ok(())
    }
}

/// The longest duration a config value may have: 366 days, as long as any grant can be.
pub const LONGEST: Duration = Duration::from_secs(366 * 86_400);

/// A config duration written like `30m`, `2h` or `1h 30m`: at least one second and at most
/// [`LONGEST`]. Serializes and displays in the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfigDuration(pub Duration);

impl fmt::Display for ConfigDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Human(self.0).fmt(f)
    }
}

impl Serialize for ConfigDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let parsed = parse(&s).map_err(serde::de::Error::custom)?;
        if parsed < Duration::from_secs(1) {
            return Err(serde::de::Error::custom(format!(
                "{s:?} is too short; use at least 1s"
            )));
        }
        if parsed > LONGEST {
            return Err(serde::de::Error::custom(format!(
                "{s:?} is longer than a year"
            )));
        }
        Ok(ConfigDuration(parsed))
    }
}

/// A tolerated clock difference with an identity provider: `0s` up to `5m`. Serializes and
/// displays in the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ClockSkew(pub Duration);

impl ClockSkew {
    /// The most clock difference Snowgate tolerates.
    pub const MAX: Duration = Duration::from_secs(300);
}

impl fmt::Display for ClockSkew {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Human(self.0).fmt(f)
    }
}

impl Serialize for ClockSkew {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ClockSkew {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let parsed = parse(&s).map_err(serde::de::Error::custom)?;
        if parsed > ClockSkew::MAX {
            return Err(serde::de::Error::custom(format!(
                "{s:?} is too much clock skew to tolerate; use at most 5m and fix the clock"
            )));
        }
        Ok(ClockSkew(parsed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Holder<T> {
        d: T,
    }

    fn read<T: for<'de> Deserialize<'de>>(value: &str) -> Result<T, String> {
        toml::from_str::<Holder<T>>(&format!("d = {value:?}"))
            .map(|h| h.d)
            .map_err(|e| e.message().to_string())
    }

    #[test]
    fn refusals_say_how_to_write_a_duration() {
        let err = parse("2 hrs").unwrap_err();
        assert_eq!(err.input, "2 hrs");
        assert!(err.to_string().contains("write it like"), "{err}");
    }

    #[test]
    fn format_drops_fractions_of_a_second() {
        assert_eq!(format(Duration::from_millis(90_500)), "1m30s");
        assert_eq!(format(Duration::from_millis(999)), "0s");
    }

    #[test]
    fn a_config_duration_is_between_a_second_and_a_year() {
        assert_eq!(
            read::<ConfigDuration>("1h30m").unwrap(),
            ConfigDuration(Duration::from_secs(5400))
        );
        assert_eq!(read::<ConfigDuration>("366d").unwrap().0, LONGEST);
        let err = read::<ConfigDuration>("0s").unwrap_err();
        assert!(err.contains("too short; use at least 1s"), "{err}");
        let err = read::<ConfigDuration>("367d").unwrap_err();
        assert!(err.contains("longer than a year"), "{err}");
        let err = read::<ConfigDuration>("8 hours").unwrap_err();
        assert!(err.contains("\"8 hours\" is not a duration"), "{err}");
    }

    #[test]
    fn clock_skew_may_be_zero_and_at_most_five_minutes() {
        assert_eq!(read::<ClockSkew>("0s").unwrap().0, Duration::ZERO);
        assert_eq!(read::<ClockSkew>("5m").unwrap().0, ClockSkew::MAX);
        let err = read::<ClockSkew>("5m1s").unwrap_err();
        assert!(err.contains("at most 5m"), "{err}");
    }

    #[test]
    fn config_durations_write_back_in_the_grammar() {
        let d = ConfigDuration(Duration::from_secs(129_600));
        assert_eq!(d.to_string(), "1d12h");
        assert_eq!(toml::Value::try_from(d).unwrap().as_str(), Some("1d12h"));
        assert_eq!(ClockSkew(Duration::from_secs(60)).to_string(), "1m");
    }
}
