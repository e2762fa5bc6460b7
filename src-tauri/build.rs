//! Generates Tauri's context and declares the app's own commands, so that each one needs an
//! explicit permission in `capabilities/` before the webview may call it.

fn main() {
    let manifest = tauri_build::AppManifest::new().commands(&[
        "broker_status",
        "reload_config",
        "login_begin",
        "login_wait",
        "login_cancel",
        "logout",
        "whoami",
        "roles",
        "request_access",
        "grants",
        "approver_login_begin",
        "approve",
        "deny",
        "revoke",
        "extend",
        "cancel",
        "sessions",
        "end_session",
        "connect_info",
        "tool_secret_list",
        "tool_secret_create",
        "tool_secret_revoke",
        "audit",
        "audit_verify",
        "audit_export",
        "save_text",
        "settings",
        "autostart_get",
        "autostart_set",
        "confirm_answer",
        "confirm_pending",
        "agent_list",
        "agent_remove",
        "window_opened",
        "window_painted",
    ]);
    tauri_build::try_build(tauri_build::Attributes::new().app_manifest(manifest))
        .expect("failed to run the Tauri build script");
}
