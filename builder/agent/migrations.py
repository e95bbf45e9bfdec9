"""Database migrations exactly once per release across all API nodes.

Every API node boots from the same image and wants the schema of its release. The first to
take a PostgreSQL advisory lock migrates and records the release in `builder_releases`; the
others wait on the lock, find the record and go on. A node that dies while migrating drops
its session, and with it the lock: the next node migrates (Django's migrate is resumable).

A first release goes faster: an empty database is restored from the migrated schema the
bundle carries (builder/agent/schema.py) when the dump fits, and migrated otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from builder.agent import schema
from builder.agent.errors import AgentError
from builder.agent.singleton import CONNECT, lock_key

TABLE = """CREATE TABLE IF NOT EXISTS builder_releases (
    task text NOT NULL, release text NOT NULL, node text NOT NULL,
    seconds real NOT NULL, done_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task, release))"""


def connect(dsn: str, timeout: float):
    """The first connection that works within timeout: at a cold start the database (and
    HAProxy's view of its primary) comes up while the API nodes are already booting."""
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            return psycopg.connect(dsn, autocommit=True, **CONNECT)
        except psycopg.Error as exc:
            if time.monotonic() >= deadline:
                first = str(exc).strip().splitlines()[:1] or [type(exc).__name__]
                raise AgentError(f"database not reachable after {timeout:.0f}s: "
                                 f"{first[0]}") from None
            time.sleep(3)


def once(dsn: str, task: str, release: str, node: str, run: Callable[[int], None], *,
         connect_timeout: float, lock_timeout: float,
         dump: schema.Dump | None = None, restore_timeout: float = 600.0) -> dict:
    """run(migrations already recorded) unless some node already did `task` for `release`;
    with `dump`, an empty database is restored from it instead. What happened, for the
    report."""
    import psycopg

    started = time.monotonic()
    with connect(dsn, connect_timeout) as conn:
        try:
            conn.execute(f"SET lock_timeout = {int(lock_timeout * 1000)}")
            conn.execute("SELECT pg_advisory_lock(%s)", (lock_key(f"{task}:{release}"),))
            waited = round(time.monotonic() - started, 2)
            conn.execute(TABLE)
            row = conn.execute("SELECT node, done_at FROM builder_releases "
                               "WHERE task = %s AND release = %s", (task, release)).fetchone()
            if row:
                return {"ran": False, "by": row[0], "at": row[1].isoformat(), "waited": waited}
            how, why = _choose(conn, release, dump)
            before = applied(conn)
            began = time.monotonic()
            if how == "restored":
                schema.restore(dsn, dump.path, restore_timeout)
            else:
                run(before)
            seconds = round(time.monotonic() - began, 2)
            conn.execute("INSERT INTO builder_releases (task, release, node, seconds) "
                         "VALUES (%s, %s, %s, %s)", (task, release, node, seconds))
            # A migrate killed half-way (its timeout, a node lost) left the migrations it
            # finished recorded: the next run goes on from there, and says so.
            return {"ran": True, "by": node, "how": how, "why": why, "seconds": seconds,
                    "waited": waited, "applied_before": before}
        except psycopg.Error as exc:
            raise AgentError(f"{task} lock: {str(exc).strip() or type(exc).__name__}") from None


def applied(conn) -> int:
    """Migrations Django has recorded in this database (0 before the first)."""
    if conn.execute("SELECT to_regclass('django_migrations')").fetchone()[0] is None:
        return 0
    return conn.execute("SELECT count(*) FROM django_migrations").fetchone()[0]


def _choose(conn, release: str, dump: schema.Dump | None) -> tuple[str, str]:
    """("restored" | "migrated", why), decided under the lock."""
    if dump is None:
        return "migrated", "the bundle carries no schema dump"
    if not schema.empty(conn):
        return "migrated", "the database already holds a schema"
    refusal = dump.refusal(release, schema.server_major(conn))
    if refusal:
        return "migrated", refusal
    return "restored", f"empty database: {dump.migrations} migrations restored from the dump"
