//! The just-in-time access commands: roles, request, grants, approve, deny, revoke, extend,
//! cancel, sessions, audit, token, exec and connect-info. Each is a thin client of the
//! broker's control socket; input is checked here first where the CLI can (durations), and the
//! broker checks the rest, so bad input writes nothing.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _};
use serde::de::DeserializeOwned;
use snowgate_engine::control::answers::{
    ApproverLoginStart, AuditExport, AuditVerification, GrantView, RoleInfo, SessionEnded,
    SessionInfo, TokenAnswer, WhoAmIAnswer,
};
use snowgate_engine::control::{default_socket_path, ControlClient, Request};
use snowgate_engine::paths::ProcessEnv;
use snowgate_engine::BrokerStatus;
use snowgate_grants::{AuditRecord, GrantState, Timestamp};

async fn client() -> anyhow::Result<ControlClient> {
    let socket = default_socket_path(&ProcessEnv).map_err(anyhow::Error::msg)?;
    Ok(ControlClient::connect(&socket).await?)
}

/// Sends `request` on a new connection and reads its answer as the type the request has.
async fn call<T: DeserializeOwned>(request: Request) -> anyhow::Result<T> {
    Ok(client().await?.call_as(&request).await?)
}

/// A duration for a grant: Snowgate's grammar, longer than zero.
pub fn grant_duration(text: &str, flag: &str) -> anyhow::Result<u64> {
    let d = snowgate_engine::duration::parse(text).map_err(|e| anyhow::anyhow!("{flag}: {e}"))?;
    if d.is_zero() {
        bail!("{flag}: a duration must be longer than zero");
    }
    Ok(d.as_secs())
}

/// A moment as RFC 3339, or `-`.
fn at(t: Option<Timestamp>) -> String {
    t.map(Timestamp::to_rfc3339).unwrap_or_else(|| "-".into())
}

/// One line per grant: id, role, state, until, requester, reason.
pub fn render_grant(g: &GrantView) -> String {
    let g = &g.grant;
    let until = match g.state() {
        GrantState::Active => format!("until {}", at(g.expires_at())),
        GrantState::Pending => format!("waiting until {}", g.pending_until().to_rfc3339()),
        _ => format!("ended {}", at(g.ended_at())),
    };
    let who = g
        .requester()
        .email
        .clone()
        .unwrap_or_else(|| g.requester().subject.to_string());
    let role = match g.account() {
        Some(account) => format!("{} ({account})", g.role().as_str()),
        None => g.role().as_str().to_string(),
    };
    format!(
        "{}  {:<12} {:<9} {}  {}  \"{}\"",
        g.id(),
        role,
        g.state().as_str(),
        until,
        who,
        g.reason()
    )
}

