//! The MCP server's Snowflake client: it speaks the REST protocol the drivers speak, to the
//! broker's loopback gateway, never to Snowflake itself.
//!
//! The gateway does the enforcement (who may log in, the login rewrite to the grant's OAuth
//! token, QUERY_TAG, SQL policy, audit, the cut at the grant's end); this client only logs in
//! with the agent's secret as the password and the role as `roleName`, sends statements, reads
//! their answers under the agent's caps ([`crate::answer`]), asks for a query's status
//! (`/monitoring/queries/{id}`), aborts one (`/queries/{id}/abort-request`) and closes the
//! session. Statements go with `asyncExec`, so a long one does not hold a tool call: its result
//! is fetched at `/queries/{id}/result` until it is ready or the wait is over. Later result
//! chunks (Snowflake's cloud-storage URLs) are fetched only while the caps leave room.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::TryStreamExt;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};

use crate::answer::{read_answer, read_chunk, Answer, Caps};

/// The session parameters by which a Snowflake client asks for results as JSON rather than
/// Arrow (Snowflake's "Parameters" reference: `JDBC_QUERY_RESULT_FORMAT`,
/// `ODBC_QUERY_RESULT_FORMAT`; snowflake-connector-python sends
/// `PYTHON_CONNECTOR_QUERY_RESULT_FORMAT` when it has no Arrow reader). The login sets them
/// all to `JSON`, the only format [`crate::answer`] reads.
pub const RESULT_FORMAT_PARAMETERS: [&str; 3] = [
    "JDBC_QUERY_RESULT_FORMAT",
    "ODBC_QUERY_RESULT_FORMAT",
    "PYTHON_CONNECTOR_QUERY_RESULT_FORMAT",
];

/// What the client says it is at login (`CLIENT_APP_ID`); sessions and the audit show it.
pub const CLIENT_APP_ID: &str = "SnowgateMCP";

/// A failure a tool reports to the agent: Snowflake's or the gateway's sentence and code, or
/// why the gateway could not be reached. Never carries a secret or a token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}{}", code.as_ref().map(|c| format!(" (Snowflake code {c})")).unwrap_or_default())]
pub struct SnowflakeFailure {
    pub code: Option<String>,
    pub message: String,
}

impl SnowflakeFailure {
    fn new(code: Option<String>, message: impl Into<String>) -> SnowflakeFailure {
        SnowflakeFailure {
            code,
            message: message.into(),
        }
    }

    fn transport(base: &str, e: impl std::fmt::Display) -> SnowflakeFailure {
        SnowflakeFailure::new(
            None,
            format!("Snowgate's gateway at {base} can't be reached ({e}); is the Snowgate broker running (`snowgate status`)?"),
        )
    }

    /// Whether the session is gone (expired, closed or ended by Snowgate) and a fresh login
    /// may help.
    pub fn session_gone(&self) -> bool {
        matches!(
            self.code.as_deref(),
            Some("390111") | Some("390112") | Some("390114")
        )
    }
}

/// A logged-in gateway session for one role.
pub struct Session {
    pub role: String,
    token: SecretString,
    sequence: std::sync::atomic::AtomicU64,
}

/// What a statement's submission came to.
pub enum Submitted {
    /// Snowflake answered with the result (or the part of it read under the caps).
    Done(Box<Answer>),
    /// It still runs.
    Running { query_id: String },
}

/// The status of a query, from `/monitoring/queries/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct QueryStatus {
    pub query_id: String,
    /// Snowflake's status: `RUNNING`, `SUCCESS`, `FAILED_WITH_ERROR`, ...; `UNKNOWN` when the
    /// session has no record of the query.
    pub status: String,
    pub sql: Option<String>,
    pub error: Option<String>,
}

impl QueryStatus {
    pub fn is_running(&self) -> bool {
        matches!(
            self.status.as_str(),
            "RUNNING" | "QUEUED" | "RESUMING_WAREHOUSE" | "QUEUED_REPARING_WAREHOUSE" | "BLOCKED"
        )
    }
}

/// The gateway's address and the names a login carries.
#[derive(Clone)]
pub struct Gateway {
    base: String,
    account: String,
    user: String,
    http: reqwest::Client,
    storage: reqwest::Client,
}

