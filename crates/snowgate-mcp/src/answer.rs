//! Reading Snowflake's JSON answers incrementally, under the agent's caps.
//!
//! A query's answer (`{"data": {"rowtype": [...], "rowset": [[...], ...], "queryId": ..., "chunks":
//! [...]}, "code": ..., "message": ..., "success": ...}`) is read straight from the response
//! body with `serde_json`'s streaming deserializer and seeds that keep each field as it
//! arrives. Rows are kept until the row or byte cap is reached; at that point reading stops:
//! the rest of the body is never pulled off the connection (Snowflake, and the rig's front,
//! send `rowtype` and `queryId` before `rowset`; when a cap is hit before `rowtype` was seen,
//! the rest of the rowset is skipped without keeping it, so the columns can still be named).
//! Later result chunks are fetched only while the caps leave room (see [`crate::snowflake`]).
//!
//! The caps count the rows, and the bytes of the cell values as text, as the agent receives
//! them.

use std::fmt;
use std::io::Read;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;

/// The most rows and bytes an answer may carry to the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub max_rows: u64,
    pub max_bytes: u64,
}

impl Caps {
    /// Used when the agent's policy sets no row cap.
    pub const DEFAULT_MAX_ROWS: u64 = 1_000;
    /// Used when the agent's policy sets no byte cap (1 MiB).
    pub const DEFAULT_MAX_BYTES: u64 = 1 << 20;

    /// The agent's caps, with the defaults where its policy sets none.
    pub fn from_policy(max_rows: Option<u64>, max_bytes: Option<u64>) -> Caps {
        Caps {
            max_rows: max_rows.unwrap_or(Caps::DEFAULT_MAX_ROWS),
            max_bytes: max_bytes.unwrap_or(Caps::DEFAULT_MAX_BYTES),
        }
    }
}

/// One column of a result, from Snowflake's `rowtype`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
pub struct Column {
    pub name: String,
    /// Snowflake's type name (`fixed`, `text`, `timestamp_ntz`, ...).
    #[serde(rename = "type", default)]
    pub type_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<i64>,
    #[serde(default = "yes")]
    pub nullable: bool,
}

fn yes() -> bool {
    true
}

impl Column {
    /// The type as a person reads it: `NUMBER(38,0)`, `TEXT`, ...
    pub fn type_label(&self) -> String {
        let t = self.type_name.to_ascii_uppercase();
        match (t.as_str(), self.precision, self.scale) {
            ("FIXED", Some(p), Some(s)) => format!("NUMBER({p},{s})"),
            ("FIXED", _, _) => "NUMBER".into(),
            _ => t,
        }
    }
}

/// A later part of a large result, at a URL of Snowflake's cloud storage.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChunkRef {
    pub url: String,
    #[serde(rename = "rowCount", default)]
    pub row_count: u64,
}

/// Rows kept under the caps.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rows {
    pub rows: Vec<Vec<Option<String>>>,
    pub bytes: u64,
    /// Rows or bytes were left out because a cap was reached.
    pub truncated: bool,
}

impl Rows {
    fn full(&self, caps: Caps) -> bool {
        self.rows.len() as u64 >= caps.max_rows
    }

    /// Keeps `row` if it fits; `false` (and `truncated`) when it does not.
    fn admit(&mut self, row: Vec<Option<String>>, caps: Caps) -> bool {
        let size: u64 = row
            .iter()
            .map(|c| c.as_ref().map_or(4, |s| s.len() as u64))
            .sum();
        if self.full(caps) || self.bytes + size > caps.max_bytes {
            self.truncated = true;
            return false;
        }
        self.bytes += size;
        self.rows.push(row);
        true
    }
}

/// What an answer said, as far as it was read.
#[derive(Debug, Clone, Default)]
pub struct Answer {
    pub success: Option<bool>,
    pub code: Option<String>,
    pub message: Option<String>,
    pub query_id: Option<String>,
    pub columns: Option<Vec<Column>>,
    pub rows: Rows,
    /// Whether the answer had a rowset at all (a statement's answer does).
    pub has_rowset: bool,
    /// The number of rows the whole result has, when Snowflake said.
    pub total: Option<u64>,
    pub chunks: Vec<ChunkRef>,
    pub chunk_headers: Vec<(String, String)>,
    pub qrmk: Option<String>,
    /// The answer carried its rows in Arrow (`rowsetBase64`), which is not read here.
    pub arrow: bool,
    /// Reading stopped at a cap before the end of the body.
    pub stopped_early: bool,
}

