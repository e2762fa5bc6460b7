//! `docs/openapi.yaml` describes every route the router serves, and nothing it does not; its
//! component schemas are the JSON Schemas of `snowgate_grants::team_api`'s types, the ones the
//! server and the desktop exchange, and every JSON body and answer names one of them.
//!
//! The routes, their descriptions and parameters are written by hand; `components.schemas` is
//! generated. `SNOWGATE_WRITE_OPENAPI=1` rewrites that part of the file from the types;
//! otherwise the test fails when it is stale.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};
use snowgate_grants::team_api;
use snowgate_server::api::ROUTES;
use yaml_rust2::{Yaml, YamlLoader};

/// Where the generated part of the document starts: everything after this line.
const SCHEMAS_LINE: &str = "  schemas:\n";

fn path() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.yaml").to_string()
}

fn document() -> Yaml {
    let text = std::fs::read_to_string(path()).expect("reading docs/openapi.yaml");
    YamlLoader::load_from_str(&text)
        .expect("docs/openapi.yaml is valid YAML")
        .remove(0)
}

/// A YAML node as JSON.
fn json(y: &Yaml) -> Value {
    match y {
        Yaml::Real(r) => Value::from(r.parse::<f64>().expect("a YAML real is a number")),
        Yaml::Integer(i) => Value::from(*i),
        Yaml::String(s) => Value::from(s.clone()),
        Yaml::Boolean(b) => Value::from(*b),
        Yaml::Array(a) => Value::Array(a.iter().map(json).collect()),
        Yaml::Hash(h) => Value::Object(
            h.iter()
                .map(|(k, v)| {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        other => panic!("a YAML key that is not text: {other:?}"),
                    };
                    (key, json(v))
                })
                .collect(),
        ),
        Yaml::Null => Value::Null,
        other => panic!("a YAML node JSON has no form for: {other:?}"),
    }
}

fn documented(doc: &Yaml) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    let paths = doc["paths"].as_hash().expect("the document has paths");
    for (path, item) in paths {
        let path = path.as_str().unwrap().to_string();
        for (method, _) in item.as_hash().unwrap() {
            let method = method.as_str().unwrap();
            if ["get", "post", "put", "patch", "delete"].contains(&method) {
                out.insert((method.to_string(), path.clone()));
            }
        }
    }
    out
}

#[test]
fn every_served_route_is_documented_and_every_documented_route_is_served() {
    let doc = document();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    let documented = documented(&doc);
    let served: BTreeSet<(String, String)> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    let missing: Vec<_> = served.difference(&documented).collect();
    assert!(
        missing.is_empty(),
        "served but not in docs/openapi.yaml: {missing:?}"
    );
    let extra: Vec<_> = documented.difference(&served).collect();
    assert!(
        extra.is_empty(),
        "in docs/openapi.yaml but not served: {extra:?}"
    );
}

#[test]
fn every_operation_says_what_it_answers_and_v1_needs_the_bearer_token() {
    let doc = document();
    for (path, item) in doc["paths"].as_hash().unwrap() {
        let path = path.as_str().unwrap();
        for (method, op) in item.as_hash().unwrap() {
            assert!(
                op["responses"].as_hash().is_some_and(|r| !r.is_empty()),
                "{method:?} {path} has no responses"
            );
            assert!(
                op["summary"].as_str().is_some(),
                "{method:?} {path} has no summary"
            );
            if path.starts_with("/v1") {
                let security = op["security"].as_vec().or(doc["security"].as_vec());
                assert!(security.is_some(), "{method:?} {path} names no security");
                assert!(
                    op["responses"]["401"].as_hash().is_some(),
                    "{method:?} {path} does not document 401"
                );
            }
        }
    }
}

/// The generated schemas as the YAML that follows [`SCHEMAS_LINE`].
fn schemas_yaml(schemas: &BTreeMap<String, Value>) -> String {
    let map: Map<String, Value> = schemas.clone().into_iter().collect();
    let mut out = String::new();
    block_map(&map, 4, &mut out);
    out
}

/// A key as YAML: plain when that can't be read as anything but the text.
fn key(k: &str) -> String {
    let plain = k.chars().enumerate().all(|(i, c)| {
        c.is_ascii_alphabetic() || c == '_' || c == '$' || (i > 0 && c.is_ascii_digit())
    }) && !["y", "n", "yes", "no", "on", "off", "true", "false", "null"]
        .contains(&k.to_ascii_lowercase().as_str());
    if plain && !k.is_empty() {
        k.to_string()
    } else {
        Value::from(k).to_string()
    }
}

/// A value that fits on its key's line: scalars (strings JSON-quoted, which YAML reads back
/// as the same text), empty collections, and lists of scalars.
fn inline(v: &Value) -> Option<String> {
    match v {
        Value::Object(m) if m.is_empty() => Some("{}".into()),
        Value::Object(_) => None,
        Value::Array(a) if a.iter().all(|e| !e.is_object() && !e.is_array()) => Some(format!(
            "[{}]",
            a.iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )),
        Value::Array(_) => None,
        scalar => Some(scalar.to_string()),
    }
}

fn block_map(m: &Map<String, Value>, indent: usize, out: &mut String) {
    let pad = " ".repeat(indent);
    for (k, v) in m {
        out.push_str(&format!("{pad}{}:", key(k)));
        block_value(v, indent, out);
    }
}

