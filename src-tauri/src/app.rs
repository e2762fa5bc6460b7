//! Wiring: plugins, managed state, the tray, and what happens at launch.
//!
//! The order matters. The single-instance plugin runs first, so a second launch hands over to
//! the first and exits before it reads the config or starts an engine. The engine starts in
//! `setup`, and only then is the window created, so the UI never asks for a status that is not
//! there yet.
//!
//! Launched by a person, the app shows its window. Launched at login (the autostart entry
//! passes [`HIDDEN_FLAG`]), it stays in the tray, and if the broker cannot start it says so
//! with a notification instead of a window popping up unasked.

use tauri::{AppHandle, Manager, WebviewWindowBuilder};
use tauri_plugin_notification::NotificationExt;

use crate::broker::Broker;
use crate::{commands, tray, window};

/// The argument the login item starts the app with: start in the tray, without a window.
pub const HIDDEN_FLAG: &str = "--hidden";

/// Builds and runs the app until "Quit".
pub fn run() {
    let started_hidden = std::env::args().any(|a| a == HIDDEN_FLAG);
    tauri::Builder::default()
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
            window::reveal(app)
        }))
        .plugin(
            tauri_plugin_autostart::Builder::new()
                .arg(HIDDEN_FLAG)
                .build(),
        )
        .plugin(tauri_plugin_notification::init())
        .plugin(tauri_plugin_clipboard_manager::init())
        .invoke_handler(tauri::generate_handler![
            commands::status::broker_status,
            commands::status::reload_config,
        ])
        .on_window_event(window::hide_instead_of_closing)
        .setup(move |app| {
            let broker = Broker::start();
            let status = broker.status();
            app.manage(broker);
            app.manage(tray::create(app.handle(), &status)?);

            let config = app
                .config()
                .app
                .windows
                .iter()
                .find(|w| w.label == window::MAIN)
                .ok_or("tauri.conf.json has no main window")?
                .clone();
            WebviewWindowBuilder::from_config(app, &config)?.build()?;

            match (&status, started_hidden) {
                (_, false) => window::reveal(app.handle()),
                (Ok(_), true) => {}
                (Err(_), true) => notify_cannot_start(app.handle()),
            }
            Ok(())
        })
        .run(tauri::generate_context!())
        .expect("error while running Snowgate");
}

fn notify_cannot_start(app: &AppHandle) {
    let sent = app
        .notification()
        .builder()
        .title("Snowgate cannot start")
        .body("Its config has a problem. Open Snowgate from the tray for details.")
        .show();
    if let Err(e) = sent {
        tracing::warn!(error = %e, "cannot show a notification");
    }
}
