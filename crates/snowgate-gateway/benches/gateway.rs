//! The gateway benchmark: the gateway against the direct path, in the same run.
//!
//! Run it with `cargo bench -p snowgate-gateway --bench gateway` (`scripts/bench-gateway` is the
//! comparison with nginx). It prints a Markdown table:
//!
//! 1. **Python connector** (5.x, the rig's real driver) against the rig's Snowflake front:
//!    small queries per second on one connection, direct vs through the gateway (target: a
//!    ratio of at least 0.95). Runs alternate direct/gateway to spread drift.
//! 2. **Rust load generator** against a fast local upstream stub (a tiny hyper server answering
//!    a canned query response), direct vs through the gateway: with one client the p50 and p99
//!    added latency (target: ≤ 100 µs at p50); with 16 and 64 concurrent clients the
//!    throughput ratio.
//! 3. **Memory**: the gateway's RSS idle, with 1,000 open sessions, and at its peak while
//!    streaming a 1 GB query answer from the stub (target: flat).
//!
//! The stub and the gateway run as separate processes (this binary, re-executed with
//! `--role stub` / `--role gateway`), so the gateway's RSS is its own. Generator, stub and
//! gateway share the machine's cores; on a 2-core machine they compete, which the table notes.
//!
//! Options: `--python-seconds N` (default 5), `--load-seconds N` (default 3), `--big-mib N`
//! (default 1024), `--skip-python`.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use secrecy::SecretString;
use snowgate_gateway::{
    AuthorizeFuture, Authorizer, Gateway, GatewayConfig, LoginContext, LoginGrant,
};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

#[path = "../tests/it/rig_authorizer.rs"]
mod rig_authorizer;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

struct Opts {
    python_seconds: f64,
    load_seconds: f64,
    big_mib: u64,
    skip_python: bool,
}

fn opts(args: &[String]) -> Opts {
    let val = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    Opts {
        python_seconds: val("--python-seconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(5.0),
        load_seconds: val("--load-seconds")
            .and_then(|v| v.parse().ok())
            .unwrap_or(3.0),
        big_mib: val("--big-mib")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1024),
        skip_python: args.iter().any(|a| a == "--skip-python"),
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let role = args
        .iter()
        .position(|a| a == "--role")
        .and_then(|i| args.get(i + 1))
        .cloned();
    match role.as_deref() {
        Some("stub") => single_thread().block_on(stub_main()),
        Some("gateway") => {
            let upstream = args
                .iter()
                .position(|a| a == "--upstream")
                .and_then(|i| args.get(i + 1))
                .expect("--upstream URL")
                .clone();
            let rt = if std::env::var("BENCH_GATEWAY_RUNTIME").as_deref() == Ok("current") {
                single_thread()
            } else {
                tokio::runtime::Runtime::new().unwrap()
            };
            rt.block_on(gateway_main(upstream))
        }
        _ => tokio::runtime::Runtime::new()
            .unwrap()
            .block_on(orchestrate(opts(&args))),
    }
}

fn single_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

// ---- the upstream stub ------------------------------------------------------------------------

const CANNED_QUERY_ANSWER: &str = r#"{"data":{"parameters":[{"name":"TIMEZONE","value":"Etc/UTC"}],"rowtype":[{"name":"1","database":"","schema":"","table":"","nullable":false,"type":"fixed","byteLength":null,"length":null,"scale":0,"precision":1,"collation":null}],"rowset":[["1"]],"total":1,"returned":1,"queryId":"01b0-0000-0000-0001","queryResultFormat":"json","finalDatabaseName":"DB","finalSchemaName":"PUBLIC","finalRoleName":"ANALYST","statementTypeId":4096,"version":1},"code":null,"message":null,"success":true}"#;

/// A query answer of `size` bytes, streamed in 64 KiB chunks from one shared buffer.
struct BigAnswer {
    remaining_rows: u64,
    chunk: Bytes,
    stage: u8,
}

impl BigAnswer {
    fn new(size: u64) -> BigAnswer {
        // One chunk is many rows: ["xxxx…"],
        let row = format!("[\"{}\"],", "x".repeat(250));
        let per_chunk = (64 * 1024) / row.len();
        let chunk = Bytes::from(row.repeat(per_chunk));
        BigAnswer {
            remaining_rows: size / chunk.len() as u64,
            chunk,
            stage: 0,
        }
    }
}

impl Body for BigAnswer {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let frame = match self.stage {
            0 => {
                self.stage = 1;
                Bytes::from_static(b"{\"data\":{\"rowtype\":[],\"rowset\":[")
            }
            1 if self.remaining_rows > 0 => {
                self.remaining_rows -= 1;
                self.chunk.clone()
            }
            1 => {
                self.stage = 2;
                Bytes::from_static(b"[\"end\"]],\"queryId\":\"01b0-big\"},\"success\":true}")
            }
            _ => return Poll::Ready(None),
        };
        Poll::Ready(Some(Ok(Frame::data(frame))))
    }
}

