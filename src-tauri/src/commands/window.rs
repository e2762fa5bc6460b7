//! The main window's own calls: what it should show first once its UI listens, and when it
//! painted its first frame (see [`crate::window`]).

use crate::window::{Inbox, Opening};

/// The UI listens for the tray's events now: what the tray asked for before, once.
#[tauri::command]
pub fn window_opened(inbox: tauri::State<'_, Inbox>) -> Opening {
    inbox.opened()
}

/// The UI painted its first frame, `page_ms` after its page's navigation started. Logs the
/// time since the window was created, and that part of it, which `scripts/measure-app` reads.
#[tauri::command]
pub fn window_painted(inbox: tauri::State<'_, Inbox>, page_ms: Option<u64>) {
    if let Some(after) = inbox.since_created() {
        tracing::info!(
            first_paint_ms = after.as_millis() as u64,
            page_ms,
            "the main window painted its first frame"
        );
    }
}
