//! Path normalisation (`snowgate-gateway/src/path.rs`) on raw request paths.
//!
//! Properties: a normal form is a fixed point (normalising it again changes nothing); it
//! starts with one slash, holds no empty, `.` or `..` segment and no trailing slash; and the
//! only spelling of an audited endpoint that gets through, in any letter case, is the exact one.
#![no_main]

use std::borrow::Cow;

use libfuzzer_sys::fuzz_target;
use snowgate_gateway::fuzzing::{is_routed, normalize_path};

const AUDITED: [&str; 3] = [
    "/queries/v1/query-request",
    "/session/v1/login-request",
    "/session/token-request",
];

fuzz_target!(|path: &str| {
    let Ok(normal) = normalize_path(path) else {
        return;
    };
    // A normal form is a fixed point; one without escapes is even borrowed as it is.
    let again = normalize_path(&normal);
    assert!(
        matches!(&again, Ok(n) if *n == normal),
        "{path:?} normalised to {normal:?}, which normalises to {again:?}"
    );
    if !normal.contains('%') {
        assert!(
            matches!(again, Ok(Cow::Borrowed(_))),
            "{normal:?} was rewritten"
        );
    }
    assert!(normal.starts_with('/'), "{normal:?}");
    if normal != "/" {
        assert!(!normal.ends_with('/'), "{normal:?}");
        for segment in normal.split('/').skip(1) {
            assert!(!segment.is_empty(), "empty segment in {normal:?}");
            assert!(
                segment != "." && segment != "..",
                "dot segment in {normal:?}"
            );
        }
    }
    assert!(!normal.contains(['\\', ';', '\0']), "{normal:?}");
    for audited in AUDITED {
        if normal.len() >= audited.len()
            && normal.as_bytes()[..audited.len()].eq_ignore_ascii_case(audited.as_bytes())
        {
            assert_eq!(
                normal, audited,
                "{path:?} reaches an audited endpoint misspelt"
            );
        }
    }
    // Routing decides on the normal form alone.
    let _ = is_routed(&normal);
});
