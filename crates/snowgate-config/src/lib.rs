//! What Snowgate's two TOML configs are made of: the desktop's (`snowgate_engine::config`) and
//! the team server's (`snowgate_server::config`).
//!
//! Each rule here exists once, so the two configs can't drift apart:
//!
//! - [`ConfigText`] parses a file and turns any error into a [`LocatedError`] that names the
//!   file, the line and the dotted key (`file: line N: key `a.b`: what is wrong`); cross-field
//!   checks use it to point at the key they refuse.
//! - [`HttpsUrl`] is `https://`, or plain `http://` for a loopback host (127.0.0.0/8, `::1`,
//!   `localhost`) and nothing else; [`ExistingFile`] is a path to a file; [`Secret`] never
//!   prints or serializes its value; [`NonEmpty`] is not blank.
//! - [`duration`] is the one duration grammar (`30m`, `2h`, `1h30m`, `1d 12h`), parse and
//!   format; [`ConfigDuration`] and [`ClockSkew`] are its bounded config values. The UI keeps a
//!   documented copy (`ui/src/lib/duration.ts`) that is tested against the same cases
//!   (`tests/duration_cases.json`).
//! - [`local_time::hour_minute`] is the `HH:MM` that sentences for people use.
//!
//! The crate sits at the bottom of the workspace (no Snowgate dependency, no I/O besides
//! reading a config file and checking that a named file exists), so the grants model, the
//! gateway, the engine and the server can all use it.

pub mod duration;
pub mod local_time;
mod located;
mod values;

pub use duration::{ClockSkew, ConfigDuration};
pub use located::{ConfigText, LocatedError};
pub use values::{is_loopback, ExistingFile, HttpsUrl, NonEmpty, Secret};