type StubBody = http_body_util::combinators::UnsyncBoxBody<Bytes, BoxError>;

async fn stub_handle(req: Request<Incoming>) -> Result<Response<StubBody>, BoxError> {
    static SESSIONS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let path = req.uri().path().to_string();
    let body = req.into_body().collect().await?.to_bytes();
    let full = |s: String| {
        Full::new(Bytes::from(s))
            .map_err(|n| match n {})
            .boxed_unsync()
    };
    let answer = if path == "/session/v1/login-request" {
        let n = SESSIONS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        full(format!(
            r#"{{"data":{{"token":"stub-st-{n}","masterToken":"stub-mt-{n}","validityInSeconds":3600,"masterValidityInSeconds":14400,"sessionId":{n},"sessionInfo":{{"roleName":"ANALYST"}},"parameters":[]}},"code":null,"message":null,"success":true}}"#
        ))
    } else if path == "/queries/v1/query-request" {
        let plain = if body.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(&body[..]), &mut out)?;
            out
        } else {
            body.to_vec()
        };
        let text = String::from_utf8_lossy(&plain);
        if let Some(i) = text.find("BIG_RESULT_") {
            let mib: u64 = text[i + 11..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect::<String>()
                .parse()
                .unwrap_or(1);
            BigAnswer::new(mib * 1024 * 1024)
                .map_err(|n| match n {})
                .boxed_unsync()
        } else {
            full(CANNED_QUERY_ANSWER.to_string())
        }
    } else {
        full(r#"{"data":null,"code":null,"message":null,"success":true}"#.to_string())
    };
    let mut resp = Response::new(answer);
    resp.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    Ok(resp)
}

async fn stub_main() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    println!("STUB READY http://{}", listener.local_addr().unwrap());
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        stream.set_nodelay(true).unwrap();
        tokio::spawn(async move {
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service_fn(stub_handle))
                .await;
        });
    }
}

// ---- the gateway process ----------------------------------------------------------------------

/// Allows every login with a fixed token (the stub checks none).
struct AllowAll;

impl Authorizer for AllowAll {
    fn authorize_login(&self, _login: LoginContext) -> AuthorizeFuture<'_> {
        Box::pin(async {
            Ok(LoginGrant {
                role: "ANALYST".into(),
                account: None,
                grant_id: "G-bench".into(),
                login_name: "bench".into(),
                upstream_token: SecretString::from("bench-token"),
                grant_ends_at: SystemTime::now() + Duration::from_secs(3600),
                tool_secret_name: None,
                policy: Default::default(),
            })
        })
    }
}

async fn gateway_main(upstream: String) {
    let config = GatewayConfig::new(
        vec!["127.0.0.1:0".parse().unwrap()],
        upstream.parse().unwrap(),
        "bench",
    );
    let gw = Gateway::bind(config, Arc::new(AllowAll)).unwrap();
    println!("GATEWAY READY http://{}", gw.local_addrs()[0]);
    gw.serve(std::future::pending()).await.unwrap();
}

