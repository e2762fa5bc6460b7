"""Runs statements the read-only rule allows against fakesnow and checks that none changes state.

Reads statements from the file named by argv[1], separated by NUL bytes. Prepares a schema
(tables with rows, a view, a sequence) in fakesnow's in-process DuckDB, then runs each
statement on its own connection cursor (several statements in one text through the
connector's execute_string). After each one it compares the state with the state before: the
list of tables, views and sequences (DuckDB's catalog, fakesnow's own bookkeeping tables
included), each table's row count and a checksum of its rows, and each sequence's last value.

Prints `executed=N errored=M` and, for each statement that changed something, `CHANGED: ...`;
exits 1 when any did.
"""

import hashlib
import sys
import warnings

import fakesnow
import snowflake.connector

warnings.simplefilter("ignore")

SETUP = [
    "CREATE TABLE t (a INT, b INT, c VARCHAR, d VARCHAR, v VARIANT, id INT, parent_id INT, amount INT, month VARCHAR)",
    "INSERT INTO t (a, b, c, d, id, parent_id, amount, month) VALUES "
    "(1, 2, 'x', 'y', 1, NULL, 10, 'JAN'), (2, 3, 'xz', 'q', 2, 1, 20, 'FEB'), (3, 4, NULL, 'z', 3, 1, 30, 'JAN')",
    "CREATE TABLE u (a INT, b INT, id INT)",
    "INSERT INTO u VALUES (1, 5, 1), (7, 8, 2)",
    "CREATE TABLE t1 (id INT, a INT)",
    "INSERT INTO t1 VALUES (1, 1), (2, 2)",
    "CREATE TABLE t2 (id INT, a INT)",
    "INSERT INTO t2 VALUES (2, 20)",
    "CREATE VIEW vw AS SELECT a, b FROM t",
    "CREATE SEQUENCE seq",
]


def state(duck):
    tables = duck.execute(
        "SELECT database_name, schema_name, table_name FROM duckdb_tables() ORDER BY ALL"
    ).fetchall()
    views = duck.execute(
        "SELECT database_name, schema_name, view_name, sql FROM duckdb_views() WHERE NOT internal ORDER BY ALL"
    ).fetchall()
    sequences = duck.execute(
        "SELECT database_name, schema_name, sequence_name, last_value FROM duckdb_sequences() ORDER BY ALL"
    ).fetchall()
    contents = {}
    for db, schema, table in tables:
        rows = duck.execute(f'SELECT * FROM "{db}"."{schema}"."{table}"').fetchall()
        digest = hashlib.sha256("\n".join(sorted(repr(r) for r in rows)).encode()).hexdigest()
        contents[(db, schema, table)] = (len(rows), digest)
    return {"tables": tables, "views": views, "sequences": sequences, "contents": contents}


def differences(before, after):
    out = []
    for key in ("tables", "views", "sequences"):
        if before[key] != after[key]:
            out.append(f"{key}: {sorted(map(repr, set(before[key]) ^ set(after[key])))}")
    for table, value in after["contents"].items():
        if table in before["contents"] and before["contents"][table] != value:
            out.append(f"{'.'.join(table)}: rows/checksum {before['contents'][table]} -> {value}")
    return out


def main():
    statements = [s for s in open(sys.argv[1], encoding="utf-8").read().split("\0") if s]
    executed = errored = 0
    changed = []
    with fakesnow.patch():
        conn = snowflake.connector.connect(database="DB", schema="SCH")
        cur = conn.cursor()
        for s in SETUP:
            cur.execute(s)
        duck = conn._duck_conn
        for sql in statements:
            before = state(duck)
            try:
                for c in conn.execute_string(sql):
                    c.fetchall()
                executed += 1
            except Exception as e:  # fakesnow or DuckDB can't run it: counted, not a failure
                errored += 1
                print(f"errored: {sql!r}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
            # A statement may have moved the session elsewhere: come back for the next one.
            try:
                conn.cursor().execute("USE SCHEMA DB.SCH")
            except Exception:
                pass
            diff = differences(before, state(duck))
            if diff:
                changed.append(f"CHANGED: {sql!r}: {'; '.join(diff)}")
    print(f"executed={executed} errored={errored}")
    for c in changed:
        print(c)
    sys.exit(1 if changed else 0)


main()
