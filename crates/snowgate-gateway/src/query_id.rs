//! Finding `data.queryId` in a query answer as it streams past, without buffering it.
//!
//! The audit record of a statement wants Snowflake's query id, but query answers are streamed
//! to the tool untouched (they can be large, and in Snowflake's order `queryId` comes after the
//! inline rowset). [`QueryIdScanner`] is a tiny incremental JSON tokenizer: it tracks nesting,
//! strings and object keys, remembers only the key path down to depth 2, and captures one
//! string: the value of `queryId` inside the top-level `data` object. Its memory is a few
//! hundred bytes whatever the answer's size. A gzip answer is inflated on the side
//! ([`GzipQueryIdScanner`]) while the compressed bytes go to the tool as they are.

use std::io::Write;

/// Deepest nesting tracked exactly; deeper levels are only counted (only depth ≤ 2 matters).
const MAX_TRACKED_DEPTH: usize = 64;
/// Longest string captured (keys compared, and the query id itself).
const MAX_CAPTURE: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Object,
    Array,
}

/// Incremental scanner for `data.queryId` in a JSON stream.
#[derive(Debug, Default)]
pub struct QueryIdScanner {
    stack: Vec<Container>,
    untracked_depth: usize,
    in_string: bool,
    escape: bool,
    /// The string being read is an object key.
    string_is_key: bool,
    /// The next string in the current object is a key.
    expecting_key: bool,
    capture: Option<Vec<u8>>,
    /// The current key at depth 1 is `data`.
    in_data: bool,
    /// The current key at depth 2 (inside `data`) is `queryId`.
    at_query_id: bool,
    found: Option<String>,
    failed: bool,
}

impl QueryIdScanner {
    pub fn new() -> QueryIdScanner {
        QueryIdScanner::default()
    }

    /// The query id, once seen.
    pub fn found(&self) -> Option<&str> {
        self.found.as_deref()
    }

    /// Whether scanning is over (found, or the input stopped looking like JSON).
    pub fn is_done(&self) -> bool {
        self.found.is_some() || self.failed
    }

    fn depth(&self) -> usize {
        self.stack.len() + self.untracked_depth
    }

    fn top(&self) -> Option<Container> {
        if self.untracked_depth > 0 {
            None
        } else {
            self.stack.last().copied()
        }
    }

    /// Feeds the next bytes of the answer.
    pub fn feed(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            if self.is_done() {
                return;
            }
            if self.in_string && !self.escape {
                // Skip the inside of a string at memchr speed (rowsets are mostly strings).
                let rest = &bytes[i..];
                let stop = memchr::memchr2(b'"', b'\\', rest).unwrap_or(rest.len());
                if let Some(buf) = &mut self.capture {
                    if buf.len() + stop <= MAX_CAPTURE {
                        buf.extend_from_slice(&rest[..stop]);
                    } else {
                        self.capture = None;
                    }
                }
                i += stop;
                if i == bytes.len() {
                    return;
                }
            }
            let b = bytes[i];
            i += 1;
            if self.in_string {
                self.string_byte(b);
                continue;
            }
            match b {
                b'"' => self.start_string(),
                b'{' => self.open(Container::Object),
                b'[' => self.open(Container::Array),
                b'}' | b']' => self.close(),
                b',' if self.top() == Some(Container::Object) => self.expecting_key = true,
                b':' => self.expecting_key = false,
                _ => {}
            }
        }
    }

    fn start_string(&mut self) {
        self.in_string = true;
        self.escape = false;
        self.string_is_key = self.expecting_key && self.top() == Some(Container::Object);
        self.expecting_key = false;
        let depth = self.depth();
        let wanted = if self.string_is_key {
            depth == 1 || (depth == 2 && self.in_data)
        } else {
            depth == 2 && self.in_data && self.at_query_id
        };
        self.capture = wanted.then(Vec::new);
    }

    fn string_byte(&mut self, b: u8) {
        if self.escape {
            self.escape = false;
        } else if b == b'\\' {
            self.escape = true;
        } else if b == b'"' {
            self.in_string = false;
            self.end_string();
            return;
        }
        if let Some(buf) = &mut self.capture {
            if buf.len() < MAX_CAPTURE {
                buf.push(b);
            } else {
                self.capture = None;
            }
        }
    }

    fn end_string(&mut self) {
        let captured = self.capture.take();
        let depth = self.depth();
        if self.string_is_key {
            let key = captured.as_deref();
            if depth == 1 {
                self.in_data = key == Some(b"data".as_slice());
                self.at_query_id = false;
            } else if depth == 2 && self.in_data {
                self.at_query_id = key == Some(b"queryId".as_slice());
            }
        } else if let Some(value) = captured {
            if depth == 2 && self.in_data && self.at_query_id {
                match String::from_utf8(value) {
                    Ok(s) if !s.is_empty() => self.found = Some(s),
                    _ => self.at_query_id = false,
                }
            }
        }
    }

    fn open(&mut self, c: Container) {
        // A container as the value of `queryId` is not a query id.
        if self.depth() == 2 {
            self.at_query_id = false;
        }
        // Only an object directly under `data` can hold the query id.
        if self.depth() == 1 && !(self.in_data && c == Container::Object) {
            self.in_data = false;
        }
        if self.stack.len() < MAX_TRACKED_DEPTH && self.untracked_depth == 0 {
            self.stack.push(c);
        } else {
            self.untracked_depth += 1;
        }
        self.expecting_key = c == Container::Object;
    }

    fn close(&mut self) {
        if self.untracked_depth > 0 {
            self.untracked_depth -= 1;
        } else if self.stack.pop().is_none() {
            self.failed = true;
            return;
        }
        let depth = self.depth();
        if depth < 2 {
            self.at_query_id = false;
        }
        if depth < 1 {
            self.in_data = false;
        }
        self.expecting_key = false;
    }
}

