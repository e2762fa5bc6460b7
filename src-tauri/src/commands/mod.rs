//! The Tauri commands the UI may call, one module per domain. Each command forwards to the
//! engine through the running [`snowgate_engine::Broker`] (see [`crate::broker::BrokerHost`])
//! and returns its result unchanged; a new command also needs its name in `build.rs` and a
//! permission in `capabilities/default.json`.
//!
//! - [`status`]: the broker's status, and restarting it after a fix.
//! - [`identity`]: signing in (browser or device code), signing out, and who is signed in.

pub mod identity;
pub mod status;