impl Gateway {
    /// A client for the gateway at `host:port` (loopback, plain HTTP) of `account`.
    pub fn new(host: &str, port: u16, account: &str, user: &str) -> Gateway {
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_string()
        };
        Gateway {
            base: format!("http://{host}:{port}"),
            account: account.to_string(),
            user: user.to_string(),
            http: reqwest::Client::builder()
                .no_proxy()
                .gzip(true)
                .connect_timeout(Duration::from_secs(5))
                .build()
                .expect("the HTTP client builds"),
            storage: reqwest::Client::builder()
                .gzip(true)
                .connect_timeout(Duration::from_secs(10))
                .build()
                .expect("the HTTP client builds"),
        }
    }

    /// The gateway's base URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Logs in as `role` with the agent's `secret` as the password.
    pub async fn login(
        &self,
        role: &str,
        secret: &SecretString,
    ) -> Result<Session, SnowflakeFailure> {
        let body = json!({ "data": {
            "CLIENT_APP_ID": CLIENT_APP_ID,
            "CLIENT_APP_VERSION": env!("CARGO_PKG_VERSION"),
            "ACCOUNT_NAME": self.account,
            "LOGIN_NAME": self.user,
            "PASSWORD": secret.expose_secret(),
            "CLIENT_ENVIRONMENT": { "APPLICATION": "snowgate mcp", "OS": std::env::consts::OS },
            "SESSION_PARAMETERS": RESULT_FORMAT_PARAMETERS
                .iter()
                .map(|name| (name.to_string(), json!("JSON")))
                .collect::<serde_json::Map<_, _>>(),
        }});
        let url = format!(
            "{}/session/v1/login-request?roleName={}&request_id={}",
            self.base,
            encode(role),
            request_id()
        );
        let answer: Value = self
            .http
            .post(url)
            .header("Authorization", "Snowflake Token=\"None\"")
            .header("Accept", "application/json")
            .json(&body)
            .send()
            .await
            .map_err(|e| SnowflakeFailure::transport(&self.base, e))?
            .json()
            .await
            .map_err(|e| {
                SnowflakeFailure::new(
                    None,
                    format!("the gateway's login answer can't be read: {e}"),
                )
            })?;
        if answer["success"] != true {
            return Err(failure_of(&answer, "the login was refused"));
        }
        let token = answer["data"]["token"].as_str().ok_or_else(|| {
            SnowflakeFailure::new(None, "the gateway's login answer has no session token")
        })?;
        Ok(Session {
            role: role.to_string(),
            token: SecretString::from(token.to_string()),
            sequence: std::sync::atomic::AtomicU64::new(1),
        })
    }

    fn authorization(session: &Session) -> String {
        format!("Snowflake Token=\"{}\"", session.token.expose_secret())
    }

    /// Sends `sql` and waits up to `wait` for its result, read under `caps`.
    pub async fn submit(
        &self,
        session: &Session,
        sql: &str,
        caps: Caps,
        wait: Duration,
    ) -> Result<Submitted, SnowflakeFailure> {
        let started = Instant::now();
        let seq = session
            .sequence
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body = json!({
            "sqlText": sql,
            "asyncExec": true,
            "sequenceId": seq,
            "querySubmissionTime": SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0),
            "parameters": {},
            "describeOnly": false,
        });
        let response = self
            .http
            .post(format!(
                "{}/queries/v1/query-request?requestId={}",
                self.base,
                request_id()
            ))
            .header("Authorization", Self::authorization(session))
            .header("Accept", "application/snowflake")
            .json(&body)
            .send()
            .await
            .map_err(|e| SnowflakeFailure::transport(&self.base, e))?;
        let answer = read_streamed(response, caps).await?;
        self.settle(session, answer, caps, started + wait).await
    }

    /// The result of `query_id`, waiting up to `wait` while it runs.
    pub async fn result(
        &self,
        session: &Session,
        query_id: &str,
        caps: Caps,
        wait: Duration,
    ) -> Result<Submitted, SnowflakeFailure> {
        let deadline = Instant::now() + wait;
        let answer = self.fetch_result(session, query_id, caps).await?;
        self.settle(session, answer, caps, deadline).await
    }

    async fn fetch_result(
        &self,
        session: &Session,
        query_id: &str,
        caps: Caps,
    ) -> Result<Answer, SnowflakeFailure> {
        let response = self
            .http
            .get(format!("{}/queries/{}/result", self.base, encode(query_id)))
            .header("Authorization", Self::authorization(session))
            .header("Accept", "application/snowflake")
            .send()
            .await
            .map_err(|e| SnowflakeFailure::transport(&self.base, e))?;
        read_streamed(response, caps).await
    }

    /// Polls an in-progress answer until it is done or `deadline` passes; fetches later chunks
    /// under the caps.
    async fn settle(
        &self,
        session: &Session,
        mut answer: Answer,
        caps: Caps,
        deadline: Instant,
    ) -> Result<Submitted, SnowflakeFailure> {
        let mut pause = Duration::from_millis(100);
        while answer.in_progress() {
            let query_id = answer.query_id.clone().ok_or_else(|| {
                SnowflakeFailure::new(None, "Snowflake said the query runs but gave no query id")
            })?;
            if Instant::now() >= deadline {
                return Ok(Submitted::Running { query_id });
            }
            tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now()))).await;
            pause = (pause * 2).min(Duration::from_secs(2));
            answer = self.fetch_result(session, &query_id, caps).await?;
        }
        if !answer.succeeded() {
            return Err(SnowflakeFailure::new(
                answer.code.clone(),
                answer
                    .message
                    .clone()
                    .unwrap_or_else(|| "the statement failed without a message".into()),
            ));
        }
        if answer.arrow {
            return Err(SnowflakeFailure::new(
                None,
                "Snowflake answered this result in Arrow format, which snowgate mcp does not read; only JSON results are supported",
            ));
        }
        self.read_chunks(&mut answer, caps).await?;
        Ok(Submitted::Done(Box::new(answer)))
    }

    /// Fetches the result's later chunks, in order, while the caps leave room; marks the
    /// answer truncated when chunks are left unread.
    async fn read_chunks(&self, answer: &mut Answer, caps: Caps) -> Result<(), SnowflakeFailure> {
        let chunks = std::mem::take(&mut answer.chunks);
        for (i, chunk) in chunks.iter().enumerate() {
            if answer.rows.truncated {
                break;
            }
            if answer.rows.rows.len() as u64 >= caps.max_rows {
                answer.rows.truncated = chunks[i..].iter().any(|c| c.row_count > 0);
                break;
            }
            let mut request = self.storage.get(&chunk.url);
            if answer.chunk_headers.is_empty() {
                if let Some(qrmk) = &answer.qrmk {
                    request = request
                        .header("x-amz-server-side-encryption-customer-algorithm", "AES256")
                        .header("x-amz-server-side-encryption-customer-key", qrmk);
                }
            }
            for (k, v) in &answer.chunk_headers {
                request = request.header(k, v);
            }
            let response = request.send().await.map_err(|e| {
                SnowflakeFailure::new(
                    None,
                    format!(
                        "result chunk {} of {} can't be fetched: {e}",
                        i + 1,
                        chunks.len()
                    ),
                )
            })?;
            if !response.status().is_success() {
                return Err(SnowflakeFailure::new(
                    None,
                    format!(
                        "result chunk {} of {} was refused by the storage service (HTTP {})",
                        i + 1,
                        chunks.len(),
                        response.status()
                    ),
                ));
            }
            let mut rows = std::mem::take(&mut answer.rows);
            let reader = body_reader(response);
            let (rows_back, read) = tokio::task::spawn_blocking(move || {
                let r = read_chunk(reader, &mut rows, caps);
                (rows, r)
            })
            .await
            .map_err(|e| {
                SnowflakeFailure::new(None, format!("reading a result chunk failed: {e}"))
            })?;
            answer.rows = rows_back;
            read.map_err(|e| {
                SnowflakeFailure::new(None, format!("result chunk {} can't be read: {e}", i + 1))
            })?;
        }
        Ok(())
    }

    /// The status of `query_id` as the session that ran it sees it.
    pub async fn status(
        &self,
        session: &Session,
        query_id: &str,
    ) -> Result<QueryStatus, SnowflakeFailure> {
        let answer: Value = self
            .http
            .get(format!(
                "{}/monitoring/queries/{}",
                self.base,
                encode(query_id)
            ))
            .header("Authorization", Self::authorization(session))
            .header("Accept", "application/json")
            .send()
            .await
            .map_err(|e| SnowflakeFailure::transport(&self.base, e))?
            .json()
            .await
            .map_err(|e| {
                SnowflakeFailure::new(None, format!("the status answer can't be read: {e}"))
            })?;
        if answer["success"] != true {
            return Err(failure_of(&answer, "the status check was refused"));
        }
        let q = &answer["data"]["queries"][0];
        if q.is_null() {
            return Ok(QueryStatus {
                query_id: query_id.to_string(),
                status: "UNKNOWN".into(),
                sql: None,
                error: None,
            });
        }
        Ok(QueryStatus {
            query_id: query_id.to_string(),
            status: q["status"].as_str().unwrap_or("UNKNOWN").to_string(),
            sql: q["sqlText"].as_str().map(str::to_string),
            error: q["errorMessage"].as_str().map(str::to_string),
        })
    }

    /// Asks Snowflake to cancel `query_id`.
    pub async fn abort(&self, session: &Session, query_id: &str) -> Result<(), SnowflakeFailure> {
        let answer: Value = self
            .http
            .post(format!(
                "{}/queries/{}/abort-request",
                self.base,
                encode(query_id)
            ))
            .header("Authorization", Self::authorization(session))
            .header("Accept", "application/json")
            .json(&json!({}))
            .send()
            .await
            .map_err(|e| SnowflakeFailure::transport(&self.base, e))?
            .json()
            .await
            .map_err(|e| {
                SnowflakeFailure::new(None, format!("the abort answer can't be read: {e}"))
            })?;
        if answer["success"] != true {
            return Err(failure_of(&answer, "the cancel was refused"));
        }
        Ok(())
    }

    /// Closes the session (best effort: the gateway ends it anyway at the grant's end).
    pub async fn close(&self, session: &Session) {
        let _ = self
            .http
            .post(format!("{}/session?delete=true", self.base))
            .header("Authorization", Self::authorization(session))
            .timeout(Duration::from_secs(5))
            .send()
            .await;
    }
}