/// A [`QueryIdScanner`] behind a streaming gzip decoder.
pub struct GzipQueryIdScanner {
    decoder: flate2::write::GzDecoder<ScannerSink>,
    failed: bool,
}

/// Where the decoder writes: straight into the scanner.
pub struct ScannerSink(QueryIdScanner);

impl Write for ScannerSink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.feed(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl GzipQueryIdScanner {
    pub fn new() -> GzipQueryIdScanner {
        GzipQueryIdScanner {
            decoder: flate2::write::GzDecoder::new(ScannerSink(QueryIdScanner::new())),
            failed: false,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        if self.is_done() {
            return;
        }
        // The decoder keeps its last output buffered until the next write; flushing hands it
        // to the scanner now (the answer's last chunk holds the query id).
        if self.decoder.write_all(bytes).is_err() || self.decoder.flush().is_err() {
            self.failed = true;
        }
    }

    pub fn found(&self) -> Option<&str> {
        self.decoder.get_ref().0.found()
    }

    pub fn is_done(&self) -> bool {
        self.failed || self.decoder.get_ref().0.is_done()
    }
}

impl Default for GzipQueryIdScanner {
    fn default() -> Self {
        GzipQueryIdScanner::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(json: &str, chunk: usize) -> Option<String> {
        let mut s = QueryIdScanner::new();
        for part in json.as_bytes().chunks(chunk) {
            s.feed(part);
        }
        s.found().map(str::to_string)
    }

    #[test]
    fn finds_query_id_after_a_rowset_in_any_chunking() {
        let json = r#"{"data":{"parameters":[{"name":"queryId","value":"nope"}],"rowtype":[],
            "rowset":[["a \"queryId\": \"x\"", "{[}"],["b","c"]],"total":2,
            "queryId":"01b2-0000-1234","x":{"queryId":"deeper"}},"code":null,"success":true}"#;
        for chunk in [1, 2, 3, 7, 64, 10_000] {
            assert_eq!(
                scan(json, chunk).as_deref(),
                Some("01b2-0000-1234"),
                "chunk {chunk}"
            );
        }
    }

    #[test]
    fn ignores_query_ids_outside_data_or_deeper() {
        assert_eq!(scan(r#"{"queryId":"top","data":{"a":1}}"#, 5), None);
        assert_eq!(scan(r#"{"data":{"result":{"queryId":"deep"}}}"#, 5), None);
        assert_eq!(scan(r#"{"data":[{"queryId":"in-array"}]}"#, 5), None);
        assert_eq!(scan(r#"{"data":{"queryId":null}}"#, 5), None);
        assert_eq!(
            scan(r#"{"data":null,"code":"390112","success":false}"#, 5),
            None
        );
    }

    #[test]
    fn finds_it_in_an_async_answer_and_through_gzip() {
        let json = r#"{"data":{"queryId":"01-async","getResultUrl":"/queries/01-async/result"},"code":"333334","success":true}"#;
        assert_eq!(scan(json, 4).as_deref(), Some("01-async"));
        let gz = crate::codec::gzip(json.as_bytes());
        let mut s = GzipQueryIdScanner::new();
        for part in gz.chunks(3) {
            s.feed(part);
        }
        assert_eq!(s.found(), Some("01-async"));
        // The id at the very end of a gzip answer fed in one piece.
        let tail = r#"{"data":{"rowset":[["x"]],"queryId":"01-tail"},"success":true}"#;
        let mut s = GzipQueryIdScanner::new();
        s.feed(&crate::codec::gzip(tail.as_bytes()));
        assert_eq!(s.found(), Some("01-tail"));
    }
}
