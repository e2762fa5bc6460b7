//! Wiring: plugins, managed state, the tray, and what happens at launch and at quit.
//!
//! The order matters. The single-instance plugin runs first, so a second launch hands over to
//! the first and exits before it reads the config or starts a broker. The broker starts in
//! `setup`, on Tauri's Tokio runtime, and only then is the window created, so the UI never
//! asks for a status that is not there yet. At quit the broker stops, which removes the
//! control socket.
//!
//! Launched by a person, the app shows its window. Launched at login (the autostart entry
//! passes [`HIDDEN_FLAG`]), it stays in the tray without creating a window or a web view, and
//! if the broker cannot start it says so with a notification instead of a window popping up
//! unasked. Closing the window destroys it (see [`window`]); the app keeps running in the tray
//! until "Quit".

use tauri::{async_runtime, AppHandle, Manager, RunEvent};

use crate::broker::{BrokerHost, StartupError};
use crate::commands::identity::SignInsUnderWay;
use crate::{commands, follow, tray, window};

/// The argument the login item starts the app with: start in the tray, without a window.
pub const HIDDEN_FLAG: &str = "--hidden";

/// Builds and runs the app until "Quit".
pub fn run() {
    let started_hidden = std::env::args().any(|a| a == HIDDEN_FLAG);
    let app = tauri::Builder::default()
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
        .plugin(tauri_plugin_dialog::init())
        .invoke_handler(tauri::generate_handler![
            commands::status::broker_status,
            commands::status::reload_config,
            commands::identity::login_begin,
            commands::identity::login_wait,
            commands::identity::login_cancel,
            commands::identity::logout,
            commands::identity::whoami,
            commands::grants::roles,
            commands::grants::request_access,
            commands::grants::grants,
            commands::grants::approver_login_begin,
            commands::grants::approve,
            commands::grants::deny,
            commands::grants::revoke,
            commands::grants::extend,
            commands::grants::cancel,
            commands::sessions::sessions,
            commands::sessions::end_session,
            commands::connect::connect_info,
            commands::connect::tool_secret_list,
            commands::connect::tool_secret_create,
            commands::connect::tool_secret_revoke,
            commands::audit::audit,
            commands::audit::audit_verify,
            commands::audit::audit_export,
            commands::audit::save_text,
            commands::settings::settings,
            commands::settings::autostart_get,
            commands::settings::autostart_set,
            commands::confirm::confirm_answer,
            commands::confirm::confirm_pending,
            commands::agents::agent_list,
            commands::agents::agent_remove,
            commands::window::window_opened,
            commands::window::window_painted,
        ])
        .on_window_event(window::on_window_event)
        .setup(move |app| {
            app.manage(window::Inbox::default());
            let waiting = std::sync::Arc::new(crate::confirm::Waiting::default());
            app.manage(waiting.clone());
            let host = async_runtime::block_on(BrokerHost::start(app.handle()));
            let status = async_runtime::block_on(host.status());
            app.manage(host);
            app.manage(SignInsUnderWay::default());
            app.manage(tray::create(app.handle(), &status)?);
            async_runtime::spawn(tray::keep_fresh(app.handle().clone()));

            // Started hidden, the app creates no window (and no web view) until one is asked for.
            match (&status, started_hidden) {
                (_, false) => window::reveal(app.handle()),
                (Ok(_), true) => {}
                (Err(problem), true) => notify_cannot_start(app.handle(), problem),
            }
            Ok(())
        })
        .build(tauri::generate_context!())
        .expect("error while building Snowgate");
    app.run(|app, event| match event {
        // The last window closed: the app stays in the tray. "Quit" exits with a code.
        RunEvent::ExitRequested {
            code: None, api, ..
        } => api.prevent_exit(),
        RunEvent::Exit => {
            if let Some(host) = app.try_state::<BrokerHost>() {
                async_runtime::block_on(host.stop());
            }
        }
        _ => {}
    });
}

fn notify_cannot_start(app: &AppHandle, problem: &StartupError) {
    let body = match problem {
        StartupError::Config { .. } => {
            "Its config has a problem. Open Snowgate from the tray for details."
        }
        StartupError::AlreadyRunning { .. } => {
            "A Snowgate broker is already running for this user (snowgate up?). Stop it, then \
             open Snowgate from the tray and choose Try again."
        }
        StartupError::DataDir { .. } | StartupError::ControlSocket { .. } => {
            "Open Snowgate from the tray for details."
        }
    };
    follow::notify(app, "Snowgate cannot start", body);
}
