//! One spelling per endpoint: request paths are normalised before routing, so that no spelling
//! of an audited endpoint reaches Snowflake through the pass-through.
//!
//! Normalising collapses runs of slashes, drops a trailing slash, and decodes percent-escapes
//! of unreserved characters (RFC 3986 §2.3: `A-Z a-z 0-9 - . _ ~`). What can't be normalised
//! safely is refused, because a server might read it differently from the gateway: an encoded
//! slash or backslash, a backslash, a dot segment, a `;` path parameter, a NUL, a broken
//! escape, and a spelling of an audited endpoint in other letter case or with anything after
//! it. A path whose normal form is one of the gateway's own endpoints ([`is_routed`]) is routed
//! and forwarded in that form, with its query string as sent; any other path goes to the
//! pass-through and upstream exactly as the tool sent it (connector 5.x asks for
//! `/monitoring/queries//ID` and is particular about the answer).

use std::borrow::Cow;

/// The query-request endpoint: one request per statement.
pub(crate) const QUERY_REQUEST: &str = "/queries/v1/query-request";

/// The audited endpoints, which must be reached by exactly this spelling.
const AUDITED: [&str; 3] = [
    QUERY_REQUEST,
    "/session/v1/login-request",
    "/session/token-request",
];

/// The paths the router sends to a handler of its own (all but the pass-through).
const ROUTED: [&str; 5] = [
    QUERY_REQUEST,
    "/session/v1/login-request",
    "/session/token-request",
    "/session",
    "/session/authenticator-request",
];

/// Whether a normal path goes to one of the gateway's own handlers rather than the
/// pass-through.
pub(crate) fn is_routed(normal: &str) -> bool {
    ROUTED.contains(&normal) || is_result_path(normal)
}

/// `/queries/{id}/result`.
pub(crate) fn is_result_path(normal: &str) -> bool {
    let mut segments = normal.split('/');
    segments.next() == Some("")
        && segments.next() == Some("queries")
        && segments.next().is_some_and(|id| !id.is_empty())
        && segments.next() == Some("result")
        && segments.next().is_none()
}

/// Why a path was refused.
pub(crate) type Refused = &'static str;

/// The normal form of `path`: borrowed when it already is normal.
pub(crate) fn normalize(path: &str) -> Result<Cow<'_, str>, Refused> {
    if !path.starts_with('/') {
        return Err("it does not start with a slash");
    }
    let bytes = path.as_bytes();
    let needs_work = bytes.windows(2).any(|w| w == b"//")
        || (bytes.len() > 1 && bytes[bytes.len() - 1] == b'/')
        || bytes.contains(&b'%');
    if bytes
        .iter()
        .any(|&b| b == b'\\' || b == b';' || b == 0 || b < 0x20)
    {
        return Err("it holds a backslash, a `;` path parameter or a control character");
    }
    let normal: Cow<'_, str> = if needs_work {
        Cow::Owned(rewrite(bytes)?)
    } else {
        Cow::Borrowed(path)
    };
    if normal
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return Err("it holds a `.` or `..` segment");
    }
    check_audited_spelling(&normal)?;
    Ok(normal)
}

fn rewrite(bytes: &[u8]) -> Result<String, Refused> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .ok_or("it holds a broken %-escape")?;
            let value = hex_value(hex[0])
                .zip(hex_value(hex[1]))
                .map(|(h, l)| h * 16 + l)
                .ok_or("it holds a broken %-escape")?;
            match value {
                b'/' | b'\\' => return Err("it holds an encoded slash or backslash"),
                b';' | 0 => return Err("it holds an encoded `;` or NUL"),
                v if v.is_ascii_alphanumeric() || matches!(v, b'-' | b'.' | b'_' | b'~') => {
                    push_byte(&mut out, v)
                }
                _ => out.extend_from_slice(&bytes[i..i + 3]),
            }
            i += 3;
        } else {
            push_byte(&mut out, b);
            i += 1;
        }
    }
    if out.len() > 1 && out.last() == Some(&b'/') {
        out.pop();
    }
    // Only ASCII was decoded, and escapes of other bytes were kept as they were.
    Ok(String::from_utf8(out).expect("normalising keeps UTF-8"))
}

fn push_byte(out: &mut Vec<u8>, b: u8) {
    if b == b'/' && out.last() == Some(&b'/') {
        return;
    }
    out.push(b);
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// An audited endpoint must be spelt exactly: not in other letter case, and not with more
/// after it (`/queries/v1/query-request.json`), which a server might still route to it.
fn check_audited_spelling(path: &str) -> Result<(), Refused> {
    for audited in AUDITED {
        if path == audited {
            return Ok(());
        }
        let n = audited.len();
        if path.len() >= n && path.as_bytes()[..n].eq_ignore_ascii_case(audited.as_bytes()) {
            return Err("it is a misspelling of an audited endpoint");
        }
    }
    // `/queries/{id}/result`: the fetch of a query's result.
    let lower = path.to_ascii_lowercase();
    if lower.starts_with("/queries/") && lower.contains("/result") {
        let segments: Vec<&str> = path.split('/').collect();
        let exact = segments.len() == 4 && segments[1] == "queries" && segments[3] == "result";
        if !exact {
            return Err("it is a misspelling of a query result endpoint");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normal_paths_are_borrowed_unchanged() {
        for p in [
            "/queries/v1/query-request",
            "/session",
            "/",
            "/monitoring/queries/01b2-c3",
            "/queries/01b2-c3/result",
        ] {
            assert!(
                matches!(normalize(p), Ok(Cow::Borrowed(q)) if q == p),
                "{p}"
            );
        }
    }

    #[test]
    fn slashes_and_unreserved_escapes_are_normalised() {
        for p in [
            "/queries/v1//query-request",
            "//queries/v1/query-request",
            "/queries/v1/query-request/",
            "/queries///v1/query-request//",
            "/%71ueries/v1/query%2Drequest",
            "/queries/v1/query-r%65quest",
        ] {
            assert_eq!(normalize(p).unwrap(), "/queries/v1/query-request", "{p}");
        }
        assert_eq!(normalize("/a%20b/").unwrap(), "/a%20b");
    }

    #[test]
    fn routed_paths_are_the_handlers_own() {
        assert!(is_routed("/queries/v1/query-request"));
        assert!(is_routed("/queries/01b2-c3/result"));
        assert!(is_routed("/session"));
        assert!(!is_routed("/monitoring/queries/01b2"));
        assert!(!is_routed("/queries//result"));
        assert!(!is_routed("/telemetry/send"));
    }

    #[test]
    fn ambiguous_spellings_are_refused() {
        for p in [
            "/queries%2Fv1/query-request",
            "/queries%2fv1%2Fquery-request",
            "/queries/v1/./query-request",
            "/queries/x/../v1/query-request",
            "/queries/v1/%2E%2E/v1/query-request",
            "/queries/v1/query-request;x=1",
            "/queries\\v1\\query-request",
            "/Queries/v1/query-request",
            "/queries/V1/QUERY-REQUEST",
            "/queries/v1/query-request.json",
            "/queries/v1/query-request%20",
            "/queries/01b2/Result",
            "/queries/01b2/result/x",
            "/bad%zz",
            "/bad%2",
            "/a%00b",
            "relative",
        ] {
            assert!(normalize(p).is_err(), "{p} was accepted");
        }
    }
}
