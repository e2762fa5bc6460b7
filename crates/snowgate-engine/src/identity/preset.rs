//! Provider presets: how the identity providers companies run differ where Snowgate depends on
//! them, as named defaults for the `[identity]` keys.
//!
//! `[identity] provider` picks a preset; each of its values can be overridden key by key
//! (`audience_parameter`, `consent_prompt`, `offline_access`, `groups_claim`, `groups_form`,
//! and `[snowflake] user_claim`). [`Preset::of`] gives the defaults; [`ProviderSettings`] is
//! what remains after the overrides, and what sign-in works from. Every value here follows
//! the provider's documentation; `docs/idp/<provider>.md` cites it.
//!
//! [`ProviderSettings`] also words the advice for what a provider did that the settings did
//! not expect: the setting to change at the provider, or the key to change in the config.

use serde::{Deserialize, Serialize};

/// `[identity] provider`: which kind of OpenID provider the company runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// A standards-following provider: RFC 8707 `resource`, `offline_access` (OpenID Connect
    /// Core §11), groups as names in a `groups` claim.
    #[default]
    Generic,
    /// Microsoft Entra ID (v2.0 endpoints).
    Entra,
    /// Okta, with a custom authorization server.
    Okta,
    /// Auth0.
    Auth0,
    /// Keycloak.
    Keycloak,
    /// Google (Workspace): ID tokens only; team mode only.
    Google,
}

impl Provider {
    /// The config value.
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Generic => "generic",
            Provider::Entra => "entra",
            Provider::Okta => "okta",
            Provider::Auth0 => "auth0",
            Provider::Keycloak => "keycloak",
            Provider::Google => "google",
        }
    }
}

/// `[identity] audience_parameter`: how the Snowflake API (`snowflake_audience`) is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AudienceParameter {
    /// RFC 8707: `resource=<snowflake_audience>` at the authorization, device and token
    /// endpoints.
    Resource,
    /// `audience=<snowflake_audience>` at the authorization and device endpoints (Auth0).
    Audience,
    /// Each role scope is prefixed: `<snowflake_audience>/session:role:NAME` (Entra ID).
    ScopePrefix,
    /// Nothing: the provider issues every access token for one configured audience (Okta's
    /// custom authorization servers, Keycloak's audience mapper).
    None,
}

/// `[identity] consent_prompt`: when the browser sign-in sends `prompt=consent`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentPrompt {
    /// Not up front; once more with `prompt=consent` when no refresh token came back.
    Retry,
    /// On every browser sign-in.
    Always,
    /// Never.
    Never,
}

/// `[identity] offline_access`: how a refresh token is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfflineAccess {
    /// The `offline_access` scope.
    Scope,
    /// `access_type=offline` at the authorization endpoint (Google).
    AccessType,
}

/// `[identity] groups_form`: how the provider names groups, and so how `approvers` are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupsForm {
    /// Plain names: `analysts`.
    Names,
    /// Full paths: `/analysts`, `/dept/analysts` (Keycloak's group mapper by default).
    Paths,
    /// Object IDs (GUIDs): Entra ID.
    ObjectIds,
    /// The provider sends no groups (Google); they come from the team server's mapping.
    None,
}

impl GroupsForm {
    /// Whether `group` is written in this form.
    pub fn fits(self, group: &str) -> bool {
        match self {
            GroupsForm::Names => !group.starts_with('/') && !is_guid(group),
            GroupsForm::Paths => group.starts_with('/'),
            GroupsForm::ObjectIds => is_guid(group),
            GroupsForm::None => false,
        }
    }

    /// The form `group` is written in.
    pub fn of(group: &str) -> GroupsForm {
        if group.starts_with('/') {
            GroupsForm::Paths
        } else if is_guid(group) {
            GroupsForm::ObjectIds
        } else {
            GroupsForm::Names
        }
    }

    /// The config value.
    pub fn as_str(self) -> &'static str {
        match self {
            GroupsForm::Names => "names",
            GroupsForm::Paths => "paths",
            GroupsForm::ObjectIds => "object_ids",
            GroupsForm::None => "none",
        }
    }

    /// An example group in this form, for messages.
    pub fn example(self) -> &'static str {
        match self {
            GroupsForm::Names => "\"managers\"",
            GroupsForm::Paths => "\"/managers\"",
            GroupsForm::ObjectIds => "\"6f1c2a9e-3b7d-4c1e-9a2f-0d8b5e4c3a21\"",
            GroupsForm::None => "(none)",
        }
    }
}

