//! `snowgate-rig`: the test rig's parts for the shell.
//!
//! `snowgate-rig up` starts the identity provider and the Snowflake front on free loopback
//! ports, writes a Snowgate config that points at them, prints the facts a script needs as
//! `KEY=value` lines, and runs until it is interrupted; then every part stops. With `--team` it
//! also starts PostgreSQL, the team server (`snowgate serve`) on it and a second Snowflake front
//! that trusts only the tokens the server mints, and writes a team-mode desktop config for each
//! test user (`config-team-<user>.toml`, each with a gateway port of its own).
//! `snowgate-rig login` drives the IdP's login pages for an authorize URL, as a headless
//! browser would.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use snowgate_rig::idp::{Idp, IdpOptions, IdpProfile, CLIENT_ID};
use snowgate_rig::postgres::Postgres;
use snowgate_rig::snowflake::{Snowflake, SnowflakeOptions};
use snowgate_rig::team::{self, TeamServer, TeamServerOptions};
use snowgate_rig::{free_port, TestCa};

/// The Snowgate test rig: a real OpenID provider and a Snowflake front on loopback.
#[derive(Debug, Parser)]
#[command(name = "snowgate-rig", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the IdP and the Snowflake front, write a Snowgate config for them, and run until
    /// interrupted
    Up {
        /// Where the rig keeps its CA, IdP state and the Snowgate config it writes
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Access-token lifetime at the IdP
        #[arg(long, default_value = "300", value_name = "SECONDS")]
        access_ttl: u64,
        /// The gateway address written into the Snowgate config
        #[arg(long, default_value = "127.0.0.1:8765")]
        gateway: String,
        /// Which identity provider the IdP behaves like: strict (oidc-provider's defaults),
        /// entra, okta, auth0, keycloak or google (team mode only); see docs/idp/
        #[arg(long, default_value = "strict", value_name = "PROFILE")]
        profile: IdpProfile,
        /// Also start PostgreSQL, the team server and a Snowflake front that trusts it, and
        /// write a team-mode config for each test user (config-team-<user>.toml)
        #[arg(long)]
        team: bool,
        /// The `snowgate` binary that serves as the team server (default: the one next to
        /// this rig binary)
        #[arg(long, value_name = "PATH", requires = "team")]
        snowgate: Option<PathBuf>,
        /// Serve the IdP's HTTPS with this directory's ca.pem, server.pem and server-key.pem
        /// (a CA already trusted, and the leaf for 127.0.0.1 and localhost it signed) instead
        /// of a fresh throwaway CA
        #[arg(long, value_name = "DIR")]
        tls_from: Option<PathBuf>,
    },
    /// Sign in at a running rig IdP for an authorize URL, as USER, and print the redirect URL
    /// (or follow it with --follow)
    Login {
        /// The rig directory given to `up`
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// alice, bob, carol or mallory
        #[arg(long, default_value = "alice")]
        user: String,
        /// GET the final redirect (e.g. Snowgate's loopback callback) instead of printing it
        #[arg(long)]
        follow: bool,
        /// The authorize URL that Snowgate opened
        url: String,
    },
    /// Complete a device-flow sign-in at a running rig IdP for a user code
    Device {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        #[arg(long, default_value = "alice")]
        user: String,
        /// The code Snowgate showed
        user_code: String,
    },
}

const ROLES: [&str; 3] = ["ANALYST", "ENGINEER", "READONLY"];

/// The rig's users, who each get a team-mode config.
const USERS: [&str; 4] = ["alice", "bob", "carol", "mallory"];

/// The roles and their policy: the solo config's, and the team server's.
const ROLES_TOML: &str = r#"[[roles]]
name = "ANALYST"
description = "Query the analytics marts"
max_duration = "8h"
approvers = ["managers"]
auto_approve_up_to = "1h"

[[roles]]
name = "ENGINEER"
description = "Change data pipelines"
max_duration = "4h"
approvers = ["managers"]
approvals_required = 1
extensions = true

[[roles]]
name = "READONLY"
description = "Read-only access to shared data"
max_duration = "12h"
auto_approve_up_to = "12h"
"#;

