//! The tray's [`Confirmer`]: asks the person, in the main window, to allow or deny a
//! control-socket request for a Snowflake token or a tool's connection secret.
//!
//! The broker gives each such request to [`TrayConfirmer::confirm`] when tool secrets are
//! required (see `snowgate_engine::control::ConfirmGate`). It shows the window and sends it
//! [`CONFIRM_EVENT`] with the [`ConfirmAsk`]; the window answers with the `confirm_answer`
//! command. When the gate gives up (the time is up), the future is dropped, the question is
//! forgotten and the window is told with [`CONFIRM_CLOSED_EVENT`] to take it down. An answer
//! for a question no longer waiting does nothing.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use snowgate_engine::control::{ConfirmAsk, Confirmer};
use tauri::{AppHandle, Emitter};
use tokio::sync::oneshot;

use crate::window;

/// The event that asks the window to show a question; its payload is a [`ConfirmAsk`].
pub const CONFIRM_EVENT: &str = "app://confirm";

/// The event that tells the window a question no longer waits; its payload is `{ "id": N }`.
pub const CONFIRM_CLOSED_EVENT: &str = "app://confirm-closed";

/// The questions waiting for an answer, by id. Managed as Tauri state, shared with the
/// [`TrayConfirmer`].
#[derive(Default)]
pub struct Waiting {
    answers: Mutex<HashMap<u64, (ConfirmAsk, oneshot::Sender<bool>)>>,
}

impl Waiting {
    /// Gives the person's answer to question `id`; `false` when it no longer waits.
    pub fn answer(&self, id: u64, allow: bool) -> bool {
        match self.answers.lock().unwrap().remove(&id) {
            Some((_, tx)) => tx.send(allow).is_ok(),
            None => false,
        }
    }

    /// The questions still waiting, oldest first: a window that was closed when they were
    /// asked shows them once it opens.
    pub fn pending(&self) -> Vec<ConfirmAsk> {
        let mut asks: Vec<ConfirmAsk> = self
            .answers
            .lock()
            .unwrap()
            .values()
            .map(|(ask, _)| ask.clone())
            .collect();
        asks.sort_by_key(|a| a.id);
        asks
    }

    fn wait(&self, ask: &ConfirmAsk) -> oneshot::Receiver<bool> {
        let (tx, rx) = oneshot::channel();
        self.answers
            .lock()
            .unwrap()
            .insert(ask.id, (ask.clone(), tx));
        rx
    }

    fn forget(&self, id: u64) -> bool {
        self.answers.lock().unwrap().remove(&id).is_some()
    }
}

/// Asks in the main window.
pub struct TrayConfirmer {
    app: AppHandle,
    waiting: Arc<Waiting>,
}

impl TrayConfirmer {
    pub fn new(app: AppHandle, waiting: Arc<Waiting>) -> TrayConfirmer {
        TrayConfirmer { app, waiting }
    }
}

/// Forgets the question and takes it down in the window when the wait ends without an answer.
struct TakeDown {
    app: AppHandle,
    waiting: Arc<Waiting>,
    id: u64,
}

impl Drop for TakeDown {
    fn drop(&mut self) {
        if self.waiting.forget(self.id) {
            let closed = serde_json::json!({ "id": self.id });
            if let Err(e) = self.app.emit_to(window::MAIN, CONFIRM_CLOSED_EVENT, closed) {
                tracing::warn!(error = %e, "cannot take a question down in the window");
            }
        }
    }
}

impl Confirmer for TrayConfirmer {
    fn confirm(&self, ask: ConfirmAsk) -> Pin<Box<dyn Future<Output = bool> + Send>> {
        let id = ask.id;
        let answer = self.waiting.wait(&ask);
        window::reveal(&self.app);
        // A window created just now is still loading and misses this event; it reads the
        // waiting questions (`confirm_pending`) once it listens.
        if let Err(e) = self.app.emit_to(window::MAIN, CONFIRM_EVENT, &ask) {
            tracing::warn!(error = %e, "cannot ask in the window; the request is denied");
            self.waiting.forget(id);
            return Box::pin(async { false });
        }
        let take_down = TakeDown {
            app: self.app.clone(),
            waiting: self.waiting.clone(),
            id,
        };
        Box::pin(async move {
            let allowed = answer.await.unwrap_or(false);
            drop(take_down);
            allowed
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask(id: u64) -> ConfirmAsk {
        ConfirmAsk {
            id,
            method: "token".into(),
            what: "a Snowflake token for role ANALYST".into(),
            pid: None,
            process: None,
            timeout_secs: 60,
        }
    }

    #[tokio::test]
    async fn an_answer_reaches_its_question_once_and_a_forgotten_one_goes_nowhere() {
        let waiting = Waiting::default();
        let first = waiting.wait(&ask(1));
        let second = waiting.wait(&ask(2));
        assert_eq!(
            waiting.pending().iter().map(|a| a.id).collect::<Vec<_>>(),
            [1, 2]
        );
        assert!(waiting.answer(2, false));
        assert!(waiting.answer(1, true));
        assert!(first.await.unwrap());
        assert!(!second.await.unwrap());
        // Answered already, or never asked.
        assert!(!waiting.answer(1, true));
        assert!(!waiting.answer(9, true));
        assert!(waiting.pending().is_empty());
        let third = waiting.wait(&ask(3));
        assert!(waiting.forget(3));
        assert!(!waiting.answer(3, true));
        assert!(third.await.is_err());
    }
}
