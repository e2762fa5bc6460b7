//! The tray icon: the app's face while its window is hidden.
//!
//! [`crate::tray_menu`] decides the icon and the menu from the broker's status and the
//! signed-in user's grants; this module renders that model and acts on clicks. The menu is
//! rebuilt whole on each refresh, which happens on every identity, grant and session event
//! (see [`crate::follow`]) and at least once a minute, so the countdowns stay true.
//! "Sign in" opens the window on the sign-in view, which starts the browser sign-in;
//! "Sign out" signs out at once, as `snowgate logout` does; "Request access…" and
//! "Approvals (N)" open the window on those views; "Copy connection settings" puts host, port,
//! account and user on the clipboard.
//! On Linux the icon goes through libayatana-appindicator, which shows a menu on click but
//! sends no click events, so everything the tray does must be reachable from its menu.

use std::time::{Duration, SystemTime};

use snowgate_engine::{Broker, BrokerStatus};
use snowgate_grants::{Grant, GrantState};
use tauri::image::Image;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Manager, Wry};
use tauri_plugin_clipboard_manager::ClipboardExt;

use crate::broker::{BrokerHost, StartupError};
use crate::commands::identity::sign_out;
use crate::tray_menu::{self, Action, Entry, GrantsView, LiveGrant, TrayModel, TrayState};
use crate::{follow, window};

impl TrayState {
    fn icon(self) -> Image<'static> {
        match self {
            TrayState::SignedOut => tauri::include_image!("../icons/tray/signed-out-64.png"),
            TrayState::Idle => tauri::include_image!("../icons/tray/idle-64.png"),
            TrayState::Active => tauri::include_image!("../icons/tray/active-64.png"),
            TrayState::Attention => tauri::include_image!("../icons/tray/attention-64.png"),
            TrayState::Error => tauri::include_image!("../icons/tray/error-64.png"),
        }
    }
}

/// The tray icon. Managed as state.
pub struct Tray {
    icon: TrayIcon<Wry>,
    /// What is shown. Held through a refresh, so a slow one never paints over a newer one;
    /// an unchanged model is not rendered again, so menu item ids stay put between changes
    /// (a panel that clicks an id it read a moment ago still hits the same item).
    shown: tokio::sync::Mutex<Option<TrayModel>>,
}

/// Creates the tray icon for the given status (the grants follow with the first refresh).
pub fn create(app: &AppHandle, status: &Result<BrokerStatus, StartupError>) -> tauri::Result<Tray> {
    let model = tray_menu::model(status, &GrantsView::default(), SystemTime::now());
    let mut builder = TrayIconBuilder::with_id("snowgate");
    // libayatana loads the icon from a file. The default folder, /tmp/tray-icon, belongs to
    // whichever user made it first; a per-user folder keeps a second user's tray working.
    if let Ok(cache) = app.path().app_cache_dir() {
        builder = builder.temp_dir_path(cache.join("tray"));
    }
    let icon = builder
        .icon(model.state.icon())
        .tooltip("Snowgate")
        .menu(&menu(app, &model)?)
        .show_menu_on_left_click(true)
        .on_menu_event(|app, event| clicked(app, Action::from_id(event.id.as_ref())))
        .build(app)?;
    Ok(Tray {
        icon,
        shown: tokio::sync::Mutex::new(Some(model)),
    })
}

/// Builds the menu for a model. Informational lines get ids of their own, so each item's id
/// is unique.
fn menu(app: &AppHandle, model: &TrayModel) -> tauri::Result<Menu<Wry>> {
    let menu = Menu::new(app)?;
    for (n, entry) in model.entries.iter().enumerate() {
        match entry {
            Entry::Separator => menu.append(&PredefinedMenuItem::separator(app)?)?,
            Entry::Item {
                label,
                enabled,
                action,
            } => {
                let id = match action {
                    Action::None => format!("{}-{n}", action.id()),
                    _ => action.id().to_string(),
                };
                menu.append(&MenuItem::with_id(app, id, label, *enabled, None::<&str>)?)?
            }
        }
    }
    Ok(menu)
}

