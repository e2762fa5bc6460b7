//! `snowgate login`: start a sign-in at the broker, show the person what to do, wait for it.

use std::process::ExitCode;

use snowgate_engine::broker::LoginStart;
use snowgate_engine::control::{ControlClient, Request};
use snowgate_engine::identity::Profile;
use snowgate_engine::paths::ProcessEnv;

pub async fn run(device: bool, no_browser: bool, session_only: bool) -> anyhow::Result<ExitCode> {
    let socket =
        snowgate_engine::control::default_socket_path(&ProcessEnv).map_err(anyhow::Error::msg)?;
    let mut client = ControlClient::connect(&socket).await?;
    let start: LoginStart = client
        .call_as(&Request::LoginBegin {
            device,
            session_only,
        })
        .await?;
    let login_id = match start {
        LoginStart::Browser {
            login_id,
            authorize_url,
        } => {
            if no_browser {
                eprintln!("Open this URL in a browser to sign in:");
                println!("{authorize_url}");
            } else if let Err(e) = opener::open_browser(&authorize_url) {
                eprintln!("Could not open a browser ({e}). Open this URL to sign in:");
                println!("{authorize_url}");
            } else {
                eprintln!("Your browser opened the sign-in page. Waiting for you to finish there…");
            }
            login_id
        }
        LoginStart::Device {
            login_id,
            user_code,
            verification_uri,
            verification_uri_complete,
            expires_in_secs,
        } => {
            eprintln!("To sign in, open {verification_uri} on any device and enter the code:");
            println!("{user_code}");
            if let Some(complete) = verification_uri_complete {
                eprintln!("(or open {complete})");
            }
            eprintln!(
                "The code is good for {}. Waiting…",
                snowgate_engine::duration::format(std::time::Duration::from_secs(expires_in_secs))
            );
            login_id
        }
    };
    let profile: Profile = client.call_as(&Request::LoginWait { login_id }).await?;
    let who = profile.email.as_deref().unwrap_or(&profile.subject);
    eprintln!(
        "Signed in as {who}{}.",
        if profile.groups.is_empty() {
            String::new()
        } else {
            format!(" (groups: {})", profile.groups.join(", "))
        }
    );
    Ok(ExitCode::SUCCESS)
}
