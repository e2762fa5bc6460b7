//! What the `describe` tool asks Snowflake: SHOW or DESCRIBE for the level named (databases,
//! a database's schemas, a schema's tables, a table's columns), with names quoted only where
//! Snowflake needs it.

use schemars::JsonSchema;
use serde::Deserialize;

#[derive(Debug, Deserialize, JsonSchema)]
pub struct DescribeArgs {
    /// The role to look with; may be left out when exactly one usable role is active.
    #[serde(default)]
    pub role: Option<String>,
    /// A database: its schemas are listed. Leave out to list databases.
    #[serde(default)]
    pub database: Option<String>,
    /// A schema of `database`: its tables are listed.
    #[serde(default)]
    pub schema: Option<String>,
    /// A table of `database.schema` (or of the session's default schema when those are left
    /// out): its columns are described.
    #[serde(default)]
    pub table: Option<String>,
}

/// A name as it goes into SQL: as typed when it is a plain identifier (Snowflake upper-cases
/// it), else double-quoted.
fn ident(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
    if plain {
        name.to_string()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// The statement `describe` runs for what was asked.
pub(crate) fn describe_sql(args: &DescribeArgs) -> Result<String, String> {
    let db = args
        .database
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let schema = args
        .schema
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    let table = args
        .table
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    Ok(match (db, schema, table) {
        (None, None, None) => "SHOW DATABASES".into(),
        (Some(d), None, None) => format!("SHOW SCHEMAS IN DATABASE {}", ident(d)),
        (Some(d), Some(s), None) => format!("SHOW TABLES IN SCHEMA {}.{}", ident(d), ident(s)),
        (Some(d), Some(s), Some(t)) => {
            format!("DESCRIBE TABLE {}.{}.{}", ident(d), ident(s), ident(t))
        }
        (None, Some(s), Some(t)) => format!("DESCRIBE TABLE {}.{}", ident(s), ident(t)),
        (None, None, Some(t)) => format!("DESCRIBE TABLE {}", ident(t)),
        (None, Some(_), None) => {
            return Err("to list a schema's tables, name its database too".into())
        }
        (Some(_), None, Some(_)) => {
            return Err("to describe a table in a database, name its schema too".into())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(db: Option<&str>, schema: Option<&str>, table: Option<&str>) -> DescribeArgs {
        DescribeArgs {
            role: None,
            database: db.map(str::to_string),
            schema: schema.map(str::to_string),
            table: table.map(str::to_string),
        }
    }

    #[test]
    fn describe_asks_snowflake_for_the_level_named() {
        assert_eq!(
            describe_sql(&args(None, None, None)).unwrap(),
            "SHOW DATABASES"
        );
        assert_eq!(
            describe_sql(&args(Some("RIGDB"), None, None)).unwrap(),
            "SHOW SCHEMAS IN DATABASE RIGDB"
        );
        assert_eq!(
            describe_sql(&args(Some("rigdb"), Some("My Schema"), None)).unwrap(),
            "SHOW TABLES IN SCHEMA rigdb.\"My Schema\""
        );
        assert_eq!(
            describe_sql(&args(Some("D"), Some("S"), Some("t\"x"))).unwrap(),
            "DESCRIBE TABLE D.S.\"t\"\"x\""
        );
        assert_eq!(
            describe_sql(&args(None, None, Some("ORDERS"))).unwrap(),
            "DESCRIBE TABLE ORDERS"
        );
        assert!(describe_sql(&args(None, Some("S"), None)).is_err());
        assert!(describe_sql(&args(Some("D"), None, Some("T"))).is_err());
    }
}
