//! The login-request rewrite: what a tool sent becomes an External OAuth login for the grant.
//!
//! The body is edited as a generic JSON value, so every field the gateway does not know
//! (client environment, session parameters, capabilities, fields a newer driver adds) reaches
//! Snowflake as the tool sent it. The edit:
//! - sets `AUTHENTICATOR` = `OAUTH` and `TOKEN` = the upstream token;
//! - sets `LOGIN_NAME` to the grant's user and `ACCOUNT_NAME` to the configured account;
//! - strips the tool's credentials: `PASSWORD`, `PASSCODE`, and every other field that can
//!   carry one ([`is_credential_field`]), and the session parameters that ask Snowflake to
//!   hand out long-lived tokens (`CLIENT_STORE_TEMPORARY_CREDENTIAL`,
//!   `CLIENT_REQUEST_MFA_TOKEN`);
//! - merges the grant id into `SESSION_PARAMETERS.QUERY_TAG` ([`merge_query_tag`]), keeping
//!   one spelling of that name when the tool sent several in different letter case.
//!
//! The query string keeps every parameter byte for byte, except `roleName`, which is forced
//! to the grant's role ([`force_role`]).

use serde_json::{Map, Value};
use url::form_urlencoded;

use secrecy::SecretString;

use crate::snowflake_error::SnowflakeError;

/// Snowflake's limit on QUERY_TAG, in characters.
pub const QUERY_TAG_MAX_CHARS: usize = 2000;

/// The key added to a tool's JSON-object QUERY_TAG.
pub const QUERY_TAG_JSON_KEY: &str = "snowgate_grant";
/// The key naming the agent in a JSON-object QUERY_TAG.
pub const QUERY_TAG_JSON_AGENT_KEY: &str = "snowgate_agent";

/// What the gateway reads from a login-request before asking the authorizer. `Debug` shows
/// the password redacted.
#[derive(Debug, Default, Clone)]
pub struct LoginFields {
    pub login_name: Option<String>,
    /// The tool's `ACCOUNT_NAME`, which names the configured account it asks for.
    pub account: Option<String>,
    pub client_app_id: Option<String>,
    pub client_app_version: Option<String>,
    /// The tool's PASSWORD; handed to the authorizer only when tool secrets are required.
    pub password: Option<SecretString>,
}

fn data(body: &Value) -> Result<&Map<String, Value>, SnowflakeError> {
    body.get("data")
        .and_then(Value::as_object)
        .ok_or_else(|| SnowflakeError::bad_request("the login request has no \"data\" object."))
}

fn str_field(data: &Map<String, Value>, key: &str) -> Option<String> {
    match data.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// Reads the fields the authorizer needs.
pub fn read_login_fields(body: &Value) -> Result<LoginFields, SnowflakeError> {
    let data = data(body)?;
    Ok(LoginFields {
        login_name: str_field(data, "LOGIN_NAME").filter(|s| !s.is_empty()),
        account: str_field(data, "ACCOUNT_NAME").filter(|s| !s.trim().is_empty()),
        client_app_id: str_field(data, "CLIENT_APP_ID"),
        client_app_version: str_field(data, "CLIENT_APP_VERSION"),
        password: str_field(data, "PASSWORD").map(SecretString::from),
    })
}

/// Whether a top-level `data` field of a login-request can carry a credential. Matched on the
/// upper-cased name, broadly: a field stripped by mistake costs a feature; a credential
/// forwarded by mistake costs the trust model.
pub fn is_credential_field(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    const CONTAINS: &[&str] = &[
        "PASSWORD",
        "PASSCODE",
        "SECRET",
        "PRIVATE_KEY",
        "TOKEN",
        "SAML",
        "PROOF_KEY",
        "ASSERTION",
    ];
    const EXACT: &[&str] = &["OAUTH_TYPE", "PROVIDER", "BROWSER_MODE_REDIRECT_PORT"];
    n.starts_with("EXT_AUTHN_")
        || CONTAINS.iter().any(|c| n.contains(c))
        || EXACT.contains(&n.as_str())
}

/// Session parameters that make Snowflake answer with long-lived tokens the tool must not get.
fn is_token_requesting_parameter(name: &str) -> bool {
    let n = name.to_ascii_uppercase();
    n == "CLIENT_STORE_TEMPORARY_CREDENTIAL" || n == "CLIENT_REQUEST_MFA_TOKEN"
}

/// What the rewrite puts in.
pub struct Rewrite<'a> {
    pub upstream_token: &'a str,
    pub login_name: &'a str,
    pub account: &'a str,
    pub grant_id: &'a str,
    /// The agent whose secret the login presented: named in the QUERY_TAG too.
    pub agent: Option<&'a str>,
}

