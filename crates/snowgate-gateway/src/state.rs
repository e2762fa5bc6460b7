//! What every request handler shares: configuration, the authorizer, the handle table, the
//! upstream client and the event sink; and what each connection knows about its peer.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::authorizer::Authorizer;
use crate::config::GatewayConfig;
use crate::events::EventSink;
use crate::handle_table::HandleTable;
use crate::peer::PeerSocket;
use crate::upstream::Upstream;

/// The gateway's shared state, behind one `Arc`.
pub(crate) struct Shared {
    pub config: GatewayConfig,
    pub authorizer: Arc<dyn Authorizer>,
    pub table: HandleTable,
    pub upstream: Upstream,
    pub events: EventSink,
    /// The OS user the gateway serves (its own effective uid).
    pub uid: u32,
    /// Each agent's statements in the last minute, for its rate.
    pub rates: crate::statement_policy::AgentRates,
}

/// What the listener learned about a connection when it accepted it; every request on the
/// connection carries it as an extension.
#[derive(Debug, Clone)]
pub(crate) struct Connection {
    /// The tool's end.
    pub peer: SocketAddr,
    /// The gateway's end (its port is the one the Host header must name).
    pub local: SocketAddr,
    /// The peer's socket as the OS lists it (owner and inode); `None` when it could not be
    /// found or the OS does not tell.
    pub peer_socket: Option<PeerSocket>,
}
