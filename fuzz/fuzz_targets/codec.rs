//! The gateway's body codec (`snowgate-gateway/src/codec.rs`): request bodies as the gateway
//! reads them, gzip (by magic bytes) or plain JSON, under its decompression cap.
//!
//! The first byte picks the input's shape: raw bytes as a tool might send them, or a
//! structure-aware JSON value (from `arbitrary`) sent plain or gzipped. Properties: decoding
//! never yields more than the cap; a decoded body encodes and decodes back to itself, gzip
//! staying gzip; a value the codec wrote is read back as it was.
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Number, Value};
use snowgate_gateway::fuzzing::{decode_json, encode_json, gunzip_capped, gzip, is_gzip, JsonBody};

/// A small cap, so that gzip bombs reach it within a run.
const CAP: usize = 64 * 1024;

/// A JSON value of bounded depth, made from fuzz bytes.
#[derive(Debug, Arbitrary)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn into_value(self, depth: u32) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(b),
            Json::Int(i) => Value::from(i),
            Json::Uint(u) => Value::from(u),
            Json::Float(f) => Number::from_f64(f).map_or(Value::Null, Value::Number),
            Json::Str(s) => Value::String(s),
            Json::Array(items) if depth < 16 => {
                Value::Array(items.into_iter().map(|j| j.into_value(depth + 1)).collect())
            }
            Json::Object(fields) if depth < 16 => Value::Object(
                fields
                    .into_iter()
                    .map(|(k, j)| (k, j.into_value(depth + 1)))
                    .collect::<Map<_, _>>(),
            ),
            Json::Array(_) | Json::Object(_) => Value::Null,
        }
    }
}

fn check_round_trip(body: &JsonBody) {
    let raw = encode_json(body);
    assert_eq!(is_gzip(&raw), body.was_gzip);
    let back = decode_json(&raw, 1 << 30).expect("the codec reads what it wrote");
    assert_eq!(back.was_gzip, body.was_gzip);
    assert_eq!(back.value, body.value, "the value changed on a round trip");
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        // Raw bytes, as sent.
        0 => {
            if is_gzip(rest) {
                if let Ok(plain) = gunzip_capped(rest, CAP) {
                    assert!(plain.len() <= CAP);
                }
            }
            if let Ok(body) = decode_json(&Bytes::copy_from_slice(rest), CAP) {
                assert_eq!(body.was_gzip, is_gzip(rest));
                check_round_trip(&body);
            }
        }
        // Raw bytes gzipped by the codec: the cap holds on what they decompress to.
        1 => {
            let packed = Bytes::from(gzip(rest));
            assert!(is_gzip(&packed));
            match gunzip_capped(&packed, CAP) {
                Ok(plain) => assert_eq!(plain, rest),
                Err(_) => assert!(rest.len() > CAP),
            }
            if let Ok(body) = decode_json(&packed, CAP) {
                assert!(body.was_gzip);
                check_round_trip(&body);
            }
        }
        // A structured JSON value, plain or gzipped.
        _ => {
            let mut u = Unstructured::new(rest);
            let (Ok(json), Ok(was_gzip)) = (Json::arbitrary(&mut u), bool::arbitrary(&mut u))
            else {
                return;
            };
            check_round_trip(&JsonBody {
                value: json.into_value(0),
                was_gzip,
            });
        }
    }
});
