//! Several Snowflake accounts on one team server: `[[snowflake]]` entries, `[[roles]] account`,
//! and tokens minted for each grant with its account's `iss` and `aud`, on the rig's IdP and
//! PostgreSQL.

mod support;

use reqwest::StatusCode;
use serde_json::json;
use snowgate_rig::idp::jwt_payload;
use support::*;

const DEV_AUDIENCE: &str = "https://dev.snowflake.rig.test";
const DEV_ISSUER: &str = "https://snowgate-dev.rig.test";

fn two_accounts(text: String) -> String {
    text.replace(
        "name = \"ANALYST\"\n",
        "name = \"ANALYST\"\naccount = \"prod\"\n",
    )
    .replace(
        "name = \"READONLY\"\n",
        "name = \"READONLY\"\naccount = \"dev\"\n",
    )
}

fn tail() -> String {
    format!(
        "\n[[roles]]\nname = \"LOADER\"\naccount = \"prod\"\nmax_duration = \"1h\"\nauto_approve_up_to = \"1h\"\n\n\
         [[snowflake]]\nname = \"prod\"\n\n\
         [[snowflake]]\nname = \"dev\"\naudience = \"{DEV_AUDIENCE}\"\nissuer = \"{DEV_ISSUER}\"\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_grant_is_minted_with_its_accounts_issuer_and_audience() {
    let rig = Rig::start().await;
    let server = rig
        .replica_with(&Options {
            tail: tail(),
            edit: Some(two_accounts),
            ..Options::default()
        })
        .await;
    let alice = rig.token("alice").await;

    let roles = server.get("/v1/roles", Some(&alice)).await;
    let account_of = |name: &str| {
        roles.json["roles"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .map(|r| r["account"].clone())
    };
    assert_eq!(account_of("READONLY"), Some(json!("dev")), "{roles:?}");
    assert_eq!(account_of("LOADER"), Some(json!("prod")), "{roles:?}");

    let mut claims = Vec::new();
    for (role, account) in [("READONLY", "dev"), ("LOADER", "prod")] {
        let g = server.request(&alice, role, 600).await;
        assert_eq!(g["state"], "active", "{g:#}");
        assert_eq!(g["account"], account, "{g:#}");
        let t = server
            .post(
                &format!("/v1/grants/{}/snowflake-token", g["id"].as_str().unwrap()),
                &alice,
                json!({}),
            )
            .await;
        assert_eq!(t.status, StatusCode::OK, "{t:?}");
        claims.push(jwt_payload(t.json["token"].as_str().unwrap()).unwrap());
    }
    assert_eq!(claims[0]["aud"], DEV_AUDIENCE);
    assert_eq!(claims[0]["iss"], DEV_ISSUER);
    assert_eq!(claims[0]["scp"], "session:role:READONLY");
    // prod has no settings of its own: [minting]'s audience and the server's URL.
    assert_eq!(claims[1]["aud"], SNOWFLAKE_AUDIENCE);
    assert_eq!(claims[1]["iss"], server.url.as_str());
    assert_eq!(claims[1]["scp"], "session:role:LOADER");
}

#[test]
fn a_role_must_name_one_of_several_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k.pem");
    make_rsa_key(&key);
    let base = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\npublic_url = \"https://s.example.com\"\nbehind_tls_proxy = true\n\n\
         [database]\nurl = \"postgres://u:p@localhost/db\"\n\n\
         [identity]\nissuer = \"https://idp.example.com\"\naudience = \"https://snowgate.example.com\"\n\n\
         [minting]\naudience = \"https://sf.example.com\"\nkey_files = [{key:?}]\n\n\
         [[snowflake]]\nname = \"prod\"\n\n[[snowflake]]\nname = \"dev\"\n\n\
         [[roles]]\nname = \"ANALYST\"\naccount = \"prod\"\nmax_duration = \"1h\"\napprovers = [\"m\"]\n"
    );
    let load = |text: &str| {
        let path = dir.path().join("server.toml");
        std::fs::write(&path, text).unwrap();
        snowgate_server::config::ServerConfig::load(&path).map_err(|e| e.to_string())
    };
    load(&base).unwrap();
    let e = load(&base.replace("account = \"prod\"\n", "")).unwrap_err();
    assert!(
        e.contains("roles[0].account") && e.contains("prod, dev"),
        "{e}"
    );
    let e = load(&base.replace("account = \"prod\"\n", "account = \"qa\"\n")).unwrap_err();
    assert!(
        e.contains("\"qa\" is not a configured Snowflake account"),
        "{e}"
    );
    let e = load(&base.replace("name = \"dev\"", "name = \"PROD\"")).unwrap_err();
    assert!(
        e.contains("snowflake[1].name") && e.contains("used twice"),
        "{e}"
    );

    // The reaper watches one account, which it must name when there are several.
    let reaper = format!(
        "\n[reaper]\naccount_url = \"https://acme-prod.snowflakecomputing.com\"\nuser = \"REAPER\"\n\
         private_key_file = {key:?}\nrole = \"REAPER\"\n"
    );
    let e = load(&format!("{base}{reaper}")).unwrap_err();
    assert!(
        e.contains("reaper.snowflake") && e.contains("missing") && e.contains("prod, dev"),
        "{e}"
    );
    let e = load(&format!("{base}{reaper}snowflake = \"qa\"\n")).unwrap_err();
    assert!(e.contains("\"qa\" is not a [[snowflake]] name"), "{e}");
    load(&format!("{base}{reaper}snowflake = \"dev\"\n")).unwrap();
}
