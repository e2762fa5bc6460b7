"""An MCP client on the official MCP Python SDK (PyPI `mcp`, pinned in requirements-mcp.txt), for
the tests of `snowgate mcp`. It connects once, then runs the steps it reads on stdin, one JSON
object a line, and answers each with one JSON line on stdout, so a test can act between steps
(approve a request while the client waits, remove the agent).

    mcp_client.py stdio COMMAND [ARG...]   spawn the server and talk over its stdin/stdout
    mcp_client.py http URL                 Streamable HTTP; the bearer is $SNOWGATE_MCP_BEARER

The first line out is {"ready": true, "server": NAME} once the MCP session is up, or
{"error": ...} when it could not start. Steps:

    {"op": "tools"}                          -> {"tools": [names, sorted]}
    {"op": "call", "tool": T, "args": {..}}  -> {"is_error": bool, "text": str, "structured": ...}
    {"op": "wait_for_grant", "role": R, "timeout": S}
        calls the `access` tool every half second until R is among the active grants
        -> {"waited": seconds, "polls": n, "structured": the last answer}, or {"error": ...}

A protocol-level failure of a step is answered {"error": ...}; the bearer is never printed.
"""

from __future__ import annotations

import json
import os
import sys
import time
from typing import Any

import anyio
import httpx2
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client


def say(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def answer_of(result: Any) -> dict[str, Any]:
    text = "\n".join(c.text for c in result.content if getattr(c, "type", None) == "text")
    return {"is_error": bool(result.is_error), "text": text, "structured": result.structured_content}


async def wait_for_grant(session: ClientSession, role: str, timeout: float) -> dict[str, Any]:
    started = time.monotonic()
    polls = 0
    last: Any = None
    while time.monotonic() - started < timeout:
        polls += 1
        result = await session.call_tool("access", {})
        if result.is_error:
            return {"error": answer_of(result)["text"]}
        last = result.structured_content or {}
        if any(g.get("role") == role for g in last.get("active_grants") or []):
            return {"waited": round(time.monotonic() - started, 2), "polls": polls, "structured": last}
        await anyio.sleep(0.5)
    return {"error": f"no active grant of {role} after {timeout} s", "structured": last}


async def run_steps(session: ClientSession) -> None:
    init = await session.initialize()
    say({"ready": True, "server": init.server_info.name})
    stdin = anyio.wrap_file(sys.stdin)
    async for line in stdin:
        if not line.strip():
            continue
        step = json.loads(line)
        try:
            op = step["op"]
            if op == "tools":
                listed = await session.list_tools()
                say({"tools": sorted(t.name for t in listed.tools)})
            elif op == "call":
                result = await session.call_tool(step["tool"], step.get("args") or {})
                say(answer_of(result))
            elif op == "wait_for_grant":
                say(await wait_for_grant(session, step["role"], float(step.get("timeout", 60))))
            else:
                say({"error": f"unknown op {op!r}"})
        except Exception as e:  # a step's failure is the test's to judge
            say({"error": f"{type(e).__name__}: {e}"})


async def main(argv: list[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("stdio", "http"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        if argv[0] == "stdio":
            server = StdioServerParameters(command=argv[1], args=argv[2:], env=dict(os.environ))
            async with stdio_client(server) as (read, write):
                async with ClientSession(read, write) as session:
                    await run_steps(session)
        else:
            bearer = os.environ.get("SNOWGATE_MCP_BEARER", "")
            headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
            timeout = httpx2.Timeout(30, read=120)
            async with httpx2.AsyncClient(headers=headers, timeout=timeout, trust_env=False) as http:
                async with streamable_http_client(argv[1], http_client=http) as (read, write):
                    async with ClientSession(read, write) as session:
                        await run_steps(session)
    except BaseException as e:  # noqa: BLE001 - the test reads why the session did not start
        if isinstance(e, KeyboardInterrupt):
            raise
        say({"error": f"{type(e).__name__}: {describe(e)}"})
        return 1
    return 0


def describe(e: BaseException) -> str:
    """An exception group's leaves, else the exception itself, without any header value."""
    leaves = getattr(e, "exceptions", None)
    if leaves:
        return "; ".join(f"{type(x).__name__}: {describe(x)}" for x in leaves)
    return str(e)


if __name__ == "__main__":
    sys.exit(anyio.run(main, sys.argv[1:]))
