//! What every handler can reach: the grant operations, the caller authenticator, the signing keys,
//! the rate limiter and the event hub. Cheap to clone; everything is shared.

use std::sync::Arc;

use crate::auth::Authenticator;
use crate::checkpoint::Checkpointer;
use crate::events::EventHub;
use crate::minting::{MintPolicy, SigningKeys};
use crate::ops::GrantOps;
use crate::rate_limit::RateLimiter;

/// The handlers' shared state.
#[derive(Clone)]
pub struct AppState {
    pub ops: GrantOps,
    /// Who is calling: IdP access tokens and/or the server's own session tokens.
    pub auth: Arc<Authenticator>,
    pub keys: Arc<SigningKeys>,
    pub mint: Arc<MintPolicy>,
    pub limiter: Arc<RateLimiter>,
    /// A separate, larger budget for desktop audit reports (`POST /v1/audit/records`).
    pub audit_limiter: Arc<RateLimiter>,
    pub hub: Arc<EventHub>,
    /// This replica's signed checkpoints of the audit chain's head.
    pub checkpoints: Arc<Checkpointer>,
    /// Groups whose members may read the audit log.
    pub audit_readers: Arc<Vec<String>>,
    /// How old a record a desktop reports may be (`[audit] report_max_age`).
    pub report_max_age: std::time::Duration,
    /// The session reaper's state, when `[reaper]` is configured.
    pub reaper: Option<Arc<crate::reaper::ReaperStatus>>,
}
