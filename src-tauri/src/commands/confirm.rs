//! The person's answer to a question the tray asked for the control socket (see
//! [`crate::confirm`]).

use std::sync::Arc;

use snowgate_engine::control::{ConfirmAsk, ControlError, ErrorKind};

use crate::confirm::Waiting;

/// Allows (`allow`) or denies question `id`. A question that no longer waits (its time ran
/// out) is an error the window shows.
#[tauri::command]
pub async fn confirm_answer(
    waiting: tauri::State<'_, Arc<Waiting>>,
    id: u64,
    allow: bool,
) -> Result<(), ControlError> {
    if waiting.answer(id, allow) {
        Ok(())
    } else {
        Err(ControlError::new(
            ErrorKind::BadRequest,
            "that request no longer waits for an answer: its time ran out, and it was refused",
        ))
    }
}

/// The questions still waiting for an answer: a window that opens after they were asked
/// shows them.
#[tauri::command]
pub fn confirm_pending(waiting: tauri::State<'_, Arc<Waiting>>) -> Vec<ConfirmAsk> {
    waiting.pending()
}
