//! `docs/openapi.yaml` describes every route the router serves, and nothing it does not.

use std::collections::BTreeSet;

use snowgate_server::api::ROUTES;
use yaml_rust2::{Yaml, YamlLoader};

fn document() -> Yaml {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.yaml");
    let text = std::fs::read_to_string(path).expect("reading docs/openapi.yaml");
    YamlLoader::load_from_str(&text)
        .expect("docs/openapi.yaml is valid YAML")
        .remove(0)
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
