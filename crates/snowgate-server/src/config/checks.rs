//! The team server config's checks that need more than one value: TLS files or a proxy, the
//! minting keys, the lifetimes' ranges, how callers authenticate (`[identity] caller_auth` and
//! what each mode needs), `[[groups]]`, `[reaper]`, and the `[[roles]]` policy. Each error points at the key
//! to change.

use std::time::Duration;

use snowgate_config::{ConfigText, LocatedError};

use super::{GroupsFrom, ServerConfig};

impl ServerConfig {
    /// Checks what one value can't: TLS files or a proxy, the minting keys, token lifetimes,
    /// the callers' settings, and the policy.
    pub(super) fn validate(&self, source: &ConfigText) -> Result<(), LocatedError> {
        let at_key = |key: &str, message: String| source.error_at_key(key, message);
        let s = &self.server;
        match (s.behind_tls_proxy, &s.tls_cert, &s.tls_key) {
            (false, Some(_), Some(_)) => {}
            (false, None, _) => return Err(at_key(
                "server.tls_cert",
                "missing; set tls_cert and tls_key (PEM files), or behind_tls_proxy = true when a proxy in front terminates TLS".into(),
            )),
            (false, Some(_), None) => {
                return Err(at_key(
                    "server.tls_key",
                    "missing; tls_cert needs its private key".into(),
                ))
            }
            (true, Some(_), _) | (true, _, Some(_)) => {
                return Err(at_key(
                    "server.behind_tls_proxy",
                    "is true, so tls_cert and tls_key would not be used; remove one or the other"
                        .into(),
                ))
            }
            (true, None, None) => {}
        }
        if self.server.public_url.0.scheme() != "https" {
            return Err(at_key(
                "server.public_url",
                "must be https://: Snowflake fetches the JWKS from it".into(),
            ));
        }
        if self.minting.key_files.is_empty() {
            return Err(at_key(
                "minting.key_files",
                "is empty; list at least one RSA private key (PEM) to sign Snowflake tokens with"
                    .into(),
            ));
        }
        let lifetime = self.minting.token_lifetime.0;
        if lifetime < Duration::from_secs(30) || lifetime > Duration::from_secs(3600) {
            return Err(at_key(
                "minting.token_lifetime",
                format!(
                    "{} is out of range; keep it between 30s and 1h",
                    self.minting.token_lifetime
                ),
            ));
        }
        let header = s.header_read_timeout.0;
        if header < Duration::from_secs(1) || header > Duration::from_secs(300) {
            return Err(at_key(
                "server.header_read_timeout",
                format!(
                    "{} is out of range; keep it between 1s and 5m",
                    s.header_read_timeout
                ),
            ));
        }
        let idle = s.idle_timeout.0;
        let keep_alive = crate::api::events::KEEP_ALIVE;
        if idle <= keep_alive || idle > Duration::from_secs(3600) {
            return Err(at_key(
                "server.idle_timeout",
                format!(
                    "{} is out of range; keep it above the event stream's keep-alive ({} s), so open streams are not cut between keep-alives, and at most 1h",
                    s.idle_timeout,
                    keep_alive.as_secs()
                ),
            ));
        }
        if s.max_connections_per_address.0 > s.max_connections.0 {
            return Err(at_key(
                "server.max_connections_per_address",
                format!(
                    "{} is above max_connections ({}); one address can't hold more than the server does",
                    s.max_connections_per_address.0, s.max_connections.0
                ),
            ));
        }
        let age = self.audit.report_max_age.0;
        if age < Duration::from_secs(3600) || age > Duration::from_secs(366 * 86_400) {
            return Err(at_key(
                "audit.report_max_age",
                format!(
                    "{} is out of range; keep it between 1h and 366d",
                    self.audit.report_max_age
                ),
            ));
        }
        let every = self.audit.checkpoint_every.0;
        if every < Duration::from_secs(1) || every > Duration::from_secs(3600) {
            return Err(at_key(
                "audit.checkpoint_every",
                format!(
                    "{} is out of range; keep it between 1s and 1h (a checkpoint older than the records after it leaves those unanchored)",
                    self.audit.checkpoint_every
                ),
            ));
        }
        self.validate_callers(source)?;
        self.validate_reaper(source)?;
        snowgate_grants::role_config::check(&self.roles, source)?;
        self.validate_accounts(source)?;
        Ok(())
    }