/// Whether `s` is a GUID (8-4-4-4-12 hex digits).
pub fn is_guid(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A provider's defaults for the `[identity]` keys it decides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preset {
    pub audience_parameter: AudienceParameter,
    pub consent_prompt: ConsentPrompt,
    pub offline_access: OfflineAccess,
    /// `None`: the provider has no fixed name for it, so the config must name it.
    pub groups_claim: Option<&'static str>,
    pub groups_form: GroupsForm,
    /// The claim that names the Snowflake user (`[snowflake] user_claim`).
    pub user_claim: &'static str,
    /// The access-token claim that carries the role scopes, and so Snowflake's
    /// EXTERNAL_OAUTH_SCOPE_MAPPING_ATTRIBUTE: `scp` (Entra ID, Okta) or `scope` (Auth0,
    /// Keycloak); `None` where it differs between providers (generic) or no Snowflake tokens
    /// come (Google).
    pub scope_claim: Option<&'static str>,
    /// Whether the provider can mint Snowflake's tokens (solo mode).
    pub solo: bool,
}

impl Preset {
    /// The defaults of `provider`.
    pub fn of(provider: Provider) -> Preset {
        use AudienceParameter as A;
        match provider {
            Provider::Generic => Preset {
                audience_parameter: A::Resource,
                consent_prompt: ConsentPrompt::Retry,
                offline_access: OfflineAccess::Scope,
                groups_claim: Some("groups"),
                groups_form: GroupsForm::Names,
                user_claim: "sub",
                scope_claim: None,
                solo: true,
            },
            Provider::Entra => Preset {
                audience_parameter: A::ScopePrefix,
                consent_prompt: ConsentPrompt::Never,
                offline_access: OfflineAccess::Scope,
                groups_claim: Some("groups"),
                groups_form: GroupsForm::ObjectIds,
                user_claim: "preferred_username",
                scope_claim: Some("scp"),
                solo: true,
            },
            Provider::Okta => Preset {
                audience_parameter: A::None,
                consent_prompt: ConsentPrompt::Never,
                offline_access: OfflineAccess::Scope,
                groups_claim: Some("groups"),
                groups_form: GroupsForm::Names,
                user_claim: "sub",
                scope_claim: Some("scp"),
                solo: true,
            },
            Provider::Auth0 => Preset {
                audience_parameter: A::Audience,
                consent_prompt: ConsentPrompt::Never,
                offline_access: OfflineAccess::Scope,
                groups_claim: None,
                groups_form: GroupsForm::Names,
                user_claim: "sub",
                scope_claim: Some("scope"),
                solo: true,
            },
            Provider::Keycloak => Preset {
                audience_parameter: A::None,
                consent_prompt: ConsentPrompt::Never,
                offline_access: OfflineAccess::Scope,
                groups_claim: Some("groups"),
                groups_form: GroupsForm::Paths,
                user_claim: "preferred_username",
                scope_claim: Some("scope"),
                solo: true,
            },
            Provider::Google => Preset {
                audience_parameter: A::None,
                consent_prompt: ConsentPrompt::Never,
                offline_access: OfflineAccess::AccessType,
                groups_claim: Some("groups"),
                groups_form: GroupsForm::None,
                user_claim: "email",
                scope_claim: None,
                solo: false,
            },
        }
    }
}

/// The provider settings sign-in works from: the preset with the config's overrides applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSettings {
    pub provider: Provider,
    pub audience_parameter: AudienceParameter,
    pub consent_prompt: ConsentPrompt,
    pub offline_access: OfflineAccess,
    pub groups_claim: String,
    pub groups_form: GroupsForm,
}

impl Default for ProviderSettings {
    fn default() -> Self {
        let p = Preset::of(Provider::Generic);
        ProviderSettings {
            provider: Provider::Generic,
            audience_parameter: p.audience_parameter,
            consent_prompt: p.consent_prompt,
            offline_access: p.offline_access,
            groups_claim: "groups".into(),
            groups_form: p.groups_form,
        }
    }
}

impl ProviderSettings {
    /// The scope to ask for to get a Snowflake token for `role`.
    pub fn role_scope(&self, audience: &str, role: &str) -> String {
        match self.audience_parameter {
            AudienceParameter::ScopePrefix => {
                format!("{}/session:role:{role}", audience.trim_end_matches('/'))
            }
            _ => format!("session:role:{role}"),
        }
    }

