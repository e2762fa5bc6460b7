//! The main window. `app` creates it hidden from `tauri.conf.json`; closing it hides it again,
//! because the app keeps running in the tray until "Quit". The tray opens it on a given view
//! with [`NAVIGATE_EVENT`] or on the sign-in with [`SIGN_IN_EVENT`].

use tauri::{AppHandle, Emitter, Manager, Window, WindowEvent};

/// The main window's label, as in `tauri.conf.json` and `capabilities/default.json`.
pub const MAIN: &str = "main";

/// The event that tells the window to show its sign-in view and start a browser sign-in.
pub const SIGN_IN_EVENT: &str = "app://sign-in";

/// The event that tells the window which view to show; its payload is `{ "view": ... }`.
pub const NAVIGATE_EVENT: &str = "app://navigate";

/// The payload of [`NAVIGATE_EVENT`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct Navigate<'a> {
    pub view: &'a str,
}

/// Shows the main window, restores it if minimized, and gives it focus.
pub fn reveal(app: &AppHandle) {
    let Some(window) = app.get_webview_window(MAIN) else {
        tracing::warn!("the main window is gone");
        return;
    };
    let shown = window
        .show()
        .and_then(|()| window.unminimize())
        .and_then(|()| window.set_focus());
    if let Err(e) = shown {
        tracing::warn!(error = %e, "cannot show the main window");
    }
}

/// Shows the main window on its sign-in view and has it start the browser sign-in, as if the
/// person had chosen "Sign in with your browser" there.
pub fn start_sign_in(app: &AppHandle) {
    reveal(app);
    if let Err(e) = app.emit_to(MAIN, SIGN_IN_EVENT, ()) {
        tracing::warn!(error = %e, "cannot ask the window to sign in");
    }
}

/// Shows the main window on `view` (`request`, `approvals`, ...).
pub fn navigate(app: &AppHandle, view: &str) {
    reveal(app);
    if let Err(e) = app.emit_to(MAIN, NAVIGATE_EVENT, Navigate { view }) {
        tracing::warn!(error = %e, view, "cannot ask the window to change its view");
    }
}

/// Turns a close request on the main window into hiding it.
pub fn hide_instead_of_closing(window: &Window, event: &WindowEvent) {
    if let WindowEvent::CloseRequested { api, .. } = event {
        if window.label() == MAIN {
            api.prevent_close();
            if let Err(e) = window.hide() {
                tracing::warn!(error = %e, "cannot hide the main window");
            }
        }
    }
}
