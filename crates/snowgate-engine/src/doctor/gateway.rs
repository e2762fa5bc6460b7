//! The gateway's check: a `SELECT 1` through the local gateway for each role held.

use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

use serde_json::{json, Value};

use crate::identity::Identity;

use super::*;

pub(super) async fn gateway_logins(d: &mut Doctor, p: &Patient<'_>, identity: &Identity) {
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
        let account = p.config.role_account(
            p.config
                .role(&role)
                .and_then(|r| r.account.as_ref())
                .map(|a| a.get_ref().as_str()),
        );
        match select_one(&http, *addr, &role, account).await {
            Ok(rows) if rows >= 1 => d.ok(&name, format!("logged in and `SELECT 1` returned {rows} row")),
            Ok(rows) => d.fail(&name, format!("`SELECT 1` returned {rows} rows"), "check the Snowflake account behind [snowflake] url".into()),
            Err(e) => d.fail(&name, e, "check the security integration in Snowflake against the values below, and that the user exists with this role".into()),
        }
    }
}

/// Logs in to the gateway as `role`, runs `SELECT 1`, closes the session; the row count.
pub(super) async fn select_one(
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
