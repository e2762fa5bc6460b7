//! Where the identity module gets the time: the same injectable wall clock as the grants.
//!
//! Token expiry, refresh scheduling and ID-token checks read the wall clock through
//! [`Clock`], so tests move time with a [`ManualClock`] instead of sleeping. It is wall time
//! (`SystemTime`) because the IdP's `exp` and `iat` are wall time.

pub use snowgate_grants::clock::{Clock, ManualClock, SystemClock};
