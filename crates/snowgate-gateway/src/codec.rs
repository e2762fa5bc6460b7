//! The codec for Snowflake's JSON bodies and its `Authorization` header.
//!
//! Drivers gzip their request bodies (Python, JDBC) or not (Node.js), and do not always say so
//! in `Content-Encoding`, so gzip is recognised by its magic bytes `1f 8b`. Every body the
//! gateway reads is capped twice: on the wire ([`read_capped`]) and once decompressed
//! ([`decode_json`]), so a gzip bomb costs at most the decompressed cap. Bodies are parsed
//! into a generic [`serde_json::Value`] and written back from it, so fields the gateway does not
//! know survive an edit; a body that was gzip on the way in is gzip on the way out.

use std::io::{Read, Write};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use flate2::Compression;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use http_body_util::{BodyExt, Limited};
use serde_json::Value;

use crate::snowflake_error::SnowflakeError;

/// The `Content-Length` a request declares, if it declares a number.
pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// A JSON answer to the tool, uncompressed.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = Bytes::from(serde_json::to_vec(body).expect("JSON serializes"));
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Whether `bytes` start like a gzip stream.
pub fn is_gzip(bytes: &[u8]) -> bool {
    bytes.len() >= 2 && bytes[..2] == GZIP_MAGIC
}

/// Reads a whole request body of at most `cap` bytes. A `Content-Length` above the cap is
/// refused before a byte of the body is read; a chunked body is cut off at the cap.
pub async fn read_capped(
    body: Body,
    content_length: Option<u64>,
    cap: usize,
) -> Result<Bytes, SnowflakeError> {
    if content_length.is_some_and(|n| n > cap as u64) {
        return Err(too_large(cap));
    }
    match Limited::new(body, cap).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large(cap)),
        Err(e) => Err(SnowflakeError::bad_request(format_args!(
            "the request body could not be read ({e})."
        ))),
    }
}

fn too_large(cap: usize) -> SnowflakeError {
    SnowflakeError::bad_request(format_args!(
        "the request body is larger than the {} MiB Snowgate accepts.",
        cap / (1024 * 1024)
    ))
}

/// Decompresses a gzip body, refusing once the output passes `cap` bytes.
pub fn gunzip_capped(bytes: &[u8], cap: usize) -> Result<Vec<u8>, SnowflakeError> {
    let mut out = Vec::with_capacity(bytes.len().saturating_mul(4).min(cap));
    let mut reader = MultiGzDecoder::new(bytes).take(cap as u64 + 1);
    reader.read_to_end(&mut out).map_err(|e| {
        SnowflakeError::bad_request(format_args!("the gzip request body is corrupt ({e})."))
    })?;
    if out.len() > cap {
        return Err(SnowflakeError::bad_request(format_args!(
            "the request body decompresses to more than the {} MiB Snowgate accepts.",
            cap / (1024 * 1024)
        )));
    }
    Ok(out)
}

/// Gzip-compresses `bytes` (fast level: bodies are small and latency matters).
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(
        Vec::with_capacity(bytes.len() / 2 + 64),
        Compression::fast(),
    );
    enc.write_all(bytes).expect("writing to a Vec cannot fail");
    enc.finish().expect("writing to a Vec cannot fail")
}

/// The bytes of a body with any gzip undone (by magic bytes), capped at `cap` once
/// decompressed.
pub fn plain_bytes(raw: &Bytes, cap: usize) -> Result<Bytes, SnowflakeError> {
    if is_gzip(raw) {
        Ok(Bytes::from(gunzip_capped(raw, cap)?))
    } else {
        Ok(raw.clone())
    }
}

/// A JSON body and whether it came gzip-compressed.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonBody {
    pub value: Value,
    pub was_gzip: bool,
}

/// Parses a request body (gzip or not) into a generic JSON value.
pub fn decode_json(raw: &Bytes, max_decompressed: usize) -> Result<JsonBody, SnowflakeError> {
    let was_gzip = is_gzip(raw);
    let plain = plain_bytes(raw, max_decompressed)?;
    let value: Value = serde_json::from_slice(&plain).map_err(|e| {
        SnowflakeError::bad_request(format_args!("the request body is not valid JSON ({e})."))
    })?;
    Ok(JsonBody { value, was_gzip })
}

