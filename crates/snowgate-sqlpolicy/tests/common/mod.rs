//! The corpus file, read: shared by the corpus test and the fakesnow property test.

const CORPUS: &str = include_str!("../corpus.txt");
/// One entry of the corpus, with its line number. (Each test binary reads some of the fields.)
#[allow(dead_code)]
pub struct Entry {
    pub line: usize,
    pub verdict: String,
    pub kind: String,
    pub sql: String,
}

pub fn entries() -> Vec<Entry> {
    CORPUS
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|(i, l)| {
            let mut parts = l.splitn(3, " | ");
            let (Some(v), Some(k), Some(sql)) = (parts.next(), parts.next(), parts.next()) else {
                panic!("corpus.txt line {}: not `VERDICT | KIND | SQL`: {l}", i + 1)
            };
            Entry {
                line: i + 1,
                verdict: v.trim().to_string(),
                kind: k.trim().to_string(),
                sql: sql.replace("\\n", "\n"),
            }
        })
        .collect()
}
