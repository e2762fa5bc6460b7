//! What a sign-in checks about the provider's answer before it keeps it: that the provider did
//! what the configured preset says it does. Each check reads content (claims, scopes), and a
//! mismatch is an [`IdentityError::ProviderMismatch`] that names what the provider did instead
//! and what to change.
//!
//! Pure functions over decoded claims; [`super::session`] calls them.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;

use super::error::IdentityError;
use super::preset::{GroupsForm, Provider, ProviderSettings};

type Claims = serde_json::Map<String, serde_json::Value>;

/// Refuses an overage claim for the groups claim (`_claim_names.groups`): the provider left the
/// groups out because there are too many, and points at an API Snowgate does not call.
pub fn no_groups_overage(
    claims: &Claims,
    settings: &ProviderSettings,
) -> Result<(), IdentityError> {
    let overage = claims
        .get("_claim_names")
        .and_then(|n| n.as_object())
        .is_some_and(|n| n.contains_key(&settings.groups_claim));
    if !overage {
        return Ok(());
    }
    let advice = match settings.provider {
        Provider::Entra => "in the Snowgate app registration's Token configuration, edit the groups claim to emit only \"Groups assigned to the application\" and assign the approver and analyst groups to the app, or use app roles and set identity.groups_claim = \"roles\"",
        _ => "configure the provider to send only the groups Snowgate needs (a group filter on the groups claim)",
    };
    Err(IdentityError::ProviderMismatch(format!(
        "the identity provider sent a groups overage claim (`_claim_names.{}`) instead of the groups: the user is in more groups than fit into a token. Snowgate does not call Microsoft Graph or other directory APIs to fetch them; {advice}",
        settings.groups_claim
    )))
}

/// Refuses groups written in another form than the config's `groups_form`, because approvers
/// are matched by exact name.
pub fn groups_in_configured_form(
    groups: &[String],
    settings: &ProviderSettings,
    preset_named: bool,
) -> Result<(), IdentityError> {
    if settings.groups_form == GroupsForm::None {
        return Ok(());
    }
    let Some(odd) = groups.iter().find(|g| !settings.groups_form.fits(g)) else {
        return Ok(());
    };
    let found = GroupsForm::of(odd);
    Err(IdentityError::ProviderMismatch(format!(
        "the identity provider sent groups as {} (e.g. {odd:?}), but identity.groups_form is {:?}{}; set identity.groups_form = {:?} and write the approvers that way, or change the provider's groups claim to send {}",
        found.as_str().replace('_', " "),
        settings.groups_form.as_str(),
        if preset_named { format!(" (the {} preset)", settings.provider.as_str()) } else { String::new() },
        found.as_str(),
        settings.groups_form.as_str().replace('_', " "),
    )))
}

/// Checks that an access token asked for `role` carries its role scope, in `scp` or `scope`
/// (a string or a list; a scope may be prefixed, as Entra's requests are). The token is only
/// decoded, not verified: this is a diagnosis of the provider's setup, and Snowflake verifies.
pub fn carries_role(
    access_token: &str,
    role: &str,
    settings: &ProviderSettings,
) -> Result<(), IdentityError> {
    let wanted = format!("session:role:{role}");
    let Some(claims) = decode(access_token) else {
        return Err(IdentityError::ProviderMismatch(format!(
            "the identity provider answered the request for a Snowflake token (role {role}) with an opaque access token, not a JWT for Snowflake: it did not take the Snowflake audience as asked ({}); {}",
            asked(settings),
            settings.audience_advice()
        )));
    };
    let scopes: Vec<String> = ["scp", "scope"]
        .iter()
        .filter_map(|c| claims.get(*c))
        .flat_map(|v| match v {
            serde_json::Value::String(s) => s.split(' ').map(str::to_string).collect(),
            serde_json::Value::Array(items) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        })
        .filter(|s| !s.is_empty())
        .collect();
    let found = scopes
        .iter()
        .any(|s| s == &wanted || s.ends_with(&format!("/{wanted}")));
    if found {
        return Ok(());
    }
    let aud = claims
        .get("aud")
        .map(|a| a.to_string())
        .unwrap_or_else(|| "none".into());
    Err(IdentityError::ProviderMismatch(format!(
        "the identity provider's access token for role {role} has no {wanted} scope (its aud is {aud}, its scopes are [{}]): it ignored the Snowflake audience as asked ({}); {}",
        scopes.join(" "),
        asked(settings),
        settings.audience_advice()
    )))
}

