//! The Snowgate broker engine.
//!
//! One library with one API: the CLI, the tray app and the team server all call the functions
//! here. It never depends on Tauri or GTK, so it builds and tests on a headless machine.
//!
//! - [`config`]: the TOML config, validated with errors that name the file, line and key.
//! - [`duration`]: durations as people write them (`2h`, `1h30m`), strictly parsed.
//! - [`paths`]: where config and data live (`--config`, `$SNOWGATE_CONFIG`, XDG dirs).
//! - [`logging`]: tracing setup, as text or JSON.
//! - [`status`]: the broker's status as the UI and CLI show it.

pub mod config;
pub mod duration;
pub mod engine;
pub mod logging;
pub mod paths;
pub mod status;

pub use config::Config;
pub use engine::Engine;
pub use status::BrokerStatus;