/// Rewrites a login-request body in place. Returns the names of the fields it stripped (for a
/// debug log: names only, never values).
pub fn rewrite_login(body: &mut Value, rw: &Rewrite<'_>) -> Result<Vec<String>, SnowflakeError> {
    data(body)?;
    let data = body
        .get_mut("data")
        .and_then(Value::as_object_mut)
        .expect("checked above");
    let stripped: Vec<String> = data
        .keys()
        .filter(|k| is_credential_field(k) || k.eq_ignore_ascii_case("AUTHENTICATOR"))
        .cloned()
        .collect();
    for k in &stripped {
        data.remove(k);
    }
    // Who logs in, and where, are Snowgate's to say: any other spelling of these names goes
    // too, lest Snowflake read one of them (field names are not reported: they are no
    // credential).
    data.retain(|k, _| {
        !(k.eq_ignore_ascii_case("LOGIN_NAME") || k.eq_ignore_ascii_case("ACCOUNT_NAME"))
    });
    data.insert("AUTHENTICATOR".into(), Value::String("OAUTH".into()));
    data.insert("TOKEN".into(), Value::String(rw.upstream_token.into()));
    data.insert("LOGIN_NAME".into(), Value::String(rw.login_name.into()));
    data.insert("ACCOUNT_NAME".into(), Value::String(rw.account.into()));

    let params = data
        .entry("SESSION_PARAMETERS")
        .or_insert_with(|| Value::Object(Map::new()));
    if !params.is_object() {
        *params = Value::Object(Map::new());
    }
    let params = params.as_object_mut().expect("made an object above");
    params.retain(|k, _| !is_token_requesting_parameter(k));
    // Snowflake reads parameter names in any letter case, so one tag is kept (the first
    // spelling's) and the other spellings go, lest one of them win over the grant's.
    let mut spellings = params
        .keys()
        .filter(|k| k.eq_ignore_ascii_case("QUERY_TAG"))
        .cloned();
    let tag_key = spellings.next().unwrap_or_else(|| "QUERY_TAG".to_string());
    let others: Vec<String> = spellings.collect();
    for k in &others {
        params.remove(k);
    }
    let existing = match params.get(&tag_key) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    params.insert(
        tag_key,
        Value::String(merge_query_tag_for(
            existing.as_deref(),
            rw.grant_id,
            rw.agent,
        )),
    );
    Ok(stripped
        .into_iter()
        .filter(|k| !k.eq_ignore_ascii_case("AUTHENTICATOR") && !k.eq_ignore_ascii_case("TOKEN"))
        .collect())
}

/// The session's QUERY_TAG: the grant id, merged with the tool's own tag so neither is lost.
///
/// - no tool tag (or an empty one): `snowgate:grant=<id>`;
/// - a tool tag that is a JSON object (dbt and others tag that way): the object with
///   `"snowgate_grant": "<id>"` set (replacing any the tool sent), so it stays valid JSON;
/// - any other tool tag: `snowgate:grant=<id> | <tool tag>`.
///
/// The result fits Snowflake's 2,000-character limit: the tool's part is shortened if needed,
/// never the grant id.
pub fn merge_query_tag(tool_tag: Option<&str>, grant_id: &str) -> String {
    merge_query_tag_for(tool_tag, grant_id, None)
}

