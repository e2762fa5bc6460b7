//! Shutdown, told to every task that must stop: the accept loops, the sweeper, and (through
//! hyper's graceful shutdown) the open connections.
//!
//! One `watch` channel: [`ShutdownSignal::trigger`] flips it once; each task holds a
//! [`Shutdown`] and awaits [`Shutdown::recv`] in its `select!`.

use tokio::sync::watch;

/// The sending side: trigger once.
pub(crate) struct ShutdownSignal(watch::Sender<bool>);

/// The receiving side, cloned into every task.
#[derive(Clone)]
pub(crate) struct Shutdown(watch::Receiver<bool>);

pub(crate) fn channel() -> (ShutdownSignal, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownSignal(tx), Shutdown(rx))
}

impl ShutdownSignal {
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

impl Shutdown {
    /// Resolves once shutdown is triggered (at once if it already was).
    pub async fn recv(&mut self) {
        let _ = self.0.wait_for(|down| *down).await;
    }
}
