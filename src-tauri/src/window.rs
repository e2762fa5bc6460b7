//! The main window. It exists only while it is open: closing it destroys its web view, so
//! WebKit's processes end (its network process too, which WebKit would keep) and the app idles
//! in the tray with little memory. The tray, a second launch or a question for the person
//! creates it again from `tauri.conf.json`.
//!
//! A window just created is still loading its UI, so an event sent to it then would be lost.
//! What the tray wants it to show (a view, a browser sign-in) therefore waits in the [`Inbox`]
//! until the UI has started listening and calls `window_opened`; from then on it goes as an
//! event ([`NAVIGATE_EVENT`], [`SIGN_IN_EVENT`]). Each wish is delivered exactly once: the
//! inbox and the "listening" mark change under one lock.

#[cfg(target_os = "linux")]
use std::os::unix::ffi::OsStrExt;
use std::sync::Mutex;
use std::time::Instant;

use tauri::{
    AppHandle, Emitter, Manager, WebviewWindow, WebviewWindowBuilder, Window, WindowEvent,
};

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

/// What a window that has just started listening should show first (`window_opened`).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Opening {
    /// The view the tray asked for, if any (`request`, `approvals`, ...).
    pub view: Option<String>,
    /// Whether the tray asked for a browser sign-in.
    pub sign_in: bool,
}

/// The tray's wishes for a window that is not listening yet. Managed as Tauri state.
#[derive(Default)]
pub struct Inbox {
    state: Mutex<InboxState>,
}

#[derive(Default)]
struct InboxState {
    /// Whether the current window's UI is listening for events.
    listening: bool,
    waiting: Opening,
    /// When the current window was created, for the first-paint figure.
    created_at: Option<Instant>,
}

/// How a wish is delivered.
#[derive(Debug, PartialEq, Eq)]
enum Delivery {
    /// The UI listens: send the event.
    Event,
    /// Kept for `window_opened`.
    Kept,
}

impl Inbox {
    fn view(&self, view: &str) -> Delivery {
        let mut s = self.state.lock().unwrap();
        if s.listening {
            Delivery::Event
        } else {
            s.waiting.view = Some(view.to_string());
            Delivery::Kept
        }
    }

    fn sign_in(&self) -> Delivery {
        let mut s = self.state.lock().unwrap();
        if s.listening {
            Delivery::Event
        } else {
            s.waiting.sign_in = true;
            Delivery::Kept
        }
    }

    /// The UI listens now: what waited, once.
    pub fn opened(&self) -> Opening {
        let mut s = self.state.lock().unwrap();
        s.listening = true;
        std::mem::take(&mut s.waiting)
    }

    /// The time since the current window was created, once (for the first-paint log line).
    pub fn since_created(&self) -> Option<std::time::Duration> {
        self.state
            .lock()
            .unwrap()
            .created_at
            .take()
            .map(|t| t.elapsed())
    }

    fn created(&self) {
        let mut s = self.state.lock().unwrap();
        s.listening = false;
        s.created_at = Some(Instant::now());
    }

    fn destroyed(&self) {
        let mut s = self.state.lock().unwrap();
        s.listening = false;
        s.created_at = None;
    }
}

/// WebKit's switch for accelerated compositing (<https://trac.webkit.org/wiki/EnvironmentVariables>).
/// Set to anything but `0`, the web process draws the page without it.
const NO_COMPOSITING: &str = "WEBKIT_DISABLE_COMPOSITING_MODE";

/// Has the window's web view draw without GPU compositing, unless the person running the app
/// set WebKit's switch themselves (`WEBKIT_DISABLE_COMPOSITING_MODE=0` turns compositing back
/// on). The UI is a small form: compositing buys it nothing, while setting it up is most of a
/// window's start where OpenGL is Mesa's software renderer (no GPU driver, a VM, a remote
/// session). Measured with `scripts/measure-app --release` under Xvfb: the first opening paints
/// in about 0.35 s instead of 1-1.6 s, and reopening in about 0.2 s instead of 0.33-0.49 s.
/// Call it first in `main`, before any thread exists.
pub fn draw_without_gpu_compositing() {
    if std::env::var_os(NO_COMPOSITING).is_none() {
        std::env::set_var(NO_COMPOSITING, "1");
    }
}

/// The main window, created (hidden) when there is none.
fn main_window(app: &AppHandle) -> Option<WebviewWindow> {
    if let Some(window) = app.get_webview_window(MAIN) {
        return Some(window);
    }
    let config = app
        .config()
        .app
        .windows
        .iter()
        .find(|w| w.label == MAIN)?
        .clone();
    if let Some(inbox) = app.try_state::<Inbox>() {
        inbox.created();
    }
    match WebviewWindowBuilder::from_config(app, &config).and_then(|b| b.build()) {
        Ok(window) => Some(window),
        Err(e) => {
            tracing::warn!(error = %e, "cannot create the main window");
            None
        }
    }
}

