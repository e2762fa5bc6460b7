//! The real parts the team server's tests run against: the rig's IdP (over TLS, with its test
//! CA), a real PostgreSQL, a signing key made by `openssl`, and the server itself, started in
//! process on a free port with TLS. Plus a small HTTP and SSE client for the API.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use snowgate_grants::{Clock, SystemClock};
use snowgate_rig::idp::{Idp, IdpOptions, IdpProfile};
use snowgate_rig::postgres::Postgres;
use snowgate_rig::{free_port, TestCa};
use snowgate_server::{RunningServer, ServerConfig};
use tokio::sync::mpsc;

/// The `aud` of the IdP access tokens the server accepts.
pub const API_AUDIENCE: &str = "https://snowgate.rig.test";
/// The `aud` of the Snowflake tokens the server mints.
pub const SNOWFLAKE_AUDIENCE: &str = "https://snowflake.rig.test";

/// The rig: IdP, PostgreSQL, TLS files and a signing key, all removed when dropped.
pub struct Rig {
    pub dir: tempfile::TempDir,
    pub ca: TestCa,
    pub idp: Idp,
    pub pg: Postgres,
    pub key_file: PathBuf,
}

/// What a test changes in the server's config.
#[derive(Debug, Clone)]
pub struct Options {
    /// Lines added to `[server]`.
    pub server_extra: String,
    /// The audience the server requires of callers' access tokens (no `audience` line when
    /// empty).
    pub audience: String,
    /// Lines added to `[identity]`.
    pub identity_extra: String,
    /// Tables added at the end (`[sessions]`, `[[groups]]`).
    pub tail: String,
    /// `[identity] clock_skew`.
    pub clock_skew: String,
    /// `[minting] key_files`, when not the rig's one key.
    pub key_files: Option<Vec<PathBuf>>,
    /// Lines added to `[minting]` (`user_claim`, `user_value`).
    pub minting_extra: String,
    /// A change to the whole text, made last (e.g. an `account` line in a role).
    pub edit: Option<fn(String) -> String>,
}

impl Default for Options {
    fn default() -> Options {
        Options {
            server_extra: String::new(),
            audience: API_AUDIENCE.to_string(),
            identity_extra: String::new(),
            tail: String::new(),
            clock_skew: "30s".to_string(),
            key_files: None,
            minting_extra: String::new(),
            edit: None,
        }
    }
}

