//! The team server benchmark: the HTTP API against the in-process path, and SSE fan-out.
//!
//! Run it with `scripts/bench-server` (which runs `cargo bench -p snowgate-server --bench
//! server`). It starts the same real parts the tests use (the rig's IdP over TLS, a real
//! PostgreSQL, the server in process over TLS; see `tests/support`) and prints a Markdown
//! table:
//!
//! 1. **Request + approve pairs per second**: `--pairs` access requests by alice (ANALYST, one
//!    hour), each approved by bob, `--concurrency` pairs in flight. Through the HTTP API (TLS,
//!    bearer-token verification, JSON, rate limiter, `GrantOps` over `PgLedger`) and, in the
//!    same run against the same database, the direct path: `GrantOps` over its own `PgLedger`
//!    (the same pool size as the server's) called in process, so the ratio is what HTTP, TLS
//!    and authentication add. Runs alternate direct/HTTP (`--rounds`) to spread drift; the
//!    table gives the median and the range. Every write takes the ledger's one lock (the audit
//!    chain's head), so with several in flight the database, not HTTP, sets the pace; each
//!    round therefore also runs a quarter as many pairs one at a time, whose latency shows
//!    what the HTTP path adds to a pair.
//! 2. **SSE fan-out**: `--subscribers` event streams opened as bob (an approver of ANALYST, so
//!    each receives alice's `requested` event), then one request is made; for each subscriber
//!    the time from the POST's response to the event's arrival at the client is taken (p50, p95,
//!    max, and until all had it). Repeated `--sse-rounds` times on the same streams. Arrival is
//!    when the client's per-stream task has parsed the event and handed it on, so the figures
//!    include the client's TLS decryption and parsing, on the same two cores as the server.
//!
//! Everything (server, hub, clients) runs on one multi-threaded tokio runtime in this
//! process; PostgreSQL and the IdP are separate processes on the same machine.
//!
//! Options: `--pairs N` (default 200), `--concurrency N` (default 8), `--rounds N` (default
//! 5), `--subscribers N` (default 1000), `--sse-rounds N` (default 3).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use snowgate_grants::{
    Actor, GrantDuration, GrantRequest, GrantState, PgLedger, Reason, RoleName, Subject,
    SystemClock,
};
use snowgate_server::ops::GrantOps;
use snowgate_server::ServerConfig;
use tokio::sync::{mpsc, Semaphore};

#[path = "../tests/support/mod.rs"]
mod support;

use support::{Options, Replica, Rig, Sse};

/// The server's default `[database] max_connections`; the direct path gets the same pool.
const POOL: u32 = 10;
/// How long one subscriber may wait for the event before the run fails.
const SSE_WAIT: Duration = Duration::from_secs(60);
/// How many event streams are being opened at once.
const OPENING_AT_ONCE: usize = 64;

struct Opts {
    pairs: usize,
    concurrency: usize,
    rounds: usize,
    subscribers: usize,
    sse_rounds: usize,
}

