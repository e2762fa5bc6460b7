//! The broker: the long-running service for one OS user, behind the control socket.
//!
//! `snowgate up` and the tray app both run a [`Broker`]. It owns the [`Engine`] and answers
//! [`Request`]s from the control socket; the tray app calls the same methods directly.

use std::sync::Arc;

use crate::control::{ControlError, ErrorKind, Handler, Request};
use crate::engine::Engine;

/// The running broker.
pub struct Broker {
    engine: Engine,
}

impl Broker {
    pub fn new(engine: Engine) -> Arc<Broker> {
        Arc::new(Broker { engine })
    }

    /// The engine the broker runs.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }
}

fn to_value<T: serde::Serialize>(value: &T) -> Result<serde_json::Value, ControlError> {
    serde_json::to_value(value).map_err(|e| ControlError::new(ErrorKind::Internal, e.to_string()))
}

impl Handler for Broker {
    async fn handle(&self, request: Request) -> Result<serde_json::Value, ControlError> {
        match request {
            Request::Status => to_value(&self.engine.status()),
        }
    }
}
