//! How a result reaches the agent: a text table (column names and types, the rows, a
//! "truncated" note and the query id) and the same as structured JSON.

use serde_json::{json, Value};

use crate::answer::{Answer, Caps};

/// The longest a cell is shown in the text table; the structured copy keeps it whole.
const CELL_CHARS: usize = 200;

/// The text table and the structured JSON of a finished statement.
pub fn result(answer: &Answer, caps: Caps) -> (String, Value) {
    let columns = answer.columns.clone().unwrap_or_default();
    let rows = &answer.rows.rows;
    let mut text = String::new();
    if let Some(id) = &answer.query_id {
        text.push_str(&format!("query id: {id}\n"));
    }
    if columns.is_empty() {
        text.push_str("The statement ran and returned no columns.\n");
    } else {
        let header: Vec<String> = columns
            .iter()
            .map(|c| format!("{} ({})", cell(&c.name), c.type_label()))
            .collect();
        text.push_str(&format!("| {} |\n", header.join(" | ")));
        text.push_str(&format!("|{}\n", "---|".repeat(columns.len())));
        for row in rows {
            let cells: Vec<String> = row
                .iter()
                .map(|c| c.as_deref().map_or("NULL".to_string(), cell))
                .collect();
            text.push_str(&format!("| {} |\n", cells.join(" | ")));
        }
    }
    let note = truncation_note(answer, caps);
    match &note {
        Some(n) => text.push_str(&format!("{n}\n")),
        None => text.push_str(&format!(
            "{} row{}.\n",
            rows.len(),
            if rows.len() == 1 { "" } else { "s" }
        )),
    }
    let structured = json!({
        "query_id": answer.query_id,
        "columns": columns.iter().map(|c| json!({"name": c.name, "type": c.type_label(), "nullable": c.nullable})).collect::<Vec<_>>(),
        "rows": rows,
        "row_count": rows.len(),
        "total_rows": answer.total,
        "truncated": answer.rows.truncated,
        "note": note,
        "caps": {"max_rows": caps.max_rows, "max_bytes": caps.max_bytes},
    });
    (text, structured)
}

/// The sentence that says a result was cut, and by which cap.
pub fn truncation_note(answer: &Answer, caps: Caps) -> Option<String> {
    if !answer.rows.truncated {
        return None;
    }
    let shown = answer.rows.rows.len();
    let by = if shown as u64 >= caps.max_rows {
        format!("the agent's row cap of {}", caps.max_rows)
    } else {
        format!("the agent's byte cap of {} bytes", caps.max_bytes)
    };
    let of = match answer.total {
        Some(t) if t > shown as u64 => format!(" of {t}"),
        _ => String::new(),
    };
    Some(format!(
        "TRUNCATED: showing the first {shown}{of} rows; reading stopped at {by}. Narrow the query (WHERE, LIMIT, fewer columns) to see the rest."
    ))
}

fn cell(s: &str) -> String {
    let one_line = s.replace(['\n', '\r'], " ").replace('|', "\\|");
    if one_line.chars().count() > CELL_CHARS {
        let cut: String = one_line.chars().take(CELL_CHARS).collect();
        format!("{cut}…")
    } else {
        one_line
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::answer::read_answer;

    #[test]
    fn a_capped_result_says_it_was_truncated_and_by_what() {
        let body = br#"{"data":{"queryId":"q9","total":3,"rowtype":[{"name":"ID","type":"fixed","precision":38,"scale":0},{"name":"NOTE","type":"text"}],"rowset":[["1","a|b"],["2",null],["3","c"]]},"success":true}"#;
        let caps = Caps {
            max_rows: 2,
            max_bytes: 1000,
        };
        let a = read_answer(body.as_slice(), caps).unwrap();
        let (text, json) = result(&a, caps);
        assert!(
            text.starts_with("query id: q9\n| ID (NUMBER(38,0)) | NOTE (TEXT) |"),
            "{text}"
        );
        assert!(
            text.contains("| 1 | a\\|b |") && text.contains("| 2 | NULL |"),
            "{text}"
        );
        assert!(text.contains("TRUNCATED: showing the first 2 of 3 rows; reading stopped at the agent's row cap of 2."), "{text}");
        assert_eq!(json["truncated"], true);
        assert_eq!(json["rows"][1][1], Value::Null);
        let caps = Caps {
            max_rows: 10,
            max_bytes: 1000,
        };
        let a = read_answer(body.as_slice(), caps).unwrap();
        let (text, json) = result(&a, caps);
        assert!(text.ends_with("3 rows.\n"), "{text}");
        assert_eq!(json["truncated"], false);
    }
}
