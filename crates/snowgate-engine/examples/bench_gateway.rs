//! The gateway as the broker runs it, for `scripts/bench-gateway`: the real [`Gateway`] with
//! the engine's [`GatewayAudit`] over the solo grants service and its SQLite ledger (group
//! commit and all), one real grant (auto-approved), in front of an upstream given on the
//! command line.
//!
//! `bench_gateway UPSTREAM_URL DATA_DIR` prints `listening=ADDR` once it serves. On SIGTERM it
//! stops, reads the ledger back and prints `statements_recorded=N` (the `session.statement`
//! records), then exits.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use secrecy::SecretString;
use snowgate_engine::backend::GrantsBackend;
use snowgate_engine::enforcement::GatewayAudit;
use snowgate_gateway::{
    AuthorizeFuture, Authorizer, Gateway, GatewayConfig, LoginContext, LoginGrant,
};
use snowgate_grants::{
    Actor, AuditQuery, GrantDuration, GrantRequest, Grants, Policy, Reason, RoleName, RolePolicy,
    SqliteLedger, Subject, SystemClock,
};

/// Lets every login in as the one grant.
struct OneGrant {
    grant_id: String,
}

impl Authorizer for OneGrant {
    fn authorize_login(&self, _login: LoginContext) -> AuthorizeFuture<'_> {
        Box::pin(async move {
            Ok(LoginGrant {
                role: "ANALYST".into(),
                account: None,
                grant_id: self.grant_id.clone(),
                login_name: "BENCH".into(),
                upstream_token: SecretString::from("bench-upstream-token"),
                grant_ends_at: SystemTime::now() + Duration::from_secs(3600),
                tool_secret_name: None,
                policy: Default::default(),
            })
        })
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The broker's runtime: tokio's multi-threaded default. BENCH_WORKERS=N changes the
    // worker count, for comparison.
    let workers: Option<usize> = std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|v| v.parse().ok());
    let mut rt = match workers {
        Some(0) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    if let Some(n) = workers.filter(|n| *n > 0) {
        rt.worker_threads(n);
    }
    rt.enable_all().build()?.block_on(run())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (upstream, data) = match args.as_slice() {
        [_, u, d] => (u.clone(), std::path::PathBuf::from(d)),
        _ => return Err("usage: bench_gateway UPSTREAM_URL DATA_DIR".into()),
    };
    std::fs::create_dir_all(&data)?;
    let ledger = Arc::new(SqliteLedger::open_in(&data).await?);
    let hour = GrantDuration::new(Duration::from_secs(3600))?;
    let policy = Policy::new(vec![RolePolicy {
        name: RoleName::new("ANALYST")?,
        account: None,
        description: "benchmark".into(),
        max_duration: hour,
        approver_groups: vec![],
        approvals_required: NonZeroU32::new(1).expect("one"),
        auto_approve_up_to: Some(hour),
        pending_timeout: hour,
        extensions_allowed: false,
        statements: Default::default(),
        allow_list_stage: false,
    }])?;
    let grants = Grants::start(ledger, Arc::new(SystemClock), policy, None).await?;
    let who = Actor::new(Subject::new("bench")?, None, vec![]);
    let grant = grants
        .request(
            &who,
            GrantRequest {
                role: RoleName::new("ANALYST")?,
                duration: hour,
                reason: Reason::new("benchmark")?,
                ticket: None,
            },
        )
        .await?;
    let audit = Arc::new(GatewayAudit::new(Ok(GrantsBackend::Solo(grants.clone()))));
    let mut config = GatewayConfig::new(
        vec!["127.0.0.1:0".parse()?],
        upstream.parse()?,
        "bench".to_string(),
    );
    // BENCH_GATEWAY_THREADS=N: serving threads other than the default (one per core, at most
    // four), for comparison.
    // The script passes it on empty when it is unset.
    let threads = std::env::var("BENCH_GATEWAY_THREADS").unwrap_or_default();
    if !threads.trim().is_empty() {
        config.serving_threads = threads
            .trim()
            .parse()
            .map_err(|_| format!("BENCH_GATEWAY_THREADS={threads:?} is not a number of threads"))?;
    }
    let authorizer = Arc::new(OneGrant {
        grant_id: grant.id().as_str().to_string(),
    });
    // BENCH_AUDIT=off: no audit log at all, to see what the ledger costs. Never the figures
    // the README reports.
    let gateway = if std::env::var("BENCH_AUDIT").as_deref() == Ok("off") {
        Gateway::bind(config, authorizer)?
    } else {
        Gateway::bind_audited(config, authorizer, audit)?
    };
    println!("listening={}", gateway.local_addrs()[0]);
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    gateway
        .serve(async move {
            term.recv().await;
        })
        .await?;
    let mut n = 0u64;
    let mut after = None;
    loop {
        let page = grants
            .audit(&AuditQuery {
                after_seq: after,
                limit: Some(10_000),
                ..AuditQuery::default()
            })
            .await?;
        n += page
            .iter()
            .filter(|r| r.kind == "session.statement")
            .count() as u64;
        match page.last() {
            Some(last) if page.len() == 10_000 => after = Some(last.seq),
            _ => break,
        }
    }
    println!("statements_recorded={n}");
    Ok(())
}
