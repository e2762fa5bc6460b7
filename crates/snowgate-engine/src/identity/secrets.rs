//! Token values as types that cannot be printed.
//!
//! Every token the identity module holds (access, refresh and ID tokens) lives in one of the
//! types here. Their `Debug` and `Display` print `[redacted]`, they implement no `Serialize`,
//! and the value comes out only through an explicit `expose_secret()` at the one place that must
//! send it. The memory is zeroed on drop (through `secrecy::SecretString`).

use std::fmt;
use std::time::SystemTime;

use secrecy::{ExposeSecret, SecretString};

macro_rules! secret_token {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone)]
        pub struct $name(SecretString);

        impl $name {
            /// Wraps a token value.
            pub fn new(value: impl Into<String>) -> Self {
                $name(SecretString::from(value.into()))
            }

            /// The token value, for the one place that sends it. Never log or format it.
            pub fn expose_secret(&self) -> &str {
                self.0.expose_secret()
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}([redacted])", stringify!($name))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("[redacted]")
            }
        }

        impl PartialEq for $name {
            /// Compares in constant time for equal lengths, so a comparison leaks no prefix.
            fn eq(&self, other: &Self) -> bool {
                constant_time_eq(self.expose_secret().as_bytes(), other.expose_secret().as_bytes())
            }
        }

        impl Eq for $name {}
    };
}

secret_token!(
    /// An OAuth access token: for the IdP (userinfo, the team server) or a Snowflake JWT.
    AccessToken
);
secret_token!(
    /// An OAuth refresh token. Lives in memory and in the [`Vault`](super::vault::Vault) only.
    RefreshToken
);
secret_token!(
    /// An OpenID Connect ID token (a JWT), held only while it is verified.
    IdTokenValue
);

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An access token for Snowflake: a JWT from the IdP for the Snowflake audience, scoped to one
/// role (`scp: session:role:ROLE`). `Debug` shows the role and expiry, never the token.
#[derive(Clone, Debug)]
pub struct SnowflakeToken {
    /// The Snowflake role the token is scoped to.
    pub role: String,
    /// The JWT.
    pub token: AccessToken,
    /// When the IdP said the token stops working.
    pub expires_at: SystemTime,
}

/// An access token for the IdP itself (userinfo, and the team server's bearer auth).
#[derive(Clone, Debug)]
pub struct IdpAccessToken {
    /// The token (opaque or a JWT, as the IdP chooses).
    pub token: AccessToken,
    /// When the IdP said the token stops working.
    pub expires_at: SystemTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let t = RefreshToken::new("rt-super-secret-value");
        assert_eq!(format!("{t:?}"), "RefreshToken([redacted])");
        assert_eq!(format!("{t}"), "[redacted]");
        let s = SnowflakeToken {
            role: "ANALYST".into(),
            token: AccessToken::new("eyJhbGciOi.secret.sig"),
            expires_at: SystemTime::UNIX_EPOCH,
        };
        let shown = format!("{s:?} {s:#?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("ANALYST"), "{shown}");
        assert_eq!(t.expose_secret(), "rt-super-secret-value");
    }

    #[test]
    fn equality_compares_values() {
        assert_eq!(AccessToken::new("a"), AccessToken::new("a"));
        assert_ne!(AccessToken::new("a"), AccessToken::new("b"));
        assert_ne!(AccessToken::new("a"), AccessToken::new("ab"));
    }
}
