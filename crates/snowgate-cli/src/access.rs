//! The just-in-time access commands: roles, request, grants, approve, deny, revoke, extend,
//! cancel, sessions, audit, token, exec and connect-info. Each is a thin client of the
//! broker's control socket; input is checked here first where the CLI can (durations), and the
//! broker checks the rest, so bad input writes nothing.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde_json::Value;
use snowgate_engine::control::{default_socket_path, ControlClient, Request};
use snowgate_engine::paths::ProcessEnv;

async fn client() -> anyhow::Result<ControlClient> {
    let socket = default_socket_path(&ProcessEnv).map_err(anyhow::Error::msg)?;
    Ok(ControlClient::connect(&socket).await?)
}

async fn call(request: Request) -> anyhow::Result<Value> {
    Ok(client().await?.call(&request).await?)
}

/// A duration for a grant: Snowgate's grammar, longer than zero.
pub fn grant_duration(text: &str, flag: &str) -> anyhow::Result<u64> {
    let d = snowgate_engine::duration::parse(text).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
    if d.is_zero() {
        bail!("{flag}: a duration must be longer than zero");
    }
    Ok(d.as_secs())
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("-")
}

/// One line per grant: id, role, state, until, requester, reason.
pub fn render_grant(g: &Value) -> String {
    let until = match s(g, "state") {
        "active" => format!("until {}", s(g, "expires_at")),
        "pending" => format!("waiting until {}", s(g, "pending_until")),
        _ => format!("ended {}", s(g, "ended_at")),
    };
    let who = g["requester"]["email"]
        .as_str()
        .or(g["requester"]["subject"].as_str())
        .unwrap_or("-");
    format!(
        "{}  {:<12} {:<9} {}  {}  \"{}\"",
        s(g, "id"),
        s(g, "role"),
        s(g, "state"),
        until,
        who,
        s(g, "reason")
    )
}

