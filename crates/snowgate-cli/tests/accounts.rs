//! One gateway port, two Snowflake accounts: the real `snowgate up` broker with two
//! `[[snowflake]]` entries, each in front of its own Snowflake front (fakesnow), the rig's IdP
//! and Secret Service, and the real Python connector naming its account.

use serde_json::Value;
use snowgate_rig::clients::{run_python, PythonDriver};
use snowgate_rig::snowflake::{Snowflake, SnowflakeOptions};

mod support;
use support::{py_error, stop, Rig};

/// The rig's config with its one `[snowflake]` table replaced by `prod` (the rig's front) and
/// `dev` (`dev_url`), ANALYST in prod and ENGINEER in dev, both auto-approved up to an hour.
fn two_accounts(rig: &Rig, dev_url: &str) {
    let path = rig.dir.path().join("config.toml");
    let text = std::fs::read_to_string(&path).unwrap();
    let prod_url = rig.sf.url();
    let one = format!("[snowflake]\naccount = \"rigacct\"\nurl = \"{prod_url}\"\n");
    assert!(text.contains(&one), "{text}");
    let text = text
        .replace(
            &one,
            &format!(
                "[[snowflake]]\nname = \"prod\"\naccount = \"rigacct\"\nurl = \"{prod_url}\"\n\n\
                 [[snowflake]]\nname = \"dev\"\naccount = \"rigdev\"\nurl = \"{dev_url}\"\n"
            ),
        )
        .replace(
            "name = \"ANALYST\"\n",
            "name = \"ANALYST\"\naccount = \"prod\"\n",
        )
        .replace(
            "name = \"ENGINEER\"\nmax_duration = \"2h\"\n",
            "name = \"ENGINEER\"\naccount = \"dev\"\nmax_duration = \"2h\"\nauto_approve_up_to = \"1h\"\n",
        );
    std::fs::write(&path, text).unwrap();
}

