//! The checks that need more than one value: solo or team mode's required keys, duplicate
//! roles, an auto-approval cap above the maximum, a role nobody can approve, and whether the
//! provider preset fits the rest of the config. Each error points at the key to change.

use snowgate_config::{ConfigText, LocatedError};

use super::{AudienceParameter, Config, GroupsForm, Preset, TeamAuth};

impl Config {
    /// Checks that the provider preset and its overrides can work with the rest of the config.
    pub(super) fn validate_provider(&self, source: &ConfigText) -> Result<(), LocatedError> {
        let text = source.text;
        let invalid = |needle: &str, key: &str, message: String| {
            source.error(Some(source.line_of_text(needle)), key, message)
        };
        let id = &self.identity;
        let preset = Preset::of(id.provider);
        let settings = id.provider_settings();
        if preset.groups_claim.is_none() && id.groups_claim.is_none() {
            return Err(invalid(
                "provider",
                "identity.groups_claim",
                format!(
                    "missing: {} sends groups only in a namespaced custom claim that an Action adds, so name it, e.g. groups_claim = \"https://example.com/groups\"",
                    id.provider.as_str()
                ),
            ));
        }
        if self.team.is_none() && !preset.solo {
            return Err(invalid(
                "provider",
                "identity.provider",
                format!(
                    "{} gives no access tokens for Snowflake, so it works only in team mode, where the team server mints Snowflake's tokens; add [team] server = \"...\"",
                    id.provider.as_str()
                ),
            ));
        }
        if settings.audience_parameter == AudienceParameter::ScopePrefix {
            if let Some(a) = &id.snowflake_audience {
                if a.as_str().trim_end_matches('/').is_empty() {
                    return Err(invalid(
                        "snowflake_audience",
                        "identity.snowflake_audience",
                        "must be the API's Application ID URI (e.g. \"api://snowflake\") when audience_parameter = \"scope_prefix\"".into(),
                    ));
                }
            }
        }
        for (i, role) in self.roles.iter().enumerate() {
            for approver in &role.approvers {
                let group = approver.as_str();
                if settings.groups_form != GroupsForm::None && !settings.groups_form.fits(group) {
                    // The approvers line of this role (no span is kept for list items).
                    let from = role.name.span().start;
                    let at = text[from..]
                        .find("approvers")
                        .map(|i| from + i)
                        .unwrap_or(from);
                    return Err(source.error(
                        Some(source.line_of(at)),
                        format!("roles[{i}].approvers"),
                        format!(
                            "{group:?} is not how this provider names groups: identity.groups_form is {:?}{}, so write approvers like {} (or set identity.groups_form = \"{}\")",
                            settings.groups_form.as_str(),
                            if id.groups_form.is_none() { format!(" (the {} preset)", id.provider.as_str()) } else { String::new() },
                            settings.groups_form.example(),
                            GroupsForm::of(group).as_str(),
                        ),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks `[[snowflake]]`: with several accounts each has a `name`, and no name is used
    /// twice.
    fn validate_accounts(&self, source: &ConfigText) -> Result<(), LocatedError> {
        let accounts = &self.snowflake.0;
        for (i, account) in accounts.iter().enumerate() {
            if accounts.len() > 1 && account.name.is_none() {
                return Err(source.error(
                    source.line_of_table("snowflake", i),
                    format!("snowflake[{i}].name"),
                    format!(
                        "missing: with several [[snowflake]] accounts each needs a name, which tools give as their account and roles name in account = \"...\" (e.g. name = \"{}\")",
                        account.account
                    ),
                ));
            }
            if let Some(earlier) = accounts[..i]
                .iter()
                .find(|a| a.name().eq_ignore_ascii_case(account.name()))
            {
                let line = match &account.name {
                    Some(n) => Some(source.line_of(n.span().start)),
                    None => source.line_of_table("snowflake", i),
                };
                return Err(source.error(
                    line,
                    format!("snowflake[{i}].name"),
                    format!(
                        "account name {} is used twice (also for account {}); each [[snowflake]] entry needs its own name",
                        account.name(),
                        earlier.account
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Checks the keys solo or team mode needs, and each role's policy.
    pub(super) fn validate(&self, source: &ConfigText) -> Result<(), LocatedError> {
        let text = source.text;
        let invalid = |span: std::ops::Range<usize>, key: String, message: String| {
            source.error(Some(source.line_of(span.start)), key, message)
        };
        if self.team.is_none() && self.identity.snowflake_audience.is_none() {
            let at = text.find("[identity]").unwrap_or(0);
            return Err(invalid(
                at..at,
                "identity.snowflake_audience".into(),
                "missing: in solo mode Snowgate asks the identity provider for Snowflake's tokens, so set the resource (audience) Snowflake's security integration accepts, e.g. snowflake_audience = \"https://snowflake.example.com\" (or add [team] server = \"...\" to use a team server)".into(),
            ));
        }
        if let Some(team) = &self.team {
            if team.auth == TeamAuth::IdToken && team.audience.is_some() {
                let at = text.find("[team]").unwrap_or(0);
                return Err(invalid(
                    at..at,
                    "team.audience".into(),
                    "is set, but auth = \"id_token\" asks the identity provider for no access token (the ID token is exchanged at the server); remove audience, or use auth = \"access_token\"".into(),
                ));
            }
            if team.auth == TeamAuth::AccessToken && !Preset::of(self.identity.provider).solo {
                let at = text.find("[team]").unwrap_or(0);
                return Err(invalid(
                    at..at,
                    "team.auth".into(),
                    format!(
                        "is \"access_token\" (the default), but {} mints no access tokens for the team server's API; set auth = \"id_token\" here and caller_auth = \"id_token\" (or \"both\") in the server's [identity]",
                        self.identity.provider.as_str()
                    ),
                ));
            }
        }
        let gateway = &self.gateway;
        if gateway.listen_tls.is_some() && !gateway.tls {
            return Err(source.error(
                source.line_of_key("gateway.listen_tls"),
                "gateway.listen_tls",
                "is set, but HTTPS is off; add tls = true to [gateway] to serve HTTPS there",
            ));
        }
        if let Some(tls) = &gateway.listen_tls {
            if let Some(both) = tls.0.iter().find(|a| gateway.listen.0.contains(a)) {
                return Err(source.error(
                    source.line_of_key("gateway.listen_tls"),
                    "gateway.listen_tls",
                    format!("{both} is also in listen; HTTPS needs a port of its own (or drop listen_tls to serve only HTTPS on listen)"),
                ));
            }
        }
        if let Some(life) = gateway.tls_leaf_lifetime {
            if life.0 > super::sections::MAX_TLS_LEAF_LIFETIME {
                return Err(source.error(
                    source.line_of_key("gateway.tls_leaf_lifetime"),
                    "gateway.tls_leaf_lifetime",
                    "is longer than 30d; the leaf is meant to be short-lived (it is renewed without a restart)",
                ));
            }
        }
        if let Some(wait) = gateway.wait_for_approval {
            if wait.0 > super::sections::MAX_WAIT_FOR_APPROVAL {
                return Err(source.error(
                    source.line_of_key("gateway.wait_for_approval"),
                    "gateway.wait_for_approval",
                    format!(
                        "is {}, longer than {}: a tool's login would time out before the wait ends (the Python connector 4.x gives up on a login request after 60 s and retries, the Node.js driver after 90 s); use at most {}",
                        snowgate_config::duration::format(wait.0),
                        snowgate_config::duration::format(super::sections::MAX_WAIT_FOR_APPROVAL),
                        snowgate_config::duration::format(super::sections::MAX_WAIT_FOR_APPROVAL),
                    ),
                ));
            }
        }
        if let Some(n) = gateway.threads {
            if !(1..=super::sections::MAX_GATEWAY_THREADS).contains(&n) {
                return Err(source.error(
                    source.line_of_key("gateway.threads"),
                    "gateway.threads",
                    format!(
                        "is {n}; give 1 to {} (or leave it out: one per core, at most {})",
                        super::sections::MAX_GATEWAY_THREADS,
                        snowgate_gateway::MAX_DEFAULT_SERVING_THREADS,
                    ),
                ));
            }
        }
        self.validate_accounts(source)?;
        snowgate_grants::role_config::check(&self.roles, source)?;
        let names: Vec<&str> = self.snowflake.iter().map(|a| a.name()).collect();
        snowgate_grants::role_config::check_accounts(&self.roles, &names, source)?;
        Ok(())
    }
}
