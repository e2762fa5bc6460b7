//! `snowgate doctor` against the rig's real parts: the broker, the IdP (oidc-provider), the
//! Secret Service and the Snowflake front (fakesnow) behind the gateway; green on a good setup,
//! and naming the fix on broken ones.

mod support;

use serde_json::Value;
use snowgate_rig::idp::IdpProfile;
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

/// `snowgate doctor --json` after a sign-in, as a report.
async fn report_of(rig: &Rig) -> (bool, Value) {
    let (ok, out, err) = rig.run(&["doctor", "--json"]).await;
    let report = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}\n{err}"));
    (ok, report)
}

/// Rewrites the rig's Snowgate config with `edit`.
fn edit_config(rig: &Rig, edit: impl FnOnce(String) -> String) {
    let path = rig.dir.path().join("config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, edit(text)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_is_green_under_every_solo_profile_and_maps_the_scope_claim_its_tokens_carry() {
    for profile in IdpProfile::SOLO {
        let rig = Rig::start_profile(profile).await;
        let broker = rig.broker().await;
        rig.login("alice").await;
        let (ok, report) = report_of(&rig).await;
        assert!(ok, "{profile}: {report:#}\n{}", rig.log_tail());
        let facts = rig.idp.profile_facts();
        let attr = facts.scope_claim.clone().unwrap();
        let i = &report["integration"];
        assert_eq!(
            i["scope_mapping_attribute"],
            attr.as_str(),
            "{profile}: {i:#}"
        );
        assert_eq!(
            i["audience_list"],
            serde_json::json!([rig.idp.token_audience()]),
            "{profile}: {i:#}"
        );
        assert_eq!(i["issuer"], rig.idp.issuer().as_str(), "{profile}");
        assert!(
            i["sql"].as_str().unwrap().contains(&format!(
                "EXTERNAL_OAUTH_SCOPE_MAPPING_ATTRIBUTE = '{attr}'"
            )),
            "{profile}: {i:#}"
        );
        stop(broker).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_the_consent_setting_when_the_provider_issued_no_refresh_token() {
    // oidc-provider grants offline_access only with prompt=consent; this config never sends it.
    let rig = Rig::start().await;
    edit_config(&rig, |t| {
        t.replace(
            "snowflake_audience =",
            "consent_prompt = \"never\"\nsnowflake_audience =",
        )
    });
    let broker = rig.broker().await;
    let (ok, _, err) = rig.with_sign_in(&["login", "--no-browser"], "alice").await;
    assert!(!ok, "the sign-in went through without a refresh token");
    assert!(err.contains("no refresh token"), "{err}");
    let (ok, report) = report_of(&rig).await;
    assert!(!ok, "{report:#}");
    let sign_in = check(&report, "sign-in");
    assert_eq!(sign_in["outcome"], "fail", "{report:#}");
    assert!(
        sign_in["detail"]
            .as_str()
            .unwrap()
            .contains("no refresh token"),
        "{sign_in:#}"
    );
    assert!(
        sign_in["fix"]
            .as_str()
            .unwrap()
            .contains("identity.consent_prompt = \"retry\""),
        "{sign_in:#}"
    );
    // With the fix, sign-in works and the doctor's refresh check is green.
    stop(broker).await;
    edit_config(&rig, |t| t.replace("consent_prompt = \"never\"\n", ""));
    let broker = rig.broker().await;
    rig.login("alice").await;
    let (_, report) = report_of(&rig).await;
    assert_eq!(
        check(&report, "refresh token")["outcome"],
        "ok",
        "{report:#}"
    );
    stop(broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_the_audience_when_the_tokens_carry_another() {
    // Okta issues every token of an authorization server for its one audience; this config
    // expects another, as Snowflake's integration would if it were set up with it.
    let rig = Rig::start_profile(IdpProfile::Okta).await;
    edit_config(&rig, |t| {
        t.replace(
            "snowflake_audience = \"https://snowflake.rig.test\"",
            "snowflake_audience = \"https://wrong.rig.test\"",
        )
    });
    let broker = rig.broker().await;
    rig.login("alice").await;
    let (ok, report) = report_of(&rig).await;
    assert!(!ok, "{report:#}");
    let token = check(&report, "Snowflake token for ANALYST");
    assert_eq!(token["outcome"], "fail", "{report:#}");
    let aud = rig.idp.token_audience();
    assert!(
        token["detail"].as_str().unwrap().contains(&aud),
        "{token:#}"
    );
    let fix = token["fix"].as_str().unwrap();
    assert!(
        fix.contains("https://wrong.rig.test") && fix.contains("identity.snowflake_audience"),
        "{token:#}"
    );
    // The SQL is written for what the tokens carry.
    assert_eq!(
        report["integration"]["audience_list"],
        serde_json::json!([aud])
    );
    stop(broker).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_a_preset_that_does_not_match_the_provider() {
    // Keycloak's tokens carry the role scopes in `scope`; the config says Okta (which uses
    // `scp`), with Keycloak's group paths allowed so that sign-in itself goes through.
    let rig = Rig::start_profile(IdpProfile::Keycloak).await;
    edit_config(&rig, |t| {
        t.replace(
            "provider = \"keycloak\"",
            "provider = \"okta\"\ngroups_form = \"paths\"",
        )
    });
    let broker = rig.broker().await;
    rig.login("alice").await;
    let (ok, report) = report_of(&rig).await;
    assert!(!ok, "{report:#}");
    let token = check(&report, "Snowflake token for ANALYST");
    assert_eq!(token["outcome"], "fail", "{report:#}");
    assert!(
        token["detail"]
            .as_str()
            .unwrap()
            .contains("the role scopes are in `scope`, where okta puts them in `scp`"),
        "{token:#}"
    );
    let fix = token["fix"].as_str().unwrap();
    assert!(
        fix.contains("identity.provider = \"okta\" does not match this IdP")
            && fix.contains("EXTERNAL_OAUTH_SCOPE_MAPPING_ATTRIBUTE = 'scope'"),
        "{token:#}"
    );
    assert_eq!(
        report["integration"]["scope_mapping_attribute"], "scope",
        "{report:#}"
    );
    stop(broker).await;
}