/// Shows the main window (creating it if it is closed), restores it if minimized, and gives it
/// focus.
pub fn reveal(app: &AppHandle) {
    let Some(window) = main_window(app) else {
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
    let inbox = app.state::<Inbox>();
    if inbox.sign_in() == Delivery::Event {
        if let Err(e) = app.emit_to(MAIN, SIGN_IN_EVENT, ()) {
            tracing::warn!(error = %e, "cannot ask the window to sign in");
        }
    }
}

/// Shows the main window on `view` (`request`, `approvals`, ...).
pub fn navigate(app: &AppHandle, view: &str) {
    reveal(app);
    let inbox = app.state::<Inbox>();
    if inbox.view(view) == Delivery::Event {
        if let Err(e) = app.emit_to(MAIN, NAVIGATE_EVENT, Navigate { view }) {
            tracing::warn!(error = %e, view, "cannot ask the window to change its view");
        }
    }
}

/// Lets a closed main window go: its web view is destroyed and the UI's state with it.
pub fn on_window_event(window: &Window, event: &WindowEvent) {
    if window.label() != MAIN {
        return;
    }
    if let WindowEvent::Destroyed = event {
        if let Some(inbox) = window.app_handle().try_state::<Inbox>() {
            inbox.destroyed();
        }
        tracing::debug!("the main window was closed and its web view destroyed");
        let app = window.app_handle().clone();
        tauri::async_runtime::spawn(async move {
            end_network_process(app.clone()).await;
            // WebKit frees the view's memory over the next moments; then hand back the heap's
            // free pages and the window's library pages, so an idle tray holds only what it
            // uses ([`crate::memory`]).
            tokio::time::sleep(std::time::Duration::from_secs(2)).await;
            release_window_memory(&app);
        });
    }
}

/// Returns what a closed window left in this process: the heap's free pages, and the pages of
/// the libraries only the window ran ([`crate::memory`]). Skipped when a window was opened
/// meanwhile, so it does not slow that window's start.
fn release_window_memory(app: &AppHandle) {
    if !app.webview_windows().is_empty() {
        return;
    }
    crate::memory::trim_heap();
    match crate::memory::release_clean_file_pages() {
        Ok(kib) => tracing::debug!(
            released_kib = kib,
            "released the closed window's clean library pages"
        ),
        Err(e) => tracing::debug!(error = %e, "cannot read this process's mappings"),
    }
}

/// How long a closed window's web process may take to end before the network process is left
/// alone (it is then ended at the next close).
const WEB_PROCESS_GRACE: std::time::Duration = std::time::Duration::from_secs(5);

/// Ends WebKit's network process once the closed window's web process has ended. WebKit keeps
/// it running after the last web view is gone (tauri-apps/tauri#14626, tauri-apps/wry#590),
/// holding about 35 MB in a tray that may stay closed all day; the next web view starts a
/// fresh one. It is ended on the main thread, where windows are created, and only while no web
/// view exists, so a window opened meanwhile keeps its network process.
async fn end_network_process(app: AppHandle) {
    let started = Instant::now();
    while !webkit_children("WebKitWebProcess").is_empty() {
        if started.elapsed() > WEB_PROCESS_GRACE {
            tracing::debug!(
                "the closed window's web process is still running; WebKit's network process stays"
            );
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let handle = app.clone();
    let ended = app.run_on_main_thread(move || {
        if !handle.webview_windows().is_empty() {
            return;
        }
        for pid in webkit_children("WebKitNetworkProcess") {
            terminate(pid);
            tracing::debug!(pid, "ended WebKit's network process with the last web view");
        }
    });
    if let Err(e) = ended {
        tracing::warn!(error = %e, "cannot end WebKit's network process");
    }
}

/// This process's children whose program is named `name` (WebKit's helper processes), from
/// /proc.
#[cfg(target_os = "linux")]
fn webkit_children(name: &str) -> Vec<i32> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            // "pid (comm) state ppid ...": the comm may hold spaces and parentheses.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok());
            ppid == Some(me)
                && std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
                    let argv0 = cmdline.split(|b| *b == 0).next().unwrap_or_default();
                    std::path::Path::new(std::ffi::OsStr::from_bytes(argv0))
                        .file_name()
                        .is_some_and(|n| n == name)
                })
        })
        .collect()
}

#[cfg(not(target_os = "linux"))]
fn webkit_children(_name: &str) -> Vec<i32> {
    Vec::new()
}

#[cfg(unix)]
fn terminate(pid: i32) {
    // SAFETY: kill(2) with a pid read from /proc as our own child; it only sends a signal.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}

#[cfg(not(unix))]
fn terminate(_pid: i32) {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wishes_wait_until_the_window_listens_and_are_delivered_once() {
        let inbox = Inbox::default();
        inbox.created();
        assert_eq!(inbox.view("approvals"), Delivery::Kept);
        assert_eq!(inbox.sign_in(), Delivery::Kept);
        assert_eq!(inbox.view("request"), Delivery::Kept, "the last view wins");
        assert_eq!(
            inbox.opened(),
            Opening {
                view: Some("request".into()),
                sign_in: true
            }
        );
        // Listening now: events, and nothing kept twice.
        assert_eq!(inbox.view("audit"), Delivery::Event);
        assert_eq!(inbox.sign_in(), Delivery::Event);
        assert_eq!(inbox.opened(), Opening::default());
        // A new window listens only once its UI says so.
        inbox.destroyed();
        assert_eq!(inbox.view("sessions"), Delivery::Kept);
        inbox.created();
        assert_eq!(inbox.opened().view.as_deref(), Some("sessions"));
    }

    #[test]
    fn the_first_paint_figure_is_taken_once_per_window() {
        let inbox = Inbox::default();
        assert!(inbox.since_created().is_none());
        inbox.created();
        assert!(inbox.since_created().is_some());
        assert!(inbox.since_created().is_none());
    }
}
