//! Follows the broker so nobody has to poll it.
//!
//! Two tasks per running broker listen to its events:
//! - [`identity_events`]: each change of sign-in state updates the tray and sends the new
//!   status to the window as a [`STATUS_EVENT`] and a [`CHANGED_EVENT`] `identity`; a
//!   sign-out the person did not ask for (the IdP refused the refresh token) also shows a
//!   notification with the engine's sentence.
//! - [`engine_events`]: each grant event sends [`CHANGED_EVENT`] `grants`, refreshes the tray
//!   and shows the notification the engine's [`snowgate_engine::notices`] decides on, if any;
//!   a gateway session that opens or ends sends [`CHANGED_EVENT`] `sessions`; a tool that
//!   logged in for a role with no grant (the engine's `tool_asks`, once per tool and role)
//!   shows the notification [`snowgate_engine::notices::tool_ask_notice`] words and sends
//!   the new status, whose `tool_asks` the window offers a one-click request for.
//!
//! Commands that change the state without an engine event (a sign-in starts or is cancelled,
//! the config is reloaded) call [`publish`] themselves.

use std::sync::Arc;

use serde::Serialize;
use snowgate_engine::identity::{IdentityEvent, SignOutReason};
use snowgate_engine::{Broker, BrokerStatus};
use snowgate_gateway::GatewayEvent;
use tauri::{AppHandle, Emitter, Manager};
use tauri_plugin_notification::NotificationExt;
use tokio::sync::broadcast::{error::RecvError, Receiver};
use tokio::sync::Notify;

use crate::broker::{BrokerHost, StartupError};
use crate::tray;

/// The event the window listens to; its payload is a [`StatusUpdate`].
pub const STATUS_EVENT: &str = "broker://status";

/// Tells the window that something it may show changed; its payload is a [`Changed`].
pub const CHANGED_EVENT: &str = "snowgate://changed";

/// What changed, as `{ "what": "grants" | "sessions" | "identity" }`: the window reloads
/// what it shows of that.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Changed {
    pub what: What,
}

/// The part of the engine that changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum What {
    Grants,
    Sessions,
    Identity,
}

/// Sends [`CHANGED_EVENT`] to the window.
pub fn changed(app: &AppHandle, what: What) {
    if let Err(e) = app.emit(CHANGED_EVENT, Changed { what }) {
        tracing::warn!(error = %e, "cannot tell the window what changed");
    }
}

