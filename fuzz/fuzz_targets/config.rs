//! The duration grammar and the config parser (`snowgate-config`).
//!
//! The first byte picks the input: a duration string, or a whole TOML config text read through
//! `ConfigText::parse` into a struct made of the crate's checked values, as the desktop's and
//! the team server's configs are. Properties: a parsed duration formats and parses back to the
//! same value, and formatting is canonical; a config error names a line that exists and a key
//! that is in the text; the line lookups never fail on any text.
#![no_main]

use std::path::Path;
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use snowgate_config::duration::{format, parse};
use snowgate_config::{ClockSkew, ConfigDuration, ConfigText, HttpsUrl, NonEmpty, Secret};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Config {
    max_duration: Option<ConfigDuration>,
    clock_skew: Option<ClockSkew>,
    issuer: Option<HttpsUrl>,
    client_secret: Option<Secret>,
    #[serde(default)]
    roles: Vec<Role>,
    team: Option<Team>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Role {
    name: NonEmpty,
    max_duration: ConfigDuration,
    default_duration: Option<ConfigDuration>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct Team {
    server: HttpsUrl,
    poll: Option<ConfigDuration>,
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    if mode % 2 == 0 {
        duration(text);
    } else {
        config(text);
    }
});

fn duration(text: &str) {
    if let Ok(d) = parse(text) {
        let shown = format(d);
        assert_eq!(parse(&shown), Ok(d), "{text:?} → {d:?} → {shown:?}");
        assert_eq!(format(parse(&shown).unwrap()), shown, "not canonical");
    }
    // Any whole number of seconds formats into the grammar and back.
    let secs = text
        .bytes()
        .fold(0u64, |n, b| n.wrapping_mul(131).wrapping_add(b as u64));
    let d = Duration::from_secs(secs);
    assert_eq!(parse(&format(d)), Ok(d), "{secs} s");
}

fn config(text: &str) {
    let config = ConfigText::new(text, Path::new("fuzz.toml"));
    let lines = text.lines().count().max(1);
    if let Err(e) = config.parse::<Config>() {
        if let Some(line) = e.line {
            assert!(
                line >= 1 && line <= lines + 1,
                "line {line} of {lines}: {e}"
            );
        }
        let _ = e.to_string();
    }
    for key in ["roles.max_duration", "team.server", "team.poll", "issuer"] {
        if let Some(line) = config.line_of_key(key) {
            assert!(
                line >= 1 && line <= lines,
                "{key} at line {line} of {lines}"
            );
        }
    }
    if let Some(line) = config.line_of_table("roles", 1) {
        assert!(line >= 2 && line <= lines);
    }
    let _ = config.line_of_text("[team]");
}
