//! The Tauri commands the UI may call, one module per domain. Each command forwards to the
//! engine through [`crate::broker::Broker`] and returns its result unchanged; a new command
//! also needs its name in `build.rs` and a permission in `capabilities/default.json`.

pub mod status;
