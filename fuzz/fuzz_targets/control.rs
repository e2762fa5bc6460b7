//! The control socket's request parsing (`snowgate-engine/src/control/protocol.rs`, compiled
//! here from the same file, so the engine's heavy dependencies stay out of the instrumented
//! build).
//!
//! The broker reads each line a client sends with `serde_json::from_slice::<Request>`. On any
//! bytes that must not panic; a line that parses is a request whose wire form reads back as
//! the same request with a non-empty method, and whose method is one of the names a request
//! can have. Answers (`Response`) read by the CLI are held to the same round trip.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[allow(dead_code)]
#[path = "../../crates/snowgate-engine/src/control/protocol.rs"]
mod protocol;

use protocol::{Request, Response};

fuzz_target!(|line: &[u8]| {
    if let Ok(request) = serde_json::from_slice::<Request>(line) {
        let wire = serde_json::to_vec(&request).expect("a request serializes");
        let again: Request = serde_json::from_slice(&wire)
            .unwrap_or_else(|e| panic!("{request:?} wrote {wire:?}, which does not read back: {e}"));
        assert_eq!(again, request);
        let method = request.method();
        assert!(!method.is_empty(), "{request:?} has no method");
        assert!(
            method.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "{method:?}"
        );
    }
    if let Ok(response) = serde_json::from_slice::<Response>(line) {
        let wire = serde_json::to_vec(&response).expect("a response serializes");
        let again: Response = serde_json::from_slice(&wire)
            .unwrap_or_else(|e| panic!("{response:?} wrote {wire:?}, which does not read back: {e}"));
        assert_eq!(
            serde_json::to_value(&again).unwrap(),
            serde_json::to_value(&response).unwrap()
        );
    }
});