/// [`merge_query_tag`] for a session of an agent: `snowgate:grant=<id>;agent=<name>` in front
/// of a plain tool tag, or `"snowgate_agent": "<name>"` beside the grant in a JSON-object tag.
pub fn merge_query_tag_for(tool_tag: Option<&str>, grant_id: &str, agent: Option<&str>) -> String {
    let ours = match agent {
        Some(a) => format!("snowgate:grant={grant_id};agent={a}"),
        None => format!("snowgate:grant={grant_id}"),
    };
    let tool_tag = match tool_tag {
        Some(t) if !t.trim().is_empty() => t,
        _ => return ours,
    };
    if let Ok(Value::Object(mut obj)) = serde_json::from_str::<Value>(tool_tag) {
        // Set, not added: a tool's own `snowgate_grant` must not name another grant.
        obj.insert(
            QUERY_TAG_JSON_KEY.to_string(),
            Value::String(grant_id.to_string()),
        );
        match agent {
            Some(a) => obj.insert(
                QUERY_TAG_JSON_AGENT_KEY.to_string(),
                Value::String(a.to_string()),
            ),
            None => obj.remove(QUERY_TAG_JSON_AGENT_KEY),
        };
        let merged = Value::Object(obj).to_string();
        if merged.chars().count() <= QUERY_TAG_MAX_CHARS {
            return merged;
        }
    }
    let prefix = format!("{ours} | ");
    let room = QUERY_TAG_MAX_CHARS.saturating_sub(prefix.chars().count());
    let tool_part: String = tool_tag.chars().take(room).collect();
    format!("{prefix}{tool_part}")
}

