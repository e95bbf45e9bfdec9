"""Waiting until a started service answers as its clients will use it."""

from __future__ import annotations

import base64
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from builder.agent.errors import AgentError


def wait(what: str, probe: Callable[[], bool], timeout: float, interval: float = 1.0) -> float:
    """Seconds until probe() was true; AgentError naming `what` after `timeout`."""
    started = time.monotonic()
    last = "no answer"
    while True:
        try:
            if probe():
                return round(time.monotonic() - started, 2)
        except (OSError, ValueError) as exc:
            last = str(exc)
        if time.monotonic() - started >= timeout:
            raise AgentError(f"{what} not ready after {timeout:.0f}s ({last})")
        time.sleep(interval)


def http_ok(url: str, *, user: str | None = None, password: str | None = None,
            timeout: float = 2.0) -> Callable[[], bool]:
    def probe() -> bool:
        req = urllib.request.Request(url)
        if user is not None:
            token = base64.b64encode(f"{user}:{password}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status == 200
        except urllib.error.HTTPError:
            return False
    return probe


def graphql_shop(url: str, *, host: str, timeout: float = 5.0) -> Callable[[], bool]:
    """Saleor's readiness: `{ shop { name } }` answered from the database (its /health/ is
    liveness only). The Host header must be one Saleor allows."""
    import json

    body = json.dumps({"query": "{ shop { name } }"}).encode()

    def probe() -> bool:
        req = urllib.request.Request(url, data=body, method="POST", headers={
            "Content-Type": "application/json", "Host": host})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                answer = json.loads(resp.read())
        except urllib.error.HTTPError:
            return False
        return bool(((answer.get("data") or {}).get("shop") or {}).get("name"))
    return probe


def redis_pong(host: str, password: str, port: int = 6379,
               timeout: float = 2.0) -> Callable[[], bool]:
    """AUTH then PING in Redis's wire protocol: proves the bind address and the password."""
    def probe() -> bool:
        def bulk(*args: str) -> bytes:
            out = f"*{len(args)}\r\n".encode()
            for arg in args:
                raw = arg.encode()
                out += f"${len(raw)}\r\n".encode() + raw + b"\r\n"
            return out

        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(bulk("AUTH", password) + bulk("PING"))
            answer = b""
            while answer.count(b"\r\n") < 2:
                chunk = sock.recv(256)
                if not chunk:
                    break
                answer += chunk
        return answer.startswith(b"+OK\r\n+PONG")
    return probe