fn clicked(app: &AppHandle, action: Action) {
    match action {
        Action::None => {}
        Action::Open => window::reveal(app),
        Action::RequestAccess => window::navigate(app, "request"),
        Action::Approvals => window::navigate(app, "approvals"),
        Action::SignIn => window::start_sign_in(app),
        Action::Quit => app.exit(0),
        Action::CopyConnection => {
            let app = app.clone();
            tauri::async_runtime::spawn(async move { copy_connection(&app).await });
        }
        Action::SignOut => {
            let app = app.clone();
            tauri::async_runtime::spawn(async move {
                let host = app.state::<BrokerHost>();
                if let Err(e) = sign_out(&host).await {
                    tracing::warn!(error = %e, "sign-out from the tray failed");
                    follow::notify(&app, "Snowgate could not sign you out", &e.message);
                }
                follow::publish(&app).await;
            });
        }
    }
}

/// Puts the gateway's connection settings on the clipboard.
async fn copy_connection(app: &AppHandle) {
    let Ok(broker) = app.state::<BrokerHost>().broker().await else {
        window::reveal(app);
        return;
    };
    let text = broker.connect_info().summary();
    match app.clipboard().write_text(text) {
        Ok(()) => follow::notify(
            app,
            "Connection settings copied",
            "Paste them into your tool's Snowflake connection.",
        ),
        Err(e) => {
            tracing::warn!(error = %e, "cannot write to the clipboard");
            follow::notify(app, "Snowgate could not use the clipboard", &e.to_string());
        }
    }
}

/// Asks for a refresh of the icon and the menu, without waiting for it.
pub fn show(app: &AppHandle) {
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        refresh(&app).await;
    });
}

/// Reads the broker's status and the user's grants, and shows them. Returns how long the
/// menu stays true (the next countdown change, at most a minute).
pub async fn refresh(app: &AppHandle) -> Duration {
    let Some(tray) = app.try_state::<Tray>() else {
        return Duration::from_secs(60);
    };
    let mut shown = tray.shown.lock().await;
    let host = app.state::<BrokerHost>();
    let status = host.status().await;
    let grants = match host.broker().await {
        Ok(broker) => grants_view(&broker).await,
        Err(_) => GrantsView::default(),
    };
    let now = SystemTime::now();
    let model = tray_menu::model(&status, &grants, now);
    let next = tray_menu::next_refresh(&grants, now);
    if shown.as_ref() == Some(&model) {
        return next;
    }
    if shown.as_ref().map(|m| m.state) != Some(model.state) {
        if let Err(e) = tray.icon.set_icon(Some(model.state.icon())) {
            tracing::warn!(error = %e, "cannot update the tray icon");
        }
    }
    match menu(app, &model) {
        Ok(menu) => {
            if let Err(e) = tray.icon.set_menu(Some(menu)) {
                tracing::warn!(error = %e, "cannot update the tray menu");
            }
        }
        Err(e) => tracing::warn!(error = %e, "cannot build the tray menu"),
    }
    *shown = Some(model);
    next
}

/// Keeps the countdowns in the menu true for as long as the app runs.
pub async fn keep_fresh(app: AppHandle) {
    loop {
        let wait = refresh(&app).await;
        tokio::time::sleep(wait).await;
    }
}

/// The signed-in user's live grants and the requests waiting for their decision; empty when
/// nobody is signed in or the ledger can't be read.
async fn grants_view(broker: &Broker) -> GrantsView {
    let live = broker
        .grant_ops()
        .my_live_grants()
        .await
        .map(|grants| grants.iter().filter_map(live_grant).collect())
        .unwrap_or_default();
    let awaiting_decision = broker
        .grant_ops()
        .awaiting_my_decision()
        .await
        .map(|g| g.len())
        .unwrap_or(0);
    GrantsView {
        live,
        awaiting_decision,
    }
}

fn live_grant(grant: &Grant) -> Option<LiveGrant> {
    let role = grant.role().as_str().to_string();
    match grant.state() {
        GrantState::Active => Some(LiveGrant::Active {
            role,
            until: grant.expires_at()?.to_system_time(),
        }),
        GrantState::Pending => Some(LiveGrant::Pending { role }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_state_has_a_square_icon() {
        for state in [
            TrayState::SignedOut,
            TrayState::Idle,
            TrayState::Active,
            TrayState::Attention,
            TrayState::Error,
        ] {
            let icon = state.icon();
            assert_eq!((icon.width(), icon.height()), (64, 64), "{state:?}");
        }
    }
}
