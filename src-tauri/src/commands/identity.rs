//! Signing in and out: the browser and device sign-ins, logout and whoami.
//!
//! Each command forwards to the running [`Broker`](snowgate_engine::Broker), the same calls
//! `snowgate login`, `logout` and `whoami` make through the control socket, and errors come
//! back as the engine's `{ kind, message }`. The shell adds only what a desktop needs: it
//! opens the sign-in page in the system browser, and it can abandon a sign-in the person
//! cancelled (the engine abandons a sign-in whose wait is dropped).

use serde::Serialize;
use snowgate_engine::broker::LoginStart;
use snowgate_engine::control::{ControlError, Handler, Request};
use tauri::{AppHandle, State};

use super::running;
pub use super::sign_ins::SignInsUnderWay;
use crate::broker::BrokerHost;
use crate::follow;

/// How a sign-in started, as the window receives it: the engine's [`LoginStart`]
/// (`{ kind: "browser", login_id, authorize_url }` or `{ kind: "device", login_id, user_code,
/// verification_uri, verification_uri_complete, expires_in_secs }`), plus, for the browser
/// kind, why the browser could not be opened, if it could not.
#[derive(Debug, Serialize)]
pub struct LoginStarted {
    #[serde(flatten)]
    start: LoginStart,
    #[serde(skip_serializing_if = "Option::is_none")]
    browser_error: Option<String>,
}

/// Starts a browser sign-in (and opens the page in the system browser, honouring `$BROWSER`)
/// or, with `device`, a device sign-in. `session_only` keeps the tokens in memory, for when
/// the OS keyring can't be used.
#[tauri::command]
pub async fn login_begin(
    app: AppHandle,
    host: State<'_, BrokerHost>,
    device: bool,
    session_only: bool,
) -> Result<LoginStarted, ControlError> {
    let broker = running(&host).await?;
    let start = broker.login_begin(device, session_only).await;
    if session_only {
        // A session-only sign-in gives the broker a new identity to follow.
        host.identity_changed().await;
    }
    follow::publish(&app).await;
    let start = start?;
    let browser_error = match &start {
        LoginStart::Browser { authorize_url, .. } => open_browser(authorize_url),
        LoginStart::Device { .. } => None,
    };
    Ok(LoginStarted {
        start,
        browser_error,
    })
}

/// Waits for a sign-in started with [`login_begin`] and returns who signed in (the engine's
/// profile: subject, email, name, groups; never a token). Ends early with a `cancelled` error
/// when [`login_cancel`] is called for it.
#[tauri::command]
pub async fn login_wait(
    app: AppHandle,
    host: State<'_, BrokerHost>,
    under_way: State<'_, SignInsUnderWay>,
    login_id: String,
) -> Result<snowgate_engine::identity::Profile, ControlError> {
    let broker = running(&host).await?;
    let result = under_way
        .until_cancelled(&login_id, broker.login_wait(&login_id))
        .await;
    follow::publish(&app).await;
    result
}

/// Abandons a sign-in the window is waiting for, the user's or an approver's: the waiting
/// [`login_wait`] (or `approve`, `deny`, `revoke`) ends with a `cancelled` error, and the
/// engine closes the sign-in's loopback listener or stops polling for the device code.
#[tauri::command]
pub async fn login_cancel(
    under_way: State<'_, SignInsUnderWay>,
    login_id: String,
) -> Result<(), ControlError> {
    under_way.cancel(&login_id);
    Ok(())
}

/// Signs out: revokes the sign-in at the IdP, deletes it from the OS keyring and drops every
/// token. Returns `{ was_signed_in, revoked, message }`, `message` being the sentence to show.
#[tauri::command]
pub async fn logout(
    app: AppHandle,
    host: State<'_, BrokerHost>,
) -> Result<serde_json::Value, ControlError> {
    let report = sign_out(&host).await;
    follow::publish(&app).await;
    report
}

/// Who is signed in: subject, email, name, groups, issuer, and when tokens expire (never a
/// token value).
#[tauri::command]
pub async fn whoami(host: State<'_, BrokerHost>) -> Result<serde_json::Value, ControlError> {
    running(&host).await?.handle(Request::Whoami).await
}

/// Logout as the CLI's `snowgate logout` does it; also used by the tray's "Sign out".
pub async fn sign_out(host: &BrokerHost) -> Result<serde_json::Value, ControlError> {
    running(host).await?.handle(Request::Logout).await
}

/// Opens `url` in the system browser (honouring `$BROWSER`); returns why it could not, for the
/// window to show the link instead. Also used for the approver's sign-in.
pub(crate) fn open_browser(url: &str) -> Option<String> {
    match opener::open_browser(url) {
        Ok(()) => None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot open a browser for a sign-in page");
            Some(format!("Snowgate could not open a browser: {e}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::StartupError;
    use crate::commands::not_running;

    #[test]
    fn a_browser_start_carries_the_engine_fields_and_the_browser_error() {
        let started = LoginStarted {
            start: LoginStart::Browser {
                login_id: "abc".into(),
                authorize_url: "https://idp.example.com/auth?x=1".into(),
            },
            browser_error: Some("no browser".into()),
        };
        assert_eq!(
            serde_json::to_value(started).unwrap(),
            serde_json::json!({
                "kind": "browser",
                "login_id": "abc",
                "authorize_url": "https://idp.example.com/auth?x=1",
                "browser_error": "no browser",
            })
        );
    }

    #[test]
    fn a_device_start_has_no_browser_error_field() {
        let started = LoginStarted {
            start: LoginStart::Device {
                login_id: "abc".into(),
                user_code: "WDJB-MJHT".into(),
                verification_uri: "https://idp.example.com/device".into(),
                verification_uri_complete: None,
                expires_in_secs: 600,
            },
            browser_error: None,
        };
        let json = serde_json::to_value(started).unwrap();
        assert_eq!(json["kind"], "device");
        assert_eq!(json["user_code"], "WDJB-MJHT");
        assert_eq!(json["expires_in_secs"], 600);
        assert!(json.get("browser_error").is_none());
    }

    #[test]
    fn a_broker_that_did_not_start_answers_with_the_reason() {
        let e = not_running(StartupError::Config {
            message: "line 3: unknown key".into(),
        });
        assert_eq!(
            serde_json::to_value(e).unwrap(),
            serde_json::json!({ "kind": "unavailable", "message": "line 3: unknown key" })
        );
    }
}
