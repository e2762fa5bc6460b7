//! Errors that say where in a config file the problem is.
//!
//! Every value in a Snowgate config is read by a type whose `Deserialize` checks it, so the
//! TOML parser's error carries the span of the bad value. [`ConfigText::parse`] turns that
//! span into a line and a dotted key (`roles.max_duration`, `team.sever`) and tidies serde's
//! wording (`unknown field` → `unknown key`). Cross-field checks, which run after parsing,
//! locate their key with [`ConfigText::line_of_key`] and friends.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A config that can't be used, and where: `reading config at FILE: line N: key `a.b`: what
/// is wrong` (the line and key when they are known).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("reading config at {}: {}{}", path.display(), location(*line, key.as_deref()), message)]
pub struct LocatedError {
    pub path: PathBuf,
    pub line: Option<usize>,
    pub key: Option<String>,
    pub message: String,
}

fn location(line: Option<usize>, key: Option<&str>) -> String {
    let mut s = String::new();
    if let Some(line) = line {
        s.push_str(&format!("line {line}: "));
    }
    if let Some(key) = key {
        s.push_str(&format!("key `{key}`: "));
    }
    s
}

/// A config file's text and its path, which errors name.
#[derive(Debug, Clone, Copy)]
pub struct ConfigText<'a> {
    pub text: &'a str,
    pub path: &'a Path,
}

impl<'a> ConfigText<'a> {
    /// `text` as read from `path` (used in error messages only).
    pub fn new(text: &'a str, path: &'a Path) -> ConfigText<'a> {
        ConfigText { text, path }
    }

    /// Parses the whole file; an error names the line and key of the value that caused it.
    pub fn parse<T: DeserializeOwned>(&self) -> Result<T, LocatedError> {
        toml::from_str(self.text).map_err(|e| {
            let (line, key) = match e.span() {
                Some(span) => (
                    Some(self.line_of(span.start)),
                    key_at(self.text, span.start, e.message()),
                ),
                None => (None, None),
            };
            LocatedError {
                path: self.path.to_path_buf(),
                line,
                key,
                message: tidy_message(e.message()),
            }
        })
    }

    /// An error at `line` about `key`.
    pub fn error(
        &self,
        line: Option<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> LocatedError {
        LocatedError {
            path: self.path.to_path_buf(),
            line,
            key: Some(key.into()),
            message: message.into(),
        }
    }

    /// An error about the dotted `table.key`, at its line (or its table's) when it is there.
    pub fn error_at_key(&self, dotted: &str, message: impl Into<String>) -> LocatedError {
        self.error(self.line_of_key(dotted), dotted, message)
    }

    /// The 1-based line of a byte offset.
    pub fn line_of(&self, offset: usize) -> usize {
        self.text[..char_start(self.text, offset)]
            .matches('\n')
            .count()
            + 1
    }

    /// The line where `needle` first occurs, else line 1.
    pub fn line_of_text(&self, needle: &str) -> usize {
        self.line_of(self.text.find(needle).unwrap_or(0))
    }

    /// The line of `table.key = ...`, else the line of `[table]`, if either is there.
    pub fn line_of_key(&self, dotted: &str) -> Option<usize> {
        let (table, key) = dotted.split_once('.')?;
        let mut in_table = false;
        for (i, line) in self.text.lines().enumerate() {
            let l = line.trim();
            if l.starts_with('[') {
                in_table = l.trim_matches(|c| c == '[' || c == ']').trim() == table;
            } else if in_table
                && l.split_once('=')
                    .is_some_and(|(k, _)| k.trim().trim_matches('"') == key)
            {
                return Some(i + 1);
            }
        }
        self.text
            .lines()
            .position(|l| l.trim().trim_matches(|c| c == '[' || c == ']').trim() == table)
            .map(|i| i + 1)
    }

    /// The line of the `i`-th (0-based) `[[name]]` header, if there is one.
    pub fn line_of_table(&self, name: &str, i: usize) -> Option<usize> {
        let header = format!("[[{name}]]");
        self.text
            .lines()
            .enumerate()
            .filter(|(_, l)| l.trim() == header)
            .nth(i)
            .map(|(n, _)| n + 1)
    }
}

