//! The Snowflake tokens' checks: each role's token decoded (never shown whole) and judged
//! against what the security integration expects (issuer, audience, user claim, role scope),
//! its signing key published, and the `CREATE SECURITY INTEGRATION` values that match them.

use std::collections::BTreeSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde_json::Value;

use crate::config::Config;
use crate::identity::{Identity, IdentityError};

use super::*;

/// The payload of a JWT, unverified (the doctor reports what the token says).
pub(super) fn payload(token: &str) -> Option<serde_json::Map<String, Value>> {
    let p = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).ok()?).ok()
}

pub(super) fn header_kid(token: &str) -> Option<String> {
    let h = token.split('.').next()?;
    let v: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h.trim_end_matches('=')).ok()?).ok()?;
    v["kid"].as_str().map(str::to_string)
}

pub(super) fn audiences(claims: &serde_json::Map<String, Value>) -> Vec<String> {
    match claims.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

pub(super) fn scopes_in(v: Option<&Value>) -> BTreeSet<String> {
    match v {
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => BTreeSet::new(),
    }
}

/// What a Snowflake token should say, and whose it is (for fixes).
pub(super) struct Expected<'a> {
    pub(super) iss: &'a str,
    pub(super) aud: Option<&'a str>,
    pub(super) user_claim: &'a str,
    /// The claim the role scopes must be in, where the provider preset says.
    pub(super) scope_claim: Option<&'a str>,
    /// The configured provider preset (`[identity] provider`), or the team server.
    pub(super) preset: &'a str,
    pub(super) whose: &'a str,
}

/// Checks one Snowflake token's claims for `role`; the integration values it implies.
pub(super) fn judge_token(
    d: &mut Doctor,
    name: &str,
    claims: &serde_json::Map<String, Value>,
    role: &str,
    e: &Expected<'_>,
) -> Option<(String, Vec<String>, String)> {
    let (expected_iss, expected_aud, user_claim, where_) = (e.iss, e.aud, e.user_claim, e.whose);
    let iss = claims
        .get("iss")
        .and_then(|v| v.as_str())
        .unwrap_or("")
        .to_string();
    let aud = audiences(claims);
    let scope = format!("session:role:{role}");
    let mut problems = Vec::new();
    let mut fixes = Vec::new();
    if iss.trim_end_matches('/') != expected_iss.trim_end_matches('/') {
        problems.push(format!("iss is {iss:?}, not {expected_iss:?}"));
        fixes.push(format!("check {where_}'s issuer"));
    }
    if let Some(expected) = expected_aud {
        if !aud.iter().any(|a| a == expected) {
            problems.push(format!("aud is {aud:?}, not {expected:?}"));
            fixes.push(format!(
                "make the IdP issue Snowflake tokens for audience {expected} (the Snowflake resource's identifier), or set identity.snowflake_audience to the audience its tokens carry"
            ));
        }
    }
    if claims.get(user_claim).and_then(|v| v.as_str()).is_none() {
        let strings: Vec<&str> = claims
            .iter()
            .filter(|(_, v)| v.is_string())
            .map(|(k, _)| k.as_str())
            .filter(|k| !["iss", "jti", "scope", "scp", "client_id"].contains(k))
            .collect();
        problems.push(format!("the user claim `{user_claim}` is missing"));
        fixes.push(format!(
            "set [snowflake].user_claim (and EXTERNAL_OAUTH_TOKEN_USER_MAPPING_CLAIM) to a claim the token carries ({}), or add `{user_claim}` to Snowflake tokens at the IdP",
            strings.join(", ")
        ));
    }
    let in_scp = scopes_in(claims.get("scp")).contains(&scope);
    let in_scope = scopes_in(claims.get("scope")).contains(&scope);
    let scope_attr = match (in_scp, in_scope) {
        (true, _) => "scp",
        (false, true) => "scope",
        (false, false) => {
            problems.push(format!(
                "the role scope {scope} is missing (scp: {:?}, scope: {:?})",
                scopes_in(claims.get("scp")),
                scopes_in(claims.get("scope"))
            ));
            fixes.push(format!(
                "add the scope {scope} to the Snowflake resource at the IdP and grant it to the users who may request {role}"
            ));
            e.scope_claim.unwrap_or("scp")
        }
    };
    if let Some(expected) = e.scope_claim {
        if (in_scp || in_scope) && scope_attr != expected {
            problems.push(format!(
                "the role scopes are in `{scope_attr}`, where {} puts them in `{expected}`",
                e.preset
            ));
            fixes.push(format!(
                "identity.provider = \"{}\" does not match this IdP: set identity.provider to the provider that issues these tokens (\"generic\" if none fits), and set EXTERNAL_OAUTH_SCOPE_MAPPING_ATTRIBUTE = '{scope_attr}' in the security integration",
                e.preset
            ));
        }
    }
    if problems.is_empty() {
        d.ok(
            name,
            format!(
                "iss {iss}, aud {}, {user_claim} present, `{scope_attr}` has {scope} (EXTERNAL_OAUTH_SCOPE_MAPPING_ATTRIBUTE = '{scope_attr}')",
                aud.join(" ")
            ),
        );
    } else {
        d.fail(name, problems.join("; "), fixes.join("; "));
    }
    Some((iss, aud, scope_attr.to_string()))
}

