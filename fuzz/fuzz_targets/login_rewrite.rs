//! The login rewrite (`snowgate-gateway/src/login_rewrite.rs`): `read_login_fields`,
//! `rewrite_login`, `merge_query_tag`, and the `roleName` query-string edit.
//!
//! The input is structure-aware: a login-request body whose keys come mostly from the names the
//! rewrite cares about, in any letter case, with values of any JSON type. Properties after the
//! rewrite: no field that can carry a credential is left but the upstream `TOKEN`; the
//! authenticator, login name and account are the grant's; no token-requesting session
//! parameter is left; every spelling of `QUERY_TAG` carries the grant id within Snowflake's
//! 2,000 characters; and `roleName` in the query string is the grant's role alone.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Number, Value};
use snowgate_gateway::fuzzing::{
    force_role, is_credential_field, query_param, read_login_fields, rewrite_login, Rewrite,
    QUERY_TAG_MAX_CHARS,
};
use snowgate_gateway::merge_query_tag;

const KEYS: &[&str] = &[
    "LOGIN_NAME",
    "PASSWORD",
    "PASSCODE",
    "TOKEN",
    "AUTHENTICATOR",
    "ACCOUNT_NAME",
    "CLIENT_APP_ID",
    "CLIENT_APP_VERSION",
    "SESSION_PARAMETERS",
    "QUERY_TAG",
    "CLIENT_STORE_TEMPORARY_CREDENTIAL",
    "CLIENT_REQUEST_MFA_TOKEN",
    "EXT_AUTHN_DUO_METHOD",
    "PROOF_KEY",
    "PRIVATE_KEY",
    "OAUTH_TYPE",
    "PROVIDER",
    "BROWSER_MODE_REDIRECT_PORT",
    "CLIENT_ENVIRONMENT",
    "snowgate_grant",
    "data",
];

/// A key: one the rewrite knows, in some letter case, or any string.
#[derive(Debug, Arbitrary)]
enum Key {
    Known(u8, u16),
    Other(String),
}

impl Key {
    fn text(&self) -> String {
        match self {
            Key::Known(i, case) => KEYS[*i as usize % KEYS.len()]
                .chars()
                .enumerate()
                .map(|(n, c)| {
                    if case >> (n % 16) & 1 == 1 {
                        c.to_ascii_lowercase()
                    } else {
                        c
                    }
                })
                .collect(),
            Key::Other(s) => s.clone(),
        }
    }
}

#[derive(Debug, Arbitrary)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    /// A JSON object's text as a string (how dbt writes a QUERY_TAG).
    ObjectText(Vec<(Key, Json)>),
    Array(Vec<Json>),
    Object(Vec<(Key, Json)>),
}

impl Json {
    fn into_value(self, depth: u32) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(b),
            Json::Int(i) => Value::from(i),
            Json::Float(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
            Json::Str(s) => Value::String(s),
            Json::ObjectText(fields) if depth < 8 => {
                Value::String(object(fields, depth).to_string())
            }
            Json::Array(items) if depth < 8 => {
                Value::Array(items.into_iter().map(|j| j.into_value(depth + 1)).collect())
            }
            Json::Object(fields) if depth < 8 => object(fields, depth),
            _ => Value::Null,
        }
    }
}

fn object(fields: Vec<(Key, Json)>, depth: u32) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(k, j)| (k.text(), j.into_value(depth + 1)))
            .collect::<Map<_, _>>(),
    )
}

#[derive(Debug, Arbitrary)]
struct Input {
    /// The body: usually `{"data": {...}}`, sometimes anything.
    body: Json,
    data: Option<Vec<(Key, Json)>>,
    session_parameters: Option<Json>,
    grant_id: String,
    login_name: String,
    query: String,
    role: String,
    tool_tag: Option<String>,
}

fuzz_target!(|input: Input| {
    let mut body = input.body.into_value(0);
    if let Some(fields) = input.data {
        let mut data = match object(fields, 0) {
            Value::Object(m) => m,
            _ => unreachable!(),
        };
        if let Some(p) = input.session_parameters {
            data.insert("SESSION_PARAMETERS".into(), p.into_value(1));
        }
        body = serde_json::json!({ "data": Value::Object(data) });
    }
    // The grant id is Snowgate's own (a short ASCII id); keep it in that shape.
    let grant_id: String = input
        .grant_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(40)
        .collect();
    let grant_id = if grant_id.is_empty() {
        "G-1".to_string()
    } else {
        grant_id
    };

    let fields = read_login_fields(&body);
    let rw = Rewrite {
        upstream_token: "upstream-token",
        login_name: &input.login_name,
        account: "acme",
        grant_id: &grant_id,
        agent: None,
    };
    let result = rewrite_login(&mut body, &rw);
    assert_eq!(fields.is_ok(), result.is_ok());
    if let Ok(stripped) = result {
        for name in &stripped {
            assert!(is_credential_field(name), "{name:?} was stripped");
        }
        let data = body["data"].as_object().expect("data stays an object");
        for (k, v) in data {
            if is_credential_field(k) {
                assert_eq!(k, "TOKEN", "credential field {k:?} survived");
                assert_eq!(v, "upstream-token");
            }
            if k.eq_ignore_ascii_case("AUTHENTICATOR") {
                assert_eq!(k, "AUTHENTICATOR");
            }
        }
        assert_eq!(data["AUTHENTICATOR"], "OAUTH");
        assert_eq!(data["LOGIN_NAME"], input.login_name.as_str());
        assert_eq!(data["ACCOUNT_NAME"], "acme");
        let params = data["SESSION_PARAMETERS"]
            .as_object()
            .expect("SESSION_PARAMETERS is an object");
        let mut tags = 0;
        for (k, v) in params {
            let upper = k.to_ascii_uppercase();
            assert!(
                upper != "CLIENT_STORE_TEMPORARY_CREDENTIAL" && upper != "CLIENT_REQUEST_MFA_TOKEN",
                "{k:?} survived"
            );
            if upper == "QUERY_TAG" {
                tags += 1;
                check_tag(v.as_str().expect("QUERY_TAG is a string"), &grant_id);
            }
        }
        assert!(tags >= 1, "no QUERY_TAG");
    }

    check_tag(
        &merge_query_tag(input.tool_tag.as_deref(), &grant_id),
        &grant_id,
    );

    let forced = force_role(&input.query, &input.role);
    assert_eq!(query_param(&forced, "roleName"), Some(input.role.clone()));
    let roles = url_pairs(&forced).filter(|(k, _)| k == "roleName").count();
    assert_eq!(roles, 1, "{forced:?} has {roles} roleName parameters");
});

/// A merged tag names the grant, and no other: as the JSON object's `snowgate_grant`, or as
/// the `snowgate:grant=<id>` prefix; and it fits Snowflake's limit.
fn check_tag(tag: &str, grant_id: &str) {
    assert!(
        tag.chars().count() <= QUERY_TAG_MAX_CHARS,
        "{tag:?} is too long"
    );
    match serde_json::from_str::<Value>(tag) {
        Ok(Value::Object(obj)) => {
            assert_eq!(
                obj.get("snowgate_grant"),
                Some(&Value::from(grant_id)),
                "{tag:?}"
            );
        }
        _ => {
            let ours = format!("snowgate:grant={grant_id}");
            assert!(
                tag == ours || tag.starts_with(&format!("{ours} | ")),
                "{tag:?} does not name grant {grant_id:?} first"
            );
        }
    }
}

fn url_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k), decode(v))
    })
}

/// `application/x-www-form-urlencoded` decoding, written out so the check does not share the
/// code it checks.
fn decode(s: &str) -> String {
    let hex = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