pub async fn roles(json: bool) -> anyhow::Result<ExitCode> {
    let roles = call(Request::Roles).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&roles)?);
        return Ok(ExitCode::SUCCESS);
    }
    for r in roles.as_array().into_iter().flatten() {
        let auto = r["auto_approve_up_to"]
            .as_str()
            .map(|d| format!("; auto-approved up to {d}"))
            .unwrap_or_default();
        println!(
            "{:<12} up to {}; approvers: {}{auto}{}",
            s(r, "name"),
            s(r, "max_duration"),
            r["approver_groups"]
                .as_array()
                .map(|g| g
                    .iter()
                    .filter_map(|v| v.as_str())
                    .collect::<Vec<_>>()
                    .join(", "))
                .filter(|g| !g.is_empty())
                .unwrap_or_else(|| "none".into()),
            match s(r, "description") {
                "" | "-" => String::new(),
                d => format!("\n             {d}"),
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn request(
    role: String,
    duration: String,
    reason: String,
    ticket: Option<String>,
    wait: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let duration_secs = grant_duration(&duration, "--duration")?;
    let g = call(Request::RequestAccess {
        role,
        duration_secs,
        reason,
        ticket,
    })
    .await?;
    let id = s(&g, "id").to_string();
    if json && !wait {
        println!("{}", serde_json::to_string_pretty(&g)?);
        return Ok(ExitCode::SUCCESS);
    }
    match s(&g, "state") {
        "active" => eprintln!(
            "Approved by policy: {} is yours until {}.",
            s(&g, "role"),
            s(&g, "expires_at")
        ),
        _ => eprintln!(
            "Requested {} ({id}); waiting for an approver (until {}).",
            s(&g, "role"),
            s(&g, "pending_until")
        ),
    }
    if !wait || s(&g, "state") != "pending" {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut client = client().await?;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let g = client.call(&Request::GrantGet { id: id.clone() }).await?;
        match s(&g, "state") {
            "pending" => continue,
            "active" => {
                eprintln!("Approved: {} until {}.", s(&g, "role"), s(&g, "expires_at"));
                if json {
                    println!("{}", serde_json::to_string_pretty(&g)?);
                } else {
                    println!("{id}");
                }
                return Ok(ExitCode::SUCCESS);
            }
            other => {
                eprintln!("Request {id} was {other}.");
                if json {
                    println!("{}", serde_json::to_string_pretty(&g)?);
                }
                return Ok(ExitCode::FAILURE);
            }
        }
    }
}

pub async fn grants(all: bool, json: bool) -> anyhow::Result<ExitCode> {
    let list = call(Request::Grants { all }).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    let items = list.as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        eprintln!(
            "No grants. Ask for one with `snowgate request ROLE --duration 1h --reason \"...\"`."
        );
    }
    for g in &items {
        println!("{}", render_grant(g));
    }
    Ok(ExitCode::SUCCESS)
}

/// What an approver decides.
#[derive(Debug, Clone, Copy)]
pub enum Decide {
    Approve,
    Deny,
    Revoke,
}

/// Whether the broker runs in team mode, where decisions are made with the signed-in user's
/// own sign-in (the team server checks who may decide), and its server's URL.
async fn team_mode(client: &mut ControlClient) -> anyhow::Result<Option<String>> {
    let status = client.call(&Request::Status).await?;
    Ok((status["mode"] == "team").then(|| {
        status["team_server"]
            .as_str()
            .unwrap_or("the team server")
            .to_string()
    }))
}

/// Makes a decision. Solo mode: runs the approver's fresh sign-in (browser, or the URL printed
/// with `no_browser`) first and decides as them. Team mode: decides as the signed-in user,
/// with no browser.
pub async fn decide(
    what: Decide,
    id: String,
    comment: Option<String>,
    no_browser: bool,
) -> anyhow::Result<ExitCode> {
    if matches!(what, Decide::Deny) && comment.as_deref().is_none_or(|c| c.trim().is_empty()) {
        bail!("a denial needs a comment saying why (--comment \"...\")");
    }
    let mut client = client().await?;
    if team_mode(&mut client).await?.is_some() {
        let request = match what {
            Decide::Approve => Request::Approve {
                id,
                comment,
                approver_login_id: None,
            },
            Decide::Deny => Request::Deny {
                id,
                comment: comment.unwrap_or_default(),
                approver_login_id: None,
            },
            Decide::Revoke => Request::Revoke {
                id,
                comment,
                approver_login_id: None,
            },
        };
        let g = client.call(&request).await?;
        eprintln!("Done: {}", render_grant(&g));
        return Ok(ExitCode::SUCCESS);
    }
    let start = client
        .call(&Request::ApproverLoginBegin {
            grant_id: Some(id.clone()),
        })
        .await?;
    let login_id = s(&start, "login_id").to_string();
    let url = s(&start, "authorize_url").to_string();
    if no_browser {
        eprintln!("The approver signs in at this URL (a fresh sign-in, separate from yours):");
        println!("{url}");
    } else if let Err(e) = opener::open_browser(&url) {
        eprintln!("Could not open a browser ({e}). The approver signs in at:");
        println!("{url}");
    } else {
        eprintln!("Your browser opened the approver's sign-in page. Waiting…");
    }
    let request = match what {
        Decide::Approve => Request::Approve {
            id,
            comment,
            approver_login_id: Some(login_id),
        },
        Decide::Deny => Request::Deny {
            id,
            comment: comment.unwrap_or_default(),
            approver_login_id: Some(login_id),
        },
        Decide::Revoke => Request::Revoke {
            id,
            comment,
            approver_login_id: Some(login_id),
        },
    };
    let g = client.call(&request).await?;
    eprintln!("Done: {}", render_grant(&g));
    Ok(ExitCode::SUCCESS)
}

/// Revokes a grant: the requester gives up their own grant directly; anyone else's needs an
/// approver's sign-in (`--as-approver`, or automatically when it is not yours).
pub async fn revoke(
    id: String,
    comment: Option<String>,
    as_approver: bool,
    no_browser: bool,
) -> anyhow::Result<ExitCode> {
    let mut client = client().await?;
    if !as_approver {
        let g = client.call(&Request::GrantGet { id: id.clone() }).await?;
        let me = client.call(&Request::Whoami).await.ok();
        let mine = me
            .as_ref()
            .is_some_and(|w| w["subject"] == g["requester"]["subject"]);
        if mine {
            let g = client
                .call(&Request::Revoke {
                    id,
                    comment,
                    approver_login_id: None,
                })
                .await?;
            eprintln!("Revoked: {}", render_grant(&g));
            return Ok(ExitCode::SUCCESS);
        }
    }
    decide(Decide::Revoke, id, comment, no_browser).await
}

pub async fn extend(id: String, by: String, reason: String) -> anyhow::Result<ExitCode> {
    let by_secs = grant_duration(&by, "--by")?;
    let g = call(Request::Extend {
        id,
        by_secs,
        reason,
    })
    .await?;
    let pending = g["extensions"]
        .as_array()
        .and_then(|e| e.last())
        .is_some_and(|e| e["state"] == "pending");
    if pending {
        eprintln!("Extension requested; waiting for an approver.");
    } else {
        eprintln!(
            "Extended: {} now runs until {}.",
            s(&g, "role"),
            s(&g, "expires_at")
        );
    }
    println!("{}", render_grant(&g));
    Ok(ExitCode::SUCCESS)
}

pub async fn cancel(id: String) -> anyhow::Result<ExitCode> {
    let g = call(Request::Cancel { id }).await?;
    println!("{}", render_grant(&g));
    Ok(ExitCode::SUCCESS)
}

pub async fn sessions(json: bool) -> anyhow::Result<ExitCode> {
    let list = call(Request::Sessions).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(ExitCode::SUCCESS);
    }
    let items = list.as_array().cloned().unwrap_or_default();
    if items.is_empty() {
        eprintln!("No sessions are open through the gateway.");
    }
    for x in &items {
        println!(
            "{:<5} {:<20} {:<12} {}  since {}  {} statements",
            s(x, "id"),
            format!(
                "{}{}",
                s(x, "tool"),
                x["process"]
                    .as_str()
                    .map(|p| format!(" ({p})"))
                    .unwrap_or_default()
            ),
            s(x, "role"),
            s(x, "grant"),
            s(x, "since"),
            x["statements"].as_u64().unwrap_or(0)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `snowgate sessions end ID`: closes one gateway session; non-zero if it was not open.
pub async fn end_session(id: String) -> anyhow::Result<ExitCode> {
    let answer = call(Request::SessionEnd { id }).await?;
    let id = s(&answer, "id");
    if answer["ended"].as_bool() == Some(true) {
        eprintln!("Closed session {id}; the tool is told it was closed in Snowgate.");
        Ok(ExitCode::SUCCESS)
    } else {
        bail!("no open session {id}; `snowgate sessions` lists the open ones")
    }
}

/// `--since`: RFC 3339 as is, or a duration back from now.
fn since_arg(text: &str) -> anyhow::Result<String> {
    if let Ok(d) = snowgate_engine::duration::parse(text) {
        let at = std::time::SystemTime::now()
            .checked_sub(d)
            .context("--since reaches before 1970")?;
        return Ok(snowgate_grants_time(at));
    }
    Ok(text.to_string())
}

fn snowgate_grants_time(at: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(at).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub async fn audit(json: bool, since: Option<String>) -> anyhow::Result<ExitCode> {
    let since = since.as_deref().map(since_arg).transpose()?;
    let records = call(Request::Audit { since, limit: None }).await?;
    let items = records.as_array().cloned().unwrap_or_default();
    if json {
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(ExitCode::SUCCESS);
    }
    for r in &items {
        println!(
            "{:>5}  {}  {:<24} {:<28} {} {}  {}",
            r["seq"],
            s(r, "at"),
            s(r, "kind"),
            s(r, "actor"),
            r["grant_id"].as_str().unwrap_or(""),
            r["role"].as_str().unwrap_or(""),
            r["details"]
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn audit_verify() -> anyhow::Result<ExitCode> {
    let v = call(Request::AuditVerify).await?;
    if v["ok"] == true {
        println!(
            "The audit log is intact: {} records, anchored outside the database.",
            v["records"]
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("The audit log is NOT intact: {}", s(&v, "problem"));
        Ok(ExitCode::FAILURE)
    }
}

pub async fn audit_export() -> anyhow::Result<ExitCode> {
    let v = call(Request::AuditExport).await?;
    print!("{}", v["jsonl"].as_str().unwrap_or(""));
    Ok(ExitCode::SUCCESS)
}

pub async fn token(role: String) -> anyhow::Result<ExitCode> {
    let v = call(Request::Token { role }).await?;
    eprintln!(
        "snowgate: a token for {} (grant {}), good until {}. Sessions a tool starts with it are not closed by Snowgate and can outlive the grant (it ends {}).",
        s(&v, "role"),
        s(&v, "grant"),
        s(&v, "token_expires_at"),
        s(&v, "grant_ends_at")
    );
    println!("{}", s(&v, "token"));
    Ok(ExitCode::SUCCESS)
}

pub async fn exec(role: String, command: Vec<String>) -> anyhow::Result<ExitCode> {
    let Some((program, args)) = command.split_first() else {
        bail!("give the command to run after `--`, e.g. `snowgate exec --role ANALYST -- dbt run`");
    };
    let v = call(Request::Token { role }).await?;
    let status = call(Request::Status).await?;
    let url = url::Url::parse(s(&status, "snowflake_url"))
        .context("the broker's Snowflake URL is not a URL")?;
    eprintln!(
        "snowgate: running {program} as {} (grant {} ends {}); sessions it starts can outlive the grant.",
        s(&v, "role"),
        s(&v, "grant"),
        s(&v, "grant_ends_at")
    );
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .env("SNOWFLAKE_AUTHENTICATOR", "oauth")
        .env("SNOWFLAKE_TOKEN", s(&v, "token"))
        .env("SNOWFLAKE_ACCOUNT", s(&status, "account"))
        .env("SNOWFLAKE_ROLE", s(&v, "role"))
        .env("SNOWFLAKE_HOST", url.host_str().unwrap_or(""))
        .env(
            "SNOWFLAKE_PORT",
            url.port_or_known_default().unwrap_or(443).to_string(),
        )
        .env("SNOWFLAKE_PROTOCOL", url.scheme());
    let status = cmd.status().with_context(|| format!("running {program}"))?;
    Ok(match status.code() {
        Some(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

pub async fn connect_info(tool: Option<String>) -> anyhow::Result<ExitCode> {
    let info: snowgate_engine::connect_info::ConnectInfo =
        serde_json::from_value(call(Request::ConnectInfo).await?)
            .context("the broker's connect-info answer")?;
    let role = info.roles.first().cloned().unwrap_or_else(|| "ROLE".into());
    print!(
        "{}",
        crate::connect_info::render(tool.as_deref(), &info, &role)?
    );
    let status = call(Request::Status).await?;
    if let Some(p) = status["gateway"]["problem"].as_str() {
        eprintln!("note: the gateway is not serving: {p}");
    }
    Ok(ExitCode::SUCCESS)
}
