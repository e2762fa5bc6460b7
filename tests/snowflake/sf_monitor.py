"""The monitoring and session-control functions Snowgate's session reaper uses, answered by the
rig's Snowflake front from the sessions, queries and logins it has seen (fakesnow has none).

- `SELECT <columns | *> FROM TABLE([<db>.]INFORMATION_SCHEMA.QUERY_HISTORY_BY_USER(...))` with
  the documented named arguments USER_NAME, END_TIME_RANGE_START, END_TIME_RANGE_END,
  RESULT_LIMIT (1..10000, default 100) and INCLUDE_CLIENT_GENERATED_STATEMENT. Without
  END_TIME_RANGE_END every query is returned, including those still running; with it, only
  queries that completed in the range. The most recent queries come first.
  https://docs.snowflake.com/en/sql-reference/functions/query_history
- `... LOGIN_HISTORY_BY_USER(USER_NAME, TIME_RANGE_START, TIME_RANGE_END, RESULT_LIMIT)`: the
  user's login events, most recent first.
  https://docs.snowflake.com/en/sql-reference/functions/login_history
- `SELECT SYSTEM$ABORT_SESSION(<id>)`: ends the session and its running queries; answers
  `session [<id>] terminated.`.
  https://docs.snowflake.com/en/sql-reference/functions/system_abort_session
- `SELECT SYSTEM$CANCEL_ALL_QUERIES(<id>)`: cancels the session's running queries; answers
  `<n> cancelled.`.
  https://docs.snowflake.com/en/sql-reference/functions/system_cancel_all_queries

Timestamps (arguments) are written `TO_TIMESTAMP_LTZ(<n>[, <scale>])`, `'<ISO 8601>'::TIMESTAMP_LTZ`
or `CURRENT_TIMESTAMP()`; user names as Snowflake resolves them: unquoted names are
case-insensitive, `'"Name"'` is exact. Results are JSON rowsets with Snowflake's JSON
encodings: numbers and timestamps as strings (TIMESTAMP_LTZ as `<seconds>.<nanoseconds>`).

Privileges: another user's history and sessions are visible to, and may be ended by, only the
users given with --session-admin (the role the admin guide sets up); anyone may see and end
their own. Otherwise Snowflake's 003001 "Insufficient privileges".
What the documentation leaves open, the front decides and says here: an id that names no
session gets 002003 "Session <id> does not exist or not authorized."; aborting a session that
has already ended answers `session [<id>] terminated.` again.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable

QUERY_COLUMNS: list[tuple[str, str]] = [
    ("QUERY_ID", "text"),
    ("QUERY_TEXT", "text"),
    ("DATABASE_NAME", "text"),
    ("SCHEMA_NAME", "text"),
    ("QUERY_TYPE", "text"),
    ("SESSION_ID", "fixed"),
    ("USER_NAME", "text"),
    ("ROLE_NAME", "text"),
    ("WAREHOUSE_NAME", "text"),
    ("QUERY_TAG", "text"),
    ("EXECUTION_STATUS", "text"),
    ("ERROR_CODE", "text"),
    ("ERROR_MESSAGE", "text"),
    ("START_TIME", "timestamp_ltz"),
    ("END_TIME", "timestamp_ltz"),
    ("TOTAL_ELAPSED_TIME", "fixed"),
]

LOGIN_COLUMNS: list[tuple[str, str]] = [
    ("EVENT_TIMESTAMP", "timestamp_ltz"),
    ("EVENT_ID", "fixed"),
    ("EVENT_TYPE", "text"),
    ("USER_NAME", "text"),
    ("CLIENT_IP", "text"),
    ("REPORTED_CLIENT_TYPE", "text"),
    ("REPORTED_CLIENT_VERSION", "text"),
    ("FIRST_AUTHENTICATION_FACTOR", "text"),
    ("SECOND_AUTHENTICATION_FACTOR", "text"),
    ("IS_SUCCESS", "text"),
    ("ERROR_CODE", "fixed"),
    ("ERROR_MESSAGE", "text"),
    ("RELATED_EVENT_ID", "fixed"),
]

QUERY_ARGS = {"USER_NAME", "END_TIME_RANGE_START", "END_TIME_RANGE_END", "RESULT_LIMIT", "INCLUDE_CLIENT_GENERATED_STATEMENT"}
LOGIN_ARGS = {"USER_NAME", "TIME_RANGE_START", "TIME_RANGE_END", "RESULT_LIMIT"}

TABLE_FUNCTION = re.compile(
    r"^\s*select\s+(?P<cols>.+?)\s+from\s+table\s*\(\s*(?:(?:\"?\w+\"?)\s*\.\s*)?information_schema\s*\.\s*"
    r"(?P<fn>query_history_by_user|login_history_by_user)\s*\((?P<args>.*)\)\s*\)\s*;?\s*$",
    re.IGNORECASE | re.DOTALL,
)
SYSTEM_CALL = re.compile(
    r"^\s*select\s+system\$(?P<fn>abort_session|cancel_all_queries)\s*\(\s*(?P<id>[^)]*?)\s*\)\s*;?\s*$",
    re.IGNORECASE,
)


class SqlError(Exception):
    def __init__(self, code: str, message: str, sql_state: str = "42000"):
        super().__init__(message)
        self.code = code
        self.message = message
        self.sql_state = sql_state


@dataclass
class QueryRecord:
    """One query as QUERY_HISTORY shows it."""

    query_id: str
    text: str
    session_id: int
    user_name: str
    role_name: str
    database: str | None
    schema: str | None
    warehouse: str | None
    query_tag: str | None
    start: float
    end: float | None
    status: str
    error_code: str | None = None
    error_message: str | None = None


def is_monitor_sql(sql: str) -> bool:
    return bool(TABLE_FUNCTION.match(sql) or SYSTEM_CALL.match(sql))


def split_args(text: str) -> list[str]:
    """Splits on commas outside quotes and parentheses."""
    out, cur, depth, quote = [], [], 0, None
    for ch in text:
        if quote:
            cur.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append("".join(cur))
            cur = []
            continue
        cur.append(ch)
    if "".join(cur).strip():
        out.append("".join(cur))
    return out


def parse_named_args(text: str, allowed: set[str], fn: str) -> dict[str, str]:
    args: dict[str, str] = {}
    for part in split_args(text):
        m = re.match(r"^\s*(\w+)\s*=>\s*(.+?)\s*$", part, re.DOTALL)
        if not m:
            raise SqlError("001015", f"SQL compilation error: argument {part.strip()!r} of {fn} must be named (NAME => value).")
        name = m.group(1).upper()
        if name not in allowed:
            raise SqlError("001015", f"SQL compilation error: invalid argument {name} for function {fn}.")
        args[name] = m.group(2)
    return args


def string_literal(v: str) -> str:
    m = re.fullmatch(r"'((?:[^']|'')*)'", v.strip())
    if not m:
        raise SqlError("002023", f"SQL compilation error: expected a string literal, got {v.strip()}")
    return m.group(1).replace("''", "'")


def timestamp_arg(v: str, now: float) -> float:
    v = v.strip()
    m = re.fullmatch(r"to_timestamp_ltz\s*\(\s*(-?\d+)\s*(?:,\s*(\d)\s*)?\)", v, re.IGNORECASE)
    if m:
        return int(m.group(1)) / (10 ** int(m.group(2) or 0))
    if re.fullmatch(r"current_timestamp(\s*\(\s*\))?", v, re.IGNORECASE):
        return now
    m = re.fullmatch(r"'([^']+)'\s*::\s*timestamp_ltz", v, re.IGNORECASE)
    if m:
        return datetime.fromisoformat(m.group(1)).timestamp()
    raise SqlError("002023", f"SQL compilation error: can't read {v} as a TIMESTAMP_LTZ")


def limit_arg(v: str | None) -> int:
    if v is None:
        return 100
    try:
        n = int(v.strip())
    except ValueError:
        raise SqlError("002023", f"SQL compilation error: RESULT_LIMIT must be a number, got {v.strip()}") from None
    if not 1 <= n <= 10000:
        raise SqlError("001015", f"Invalid argument RESULT_LIMIT: {n}; it must be between 1 and 10000.")
    return n


def user_matches(arg: str, user: str) -> bool:
    """USER_NAME => '...': unquoted names are case-insensitive, '"Name"' is exact."""
    if len(arg) >= 2 and arg[0] == '"' and arg[-1] == '"':
        return arg[1:-1] == user
    return arg.upper() == user.upper()


def ts(v: float | None) -> str | None:
    return None if v is None else f"{v:.9f}"


def rowset_answer(columns: list[tuple[str, str]], names: list[str], rows: list[dict[str, Any]]) -> dict[str, Any]:
    types = dict(columns)
    rowtype = []
    for n in names:
        t = types[n]
        rowtype.append(
            {
                "name": n,
                "database": "",
                "schema": "",
                "table": "",
                "nullable": True,
                "type": t,
                "byteLength": 16777216 if t == "text" else None,
                "length": 16777216 if t == "text" else None,
                "scale": 9 if t == "timestamp_ltz" else (0 if t == "fixed" else None),
                "precision": 38 if t == "fixed" else (0 if t == "timestamp_ltz" else None),
                "collation": None,
            }
        )
    rowset = [[None if r.get(n) is None else str(r[n]) for n in names] for r in rows]
    return {"rowtype": rowtype, "rowset": rowset, "total": len(rowset), "returned": len(rowset), "queryResultFormat": "json"}


def select_names(cols: str, columns: list[tuple[str, str]]) -> list[str]:
    known = [c for c, _ in columns]
    if cols.strip() == "*":
        return known
    names = []
    for c in split_args(cols):
        n = c.strip().strip('"').upper()
        if n not in known:
            raise SqlError("000904", f"SQL compilation error: error line 1 at position 7 invalid identifier '{c.strip()}'")
        names.append(n)
    return names


class Monitor:
    """Answers the functions above. `queries()` and `logins()` give what the front has seen."""

    def __init__(
        self,
        admins: list[str],
        queries: Callable[[], list[QueryRecord]],
        logins: Callable[[], list[dict[str, Any]]],
        abort: Callable[[int, str | None], tuple[bool, int, str | None]],
    ):
        self.admins = {a.upper() for a in admins}
        self.queries = queries
        self.logins = logins
        # abort(session_id, None | "cancel" | "abort") -> (found, queries cancelled, its user);
        # None only looks.
        self.abort = abort

    def may_see(self, caller: str, user: str) -> bool:
        return caller.upper() == user.upper() or caller.upper() in self.admins

    def answer(self, sql: str, caller: str) -> dict[str, Any]:
        """The `data` of the answer, or SqlError."""
        m = SYSTEM_CALL.match(sql)
        if m:
            return self.system_call(m.group("fn").lower(), m.group("id"), caller)
        m = TABLE_FUNCTION.match(sql)
        assert m is not None
        fn = m.group("fn").upper()
        now = time.time()
        if fn == "QUERY_HISTORY_BY_USER":
            args = parse_named_args(m.group("args"), QUERY_ARGS, fn)
            names = select_names(m.group("cols"), QUERY_COLUMNS)
            return rowset_answer(QUERY_COLUMNS, names, self.query_history(args, caller, now))
        args = parse_named_args(m.group("args"), LOGIN_ARGS, fn)
        names = select_names(m.group("cols"), LOGIN_COLUMNS)
        return rowset_answer(LOGIN_COLUMNS, names, self.login_history(args, caller, now))

    def user_arg(self, args: dict[str, str], caller: str) -> str:
        raw = args.get("USER_NAME")
        if raw is None or re.fullmatch(r"\s*current_user(\s*\(\s*\))?\s*", raw, re.IGNORECASE):
            return caller
        return string_literal(raw)

    def check_user(self, user: str, caller: str) -> None:
        if not self.may_see(caller, user.strip('"')):
            raise SqlError("003001", f"SQL access control error: Insufficient privileges to operate on user '{user.strip(chr(34))}'", "42501")

    def query_history(self, args: dict[str, str], caller: str, now: float) -> list[dict[str, Any]]:
        user = self.user_arg(args, caller)
        self.check_user(user, caller)
        start = timestamp_arg(args["END_TIME_RANGE_START"], now) if "END_TIME_RANGE_START" in args else now - 7 * 86400
        end = timestamp_arg(args["END_TIME_RANGE_END"], now) if "END_TIME_RANGE_END" in args else None
        if start < now - 7 * 86400 - 60:
            raise SqlError("002120", "Invalid argument: the time range must be within the last 7 days.")
        limit = limit_arg(args.get("RESULT_LIMIT"))
        rows = []
        for q in self.queries():
            if not user_matches(user, q.user_name):
                continue
            if q.end is None:
                if end is not None:
                    continue  # END_TIME_RANGE_END given: completed queries only
            elif q.end < start or (end is not None and q.end > end):
                continue
            rows.append(q)
        rows.sort(key=lambda q: q.start, reverse=True)
        return [
            {
                "QUERY_ID": q.query_id,
                "QUERY_TEXT": q.text,
                "DATABASE_NAME": q.database,
                "SCHEMA_NAME": q.schema,
                "QUERY_TYPE": "SELECT" if q.text.lstrip().lower().startswith("select") else "UNKNOWN",
                "SESSION_ID": q.session_id,
                "USER_NAME": q.user_name.upper(),
                "ROLE_NAME": q.role_name.upper(),
                "WAREHOUSE_NAME": q.warehouse,
                "QUERY_TAG": q.query_tag or "",
                "EXECUTION_STATUS": q.status,
                "ERROR_CODE": q.error_code,
                "ERROR_MESSAGE": q.error_message,
                "START_TIME": ts(q.start),
                "END_TIME": ts(q.end),
                "TOTAL_ELAPSED_TIME": int(((q.end or now) - q.start) * 1000),
            }
            for q in rows[:limit]
        ]

    def login_history(self, args: dict[str, str], caller: str, now: float) -> list[dict[str, Any]]:
        user = self.user_arg(args, caller)
        self.check_user(user, caller)
        start = timestamp_arg(args["TIME_RANGE_START"], now) if "TIME_RANGE_START" in args else now - 7 * 86400
        end = timestamp_arg(args["TIME_RANGE_END"], now) if "TIME_RANGE_END" in args else now
        if start < now - 7 * 86400 - 60:
            raise SqlError("002120", "Invalid argument: the time range must be within the last 7 days.")
        limit = limit_arg(args.get("RESULT_LIMIT"))
        rows = [
            a
            for a in self.logins()
            if (a.get("user") and user_matches(user, a["user"])) and start <= a["at"] <= end
        ]
        rows.sort(key=lambda a: a["at"], reverse=True)
        return [
            {
                "EVENT_TIMESTAMP": ts(a["at"]),
                "EVENT_ID": a["event_id"],
                "EVENT_TYPE": "LOGIN",
                "USER_NAME": a["user"].upper(),
                "CLIENT_IP": "127.0.0.1",
                "REPORTED_CLIENT_TYPE": client_type(a.get("client_app_id")),
                "REPORTED_CLIENT_VERSION": a.get("client_app_version"),
                "FIRST_AUTHENTICATION_FACTOR": first_factor(a.get("authenticator")),
                "SECOND_AUTHENTICATION_FACTOR": None,
                "IS_SUCCESS": "YES" if a["success"] else "NO",
                "ERROR_CODE": a.get("code"),
                "ERROR_MESSAGE": a.get("message"),
                "RELATED_EVENT_ID": 0,
            }
            for a in rows[:limit]
        ]

    def system_call(self, fn: str, raw_id: str, caller: str) -> dict[str, Any]:
        label = f"SYSTEM${fn.upper()}({raw_id})"
        if not re.fullmatch(r"\d+", raw_id):
            raise SqlError("100038", f"Numeric value '{raw_id}' is not recognized", "22018")
        session_id = int(raw_id)
        found, _, user = self.abort(session_id, None)
        if not found:
            raise SqlError("002003", f"Session {session_id} does not exist or not authorized.", "02000")
        if user is not None and not self.may_see(caller, user):
            raise SqlError("003001", f"SQL access control error: Insufficient privileges to operate on session '{session_id}'", "42501")
        _, cancelled, _ = self.abort(session_id, "abort" if fn == "abort_session" else "cancel")
        text = f"session [{session_id}] terminated." if fn == "abort_session" else f"{cancelled} cancelled."
        answer = rowset_answer([(label, "text")], [label], [{label: text}])
        return answer


def client_type(app: Any) -> str:
    a = str(app or "").lower()
    if a.startswith("python"):
        return "PYTHON_DRIVER"
    if a in ("javascript", "nodejs", "node.js"):
        return "JAVASCRIPT_DRIVER"
    if a.startswith("jdbc"):
        return "JDBC_DRIVER"
    if a.startswith("go"):
        return "GO_DRIVER"
    return "OTHER"


def first_factor(authenticator: Any) -> str | None:
    return {
        "OAUTH": "OAUTH_ACCESS_TOKEN",
        "SNOWFLAKE_JWT": "RSA_KEYPAIR",
        "SNOWFLAKE": "PASSWORD",
    }.get(str(authenticator or "").upper())
