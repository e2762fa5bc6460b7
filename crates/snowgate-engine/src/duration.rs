//! Durations as people write them in Snowgate: `30m`, `2h`, `1h30m`, `1d 12h`.
//!
//! The grammar's one home is `snowgate_config::duration`, shared with the team server and the
//! grants model; this module keeps the engine's path to it for the CLI and the tray.

pub use snowgate_config::duration::{format, parse, DurationError, Human};
