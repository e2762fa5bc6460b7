//! The tray icon: the app's face while its window is hidden.
//!
//! The icon shows one of five states at a glance, and the menu's first line (disabled, not a
//! button) repeats the broker's one-line summary. The menu offers "Open Snowgate", "Sign in"
//! or "Sign out" as the state asks, and "Quit". "Sign in" opens the window on the sign-in
//! view, which starts the browser sign-in; "Sign out" signs out at once, as
//! `snowgate logout` does.
//! On Linux the icon goes through libayatana-appindicator, which shows a menu on click but
//! sends no click events, so everything the tray does must be reachable from its menu.

use snowgate_engine::identity::IdentityStatus;
use snowgate_engine::BrokerStatus;
use tauri::image::Image;
use tauri::menu::{Menu, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Manager, Wry};

use crate::broker::{BrokerHost, StartupError};
use crate::commands::identity::sign_out;
use crate::{follow, window};

const MENU_OPEN: &str = "open";
const MENU_SIGN: &str = "sign";
const MENU_QUIT: &str = "quit";

/// What the tray icon shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrayState {
    /// Nobody is signed in: a grey gate.
    SignedOut,
    /// Signed in, no access granted right now: a blue gate.
    Idle,
    /// At least one grant is active: a green badge.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "grants are not in the engine yet")
    )]
    Active,
    /// A request waits for this person's approval: an amber badge.
    #[cfg_attr(
        not(test),
        expect(dead_code, reason = "approvals are not in the engine yet")
    )]
    Attention,
    /// The broker cannot run (for example, the config is invalid): a red badge.
    Error,
}

impl TrayState {
    /// The state for a status snapshot, or for the reason the engine is not running.
    pub fn of(status: &Result<BrokerStatus, StartupError>) -> TrayState {
        match status {
            Err(_) => TrayState::Error,
            Ok(status) => match status.sign_in {
                IdentityStatus::SignedOut | IdentityStatus::SigningIn => TrayState::SignedOut,
                // Offline still holds usable tokens; the status line says the IdP is away.
                IdentityStatus::SignedIn { .. } | IdentityStatus::OfflineRetrying { .. } => {
                    TrayState::Idle
                }
            },
        }
    }

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

/// The menu's first line: the engine's summary, or a pointer to the window for the details.
fn status_line(status: &Result<BrokerStatus, StartupError>) -> String {
    match status {
        Ok(status) => status.summary.clone(),
        Err(StartupError::Config { .. }) => "Config error: open Snowgate for details".into(),
        Err(StartupError::DataDir { .. }) | Err(StartupError::ControlSocket { .. }) => {
            "Cannot start: open Snowgate for details".into()
        }
        Err(StartupError::AlreadyRunning { .. }) => {
            "Another Snowgate broker is running (snowgate up?)".into()
        }
    }
}

/// What the sign-in item says and does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SignItem {
    /// "Sign in": opens the window on the sign-in view.
    SignIn,
    /// "Sign out": signs out at once.
    SignOut,
    /// "Sign in", greyed out: the broker is not running.
    Unavailable,
}

impl SignItem {
    fn of(status: &Result<BrokerStatus, StartupError>) -> SignItem {
        match status {
            Err(_) => SignItem::Unavailable,
            Ok(status) => match status.sign_in {
                IdentityStatus::SignedOut | IdentityStatus::SigningIn => SignItem::SignIn,
                IdentityStatus::SignedIn { .. } | IdentityStatus::OfflineRetrying { .. } => {
                    SignItem::SignOut
                }
            },
        }
    }

    fn label(self) -> &'static str {
        match self {
            SignItem::SignIn | SignItem::Unavailable => "Sign in",
            SignItem::SignOut => "Sign out",
        }
    }

    fn enabled(self) -> bool {
        self != SignItem::Unavailable
    }
}

/// The tray icon and the menu line that changes with the broker's state. Managed as state.
pub struct Tray {
    icon: TrayIcon<Wry>,
    status_line: MenuItem<Wry>,
    sign: MenuItem<Wry>,
}

/// Creates the tray icon for the given status.
pub fn create(app: &AppHandle, status: &Result<BrokerStatus, StartupError>) -> tauri::Result<Tray> {
    let status_line = MenuItem::with_id(app, "status", status_line(status), false, None::<&str>)?;
    let item = SignItem::of(status);
    let sign = MenuItem::with_id(app, MENU_SIGN, item.label(), item.enabled(), None::<&str>)?;
    let menu = Menu::with_items(
        app,
        &[
            &status_line,
            &PredefinedMenuItem::separator(app)?,
            &MenuItem::with_id(app, MENU_OPEN, "Open Snowgate", true, None::<&str>)?,
            &PredefinedMenuItem::separator(app)?,
            &sign,
            &MenuItem::with_id(app, MENU_QUIT, "Quit", true, None::<&str>)?,
        ],
    )?;
    let mut builder = TrayIconBuilder::with_id("snowgate");
    // libayatana loads the icon from a file. The default folder, /tmp/tray-icon, belongs to
    // whichever user made it first; a per-user folder keeps a second user's tray working.
    if let Ok(cache) = app.path().app_cache_dir() {
        builder = builder.temp_dir_path(cache.join("tray"));
    }
    let icon = builder
        .icon(TrayState::of(status).icon())
        .tooltip("Snowgate")
        .menu(&menu)
        .show_menu_on_left_click(true)
        .on_menu_event(|app, event| match event.id.as_ref() {
            MENU_OPEN => window::reveal(app),
            MENU_SIGN => {
                let app = app.clone();
                tauri::async_runtime::spawn(async move { sign_in_or_out(&app).await });
            }
            MENU_QUIT => app.exit(0),
            _ => {}
        })
        .build(app)?;
    Ok(Tray {
        icon,
        status_line,
        sign,
    })
}