fn opts(args: &[String]) -> Opts {
    let val = |name: &str, default: usize| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    Opts {
        pairs: val("--pairs", 200).max(1),
        concurrency: val("--concurrency", 8).max(1),
        rounds: val("--rounds", 5).max(1),
        subscribers: val("--subscribers", 1000).max(1),
        sse_rounds: val("--sse-rounds", 3).max(1),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(run(opts(&args)));
}

async fn run(o: Opts) {
    let started = Instant::now();
    eprintln!("starting the rig (IdP, PostgreSQL) and the server…");
    // Tokens outlive the run; the rate limit is lifted (the benchmark is one person looping).
    let rig = Rig::start_with_ttl(Duration::from_secs(3600)).await;
    let options = Options {
        server_extra: "mutations_per_minute = 100000000\nmutation_burst = 100000000\n".into(),
        ..Options::default()
    };
    let server = Arc::new(rig.replica_with(&options).await);
    let (alice_token, bob_token) = tokio::join!(rig.token("alice"), rig.token("bob"));

    // The direct path: the server's grant operations under the same policy, on its own pool.
    let config_path = rig.dir.path().join("direct.toml");
    std::fs::write(&config_path, rig.config_text(0, &options)).unwrap();
    let config = ServerConfig::load(&config_path).expect("the bench config loads");
    let policy = config.policy().expect("the bench roles are valid");
    let ledger = PgLedger::connect_with(&rig.pg.url(), POOL)
        .await
        .expect("connecting to the rig's PostgreSQL");
    let ops = GrantOps::new(ledger, policy, Arc::new(SystemClock));
    let alice = Actor::new(
        Subject::new("alice").unwrap(),
        Some("alice@example.test".into()),
        vec!["analysts".into()],
    );
    let bob = Actor::new(
        Subject::new("bob").unwrap(),
        Some("bob@example.test".into()),
        vec!["managers".into()],
    );

    // Warm both paths (JWKS fetch, pool connections, TLS sessions) before measuring.
    let _ = direct_pairs(&ops, &alice, &bob, o.concurrency * 2, o.concurrency).await;
    let _ = http_pairs(
        &server,
        &alice_token,
        &bob_token,
        o.concurrency * 2,
        o.concurrency,
    )
    .await;

    eprintln!(
        "request+approve: {} pairs, {} in flight, {} rounds each way…",
        o.pairs, o.concurrency, o.rounds
    );
    let (mut direct, mut http) = (Vec::new(), Vec::new());
    let (mut direct_lat, mut http_lat) = (Vec::new(), Vec::new());
    let (mut direct_one, mut http_one) = (Vec::new(), Vec::new());
    let serial = (o.pairs / 4).max(1);
    for round in 0..o.rounds {
        let d = direct_pairs(&ops, &alice, &bob, o.pairs, o.concurrency).await;
        let h = http_pairs(&server, &alice_token, &bob_token, o.pairs, o.concurrency).await;
        let d1 = direct_pairs(&ops, &alice, &bob, serial, 1).await;
        let h1 = http_pairs(&server, &alice_token, &bob_token, serial, 1).await;
        eprintln!(
            "  round {}: direct {:.0}/s, HTTP {:.0}/s; one at a time: direct {:.0}/s, HTTP {:.0}/s",
            round + 1,
            d.per_sec,
            h.per_sec,
            d1.per_sec,
            h1.per_sec
        );
        direct.push(d.per_sec);
        http.push(h.per_sec);
        direct_lat.extend(d.latencies);
        http_lat.extend(h.latencies);
        direct_one.extend(d1.latencies);
        http_one.extend(h1.latencies);
    }

    eprintln!("opening {} event streams as bob…", o.subscribers);
    let opening = Instant::now();
    let mut streams = open_streams(&server, &bob_token, o.subscribers).await;
    let open_secs = opening.elapsed().as_secs_f64();
    eprintln!("  open in {open_secs:.2} s");
    let mut fanouts = Vec::new();
    for round in 0..o.sse_rounds {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (f, back) = fan_out(&server, &alice_token, streams).await;
        streams = back;
        eprintln!(
            "  event {}: p50 {} p95 {} max {} (all {} of {} had it; {} before the POST returned)",
            round + 1,
            ms(f.p50),
            ms(f.p95),
            ms(f.max),
            f.received,
            o.subscribers,
            f.early
        );
        fanouts.push(f);
    }
    drop(streams);

    let (dm, hm) = (median(&direct), median(&http));
    let row = |a: String, b: String, c: String, d: String| println!("| {a} | {b} | {c} | {d} |");
    println!();
    println!("| Measure | Direct (in process) | Through the HTTP API | HTTP vs direct |");
    println!("| --- | --- | --- | --- |");
    row(
        format!(
            "Request+approve pairs/s ({} pairs, {} in flight, median of {})",
            o.pairs, o.concurrency, o.rounds
        ),
        format!("{dm:.0} ({})", range(&direct)),
        format!("{hm:.0} ({})", range(&http)),
        format!("{:.2}", hm / dm),
    );
    row(
        "One pair (request, then approve), latency p50 / p95".into(),
        format!(
            "{} / {}",
            ms(pct(&mut direct_lat, 0.50)),
            ms(pct(&mut direct_lat, 0.95))
        ),
        format!(
            "{} / {}",
            ms(pct(&mut http_lat, 0.50)),
            ms(pct(&mut http_lat, 0.95))
        ),
        String::new(),
    );
    let (d1, h1) = (pct(&mut direct_one, 0.50), pct(&mut http_one, 0.50));
    row(
        format!(
            "One pair at a time ({serial} pairs × {}), latency p50 / p95",
            o.rounds
        ),
        format!("{} / {}", ms(d1), ms(pct(&mut direct_one, 0.95))),
        format!("{} / {}", ms(h1), ms(pct(&mut http_one, 0.95))),
        format!("+{} a pair (two calls)", ms(h1.saturating_sub(d1))),
    );
    println!();
    println!(
        "| SSE: one event to {} subscribers, from the POST's response | p50 | p95 | max = all had it |",
        o.subscribers
    );
    println!("| --- | --- | --- | --- |");
    for (i, f) in fanouts.iter().enumerate() {
        row(
            format!(
                "Event {} (POST took {}{})",
                i + 1,
                ms(f.post),
                if f.early > 0 {
                    format!("; {} had it before it returned", f.early)
                } else {
                    String::new()
                }
            ),
            ms(f.p50),
            ms(f.p95),
            ms(f.max),
        );
    }
    println!();
    println!(
        "Opening the {} event streams (TLS, token check, subscription, {} at once) took {open_secs:.2} s. \
         Server, clients and load share this machine's {} cores with PostgreSQL and the IdP; \
         whole run {:.0} s.",
        o.subscribers,
        OPENING_AT_ONCE,
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        started.elapsed().as_secs_f64()
    );

    if let Ok(Replica {
        server: Some(s), ..
    }) = Arc::try_unwrap(server)
    {
        s.shutdown().await;
    }
    drop(ops);
    drop(rig);
}

struct PairRun {
    per_sec: f64,
    latencies: Vec<Duration>,
}

/// `n` request+approve pairs through `GrantOps` in process, `conc` at a time.
async fn direct_pairs(
    ops: &GrantOps,
    alice: &Actor,
    bob: &Actor,
    n: usize,
    conc: usize,
) -> PairRun {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..conc {
        let (ops, alice, bob, next) = (ops.clone(), alice.clone(), bob.clone(), next.clone());
        tasks.spawn(async move {
            let mut lat = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let t = Instant::now();
                let req = GrantRequest {
                    role: RoleName::new("ANALYST").unwrap(),
                    duration: GrantDuration::from_secs(3600).unwrap(),
                    reason: Reason::new("quarterly numbers").unwrap(),
                    ticket: None,
                };
                let g = ops.request(&alice, req).await.expect("direct request");
                assert_eq!(g.state(), GrantState::Pending);
                let g = ops
                    .approve(&bob, g.id(), None)
                    .await
                    .expect("direct approval");
                assert_eq!(g.state(), GrantState::Active);
                lat.push(t.elapsed());
            }
            lat
        });
    }
    finish(tasks, start, n).await
}