/// Makes a 2048-bit RSA private key (PKCS#8 PEM) at `path` with the openssl program.
pub fn make_rsa_key(path: &std::path::Path) {
    let out = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(path)
        .output()
        .expect("running openssl (apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl genpkey failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Rig {
    /// Starts the IdP (access tokens valid for `token_ttl`) and PostgreSQL.
    pub async fn start_with_ttl(token_ttl: Duration) -> Rig {
        Rig::start_as(IdpProfile::Strict, token_ttl).await
    }

    /// Starts the IdP under provider profile `profile`, and PostgreSQL.
    pub async fn start_profile(profile: IdpProfile) -> Rig {
        Rig::start_as(profile, Duration::from_secs(300)).await
    }

    async fn start_as(profile: IdpProfile, token_ttl: Duration) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::generate(&dir.path().join("tls")).unwrap();
        let opts = IdpOptions {
            profile,
            access_token_ttl: token_ttl,
            snowflake_audience: API_AUDIENCE.to_string(),
            ..IdpOptions::default()
        };
        let (idp, pg) = tokio::join!(Idp::start(&ca, opts), Postgres::start());
        let key_file = dir.path().join("signing.pem");
        make_rsa_key(&key_file);
        Rig {
            ca,
            idp: idp.expect("starting the rig's IdP"),
            pg: pg.expect("starting the rig's PostgreSQL"),
            key_file,
            dir,
        }
    }

    pub async fn start() -> Rig {
        Rig::start_with_ttl(Duration::from_secs(300)).await
    }

    /// The server config text for a server on `port`.
    pub fn config_text(&self, port: u16, o: &Options) -> String {
        let keys: Vec<String> = o
            .key_files
            .clone()
            .unwrap_or_else(|| vec![self.key_file.clone()])
            .iter()
            .map(|p| format!("{:?}", p.display().to_string()))
            .collect();
        format!(
            r#"[server]
listen = "127.0.0.1:{port}"
public_url = "https://127.0.0.1:{port}"
tls_cert = "{cert}"
tls_key = "{key}"
{server_extra}

[database]
url = "{db}"

[identity]
issuer = "{issuer}"
{audience}extra_ca_file = "{ca}"
clock_skew = "{skew}"
{identity_extra}

[minting]
audience = "{sf_audience}"
key_files = [{keys}]
{minting_extra}
[[roles]]
name = "ANALYST"
description = "Analytics"
max_duration = "8h"
approvers = ["managers"]

[[roles]]
name = "READONLY"
max_duration = "1h"
approvers = ["managers"]
auto_approve_up_to = "1h"
{tail}
"#,
            cert = self.ca.cert_file.display(),
            key = self.ca.key_file.display(),
            server_extra = o.server_extra,
            db = self.pg.url(),
            issuer = self.idp.issuer(),
            audience = if o.audience.is_empty() {
                String::new()
            } else {
                format!("audience = \"{}\"\n", o.audience)
            },
            identity_extra = o.identity_extra,
            tail = o.tail,
            ca = self.ca.ca_file.display(),
            skew = o.clock_skew,
            sf_audience = SNOWFLAKE_AUDIENCE,
            keys = keys.join(", "),
            minting_extra = o.minting_extra,
        )
    }

    /// Starts a server replica with the default options.
    pub async fn replica(&self) -> Replica {
        self.replica_with(&Options::default()).await
    }

    /// Starts a server replica.
    pub async fn replica_with(&self, o: &Options) -> Replica {
        self.replica_with_clock(o, Arc::new(SystemClock)).await
    }

    pub async fn replica_with_clock(&self, o: &Options, clock: Arc<dyn Clock>) -> Replica {
        self.replica_at(free_port().unwrap(), o, clock).await
    }

    /// Starts a server replica on `port` (chosen beforehand, so a part started first can be
    /// told the server's URL).
    pub async fn replica_at(&self, port: u16, o: &Options, clock: Arc<dyn Clock>) -> Replica {
        let path = self.dir.path().join(format!("server-{port}.toml"));
        let mut text = self.config_text(port, o);
        if let Some(edit) = o.edit {
            text = edit(text);
        }
        std::fs::write(&path, &text).unwrap();
        let config = ServerConfig::load(&path)
            .unwrap_or_else(|e| panic!("the test config loads: {e}\n{text}"));
        let server = snowgate_server::start_with_clock(&config, clock)
            .await
            .expect("starting the server");
        Replica {
            url: format!("https://127.0.0.1:{port}"),
            http: self.http(Some(Duration::from_secs(20))),
            sse_http: self.http(None),
            server: Some(server),
        }
    }

    /// An HTTP client that trusts the rig CA.
    pub fn http(&self, timeout: Option<Duration>) -> reqwest::Client {
        let mut b = reqwest::Client::builder()
            .add_root_certificate(self.ca.reqwest_root().unwrap())
            .no_proxy();
        if let Some(t) = timeout {
            b = b.timeout(t);
        }
        b.build().unwrap()
    }

    /// An IdP access token for the server's audience, for `user`.
    pub async fn token(&self, user: &str) -> String {
        self.idp
            .login(
                user,
                &["openid", "email", "groups", "session:role:ANALYST"],
                Some(API_AUDIENCE),
            )
            .await
            .unwrap_or_else(|e| panic!("signing {user} in at the rig's IdP: {e:#}"))
            .access_token
    }
}

/// One running server and clients for it.
pub struct Replica {
    pub server: Option<RunningServer>,
    pub url: String,
    pub http: reqwest::Client,
    sse_http: reqwest::Client,
}

/// A response: status, headers, JSON body (Null if not JSON) and the raw text. Its `Debug`
/// (what a failing assertion prints) shows the status and the JSON body with every token
/// field redacted, never the raw text.
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub json: Value,
    pub text: String,
}

impl std::fmt::Debug for Reply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reply")
            .field("status", &self.status)
            .field("json", &redacted(&self.json))
            .finish_non_exhaustive()
    }
}

/// `v` with the value of every key that names a token or secret replaced by `[redacted]`.
pub fn redacted(v: &Value) -> Value {
    match v {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let secret = k.contains("token") || k.contains("secret") || k == "jwt";
                    let v = if secret && !v.is_null() {
                        Value::String("[redacted]".into())
                    } else {
                        redacted(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redacted).collect()),
        other => other.clone(),
    }
}

impl Reply {
    /// The error code of an error reply.
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
    /// The error message of an error reply.
    pub fn message(&self) -> &str {
        self.json["error"]["message"].as_str().unwrap_or("")
    }
}

async fn reply(resp: reqwest::Response) -> Reply {
    let status = resp.status();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap_or_default();
    Reply {
        status,
        headers,
        json: serde_json::from_str(&text).unwrap_or(Value::Null),
        text,
    }
}

impl Replica {
    pub async fn get(&self, path: &str, token: Option<&str>) -> Reply {
        let mut r = self.http.get(format!("{}{path}", self.url));
        if let Some(t) = token {
            r = r.bearer_auth(t);
        }
        reply(r.send().await.expect("GET")).await
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> Reply {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(token)
            .json(&body);
        reply(r.send().await.expect("POST")).await
    }

    pub async fn post_raw(&self, path: &str, token: &str, content_type: &str, body: &str) -> Reply {
        let r = self
            .http
            .post(format!("{}{path}", self.url))
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body.to_string());
        reply(r.send().await.expect("POST")).await
    }

