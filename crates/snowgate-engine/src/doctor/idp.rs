//! The identity provider's checks: discovery, the public client (a PKCE S256 probe with a
//! loopback redirect), the device flow, refresh-token rotation, and the groups claim.

use std::collections::BTreeSet;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore;
use serde_json::Value;
use sha2::Digest as _;

use crate::config::Config;
use crate::identity::Identity;

use super::*;

pub(super) async fn discovery(d: &mut Doctor, config: &Config) -> Option<Value> {
    let issuer = config.identity.issuer.0.as_str().trim_end_matches('/');
    let url = format!("{issuer}/.well-known/openid-configuration");
    let doc = match get_json(&d.http, &url).await {
        Ok(v) => v,
        Err(e) => {
            d.fail(
                "discovery",
                format!("{url} could not be read: {e}"),
                "set identity.issuer to the IdP's issuer URL (its discovery document is at <issuer>/.well-known/openid-configuration), and identity.extra_ca_file if it uses a private CA".into(),
            );
            return None;
        }
    };
    let named = doc["issuer"].as_str().unwrap_or("").trim_end_matches('/');
    if named != issuer {
        d.fail(
            "discovery",
            format!("the discovery document names issuer {named:?}, not {issuer:?}"),
            format!("set identity.issuer = \"{named}\""),
        );
        return None;
    }
    let missing: Vec<&str> = ["authorization_endpoint", "token_endpoint", "jwks_uri"]
        .into_iter()
        .filter(|k| doc[*k].as_str().is_none())
        .collect();
    if !missing.is_empty() {
        d.fail(
            "discovery",
            format!("the discovery document lacks {}", missing.join(", ")),
            "use an OpenID Connect issuer that publishes these endpoints".into(),
        );
        return None;
    }
    d.ok(
        "discovery",
        format!(
            "{issuer} publishes its endpoints and keys ({})",
            doc["jwks_uri"].as_str().unwrap_or("")
        ),
    );
    Some(doc)
}

pub(super) fn list_has(v: &Value, item: &str) -> Option<bool> {
    v.as_array()
        .map(|a| a.iter().any(|x| x.as_str() == Some(item)))
}

pub(super) async fn public_client(d: &mut Doctor, config: &Config, disc: &Value) {
    const NAME: &str = "client (PKCE S256, loopback redirect)";
    if list_has(&disc["code_challenge_methods_supported"], "S256") == Some(false) {
        d.fail(
            NAME,
            "the IdP does not list S256 in code_challenge_methods_supported".into(),
            "turn on PKCE with S256 for Snowgate's client at the IdP".into(),
        );
        return;
    }
    let mut verifier = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut verifier);
    let verifier = URL_SAFE_NO_PAD.encode(verifier);
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    let redirect = "http://127.0.0.1:49152/callback";
    let mut url = match url::Url::parse(disc["authorization_endpoint"].as_str().unwrap_or("")) {
        Ok(u) => u,
        Err(_) => return,
    };
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", config.identity.client_id.as_str())
        .append_pair("redirect_uri", redirect)
        .append_pair("scope", "openid")
        .append_pair("state", "snowgate-doctor")
        .append_pair("nonce", "snowgate-doctor")
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256");
    let resp = match d.http.get(url).send().await {
        Ok(r) => r,
        Err(e) => {
            d.fail(
                NAME,
                format!("the authorization endpoint can't be reached: {e}"),
                "check the network path to the IdP".into(),
            );
            return;
        }
    };
    let location = resp
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    let fix = format!(
        "register client {} at the IdP as a public (native) client with PKCE S256 and the redirect URI http://127.0.0.1/callback (any port)",
        config.identity.client_id.as_str()
    );
    match location {
        Some(loc) if loc.starts_with("http://127.0.0.1") && loc.contains("error=") => {
            let q = url::Url::parse(&loc).ok();
            let param = |k: &str| {
                q.as_ref()
                    .and_then(|u| {
                        u.query_pairs()
                            .find(|(n, _)| n == k)
                            .map(|(_, v)| v.to_string())
                    })
                    .unwrap_or_default()
            };
            d.fail(
                NAME,
                format!(
                    "the IdP refused the sign-in request: {} {}",
                    param("error"),
                    param("error_description")
                ),
                fix,
            );
        }
        Some(_) => d.ok(
            NAME,
            "the IdP took a PKCE S256 request with a loopback redirect and went on to its sign-in"
                .into(),
        ),
        None if status.is_success()
            && ![
                "invalid_client",
                "invalid_redirect_uri",
                "redirect_uri_mismatch",
                "unauthorized_client",
                "invalid_request",
            ]
            .iter()
            .any(|e| body.contains(e)) =>
        {
            d.ok(
                NAME,
                "the IdP showed its sign-in page for a PKCE S256 request with a loopback redirect"
                    .into(),
            )
        }
        None => d.fail(
            NAME,
            format!(
                "the IdP answered the sign-in request with an error page: {}",
                page_text(&body)
            ),
            fix,
        ),
    }
}