pub async fn roles(json: bool) -> anyhow::Result<ExitCode> {
    let roles: Vec<RoleInfo> = call(Request::Roles).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&roles)?);
        return Ok(ExitCode::SUCCESS);
    }
    let several = roles.iter().any(|r| r.account != roles[0].account);
    for r in &roles {
        let account = if several {
            format!("in {}; ", r.account)
        } else {
            String::new()
        };
        let auto = r
            .auto_approve_up_to
            .as_deref()
            .map(|d| format!("; auto-approved up to {d}"))
            .unwrap_or_default();
        let approvers = if r.approver_groups.is_empty() {
            "none".to_string()
        } else {
            r.approver_groups.join(", ")
        };
        println!(
            "{:<12} {account}up to {}; approvers: {approvers}{auto}{}",
            r.name,
            r.max_duration,
            match r.description.trim() {
                "" => String::new(),
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
    let g: GrantView = call(Request::RequestAccess {
        role,
        duration_secs,
        reason,
        ticket,
    })
    .await?;
    let id = g.grant.id().to_string();
    if json && !wait {
        println!("{}", serde_json::to_string_pretty(&g)?);
        return Ok(ExitCode::SUCCESS);
    }
    match g.grant.state() {
        GrantState::Active => eprintln!(
            "Approved by policy: {} is yours until {}.",
            g.grant.role(),
            at(g.grant.expires_at())
        ),
        _ => eprintln!(
            "Requested {} ({id}); waiting for an approver (until {}).",
            g.grant.role(),
            g.grant.pending_until().to_rfc3339()
        ),
    }
    if !wait || g.grant.state() != GrantState::Pending {
        println!("{id}");
        return Ok(ExitCode::SUCCESS);
    }
    let mut client = client().await?;
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let g: GrantView = client
            .call_as(&Request::GrantGet { id: id.clone() })
            .await?;
        match g.grant.state() {
            GrantState::Pending => continue,
            GrantState::Active => {
                eprintln!(
                    "Approved: {} until {}.",
                    g.grant.role(),
                    at(g.grant.expires_at())
                );
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
    let items: Vec<GrantView> = call(Request::Grants { all }).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(ExitCode::SUCCESS);
    }
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
    let status: BrokerStatus = client.call_as(&Request::Status).await?;
    Ok((status.mode == "team").then(|| {
        status
            .team_server
            .unwrap_or_else(|| "the team server".into())
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
        let g: GrantView = client.call_as(&request).await?;
        eprintln!("Done: {}", render_grant(&g));
        return Ok(ExitCode::SUCCESS);
    }
    let start: ApproverLoginStart = client
        .call_as(&Request::ApproverLoginBegin {
            grant_id: Some(id.clone()),
        })
        .await?;
    let login_id = start.login_id;
    let url = start.authorize_url;
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
    let g: GrantView = client.call_as(&request).await?;
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
        let g: GrantView = client
            .call_as(&Request::GrantGet { id: id.clone() })
            .await?;
        let me: Option<WhoAmIAnswer> = client.call_as(&Request::Whoami).await.ok();
        let mine = me
            .as_ref()
            .is_some_and(|w| w.who.subject == g.grant.requester().subject.as_str());
        if mine {
            let g: GrantView = client
                .call_as(&Request::Revoke {
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
    let g: GrantView = call(Request::Extend {
        id,
        by_secs,
        reason,
    })
    .await?;
    if g.awaits_decision {
        eprintln!("Extension requested; waiting for an approver.");
    } else {
        eprintln!(
            "Extended: {} now runs until {}.",
            g.grant.role(),
            at(g.grant.expires_at())
        );
    }
    println!("{}", render_grant(&g));
    Ok(ExitCode::SUCCESS)
}

pub async fn cancel(id: String) -> anyhow::Result<ExitCode> {
    let g: GrantView = call(Request::Cancel { id }).await?;
    println!("{}", render_grant(&g));
    Ok(ExitCode::SUCCESS)
}

pub async fn sessions(json: bool) -> anyhow::Result<ExitCode> {
    let items: Vec<SessionInfo> = call(Request::Sessions).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(ExitCode::SUCCESS);
    }
    if items.is_empty() {
        eprintln!("No sessions are open through the gateway.");
    }
    for x in &items {
        println!(
            "{:<5} {:<20} {:<12} {}  since {}  {} statements",
            x.id,
            format!(
                "{}{}{}",
                x.agent
                    .as_deref()
                    .map(|a| format!("agent {a}: "))
                    .or_else(|| x.tool_secret.as_deref().map(|t| format!("{t}: ")))
                    .unwrap_or_default(),
                x.tool.as_deref().unwrap_or("-"),
                x.process
                    .as_deref()
                    .map(|p| format!(" ({p})"))
                    .unwrap_or_default()
            ),
            match &x.account {
                Some(account) => format!("{} ({account})", x.role),
                None => x.role.clone(),
            },
            x.grant,
            x.since.to_rfc3339(),
            x.statements
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// `snowgate sessions end ID`: closes one gateway session; non-zero if it was not open.
pub async fn end_session(id: String) -> anyhow::Result<ExitCode> {
    let answer: SessionEnded = call(Request::SessionEnd { id }).await?;
    let id = answer.id;
    if answer.ended {
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
    let items: Vec<AuditRecord> = call(Request::Audit { since, limit: None }).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&items)?);
        return Ok(ExitCode::SUCCESS);
    }
    for r in &items {
        println!(
            "{:>5}  {}  {:<24} {:<28} {} {}  {}",
            r.seq,
            r.at.to_rfc3339(),
            r.kind,
            r.actor,
            r.grant_id.as_deref().unwrap_or(""),
            r.role.as_deref().unwrap_or(""),
            r.details
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub async fn audit_verify() -> anyhow::Result<ExitCode> {
    let v: AuditVerification = call(Request::AuditVerify).await?;
    if v.ok {
        println!(
            "The audit log is intact: {} records, anchored outside the database.",
            v.records.unwrap_or(0)
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "The audit log is NOT intact: {}",
            v.problem.as_deref().unwrap_or("the server gave no reason")
        );
        Ok(ExitCode::FAILURE)
    }
}

pub async fn audit_export() -> anyhow::Result<ExitCode> {
    let v: AuditExport = call(Request::AuditExport).await?;
    print!("{}", v.jsonl);
    Ok(ExitCode::SUCCESS)
}

pub async fn token(role: String) -> anyhow::Result<ExitCode> {
    let v: TokenAnswer = call(Request::Token { role }).await?;
    eprintln!(
        "snowgate: a token for {} (grant {}), good until {}. Sessions a tool starts with it are not closed by Snowgate and can outlive the grant (it ends {}).",
        v.role,
        v.grant,
        v.token_expires_at.to_rfc3339(),
        at(v.grant_ends_at)
    );
    // The one place a token is printed: the person asked for it.
    println!("{}", v.token.expose());
    Ok(ExitCode::SUCCESS)
}

pub async fn exec(role: String, command: Vec<String>) -> anyhow::Result<ExitCode> {
    let Some((program, args)) = command.split_first() else {
        bail!("give the command to run after `--`, e.g. `snowgate exec --role ANALYST -- dbt run`");
    };
    let v: TokenAnswer = call(Request::Token { role }).await?;
    let status: BrokerStatus = call(Request::Status).await?;
    let url = url::Url::parse(&status.snowflake_url)
        .context("the broker's Snowflake URL is not a URL")?;
    eprintln!(
        "snowgate: running {program} as {} (grant {} ends {}); sessions it starts can outlive the grant.",
        v.role,
        v.grant,
        at(v.grant_ends_at)
    );
    let mut cmd = std::process::Command::new(program);
    cmd.args(args)
        .env("SNOWFLAKE_AUTHENTICATOR", "oauth")
        .env("SNOWFLAKE_TOKEN", v.token.expose())
        .env("SNOWFLAKE_ACCOUNT", &status.account)
        .env("SNOWFLAKE_ROLE", &v.role)
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

pub async fn connect_info(tool: Option<String>, role: Option<String>) -> anyhow::Result<ExitCode> {
    let info: snowgate_engine::connect_info::ConnectInfo = call(Request::ConnectInfo).await?;
    let role = match role {
        Some(asked) => info
            .roles
            .iter()
            .find(|r| r.eq_ignore_ascii_case(&asked))
            .cloned()
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no role {asked} is configured; the roles are {}",
                    info.roles.join(", ")
                )
            })?,
        None => {
            // The role of the grant that works now (the soonest to end, when there are
            // several), else the first configured one.
            // Signed out, there are no grants to go by.
            let now = Timestamp::from_system_time(std::time::SystemTime::now());
            let grants: Vec<GrantView> = call(Request::Grants { all: false })
                .await
                .unwrap_or_default();
            grants
                .iter()
                .filter(|g| g.grant.is_usable_at(now))
                .min_by_key(|g| g.grant.expires_at())
                .map(|g| g.grant.role().as_str().to_string())
                .or_else(|| info.roles.first().cloned())
                .unwrap_or_else(|| "ROLE".into())
        }
    };
    print!(
        "{}",
        crate::connect_info::render(tool.as_deref(), &info, &role)?
    );
    let status: BrokerStatus = call(Request::Status).await?;
    if let Some(p) = &status.gateway.problem {
        eprintln!("note: the gateway is not serving: {p}");
    }
    Ok(ExitCode::SUCCESS)
}