pub(super) async fn snowflake_tokens(
    d: &mut Doctor,
    config: &Config,
    identity: &Identity,
    disc: &Value,
) -> Option<Integration> {
    let issuer = disc["issuer"].as_str().unwrap_or("").to_string();
    let settings = config.identity.provider_settings();
    // Entra ID v2 puts the API's application (client) ID into `aud`, not the Application ID
    // URI the scopes are prefixed with; the integration takes the `aud` seen.
    let audience = config
        .identity
        .snowflake_audience
        .as_ref()
        .map(|a| a.as_str().to_string())
        .filter(|_| {
            settings.audience_parameter != crate::identity::preset::AudienceParameter::ScopePrefix
        });
    let user_claim = config.snowflake.default_account().user_claim().to_string();
    let provider = settings.provider;
    let preset = crate::identity::preset::Preset::of(provider);
    let mut seen: Option<(String, BTreeSet<String>, String, String)> = None;
    if config.roles.is_empty() {
        d.add(
            "Snowflake tokens",
            Outcome::Skip,
            "no [[roles]] are configured".into(),
            None,
        );
    }
    for role in &config.roles {
        let role = role.name.get_ref().as_str().to_string();
        let name = format!("Snowflake token for {role}");
        match identity.snowflake_token(&role).await {
            Ok(t) => {
                let token = t.token.expose_secret().to_string();
                let Some(claims) = payload(&token) else {
                    d.fail(&name, "the IdP's Snowflake token is not a JWT".into(), "make the Snowflake resource's access tokens JWTs (Snowflake External OAuth needs them)".into());
                    continue;
                };
                let kid = header_kid(&token);
                if let Some((iss, aud, attr)) = judge_token(
                    d,
                    &name,
                    &claims,
                    &role,
                    &Expected {
                        iss: &issuer,
                        aud: audience.as_deref(),
                        user_claim: &user_claim,
                        scope_claim: preset.scope_claim,
                        preset: provider.as_str(),
                        whose: "the IdP",
                    },
                ) {
                    let entry =
                        seen.get_or_insert_with(|| (iss, BTreeSet::new(), attr, String::new()));
                    // Snowflake needs only one audience of a token in its list (Auth0 adds its
                    // userinfo endpoint to every token's `aud`).
                    match audience.as_ref().filter(|a| aud.contains(a)) {
                        Some(a) => {
                            entry.1.insert(a.clone());
                        }
                        None => entry.1.extend(aud),
                    }
                    if let Some(k) = kid {
                        entry.3 = k;
                    }
                }
            }
            Err(e) => {
                let fix = match &e {
                    IdentityError::Refused { error, .. } if error == "invalid_scope" => format!(
                        "add the scope session:role:{role} to the Snowflake resource at the IdP and grant it to the users who may request {role}; then sign in again (a refresh can't widen the scopes)"
                    ),
                    IdentityError::Refused { error, .. } if error == "invalid_target" => format!(
                        "the IdP knows no resource {}: set identity.snowflake_audience to the Snowflake resource's identifier at the IdP",
                        audience.as_deref().unwrap_or("-")
                    ),
                    _ => "check the Snowflake resource at the IdP and sign in again".into(),
                };
                d.fail(&name, format!("no token: {e}"), fix);
            }
        }
    }
    let (iss, aud, attr, kid) = seen?;
    let jwks_url = disc["jwks_uri"].as_str().unwrap_or("").to_string();
    if !kid.is_empty() {
        key_published(d, &jwks_url, &kid, "the IdP's").await;
    }
    Some(integration(
        iss,
        jwks_url,
        aud.into_iter().collect(),
        user_claim,
        attr,
    ))
}

pub(super) async fn key_published(d: &mut Doctor, jwks_url: &str, kid: &str, whose: &str) {
    const NAME: &str = "signing key published";
    match get_json(&d.http, jwks_url).await {
        Ok(set)
            if set["keys"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k["kid"] == kid)) =>
        {
            d.ok(
                NAME,
                format!("{whose} JWKS at {jwks_url} has the tokens' key {kid}"),
            )
        }
        Ok(_) => d.fail(
            NAME,
            format!("{jwks_url} does not publish the key {kid} the tokens are signed with"),
            "point EXTERNAL_OAUTH_JWS_KEYS_URL at the key set that signs the tokens".into(),
        ),
        Err(e) => d.fail(
            NAME,
            format!("{jwks_url}: {e}"),
            "make the key set reachable".into(),
        ),
    }
}

pub(super) fn integration(
    issuer: String,
    jwks_url: String,
    audience_list: Vec<String>,
    user_claim: String,
    scope_attr: String,
) -> Integration {
    let auds: Vec<String> = audience_list.iter().map(|a| format!("'{a}'")).collect();
    let sql = format!(
        "CREATE SECURITY INTEGRATION snowgate\n  TYPE = EXTERNAL_OAUTH\n  ENABLED = TRUE\n  EXTERNAL_OAUTH_TYPE = CUSTOM\n  EXTERNAL_OAUTH_ISSUER = '{issuer}'\n  EXTERNAL_OAUTH_JWS_KEYS_URL = '{jwks_url}'\n  EXTERNAL_OAUTH_AUDIENCE_LIST = ({})\n  EXTERNAL_OAUTH_TOKEN_USER_MAPPING_CLAIM = '{user_claim}'\n  EXTERNAL_OAUTH_SNOWFLAKE_USER_MAPPING_ATTRIBUTE = 'LOGIN_NAME'\n  EXTERNAL_OAUTH_SCOPE_MAPPING_ATTRIBUTE = '{scope_attr}';",
        auds.join(", ")
    );
    Integration {
        issuer,
        jwks_url,
        audience_list,
        user_mapping_claim: user_claim,
        scope_mapping_attribute: scope_attr,
        sql,
    }
}