// ---- the orchestrator and load generator ------------------------------------------------------

struct Child {
    child: tokio::process::Child,
    url: String,
}

impl Child {
    fn pid(&self) -> u32 {
        self.child.id().unwrap()
    }

    fn addr(&self) -> SocketAddr {
        self.url.trim_start_matches("http://").parse().unwrap()
    }
}

async fn spawn_self(args: &[&str], marker: &str) -> Child {
    let mut child = tokio::process::Command::new(std::env::current_exe().unwrap())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next_line().await.unwrap().expect("child exited");
        if let Some(rest) = line.strip_prefix(marker) {
            break rest.trim().to_string();
        }
    };
    Child { child, url }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// One keep-alive HTTP/1.1 connection of the load generator.
struct Conn {
    sender: hyper::client::conn::http1::SendRequest<Full<Bytes>>,
    host: String,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Conn {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        Conn {
            sender,
            host: addr.to_string(),
        }
    }

    /// POSTs and reads the whole answer; returns its size.
    async fn post(&mut self, path: &str, token: &str, body: Bytes) -> usize {
        let req = Request::post(path)
            .header("host", &self.host)
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .header("authorization", format!("Snowflake Token=\"{token}\""))
            .body(Full::new(body))
            .unwrap();
        self.sender.ready().await.unwrap();
        let resp = self.sender.send_request(req).await.unwrap();
        let mut body = resp.into_body();
        let mut n = 0;
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.unwrap().into_data() {
                n += data.len();
            }
        }
        n
    }
}

fn gzip(s: &str) -> Bytes {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(s.as_bytes()).unwrap();
    Bytes::from(e.finish().unwrap())
}

fn query_body(sql: &str) -> Bytes {
    gzip(&format!(
        r#"{{"sqlText":"{sql}","asyncExec":false,"sequenceId":1,"querySubmissionTime":1700000000000,"isInternal":false,"parameters":{{}},"queryContextDTO":{{"entries":[]}}}}"#
    ))
}

async fn login(addr: SocketAddr) -> String {
    let mut c = Conn::open(addr).await;
    let req = Request::post("/session/v1/login-request?roleName=ANALYST")
        .header("host", &c.host)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"data":{"CLIENT_APP_ID":"Bench","LOGIN_NAME":"x","PASSWORD":"y"}}"#,
        )))
        .unwrap();
    c.sender.ready().await.unwrap();
    let resp = c.sender.send_request(req).await.unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    v["data"]["token"]
        .as_str()
        .expect("a session handle")
        .to_string()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

async fn latencies(addr: SocketAddr, token: &str, n: usize) -> Vec<Duration> {
    let mut c = Conn::open(addr).await;
    let body = query_body("select 1");
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        c.post("/queries/v1/query-request?requestId=1", token, body.clone())
            .await;
        v.push(t.elapsed());
    }
    v
}

async fn throughput(addr: SocketAddr, token: &str, clients: usize, seconds: f64) -> f64 {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let body = query_body("select 1");
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let token = token.to_string();
        let body = body.clone();
        set.spawn(async move {
            let mut c = Conn::open(addr).await;
            let mut n = 0u64;
            while Instant::now() < deadline {
                c.post(
                    "/queries/v1/query-request?requestId=1",
                    &token,
                    body.clone(),
                )
                .await;
                n += 1;
            }
            n
        });
    }
    let mut total = 0;
    while let Some(n) = set.join_next().await {
        total += n.unwrap();
    }
    total as f64 / seconds
}

struct Row(String, String, String, String);

