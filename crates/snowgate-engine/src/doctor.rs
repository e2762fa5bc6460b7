//! `snowgate doctor`: checks the live setup from inside the broker, which holds the sign-in,
//! and says what to change for each check that fails.
//!
//! Every check reads content, not an HTTP status: the fields of the discovery document, where
//! the IdP's authorization endpoint sends a probe, the fields of a device authorization, whether
//! a refresh answer carried a new refresh token, the claims of the Snowflake tokens (decoded
//! here, never shown whole), the groups, the rows a `SELECT 1` returned through the gateway,
//! and in team mode the server's health answer, its key set and who it takes the caller for.
//! From the tokens it saw it writes the `CREATE SECURITY INTEGRATION ... TYPE = EXTERNAL_OAUTH`
//! values that match them. No token value ever enters the report.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rand::RngCore;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::Digest as _;
use snowgate_grants::team_api::{CallerAuth, Health, HealthStatus, Jwks};

use crate::backend::GrantsBackend;
use crate::config::{Config, TeamAuth};
use crate::identity::{Identity, IdentityError};

/// How one check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    /// Works, but worth changing; does not fail the run.
    Warn,
    Fail,
    /// Could not be run (say so in `detail`).
    Skip,
}

/// One line of the checklist.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Check {
    pub name: String,
    pub outcome: Outcome,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

/// The values of Snowflake's security integration that match the tokens seen.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Integration {
    pub issuer: String,
    pub jwks_url: String,
    pub audience_list: Vec<String>,
    pub user_mapping_claim: String,
    pub scope_mapping_attribute: String,
    pub sql: String,
}

/// The whole report.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Report {
    /// False when any check failed.
    pub ok: bool,
    pub checks: Vec<Check>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub integration: Option<Integration>,
}

/// What the doctor looks at.
pub struct Patient<'a> {
    pub config: &'a Config,
    pub identity: Option<Identity>,
    pub grants: Option<GrantsBackend>,
    /// The gateway's addresses, when it serves.
    pub gateway: Vec<std::net::SocketAddr>,
}

struct Doctor {
    checks: Vec<Check>,
    http: reqwest::Client,
}

impl Doctor {
    fn add(&mut self, name: &str, outcome: Outcome, detail: String, fix: Option<String>) {
        self.checks.push(Check {
            name: name.to_string(),
            outcome,
            detail,
            fix,
        });
    }
    fn ok(&mut self, name: &str, detail: String) {
        self.add(name, Outcome::Ok, detail, None);
    }
    fn fail(&mut self, name: &str, detail: String, fix: String) {
        self.add(name, Outcome::Fail, detail, Some(fix));
    }
}

/// Runs every check that applies.
pub async fn examine(p: Patient<'_>) -> Report {
    let http = match crate::identity::http::build_client(
        p.config
            .identity
            .extra_ca_file
            .as_ref()
            .map(|f| f.0.as_path()),
    ) {
        Ok(c) => c,
        Err(e) => {
            return Report {
                ok: false,
                checks: vec![Check {
                    name: "setup".into(),
                    outcome: Outcome::Fail,
                    detail: e.to_string(),
                    fix: Some("fix identity.extra_ca_file".into()),
                }],
                integration: None,
            }
        }
    };
    let mut d = Doctor {
        checks: Vec::new(),
        http,
    };
    let team = p.config.team.as_ref();
    let discovery = discovery(&mut d, p.config).await;
    if let Some(disc) = &discovery {
        public_client(&mut d, p.config, disc).await;
        device_flow(&mut d, p.config, disc).await;
    }
    let identity = p.identity.clone().filter(|i| i.profile().is_some());
    let failure = p.identity.as_ref().and_then(|i| i.last_sign_in_failure());
    let Some(identity) = identity else {
        if let Some(failure) = failure {
            let advice = failure
                .split_once(": ")
                .map(|(_, a)| a.to_string())
                .unwrap_or_else(|| failure.clone());
            d.fail(
                "sign-in",
                format!("the last sign-in failed: {failure}"),
                format!("{advice}; then sign in again with `snowgate login`"),
            );
            return finish(d, None);
        }
        d.fail(
            "sign-in",
            "nobody is signed in, so the tokens can't be checked".into(),
            "sign in with `snowgate login`, then run `snowgate doctor` again".into(),
        );
        return finish(d, None);
    };
    refresh(&mut d, p.config, &identity).await;
    let mut integration = None;
    let team_client = match &p.grants {
        Some(GrantsBackend::Team(t)) => Some(t.clone()),
        _ => None,
    };
    match (&team_client, team) {
        (Some(t), Some(team)) => {
            server_checks(&mut d, t, team.auth, &identity).await;
            integration = minted_token(&mut d, t, &p, &identity).await;
        }
        _ => {
            if let Some(disc) = &discovery {
                integration = snowflake_tokens(&mut d, p.config, &identity, disc).await;
            }
            groups(&mut d, p.config, &identity);
        }
    }
    gateway_logins(&mut d, &p, &identity).await;
    finish(d, integration)
}

