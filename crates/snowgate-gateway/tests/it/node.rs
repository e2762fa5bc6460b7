//! The Node.js snowflake-sdk through the gateway.

use std::time::Duration;

use serde_json::json;
use snowgate_rig::clients::{run_node, ClientRun};

use crate::common::*;
use crate::python::big_select_checksum;

#[tokio::test]
async fn node_connects_binds_streams_100k_rows_and_destroys() {
    let rig = rig(|_| {}).await;
    rig.auth
        .grant("G-ana-n", "ANALYST", Duration::from_secs(600));
    let gw = rig.gateway();
    let url = gw.url();
    let run = |scenario: &str| {
        ClientRun::password(&url, "carol", TOOL_PASSWORD, scenario).role("ANALYST")
    };

    let result = run_node(&run("smoke")).await.unwrap();
    ok(&result);
    assert_eq!(result["rows"], json!([{"ONE": 1}]));
    let s = rig.only_session().await;
    assert_eq!(s.login_name, USER);
    assert_eq!(s.role, "ANALYST");
    assert_eq!(s.authenticator, "OAUTH");
    assert_eq!(s.client_app_id.as_deref(), Some("JavaScript"));
    assert!(s.json_results);
    assert!(!s.open, "destroy closes the session: {s:#?}");

    let result = run_node(&run("binds")).await.unwrap();
    ok(&result);
    let r = &result["results"];
    assert_eq!(r["insert_positional"], 1, "{result:#}");
    assert_eq!(r["insert_numbered"], 1, "{result:#}");
    assert_eq!(r["insert_array"], 2, "{result:#}");
    assert_eq!(r["count"], 4, "{result:#}");

    let result = run_node(&run("big_select")).await.unwrap();
    ok(&result);
    assert_eq!(result["row_count"], 100_000, "{result:#}");
    assert_eq!(result["sum"], 4_999_950_000u64, "{result:#}");
    assert_eq!(
        result["checksum"].as_str().unwrap(),
        big_select_checksum(100_000)
    );

    let result = run_node(&run("destroy")).await.unwrap();
    ok(&result);
    assert_eq!(result["is_up"], false, "{result:#}");
    let attempts = rig.sf.login_attempts().await.unwrap();
    assert!(
        attempts.iter().all(|a| !a.password_present),
        "{attempts:#?}"
    );
    assert!(rig.sessions().await.iter().all(|s| !s.open));
    assert!(gw.gw.sessions().is_empty());
}