async fn orchestrate(o: Opts) {
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    eprintln!("starting the upstream stub and the gateway…");
    let stub = spawn_self(&["--role", "stub"], "STUB READY").await;
    let gateway = spawn_self(
        &["--role", "gateway", "--upstream", &stub.url],
        "GATEWAY READY",
    )
    .await;
    let (s_addr, g_addr) = (stub.addr(), gateway.addr());
    let token = login(g_addr).await;
    let mut rows = Vec::new();

    // Warm up both paths.
    latencies(s_addr, "direct", 500).await;
    latencies(g_addr, &token, 500).await;
    let rss_idle = rss_kib(gateway.pid());

    // One client: latency, in alternating blocks.
    let mut direct = Vec::new();
    let mut via = Vec::new();
    for _ in 0..5 {
        direct.extend(latencies(s_addr, "direct", 1000).await);
        via.extend(latencies(g_addr, &token, 1000).await);
    }
    direct.sort();
    via.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let (d50, d99, g50, g99) = (
        percentile(&direct, 0.5),
        percentile(&direct, 0.99),
        percentile(&via, 0.5),
        percentile(&via, 0.99),
    );
    rows.push(Row(
        "Stub, 1 client: latency p50".into(),
        format!("{:.0} µs", us(d50)),
        format!("{:.0} µs", us(g50)),
        format!("+{:.0} µs added (target ≤ 100 µs)", us(g50) - us(d50)),
    ));
    rows.push(Row(
        "Stub, 1 client: latency p99".into(),
        format!("{:.0} µs", us(d99)),
        format!("{:.0} µs", us(g99)),
        format!("+{:.0} µs added", us(g99) - us(d99)),
    ));
    for clients in [16, 64] {
        let d = throughput(s_addr, "direct", clients, o.load_seconds).await;
        let g = throughput(g_addr, &token, clients, o.load_seconds).await;
        rows.push(Row(
            format!("Stub, {clients} clients: queries/s"),
            format!("{d:.0}"),
            format!("{g:.0}"),
            format!("ratio {:.2}", g / d),
        ));
    }

    // Memory: 1,000 open sessions.
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..16 {
        set.spawn(async move {
            for _ in 0..(1000 / 16 + 1) {
                login(g_addr).await;
            }
        });
    }
    while set.join_next().await.is_some() {}
    let rss_sessions = rss_kib(gateway.pid());

    // Memory: streaming a big answer, sampled every 20 ms.
    let pid = gateway.pid();
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let sampling = sampling.clone();
        tokio::spawn(async move {
            let mut peak = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(rss_kib(pid));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        })
    };
    let big = query_body(&format!("select BIG_RESULT_{}", o.big_mib));
    let t = Instant::now();
    let mut c = Conn::open(g_addr).await;
    let n = c
        .post("/queries/v1/query-request", &token, big.clone())
        .await;
    let via_secs = t.elapsed().as_secs_f64();
    sampling.store(false, std::sync::atomic::Ordering::Relaxed);
    let rss_peak = sampler.await.unwrap();
    let t = Instant::now();
    let mut c = Conn::open(s_addr).await;
    let n_direct = c.post("/queries/v1/query-request", "direct", big).await;
    let direct_secs = t.elapsed().as_secs_f64();
    let mib = |bytes: usize, secs: f64| bytes as f64 / 1048576.0 / secs;
    rows.push(Row(
        format!("Stub, one {} MiB answer streamed: MiB/s", o.big_mib),
        format!("{:.0}", mib(n_direct, direct_secs)),
        format!("{:.0}", mib(n, via_secs)),
        format!("ratio {:.2}", mib(n, via_secs) / mib(n_direct, direct_secs)),
    ));
    let rss = |k: u64| format!("{:.1} MiB", k as f64 / 1024.0);
    rows.push(Row(
        "Gateway RSS: idle (after warm-up)".into(),
        "".into(),
        rss(rss_idle),
        "".into(),
    ));
    rows.push(Row(
        "Gateway RSS: 1,000 open sessions".into(),
        "".into(),
        rss(rss_sessions),
        format!(
            "{:+.1} MiB",
            (rss_sessions as f64 - rss_idle as f64) / 1024.0
        ),
    ));
    rows.push(Row(
        format!("Gateway RSS: peak while streaming {} MiB", o.big_mib),
        "".into(),
        rss(rss_peak),
        format!(
            "{:+.1} MiB over the 1,000-session level (target: flat)",
            (rss_peak as f64 - rss_sessions as f64) / 1024.0
        ),
    ));
    drop(gateway);
    drop(stub);

    if !o.skip_python {
        match python_rows(o.python_seconds).await {
            Ok(mut r) => {
                r.append(&mut rows);
                rows = r;
            }
            Err(e) => eprintln!("Python part skipped: {e:#}"),
        }
    }

    println!();
    println!("| Measure | Direct | Through the gateway | Gateway vs direct |");
    println!("| --- | --- | --- | --- |");
    for Row(a, b, c, d) in &rows {
        println!("| {a} | {b} | {c} | {d} |");
    }
    println!();
    println!(
        "Measured on {cores} core(s) shared by the load generator, the upstream (stub or Snowflake front) and the gateway; figures move a few percent between runs."
    );
}