/// The text of an HTML page, tags removed, shortened.
pub(super) fn page_text(html: &str) -> String {
    let mut out = String::new();
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' => {
                in_tag = false;
                out.push(' ');
            }
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    let words: Vec<&str> = out.split_whitespace().collect();
    let text = words.join(" ");
    text.chars().take(200).collect()
}

pub(super) async fn device_flow(d: &mut Doctor, config: &Config, disc: &Value) {
    const NAME: &str = "device flow";
    let Some(endpoint) = disc["device_authorization_endpoint"].as_str() else {
        d.add(
            NAME,
            Outcome::Warn,
            "the IdP publishes no device_authorization_endpoint, so `snowgate login --device` (SSH, headless machines) can't work".into(),
            Some("turn on the device authorization grant (RFC 8628) for Snowgate's client at the IdP".into()),
        );
        return;
    };
    let mut form = vec![
        ("client_id", config.identity.client_id.as_str().to_string()),
        ("scope", "openid".to_string()),
    ];
    if let Some(secret) = &config.identity.client_secret {
        form.push(("client_secret", secret.expose().to_string()));
    }
    let answer = match d.http.post(endpoint).form(&form).send().await {
        Ok(r) => r.json::<Value>().await.unwrap_or(Value::Null),
        Err(e) => {
            d.fail(
                NAME,
                format!("{endpoint} can't be reached: {e}"),
                "check the network path to the IdP".into(),
            );
            return;
        }
    };
    if answer["device_code"].is_string()
        && answer["user_code"].is_string()
        && answer["verification_uri"].is_string()
    {
        d.ok(
            NAME,
            format!(
                "the IdP hands out user codes to confirm at {}",
                answer["verification_uri"].as_str().unwrap_or("")
            ),
        );
    } else {
        d.fail(
            NAME,
            format!(
                "the device authorization gave no user code ({} {})",
                answer["error"].as_str().unwrap_or("no error named"),
                answer["error_description"].as_str().unwrap_or("")
            ),
            "allow the device code grant type for Snowgate's client at the IdP".into(),
        );
    }
}

pub(super) async fn refresh(d: &mut Doctor, config: &Config, identity: &Identity) {
    const NAME: &str = "refresh token";
    let present = identity.whoami().is_some_and(|w| w.refresh_token_present);
    if !present {
        let settings = config.identity.provider_settings();
        let asked = settings.asks_offline(&crate::identity::login_scopes(config));
        let fix = if !asked {
            "add offline_access to identity.scopes, then sign in again".to_string()
        } else if settings.consent_prompt == crate::identity::preset::ConsentPrompt::Never
            && settings.provider == crate::identity::preset::Provider::Generic
        {
            "set identity.consent_prompt = \"retry\" (this provider gives offline_access only after its consent page), then sign in again".to_string()
        } else {
            format!("{}; then sign in again", settings.no_refresh_token_advice())
        };
        d.fail(
            NAME,
            format!(
                "the sign-in holds no refresh token, so Snowgate signs you out when the access token expires (identity.provider = \"{}\")",
                settings.provider.as_str()
            ),
            fix,
        );
        return;
    }
    match identity.refresh_rotates().await {
        Ok(true) => d.ok(NAME, "issued, and a refresh rotated it".into()),
        Ok(false) => d.add(
            NAME,
            Outcome::Warn,
            "issued, but a refresh did not rotate it".into(),
            Some("turn on refresh-token rotation for Snowgate's client at the IdP, so a stolen refresh token is detected when used".into()),
        ),
        Err(e) => d.fail(
            NAME,
            format!("a refresh failed: {e}"),
            "sign in again with `snowgate login`; if it keeps failing, check that the IdP allows the refresh_token grant for Snowgate's client".into(),
        ),
    }
}

pub(super) fn groups(d: &mut Doctor, config: &Config, identity: &Identity) {
    const NAME: &str = "groups";
    let claim = config.identity.groups_claim();
    let groups = identity.whoami().map(|w| w.groups).unwrap_or_default();
    if groups.is_empty() {
        d.fail(
            NAME,
            format!("the sign-in carries no groups in `{claim}` (ID token or userinfo)"),
            format!("add a `{claim}` claim with the user's groups to the ID token or userinfo at the IdP (and the `groups` scope), or set identity.groups_claim to the claim that holds them; then sign in again"),
        );
        return;
    }
    let approvers: BTreeSet<&str> = config
        .roles
        .iter()
        .flat_map(|r| r.approvers.iter().map(|g| g.as_str()))
        .collect();
    d.ok(
        NAME,
        format!(
            "{} (approver groups in the config: {})",
            groups.join(", "),
            approvers.into_iter().collect::<Vec<_>>().join(", ")
        ),
    );
}
