//! The main window's own calls: what it should show first once its UI listens, and when it
//! painted its first frame (see [`crate::window`]).

use crate::window::{Inbox, Opening};

/// The UI listens for the tray's events now: what the tray asked for before, once.
#[tauri::command]
pub fn window_opened(inbox: tauri::State<'_, Inbox>) -> Opening {
    inbox.opened()
}

/// The UI painted its first frame. Logs the time since the window was created, which
/// `scripts/measure-app` reads.
#[tauri::command]
pub fn window_painted(inbox: tauri::State<'_, Inbox>) {
    if let Some(after) = inbox.since_created() {
        tracing::info!(
            first_paint_ms = after.as_millis() as u64,
            "the main window painted its first frame"
        );
    }
}