/// Python connector 5.x: small queries per second on one connection, direct to the rig's front
/// vs through an in-process gateway, alternating.
async fn python_rows(seconds: f64) -> anyhow::Result<Vec<Row>> {
    use snowgate_rig::clients::{spawn_python, ClientRun, PythonDriver};
    use snowgate_rig::idp::{Idp, IdpOptions};
    use snowgate_rig::snowflake::{Snowflake, SnowflakeOptions};

    eprintln!("starting the rig (IdP and Snowflake front) for the Python connector…");
    let dir = tempfile::tempdir()?;
    let ca = snowgate_rig::TestCa::generate(dir.path())?;
    let idp = Arc::new(Idp::start(&ca, IdpOptions::default()).await?);
    let sf = Snowflake::start(SnowflakeOptions::trusting(&idp)).await?;
    let auth = rig_authorizer::RigAuthorizer::sign_in(idp.clone(), "alice").await?;
    auth.grant("G-bench-py", "ANALYST", Duration::from_secs(3600));
    let config = GatewayConfig::new(vec!["127.0.0.1:0".parse()?], sf.url().parse()?, "rig");
    let gw = Gateway::bind(config, auth.clone())?;
    let gw_url = format!("http://{}", gw.local_addrs()[0]);
    let serving = gw.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        serving
            .serve(async {
                let _ = stop_rx.await;
            })
            .await
    });

    let qps = |counts: &mut Vec<f64>, v: serde_json::Value| -> anyhow::Result<()> {
        let n = v["queries"]
            .as_f64()
            .ok_or_else(|| anyhow::anyhow!("the client reported no count: {v}"))?;
        counts.push(n / seconds);
        Ok(())
    };
    let (mut direct, mut via) = (Vec::new(), Vec::new());
    let hold = ["--interval", "0", "--duration", &seconds.to_string()];
    for _ in 0..2 {
        let token = auth.upstream_token("ANALYST").await?;
        let run = ClientRun::oauth(&sf.url(), &token, "hold")
            .role("ANALYST")
            .arg(hold)
            .timeout(Duration::from_secs_f64(seconds + 60.0));
        qps(
            &mut direct,
            spawn_python(PythonDriver::V5, &run).await?.finish().await?,
        )?;
        let run = ClientRun::password(&gw_url, "alice", "x", "hold")
            .role("ANALYST")
            .arg(hold)
            .timeout(Duration::from_secs_f64(seconds + 60.0));
        qps(
            &mut via,
            spawn_python(PythonDriver::V5, &run).await?.finish().await?,
        )?;
    }
    let _ = stop_tx.send(());
    let _ = server.await;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    let (d, g) = (mean(&direct), mean(&via));
    Ok(vec![Row(
        "Python connector 5.x vs Snowflake front: queries/s".into(),
        format!("{d:.0}"),
        format!("{g:.0}"),
        format!("ratio {:.2} (target ≥ 0.95)", g / d),
    )])
}
