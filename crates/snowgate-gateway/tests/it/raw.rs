//! Raw HTTP to the gateway, for requests no driver would send.

#![allow(dead_code)]

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

pub struct Raw {
    pub base: String,
    http: reqwest::Client,
}

pub struct Answer {
    pub status: u16,
    pub json: Value,
}

impl Answer {
    pub fn code(&self) -> &str {
        self.json["code"].as_str().unwrap_or("")
    }

    pub fn message(&self) -> &str {
        self.json["message"].as_str().unwrap_or("")
    }

    /// Asserts a Snowflake-shaped refusal with `code` and returns its message.
    pub fn refused(&self, code: &str) -> String {
        assert_eq!(self.json["success"], false, "{:#}", self.json);
        assert!(self.json.get("data").is_some(), "{:#}", self.json);
        assert_eq!(self.code(), code, "{:#}", self.json);
        assert!(
            self.message().starts_with("Snowgate"),
            "not a sentence from Snowgate: {:#}",
            self.json
        );
        self.message().to_string()
    }
}

impl Raw {
    pub fn new(base: &str) -> Raw {
        Raw {
            base: base.to_string(),
            http: reqwest::Client::builder()
                .no_proxy()
                .no_gzip()
                .build()
                .unwrap(),
        }
    }

    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> Answer {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.body(body).send().await.unwrap();
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.unwrap();
        let json = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| json!({"not_json": String::from_utf8_lossy(&bytes)}));
        Answer { status, json }
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> Answer {
        let auth = token.map(|t| format!("Snowflake Token=\"{t}\""));
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = &auth {
            headers.push(("authorization", a.as_str()));
        }
        self.send(
            reqwest::Method::POST,
            path,
            &headers,
            serde_json::to_vec(&body).unwrap(),
        )
        .await
    }

    /// A login as a tool would send it; returns the session and master handles.
    pub async fn login(&self, role: &str) -> (String, String) {
        let a = self
            .post(
                &format!("/session/v1/login-request?roleName={role}&request_id=1"),
                None,
                login_body(),
            )
            .await;
        assert_eq!(a.json["success"], true, "{:#}", a.json);
        (
            a.json["data"]["token"].as_str().unwrap().to_string(),
            a.json["data"]["masterToken"].as_str().unwrap().to_string(),
        )
    }

    pub async fn query(&self, token: &str, sql: &str) -> Answer {
        self.post(
            "/queries/v1/query-request?requestId=1",
            Some(token),
            json!({"sqlText": sql, "sequenceId": 1, "asyncExec": false}),
        )
        .await
    }
}

pub fn login_body() -> Value {
    json!({"data": {
        "CLIENT_APP_ID": "RawTest",
        "CLIENT_APP_VERSION": "1.0",
        "ACCOUNT_NAME": "anything",
        "LOGIN_NAME": "anyone",
        "PASSWORD": crate::common::TOOL_PASSWORD,
        "SESSION_PARAMETERS": {}
    }})
}

/// Sends only the headers of a request that announces `content_length` bytes, and reads the
/// answer without sending the body.
pub async fn headers_only(addr: std::net::SocketAddr, path: &str, content_length: u64) -> Value {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {content_length}\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), s.read_to_end(&mut buf)).await;
    let text = String::from_utf8_lossy(&buf).to_string();
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap_or_else(|_| panic!("no JSON answer: {text:?}"))
}
