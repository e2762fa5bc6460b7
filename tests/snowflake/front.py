"""The test rig's Snowflake: fakesnow (SQL on DuckDB) behind a front that does what Snowflake
does and fakesnow does not.

fakesnow 0.12.1 in server mode checks no credentials, issues no master token, cannot renew or
expire a session and answers results in Arrow only. This front wraps its Starlette app in the
same process and adds:

- External OAuth logins checked like Snowflake's security integration (sf_oauth.py): RS256
  signature through the JWKS URL(s) (HTTPS, trusting --ca-file; refetched on an unknown `kid`),
  `iss`, `aud`, `exp`/`nbf` with zero tolerance, the role in the --scope-claim (`scp` by default,
  like EXTERNAL_OAUTH_SCOPE_MAPPING_ATTRIBUTE) as `session:role:ROLE`, the
  user from --user-claim, and LOGIN_NAME, when the request has one, equal to that user
  (case-insensitive; otherwise 390309, as Snowflake refuses a token tied to another user).
  Password logins get 390100 unless --allow-password is given (then any password works).
- Key-pair logins (AUTHENTICATOR SNOWFLAKE_JWT, sf_keypair.py) for the users registered with
  --key-pair-user USER=PUBLIC_KEY.pem, as ALTER USER ... SET RSA_PUBLIC_KEY registers them: the
  JWT's RS256 signature against that key, `iss` = ACCOUNT.USER.SHA256:<fingerprint>, `sub` =
  ACCOUNT.USER (--account), `iat`/`exp`; otherwise 390144.
- The monitoring and session-control functions (sf_monitor.py), answered from the sessions,
  queries and login attempts the front has seen: INFORMATION_SCHEMA.QUERY_HISTORY_BY_USER and
  LOGIN_HISTORY_BY_USER with their documented arguments and columns, SYSTEM$ABORT_SESSION (the
  session ends, its running queries are cancelled with 000604, its tokens then get 390111) and
  SYSTEM$CANCEL_ALL_QUERIES. Other users' history and sessions are only for --session-admin users.
- Snowflake's session lifecycle: its own opaque session and master tokens (fakesnow's token
  never leaves the front), sessionId, validity fields, renewal at /session/token-request,
  390112 for an expired session token, 390114 for an expired master token, heartbeats, close
  (`POST /session?delete=true`), /telemetry/send, asynchronous queries (`asyncExec`: answered
  with 333334, then /monitoring/queries/{id} and /queries/{id}/result).
- A long query that can be cancelled, as Snowflake's can: `SELECT SYSTEM$WAIT(n [, 'unit'])`
  waits n seconds (or the unit given) and answers `waited n seconds`; an abort-request for it,
  by query id (`POST /queries/{id}/abort-request`) or by the driver's request id
  (`POST /queries/v1/abort-request` with `requestId`), ends it at once with Snowflake's
  000604 "SQL execution canceled". An abort that finds nothing running gets 000605, as
  Snowflake answers SYSTEM$CANCEL_QUERY for a statement that is not executing. Closing a
  session does not cancel its running queries (Snowflake's doesn't either). With asyncExec the
  wait runs in the background: /monitoring/queries/{id} says RUNNING and /queries/{id}/result
  answers 333333 (in progress) until it ends.
  The master token's validity is an idle deadline: any request with a valid session token (a
  query, a heartbeat, a renewal) moves it to now + --master-validity, so heartbeats keep an idle
  session alive as in Snowflake.
- JSON results (sf_json.py) for the Node.js snowflake-sdk, which has no Arrow reader: sessions
  whose login's CLIENT_APP_ID is "JavaScript" get a JSON `rowset`; --json-results=all gives
  JSON to every client, =none to none. Whatever the mode, a client that asks for a result
  format gets it, as from Snowflake: the session parameters JDBC_QUERY_RESULT_FORMAT,
  ODBC_QUERY_RESULT_FORMAT and PYTHON_CONNECTOR_QUERY_RESULT_FORMAT (JSON or ARROW; see
  Snowflake's "Parameters" reference) set at login choose it for the session, and the same
  names in a statement's `parameters` (as snowflake-connector-python sends
  PYTHON_CONNECTOR_QUERY_RESULT_FORMAT=JSON when it has no Arrow reader) for that statement.
- Large JSON results in chunks, as Snowflake sends them (with --chunk-rows N): a result of more
  than N rows carries its first N rows inline and the rest in `chunks` of N rows, at URLs of
  the front's own "cloud storage" (`GET /__storage/{key}/{i}`: gzip-compressed rows without the
  outer brackets, refused with 403 unless the `chunkHeaders` the answer gave are sent, as
  SSE-C storage refuses them). Clients fetch chunks themselves, past any proxy; the front
  records each fetch (`GET /__rig/chunk-fetches`).
- An inspection API for tests, guarded by --admin-key in the `X-Rig-Admin-Key` header:
  `GET /__rig/sessions`, `GET /__rig/login-attempts`,
  `POST /__rig/sessions/{id}/expire?token=session|master` (expire a session's token now), and
  `POST /__rig/sessions/{id}/close` (close a session from Snowflake's side: its tokens then get
  390111, as after an admin's SYSTEM$ABORT_SESSION).
  Test-only: `POST /__rig/logins/hold` holds the answer of every successful login from then
  on (the session is opened and listed, the answer waits) until `POST /__rig/logins/release`,
  so a test can act while a login is in flight. What the answer says is not changed.
  Sessions list their running queries (`running`: query id, request id, SQL) and count the
  status checks they made (`monitoring`).
  Login attempts never record a password or a token: only whether a PASSWORD field was present.
- Details drivers rely on: gzip request bodies (detected by magic bytes), gzip responses for
  clients that accept them, `ALTER SESSION SET/UNSET QUERY_TAG` answered by the front (fakesnow
  lacks it) and recorded, format parameters (TIMEZONE, *_OUTPUT_FORMAT) in every result, and
  paths with doubled slashes (connector 5.x asks for `/monitoring/queries//ID`).
- Every front uses fakesnow's in-memory database of its own process, so tables made in one
  session are seen by later sessions of the same front, as in one Snowflake account. Logins
  without a database get the user's default namespace (--default-namespace).

Flags:
  --port N               port on 127.0.0.1 (0: any free port; the ready line says which)
  --jwks-url URL         JWKS URL of a trusted issuer (repeatable)
  --issuer ISS           accepted `iss` value (repeatable)
  --audience AUD         required `aud` value (default https://snowflake.rig.test)
  --user-claim NAME      claim that names the Snowflake user (default sub)
  --scope-claim NAME     claim that carries the role scopes: scp (default) or scope, as a
                         security integration's EXTERNAL_OAUTH_SCOPE_MAPPING_ATTRIBUTE
  --ca-file PATH         extra CA (PEM) to trust when fetching JWKS over HTTPS
  --session-validity S   session token lifetime in seconds (default 3600)
  --master-validity S    master token idle lifetime in seconds (default 14400)
  --allow-password       accept password logins (AUTHENTICATOR absent or SNOWFLAKE)
  --admin-key KEY        key for the /__rig/ inspection API (default: random, printed nowhere)
  --json-results MODE    node (default) | all | none
  --log-requests         log each request's method and path (never headers or bodies)
  --account NAME         the account name key-pair JWTs must name (default RIG)
  --key-pair-user USER=PEM  register USER's RSA public key (repeatable)
  --session-admin USER   USER may see every user's history and end their sessions (repeatable)
  --chunk-rows N         split JSON results of more than N rows into chunks (0: never, the default)
  --default-namespace DB.SCHEMA  namespace for logins without a database (default RIGDB.PUBLIC;
                         "" for none)

Prints `SNOWFLAKE READY http://127.0.0.1:PORT` on stdout once it listens. Logs go to stderr and
never contain tokens.
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import logging
import os
import re
import secrets
import socket
import sys
import threading
import time
import uuid
import warnings
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import sf_json  # noqa: E402
import sf_keypair  # noqa: E402
import sf_monitor  # noqa: E402
import sf_oauth  # noqa: E402

log = logging.getLogger("snowflake-front")

MAX_BODY = 64 * 1024 * 1024
MAX_CACHED_RESULTS = 8  # per session, for /queries/{id}/result

CODE_BAD_PASSWORD = "390100"
CODE_SESSION_GONE = "390111"
CODE_SESSION_EXPIRED = "390112"
CODE_MASTER_EXPIRED = "390114"
CODE_MASTER_INVALID = "390115"
CODE_NO_TOKEN = "390103"
CODE_LOGIN_AGAIN = "390104"
CODE_ASYNC = "333334"
CODE_CANCELED = "000604"
CODE_NOT_EXECUTING = "000605"

# SYSTEM$WAIT(<amount> [, <time_unit>]): "Waits for the specified amount of time before
# proceeding", the unit one of DAYS, HOURS, MINUTES, SECONDS (default), MILLISECONDS,
# MICROSECONDS, NANOSECONDS. https://docs.snowflake.com/en/sql-reference/functions/system_wait
# A running statement is cancelled by SYSTEM$CANCEL_QUERY or the drivers' abort-request, and
# then fails with 000604 (57014) "SQL execution canceled".
# https://docs.snowflake.com/en/sql-reference/functions/system_cancel_query
SYSTEM_WAIT = re.compile(
    r"^\s*select\s+system\$wait\s*\(\s*(\d+(?:\.\d+)?)\s*(?:,\s*'(\w+)'\s*)?\)\s*;?\s*$",
    re.IGNORECASE,
)
WAIT_UNITS = {
    "DAYS": 86400.0,
    "HOURS": 3600.0,
    "MINUTES": 60.0,
    "SECONDS": 1.0,
    "MILLISECONDS": 1e-3,
    "MICROSECONDS": 1e-6,
    "NANOSECONDS": 1e-9,
}

FORMAT_PARAMETERS = [
    {"name": "TIMEZONE", "value": "Etc/UTC"},
    {"name": "DATE_OUTPUT_FORMAT", "value": "YYYY-MM-DD"},
    {"name": "TIME_OUTPUT_FORMAT", "value": "HH24:MI:SS"},
    {"name": "TIMESTAMP_OUTPUT_FORMAT", "value": "YYYY-MM-DD HH24:MI:SS.FF3 TZHTZM"},
    {"name": "TIMESTAMP_NTZ_OUTPUT_FORMAT", "value": "YYYY-MM-DD HH24:MI:SS.FF3"},
    {"name": "TIMESTAMP_LTZ_OUTPUT_FORMAT", "value": ""},
    {"name": "TIMESTAMP_TZ_OUTPUT_FORMAT", "value": ""},
    {"name": "BINARY_OUTPUT_FORMAT", "value": "HEX"},
]


# The session parameters by which a client asks for its results as JSON or ARROW.
RESULT_FORMAT_PARAMETERS = ("JDBC_QUERY_RESULT_FORMAT", "ODBC_QUERY_RESULT_FORMAT", "PYTHON_CONNECTOR_QUERY_RESULT_FORMAT")


def asked_result_format(params: Any) -> str | None:
    """"JSON" or "ARROW" when `params` (a name-to-value object, names in any case) asks for one."""
    if not isinstance(params, dict):
        return None
    for name, value in params.items():
        if str(name).upper() in RESULT_FORMAT_PARAMETERS and str(value).upper() in ("JSON", "ARROW"):
            return str(value).upper()
    return None


def now() -> float:
    return time.time()


def new_token(kind: str) -> str:
    return f"ver:1-hint:rig-{kind}-{secrets.token_urlsafe(32)}"


@dataclass
class Session:
    session_id: int
    login_name: str
    role: str
    authenticator: str
    token_iss: str | None
    token_exp: int | None
    token_scopes: list[str]
    client_app_id: str | None
    client_app_version: str | None
    database: str | None
    schema: str | None
    warehouse: str | None
    query_tag: str | None
    login_query_tag: str | None
    inner_token: str
    json_results: bool
    session_token: str
    session_expires: float
    master_token: str
    master_expires: float
    opened_at: float = field(default_factory=now)
    closed: bool = False
    closed_at: float | None = None
    close_reason: str | None = None
    renewals: int = 0
    heartbeats: int = 0
    telemetry: int = 0
    monitoring: int = 0
    statements: list[dict[str, Any]] = field(default_factory=list)
    old_session_tokens: set[str] = field(default_factory=set)
    results: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Statements still executing (SYSTEM$WAIT), by query id.
    running: dict[str, "Running"] = field(default_factory=dict)

    def public(self) -> dict[str, Any]:
        t = now()
        return {
            "session_id": self.session_id,
            "login_name": self.login_name,
            "role": self.role,
            "authenticator": self.authenticator,
            "token_iss": self.token_iss,
            "token_exp": self.token_exp,
            "token_scopes": self.token_scopes,
            "client_app_id": self.client_app_id,
            "client_app_version": self.client_app_version,
            "database": self.database,
            "schema": self.schema,
            "warehouse": self.warehouse,
            "query_tag": self.query_tag,
            "login_query_tag": self.login_query_tag,
            "open": not self.closed,
            "opened_at": self.opened_at,
            "closed_at": self.closed_at,
            "close_reason": self.close_reason,
            "session_token_expired": t >= self.session_expires,
            "master_token_expired": t >= self.master_expires,
            "json_results": self.json_results,
            "renewals": self.renewals,
            "heartbeats": self.heartbeats,
            "telemetry": self.telemetry,
            "monitoring": self.monitoring,
            "statements": self.statements,
            "running": [
                {"query_id": r.query_id, "request_id": r.request_id, "sql": r.sql} for r in self.running.values()
            ],
        }


@dataclass
class Running:
    """A statement still executing; an abort-request sets `cancel`."""

    query_id: str
    request_id: str | None
    sql: str
    cancel: asyncio.Event = field(default_factory=asyncio.Event)
    started_at: float = field(default_factory=now)
    query_tag: str | None = None


class Front:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.validator = sf_oauth.Validator(
            jwks_urls=args.jwks_url or [],
            issuers=args.issuer or [],
            audience=args.audience,
            user_claim=args.user_claim,
            ca_file=args.ca_file,
            scope_claim=args.scope_claim,
        )
        self.sessions: dict[int, Session] = {}
        self.by_session_token: dict[str, Session] = {}
        self.by_master_token: dict[str, Session] = {}
        self.login_attempts: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.inner = None  # fakesnow's Starlette app, imported in main()
        # Set while successful login answers are held (/__rig/logins/hold); set() releases them.
        self.login_gate: asyncio.Event | None = None
        # Background statements (async SYSTEM$WAIT), kept referenced until they finish.
        self.tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        # Key-pair users (ALTER USER ... SET RSA_PUBLIC_KEY) and the monitoring functions.
        self.keypairs = sf_keypair.KeyPairUsers(args.account, args.key_pair_user or [])
        self.monitor = sf_monitor.Monitor(
            args.session_admin or [], self.query_records, self.login_records, self.session_control
        )
        self.next_event_id = 1
        # Result chunks by storage key: the SSE-C key they need, and their gzipped bodies.
        self.chunks: dict[str, tuple[str, list[bytes]]] = {}
        self.chunk_fetches: list[dict[str, Any]] = []

    # ---- plumbing ------------------------------------------------------------------------

    async def call_inner(
        self,
        method: str,
        path: str,
        query_string: bytes = b"",
        body: bytes = b"",
        inner_token: str | None = None,
    ) -> tuple[int, bytes]:
        """Calls fakesnow's ASGI app in-process and returns its status and body."""
        headers = [
            (b"host", f"127.0.0.1:{self.port}".encode()),
            (b"content-type", b"application/json"),
            (b"accept", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        if inner_token:
            headers.append((b"authorization", f'Snowflake Token="{inner_token}"'.encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "query_string": query_string,
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 0),
            "server": ("127.0.0.1", self.port),
        }
        body_sent = False

        async def receive() -> dict[str, Any]:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await asyncio.Future()  # never: the client does not disconnect
            return {"type": "http.disconnect"}

        status = 500
        chunks: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self.inner(scope, receive, send)
        except Exception as e:  # noqa: BLE001
            # Starlette re-raises after it has sent its 500 page; the status is already set.
            log.error("fakesnow failed on %s %s: %s", method, path, e)
            if not chunks:
                status = 500
                chunks = [json.dumps(error(None, "261000", f"fakesnow failed: {e}")).encode()]
        return status, b"".join(chunks)

    # ---- sessions --------------------------------------------------------------------------

    def session_for(self, headers: dict[str, str]) -> tuple[Session | None, dict[str, Any] | None]:
        """The session whose session token is in the Authorization header, or an error body."""
        token = auth_token(headers)
        if not token or token == "None":
            return None, error(None, CODE_NO_TOKEN, "Session token not found in the request data.")
        with self.lock:
            s = self.by_session_token.get(token)
        if s is None:
            return None, error(None, CODE_LOGIN_AGAIN, "User must login again to access the service.")
        if s.closed:
            return None, error(None, CODE_SESSION_GONE, "Session no longer exists.  New login required to access the service.")
        t = now()
        if t >= s.master_expires:
            return None, error(None, CODE_MASTER_EXPIRED, "Authentication token has expired.  The user must authenticate again.")
        if token != s.session_token or t >= s.session_expires:
            return None, error(None, CODE_SESSION_EXPIRED, "Session token has expired.  Renew it with the master token.")
        s.master_expires = max(s.master_expires, t + self.args.master_validity)
        return s, None

    # ---- handlers --------------------------------------------------------------------------

    async def login(self, query: list[tuple[str, str]], raw_body: bytes) -> dict[str, Any]:
        params = dict(query)
        attempt: dict[str, Any] = {
            "at": now(),
            "login_name": None,
            "account_name": None,
            "authenticator": None,
            "client_app_id": None,
            "client_app_version": None,
            "requested_role": params.get("roleName") or None,
            "password_present": False,
            "token_present": False,
            "token_iss": None,
            "token_user": None,
            "success": False,
            "code": None,
            "message": None,
            "session_id": None,
        }
        try:
            body = json.loads(raw_body)
            data = body.get("data") or {}
        except (ValueError, AttributeError):
            return self.refuse(attempt, "390400", "Invalid login request body.")
        if not isinstance(data, dict):
            return self.refuse(attempt, "390400", "Invalid login request body.")
        login_name = opt_str(data.get("LOGIN_NAME")) or None
        authenticator = str(data.get("AUTHENTICATOR") or "SNOWFLAKE").upper()
        attempt.update(
            login_name=login_name,
            account_name=opt_str(data.get("ACCOUNT_NAME")),
            authenticator=authenticator,
            client_app_id=opt_str(data.get("CLIENT_APP_ID")),
            client_app_version=opt_str(data.get("CLIENT_APP_VERSION")),
            password_present="PASSWORD" in data,
            token_present=bool(data.get("TOKEN")),
        )
        session_params = data.get("SESSION_PARAMETERS") or {}
        if not isinstance(session_params, dict):
            session_params = {}

        token_iss = None
        token_exp = None
        scopes: list[str] = []
        if authenticator == "OAUTH":
            try:
                verified = await asyncio.to_thread(
                    self.validator.verify, str(data.get("TOKEN") or ""), params.get("roleName") or None, login_name
                )
            except sf_oauth.OAuthError as e:
                attempt["token_iss"] = e.claims.get("iss")
                attempt["token_user"] = e.claims.get(self.args.user_claim)
                return self.refuse(attempt, e.code, e.message)
            user, role = verified.login_name, verified.role
            token_iss = verified.claims.get("iss")
            token_exp = int(verified.claims["exp"])
            scopes = verified.scopes
            attempt["token_iss"] = token_iss
            attempt["token_user"] = user
        elif authenticator == "SNOWFLAKE_JWT":
            try:
                user = self.keypairs.verify(str(data.get("TOKEN") or ""), login_name)
            except sf_keypair.KeyPairError as e:
                return self.refuse(attempt, e.code, e.message)
            attempt["token_user"] = user
            role = sf_oauth.normalise_role(params["roleName"]) if params.get("roleName") else "PUBLIC"
        elif authenticator == "SNOWFLAKE":
            if not self.args.allow_password or not login_name or not data.get("PASSWORD"):
                return self.refuse(attempt, CODE_BAD_PASSWORD, "Incorrect username or password was specified.")
            user = login_name
            role = sf_oauth.normalise_role(params["roleName"]) if params.get("roleName") else "PUBLIC"
        else:
            return self.refuse(
                attempt,
                CODE_BAD_PASSWORD,
                f"Incorrect username or password was specified. (authenticator {authenticator} is not "
                "enabled for this account)",
            )

        # Forward a password-free login to fakesnow, with the default namespace if none was asked.
        inner_params = dict(params)
        if not inner_params.get("databaseName") and self.args.default_namespace:
            db, _, schema = self.args.default_namespace.partition(".")
            inner_params["databaseName"] = db
            if schema and not inner_params.get("schemaName"):
                inner_params["schemaName"] = schema
        inner_body = {"data": {"SESSION_PARAMETERS": dict(session_params)}}
        status, resp_body = await self.call_inner(
            "POST", "/session/v1/login-request", urlencode(inner_params).encode(), json.dumps(inner_body).encode()
        )
        try:
            resp = json.loads(resp_body)
        except ValueError:
            resp = None
        if status != 200 or not isinstance(resp, dict) or not resp.get("success"):
            message = (resp or {}).get("message") if isinstance(resp, dict) else None
            return self.refuse(attempt, "390100", f"fakesnow refused the login: {message or status}")
        rdata = resp["data"]
        t = now()
        info = rdata.get("sessionInfo") or {}
        query_tag = session_params.get("QUERY_TAG")
        s = Session(
            session_id=secrets.randbelow(9 * 10**15) + 10**15,
            login_name=user,
            role=role,
            authenticator=authenticator,
            token_iss=token_iss,
            token_exp=token_exp,
            token_scopes=scopes,
            client_app_id=opt_str(data.get("CLIENT_APP_ID")),
            client_app_version=opt_str(data.get("CLIENT_APP_VERSION")),
            database=info.get("databaseName"),
            schema=info.get("schemaName"),
            warehouse=params.get("warehouse") or None,
            query_tag=opt_str(query_tag),
            login_query_tag=opt_str(query_tag),
            inner_token=rdata["token"],
            json_results=self.wants_json(data.get("CLIENT_APP_ID"), session_params),
            session_token=new_token("st"),
            session_expires=t + self.args.session_validity,
            master_token=new_token("mt"),
            master_expires=t + self.args.master_validity,
        )
        with self.lock:
            self.sessions[s.session_id] = s
            self.by_session_token[s.session_token] = s
            self.by_master_token[s.master_token] = s
        rdata["token"] = s.session_token
        rdata["masterToken"] = s.master_token
        rdata["validityInSeconds"] = self.args.session_validity
        rdata["masterValidityInSeconds"] = self.args.master_validity
        rdata["sessionId"] = s.session_id
        rdata["idToken"] = None
        rdata["idTokenValidityInSeconds"] = 0
        rdata["displayUserName"] = user.upper()
        rdata["firstLogin"] = False
        rdata["healthCheckInterval"] = 45
        rdata["newClientForUpgrade"] = None
        info["roleName"] = role
        info["warehouseName"] = s.warehouse
        rdata["sessionInfo"] = info
        replaced = {"CLIENT_SESSION_KEEP_ALIVE_HEARTBEAT_FREQUENCY", "CLIENT_STAGE_ARRAY_BINDING_THRESHOLD"}
        parameters = [p for p in rdata.get("parameters", []) if p.get("name") not in replaced]
        parameters.append({"name": "CLIENT_SESSION_KEEP_ALIVE_HEARTBEAT_FREQUENCY", "value": 3600})
        # Array binds stay inline: fakesnow cannot take them through a stage. fakesnow says 0,
        # which the Python connector reads as "never stage" but the Node.js sdk as "always
        # stage"; a threshold no batch reaches means "never" to both.
        parameters.append({"name": "CLIENT_STAGE_ARRAY_BINDING_THRESHOLD", "value": 2147483647})
        names = {p["name"] for p in parameters}
        parameters.extend(p for p in FORMAT_PARAMETERS if p["name"] not in names)
        rdata["parameters"] = parameters
        attempt.update(success=True, session_id=s.session_id)
        self.record_attempt(attempt)
        log.info("login ok: session %s user %s role %s via %s", s.session_id, user, role, authenticator)
        gate = self.login_gate
        if gate is not None:
            log.info("login answer for session %s held", s.session_id)
            await gate.wait()
        return {"data": rdata, "code": None, "message": None, "success": True}

    def wants_json(self, client_app_id: Any, session_params: Any) -> bool:
        asked = asked_result_format(session_params)
        if asked is not None:
            return asked == "JSON"
        mode = self.args.json_results
        if mode == "all":
            return True
        if mode == "none":
            return False
        return str(client_app_id or "").lower() in ("javascript", "nodejs", "node.js")

    def refuse(self, attempt: dict[str, Any], code: str, message: str) -> dict[str, Any]:
        attempt.update(success=False, code=code, message=message)
        self.record_attempt(attempt)
        log.info("login refused: %s %s (user %s)", code, message, attempt.get("login_name"))
        return {"data": {"nextAction": "RETRY_LOGIN", "authnMethod": attempt.get("authenticator")}, "code": code, "message": message, "success": False}

    def record_attempt(self, attempt: dict[str, Any]) -> None:
        with self.lock:
            attempt["event_id"] = self.next_event_id
            self.next_event_id += 1
            attempt["user"] = attempt.get("token_user") or attempt.get("login_name")
            self.login_attempts.append(attempt)

    # ---- what the monitoring functions see (sf_monitor) ------------------------------------

    def query_records(self) -> list[sf_monitor.QueryRecord]:
        out = []
        with self.lock:
            sessions = list(self.sessions.values())
        for s in sessions:
            for st in list(s.statements):
                out.append(
                    sf_monitor.QueryRecord(
                        query_id=st["query_id"],
                        text=st["sql"],
                        session_id=s.session_id,
                        user_name=s.login_name,
                        role_name=s.role,
                        database=s.database,
                        schema=s.schema,
                        warehouse=s.warehouse,
                        query_tag=st.get("query_tag"),
                        start=st.get("started_at", st["at"]),
                        end=st["at"],
                        status="SUCCESS" if st["success"] else "FAILED_WITH_ERROR",
                        error_code=None if st["success"] else st.get("code"),
                    )
                )
            for r in list(s.running.values()):
                out.append(
                    sf_monitor.QueryRecord(
                        query_id=r.query_id,
                        text=r.sql,
                        session_id=s.session_id,
                        user_name=s.login_name,
                        role_name=s.role,
                        database=s.database,
                        schema=s.schema,
                        warehouse=s.warehouse,
                        query_tag=r.query_tag,
                        start=r.started_at,
                        end=None,
                        status="RUNNING",
                    )
                )
        return out

    def login_records(self) -> list[dict[str, Any]]:
        with self.lock:
            return list(self.login_attempts)

    def session_control(self, session_id: int, action: str | None) -> tuple[bool, int, str | None]:
        """SYSTEM$ABORT_SESSION / SYSTEM$CANCEL_ALL_QUERIES on a session: looks (None), cancels
        its running queries ("cancel"), or also ends it ("abort")."""
        with self.lock:
            s = self.sessions.get(session_id)
        if s is None:
            return False, 0, None
        if action is None:
            return True, 0, s.login_name
        running = list(s.running.values())
        for r in running:
            r.cancel.set()
        if action == "abort" and not s.closed:
            self.mark_closed(s, "aborted by SYSTEM$ABORT_SESSION")
        return True, len(running), s.login_name

    def renew(self, headers: dict[str, str], raw_body: bytes) -> dict[str, Any]:
        master = auth_token(headers)
        try:
            body = json.loads(raw_body or b"{}")
        except ValueError:
            body = {}
        with self.lock:
            s = self.by_master_token.get(master or "")
        if s is None:
            return error(None, CODE_MASTER_INVALID, "Master token is invalid.")
        if s.closed:
            return error(None, CODE_SESSION_GONE, "Session no longer exists.  New login required to access the service.")
        t = now()
        if t >= s.master_expires:
            return error(None, CODE_MASTER_EXPIRED, "Authentication token has expired.  The user must authenticate again.")
        request_type = str(body.get("requestType") or "RENEW").upper()
        if request_type != "RENEW":
            return error(None, "390400", f"Unsupported token request type {request_type}.")
        old = body.get("oldSessionToken")
        if old and old != s.session_token and old not in s.old_session_tokens:
            return error(None, CODE_MASTER_INVALID, "The old session token does not belong to this master token.")
        with self.lock:
            s.old_session_tokens.add(s.session_token)
            s.session_token = new_token("st")
            s.session_expires = t + self.args.session_validity
            s.master_expires = t + self.args.master_validity
            self.by_session_token[s.session_token] = s
            s.renewals += 1
        log.info("session %s renewed (%d)", s.session_id, s.renewals)
        return {
            "data": {
                "sessionToken": s.session_token,
                "validityInSecondsST": self.args.session_validity,
                "masterToken": s.master_token,
                "validityInSecondsMT": self.args.master_validity,
                "masterValidityInSeconds": self.args.master_validity,
                "sessionId": s.session_id,
            },
            "code": None,
            "message": None,
            "success": True,
        }

    async def query(self, headers: dict[str, str], query: list[tuple[str, str]], raw_body: bytes) -> dict[str, Any]:
        s, err = self.session_for(headers)
        if s is None:
            return err
        try:
            body = json.loads(raw_body)
        except ValueError:
            return error(None, "390400", "Invalid query request body.")
        sql = str(body.get("sqlText") or "")
        is_async = bool(body.pop("asyncExec", False))
        asked = asked_result_format(body.get("parameters"))
        json_result = s.json_results if asked is None else asked == "JSON"
        tag = query_tag_change(sql)
        wait = SYSTEM_WAIT.match(sql)
        started = now()
        tag_at_start = s.query_tag
        if sf_monitor.is_monitor_sql(sql):
            status, resp = 200, self.monitor_answer(s, sql)
        elif tag is not None:
            # fakesnow does not know QUERY_TAG; Snowflake just sets it.
            status, resp = 200, statement_executed(s)
        elif wait is not None and is_async:
            return self.start_async_wait(s, wait, sql, dict(query).get("requestId"))
        elif wait is not None:
            run = Running(
                query_id=str(uuid.uuid4()), request_id=dict(query).get("requestId"), sql=sql, query_tag=s.query_tag
            )
            status, resp = 200, await self.system_wait(s, wait, run)
        else:
            status, resp_body = await self.call_inner(
                "POST", "/queries/v1/query-request", encode_query(query), json.dumps(body).encode(), s.inner_token
            )
            try:
                resp = json.loads(resp_body)
            except ValueError:
                resp = error(None, "261000", f"fakesnow answered HTTP {status} without JSON")
        return self.finish_statement(s, sql, is_async, tag, status, resp, started, tag_at_start, json_result)

    def monitor_answer(self, s: Session, sql: str) -> dict[str, Any]:
        """QUERY_HISTORY_BY_USER, LOGIN_HISTORY_BY_USER, SYSTEM$ABORT_SESSION,
        SYSTEM$CANCEL_ALL_QUERIES (sf_monitor), answered as a JSON result."""
        query_id = str(uuid.uuid4())
        try:
            data = self.monitor.answer(sql, s.login_name)
        except sf_monitor.SqlError as e:
            data = {
                "internalError": False,
                "errorCode": e.code,
                "age": 0,
                "sqlState": e.sql_state,
                "queryId": query_id,
                "line": -1,
                "pos": -1,
                "type": "COMPILATION",
            }
            return error(data, e.code, e.message)
        data.update(
            {
                "parameters": [],
                "queryId": query_id,
                "statementTypeId": 0x1000,
                "finalDatabaseName": s.database,
                "finalSchemaName": s.schema,
            }
        )
        return {"data": data, "code": None, "message": None, "success": True}

    def finish_statement(
        self,
        s: Session,
        sql: str,
        is_async: bool,
        tag: str | None,
        status: int,
        resp: dict[str, Any],
        started: float | None = None,
        tag_at_start: str | None = None,
        json_result: bool | None = None,
    ) -> dict[str, Any]:
        """Records a statement that finished and keeps its result; returns the answer, in JSON
        when `json_result` says so (None: as the session's format)."""
        if json_result is None:
            json_result = s.json_results
        data = resp.get("data") if isinstance(resp, dict) else None
        ok = bool(resp.get("success"))
        if ok and tag is not None:
            s.query_tag = tag or None
        query_id = (data or {}).get("queryId") if isinstance(data, dict) else None
        if not query_id:
            query_id = str(uuid.uuid4())
            if isinstance(data, dict) and ok:
                data["queryId"] = query_id
        finished = now()
        entry = {
            "sql": sql,
            "query_id": query_id,
            "at": finished,
            "started_at": finished if started is None else started,
            "query_tag": tag_at_start,
            "success": ok,
            "code": None if ok else resp.get("code"),
            "async": is_async,
        }
        s.statements.append(entry)
        if isinstance(data, dict) and ok:
            self.decorate(s, data)
            if json_result:
                sf_json.to_json_result(data)
                if self.args.chunk_rows:
                    self.split_into_chunks(data)
        elif isinstance(data, dict):
            data.setdefault("queryId", query_id)
        s.results[query_id] = {"status": status, "body": resp}
        while len(s.results) > MAX_CACHED_RESULTS:
            s.results.pop(next(iter(s.results)))
        if is_async:
            return async_answer(query_id)
        return resp

    def split_into_chunks(self, data: dict[str, Any]) -> None:
        """A JSON result of more than --chunk-rows rows: the first ones inline, the rest as chunks."""
        n = self.args.chunk_rows
        rows = data.get("rowset") or []
        if len(rows) <= n:
            return
        key = secrets.token_urlsafe(12)
        sse_key = secrets.token_urlsafe(24)
        parts = [rows[i : i + n] for i in range(n, len(rows), n)]
        bodies = [",".join(json.dumps(r, separators=(",", ":")) for r in part).encode() for part in parts]
        compressed = [gzip.compress(b, compresslevel=1) for b in bodies]
        with self.lock:
            self.chunks[key] = (sse_key, compressed)
        data["rowset"] = rows[:n]
        data["chunks"] = [
            {
                "url": f"http://127.0.0.1:{self.port}/__storage/{key}/{i}",
                "rowCount": len(part),
                "uncompressedSize": len(body),
                "compressedSize": len(c),
            }
            for i, (part, body, c) in enumerate(zip(parts, bodies, compressed))
        ]
        data["chunkHeaders"] = {
            "x-amz-server-side-encryption-customer-algorithm": "AES256",
            "x-amz-server-side-encryption-customer-key": sse_key,
        }

    def storage(self, headers: dict[str, str], key: str, index: int) -> tuple[int, bytes, bool]:
        """A chunk from the front's "cloud storage": (status, body, gzipped)."""
        with self.lock:
            found = self.chunks.get(key)
        if found is None or index >= len(found[1]):
            return 404, b"NoSuchKey", False
        sse_key, bodies = found
        if not secrets.compare_digest(headers.get("x-amz-server-side-encryption-customer-key", ""), sse_key):
            return 403, b"AccessDenied", False
        with self.lock:
            self.chunk_fetches.append({"key": key, "index": index, "at": now()})
        return 200, bodies[index], True

    def start_async_wait(self, s: Session, m: re.Match[str], sql: str, request_id: str | None) -> dict[str, Any]:
        """SYSTEM$WAIT with asyncExec: answered at once; the wait runs on until done or aborted."""
        run = Running(query_id=str(uuid.uuid4()), request_id=request_id, sql=sql, query_tag=s.query_tag)
        s.running[run.query_id] = run

        async def finish() -> None:
            resp = await self.system_wait(s, m, run)
            self.finish_statement(s, sql, True, None, 200, resp, run.started_at, run.query_tag)

        task = asyncio.get_running_loop().create_task(finish())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return async_answer(run.query_id)

    async def system_wait(self, s: Session, m: re.Match[str], run: Running) -> dict[str, Any]:
        """SYSTEM$WAIT: waits, unless an abort-request cancels it first (000604)."""
        s.running[run.query_id] = run
        unit = (m.group(2) or "SECONDS").upper()
        if unit not in WAIT_UNITS:
            s.running.pop(run.query_id, None)
            return error(None, "002140", f"Unknown time unit '{m.group(2)}' for SYSTEM$WAIT.")
        amount = float(m.group(1))
        try:
            await asyncio.wait_for(run.cancel.wait(), timeout=amount * WAIT_UNITS[unit])
            canceled = True
        except asyncio.TimeoutError:
            canceled = False
        finally:
            s.running.pop(run.query_id, None)
        if canceled:
            log.info("session %s: query %s canceled", s.session_id, run.query_id)
            data = {
                "internalError": False,
                "errorCode": CODE_CANCELED,
                "age": 0,
                "sqlState": "57014",
                "queryId": run.query_id,
                "line": -1,
                "pos": -1,
                "type": "EXECUTION",
            }
            return error(data, CODE_CANCELED, "SQL execution canceled")
        amount_text = m.group(1)
        body = statement_executed(s)
        body["data"]["queryId"] = run.query_id
        body["data"]["rowtype"][0]["name"] = f"SYSTEM$WAIT({amount_text})"
        body["data"]["rowset"] = [[f"waited {amount_text} {unit.lower()}"]]
        body["data"]["statementTypeId"] = 0x1000
        return body

    def abort(self, headers: dict[str, str], query_id: str | None, raw_body: bytes) -> dict[str, Any]:
        """An abort-request: by query id (in the path), or by the driver's requestId (in the body)."""
        s, err = self.session_for(headers)
        if s is None:
            return err
        request_id = None
        if query_id is None:
            try:
                body = json.loads(raw_body or b"{}")
            except ValueError:
                body = {}
            request_id = body.get("requestId") if isinstance(body, dict) else None
        found = [
            r
            for r in s.running.values()
            if (query_id is not None and r.query_id == query_id)
            or (request_id is not None and r.request_id == request_id)
        ]
        if not found:
            return error(None, CODE_NOT_EXECUTING, "Identified SQL statement is not currently executing.")
        for r in found:
            r.cancel.set()
        return {"data": None, "code": None, "message": None, "success": True}

    def decorate(self, s: Session, data: dict[str, Any]) -> None:
        params = data.get("parameters") or []
        names = {p.get("name") for p in params}
        params.extend(p for p in FORMAT_PARAMETERS if p["name"] not in names)
        data["parameters"] = params
        data.setdefault("version", 1)
        data["finalRoleName"] = s.role
        data.setdefault("finalWarehouseName", s.warehouse)
        if "rowset" in data and "returned" not in data:
            data["returned"] = len(data["rowset"])

    def query_result(self, headers: dict[str, str], query_id: str) -> tuple[int, dict[str, Any]]:
        s, err = self.session_for(headers)
        if s is None:
            return 200, err
        if query_id in s.running:
            return 200, {
                "data": {"queryId": query_id, "getResultUrl": f"/queries/{query_id}/result"},
                "code": "333333",
                "message": "Query execution in progress. Use provided query id to perform query monitoring and management.",
                "success": True,
            }
        cached = s.results.get(query_id)
        if cached is None:
            return 200, error(None, "000709", f"Statement {query_id} not found")
        return 200, cached["body"]

    def monitoring(self, headers: dict[str, str], query_id: str) -> dict[str, Any]:
        s, err = self.session_for(headers)
        if s is None:
            return err
        s.monitoring += 1
        run = s.running.get(query_id)
        if run is not None:
            q = {
                "id": query_id,
                "status": "RUNNING",
                "state": "RUNNING",
                "sqlText": run.sql,
                "sessionId": s.session_id,
                "errorCode": None,
                "errorMessage": None,
            }
            return {"data": {"queries": [q]}, "code": None, "message": None, "success": True}
        cached = s.results.get(query_id)
        entry = next((st for st in reversed(s.statements) if st["query_id"] == query_id), None)
        if cached is None or entry is None:
            return {"data": {"queries": []}, "code": None, "message": None, "success": True}
        body = cached["body"]
        ok = bool(body.get("success"))
        q = {
            "id": query_id,
            "status": "SUCCESS" if ok else "FAILED_WITH_ERROR",
            "state": "SUCCEEDED" if ok else "FAILED",
            "sqlText": entry["sql"],
            "startTime": int(entry["at"] * 1000),
            "endTime": int(entry["at"] * 1000),
            "totalDuration": 0,
            "sessionId": s.session_id,
            "errorCode": None if ok else body.get("code"),
            "errorMessage": None if ok else body.get("message"),
        }
        return {"data": {"queries": [q]}, "code": None, "message": None, "success": True}

    async def close(self, headers: dict[str, str], query: list[tuple[str, str]]) -> dict[str, Any]:
        s, err = self.session_for(headers)
        if s is None:
            return err
        if not dict(query).get("delete"):
            return {"data": None, "code": None, "message": None, "success": True}
        self.mark_closed(s, "closed by client")
        await self.call_inner("POST", "/session", b"delete=true", b"", s.inner_token)
        return {"data": None, "code": None, "message": None, "success": True}

    def mark_closed(self, s: Session, reason: str) -> None:
        s.closed = True
        s.closed_at = now()
        s.close_reason = reason
        log.info("session %s closed (%s)", s.session_id, reason)

    def heartbeat(self, headers: dict[str, str]) -> dict[str, Any]:
        s, err = self.session_for(headers)
        if s is None:
            return err
        s.heartbeats += 1
        return {"data": None, "code": None, "message": None, "success": True}

    def telemetry(self, headers: dict[str, str]) -> dict[str, Any]:
        token = auth_token(headers)
        with self.lock:
            s = self.by_session_token.get(token or "")
        if s is not None:
            s.telemetry += 1
        return {"data": "Log Received", "code": None, "message": None, "success": True}

    def admin(self, method: str, path: str, query: list[tuple[str, str]]) -> tuple[int, Any]:
        if path == "/__rig/sessions" and method == "GET":
            with self.lock:
                return 200, [s.public() for s in self.sessions.values()]
        if path == "/__rig/chunk-fetches" and method == "GET":
            with self.lock:
                return 200, list(self.chunk_fetches)
        if path == "/__rig/login-attempts" and method == "GET":
            with self.lock:
                return 200, list(self.login_attempts)
        m = re.fullmatch(r"/__rig/sessions/(\d+)/expire", path)
        if m and method == "POST":
            s = self.sessions.get(int(m.group(1)))
            if s is None:
                return 404, {"error": "no such session"}
            what = dict(query).get("token", "session")
            t = now() - 0.001
            if what in ("session", "both"):
                s.session_expires = t
            if what in ("master", "both"):
                s.master_expires = t
                s.session_expires = t
            return 200, s.public()
        m = re.fullmatch(r"/__rig/sessions/(\d+)/close", path)
        if m and method == "POST":
            s = self.sessions.get(int(m.group(1)))
            if s is None:
                return 404, {"error": "no such session"}
            self.mark_closed(s, "closed by the rig")
            return 200, s.public()
        if path == "/__rig/logins/hold" and method == "POST":
            if self.login_gate is None:
                self.login_gate = asyncio.Event()
            return 200, {"holding": True}
        if path == "/__rig/logins/release" and method == "POST":
            gate, self.login_gate = self.login_gate, None
            if gate is not None:
                gate.set()
            return 200, {"holding": False}
        return 404, {"error": "unknown rig endpoint"}

    # ---- the ASGI app --------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        if scope["type"] != "http":
            return
        method = scope["method"]
        path = scope["path"]
        query = parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        raw = b""
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            raw += message.get("body", b"")
            if len(raw) > MAX_BODY:
                await respond(send, 413, error(None, "390400", "Request body too large."), headers)
                return
            if not message.get("more_body"):
                break
        if raw[:2] == b"\x1f\x8b":
            try:
                raw = gzip.decompress(raw)
            except OSError:
                await respond(send, 400, error(None, "390400", "Invalid gzip body."), headers)
                return
            if len(raw) > MAX_BODY:
                await respond(send, 413, error(None, "390400", "Request body too large."), headers)
                return

        if self.args.log_requests:
            log.info("%s %s", method, path)
        try:
            if (m := re.fullmatch(r"/__storage/([A-Za-z0-9_-]+)/(\d+)", path)) and method == "GET":
                status, body, gzipped = self.storage(headers, m.group(1), int(m.group(2)))
                out = [(b"content-type", b"application/json")]
                if gzipped:
                    out.append((b"content-encoding", b"gzip"))
                out.append((b"content-length", str(len(body)).encode()))
                await send({"type": "http.response.start", "status": status, "headers": out})
                await send({"type": "http.response.body", "body": body})
                return
            if path.startswith("/__rig/"):
                if not secrets.compare_digest(headers.get("x-rig-admin-key", ""), self.args.admin_key):
                    await respond(send, 403, {"error": "admin key required"}, headers)
                    return
                status, body = self.admin(method, path, query)
                await respond(send, status, body, headers)
                return
            if path == "/session/v1/login-request" and method == "POST":
                await respond(send, 200, await self.login(query, raw), headers)
            elif path == "/session/token-request" and method == "POST":
                await respond(send, 200, self.renew(headers, raw), headers)
            elif path == "/session/heartbeat" and method == "POST":
                await respond(send, 200, self.heartbeat(headers), headers)
            elif path == "/session" and method == "POST":
                await respond(send, 200, await self.close(headers, query), headers)
            elif path == "/telemetry/send" and method == "POST":
                await respond(send, 200, self.telemetry(headers), headers)
            elif path == "/session/authenticator-request":
                await respond(
                    send,
                    200,
                    error(None, "390190", "This account accepts only External OAuth and password logins."),
                    headers,
                )
            elif path == "/queries/v1/query-request" and method == "POST":
                await respond(send, 200, await self.query(headers, query, raw), headers)
            elif (m := re.fullmatch(r"/+queries/+([^/]+)/+result", path)) and method == "GET":
                status, body = self.query_result(headers, m.group(1))
                await respond(send, status, body, headers)
            elif (m := re.fullmatch(r"/+monitoring/+queries/+([^/]+)", path)) and method == "GET":
                await respond(send, 200, self.monitoring(headers, m.group(1)), headers)
            elif path == "/queries/v1/abort-request" and method == "POST":
                await respond(send, 200, self.abort(headers, None, raw), headers)
            elif (m := re.fullmatch(r"/+queries/+([^/]+)/+abort-request", path)) and method == "POST":
                await respond(send, 200, self.abort(headers, m.group(1), raw), headers)
            else:
                # Anything else goes to fakesnow with the session token mapped (or none).
                s = None
                token = auth_token(headers)
                if token:
                    with self.lock:
                        s = self.by_session_token.get(token)
                status, body = await self.call_inner(
                    method, path, scope.get("query_string", b""), raw, s.inner_token if s else None
                )
                await respond_raw(send, status, body, headers)
        except Exception as e:  # noqa: BLE001
            log.exception("front failed on %s %s", method, path)
            await respond(send, 500, error(None, "261000", f"front failed: {type(e).__name__}: {e}"), headers)


def statement_executed(s: Session) -> dict[str, Any]:
    """What Snowflake answers a session-control statement (ALTER SESSION)."""
    return {
        "data": {
            "parameters": [],
            "rowtype": [
                {
                    "name": "status",
                    "database": "",
                    "schema": "",
                    "table": "",
                    "nullable": True,
                    "type": "text",
                    "byteLength": 16777216,
                    "length": 16777216,
                    "scale": None,
                    "precision": None,
                    "collation": None,
                }
            ],
            "rowset": [["Statement executed successfully."]],
            "queryResultFormat": "json",
            "total": 1,
            "returned": 1,
            "queryId": str(uuid.uuid4()),
            "statementTypeId": 0x4100,
            "finalDatabaseName": s.database,
            "finalSchemaName": s.schema,
        },
        "code": None,
        "message": None,
        "success": True,
    }


def async_answer(query_id: str) -> dict[str, Any]:
    """What Snowflake answers a query submitted with asyncExec."""
    return {
        "data": {
            "queryId": query_id,
            "getResultUrl": f"/queries/{query_id}/result",
            "queryAbortsAfterSecs": 300,
            "progressDesc": None,
        },
        "code": CODE_ASYNC,
        "message": "Asynchronous execution in progress. Use provided query id to perform query monitoring and management.",
        "success": True,
    }


def opt_str(v: Any) -> str | None:
    return None if v is None else str(v)


def error(data: Any, code: str, message: str) -> dict[str, Any]:
    return {"data": data, "code": code, "message": message, "success": False}


def auth_token(headers: dict[str, str]) -> str | None:
    value = headers.get("authorization")
    if not value:
        return None
    m = re.search(r'Token="([^"]*)"', value)
    return m.group(1) if m else None


def encode_query(query: list[tuple[str, str]]) -> bytes:
    return urlencode(query).encode()


QUERY_TAG_SET = re.compile(
    r"^\s*alter\s+session\s+set\s+(?:.*?\s)?query_tag\s*=\s*(?:'((?:[^']|'')*)'|\"([^\"]*)\"|([^\s;,]+))",
    re.IGNORECASE | re.DOTALL,
)
QUERY_TAG_UNSET = re.compile(r"^\s*alter\s+session\s+unset\s+(?:.*\s)?query_tag\b", re.IGNORECASE | re.DOTALL)


def query_tag_change(sql: str) -> str | None:
    """The QUERY_TAG an ALTER SESSION sets ("" when it unsets it), or None."""
    m = QUERY_TAG_SET.match(sql)
    if m:
        if m.group(1) is not None:
            return m.group(1).replace("''", "'")
        return m.group(2) if m.group(2) is not None else m.group(3)
    if QUERY_TAG_UNSET.match(sql):
        return ""
    return None


async def respond(send: Any, status: int, body: Any, req_headers: dict[str, str]) -> None:
    await respond_raw(send, status, json.dumps(body, separators=(",", ":")).encode(), req_headers)


async def respond_raw(send: Any, status: int, body: bytes, req_headers: dict[str, str]) -> None:
    headers = [(b"content-type", b"application/json")]
    if len(body) > 1024 and "gzip" in req_headers.get("accept-encoding", "").lower():
        # Snowflake compresses responses for clients that accept it.
        body = gzip.compress(body, compresslevel=1)
        headers.append((b"content-encoding", b"gzip"))
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--jwks-url", action="append", default=[])
    parser.add_argument("--issuer", action="append", default=[])
    parser.add_argument("--audience", default="https://snowflake.rig.test")
    parser.add_argument("--user-claim", default="sub")
    parser.add_argument("--scope-claim", choices=["scp", "scope"], default="scp")
    parser.add_argument("--ca-file")
    parser.add_argument("--session-validity", type=int, default=3600)
    parser.add_argument("--master-validity", type=int, default=14400)
    parser.add_argument("--allow-password", action="store_true")
    parser.add_argument("--admin-key", default=None)
    parser.add_argument("--json-results", choices=["node", "all", "none"], default="node")
    parser.add_argument("--default-namespace", default="RIGDB.PUBLIC")
    parser.add_argument("--log-requests", action="store_true")
    parser.add_argument("--account", default="RIG")
    parser.add_argument("--key-pair-user", action="append", default=[])
    parser.add_argument("--session-admin", action="append", default=[])
    parser.add_argument("--chunk-rows", type=int, default=0)
    args = parser.parse_args()
    warnings.filterwarnings("ignore", category=UserWarning, module="fakesnow")
    if not args.admin_key:
        args.admin_key = secrets.token_urlsafe(24)

    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # fakesnow logs SQL at INFO; keep it, it never holds credentials. Its own login logs nothing secret.
    import fakesnow.server  # noqa: PLC0415  (slow import: after argument errors)
    import uvicorn  # noqa: PLC0415

    front = Front(args)
    front.inner = fakesnow.server.app

    # proto=IPPROTO_TCP matters: asyncio sets TCP_NODELAY on accepted sockets only when the
    # socket says it is TCP, and without it Nagle's algorithm adds ~40 ms to every response.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(128)
    sock.setblocking(False)
    front.port = sock.getsockname()[1]

    config = uvicorn.Config(front, log_level="warning", access_log=False, lifespan="on", timeout_keep_alive=75)
    server = uvicorn.Server(config)
    print(f"SNOWFLAKE READY http://127.0.0.1:{front.port}", flush=True)
    server.run(sockets=[sock])


if __name__ == "__main__":
    main()
