//! Local wall-clock time for sentences a person reads ("ended at 14:05").
//!
//! The one `hour_minute` is `snowgate_config`'s, so the gateway's sentences and the engine's
//! show the same clock.

pub use snowgate_config::local_time::hour_minute;
