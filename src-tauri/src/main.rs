//! Snowgate's tray app.
//!
//! A thin shell over `snowgate-engine`: it runs the user's broker from the same config the CLI
//! reads (the CLI then talks to the app through the control socket), shows the broker's state as a tray icon and menu, and serves the Svelte UI in one
//! window. Everything the broker decides lives in the engine; the modules here only translate.
//!
//! - [`broker`]: the engine's broker as the app runs it (with the control socket the CLI
//!   uses), or why it could not start.
//! - [`follow`]: turns the broker's identity, grant and gateway events into tray updates,
//!   events for the window, and notifications.
//! - [`commands`]: the Tauri commands the UI calls, grouped by domain.
//! - [`tray_menu`]: the tray's icon state and menu as plain data, decided from the status and
//!   the user's grants.
//! - [`tray`]: the tray icon and menu as rendered, and what their items do.
//! - [`window`]: the main window, which hides on close because the app lives in the tray.
//! - [`app`]: wiring: plugins, state, startup.

#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

mod app;
mod broker;
mod commands;
mod confirm;
mod follow;
mod memory;
mod tray;
mod tray_menu;
mod window;

fn main() {
    // Before any thread starts: the environment is read by WebKit's processes as they spawn.
    window::draw_without_gpu_compositing();
    snowgate_engine::logging::init(snowgate_engine::logging::LogFormat::Text);
    app::run();
}