    /// `[[snowflake]]` names are unique, and each role's `account` names one of them (required
    /// with several).
    fn validate_accounts(&self, source: &ConfigText) -> Result<(), LocatedError> {
        let names: Vec<&str> = self
            .snowflake
            .iter()
            .map(|a| a.name.get_ref().as_str())
            .collect();
        for (i, account) in self.snowflake.iter().enumerate() {
            let name = account.name.get_ref().as_str();
            if names[..i].iter().any(|n| n.eq_ignore_ascii_case(name)) {
                return Err(source.error(
                    Some(source.line_of(account.name.span().start)),
                    format!("snowflake[{i}].name"),
                    format!("account name {name} is used twice; each [[snowflake]] entry needs its own name"),
                ));
            }
        }
        if names.is_empty() {
            if let Some((i, role)) = self
                .roles
                .iter()
                .enumerate()
                .find(|(_, r)| r.account.is_some())
            {
                let account = role.account.as_ref().expect("found with an account");
                return Err(source.error(
                    Some(source.line_of(account.span().start)),
                    format!("roles[{i}].account"),
                    format!(
                        "names account {:?}, but the config has no [[snowflake]] entries; add [[snowflake]] name = {:?} (with its audience if it differs from [minting]'s), or remove account",
                        account.get_ref().as_str(),
                        account.get_ref().as_str()
                    ),
                ));
            }
            return Ok(());
        }
        snowgate_grants::role_config::check_accounts(&self.roles, &names, source)
    }

    fn validate_reaper(&self, source: &ConfigText) -> Result<(), LocatedError> {
        let Some(r) = &self.reaper else {
            return Ok(());
        };
        let at_key = |key: &str, message: String| source.error_at_key(key, message);
        let names: Vec<&str> = self
            .snowflake
            .iter()
            .map(|a| a.name.get_ref().as_str())
            .collect();
        match &r.snowflake {
            None if !names.is_empty() => {
                return Err(source.error(
                    Some(source.line_of_text("[reaper]")),
                    "reaper.snowflake",
                    format!(
                        "missing: the config has [[snowflake]] accounts ({}), so name the one account_url is (snowflake = \"{}\"); the reaper looks only for that account's sessions",
                        names.join(", "),
                        names[0]
                    ),
                ))
            }
            Some(n) if !names.iter().any(|a| a.eq_ignore_ascii_case(n.as_str())) => {
                return Err(at_key(
                    "reaper.snowflake",
                    format!(
                        "{:?} is not a [[snowflake]] name{}",
                        n.as_str(),
                        match names.as_slice() {
                            [] => " (the config has no [[snowflake]] entries)".to_string(),
                            some => format!("; the accounts are {}", some.join(", ")),
                        }
                    ),
                ))
            }
            _ => {}
        }
        if r.account_name().is_none() {
            return Err(at_key(
                "reaper.account",
                format!("missing: {} is not a *.snowflakecomputing.com URL, so give the account name key-pair logins carry (account = \"ORG-ACCOUNT\")", r.account_url),
            ));
        }
        let poll = r.poll_interval.0;
        if poll < Duration::from_secs(1) || poll > Duration::from_secs(300) {
            return Err(at_key(
                "reaper.poll_interval",
                format!(
                    "{} is out of range; keep it between 1s and 5m",
                    r.poll_interval
                ),
            ));
        }
        let bad =
            |v: &str| v.is_empty() || v.chars().any(|c| c == '\'' || c == '"' || c.is_control());
        for (key, value) in [
            ("reaper.user", r.user.as_str()),
            ("reaper.role", r.role.as_str()),
        ] {
            if bad(value) {
                return Err(at_key(
                    key,
                    format!("{value:?} is not a Snowflake name; give it without quotes"),
                ));
            }
        }
        Ok(())
    }

