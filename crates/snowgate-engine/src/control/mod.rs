//! The control socket: how the CLI (and anything else of the same OS user) talks to the broker.
//!
//! One broker runs per OS user, in `snowgate up` or inside the tray app. It listens on a Unix
//! socket at `$XDG_RUNTIME_DIR/snowgate/control.sock`, in a directory of mode 0700, with the
//! socket itself at 0600. Every connection's peer credentials are checked, and a process of
//! another OS user is refused even if the file permissions were loosened.
//!
//! The protocol is newline-delimited JSON: one [`Request`] per line, answered by one
//! [`Response`] line, in order, on a connection that may carry many requests.
//!
//! The requests that hand out a secret (`token`, `tool_secret_create`, `agent_add`) may first need the
//! person's confirmation in the tray; see [`ConfirmGate`].

pub mod answers;
mod client;
mod confirm;
mod protocol;
mod server;

pub use client::{ConnectError, ControlClient};
pub use confirm::{ConfirmAsk, ConfirmGate, Confirmer, DEFAULT_CONFIRM_TIMEOUT};
pub use protocol::{ControlError, ErrorKind, PresentedSecret, Request, Response};
pub use server::{default_socket_path, ControlServer, Handler};
