"""A throwaway PostgreSQL from the vendoring machine's Debian packages: initdb in a fresh
directory, one server on 127.0.0.1 and a free port, an application role that owns its
database (as on the cluster: builder/agent/roles/etcd_patroni.py), stopped and removed when
done. Used to migrate a release once at native speed (builder/vendoring/schemadump.py).

initdb refuses to run as root, so as root the server runs as Debian's `postgres` user."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from builder.errors import OperationError, UserError

DEBIAN_BINARIES = Path("/usr/lib/postgresql")
START_TIMEOUT = 60.0


@dataclasses.dataclass(frozen=True)
class Server:
    bindir: Path
    major: int
    port: int
    user: str
    password: str
    database: str

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def tool(self, name: str) -> str:
        return str(self.bindir / name)


def find_bindir(bindir: Path | None = None) -> tuple[Path, int]:
    """The given PostgreSQL bin directory, or the newest Debian one; and its major version."""
    if bindir is None:
        found = sorted((p for p in DEBIAN_BINARIES.glob("*/bin") if (p / "initdb").is_file()),
                       key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0)
        if not found:
            raise UserError(f"no PostgreSQL server under {DEBIAN_BINARIES} (apt install "
                            "postgresql)", field="--postgres-bin")
        bindir = found[-1]
    if not (bindir / "initdb").is_file():
        raise UserError(f"{bindir} has no initdb", field="--postgres-bin")
    out = subprocess.run([str(bindir / "postgres"), "--version"], capture_output=True,
                         text=True, check=False).stdout
    try:
        major = int(out.split()[-1].split(".")[0])
    except (IndexError, ValueError):
        raise UserError(f"{bindir}/postgres --version said {out.strip()!r}",
                        field="--postgres-bin") from None
    return bindir, major


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _as_owner(owner: str | None, argv: list[str]) -> list[str]:
    return ["runuser", "-u", owner, "--", *argv] if owner else argv


@contextlib.contextmanager
def throwaway(bindir: Path | None = None, *, user: str = "saleor",
              database: str = "saleor") -> Iterator[Server]:
    """A running server whose `user` owns `database`; always stopped and removed."""
    bindir, major = find_bindir(bindir)
    owner = None
    if os.geteuid() == 0:
        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise OperationError("running as root and there is no postgres user to run a "
                                 "throwaway PostgreSQL as") from None
    # Not under the caller's work directory: that may be private to root.
    top = Path(tempfile.mkdtemp(prefix="builder-pg-"))
    data, run = top / "data", top / "run"
    run.mkdir()
    if owner:
        for path in (top, run):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    name = owner.pw_name if owner else None
    server = Server(bindir, major, free_port(), user, secrets.token_hex(16), database)
    log = top / "server.log"
    try:
        _check(_as_owner(name, [server.tool("initdb"), "-D", str(data), "-U", "postgres",
                                "--auth-local=trust", "--auth-host=scram-sha-256",
                                "--encoding=UTF8", "--locale=C.UTF-8", "--no-sync"]),
               "initdb")
        _check(_as_owner(name, [server.tool("pg_ctl"), "-D", str(data), "-l", str(log), "-w",
                                "-t", str(int(START_TIMEOUT)), "-o",
                                f"-c listen_addresses=127.0.0.1 -p {server.port} "
                                f"-k {run} -c fsync=off", "start"]),
               f"pg_ctl start (log: {log})")
        psql = _as_owner(name, [server.tool("psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1",
                                "-h", str(run), "-p", str(server.port), "-U", "postgres",
                                "-d", "postgres"])
        # Names and password are data for psql's :"var" and :'var' quoting (which psql
        # applies to a script, not to -c), never pasted into the SQL text.
        _check([*psql, "-v", f"pw={server.password}", "-v", f"user={user}", "-v",
                f"db={database}", "-f", "-"], "create role and database",
               "CREATE ROLE :\"user\" LOGIN PASSWORD :'pw';\n"
               "CREATE DATABASE :\"db\" OWNER :\"user\";\n")
        yield server
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run(_as_owner(name, [server.tool("pg_ctl"), "-D", str(data), "-m",
                                            "immediate", "-w", "stop"]),
                           capture_output=True, check=False)
        shutil.rmtree(top, ignore_errors=True)


def _check(argv: list[str], what: str, stdin: str | None = None) -> None:
    started = time.monotonic()
    proc = subprocess.run(argv, capture_output=True, text=True, check=False, input=stdin)
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise OperationError(f"throwaway PostgreSQL: {what} failed after "
                             f"{time.monotonic() - started:.1f} s"
                             + (f": {detail[-1]}" if detail else ""))
