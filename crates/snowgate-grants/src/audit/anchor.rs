//! The copy of the chain's head kept outside the database.
//!
//! Whoever can write the database can cut records off its end and leave a valid chain. The
//! anchor defeats that: after every append the head (last `seq` and `hash`) is also written
//! somewhere the database cannot reach: the OS keyring in solo mode, the team server in team
//! mode. Verification then requires the log to contain the anchored record unchanged.
//!
//! The anchor is written after the database commit, so after a crash between the two it may
//! lag by a few records. That is safe: a lagging anchor still names a record that must exist.

use std::sync::Mutex;

use async_trait::async_trait;

use super::chain::ChainHead;

/// Why the anchor could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("audit anchor ({store}): {message}")]
pub struct AnchorError {
    /// Where the anchor lives, for the message ("OS keyring").
    pub store: String,
    /// What went wrong.
    pub message: String,
}

/// Where the chain's head is kept outside the database.
#[async_trait]
pub trait AnchorStore: Send + Sync {
    /// The anchored head, or `None` if nothing was anchored yet.
    async fn get(&self) -> Result<Option<ChainHead>, AnchorError>;

    /// Replaces the anchored head. Callers only ever move it forward.
    async fn set(&self, head: ChainHead) -> Result<(), AnchorError>;
}

/// An anchor in memory, for tests and for running without a keyring.
#[derive(Debug, Default)]
pub struct MemoryAnchor {
    head: Mutex<Option<ChainHead>>,
}

impl MemoryAnchor {
    /// An empty anchor.
    pub fn new() -> MemoryAnchor {
        MemoryAnchor::default()
    }
}

#[async_trait]
impl AnchorStore for MemoryAnchor {
    async fn get(&self) -> Result<Option<ChainHead>, AnchorError> {
        Ok(*self.head.lock().expect("anchor lock"))
    }

    async fn set(&self, head: ChainHead) -> Result<(), AnchorError> {
        let mut h = self.head.lock().expect("anchor lock");
        if h.is_none_or(|old| old.seq <= head.seq) {
            *h = Some(head);
        }
        Ok(())
    }
}