fn asked(settings: &ProviderSettings) -> &'static str {
    use super::preset::AudienceParameter as A;
    match settings.audience_parameter {
        A::Resource => "with `resource`",
        A::Audience => "with `audience`",
        A::ScopePrefix => "with scopes prefixed by snowflake_audience",
        A::None => "by the provider's own audience",
    }
}

fn decode(token: &str) -> Option<Claims> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let bytes = URL_SAFE_NO_PAD.decode(payload).ok()?;
    serde_json::from_slice(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::preset::AudienceParameter;

    fn jwt(payload: serde_json::Value) -> String {
        format!(
            "eyJhbGciOiJSUzI1NiJ9.{}.c2ln",
            URL_SAFE_NO_PAD.encode(payload.to_string())
        )
    }

    #[test]
    fn a_role_scope_is_found_in_scp_or_scope_as_a_string_or_a_list() {
        let s = ProviderSettings::default();
        for token in [
            jwt(serde_json::json!({"scp": "session:role:ANALYST"})),
            jwt(serde_json::json!({"scope": "openid session:role:ANALYST"})),
            jwt(serde_json::json!({"scp": ["openid", "session:role:ANALYST"]})),
        ] {
            carries_role(&token, "ANALYST", &s).unwrap();
        }
        let err = carries_role(
            &jwt(serde_json::json!({"aud": "https://x", "scope": "openid"})),
            "ANALYST",
            &s,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("has no session:role:ANALYST scope"), "{err}");
        assert!(err.contains("with `resource`"), "{err}");
        assert!(err.contains("identity.provider"), "{err}");
    }

    #[test]
    fn an_opaque_token_for_snowflake_names_how_the_audience_was_asked_for() {
        let s = ProviderSettings {
            audience_parameter: AudienceParameter::Audience,
            ..ProviderSettings::default()
        };
        let err = carries_role("opaque", "ANALYST", &s)
            .unwrap_err()
            .to_string();
        assert!(err.contains("opaque access token"), "{err}");
        assert!(err.contains("with `audience`"), "{err}");
    }

    #[test]
    fn an_entra_overage_claim_stops_with_advice_and_no_graph_call() {
        let s = ProviderSettings {
            provider: Provider::Entra,
            ..ProviderSettings::default()
        };
        let claims: Claims = serde_json::from_value(serde_json::json!({
            "_claim_names": {"groups": "src1"},
            "_claim_sources": {"src1": {"endpoint": "https://graph.microsoft.com/v1.0/users/x/getMemberObjects"}}
        }))
        .unwrap();
        let err = no_groups_overage(&claims, &s).unwrap_err().to_string();
        assert!(err.contains("overage"), "{err}");
        assert!(err.contains("Groups assigned to the application"), "{err}");
        assert!(err.contains("app roles"), "{err}");
        no_groups_overage(&Claims::new(), &s).unwrap();
    }

    #[test]
    fn groups_as_paths_under_a_names_preset_are_named() {
        let s = ProviderSettings::default();
        let err = groups_in_configured_form(&["/analysts".into()], &s, true)
            .unwrap_err()
            .to_string();
        assert!(err.contains("sent groups as paths"), "{err}");
        assert!(err.contains("identity.groups_form = \"paths\""), "{err}");
        groups_in_configured_form(&["analysts".into()], &s, true).unwrap();
    }
}
