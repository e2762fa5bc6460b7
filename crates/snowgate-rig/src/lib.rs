//! The test rig: real parts on free loopback ports, torn down when dropped.
//!
//! Each part is a real program started as a child process: the OpenID provider (npm
//! `oidc-provider`), fakesnow behind the Snowflake front (`tests/snowflake/`), a Secret Service
//! (gnome-keyring on a private D-Bus), PostgreSQL, and the team server (`snowgate serve`, from a
//! built binary). Tests use the types here; the `snowgate-rig` binary exposes the same parts to
//! the shell.

pub mod clients;
pub mod faults;
pub mod idp;
pub mod paths;
pub mod postgres;
pub mod process;
pub mod secret_service;
pub mod snowflake;
pub mod team;
pub mod tls;

pub use process::{free_port, RigProcess};
pub use tls::TestCa;