impl Answer {
    /// Whether the answer says the query is still running (333333, 333334).
    pub fn in_progress(&self) -> bool {
        matches!(self.code.as_deref(), Some("333333") | Some("333334"))
    }

    /// Whether the answer is a success (`success: true`, or rows were being read when a cap
    /// stopped the reading: errors carry no rowset).
    pub fn succeeded(&self) -> bool {
        self.success
            .unwrap_or(self.stopped_early && self.has_rowset)
    }
}

/// Why reading stopped: the caps were reached. Not an error; recognised by [`read_answer`].
const STOP: &str = "snowgate-mcp: cap reached";

/// Reads an answer from `reader`, keeping rows under `caps`. The reader is not read past the
/// point where a cap was reached (see the module header).
pub fn read_answer(reader: impl Read, caps: Caps) -> Result<Answer, serde_json::Error> {
    let mut answer = Answer::default();
    let mut de = serde_json::Deserializer::from_reader(reader);
    match (TopSeed {
        answer: &mut answer,
        caps,
    })
    .deserialize(&mut de)
    {
        Ok(()) => Ok(answer),
        Err(e) if answer.stopped_early && e.to_string().starts_with(STOP) => Ok(answer),
        Err(e) => Err(e),
    }
}

/// Reads one result chunk's rows (`[..],[..]`, the form of Snowflake's JSON chunks, without the
/// outer brackets) into `rows`, until the caps are reached. Returns whether it stopped early.
pub fn read_chunk(
    reader: impl Read,
    rows: &mut Rows,
    caps: Caps,
) -> Result<bool, serde_json::Error> {
    let wrapped = std::io::Cursor::new(b"[".as_slice())
        .chain(reader)
        .chain(std::io::Cursor::new(b"]".as_slice()));
    let mut de = serde_json::Deserializer::from_reader(wrapped);
    let mut stopped = false;
    match (RowsetSeed {
        rows,
        caps,
        stopped: &mut stopped,
        keep_reading: false,
    })
    .deserialize(&mut de)
    {
        Ok(()) => Ok(stopped),
        Err(e) if stopped && e.to_string().starts_with(STOP) => Ok(true),
        Err(e) => Err(e),
    }
}

struct TopSeed<'a> {
    answer: &'a mut Answer,
    caps: Caps,
}

impl<'de> DeserializeSeed<'de> for TopSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a Snowflake answer object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "data" => map.next_value_seed(DataSeed {
                    answer: &mut *self.answer,
                    caps: self.caps,
                })?,
                "success" => self.answer.success = map.next_value::<Option<bool>>()?,
                "code" => self.answer.code = map.next_value::<Option<Code>>()?.map(|c| c.0),
                "message" => self.answer.message = map.next_value()?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Snowflake's `code` is a string, or a number in some answers.
struct Code(String);

impl<'de> Deserialize<'de> for Code {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Code, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(Code(s)),
            other => Ok(Code(other.to_string())),
        }
    }
}

struct DataSeed<'a> {
    answer: &'a mut Answer,
    caps: Caps,
}