/// `n` request+approve pairs through the HTTP API, `conc` at a time.
async fn http_pairs(server: &Replica, alice: &str, bob: &str, n: usize, conc: usize) -> PairRun {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    // The tasks borrow nothing: the client and URL are cloned in.
    for _ in 0..conc {
        let (http, url, alice, bob, next) = (
            server.http.clone(),
            server.url.clone(),
            alice.to_string(),
            bob.to_string(),
            next.clone(),
        );
        tasks.spawn(async move {
            let mut lat = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let t = Instant::now();
                let r = http
                    .post(format!("{url}/v1/requests"))
                    .bearer_auth(&alice)
                    .json(&json!({ "role": "ANALYST", "duration_secs": 3600, "reason": "quarterly numbers" }))
                    .send()
                    .await
                    .expect("POST /v1/requests");
                assert_eq!(r.status(), StatusCode::CREATED);
                let g: serde_json::Value = r.json().await.expect("the request's grant");
                assert_eq!(g["grant"]["state"], "pending");
                let id = g["grant"]["id"].as_str().unwrap().to_string();
                let r = http
                    .post(format!("{url}/v1/grants/{id}/approve"))
                    .bearer_auth(&bob)
                    .json(&json!({}))
                    .send()
                    .await
                    .expect("POST approve");
                assert_eq!(r.status(), StatusCode::OK);
                let g: serde_json::Value = r.json().await.expect("the approved grant");
                assert_eq!(g["grant"]["state"], "active");
                lat.push(t.elapsed());
            }
            lat
        });
    }
    finish(tasks, start, n).await
}