/// "Sign in" or "Sign out", decided by the state at the time of the click.
async fn sign_in_or_out(app: &AppHandle) {
    let host = app.state::<BrokerHost>();
    match SignItem::of(&host.status().await) {
        SignItem::SignIn => window::start_sign_in(app),
        SignItem::Unavailable => window::reveal(app),
        SignItem::SignOut => {
            if let Err(e) = sign_out(&host).await {
                tracing::warn!(error = %e, "sign-out from the tray failed");
                follow::notify(app, "Snowgate could not sign you out", &e.message);
            }
            follow::publish(app).await;
        }
    }
}

/// Updates the icon and the status line to a new status.
pub fn show(app: &AppHandle, status: &Result<BrokerStatus, StartupError>) {
    let Some(tray) = app.try_state::<Tray>() else {
        return;
    };
    if let Err(e) = tray.icon.set_icon(Some(TrayState::of(status).icon())) {
        tracing::warn!(error = %e, "cannot update the tray icon");
    }
    let item = SignItem::of(status);
    let updated = tray
        .status_line
        .set_text(status_line(status))
        .and_then(|()| tray.sign.set_text(item.label()))
        .and_then(|()| tray.sign.set_enabled(item.enabled()));
    if let Err(e) = updated {
        tracing::warn!(error = %e, "cannot update the tray menu");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(sign_in: IdentityStatus) -> BrokerStatus {
        BrokerStatus {
            version: "0.1.0".into(),
            sign_in,
            keyring_problem: None,
            issuer: "https://idp.example.com/".into(),
            account: "acme".into(),
            snowflake_url: "https://acme.snowflakecomputing.com/".into(),
            gateway_listen: vec!["127.0.0.1:8765".into()],
            roles: vec!["ANALYST".into()],
            summary: "Signed out".into(),
            gateway: Default::default(),
            notes: Vec::new(),
        }
    }

    #[test]
    fn signed_out_shows_the_grey_gate_and_the_summary() {
        let s = Ok(status(IdentityStatus::SignedOut));
        assert_eq!(TrayState::of(&s), TrayState::SignedOut);
        assert_eq!(status_line(&s), "Signed out");
    }

    #[test]
    fn signed_in_is_idle() {
        let s = Ok(status(IdentityStatus::SignedIn {
            subject: "ana".into(),
        }));
        assert_eq!(TrayState::of(&s), TrayState::Idle);
        assert_eq!(
            TrayState::of(&Ok(status(IdentityStatus::SigningIn))),
            TrayState::SignedOut
        );
    }

    #[test]
    fn the_sign_item_follows_the_state() {
        let signed_out = Ok(status(IdentityStatus::SignedOut));
        assert_eq!(SignItem::of(&signed_out), SignItem::SignIn);
        assert_eq!(SignItem::of(&signed_out).label(), "Sign in");
        let signed_in = Ok(status(IdentityStatus::SignedIn {
            subject: "ana".into(),
        }));
        assert_eq!(SignItem::of(&signed_in).label(), "Sign out");
        let offline = Ok(status(IdentityStatus::OfflineRetrying {
            subject: "ana".into(),
            since: chrono::Utc::now(),
            last_error: "connection refused".into(),
            next_retry_at: chrono::Utc::now(),
        }));
        assert_eq!(SignItem::of(&offline), SignItem::SignOut);
        let broken = Err(StartupError::Config {
            message: "line 3".into(),
        });
        assert_eq!(SignItem::of(&broken).label(), "Sign in");
        assert!(!SignItem::of(&broken).enabled());
    }

    #[test]
    fn another_broker_is_named_in_the_status_line() {
        let s = Err(StartupError::AlreadyRunning {
            message: "stop it".into(),
        });
        assert_eq!(TrayState::of(&s), TrayState::Error);
        assert_eq!(
            status_line(&s),
            "Another Snowgate broker is running (snowgate up?)"
        );
    }

    #[test]
    fn a_config_error_shows_the_error_icon_and_points_to_the_window() {
        let s = Err(StartupError::Config {
            message: "line 3".into(),
        });
        assert_eq!(TrayState::of(&s), TrayState::Error);
        assert!(status_line(&s).starts_with("Config error"));
    }

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