impl<'de> DeserializeSeed<'de> for DataSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for DataSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the answer's data object")
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let answer = self.answer;
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "queryId" => answer.query_id = map.next_value()?,
                "rowtype" => answer.columns = map.next_value()?,
                "rowset" => {
                    answer.has_rowset = true;
                    let keep_reading = answer.columns.is_none();
                    let mut stopped = false;
                    let read = map.next_value_seed(RowsetSeed {
                        rows: &mut answer.rows,
                        caps: self.caps,
                        stopped: &mut stopped,
                        keep_reading,
                    });
                    if stopped {
                        answer.stopped_early = true;
                    }
                    read?;
                }
                "total" => answer.total = map.next_value()?,
                "chunks" => answer.chunks = map.next_value::<Option<_>>()?.unwrap_or_default(),
                "chunkHeaders" => {
                    let headers: Option<serde_json::Map<String, serde_json::Value>> =
                        map.next_value()?;
                    answer.chunk_headers = headers
                        .unwrap_or_default()
                        .into_iter()
                        .filter_map(|(k, v)| v.as_str().map(|v| (k, v.to_string())))
                        .collect();
                }
                "qrmk" => answer.qrmk = map.next_value()?,
                "rowsetBase64" => {
                    let arrow: Option<IgnoredString> = map.next_value()?;
                    answer.arrow = arrow.is_some_and(|s| s.0);
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// A string read only to learn whether it was empty.
struct IgnoredString(bool);

impl<'de> Deserialize<'de> for IgnoredString {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<IgnoredString, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IgnoredString;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<IgnoredString, E> {
                Ok(IgnoredString(!s.is_empty()))
            }
        }
        d.deserialize_str(V)
    }
}

struct RowsetSeed<'a> {
    rows: &'a mut Rows,
    caps: Caps,
    stopped: &'a mut bool,
    /// At a cap, skip the remaining rows (without keeping them) instead of stopping.
    keep_reading: bool,
}

impl<'de> DeserializeSeed<'de> for RowsetSeed<'_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de> Visitor<'de> for RowsetSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a rowset: a list of rows")
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            if self.rows.full(self.caps) || self.rows.truncated {
                // One more element tells a result that ends exactly at the cap from a longer one.
                if seq.next_element::<IgnoredAny>()?.is_none() {
                    return Ok(());
                }
                self.rows.truncated = true;
                if self.keep_reading {
                    while seq.next_element::<IgnoredAny>()?.is_some() {}
                    return Ok(());
                }
                *self.stopped = true;
                return Err(de::Error::custom(STOP));
            }
            match seq.next_element::<Vec<Option<Cell>>>()? {
                None => return Ok(()),
                Some(row) => {
                    let row = row.into_iter().map(|c| c.map(|c| c.0)).collect();
                    if !self.rows.admit(row, self.caps) && !self.keep_reading {
                        *self.stopped = true;
                        return Err(de::Error::custom(STOP));
                    }
                }
            }
        }
    }
}

/// One cell: Snowflake's JSON rowsets carry strings; anything else is kept as its JSON text.
struct Cell(String);

impl<'de> Deserialize<'de> for Cell {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Cell, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::String(s) => Ok(Cell(s)),
            other => Ok(Cell(other.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell as StdCell;
    use std::rc::Rc;

    /// A reader that counts the bytes taken from it.
    struct Counting<R> {
        inner: R,
        taken: Rc<StdCell<usize>>,
    }

    impl<R: Read> Read for Counting<R> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.inner.read(buf)?;
            self.taken.set(self.taken.get() + n);
            Ok(n)
        }
    }