async fn finish(
    mut tasks: tokio::task::JoinSet<Vec<Duration>>,
    start: Instant,
    n: usize,
) -> PairRun {
    let mut latencies = Vec::with_capacity(n);
    while let Some(r) = tasks.join_next().await {
        latencies.extend(r.expect("a pair worker panicked"));
    }
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(latencies.len(), n);
    PairRun {
        per_sec: n as f64 / secs,
        latencies,
    }
}

/// Opens `n` event streams as the holder of `token`, [`OPENING_AT_ONCE`] at a time.
async fn open_streams(server: &Arc<Replica>, token: &str, n: usize) -> Vec<Sse> {
    let gate = Arc::new(Semaphore::new(OPENING_AT_ONCE));
    let mut tasks = Vec::with_capacity(n);
    for _ in 0..n {
        let permit = gate.clone().acquire_owned().await.unwrap();
        let (server, token) = (server.clone(), token.to_string());
        tasks.push(tokio::spawn(async move {
            let sse = server.events(&token, None).await;
            drop(permit);
            sse
        }));
    }
    let mut streams = Vec::with_capacity(n);
    for t in tasks {
        streams.push(t.await.expect("opening an event stream"));
    }
    streams
}

struct FanOut {
    post: Duration,
    p50: Duration,
    p95: Duration,
    max: Duration,
    received: usize,
    early: usize,
}

/// One request by alice while every stream waits for it; hands the streams back.
async fn fan_out(server: &Replica, alice: &str, streams: Vec<Sse>) -> (FanOut, Vec<Sse>) {
    let n = streams.len();
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, String)>();
    let waiters: Vec<_> = streams
        .into_iter()
        .map(|mut sse| {
            let tx = tx.clone();
            tokio::spawn(async move {
                let deadline = Instant::now() + SSE_WAIT;
                loop {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match sse.next(left).await {
                        Some(ev) if ev.kind == "requested" => {
                            let _ = tx.send((Instant::now(), ev.grant()));
                            break;
                        }
                        Some(_) => continue,
                        None => break,
                    }
                }
                sse
            })
        })
        .collect();
    drop(tx);
    // Let every waiter reach its first poll.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let sent = Instant::now();
    let reply = server
        .post(
            "/v1/requests",
            alice,
            json!({ "role": "ANALYST", "duration_secs": 3600, "reason": "quarterly numbers" }),
        )
        .await;
    let returned = Instant::now();
    assert_eq!(reply.status, StatusCode::CREATED, "{reply:?}");
    let id = reply.json["grant"]["id"].as_str().unwrap().to_string();

    let mut arrivals = Vec::with_capacity(n);
    while let Some((at, grant)) = rx.recv().await {
        assert_eq!(grant, id, "a subscriber got another grant's event");
        arrivals.push(at);
    }
    let mut back = Vec::with_capacity(n);
    for w in waiters {
        back.push(w.await.expect("an SSE waiter panicked"));
    }
    assert_eq!(
        arrivals.len(),
        n,
        "only {} of {n} subscribers got the event within {SSE_WAIT:?}",
        arrivals.len()
    );
    let early = arrivals.iter().filter(|a| **a < returned).count();
    let mut lat: Vec<Duration> = arrivals
        .iter()
        .map(|a| a.saturating_duration_since(returned))
        .collect();
    let f = FanOut {
        post: returned - sent,
        p50: pct(&mut lat, 0.50),
        p95: pct(&mut lat, 0.95),
        max: pct(&mut lat, 1.0),
        received: arrivals.len(),
        early,
    };
    (f, back)
}

/// The `q` quantile (nearest rank) of `v`.
fn pct(v: &mut [Duration], q: f64) -> Duration {
    v.sort_unstable();
    let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
    v[i]
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        (s[m - 1] + s[m]) / 2.0
    }
}

fn range(v: &[f64]) -> String {
    let lo = v.iter().cloned().fold(f64::INFINITY, f64::min);
    let hi = v.iter().cloned().fold(0.0, f64::max);
    format!("{lo:.0}–{hi:.0}")
}

fn ms(d: Duration) -> String {
    let m = d.as_secs_f64() * 1000.0;
    if m < 10.0 {
        format!("{m:.2} ms")
    } else {
        format!("{m:.1} ms")
    }
}
