//! The rig for gateway tests: the real IdP and Snowflake front, a [`RigAuthorizer`] signed in
//! as `alice`, and a gateway in front of the front.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use snowgate_gateway::{AuditLog, Gateway, GatewayConfig, GatewayEvent, TracingOnly};
use snowgate_rig::idp::{Idp, IdpOptions};
use snowgate_rig::snowflake::{FrontSession, Snowflake, SnowflakeOptions};
use snowgate_rig::TestCa;
use tokio::sync::broadcast;

pub use crate::rig_authorizer::RigAuthorizer;

pub const USER: &str = "alice";
/// The password tools type into their connection settings: it must never reach Snowflake.
pub const TOOL_PASSWORD: &str = "tool-typed-password-5f3a";

pub struct Rig {
    pub idp: Arc<Idp>,
    pub sf: Snowflake,
    pub auth: Arc<RigAuthorizer>,
    pub dir: tempfile::TempDir,
}

pub async fn rig(tweak: impl FnOnce(&mut SnowflakeOptions)) -> Rig {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "snowgate_gateway=info".into()),
        )
        .with_test_writer()
        .try_init();
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::generate(dir.path()).unwrap();
    let idp = Arc::new(Idp::start(&ca, IdpOptions::default()).await.unwrap());
    let mut opts = SnowflakeOptions::trusting(&idp);
    tweak(&mut opts);
    let sf = Snowflake::start(opts).await.unwrap();
    let auth = RigAuthorizer::sign_in(idp.clone(), USER).await.unwrap();
    Rig { idp, sf, auth, dir }
}

/// A gateway serving on its own task; dropping it stops it.
pub struct RunningGateway {
    pub gw: Gateway,
    pub addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl RunningGateway {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn events(&self) -> broadcast::Receiver<GatewayEvent> {
        self.gw.subscribe()
    }

    /// Stops the gateway and waits for it (it closes every upstream session).
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

pub fn start_gateway_to(
    upstream: &str,
    auth: Arc<RigAuthorizer>,
    tweak: impl FnOnce(&mut GatewayConfig),
) -> RunningGateway {
    start_audited_gateway_to(upstream, auth, Arc::new(TracingOnly), tweak)
}

pub fn start_audited_gateway_to(
    upstream: &str,
    auth: Arc<RigAuthorizer>,
    audit: Arc<dyn AuditLog>,
    tweak: impl FnOnce(&mut GatewayConfig),
) -> RunningGateway {
    let mut config = GatewayConfig::new(
        vec!["127.0.0.1:0".parse().unwrap()],
        upstream.parse().unwrap(),
        "rig",
    );
    tweak(&mut config);
    let gw = Gateway::bind_audited(config, auth, audit).unwrap();
    let addr = gw.local_addrs()[0];
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let serving = gw.clone();
    let task = tokio::spawn(async move {
        serving
            .serve(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    RunningGateway {
        gw,
        addr,
        stop: Some(tx),
        task: Some(task),
    }
}

impl Rig {
    pub fn gateway(&self) -> RunningGateway {
        start_gateway_to(&self.sf.url(), self.auth.clone(), |_| {})
    }

    pub fn gateway_with(&self, tweak: impl FnOnce(&mut GatewayConfig)) -> RunningGateway {
        start_gateway_to(&self.sf.url(), self.auth.clone(), tweak)
    }

    pub async fn sessions(&self) -> Vec<FrontSession> {
        self.sf.sessions().await.unwrap()
    }

    pub async fn only_session(&self) -> FrontSession {
        let sessions = self.sessions().await;
        assert_eq!(sessions.len(), 1, "{sessions:#?}");
        sessions.into_iter().next().unwrap()
    }
}

pub fn ok(result: &Value) {
    assert_eq!(
        result["ok"], true,
        "the client reported a failure: {result:#}"
    );
}

/// The Python connector's errno and message of a failed run.
pub fn py_error(result: &Value) -> (i64, String) {
    assert_eq!(result["ok"], false, "expected a refusal: {result:#}");
    (
        result["error"]["errno"]
            .as_i64()
            .unwrap_or_else(|| panic!("no errno in {result:#}")),
        result["error"]["msg"].as_str().unwrap_or("").to_string(),
    )
}

/// Every event received so far.
pub fn drain(rx: &mut broadcast::Receiver<GatewayEvent>) -> Vec<GatewayEvent> {
    let mut v = Vec::new();
    while let Ok(e) = rx.try_recv() {
        v.push(e);
    }
    v
}

/// Waits until `f` holds, polling every 50 ms, up to `within`.
pub async fn eventually<F, Fut>(within: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