/// [`ROLES_TOML`] with the approver groups named the way `idp`'s provider names them.
fn roles_toml(idp: &Idp) -> String {
    ROLES_TOML.replace(
        "approvers = [\"managers\"]",
        &format!("approvers = [\"{}\"]", idp.group_name("managers")),
    )
}

fn dev_config(idp: &Idp, snowflake: &Snowflake, ca: &TestCa, gateway: &str) -> String {
    format!(
        r#"# Written by `snowgate-rig up`: Snowgate against the rig's local IdP ({profile} profile) and Snowflake.
[identity]
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
{provider}snowflake_audience = "{audience}"
extra_ca_file = "{ca}"
device_poll_interval = "1s"

[snowflake]
account = "snowgate-dev"
url = "{snowflake}"

[gateway]
listen = "{gateway}"

{roles}"#,
        profile = idp.profile(),
        provider = idp.snowgate_identity_lines(),
        issuer = idp.issuer(),
        audience = idp.options().snowflake_audience,
        ca = ca.ca_file.display(),
        snowflake = snowflake.url(),
        roles = roles_toml(idp),
    )
}

/// A team-mode desktop config: the same IdP under its provider preset, the team front, a
/// gateway of its own, and the team server, whose roles and policy apply (so it lists no
/// `[[roles]]`). Whoever signs in is the user.
fn team_config(idp: &Idp, team: &Team, ca: &TestCa, gateway: &str) -> String {
    team::desktop_config(
        idp,
        ca,
        team.server.url(),
        &team.snowflake.url(),
        "snowgate-dev",
        gateway,
    )
}

/// The parts of team mode: the team server on its PostgreSQL, and a Snowflake front whose
/// security integration trusts only the server's JWKS.
struct Team {
    server: TeamServer,
    snowflake: Snowflake,
    _postgres: Postgres,
}

/// Starts the team server (with `bin`, files in `dir`) on `postgres`, trusting `idp`, and the
/// Snowflake front that trusts the server.
async fn start_team(
    bin: &Path,
    dir: &Path,
    ca: &TestCa,
    idp: &Idp,
    postgres: Postgres,
) -> Result<Team> {
    // The rig's IdP knows one API: its access tokens for it are what the server accepts, or,
    // from an ID-token-only provider, ID tokens exchanged for the server's sessions, with the
    // rig's managers as the approvers' group.
    let minting_audience = SnowflakeOptions::default().audience;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let session_key = dir.join("session.key");
    team::generate_session_key(&session_key).await?;
    let options = TeamServerOptions::for_idp(
        idp,
        &postgres.url(),
        &minting_audience,
        &roles_toml(idp),
        &session_key,
        &[("managers", &["bob", "carol"])],
    );
    let mut server = TeamServer::prepare(bin, dir, ca, &options).await?;
    let front = SnowflakeOptions {
        jwks_urls: vec![server.jwks_url()],
        issuers: vec![server.url().to_string()],
        audience: minting_audience,
        ca_file: Some(ca.ca_file.clone()),
        ..SnowflakeOptions::default()
    };
    let (launched, snowflake) = tokio::join!(server.launch(), Snowflake::start(front));
    launched?;
    Ok(Team {
        server,
        snowflake: snowflake?,
        _postgres: postgres,
    })
}

/// `n` distinct free loopback ports.
fn free_ports(n: usize) -> Result<Vec<u16>> {
    let mut ports: Vec<u16> = Vec::with_capacity(n);
    while ports.len() < n {
        let port = free_port()?;
        if !ports.contains(&port) {
            ports.push(port);
        }
    }
    Ok(ports)
}

