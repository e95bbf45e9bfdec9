"""A release's migrated, empty schema, dumped while vendoring (builder/vendoring/schemadump.py)
and shipped in the bundle: restoring it into an empty database takes seconds where running
the release's migrations under TCG took over 30 minutes (Saleor 3.23: 1406 migrations).

Only an empty database is restored into, and only from a dump of the same release made by a
PostgreSQL no newer than the server; anything else is migrated as before. The restore is one
transaction: a node that dies half-way leaves the database empty for the next one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from builder.agent.errors import AgentError

MANIFEST = "schema.json"  # next to the dump: {"file", "release", "postgres_major", ...}
# Tables the agent itself keeps in the application database (builder/agent/migrations.py).
OWN_TABLES = ("builder_releases",)
EMPTY_QUERY = """SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
      AND n.nspname NOT IN ('pg_catalog', 'information_schema')
      AND n.nspname NOT LIKE 'pg_toast%%' AND NOT (n.nspname = 'public' AND c.relname = ANY(%s))"""


@dataclasses.dataclass(frozen=True)
class Dump:
    path: Path
    release: str
    postgres_major: int
    migrations: int

    @classmethod
    def find(cls, directory: Path) -> Dump | None:
        """The dump a bundle carries in `directory`, or None when it has none."""
        manifest = directory / MANIFEST
        if not manifest.is_file():
            return None
        try:
            data = json.loads(manifest.read_text())
            return cls(directory / data["file"], str(data["release"]),
                       int(data["postgres_major"]), int(data.get("migrations", 0)))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AgentError(f"{manifest}: unreadable schema dump manifest: {exc}") from None

    def refusal(self, release: str, server_major: int) -> str | None:
        """Why this dump must not be restored for `release` on a server of that major."""
        if self.release != release:
            return f"the dump is of release {self.release}, not {release}"
        if self.postgres_major > server_major:
            return (f"the dump is from PostgreSQL {self.postgres_major}, newer than the "
                    f"server's {server_major}")
        if not self.path.is_file():
            return f"{self.path} is missing"
        return None


def empty(conn) -> bool:
    """Whether the database holds no relation but the agent's own bookkeeping."""
    return conn.execute(EMPTY_QUERY, (list(OWN_TABLES),)).fetchone()[0] == 0


def server_major(conn) -> int:
    return int(conn.execute("SHOW server_version_num").fetchone()[0]) // 10000


def restore(dsn: str, dump: Path, timeout: float) -> None:
    """pg_restore the dump into the database of `dsn` as its user, in one transaction.
    The password goes by environment, never on a command line that ps or a log shows."""
    parts = urlsplit(dsn)
    env = dict(os.environ)
    if parts.password is not None:
        env["PGPASSWORD"] = unquote(parts.password)
        host = parts.hostname or ""
        netloc = f"{parts.username}@{host}" + (f":{parts.port}" if parts.port else "")
        dsn = urlunsplit(parts._replace(netloc=netloc))
    argv = ["pg_restore", "--single-transaction", "--exit-on-error", "--no-owner",
            "--no-privileges", "--no-comments", f"--dbname={dsn}", str(dump)]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              env=env, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise AgentError(f"pg_restore {dump}: {exc}") from None
    if proc.returncode != 0:
        detail = proc.stderr.strip().splitlines()
        raise AgentError(f"pg_restore {dump} exited {proc.returncode}"
                         + (f": {detail[-1]}" if detail else ""))