    /// Requests `role` for `secs` as the holder of `token`; returns the grant JSON.
    pub async fn request(&self, token: &str, role: &str, secs: u64) -> Value {
        let r = self
            .post(
                "/v1/requests",
                token,
                serde_json::json!({ "role": role, "duration_secs": secs, "reason": "quarterly numbers" }),
            )
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
        r.json["grant"].clone()
    }

    /// Opens the SSE stream as the holder of `token`, from `last_event_id` if given.
    pub async fn events(&self, token: &str, last_event_id: Option<i64>) -> Sse {
        let mut r = self
            .sse_http
            .get(format!("{}/v1/events", self.url))
            .bearer_auth(token);
        if let Some(id) = last_event_id {
            r = r.header("Last-Event-ID", id.to_string());
        }
        let resp = r.send().await.expect("GET /v1/events");
        assert_eq!(resp.status(), StatusCode::OK, "opening the event stream");
        let (tx, rx) = mpsc::unbounded_channel();
        let (cp_tx, checkpoints) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            use futures_util::StreamExt as _;
            let mut body = resp.bytes_stream();
            let mut buf = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                buf.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buf.find("\n\n") {
                    let block: String = buf.drain(..end + 2).collect();
                    let mut ev = SseEvent::default();
                    for line in block.lines() {
                        if let Some(v) = line.strip_prefix("id:") {
                            ev.id = v.trim().parse().ok();
                        } else if let Some(v) = line.strip_prefix("event:") {
                            ev.kind = v.trim().to_string();
                        } else if let Some(v) = line.strip_prefix("data:") {
                            ev.data.push_str(v.trim_start());
                        } else if line.starts_with(':') {
                            ev.comment = true;
                        }
                    }
                    // Audit checkpoints carry no id; they go to their own channel.
                    if ev.kind == "checkpoint" {
                        let _ = cp_tx.send(ev);
                    } else if ev.id.is_some() && tx.send(ev).is_err() {
                        return;
                    }
                }
            }
        });
        Sse {
            rx,
            checkpoints,
            task,
        }
    }

    /// Stops the server as a crash would.
    pub fn kill(&mut self) {
        if let Some(s) = self.server.take() {
            s.abort();
        }
    }
}

/// One SSE event as received.
#[derive(Debug, Clone, Default)]
pub struct SseEvent {
    pub id: Option<i64>,
    pub kind: String,
    pub data: String,
    pub comment: bool,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap_or(Value::Null)
    }
    pub fn grant(&self) -> String {
        self.json()["grant"].as_str().unwrap_or("").to_string()
    }
}

/// An open event stream.
pub struct Sse {
    rx: mpsc::UnboundedReceiver<SseEvent>,
    /// `event: checkpoint` events (they have no id).
    checkpoints: mpsc::UnboundedReceiver<SseEvent>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Sse {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Sse {
    /// The next audit checkpoint announced on the stream.
    pub async fn next_checkpoint(&mut self, timeout: Duration) -> Option<SseEvent> {
        tokio::time::timeout(timeout, self.checkpoints.recv())
            .await
            .ok()
            .flatten()
    }

    /// The next event, or `None` after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<SseEvent> {
        tokio::time::timeout(timeout, self.rx.recv())
            .await
            .ok()
            .flatten()
    }

    /// Waits for an event of `kind` about `grant`, returning everything received on the way.
    pub async fn until(&mut self, kind: &str, grant: &str, timeout: Duration) -> Vec<SseEvent> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(ev) => {
                    let done = ev.kind == kind && ev.grant() == grant;
                    seen.push(ev);
                    if done {
                        return seen;
                    }
                }
                None => panic!(
                    "no `{kind}` event for {grant} within {timeout:?}; got {:?}",
                    seen.iter()
                        .map(|e| (&e.kind, e.grant()))
                        .collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Waits for the server to end the stream: `Some` with the events received on the way, or
    /// `None` if it was still open after `timeout`.
    pub async fn end(&mut self, timeout: Duration) -> Option<Vec<SseEvent>> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(ev)) => seen.push(ev),
                Ok(None) => return Some(seen),
                Err(_) => return None,
            }
        }
    }

    /// Everything that arrives until nothing has for `quiet`.
    pub async fn drain(&mut self, quiet: Duration) -> Vec<SseEvent> {
        let mut seen = Vec::new();
        while let Some(ev) = self.next(quiet).await {
            seen.push(ev);
        }
        seen
    }
}

/// Polls `f` until it returns true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if f().await {
            return;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("{what} did not happen within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