/// The broker's status as the window receives it: `{ "ok": BrokerStatus }` or
/// `{ "error": { kind, message } }`, the same two outcomes as the `broker_status` command.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusUpdate<'a> {
    Ok(&'a BrokerStatus),
    Error(&'a StartupError),
}

impl<'a> From<&'a Result<BrokerStatus, StartupError>> for StatusUpdate<'a> {
    fn from(status: &'a Result<BrokerStatus, StartupError>) -> StatusUpdate<'a> {
        match status {
            Ok(status) => StatusUpdate::Ok(status),
            Err(problem) => StatusUpdate::Error(problem),
        }
    }
}

/// Reads the broker's status and shows it in the tray and the window.
pub async fn publish(app: &AppHandle) {
    let status = app.state::<BrokerHost>().status().await;
    show(app, &status);
}

/// Shows `status` in the tray and sends it to the window.
pub fn show(app: &AppHandle, status: &Result<BrokerStatus, StartupError>) {
    tray::show(app);
    if let Err(e) = app.emit(STATUS_EVENT, StatusUpdate::from(status)) {
        tracing::warn!(error = %e, "cannot send the status to the window");
    }
}

/// Runs for as long as `broker` does (the owner aborts it): turns identity events into tray
/// updates, status events and notifications. `identity_changed` says the broker may hold a
/// new identity (a session-only sign-in replaces it), so the task subscribes again.
pub async fn identity_events(app: AppHandle, broker: Arc<Broker>, identity_changed: Arc<Notify>) {
    loop {
        // Hold the receiver only: keeping the identity itself would keep a replaced one alive.
        let mut events = broker.identity().map(|identity| identity.subscribe());
        show(&app, &Ok(broker.status()));
        loop {
            let event = tokio::select! {
                event = next(&mut events) => event,
                () = identity_changed.notified() => break,
            };
            match event {
                Ok(IdentityEvent::TokensRefreshed { .. }) => {}
                Ok(event) => {
                    tracing::debug!(?event, "identity event");
                    changed(&app, What::Identity);
                    if let IdentityEvent::SignedOut {
                        reason: SignOutReason::Revoked,
                        message,
                    } = &event
                    {
                        notify(&app, "You were signed out", message);
                    }
                    show(&app, &Ok(broker.status()));
                }
                Err(RecvError::Lagged(_)) => {
                    changed(&app, What::Identity);
                    show(&app, &Ok(broker.status()));
                }
                // The identity was dropped because the broker replaced it: follow the new one.
                Err(RecvError::Closed) => break,
            }
        }
    }
}

/// Runs for as long as `broker` does (the owner aborts it): turns grant events into
/// [`CHANGED_EVENT`]s, tray refreshes and notifications, and gateway sessions opening and
/// ending into [`CHANGED_EVENT`]s.
pub async fn engine_events(app: AppHandle, broker: Arc<Broker>) {
    let mut grants = broker.grants().ok().map(|g| g.subscribe());
    let mut gateway = broker.gateway().map(|g| g.subscribe());
    let mut asks = Some(broker.tool_asks().subscribe());
    loop {
        tokio::select! {
            event = next(&mut grants) => {
                match event {
                    Ok(event) => {
                        tracing::debug!(grant = %event.grant, event = event.kind.name(), "grant event");
                        if let Some(notice) = broker.grant_ops().notice_for(&event).await {
                            notify(&app, &notice.title, &notice.body);
                        }
                    }
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => grants = None,
                }
                changed(&app, What::Grants);
                tray::show(&app);
            }
            event = next(&mut gateway) => match event {
                Ok(GatewayEvent::SessionOpened(_) | GatewayEvent::SessionClosed { .. })
                | Err(RecvError::Lagged(_)) => changed(&app, What::Sessions),
                Ok(_) => {}
                Err(RecvError::Closed) => gateway = None,
            },
            ask = next(&mut asks) => {
                match ask {
                    Ok(ask) => {
                        let notice = broker.tool_ask_notice(&ask);
                        notify(&app, &notice.title, &notice.body);
                    }
                    Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => asks = None,
                }
                show(&app, &Ok(broker.status()));
            }
        }
    }
}

/// The next event, or never when there is nothing to listen to (no identity because the
/// keyring could not be used, no ledger, no gateway).
async fn next<T: Clone>(events: &mut Option<Receiver<T>>) -> Result<T, RecvError> {
    match events {
        Some(events) => events.recv().await,
        None => std::future::pending().await,
    }
}

/// Shows a desktop notification; failing to show one is logged, not fatal.
pub fn notify(app: &AppHandle, title: &str, body: &str) {
    let sent = app
        .notification()
        .builder()
        .title(title)
        .body(capitalized(body))
        .show();
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot show a notification");
    }
}

/// The engine writes sentences to follow a colon ("your sign-in was revoked…"); a
/// notification body starts one.
fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_update_has_the_shape_the_window_reads() {
        let problem = StartupError::AlreadyRunning {
            message: "stop it".into(),
        };
        assert_eq!(
            serde_json::to_value(StatusUpdate::from(&Err(problem))).unwrap(),
            serde_json::json!({ "error": { "kind": "already_running", "message": "stop it" } })
        );
    }

    #[test]
    fn a_change_names_what_changed() {
        for (what, name) in [
            (What::Grants, "grants"),
            (What::Sessions, "sessions"),
            (What::Identity, "identity"),
        ] {
            assert_eq!(
                serde_json::to_value(Changed { what }).unwrap(),
                serde_json::json!({ "what": name })
            );
        }
    }

    #[test]
    fn notification_bodies_start_with_a_capital() {
        assert_eq!(
            capitalized("your sign-in was revoked or reused; sign in again"),
            "Your sign-in was revoked or reused; sign in again"
        );
        assert_eq!(capitalized(""), "");
    }
}