fn finish(d: Doctor, integration: Option<Integration>) -> Report {
    Report {
        ok: d.checks.iter().all(|c| c.outcome != Outcome::Fail),
        checks: d.checks,
        integration,
    }
}

async fn get_json(http: &reqwest::Client, url: &str) -> Result<Value, String> {
    let resp = http.get(url).send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let text = resp.text().await.map_err(|e| e.to_string())?;
    serde_json::from_str(&text)
        .map_err(|_| format!("{url} answered {status} with something that is not JSON"))
}

async fn discovery(d: &mut Doctor, config: &Config) -> Option<Value> {
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

fn list_has(v: &Value, item: &str) -> Option<bool> {
    v.as_array()
        .map(|a| a.iter().any(|x| x.as_str() == Some(item)))
}

async fn public_client(d: &mut Doctor, config: &Config, disc: &Value) {
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
fn page_text(html: &str) -> String {
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

async fn device_flow(d: &mut Doctor, config: &Config, disc: &Value) {
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

async fn refresh(d: &mut Doctor, config: &Config, identity: &Identity) {
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

/// The payload of a JWT, unverified (the doctor reports what the token says).
fn payload(token: &str) -> Option<serde_json::Map<String, Value>> {
    let p = token.split('.').nth(1)?;
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p.trim_end_matches('=')).ok()?).ok()
}

fn header_kid(token: &str) -> Option<String> {
    let h = token.split('.').next()?;
    let v: Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h.trim_end_matches('=')).ok()?).ok()?;
    v["kid"].as_str().map(str::to_string)
}

fn audiences(claims: &serde_json::Map<String, Value>) -> Vec<String> {
    match claims.get("aud") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|x| x.as_str().map(str::to_string))
            .collect(),
        _ => Vec::new(),
    }
}

fn scopes_in(v: Option<&Value>) -> BTreeSet<String> {
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
struct Expected<'a> {
    iss: &'a str,
    aud: Option<&'a str>,
    user_claim: &'a str,
    /// The claim the role scopes must be in, where the provider preset says.
    scope_claim: Option<&'a str>,
    /// The configured provider preset (`[identity] provider`), or the team server.
    preset: &'a str,
    whose: &'a str,
}