    fn validate_callers(&self, source: &ConfigText) -> Result<(), LocatedError> {
        let at_key = |key: &str, message: String| source.error_at_key(key, message);
        let id = &self.identity;
        let mode = id.caller_auth.as_str();
        if id.caller_auth.accepts_access_tokens() && id.audience.is_none() {
            return Err(at_key(
                "identity.audience",
                format!("missing: caller_auth = \"{mode}\" takes IdP access tokens, so set the audience (`aud`) the IdP puts in access tokens for this server's API, or use caller_auth = \"id_token\" when the IdP issues no access tokens for custom APIs"),
            ));
        }
        if id.caller_auth.exchanges_id_tokens() {
            if id.client_id.is_none() {
                return Err(at_key(
                    "identity.client_id",
                    format!("missing: caller_auth = \"{mode}\" exchanges desktops' ID tokens, so set the desktop's OAuth client id (the `aud` of its ID tokens)"),
                ));
            }
            match &self.sessions {
                None => return Err(at_key(
                    "identity.caller_auth",
                    format!("is \"{mode}\", which needs a [sessions] table with key_files: make a key with `openssl rand -out /etc/snowgate/session.key 48` and add [sessions] key_files = [\"/etc/snowgate/session.key\"]"),
                )),
                Some(s) if s.key_files.is_empty() => {
                    return Err(at_key(
                        "sessions.key_files",
                        "is empty; list at least one key file (`openssl rand -out session.key 48`)".into(),
                    ))
                }
                Some(_) => {}
            }
        }
        if let (Some(a), Some(c)) = (&id.audience, &id.client_id) {
            if a.as_str() == c.as_str() {
                return Err(at_key(
                    "identity.audience",
                    "is the desktop's client id; ID tokens carry that audience, so they would pass as access tokens. Use the API's own audience".into(),
                ));
            }
        }
        let age = id.id_token_max_age.0;
        if age < Duration::from_secs(30) || age > Duration::from_secs(600) {
            return Err(at_key(
                "identity.id_token_max_age",
                format!(
                    "{} is out of range; keep it between 30s and 10m",
                    id.id_token_max_age
                ),
            ));
        }
        if let Some(s) = &self.sessions {
            let l = s.lifetime.0;
            if l < Duration::from_secs(60) || l > Duration::from_secs(3600) {
                return Err(at_key(
                    "sessions.lifetime",
                    format!("{} is out of range; keep it between 1m and 1h", s.lifetime),
                ));
            }
        }
        if id.groups_from == GroupsFrom::Token && !self.groups.is_empty() {
            return Err(at_key(
                "identity.groups_from",
                "is \"token\", so the [[groups]] tables would be ignored; remove them or set groups_from = \"both\"".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, g) in self.groups.iter().enumerate() {
            let at = |message: String| {
                source.error(
                    source.line_of_table("groups", i),
                    format!("groups[{i}]"),
                    message,
                )
            };
            if !seen.insert(g.name.as_str()) {
                return Err(at(format!(
                    "group {:?} is defined twice; list all its members in one [[groups]] table",
                    g.name.as_str()
                )));
            }
            if g.subjects.is_empty() && g.emails.is_empty() {
                return Err(at(format!(
                    "group {:?} has no members; list `subjects` or `emails`",
                    g.name.as_str()
                )));
            }
            if let Some(bad) = g.emails.iter().find(|e| !e.as_str().contains('@')) {
                return Err(at(format!("{:?} is not an email address", bad.as_str())));
            }
        }
        Ok(())
    }
}
