//! `snowgate-rig`: the test rig's parts for the shell.
//!
//! `snowgate-rig up` starts the identity provider and the Snowflake front on free loopback
//! ports, writes a Snowgate config that points at them, prints the facts a script needs as
//! `KEY=value` lines, and runs until it is interrupted; then every part stops.
//! `snowgate-rig login` drives the IdP's login pages for an authorize URL, as a headless
//! browser would.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use snowgate_rig::idp::{Idp, IdpOptions, CLIENT_ID};
use snowgate_rig::snowflake::{Snowflake, SnowflakeOptions};
use snowgate_rig::TestCa;

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

fn dev_config(idp: &Idp, snowflake: &Snowflake, ca: &TestCa, gateway: &str) -> String {
    format!(
        r#"# Written by `snowgate-rig up`: Snowgate against the rig's local IdP and Snowflake.
[identity]
issuer = "{issuer}"
client_id = "{CLIENT_ID}"
scopes = ["openid", "profile", "email", "groups", "offline_access"]
groups_claim = "groups"
snowflake_audience = "{audience}"
extra_ca_file = "{ca}"
device_poll_interval = "1s"

[snowflake]
account = "snowgate-dev"
url = "{snowflake}"
user_claim = "sub"

[gateway]
listen = "{gateway}"

[[roles]]
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
"#,
        issuer = idp.issuer(),
        audience = idp.options().snowflake_audience,
        ca = ca.ca_file.display(),
        snowflake = snowflake.url(),
    )
}

async fn up(dir: PathBuf, access_ttl: u64, gateway: String) -> Result<()> {
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = dir.canonicalize()?;
    let ca = TestCa::generate(&dir.join("tls"))?;
    let idp = Idp::start(
        &ca,
        IdpOptions {
            access_token_ttl: Duration::from_secs(access_ttl),
            roles: ROLES.iter().map(|r| r.to_string()).collect(),
            ..IdpOptions::default()
        },
    )
    .await?;
    let snowflake = Snowflake::start(SnowflakeOptions::trusting(&idp)).await?;
    let config = dir.join("config.toml");
    std::fs::write(&config, dev_config(&idp, &snowflake, &ca, &gateway))?;
    std::fs::write(dir.join("issuer"), idp.issuer())?;
    println!("RIG_IDP_ISSUER={}", idp.issuer());
    println!("RIG_CA_FILE={}", ca.ca_file.display());
    println!("RIG_SNOWFLAKE_URL={}", snowflake.url());
    println!("RIG_SNOWGATE_CONFIG={}", config.display());
    println!("RIG READY");
    wait_for_signal().await;
    eprintln!("snowgate-rig: stopping");
    snowflake.stop().await;
    drop(idp);
    Ok(())
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
        } => up(dir, access_ttl, gateway).await,
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
