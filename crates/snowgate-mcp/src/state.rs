//! What all of a process's MCP sessions share: the link to the broker, the gateway session of
//! each (agent, role), and which agent ran each query (so `query_status` and `cancel_query`
//! act only on the caller's own queries, in the session that ran them).

use std::collections::HashMap;
use std::sync::Arc;

use secrecy::SecretString;

use crate::broker::BrokerLink;
use crate::snowflake::{Gateway, Session};

/// The agent's secret, as the caller presented it (stdio: from the keyring or the
/// environment; HTTP: the bearer). Never printed.
#[derive(Clone)]
pub struct AgentSecret(pub SecretString);

impl std::fmt::Debug for AgentSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentSecret([redacted])")
    }
}

/// What all of a process's MCP sessions share: the broker link, the gateway sessions and the
/// queries they ran.
pub struct State {
    broker: BrokerLink,
    /// The agent's secret for stdio; `None` over HTTP, where each request carries its own.
    pub(crate) fixed: Option<AgentSecret>,
    gateway: tokio::sync::Mutex<Option<(String, u16, Gateway)>>,
    sessions: tokio::sync::Mutex<HashMap<(String, String), Arc<Session>>>,
    /// Query id → (agent, role) of the session that ran it; the newest [`KEPT_QUERIES`].
    queries: std::sync::Mutex<Queries>,
}

/// How many query ids are remembered for `query_status` and `cancel_query`.
const KEPT_QUERIES: usize = 4096;

#[derive(Default)]
struct Queries {
    by_id: HashMap<String, (String, String)>,
    order: std::collections::VecDeque<String>,
}

impl State {
    pub fn new(broker: BrokerLink, fixed: Option<AgentSecret>) -> Arc<State> {
        Arc::new(State {
            broker,
            fixed,
            gateway: tokio::sync::Mutex::new(None),
            sessions: tokio::sync::Mutex::new(HashMap::new()),
            queries: std::sync::Mutex::new(Queries::default()),
        })
    }

    /// The broker link.
    pub fn broker(&self) -> &BrokerLink {
        &self.broker
    }

    /// Closes every gateway session this process opened.
    pub async fn close_sessions(&self) {
        let sessions: Vec<Arc<Session>> =
            self.sessions.lock().await.drain().map(|(_, s)| s).collect();
        let gateway = self
            .gateway
            .lock()
            .await
            .as_ref()
            .map(|(_, _, g)| g.clone());
        if let Some(gateway) = gateway {
            for s in sessions {
                gateway.close(&s).await;
            }
        }
    }

    pub(crate) async fn gateway(&self) -> Result<Gateway, String> {
        let info = self.broker.connect_info().await?;
        let mut slot = self.gateway.lock().await;
        match &*slot {
            Some((host, port, g)) if *host == info.host && *port == info.port => Ok(g.clone()),
            _ => {
                let g = Gateway::new(&info.host, info.port, &info.account, &info.user);
                *slot = Some((info.host.clone(), info.port, g.clone()));
                self.sessions.lock().await.clear();
                Ok(g)
            }
        }
    }

    pub(crate) async fn session(
        &self,
        gateway: &Gateway,
        agent: &str,
        secret: &AgentSecret,
        role: &str,
        fresh: bool,
    ) -> Result<Arc<Session>, String> {
        let key = (agent.to_string(), role.to_ascii_uppercase());
        let mut sessions = self.sessions.lock().await;
        if !fresh {
            if let Some(s) = sessions.get(&key) {
                return Ok(s.clone());
            }
        }
        let session = Arc::new(
            gateway
                .login(role, &secret.0)
                .await
                .map_err(|e| format!("Snowgate's gateway refused the login as {role}: {e}"))?,
        );
        sessions.insert(key, session.clone());
        Ok(session)
    }

    pub(crate) fn remember(&self, query_id: &str, agent: &str, role: &str) {
        let mut queries = self.queries.lock().expect("queries lock");
        let known = queries
            .by_id
            .insert(query_id.to_string(), (agent.to_string(), role.to_string()))
            .is_some();
        if !known {
            queries.order.push_back(query_id.to_string());
        }
        while queries.order.len() > KEPT_QUERIES {
            if let Some(old) = queries.order.pop_front() {
                queries.by_id.remove(&old);
            }
        }
    }

    pub(crate) fn ran_by(&self, query_id: &str, agent: &str) -> Option<String> {
        let queries = self.queries.lock().expect("queries lock");
        match queries.by_id.get(query_id) {
            Some((a, role)) if a == agent => Some(role.clone()),
            _ => None,
        }
    }
}