/// `v` after a `key:` (or `-`) at `indent`.
fn block_value(v: &Value, indent: usize, out: &mut String) {
    if let Some(s) = inline(v) {
        out.push_str(&format!(" {s}\n"));
        return;
    }
    out.push('\n');
    match v {
        Value::Object(m) => block_map(m, indent + 2, out),
        Value::Array(a) => {
            let pad = " ".repeat(indent + 2);
            for e in a {
                match e {
                    Value::Object(m) if !m.is_empty() => {
                        let mut item = String::new();
                        block_map(m, indent + 4, &mut item);
                        out.push_str(&format!("{pad}- {}", &item[indent + 4..]));
                    }
                    other => {
                        out.push_str(&format!("{pad}-"));
                        block_value(other, indent + 2, out);
                    }
                }
            }
        }
        _ => unreachable!("scalars are inline"),
    }
}

#[test]
fn the_written_yaml_reads_back_as_the_same_json() {
    let schemas = team_api::schemas();
    let text = format!("schemas:\n{}", schemas_yaml(&schemas)).replace("\n    ", "\n  ");
    let read = YamlLoader::load_from_str(&text).unwrap().remove(0);
    let read = json(&read["schemas"]);
    let want: Map<String, Value> = schemas.into_iter().collect();
    assert_eq!(read, Value::Object(want));
}

#[test]
fn the_component_schemas_are_generated_from_the_api_types() {
    let schemas = team_api::schemas();
    let file = path();
    if std::env::var_os("SNOWGATE_WRITE_OPENAPI").is_some() {
        let text = std::fs::read_to_string(&file).unwrap();
        let at = text
            .rfind(SCHEMAS_LINE)
            .expect("the document has components.schemas")
            + SCHEMAS_LINE.len();
        let new = format!("{}{}", &text[..at], schemas_yaml(&schemas));
        std::fs::write(&file, new).unwrap();
    }
    let doc = document();
    let committed = json(&doc["components"]["schemas"]);
    let generated = Value::Object(schemas.clone().into_iter().collect());
    if committed != generated {
        let committed = committed.as_object().cloned().unwrap_or_default();
        let mut stale: Vec<&str> = schemas
            .iter()
            .filter(|(name, s)| committed.get(*name) != Some(*s))
            .map(|(name, _)| name.as_str())
            .collect();
        stale.extend(
            committed
                .keys()
                .filter(|k| !schemas.contains_key(*k))
                .map(String::as_str),
        );
        panic!(
            "docs/openapi.yaml's components.schemas do not match snowgate_grants::team_api (stale or left over: {}); run `SNOWGATE_WRITE_OPENAPI=1 cargo nextest run -p snowgate-server --test openapi` and commit the result",
            stale.join(", ")
        );
    }
}

/// The schema names every `$ref` to `#/components/schemas/` in `v` names.
fn schema_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                if let Some(name) = r.strip_prefix("#/components/schemas/") {
                    out.push(name.to_string());
                }
            }
            m.values().for_each(|v| schema_refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| schema_refs(v, out)),
        _ => {}
    }
}

/// Follows a `$ref` to `#/components/responses/...`.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v["$ref"].as_str().and_then(|r| r.strip_prefix("#/")) {
        Some(pointer) => doc
            .pointer(&format!("/{pointer}"))
            .expect("a $ref that resolves"),
        None => v,
    }
}

#[test]
fn every_body_and_answer_is_one_of_the_generated_schemas() {
    let doc = json(&document());
    let components = doc["components"]["schemas"].as_object().unwrap();
    let mut refs = Vec::new();
    schema_refs(&doc, &mut refs);
    for name in &refs {
        assert!(
            components.contains_key(name),
            "#/components/schemas/{name} is referenced but not generated"
        );
    }
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let mut contents = Vec::new();
            if let Some(c) = op["requestBody"]["content"].as_object() {
                contents.extend(c.iter().map(|(t, m)| (format!("request {t}"), m)));
            }
            for (status, answer) in op["responses"].as_object().unwrap() {
                if let Some(c) = resolve(&doc, answer)["content"].as_object() {
                    contents.extend(c.iter().map(|(t, m)| (format!("{status} {t}"), m)));
                }
            }
            for (what, media) in contents {
                let schema = &media["schema"];
                let named = schema["$ref"]
                    .as_str()
                    .is_some_and(|r| r.starts_with("#/components/schemas/"));
                assert!(
                    named && schema.as_object().unwrap().len() == 1,
                    "{method} {path}: the {what} schema is written by hand, not one of team_api's: {schema}"
                );
            }
        }
    }
}

/// The query parameters each route documents are the fields of its query type.
#[test]
fn every_documented_query_is_its_query_types_fields() {
    let doc = json(&document());
    let schemas = team_api::schemas();
    let routes = [
        ("/v1/grants", "GrantsQuery"),
        ("/v1/audit", "AuditParams"),
        ("/v1/audit/export", "AuditParams"),
        ("/v1/audit/verify", "VerifyParams"),
        ("/v1/events", "EventsQuery"),
    ];
    for (path, query) in routes {
        let params = doc["paths"][path]["get"]["parameters"].as_array().unwrap();
        let documented: BTreeSet<&str> = params
            .iter()
            .filter(|p| p["in"] == "query")
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        let fields: BTreeSet<&str> = schemas[query]["properties"]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(documented, fields, "GET {path}'s query against {query}");
    }
}