/// Writes a JSON body back, gzip-compressed if it came so.
pub fn encode_json(body: &JsonBody) -> Bytes {
    let plain = serde_json::to_vec(&body.value).expect("a JSON value serializes");
    if body.was_gzip {
        Bytes::from(gzip(&plain))
    } else {
        Bytes::from(plain)
    }
}

/// The token in `Authorization: Snowflake Token="..."`, if any. `Token="None"` (what some
/// drivers send before they log in) and an empty token count as none.
pub fn auth_token(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let start = value.find("Token=\"")? + "Token=\"".len();
    let rest = &value[start..];
    let token = &rest[..rest.find('"')?];
    if token.is_empty() || token == "None" {
        None
    } else {
        Some(token)
    }
}

/// `Snowflake Token="<token>"`, marked sensitive so that no layer logs it.
pub fn authorization(token: &str) -> HeaderValue {
    let mut v = HeaderValue::try_from(format!("Snowflake Token=\"{token}\""))
        .unwrap_or_else(|_| HeaderValue::from_static("Snowflake Token=\"invalid\""));
    v.set_sensitive(true);
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gzip_is_detected_by_magic_and_round_trips() {
        let body = JsonBody {
            value: serde_json::json!({"data": {"A": 1, "UNKNOWN": [1, 2, {"x": null}]}}),
            was_gzip: true,
        };
        let raw = encode_json(&body);
        assert!(is_gzip(&raw));
        assert_eq!(decode_json(&raw, 1 << 20).unwrap(), body);
        let plain = JsonBody {
            was_gzip: false,
            ..body
        };
        let raw = encode_json(&plain);
        assert!(!is_gzip(&raw));
        assert_eq!(decode_json(&raw, 1 << 20).unwrap(), plain);
    }

    #[test]
    fn gzip_bomb_is_refused_at_the_cap() {
        let zeros = vec![b' '; 8 << 20];
        let bomb = Bytes::from(gzip(&zeros));
        assert!(bomb.len() < 64 * 1024);
        let err = decode_json(&bomb, 1 << 20).unwrap_err();
        assert_eq!(err.code(), "390400");
        assert!(err.message().contains("decompresses"), "{err}");
    }

    #[test]
    fn malformed_json_and_corrupt_gzip_are_refused() {
        let err = decode_json(&Bytes::from_static(b"{\"data\": "), 1024).unwrap_err();
        assert!(err.message().contains("not valid JSON"), "{err}");
        let err = decode_json(&Bytes::from_static(b"\x1f\x8bnot gzip"), 1024).unwrap_err();
        assert!(err.message().contains("corrupt"), "{err}");
    }

    #[test]
    fn numbers_pass_through_a_rewrite_unchanged() {
        // Found by the `codec` fuzz target: a float parsed approximately came back out of a
        // rewritten body as a different number.
        for text in [
            "-6.315317895919361e+303",
            "2.2250738585072011e-308",
            "0.1",
            "1e300",
        ] {
            let raw = Bytes::from(format!("{{\"n\": {text}}}"));
            let body = decode_json(&raw, 1 << 20).unwrap();
            assert_eq!(
                body.value["n"].as_f64(),
                Some(text.parse::<f64>().unwrap()),
                "{text} was read as another number"
            );
            assert_eq!(
                decode_json(&encode_json(&body), 1 << 20).unwrap(),
                body,
                "{text}"
            );
        }
    }

    #[test]
    fn auth_token_reads_snowflake_header() {
        let mut h = HeaderMap::new();
        assert_eq!(auth_token(&h), None);
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Snowflake Token=\"abc-123\""),
        );
        assert_eq!(auth_token(&h), Some("abc-123"));
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Snowflake Token=\"None\""),
        );
        assert_eq!(auth_token(&h), None);
        assert!(authorization("x").is_sensitive());
    }
}
