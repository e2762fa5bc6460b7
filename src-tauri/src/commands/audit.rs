//! The audit log: recent records, the hash chain's verification, the whole log as JSON Lines,
//! and saving such text where the person chooses.
//!
//! [`save_text`] shows the desktop's own save dialog (tauri-plugin-dialog, a GTK file chooser
//! on Linux) from the Rust side, so the window needs no file-system permission at all: it
//! hands over the text, and the shell writes the file the person picked.

use std::path::PathBuf;

use serde::Serialize;
use serde_json::Value;
use snowgate_engine::control::{ControlError, ErrorKind, Request};
use tauri::{AppHandle, Manager, State};
use tauri_plugin_dialog::DialogExt;

use super::forward;
use crate::broker::BrokerHost;
use crate::window;

/// Audit records since `since` (RFC 3339), at most `limit`, oldest first.
#[tauri::command]
pub async fn audit(
    host: State<'_, BrokerHost>,
    since: Option<String>,
    limit: Option<u32>,
) -> Result<Value, ControlError> {
    forward(&host, Request::Audit { since, limit }).await
}

/// Verifies the whole log against its anchor: `{ ok: true, records, head }`, or
/// `{ ok: false, problem }` naming the first bad record.
#[tauri::command]
pub async fn audit_verify(host: State<'_, BrokerHost>) -> Result<Value, ControlError> {
    forward(&host, Request::AuditVerify).await
}

/// The whole log as JSON Lines: `{ records, jsonl }`.
#[tauri::command]
pub async fn audit_export(host: State<'_, BrokerHost>) -> Result<Value, ControlError> {
    forward(&host, Request::AuditExport).await
}

/// Where [`save_text`] wrote the file.
#[derive(Debug, Serialize)]
pub struct Saved {
    path: PathBuf,
}

/// Asks where to save `text` (the dialog proposes `suggested_name` in the download folder),
/// writes it there, and returns `{ path }`; `null` if the person cancelled the dialog.
#[tauri::command]
pub async fn save_text(
    app: AppHandle,
    suggested_name: String,
    text: String,
) -> Result<Option<Saved>, ControlError> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let mut dialog = app
        .dialog()
        .file()
        .set_title("Save as")
        .set_file_name(file_name(&suggested_name));
    if let Ok(downloads) = app.path().download_dir() {
        dialog = dialog.set_directory(downloads);
    }
    if let Some(main) = app.get_webview_window(window::MAIN) {
        dialog = dialog.set_parent(&main);
    }
    dialog.save_file(move |picked| {
        let _ = tx.send(picked);
    });
    let Some(picked) = rx.await.ok().flatten() else {
        return Ok(None);
    };
    let path = picked
        .into_path()
        .map_err(|e| ControlError::new(ErrorKind::BadRequest, format!("cannot save there: {e}")))?;
    tokio::fs::write(&path, text).await.map_err(|e| {
        ControlError::new(
            ErrorKind::Unavailable,
            format!("cannot write {}: {e}", path.display()),
        )
    })?;
    tracing::info!(path = %path.display(), "saved a file the person asked for");
    Ok(Some(Saved { path }))
}

/// The suggested name without any directory part, so the window can't pick the folder.
fn file_name(suggested: &str) -> String {
    let name = suggested
        .rsplit(['/', '\\'])
        .next()
        .unwrap_or_default()
        .trim();
    if name.is_empty() || name == "." || name == ".." {
        "snowgate.txt".into()
    } else {
        name.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_suggested_name_never_names_a_directory() {
        assert_eq!(file_name("audit.jsonl"), "audit.jsonl");
        assert_eq!(file_name("../../etc/passwd"), "passwd");
        assert_eq!(file_name("C:\\x\\audit.jsonl"), "audit.jsonl");
        assert_eq!(file_name("  "), "snowgate.txt");
        assert_eq!(file_name("dir/.."), "snowgate.txt");
    }
}