/// The dotted key an error refers to: the unknown field's name from the message, or the key
/// whose value starts at `offset`, with the enclosing table's name in front.
fn key_at(text: &str, offset: usize, message: &str) -> Option<String> {
    let offset = char_start(text, offset);
    let line_start = text[..offset].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let line = text[line_start..].lines().next().unwrap_or("");
    let table = text[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_string());
    let leaf = if let Some(rest) = message.strip_prefix("unknown field `") {
        rest.split('`').next().map(str::to_string)
    } else {
        line.split_once('=')
            .map(|(k, _)| k.trim().trim_matches('"').to_string())
            .filter(|k| !k.is_empty() && !k.starts_with('['))
    };
    match (table, leaf) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (Some(t), None) => Some(t),
        (None, k) => k,
    }
}

/// The start of the character that byte `offset` falls in (or the text's end): the parser's
/// spans may point inside a character, as after a backslash that escapes nothing.
fn char_start(text: &str, offset: usize) -> usize {
    let mut at = offset.min(text.len());
    while !text.is_char_boundary(at) {
        at -= 1;
    }
    at
}

/// serde's wording in the words of a config file.
fn tidy_message(message: &str) -> String {
    let message = message.trim();
    if let Some(rest) = message.strip_prefix("unknown field `") {
        let name = rest.split('`').next().unwrap_or("");
        let expected = rest.split_once(", expected ").map(|(_, e)| e).unwrap_or("");
        return format!("unknown key `{name}` (expected {expected})");
    }
    if let Some(rest) = message.strip_prefix("missing field `") {
        let name = rest.split('`').next().unwrap_or("");
        return format!("missing required key `{name}`");
    }
    message.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct File {
        server: Server,
        #[serde(default)]
        roles: Vec<Role>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Server {
        listen: String,
        #[serde(default)]
        workers: u8,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Role {
        name: String,
    }

    fn text(t: &str) -> ConfigText<'_> {
        ConfigText::new(t, Path::new("/etc/x.toml"))
    }

    #[test]
    fn an_unknown_key_names_file_line_table_and_key() {
        let t = "[server]\nlisten = \"a\"\nlisen = \"b\"\n";
        let err = text(t).parse::<File>().unwrap_err().to_string();
        assert!(
            err.starts_with("reading config at /etc/x.toml: line 3: key `server.lisen`: unknown key `lisen` (expected "),
            "{err}"
        );
    }

    #[test]
    fn a_bad_value_names_its_key_and_a_missing_key_is_named() {
        let t = "[server]\nlisten = \"a\"\nworkers = 900\n";
        let err = text(t).parse::<File>().unwrap_err();
        assert_eq!(err.line, Some(3));
        assert_eq!(err.key.as_deref(), Some("server.workers"));
        let err = text("[server]\nworkers = 1\n").parse::<File>().unwrap_err();
        assert_eq!(err.message, "missing required key `listen`");
    }

    #[test]
    fn cross_field_errors_find_their_key_or_table() {
        let t =
            text("[server]\nlisten = \"a\"\n\n[[roles]]\nname = \"A\"\n[[roles]]\nname = \"B\"\n");
        assert_eq!(t.line_of_key("server.listen"), Some(2));
        assert_eq!(t.line_of_key("server.workers"), Some(1));
        assert_eq!(t.line_of_key("nowhere.x"), None);
        assert_eq!(t.line_of_table("roles", 1), Some(6));
        assert_eq!(t.line_of_text("name = \"B\""), 7);
        let err = t.error_at_key("server.listen", "is wrong").to_string();
        assert_eq!(
            err,
            "reading config at /etc/x.toml: line 2: key `server.listen`: is wrong"
        );
    }

    #[test]
    fn an_error_inside_a_non_ascii_character_is_located() {
        // Found by the `config` fuzz target: TOML's span for a bad escape starts inside the
        // character after the backslash, and cutting the text there panicked.
        let text = "[server]\nlisten = \"C:\\Ärger\"\n";
        let err = ConfigText::new(text, Path::new("c.toml"))
            .parse::<File>()
            .unwrap_err();
        assert_eq!(err.line, Some(2), "{err}");
        assert_eq!(err.key.as_deref(), Some("server.listen"), "{err}");
    }
}
