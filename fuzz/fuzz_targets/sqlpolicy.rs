//! The read-only rule (`snowgate-sqlpolicy`) on arbitrary SQL text.
//!
//! Properties: it never panics and judges the same text the same way twice; text it allows
//! stops being allowed when a DML statement is put before or after it (each statement of a
//! request is judged, so nothing added to an allowed request can ride along); and a refusal
//! names a statement number from 1 and a kind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use snowgate_sqlpolicy::check_read_only;

fuzz_target!(|sql: &str| {
    let first = check_read_only(sql);
    assert_eq!(first, check_read_only(sql), "{sql:?} judged two ways");
    match first {
        Ok(_) => {
            // Only text that is a whole statement list can be extended this way: an open
            // comment or string would swallow what follows.
            let before = format!("DELETE FROM t;\n{sql}");
            let refused = check_read_only(&before).expect_err(&before);
            assert_eq!(refused.index, 1, "{before:?}: {refused}");
            let after = format!("{sql}\n;DELETE FROM t");
            if !sql.contains("--") && !sql.contains("//") && !sql.contains("/*") {
                assert!(check_read_only(&after).is_err(), "{after:?} allowed");
            }
        }
        Err(r) => {
            assert!(r.index >= 1, "{r:?}");
            assert!(!r.kind.is_empty(), "{r:?}");
            assert!(!r.reason.is_empty(), "{r:?}");
        }
    }
});
