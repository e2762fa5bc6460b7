//! The nouns of just-in-time access: who asks, for which role, for how long and why.
//!
//! Each value that a person types or an identity provider asserts has its own type, checked
//! where it is made: a [`Reason`] is never blank, a [`GrantDuration`] is never zero, a
//! [`GrantId`] always has the `g_` form. Code past the constructors does not re-check them.
//! [`Grant`] is the record of one request from its creation to its end; only the state machine
//! makes new versions of it.

mod actor;
mod duration;
mod grant;
mod id;
mod role;
mod text;

pub use actor::{Actor, Subject};
pub use duration::GrantDuration;
pub use grant::{Approval, Decider, Extension, ExtensionState, Grant, GrantState, EXPIRY_WARNING};
pub use id::GrantId;
pub use role::RoleName;
pub use text::{Comment, Reason, Ticket};

/// A value that was refused where it was made. The message says what a valid one looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidValue {
    #[error("{input:?} is not a grant id; grant ids look like g_ followed by 20 letters a-z and digits 2-7 (for example g_k3n5q7r2t4v6x8z2a4c6)")]
    GrantId { input: String },
    #[error("{input:?} is not a Snowflake role name (letters, digits, `_` and `$`, not starting with a digit, at most 255)")]
    RoleName { input: String },
    #[error("a user's subject must not be empty")]
    Subject,
    #[error("{message}")]
    EmptyText {
        what: &'static str,
        message: &'static str,
    },
    #[error("the {what} is {len} characters long; keep it to at most {max}")]
    TextTooLong {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("a duration must be longer than zero")]
    ZeroDuration,
    #[error("a duration is counted in whole seconds; {millis} ms is not")]
    FractionalDuration { millis: u128 },
    #[error("{given} is longer than any grant can be (at most {max})")]
    DurationTooLong {
        given: GrantDuration,
        max: GrantDuration,
    },
    #[error("{input:?} is not a grant state (pending, active, denied, cancelled, timed_out, expired, revoked)")]
    GrantState { input: String },
}