/// The value of query parameter `name`, decoded.
pub fn query_param(query: &str, name: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The query string with `roleName` set to `role`; every other parameter is kept exactly as
/// sent, in its place.
pub fn force_role(query: &str, role: &str) -> String {
    let encoded: String = form_urlencoded::byte_serialize(role.as_bytes()).collect();
    let ours = format!("roleName={encoded}");
    if query.is_empty() {
        return ours;
    }
    let mut out: Vec<&str> = Vec::new();
    let mut placed = false;
    for pair in query.split('&') {
        let key = form_urlencoded::parse(pair.as_bytes())
            .next()
            .map(|(k, _)| k);
        if key.as_deref() == Some("roleName") {
            if !placed {
                out.push(&ours);
                placed = true;
            }
        } else {
            out.push(pair);
        }
    }
    if !placed {
        out.push(&ours);
    }
    out.join("&")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rw() -> Rewrite<'static> {
        Rewrite {
            upstream_token: "eyJ.upstream",
            login_name: "alice",
            account: "acme",
            grant_id: "G-1",
            agent: None,
        }
    }

    #[test]
    fn the_login_name_and_account_are_snowgates_in_every_spelling() {
        let mut body = json!({
            "data": {
                "LOGIN_NAME": "someone",
                "login_name": "mallory",
                "Login_Name": "eve",
                "account_name": "other-account",
                "CLIENT_APP_ID": "PythonConnector"
            }
        });
        rewrite_login(&mut body, &rw()).unwrap();
        let d = body["data"].as_object().unwrap();
        let spellings = |name: &str| {
            d.iter()
                .filter(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            spellings("LOGIN_NAME"),
            vec![("LOGIN_NAME".to_string(), json!("alice"))]
        );
        assert_eq!(
            spellings("ACCOUNT_NAME"),
            vec![("ACCOUNT_NAME".to_string(), json!("acme"))]
        );
        assert_eq!(d["CLIENT_APP_ID"], "PythonConnector");
    }

    #[test]
    fn the_tools_password_never_shows_in_debug_output() {
        let fields = read_login_fields(&json!({
            "data": { "LOGIN_NAME": "someone", "PASSWORD": "hunter2-tool-password" }
        }))
        .unwrap();
        let shown = format!("{fields:?}");
        assert!(!shown.contains("hunter2-tool-password"), "{shown}");
        assert!(shown.contains("someone"), "{shown}");
    }

    #[test]
    fn rewrite_sets_oauth_strips_credentials_and_keeps_unknown_fields() {
        let mut body = json!({
            "data": {
                "CLIENT_APP_ID": "PythonConnector",
                "CLIENT_APP_VERSION": "5.0.0",
                "ACCOUNT_NAME": "whatever",
                "LOGIN_NAME": "someone",
                "PASSWORD": "hunter2",
                "PASSCODE": "123456",
                "EXT_AUTHN_DUO_METHOD": "push",
                "PROOF_KEY": "pk",
                "RAW_SAML_RESPONSE": "<saml/>",
                "PRIVATE_KEY": "-----BEGIN",
                "AUTHENTICATOR": "SNOWFLAKE",
                "CLIENT_ENVIRONMENT": {"OS": "Linux", "APPLICATION": "DBeaver"},
                "SESSION_PARAMETERS": {"CLIENT_STORE_TEMPORARY_CREDENTIAL": true, "TIMEZONE": "UTC"},
                "SOME_FUTURE_FIELD": [1, {"x": "y"}]
            },
            "inFlightCtx": "keep-me"
        });
        let stripped = rewrite_login(&mut body, &rw()).unwrap();
        let d = &body["data"];
        assert_eq!(d["AUTHENTICATOR"], "OAUTH");
        assert_eq!(d["TOKEN"], "eyJ.upstream");
        assert_eq!(d["LOGIN_NAME"], "alice");
        assert_eq!(d["ACCOUNT_NAME"], "acme");
        for gone in [
            "PASSWORD",
            "PASSCODE",
            "EXT_AUTHN_DUO_METHOD",
            "PROOF_KEY",
            "RAW_SAML_RESPONSE",
            "PRIVATE_KEY",
        ] {
            assert!(d.get(gone).is_none(), "{gone} survived");
            assert!(stripped.iter().any(|s| s == gone), "{gone} not reported");
        }
        assert!(!body.to_string().contains("hunter2"));
        assert_eq!(d["CLIENT_ENVIRONMENT"]["APPLICATION"], "DBeaver");
        assert_eq!(d["SOME_FUTURE_FIELD"], json!([1, {"x": "y"}]));
        assert_eq!(body["inFlightCtx"], "keep-me");
        let p = &d["SESSION_PARAMETERS"];
        assert_eq!(p["TIMEZONE"], "UTC");
        assert!(p.get("CLIENT_STORE_TEMPORARY_CREDENTIAL").is_none());
        assert_eq!(p["QUERY_TAG"], "snowgate:grant=G-1");
    }

    #[test]
    fn query_tag_merges_with_the_tools_tag() {
        assert_eq!(merge_query_tag(None, "G-1"), "snowgate:grant=G-1");
        assert_eq!(
            merge_query_tag_for(Some("nightly"), "G-1", Some("bot")),
            "snowgate:grant=G-1;agent=bot | nightly"
        );
        assert_eq!(
            merge_query_tag_for(None, "G-1", Some("bot")),
            "snowgate:grant=G-1;agent=bot"
        );
        let json: Value = serde_json::from_str(&merge_query_tag_for(
            Some(r#"{"app":"dbt","snowgate_agent":"forged"}"#),
            "G-1",
            Some("bot"),
        ))
        .unwrap();
        assert_eq!(json["snowgate_agent"], "bot");
        assert_eq!(json["snowgate_grant"], "G-1");
        let json: Value = serde_json::from_str(&merge_query_tag_for(
            Some(r#"{"snowgate_agent":"forged"}"#),
            "G-1",
            None,
        ))
        .unwrap();
        assert!(json.get("snowgate_agent").is_none(), "{json}");
        assert_eq!(merge_query_tag(Some(""), "G-1"), "snowgate:grant=G-1");
        assert_eq!(
            merge_query_tag(Some("nightly-report"), "G-1"),
            "snowgate:grant=G-1 | nightly-report"
        );
        let merged = merge_query_tag(Some(r#"{"app":"dbt","model":"m1"}"#), "G-1");
        let v: Value = serde_json::from_str(&merged).unwrap();
        assert_eq!(
            v,
            json!({"app": "dbt", "model": "m1", "snowgate_grant": "G-1"})
        );
        let long = "x".repeat(5000);
        let merged = merge_query_tag(Some(&long), "G-1");
        assert_eq!(merged.chars().count(), QUERY_TAG_MAX_CHARS);
        assert!(merged.starts_with("snowgate:grant=G-1 | xxx"));
    }

    #[test]
    fn query_tag_key_is_found_in_any_case() {
        let mut body = json!({"data": {"SESSION_PARAMETERS": {"query_tag": "mine"}}});
        rewrite_login(&mut body, &rw()).unwrap();
        let p = body["data"]["SESSION_PARAMETERS"].as_object().unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p["query_tag"], "snowgate:grant=G-1 | mine");
    }

    #[test]
    fn every_spelling_of_query_tag_carries_the_grant() {
        // Found by the `login_rewrite` fuzz target: with `QUERY_TAG` and `query_tag` both
        // sent, only one was merged, and Snowflake reads parameter names in any case.
        let mut body = json!({"data": {"SESSION_PARAMETERS": {
            "QUERY_TAG": "mine",
            "query_tag": 7,
            "Query_Tag": "other",
        }}});
        rewrite_login(&mut body, &rw()).unwrap();
        let p = body["data"]["SESSION_PARAMETERS"].as_object().unwrap();
        let tags: Vec<(&String, &Value)> = p
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case("QUERY_TAG"))
            .collect();
        assert_eq!(tags.len(), 1, "{p:?}");
        assert_eq!(tags[0].1, "snowgate:grant=G-1 | mine");
    }

    #[test]
    fn a_tools_json_tag_cannot_name_another_grant() {
        // Found by the `login_rewrite` fuzz target: a JSON-object tag that already had a
        // `snowgate_grant` key kept the tool's value, so a session could claim any grant.
        let merged = merge_query_tag(Some(r#"{"snowgate_grant":"G-forged","team":"bi"}"#), "G-1");
        assert_eq!(merged, r#"{"snowgate_grant":"G-1","team":"bi"}"#);
    }

    #[test]
    fn a_body_without_data_is_refused() {
        let err = rewrite_login(&mut json!({"x": 1}), &rw()).unwrap_err();
        assert_eq!(err.code(), "390400");
        assert!(read_login_fields(&json!([])).is_err());
    }

    #[test]
    fn force_role_replaces_only_role_name_and_keeps_the_rest_verbatim() {
        let q = "databaseName=&schemaName=S%20X&warehouse=WH&roleName=public&request_id=abc%2Fd&request_guid=1";
        assert_eq!(
            force_role(q, "ANALYST"),
            "databaseName=&schemaName=S%20X&warehouse=WH&roleName=ANALYST&request_id=abc%2Fd&request_guid=1"
        );
        assert_eq!(
            force_role("request_id=1", "A B"),
            "request_id=1&roleName=A+B"
        );
        assert_eq!(force_role("", "ANALYST"), "roleName=ANALYST");
        assert_eq!(
            force_role("roleName=x&a=1&roleName=y", "R"),
            "roleName=R&a=1"
        );
        assert_eq!(query_param(q, "schemaName").as_deref(), Some("S X"));
        assert_eq!(query_param(q, "nope"), None);
    }
}