    fn big_answer(rows: usize) -> Vec<u8> {
        let mut s = String::from(
            r#"{"data":{"queryId":"01-q","rowtype":[{"name":"ID","type":"fixed","precision":38,"scale":0,"nullable":false},{"name":"NAME","type":"text","nullable":true}],"rowset":["#,
        );
        for i in 0..rows {
            if i > 0 {
                s.push(',');
            }
            s.push_str(&format!(r#"["{i}","name number {i}"]"#));
        }
        s.push_str(&format!(
            r#"],"total":{rows},"returned":{rows}}},"code":null,"message":null,"success":true}}"#
        ));
        s.into_bytes()
    }

    fn caps(max_rows: u64, max_bytes: u64) -> Caps {
        Caps {
            max_rows,
            max_bytes,
        }
    }

    #[test]
    fn reading_stops_at_the_row_cap_without_pulling_the_rest_of_the_body() {
        let body = big_answer(200_000);
        let taken = Rc::new(StdCell::new(0));
        let reader = std::io::BufReader::with_capacity(
            8192,
            Counting {
                inner: body.as_slice(),
                taken: taken.clone(),
            },
        );
        let a = read_answer(reader, caps(50, 1 << 20)).unwrap();
        assert_eq!(a.rows.rows.len(), 50);
        assert!(a.rows.truncated && a.stopped_early && a.succeeded());
        assert_eq!(a.query_id.as_deref(), Some("01-q"));
        assert_eq!(a.columns.as_ref().unwrap()[0].type_label(), "NUMBER(38,0)");
        assert_eq!(a.rows.rows[49][1].as_deref(), Some("name number 49"));
        assert!(
            taken.get() <= 3 * 8192,
            "read {} of {} bytes",
            taken.get(),
            body.len()
        );
    }

    #[test]
    fn reading_stops_at_the_byte_cap() {
        let body = big_answer(10_000);
        let a = read_answer(body.as_slice(), caps(1_000_000, 100)).unwrap();
        assert!(a.rows.truncated && a.stopped_early);
        assert!(a.rows.bytes <= 100, "{}", a.rows.bytes);
        assert_eq!(a.rows.rows.len(), 7, "{:?}", a.rows.rows);
    }

    #[test]
    fn a_result_that_ends_at_the_cap_is_not_truncated() {
        let a = read_answer(big_answer(5).as_slice(), caps(5, 1 << 20)).unwrap();
        assert_eq!(a.rows.rows.len(), 5);
        assert!(!a.rows.truncated && !a.stopped_early);
        assert_eq!(a.success, Some(true));
        assert_eq!(a.total, Some(5));
        let a = read_answer(big_answer(6).as_slice(), caps(5, 1 << 20)).unwrap();
        assert!(a.rows.truncated);
    }

    #[test]
    fn columns_after_the_rows_are_still_read_when_a_cap_is_hit() {
        let body = br#"{"data":{"rowset":[["1"],["2"],["3"]],"rowtype":[{"name":"N","type":"fixed"}],"queryId":"q"},"success":true}"#;
        let a = read_answer(body.as_slice(), caps(1, 1 << 20)).unwrap();
        assert_eq!(a.rows.rows, vec![vec![Some("1".to_string())]]);
        assert!(a.rows.truncated && !a.stopped_early);
        assert_eq!(a.columns.unwrap()[0].name, "N");
        assert_eq!(a.query_id.as_deref(), Some("q"));
    }

    #[test]
    fn errors_in_progress_and_arrow_answers_are_recognised() {
        let e = br#"{"data":{"errorCode":"002003","sqlState":"02000","queryId":"q1"},"code":"002003","message":"SQL compilation error: Object 'NOPE' does not exist.","success":false}"#;
        let a = read_answer(e.as_slice(), caps(10, 10)).unwrap();
        assert!(!a.succeeded());
        assert_eq!(a.code.as_deref(), Some("002003"));
        assert!(a.message.unwrap().contains("does not exist"));
        let p = br#"{"data":{"queryId":"q2","getResultUrl":"/queries/q2/result"},"code":"333334","message":"Asynchronous execution in progress.","success":true}"#;
        let a = read_answer(p.as_slice(), caps(10, 10)).unwrap();
        assert!(a.in_progress());
        assert_eq!(a.query_id.as_deref(), Some("q2"));
        let arrow = br#"{"data":{"rowtype":[],"rowsetBase64":"QUJD","queryId":"q3"},"code":null,"success":true}"#;
        assert!(read_answer(arrow.as_slice(), caps(10, 10)).unwrap().arrow);
        let nulls = br#"{"data":{"rowtype":[{"name":"A","type":"text"}],"rowset":[[null],[7]]},"code":123,"success":true}"#;
        let a = read_answer(nulls.as_slice(), caps(10, 100)).unwrap();
        assert_eq!(a.rows.rows, vec![vec![None], vec![Some("7".into())]]);
        assert_eq!(a.code.as_deref(), Some("123"));
    }

    #[test]
    fn chunks_are_read_under_the_caps_left() {
        let mut rows = Rows::default();
        let body = br#"["1","a"],["2","b"],["3","c"]"#;
        assert!(!read_chunk(body.as_slice(), &mut rows, caps(10, 100)).unwrap());
        assert_eq!(rows.rows.len(), 3);
        let more = br#"["4","d"],["5","e"]"#;
        assert!(read_chunk(more.as_slice(), &mut rows, caps(4, 100)).unwrap());
        assert_eq!(rows.rows.len(), 4);
        assert!(rows.truncated);
        assert!(read_answer(b"{\"data\": [1".as_slice(), caps(1, 1)).is_err());
    }
}