async fn up(
    dir: PathBuf,
    access_ttl: u64,
    gateway: String,
    profile: IdpProfile,
    team: Option<PathBuf>,
    tls_from: Option<PathBuf>,
) -> Result<()> {
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    if let Some(bin) = &team {
        if !bin.is_file() {
            anyhow::bail!(
                "no snowgate binary at {} for the team server (build it with `cargo build -p snowgate-cli`, or pass --snowgate PATH)",
                bin.display()
            );
        }
    }
    let ca = match &tls_from {
        Some(from) => TestCa::copy_from(from, &dir.join("tls"))?,
        None => TestCa::generate(&dir.join("tls"))?,
    };
    let idp_options = IdpOptions {
        profile,
        access_token_ttl: Duration::from_secs(access_ttl),
        roles: ROLES.iter().map(|r| r.to_string()).collect(),
        ..IdpOptions::default()
    };
    let (idp, postgres) = tokio::join!(Idp::start(&ca, idp_options), async {
        match &team {
            Some(_) => Postgres::start().await.map(Some),
            None => Ok(None),
        }
    });
    let (idp, postgres) = (idp?, postgres?);
    let team_dir = dir.join("team");
    let (snowflake, team) =
        tokio::join!(Snowflake::start(SnowflakeOptions::trusting(&idp)), async {
            match (&team, postgres) {
                (Some(bin), Some(postgres)) => start_team(bin, &team_dir, &ca, &idp, postgres)
                    .await
                    .map(Some),
                _ => Ok(None),
            }
        });
    let (snowflake, team) = (snowflake?, team?);
    let config = dir.join("config.toml");
    if idp.profile_facts().solo {
        std::fs::write(&config, dev_config(&idp, &snowflake, &ca, &gateway))?;
    }
    std::fs::write(dir.join("issuer"), idp.issuer())?;
    println!("RIG_IDP_ISSUER={}", idp.issuer());
    println!("RIG_IDP_PROFILE={}", idp.profile());
    println!("RIG_CA_FILE={}", ca.ca_file.display());
    println!("RIG_SNOWFLAKE_URL={}", snowflake.url());
    if idp.profile_facts().solo {
        println!("RIG_SNOWGATE_CONFIG={}", config.display());
    }
    if let Some(team) = &team {
        for (user, port) in USERS.iter().zip(free_ports(USERS.len())?) {
            let path = dir.join(format!("config-team-{user}.toml"));
            let gateway = format!("127.0.0.1:{port}");
            std::fs::write(&path, team_config(&idp, team, &ca, &gateway))?;
            println!("RIG_TEAM_CONFIG_{}={}", user.to_uppercase(), path.display());
        }
        println!("RIG_TEAM_SERVER={}", team.server.url());
        println!("RIG_TEAM_SERVER_LOG={}", team.server.log_file().display());
        println!("RIG_TEAM_SNOWFLAKE_URL={}", team.snowflake.url());
    }
    println!("RIG READY");
    wait_for_signal().await;
    eprintln!("snowgate-rig: stopping");
    if let Some(mut team) = team {
        team.server.stop().await;
        team.snowflake.stop().await;
    }
    snowflake.stop().await;
    drop(idp);
    Ok(())
}

/// The `snowgate` binary next to this one (both are built into the same target dir).
fn snowgate_next_to_rig() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|dir| dir.join("snowgate")))
        .unwrap_or_else(|| PathBuf::from("snowgate"))
}

async fn attach(dir: &std::path::Path) -> Result<Idp> {
    let issuer = std::fs::read_to_string(dir.join("issuer")).with_context(|| {
        format!(
            "no rig runs with directory {} (start `snowgate-rig up --dir {}` first)",
            dir.display(),
            dir.display()
        )
    })?;
    Idp::attach(issuer.trim(), &dir.join("tls/ca.pem")).await
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Up {
            dir,
            access_ttl,
            gateway,
            profile,
            team,
            snowgate,
            tls_from,
        } => {
            let team = team.then(|| snowgate.unwrap_or_else(snowgate_next_to_rig));
            up(dir, access_ttl, gateway, profile, team, tls_from).await
        }
        Command::Login {
            dir,
            user,
            follow,
            url,
        } => {
            async {
                let idp = attach(&dir).await?;
                if follow {
                    let (status, body) = idp.complete_login_and_follow(&url, &user).await?;
                    println!("{status}");
                    eprintln!("{body}");
                } else {
                    println!("{}", idp.complete_login(&url, &user).await?);
                }
                Ok(())
            }
            .await
        }
        Command::Device {
            dir,
            user,
            user_code,
        } => {
            async {
                let idp = attach(&dir).await?;
                idp.complete_device(&user_code, &user).await
            }
            .await
        }
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("snowgate-rig: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