/// Reads a response body as an [`Answer`] under `caps`, on a blocking thread, dropping the
/// connection as soon as reading stops.
async fn read_streamed(
    response: reqwest::Response,
    caps: Caps,
) -> Result<Answer, SnowflakeFailure> {
    let status = response.status();
    let reader = body_reader(response);
    let read = tokio::task::spawn_blocking(move || read_answer(reader, caps))
        .await
        .map_err(|e| SnowflakeFailure::new(None, format!("reading the answer failed: {e}")))?;
    read.map_err(|e| {
        SnowflakeFailure::new(
            None,
            format!("the gateway's answer (HTTP {status}) is not a Snowflake answer: {e}"),
        )
    })
}

/// The body as a blocking reader, for `serde_json`'s streaming deserializer.
fn body_reader(response: reqwest::Response) -> impl std::io::Read + Send + 'static {
    let stream = response
        .bytes_stream()
        .map_err(|e| std::io::Error::other(e.to_string()));
    std::io::BufReader::with_capacity(
        16 * 1024,
        tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream)),
    )
}

fn failure_of(answer: &Value, fallback: &str) -> SnowflakeFailure {
    let code = match &answer["code"] {
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    };
    SnowflakeFailure::new(
        code,
        answer["message"].as_str().unwrap_or(fallback).to_string(),
    )
}

fn request_id() -> String {
    let bytes: [u8; 16] = rand::random();
    let h: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Percent-encodes a path segment or query value.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_say_why_with_the_code() {
        let f = failure_of(
            &json!({"success": false, "code": "390189", "message": "Snowgate: no active grant"}),
            "x",
        );
        assert_eq!(
            f.to_string(),
            "Snowgate: no active grant (Snowflake code 390189)"
        );
        assert!(!f.session_gone());
        let f = failure_of(
            &json!({"success": false, "code": 390112}),
            "the login was refused",
        );
        assert_eq!(f.code.as_deref(), Some("390112"));
        assert!(f.session_gone());
    }

    #[test]
    fn ids_and_names_are_encoded() {
        assert_eq!(encode("ANALYST"), "ANALYST");
        assert_eq!(encode("a b&c"), "a%20b%26c");
        let id = request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(id.matches('-').count(), 4);
    }
}
