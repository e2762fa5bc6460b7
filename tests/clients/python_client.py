"""A real snowflake-connector-python program for the rig's tests.

Run it with `.rig/venv-client/bin/python` (connector 5.x) or `.rig/venv-fakesnow/bin/python`
(connector 4.x). It asserts nothing: it does what the scenario says and prints what happened as
one JSON object on stdout (the `hold` scenario prints one JSON object per line, then a final one).

Exit code: 0 when the scenario ran and reported, whether or not Snowflake (or the gateway)
refused something: a driver error is reported as {"ok": false, "error": {"errno", "sqlstate",
"msg", "type"}, ...}. Non-zero only for harness bugs (bad arguments, an exception outside the
driver).

Arguments: --url http://127.0.0.1:PORT, --account, --user, --password or --authenticator oauth
--token (or the environment: RIG_SF_PASSWORD, RIG_SF_TOKEN, kept off the command line), or
--private-key-file PEM (key-pair authentication), --role, --database, --schema, --warehouse, --query-tag, --scenario NAME, and scenario
options (--rows, --sleep, --interval, --duration, --heartbeat-frequency, --sql, --paramstyle).

Scenarios: smoke, ddl_dml, big_select, binds, async, renew, heartbeat, close, hold, query.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
import traceback
from typing import Any
from urllib.parse import urlsplit

import snowflake.connector
from snowflake.connector import errors as sf_errors


def emit(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj, default=str) + "\n")
    sys.stdout.flush()


def driver_error(e: BaseException) -> dict[str, Any]:
    return {
        "type": type(e).__name__,
        "errno": getattr(e, "errno", None),
        "sqlstate": getattr(e, "sqlstate", None),
        "msg": getattr(e, "msg", None) or str(e),
    }


class Client:
    def __init__(self, args: argparse.Namespace):
        self.args = args

    def connect(self, **extra: Any):
        a = self.args
        u = urlsplit(a.url)
        kwargs: dict[str, Any] = {
            "account": a.account,
            "host": u.hostname,
            "port": u.port or (443 if u.scheme == "https" else 80),
            "protocol": u.scheme,
            "login_timeout": a.login_timeout,
        }
        if a.user:
            kwargs["user"] = a.user
        if a.authenticator:
            kwargs["authenticator"] = a.authenticator
        if a.token:
            kwargs["token"] = a.token
        if a.password is not None:
            kwargs["password"] = a.password
        if a.role:
            kwargs["role"] = a.role
        if a.database:
            kwargs["database"] = a.database
        if a.schema:
            kwargs["schema"] = a.schema
        if a.warehouse:
            kwargs["warehouse"] = a.warehouse
        if a.query_tag:
            kwargs["session_parameters"] = {"QUERY_TAG": a.query_tag}
        if a.paramstyle:
            kwargs["paramstyle"] = a.paramstyle
        if a.custom_root_store_path:
            kwargs["custom_root_store_path"] = a.custom_root_store_path
        if a.disable_ocsp:
            kwargs["insecure_mode"] = True
        if a.private_key_file:
            # Key-pair authentication: the connector signs its own JWT with this key.
            from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

            with open(a.private_key_file, "rb") as f:
                key = serialization.load_pem_private_key(f.read(), None)
            kwargs["private_key"] = key.private_bytes(
                serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            kwargs["authenticator"] = "SNOWFLAKE_JWT"
        kwargs.update(extra)
        return snowflake.connector.connect(**kwargs)


def session_id(conn: Any) -> Any:
    for attr in ("session_id", "_session_id"):
        v = getattr(conn, attr, None)
        if v is not None:
            return v
    return None


def one(conn: Any, sql: str, params: Any = None) -> list[Any]:
    cur = conn.cursor()
    try:
        if params is None:
            cur.execute(sql)
        else:
            cur.execute(sql, params)
        return [list(r) for r in cur.fetchall()]
    finally:
        cur.close()


def scenario_smoke(c: Client, out: dict[str, Any]) -> None:
    conn = c.connect()
    out["connected"] = True
    out["session_id"] = session_id(conn)
    out["rows"] = one(conn, "select 1")
    conn.close()
    out["closed"] = True


def scenario_query(c: Client, out: dict[str, Any]) -> None:
    conn = c.connect()
    out["connected"] = True
    out["session_id"] = session_id(conn)
    out["rows"] = one(conn, c.args.sql or "select 1")
    conn.close()


def scenario_multi(c: Client, out: dict[str, Any]) -> None:
    """`--sql` as one multi-statement request (`num_statements=0`: any number), then the same
    text through `execute_string` (the connector splits it and sends each statement alone)."""
    conn = c.connect()
    out["connected"] = True
    out["session_id"] = session_id(conn)
    sql = c.args.sql or "select 1; select 2"
    cur = conn.cursor()
    try:
        cur.execute(sql, num_statements=0)
        out["multi_rows"] = [list(r) for r in cur.fetchall()]
    except Exception as e:  # the front's Snowflake may not run multi-statement requests
        out["multi_error"] = driver_error(e)
    finally:
        cur.close()
    out["each_rows"] = [[list(r) for r in cur.fetchall()] for cur in conn.execute_string(sql)]
    conn.close()


def scenario_ddl_dml(c: Client, out: dict[str, Any]) -> None:
    conn = c.connect()
    out["connected"] = True
    out["session_id"] = session_id(conn)
    table = c.args.table or "rig_ddl_dml"
    steps: dict[str, Any] = {}
    cur = conn.cursor()
    cur.execute(f"create or replace table {table} (id int, name varchar, amount number(10,2))")
    steps["create"] = True
    cur.execute(f"insert into {table} values (1, 'one', 1.50), (2, 'two', 2.25), (3, 'three', 3.00)")
    steps["insert_rowcount"] = cur.rowcount
    cur.execute(f"update {table} set name = 'TWO' where id = 2")
    steps["update_rowcount"] = cur.rowcount
    cur.execute(f"select id, name, amount from {table} order by id")
    steps["select"] = [[r[0], r[1], str(r[2])] for r in cur.fetchall()]
    if not c.args.keep_table:
        cur.execute(f"drop table {table}")
        steps["drop"] = True
    cur.close()
    out["steps"] = steps
    conn.close()


def scenario_big_select(c: Client, out: dict[str, Any]) -> None:
    n = c.args.rows
    conn = c.connect()
    out["connected"] = True
    out["session_id"] = session_id(conn)
    cur = conn.cursor()
    t0 = time.monotonic()
    cur.execute(f"select seq4() as n, 'row-' || seq4() as label from table(generator(rowcount => {n})) order by n")
    count = 0
    total = 0
    h = hashlib.sha256()
    for row in cur:
        count += 1
        total += int(row[0])
        h.update(f"{row[0]}:{row[1]}\n".encode())
    out["elapsed_s"] = round(time.monotonic() - t0, 3)
    out["row_count"] = count
    out["sum"] = total
    out["checksum"] = h.hexdigest()
    cur.close()
    conn.close()


def scenario_binds(c: Client, out: dict[str, Any]) -> None:
    results: dict[str, Any] = {}
    table = c.args.table or "rig_binds"
    # qmark: server-side binding.
    conn = c.connect(paramstyle="qmark")
    out["connected"] = True
    out["session_id"] = session_id(conn)
    cur = conn.cursor()
    cur.execute(f"create or replace table {table} (id int, name varchar)")
    cur.execute(f"insert into {table} values (?, ?)", (1, "one"))
    cur.executemany(f"insert into {table} values (?, ?)", [(2, "two"), (3, "three")])
    results["qmark_rowcount_executemany"] = cur.rowcount
    cur.execute(f"select name from {table} where id = ?", (2,))
    results["qmark_select"] = [list(r) for r in cur.fetchall()]
    cur.close()
    conn.close()
    # pyformat: client-side interpolation.
    conn = c.connect(paramstyle="pyformat")
    cur = conn.cursor()
    cur.execute(f"insert into {table} values (%s, %s)", (4, "four"))
    cur.executemany(f"insert into {table} values (%(id)s, %(name)s)", [{"id": 5, "name": "five"}, {"id": 6, "name": "six"}])
    cur.execute(f"select id, name from {table} where id >= %(lo)s order by id", {"lo": 4})
    results["pyformat_select"] = [list(r) for r in cur.fetchall()]
    cur.execute(f"select count(*) from {table}")
    results["count"] = cur.fetchone()[0]
    cur.execute(f"drop table {table}")
    cur.close()
    conn.close()
    out["results"] = results


def scenario_async(c: Client, out: dict[str, Any]) -> None:
    conn = c.connect()
    out["connected"] = True
    out["session_id"] = session_id(conn)
    cur = conn.cursor()
    cur.execute_async(c.args.sql or "select 42 as answer, 'async' as how")
    qid = cur.sfqid
    out["query_id"] = qid
    try:
        out["status"] = str(conn.get_query_status(qid))
    except Exception as e:  # noqa: BLE001
        out["status_error"] = driver_error(e)
    cur2 = conn.cursor()
    cur2.get_results_from_sfqid(qid)
    out["rows"] = [list(r) for r in cur2.fetchall()]
    cur2.close()
    cur.close()
    conn.close()


def scenario_renew(c: Client, out: dict[str, Any]) -> None:
    conn = c.connect()
    out["connected"] = True
    out["session_id"] = session_id(conn)
    out["before"] = one(conn, "select 1")
    time.sleep(c.args.sleep)
    try:
        out["after"] = one(conn, "select 2")
        out["query_after_sleep"] = True
    except sf_errors.Error as e:
        out["query_after_sleep"] = False
        out["after_error"] = driver_error(e)
    out["session_id_after"] = session_id(conn)
    conn.close()


def scenario_heartbeat(c: Client, out: dict[str, Any]) -> None:
    conn = c.connect(
        client_session_keep_alive=True,
        client_session_keep_alive_heartbeat_frequency=c.args.heartbeat_frequency,
    )
    out["connected"] = True
    out["session_id"] = session_id(conn)
    out["before"] = one(conn, "select 1")
    time.sleep(c.args.sleep)
    try:
        out["after"] = one(conn, "select 2")
        out["query_after_sleep"] = True
    except sf_errors.Error as e:
        out["query_after_sleep"] = False
        out["after_error"] = driver_error(e)
    conn.close()


def scenario_close(c: Client, out: dict[str, Any]) -> None:
    conn = c.connect()
    out["connected"] = True
    out["session_id"] = session_id(conn)
    out["rows"] = one(conn, "select 1")
    conn.close()
    out["closed"] = True
    try:
        out["is_closed"] = bool(conn.is_closed())
    except Exception:  # noqa: BLE001
        pass


def scenario_hold(c: Client, out: dict[str, Any]) -> None:
    conn = c.connect()
    out["connected"] = True
    out["session_id"] = session_id(conn)
    emit({"event": "connected", "session_id": out["session_id"]})
    deadline = time.monotonic() + c.args.duration
    n = 0
    ok = 0
    failed = 0
    while time.monotonic() < deadline:
        n += 1
        line: dict[str, Any] = {"event": "query", "n": n, "at": time.time()}
        try:
            line["rows"] = one(conn, c.args.sql or f"select {n}")
            line["ok"] = True
            ok += 1
        except sf_errors.Error as e:
            line["ok"] = False
            line["error"] = driver_error(e)
            failed += 1
        emit(line)
        time.sleep(c.args.interval)
    out["queries"] = n
    out["queries_ok"] = ok
    out["queries_failed"] = failed
    try:
        conn.close()
        out["closed"] = True
    except sf_errors.Error as e:
        out["close_error"] = driver_error(e)
    out["event"] = "done"


SCENARIOS = {
    "smoke": scenario_smoke,
    "query": scenario_query,
    "multi": scenario_multi,
    "ddl_dml": scenario_ddl_dml,
    "big_select": scenario_big_select,
    "binds": scenario_binds,
    "async": scenario_async,
    "renew": scenario_renew,
    "heartbeat": scenario_heartbeat,
    "close": scenario_close,
    "hold": scenario_hold,
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", required=True)
    p.add_argument("--account", required=True)
    p.add_argument("--user")
    p.add_argument("--password")
    p.add_argument("--authenticator")
    p.add_argument("--token")
    p.add_argument("--role")
    p.add_argument("--database")
    p.add_argument("--schema")
    p.add_argument("--warehouse")
    p.add_argument("--query-tag")
    p.add_argument("--paramstyle")
    p.add_argument("--scenario", required=True, choices=sorted(SCENARIOS))
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--sleep", type=float, default=6.0)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--heartbeat-frequency", type=int, default=1)
    p.add_argument("--sql")
    p.add_argument("--table")
    p.add_argument("--keep-table", action="store_true")
    p.add_argument("--login-timeout", type=int, default=30)
    p.add_argument("--disable-ocsp", action="store_true")
    p.add_argument("--private-key-file")
    p.add_argument("--custom-root-store-path")
    args = p.parse_args()
    # Secrets may come from the environment instead of the command line (which `ps` shows).
    if args.password is None and os.environ.get("RIG_SF_PASSWORD") is not None:
        args.password = os.environ["RIG_SF_PASSWORD"]
    if args.token is None and os.environ.get("RIG_SF_TOKEN"):
        args.token = os.environ["RIG_SF_TOKEN"]
        args.authenticator = args.authenticator or "oauth"

    out: dict[str, Any] = {
        "scenario": args.scenario,
        "driver": "python",
        "driver_version": snowflake.connector.__version__,
        "connected": False,
    }
    t0 = time.monotonic()
    try:
        SCENARIOS[args.scenario](Client(args), out)
        out["ok"] = True
    except sf_errors.Error as e:
        out["ok"] = False
        out["error"] = driver_error(e)
    except Exception as e:  # noqa: BLE001
        out["ok"] = False
        out["error"] = driver_error(e)
        out["harness_error"] = traceback.format_exc()
        out["elapsed_s_total"] = round(time.monotonic() - t0, 3)
        emit(out)
        return 2
    out["elapsed_s_total"] = round(time.monotonic() - t0, 3)
    emit(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