    /// Whether this sign-in asks for a refresh token at all (it always should).
    pub fn asks_offline(&self, scopes: &[String]) -> bool {
        match self.offline_access {
            OfflineAccess::Scope => scopes.iter().any(|s| s == "offline_access"),
            OfflineAccess::AccessType => true,
        }
    }

    /// What to change when the provider issued no refresh token although one was asked for.
    pub fn no_refresh_token_advice(&self) -> String {
        match self.provider {
            Provider::Generic => "allow the refresh_token grant for Snowgate's client at the identity provider and let it honour offline_access (some providers need the user to consent on the provider's consent page; Snowgate asked for it)".into(),
            Provider::Entra => "in Entra ID, grant (or admin-consent) the delegated permission offline_access to the Snowgate app registration (API permissions > Microsoft Graph > offline_access)".into(),
            Provider::Okta => "in Okta, tick Refresh Token under the Snowgate app's Grant type, and in the authorization server's access policy rule allow the Refresh Token grant with the offline_access scope".into(),
            Provider::Auth0 => "in Auth0, turn on Allow Offline Access in the Snowflake API's settings (Applications > APIs > Snowflake > Settings) and allow the Refresh Token grant for the Snowgate application".into(),
            Provider::Keycloak => "in Keycloak, give the user the offline_access realm role (or add offline_access to the client's optional client scopes)".into(),
            Provider::Google => "Google issues a refresh token with access_type=offline only when the user consents; remove Snowgate's access at myaccount.google.com/permissions and sign in again".into(),
        }
    }

    /// Advice when the provider refused or ignored how the Snowflake audience was asked for.
    pub fn audience_advice(&self) -> String {
        match self.audience_parameter {
            AudienceParameter::Resource => "this provider does not take RFC 8707 `resource`; set identity.provider to your provider (\"entra\", \"okta\", \"auth0\", \"keycloak\"), or identity.audience_parameter to \"scope_prefix\", \"audience\" or \"none\"".into(),
            AudienceParameter::Audience => "this provider does not take the `audience` parameter; set identity.provider to your provider, or identity.audience_parameter to \"resource\", \"scope_prefix\" or \"none\"".into(),
            AudienceParameter::ScopePrefix => "this provider does not know scopes prefixed with identity.snowflake_audience; set identity.provider to your provider, or identity.audience_parameter to \"resource\", \"audience\" or \"none\"".into(),
            AudienceParameter::None => "the provider's access tokens carry no Snowflake role scopes; add the session:role:NAME scopes to the API (audience) the provider issues tokens for, or set identity.audience_parameter to \"resource\", \"audience\" or \"scope_prefix\"".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guids_paths_and_names_are_told_apart() {
        assert!(is_guid("6f1c2a9e-3b7d-4c1e-9a2f-0d8b5e4c3a21"));
        assert!(!is_guid("managers"));
        assert!(!is_guid("6f1c2a9e-3b7d-4c1e-9a2f-0d8b5e4c3a2"));
        assert_eq!(GroupsForm::of("/analysts"), GroupsForm::Paths);
        assert_eq!(GroupsForm::of("analysts"), GroupsForm::Names);
        assert_eq!(
            GroupsForm::of("6f1c2a9e-3b7d-4c1e-9a2f-0d8b5e4c3a21"),
            GroupsForm::ObjectIds
        );
        assert!(GroupsForm::Paths.fits("/a/b"));
        assert!(!GroupsForm::Names.fits("/a"));
    }

    #[test]
    fn entra_prefixes_role_scopes_with_the_application_id_uri() {
        let s = ProviderSettings {
            audience_parameter: AudienceParameter::ScopePrefix,
            ..ProviderSettings::default()
        };
        assert_eq!(
            s.role_scope("api://snowflake/", "ANALYST"),
            "api://snowflake/session:role:ANALYST"
        );
        assert_eq!(
            ProviderSettings::default().role_scope("api://snowflake", "ANALYST"),
            "session:role:ANALYST"
        );
    }

    #[test]
    fn only_generic_retries_with_a_consent_prompt_and_only_google_is_team_only() {
        for p in [
            Provider::Entra,
            Provider::Okta,
            Provider::Auth0,
            Provider::Keycloak,
            Provider::Google,
        ] {
            assert_eq!(Preset::of(p).consent_prompt, ConsentPrompt::Never, "{p:?}");
            assert_eq!(Preset::of(p).solo, p != Provider::Google, "{p:?}");
        }
        assert_eq!(
            Preset::of(Provider::Generic).consent_prompt,
            ConsentPrompt::Retry
        );
        assert_eq!(Preset::of(Provider::Auth0).groups_claim, None);
    }
}
