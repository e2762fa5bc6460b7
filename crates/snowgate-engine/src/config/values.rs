//! The checked values only the desktop's config has: the team server's base URL, Snowflake
//! role and account names, the gateway's loopback listen addresses and approval counts. The
//! ones the team server shares are `snowgate_config`'s.

use std::fmt;
use std::net::SocketAddr;

use serde::{Deserialize, Deserializer, Serialize};
use snowgate_config::HttpsUrl;
use url::Url;

/// The team server's base URL: an [`HttpsUrl`] without credentials, query or fragment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ServerUrl(pub Url);

impl<'de> Deserialize<'de> for ServerUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let HttpsUrl(url) = HttpsUrl::deserialize(d)?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(serde::de::Error::custom(
                "the team server's URL must not carry a user name or password; the broker signs in with your IdP access token",
            ));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(serde::de::Error::custom(format!(
                "\"{url}\" must be the server's base URL, without `?query` or `#fragment`"
            )));
        }
        Ok(ServerUrl(url))
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str().trim_end_matches('/'))
    }
}
macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident, $check:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The value as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                let check: fn(&str) -> Result<(), String> = $check;
                check(&s).map_err(serde::de::Error::custom)?;
                Ok($name(s))
            }
        }
    };
}
string_newtype!(
    /// A Snowflake account identifier, usable as the first label of a host name.
    AccountName,
    |s| {
        let ok = !s.is_empty()
            && s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
        if ok {
            Ok(())
        } else {
            Err(format!(
                "{s:?} is not a Snowflake account identifier (for example `acme-prod` or `xy12345.eu-central-1`)"
            ))
        }
    }
);
/// One or more loopback socket addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct ListenAddrs(pub Vec<SocketAddr>);

impl<'de> Deserialize<'de> for ListenAddrs {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum OneOrMany {
            One(String),
            Many(Vec<String>),
        }
        let items = match OneOrMany::deserialize(d)? {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        };
        if items.is_empty() {
            return Err(serde::de::Error::custom(
                "needs at least one address, for example \"127.0.0.1:8765\"",
            ));
        }
        let mut addrs = Vec::new();
        for s in items {
            let addr: SocketAddr = s.parse().map_err(|_| {
                serde::de::Error::custom(format!(
                    "{s:?} is not an address with a port, for example \"127.0.0.1:8765\" or \"[::1]:8765\""
                ))
            })?;
            if !addr.ip().is_loopback() {
                return Err(serde::de::Error::custom(format!(
                    "{s:?} is not a loopback address; the gateway serves only this machine, so use 127.0.0.1 or [::1]"
                )));
            }
            addrs.push(addr);
        }
        Ok(ListenAddrs(addrs))
    }
}
