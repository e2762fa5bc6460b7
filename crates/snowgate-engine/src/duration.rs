//! Durations as people write them in Snowgate: `30m`, `2h`, `1h30m`, `1d 12h`.
//!
//! The grammar is deliberately strict: whole numbers followed by one of `d`, `h`, `m` or `s`,
//! optionally separated by spaces. Anything else (`2 hrs`, `-1h`, `1.5h`) is refused with a
//! message that shows the right form, because a grant's length is not a thing to guess at.

use std::fmt;
use std::time::Duration;

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

/// Formats a duration in the same grammar, largest units first: `1h30m`, `45s`, `0s`.
pub fn format(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if secs >= size {
            out.push_str(&format!("{}{unit}", secs / size));
            secs %= size;
        }
    }
    out
}

/// A duration that displays in Snowgate's grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Human(pub Duration);

impl fmt::Display for Human {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_forms() {
        assert_eq!(parse("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse("2h").unwrap(), Duration::from_secs(7200));
        assert_eq!(parse("1h30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse("1d 12h").unwrap(), Duration::from_secs(129_600));
        assert_eq!(parse(" 45s ").unwrap(), Duration::from_secs(45));
    }

    #[test]
    fn refuses_what_people_might_guess() {
        for bad in [
            "2 hrs",
            "2hours",
            "-1h",
            "1.5h",
            "h",
            "",
            "10",
            "1h 30",
            "99999999999999999999d",
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.input, bad);
            assert!(err.to_string().contains("write it like"));
        }
    }

    #[test]
    fn format_round_trips() {
        for s in ["1h30m", "45s", "1d12h", "8h", "0s"] {
            assert_eq!(format(parse(s).unwrap()), s);
        }
    }
}