/// Checks one Snowflake token's claims for `role`; the integration values it implies.
fn judge_token(
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

async fn snowflake_tokens(
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
    let user_claim = config.snowflake.user_claim().to_string();
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

async fn key_published(d: &mut Doctor, jwks_url: &str, kid: &str, whose: &str) {
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

fn integration(
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

fn groups(d: &mut Doctor, config: &Config, identity: &Identity) {
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

async fn server_checks(
    d: &mut Doctor,
    team: &crate::team::TeamClient,
    auth: TeamAuth,
    identity: &Identity,
) {
    let server = team.server().to_string();
    let health = team.public_json("/healthz").await.and_then(|h| {
        serde_json::from_value::<Health>(h)
            .map_err(|e| format!("/healthz answered something Snowgate can't read: {e}"))
    });
    match health {
        Ok(h) if h.status == HealthStatus::Ok => {
            let mode = h.caller_auth.unwrap_or(CallerAuth::AccessToken).as_str();
            let fits = mode == "both" || mode == auth.as_str();
            if fits {
                d.ok(
                    "team server health",
                    format!("{server} is up; its database answers; it takes {mode} callers"),
                );
            } else {
                d.fail(
                    "team server health",
                    format!(
                        "{server} takes {mode} callers, but this desktop sends {}",
                        auth.as_str()
                    ),
                    format!("set [team] auth = \"{mode}\" in this desktop's config"),
                );
            }
        }
        Ok(h) => d.fail(
            "team server health",
            format!(
                "{server} says it is unavailable: {}",
                h.error.map(|e| e.message).unwrap_or_default()
            ),
            "check the server's database ([database] url) and its log".into(),
        ),
        Err(e) => d.fail(
            "team server health",
            format!("{server}/healthz: {e}"),
            "check [team] server and that `snowgate serve` runs there".into(),
        ),
    }
    let jwks = team
        .public_json("/.well-known/jwks.json")
        .await
        .map(|set| serde_json::from_value::<Jwks>(set).ok());
    match jwks {
        Ok(Some(set))
            if !set.keys.is_empty()
                && set.keys.iter().all(|k| !k.kid.is_empty() && k.kty == "RSA") =>
        {
            let n = set.keys.len();
            d.ok(
                "team server JWKS",
                format!("{n} RSA key(s) with key ids at {server}/.well-known/jwks.json"),
            );
        }
        Ok(_) => d.fail(
            "team server JWKS",
            "the key set is empty or malformed".into(),
            "check [minting] key_files on the server".into(),
        ),
        Err(e) => d.fail(
            "team server JWKS",
            e,
            "check that the server serves /.well-known/jwks.json".into(),
        ),
    }
    let subject = identity.profile().map(|p| p.subject).unwrap_or_default();
    match team.me().await {
        Ok(me) if me.subject == subject => {
            let groups = if me.groups.is_empty() { "none".to_string() } else { me.groups.join(", ") };
            d.ok("team server caller auth", format!("the server takes you for {subject} ({}); groups it resolved: {groups}", auth.as_str()));
            if me.groups.is_empty() {
                // Requesting needs no group; approving and reading the audit log do.
                d.add(
                    "groups",
                    Outcome::Warn,
                    "the team server resolved no groups for you: you can request roles, but approve none and read no audit log".into(),
                    Some("if you should, have the IdP send a groups claim, or list you in a [[groups]] table of the server's config".into()),
                );
            } else {
                d.ok("groups", me.groups.join(", "));
            }
        }
        Ok(me) => d.fail(
            "team server caller auth",
            format!("the server takes you for {}, but you are signed in as {subject}", me.subject),
            "check the server's [identity] issuer".into(),
        ),
        Err(e) => d.fail(
            "team server caller auth",
            e.to_string(),
            match auth {
                TeamAuth::AccessToken => "make the IdP issue access tokens for [team] audience (the server's [identity] audience), or use auth = \"id_token\" on both sides".into(),
                TeamAuth::IdToken => "check the server's [identity] client_id (it must be this desktop's client id) and caller_auth".into(),
            },
        ),
    }
}

async fn minted_token(
    d: &mut Doctor,
    team: &crate::team::TeamClient,
    p: &Patient<'_>,
    identity: &Identity,
) -> Option<Integration> {
    let subject = snowgate_grants::Subject::new(identity.profile()?.subject).ok()?;
    let grants = team.usable(&subject, None).await.ok()?;
    let Some(grant) = grants.first() else {
        d.add(
            "Snowflake token",
            Outcome::Skip,
            "no active grant, so the server minted no token to look at".into(),
            Some("request a role (`snowgate request ROLE ...`) and run the doctor again".into()),
        );
        return None;
    };
    let backend = p.grants.as_ref()?;
    let name = format!("Snowflake token for {}", grant.role());
    match backend.snowflake_token(identity, grant).await {
        Ok((token, _)) => {
            use secrecy::ExposeSecret as _;
            let claims = payload(token.expose_secret())?;
            let kid = header_kid(token.expose_secret());
            let aud = audiences(&claims);
            let claim = if claims.contains_key("sub") {
                "sub"
            } else {
                "email"
            };
            let user_claim = claims
                .keys()
                .find(|k| {
                    ![
                        "iss",
                        "aud",
                        "sub",
                        "scp",
                        "iat",
                        "exp",
                        "jti",
                        "snowgate_grant",
                    ]
                    .contains(&k.as_str())
                })
                .cloned()
                .unwrap_or_else(|| claim.to_string());
            let (iss, aud, attr) = judge_token(
                d,
                &name,
                &claims,
                grant.role().as_str(),
                &Expected {
                    iss: team.server(),
                    aud: aud.first().map(|s| s.as_str()),
                    user_claim: &user_claim,
                    scope_claim: Some("scp"),
                    preset: "the team server",
                    whose: "the team server",
                },
            )?;
            let jwks = format!("{}/.well-known/jwks.json", team.server());
            if let Some(k) = kid {
                key_published(d, &jwks, &k, "the team server's").await;
            }
            Some(integration(iss, jwks, aud, user_claim, attr))
        }
        Err(e) => {
            d.fail(
                &name,
                e,
                "check the server's [minting] settings and its log".into(),
            );
            None
        }
    }
}

async fn gateway_logins(d: &mut Doctor, p: &Patient<'_>, identity: &Identity) {
    const NAME: &str = "Snowflake login through the gateway";
    let Some(addr) = p.gateway.first() else {
        d.fail(
            NAME,
            "the gateway is not serving".into(),
            "see `snowgate status` for why (often [gateway].listen in use)".into(),
        );
        return;
    };
    if p.config.gateway.tool_secrets_required() {
        d.add(
            NAME,
            Outcome::Skip,
            "tool secrets are required, and the doctor has none".into(),
            Some("connect a tool with its secret to test a login".into()),
        );
        return;
    }
    let Some(backend) = &p.grants else { return };
    let Some(subject) = identity
        .profile()
        .and_then(|pr| snowgate_grants::Subject::new(pr.subject).ok())
    else {
        return;
    };
    let grants = backend.usable(&subject, None).await.unwrap_or_default();
    let roles: BTreeSet<String> = grants
        .iter()
        .map(|g| g.role().as_str().to_string())
        .collect();
    if roles.is_empty() {
        d.add(
            NAME,
            Outcome::Skip,
            "you hold no active grant, so no role can log in".into(),
            Some("request a role (`snowgate request ROLE ...`) and run the doctor again".into()),
        );
        return;
    }
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("a plain HTTP client");
    for role in roles {
        let name = format!("{NAME} as {role}");
        match select_one(&http, *addr, &role, p.config.snowflake.account.as_str()).await {
            Ok(rows) if rows >= 1 => d.ok(&name, format!("logged in and `SELECT 1` returned {rows} row")),
            Ok(rows) => d.fail(&name, format!("`SELECT 1` returned {rows} rows"), "check the Snowflake account behind [snowflake] url".into()),
            Err(e) => d.fail(&name, e, "check the security integration in Snowflake against the values below, and that the user exists with this role".into()),
        }
    }
}

/// Logs in to the gateway as `role`, runs `SELECT 1`, closes the session; the row count.
async fn select_one(
    http: &reqwest::Client,
    addr: std::net::SocketAddr,
    role: &str,
    account: &str,
) -> Result<u64, String> {
    let base = format!("http://{addr}");
    let request_id = |n: u8| {
        format!(
            "{:08x}-0000-4000-8000-{:012x}",
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0),
            n
        )
    };
    let login: Value = http
        .post(format!(
            "{base}/session/v1/login-request?roleName={role}&request_id={}",
            request_id(1)
        ))
        .json(&json!({ "data": {
            "ACCOUNT_NAME": account, "LOGIN_NAME": "snowgate-doctor", "PASSWORD": "unused",
            "CLIENT_APP_ID": "snowgate-doctor", "CLIENT_APP_VERSION": env!("CARGO_PKG_VERSION"),
            "SESSION_PARAMETERS": {}
        }}))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| format!("the login answer is not JSON: {e}"))?;
    if login["success"] != true {
        return Err(format!(
            "the login was refused: {} ({})",
            login["message"].as_str().unwrap_or("no message"),
            login["code"]
        ));
    }
    let token = login["data"]["token"]
        .as_str()
        .ok_or("the login answer has no session token")?
        .to_string();
    let auth = format!("Snowflake Token=\"{token}\"");
    let query: Value = http
        .post(format!("{base}/queries/v1/query-request?requestId={}", request_id(2)))
        .header("authorization", &auth)
        .header("accept", "application/snowflake")
        .json(&json!({ "sqlText": "SELECT 1", "asyncExec": false, "sequenceId": 1, "querySubmissionTime": 0 }))
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| format!("the query answer is not JSON: {e}"))?;
    let _ = http
        .post(format!(
            "{base}/session?delete=true&request_id={}",
            request_id(3)
        ))
        .header("authorization", &auth)
        .send()
        .await;
    if query["success"] != true {
        return Err(format!(
            "`SELECT 1` failed: {}",
            query["message"].as_str().unwrap_or("no message")
        ));
    }
    let data = &query["data"];
    let rows = data["total"]
        .as_u64()
        .or_else(|| data["returned"].as_u64())
        .or_else(|| data["rowset"].as_array().map(|r| r.len() as u64))
        .unwrap_or(0);
    Ok(rows)
}

/// The report as a checklist for people.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    for c in &report.checks {
        let mark = match c.outcome {
            Outcome::Ok => "[ok]  ",
            Outcome::Warn => "[warn]",
            Outcome::Fail => "[FAIL]",
            Outcome::Skip => "[skip]",
        };
        out.push_str(&format!("{mark} {}: {}\n", c.name, c.detail));
        if let Some(fix) = &c.fix {
            if c.outcome != Outcome::Ok {
                out.push_str(&format!("       fix: {fix}\n"));
            }
        }
    }
    if let Some(i) = &report.integration {
        out.push_str("\nSnowflake's security integration, matching the tokens seen:\n");
        out.push_str(&i.sql);
        out.push('\n');
    }
    out.push_str(if report.ok {
        "\nAll checks passed.\n"
    } else {
        "\nSome checks failed; see the fixes above.\n"
    });
    out
}
