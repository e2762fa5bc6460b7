//! `snowgate doctor` against the rig's real parts: the broker, the IdP (oidc-provider), the
//! Secret Service and the Snowflake front (fakesnow) behind the gateway; green on a good setup,
//! and naming the fix on broken ones.

mod support;

use serde_json::Value;
use support::{stop, Rig};

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {report:#}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_is_green_on_the_rig_and_prints_the_matching_integration() {
    let rig = Rig::start().await;
    let broker = rig.broker().await;
    // Signed out: the doctor says how to go on, and fails.
    let (ok, out, _) = rig.run(&["doctor"]).await;
    assert!(!ok, "{out}");
    assert!(out.contains("snowgate login"), "{out}");

    rig.login("alice").await;
    rig.request("ANALYST", "30m").await;
    let (ok, out, err) = rig.run(&["doctor", "--json"]).await;
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}\n{err}"));
    assert!(ok, "{report:#}\n{}", rig.log_tail());
    assert_eq!(report["ok"], true);
    for name in [
        "discovery",
        "client (PKCE S256, loopback redirect)",
        "device flow",
        "refresh token",
        "Snowflake token for ANALYST",
        "Snowflake token for ENGINEER",
        "signing key published",
        "groups",
        "Snowflake login through the gateway as ANALYST",
    ] {
        assert_eq!(check(&report, name)["outcome"], "ok", "{name}: {report:#}");
    }
    assert!(check(&report, "refresh token")["detail"]
        .as_str()
        .unwrap()
        .contains("rotated"));
    assert!(check(&report, "groups")["detail"]
        .as_str()
        .unwrap()
        .contains("analysts"));
    let i = &report["integration"];
    assert_eq!(i["issuer"], rig.idp.issuer().as_str());
    assert_eq!(i["jwks_url"], rig.idp.jwks_uri().as_str());
    assert_eq!(
        i["audience_list"],
        serde_json::json!(["https://snowflake.rig.test"])
    );
    assert_eq!(i["user_mapping_claim"], "sub");
    // oidc-provider puts the granted scopes into `scope`, so that is what the integration
    // must map; the check says so too.
    assert_eq!(i["scope_mapping_attribute"], "scope");
    assert!(check(&report, "Snowflake token for ANALYST")["detail"]
        .as_str()
        .unwrap()
        .contains("EXTERNAL_OAUTH_SCOPE_MAPPING_ATTRIBUTE = 'scope'"));
    // The session it opened at the front was alice's, as ANALYST, and it was closed.
    let sessions = rig.sf.sessions().await.unwrap();
    let s = sessions.last().unwrap();
    assert_eq!(s.login_name.to_lowercase(), "alice");
    assert_eq!(s.role, "ANALYST");

    // Text: a checklist and the SQL, and never a token.
    let (ok, text, _) = rig.run(&["doctor"]).await;
    assert!(ok, "{text}");
    assert!(text.contains("[ok]   discovery"), "{text}");
    assert!(text.contains("TYPE = EXTERNAL_OAUTH"), "{text}");
    assert!(
        text.contains("EXTERNAL_OAUTH_SCOPE_MAPPING_ATTRIBUTE = 'scope';"),
        "{text}"
    );
    assert!(
        !text.contains("eyJ"),
        "a JWT leaked into the output: {text}"
    );
    assert!(!out.contains("eyJ"), "a JWT leaked into the JSON: {out}");
    stop(broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_the_fix_for_a_missing_groups_claim_and_a_missing_role_scope() {
    let rig = Rig::start().await;
    // The IdP sends groups in `groups`; this config looks in another claim, and asks for a role
    // the IdP's Snowflake resource does not have.
    let path = rig.dir.path().join("config.toml");
    let config = std::fs::read_to_string(&path).unwrap().replace(
        "snowflake_audience =",
        "groups_claim = \"memberships\"\nsnowflake_audience =",
    )
        + "\n[[roles]]\nname = \"AUDITOR\"\nmax_duration = \"1h\"\napprovers = [\"managers\"]\n";
    std::fs::write(&path, config).unwrap();
    let broker = rig.broker().await;
    rig.login("alice").await;
    let (ok, out, err) = rig.run(&["doctor", "--json"]).await;
    assert!(!ok, "the doctor passed a broken setup: {out}");
    let report: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}\n{err}"));
    let groups = check(&report, "groups");
    assert_eq!(groups["outcome"], "fail", "{report:#}");
    assert!(
        groups["fix"]
            .as_str()
            .unwrap()
            .contains("identity.groups_claim"),
        "{groups:#}"
    );
    let auditor = check(&report, "Snowflake token for AUDITOR");
    assert_eq!(auditor["outcome"], "fail", "{report:#}");
    assert!(
        auditor["fix"]
            .as_str()
            .unwrap()
            .contains("add the scope session:role:AUDITOR"),
        "{auditor:#}"
    );
    // What works is still green, and no grant means no login to try.
    assert_eq!(
        check(&report, "Snowflake token for ANALYST")["outcome"],
        "ok"
    );
    assert_eq!(
        check(&report, "Snowflake login through the gateway")["outcome"],
        "skip"
    );
    let (_, text, _) = rig.run(&["doctor"]).await;
    assert!(text.contains("[FAIL] groups"), "{text}");
    assert!(
        text.contains("fix: add the scope session:role:AUDITOR"),
        "{text}"
    );
    stop(broker).await;
}