#[tokio::test]
async fn one_port_serves_two_accounts_each_login_on_its_own_front_with_its_own_roles() {
    let rig = Rig::start().await;
    let dev = Snowflake::start(SnowflakeOptions::trusting(&rig.idp))
        .await
        .unwrap();
    two_accounts(&rig, &dev.url());
    let broker = rig.broker().await;

    let status: Value = serde_json::from_str(&rig.ok(&["status", "--json"]).await).unwrap();
    assert_eq!(status["gateway"]["state"], "serving", "{status:#}");
    let names: Vec<&str> = status["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["prod", "dev"], "{status:#}");
    let text = rig.ok(&["status"]).await;
    assert!(
        text.contains("prod = rigacct") && text.contains("dev = rigdev"),
        "{text}"
    );

    let roles = rig.ok(&["roles"]).await;
    assert!(
        roles.contains("ANALYST      in prod;") && roles.contains("ENGINEER     in dev;"),
        "{roles}"
    );

    rig.login("alice").await;
    let analyst = rig.request("ANALYST", "5m").await;
    let engineer = rig.request("ENGINEER", "5m").await;
    let grants = rig.grants_all().await;
    let account_of = |id: &str| {
        grants
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["id"] == id)
            .map(|g| g["account"].clone())
            .unwrap_or(Value::Null)
    };
    assert_eq!(account_of(&analyst), "prod", "{grants:#}");
    assert_eq!(account_of(&engineer), "dev", "{grants:#}");
    let listed = rig.ok(&["grants"]).await;
    assert!(
        listed.contains("prod") && listed.contains("dev"),
        "{listed}"
    );

    // prod: the rig's front, as ANALYST, with prod's account identifier.
    let r = run_python(
        PythonDriver::V5,
        &rig.python("smoke").account("prod").role("ANALYST"),
    )
    .await
    .unwrap();
    assert_eq!(r["ok"], true, "{r:#}\n{}", rig.log_tail());
    let at_prod = rig.sf.login_attempts().await.unwrap();
    let login = at_prod.last().expect("prod's front saw the login");
    assert!(login.success, "{login:#?}");
    assert_eq!(login.account_name.as_deref(), Some("rigacct"));
    let session = rig.sf.session(login.session_id.unwrap()).await.unwrap();
    assert_eq!(session.role, "ANALYST");
    assert!(session.query_tag.unwrap_or_default().contains(&analyst));
    assert!(dev.login_attempts().await.unwrap().is_empty());

    // dev: the second front, as ENGINEER, with dev's identifier; the account name is matched
    // whatever its case.
    let r = run_python(
        PythonDriver::V5,
        &rig.python("smoke").account("DEV").role("ENGINEER"),
    )
    .await
    .unwrap();
    assert_eq!(r["ok"], true, "{r:#}\n{}", rig.log_tail());
    let at_dev = dev.login_attempts().await.unwrap();
    assert_eq!(at_dev.len(), 1, "{at_dev:#?}");
    assert!(at_dev[0].success, "{at_dev:#?}");
    assert_eq!(at_dev[0].account_name.as_deref(), Some("rigdev"));
    let session = dev.session(at_dev[0].session_id.unwrap()).await.unwrap();
    assert_eq!(session.role, "ENGINEER");
    assert!(session.query_tag.unwrap_or_default().contains(&engineer));
    assert_eq!(rig.sf.login_attempts().await.unwrap().len(), at_prod.len());

    // Without a role, each account picks its own only grant.
    let r = run_python(PythonDriver::V5, &rig.python("smoke").account("dev"))
        .await
        .unwrap();
    assert_eq!(r["ok"], true, "{r:#}");
    let last = dev.login_attempts().await.unwrap().pop().unwrap();
    assert_eq!(last.requested_role.as_deref(), Some("ENGINEER"));

    // A role of prod is refused for dev, naming its account; nothing reaches either front.
    let before = (
        rig.sf.login_attempts().await.unwrap().len(),
        dev.login_attempts().await.unwrap().len(),
    );
    let r = run_python(
        PythonDriver::V5,
        &rig.python("smoke").account("dev").role("ANALYST"),
    )
    .await
    .unwrap();
    let (errno, msg) = py_error(&r);
    assert_eq!(errno, 390189, "{msg}");
    assert!(
        msg.contains("role ANALYST belongs to Snowflake account prod, not dev")
            && msg.contains("account=prod"),
        "{msg}"
    );

    // An account the gateway does not serve is refused with the accounts it does.
    let r = run_python(
        PythonDriver::V5,
        &rig.python("smoke").account("staging").role("ANALYST"),
    )
    .await
    .unwrap();
    let (_, msg) = py_error(&r);
    assert!(
        msg.contains("account staging is not one this gateway serves") && msg.contains("prod, dev"),
        "{msg}"
    );
    let after = (
        rig.sf.login_attempts().await.unwrap().len(),
        dev.login_attempts().await.unwrap().len(),
    );
    assert_eq!(before, after, "a refused login reached a front");

    // A held session names its account, and so does its audit record.
    let mut held = snowgate_rig::clients::spawn_python(
        PythonDriver::V5,
        &rig.python("hold").account("dev").role("ENGINEER").arg([
            "--interval",
            "0.2",
            "--duration",
            "20",
        ]),
    )
    .await
    .unwrap();
    let connected = held
        .next_line(std::time::Duration::from_secs(20))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(connected["event"], "connected", "{connected:#}");
    let sessions: Value = serde_json::from_str(&rig.ok(&["sessions", "--json"]).await).unwrap();
    assert_eq!(sessions[0]["role"], "ENGINEER", "{sessions:#}");
    assert_eq!(sessions[0]["account"], "dev", "{sessions:#}");
    let text = rig.ok(&["sessions"]).await;
    assert!(text.contains("ENGINEER (dev)"), "{text}");
    held.kill();
    let audit: Value = serde_json::from_str(&rig.ok(&["audit", "--json"]).await).unwrap();
    // Each record's details, read whether the answer carries them as JSON or as JSON text.
    let records: Vec<Value> = audit
        .as_array()
        .expect("the audit log as a list")
        .iter()
        .map(|r| {
            let mut r = r.clone();
            if let Some(text) = r["details"].as_str() {
                r["details"] = serde_json::from_str(text).unwrap();
            }
            r
        })
        .collect();
    let opened_in = |account: &str| {
        records
            .iter()
            .any(|r| r["kind"] == "session.opened" && r["details"]["account"] == account)
    };
    assert!(opened_in("dev") && opened_in("prod"), "{audit:#}");
    let requested = records
        .iter()
        .find(|r| r["kind"] == "grant.requested" && r["grant_id"] == engineer.as_str())
        .expect("the request's record");
    assert_eq!(requested["details"]["account"], "dev", "{requested:#}");

    // connect-info names the default account and lists the others.
    let info = rig.ok(&["connect-info"]).await;
    assert!(info.contains("prod") && info.contains("dev"), "{info}");

    stop(broker).await;
    dev.stop().await;
}

#[tokio::test]
async fn a_config_with_several_accounts_names_each_and_each_role_names_one() {
    let rig = Rig::start().await;
    two_accounts(&rig, "http://127.0.0.1:9");
    let path = rig.dir.path().join("config.toml");
    let good = std::fs::read_to_string(&path).unwrap();

    let check = |text: String| {
        std::fs::write(&path, text).unwrap();
        async { rig.run(&["config", "check"]).await }
    };
    let (ok, out, err) = check(good.clone()).await;
    assert!(ok, "{out}{err}");

    let (ok, _, err) = check(good.replace("account = \"dev\"\n", "")).await;
    assert!(!ok);
    assert!(
        err.contains("roles[1].account") && err.contains("several Snowflake accounts (prod, dev)"),
        "{err}"
    );
    let (ok, _, err) = check(good.replace("account = \"dev\"\n", "account = \"qa\"\n")).await;
    assert!(!ok);
    assert!(
        err.contains("\"qa\" is not a configured Snowflake account"),
        "{err}"
    );
    let (ok, _, err) = check(good.replace("name = \"dev\"\n", "")).await;
    assert!(!ok);
    assert!(
        err.contains("snowflake[1].name") && err.contains("missing"),
        "{err}"
    );
    let (ok, _, err) = check(good.replace("name = \"dev\"\n", "name = \"PROD\"\n")).await;
    assert!(!ok);
    assert!(err.contains("used twice"), "{err}");
}
