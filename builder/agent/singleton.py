"""Run a command on one node of the cluster at a time: the node holding a PostgreSQL
session-level advisory lock runs it, the others wait for the lock.

    builder-singleton --name saleor-beat --dsn-env DATABASE_URL -- celery ... beat

Celery beat must run exactly once per cluster, yet every API node comes from the same image
and boots the same way: each runs this wrapper, and the lock decides. The holder checks its
session every --interval seconds; when the session is gone (the primary failed over, the
network broke) the lock is gone too, so the command is stopped at once and the race for the
lock starts again. Another node can take the lock on the new primary before the old holder
notices, so two copies may overlap for up to --interval seconds.

Standalone on purpose (stdlib + psycopg): it runs as a script, leaving PYTHONPATH to the
command it starts.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import signal
import subprocess
import sys
import time

# Fail fast on a dead primary or network instead of the kernel's two-hour default.
CONNECT = {"connect_timeout": 5, "keepalives": 1, "keepalives_idle": 5,
           "keepalives_interval": 2, "keepalives_count": 2, "tcp_user_timeout": 8000,
           "application_name": "builder-singleton"}


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for pg_advisory_lock from a readable name."""
    return int.from_bytes(hashlib.sha256(f"builder:{name}".encode()).digest()[:8], "big",
                          signed=True)


def log(message: str) -> None:
    print(f"builder-singleton: {message}", flush=True)


class Stop:
    def __init__(self) -> None:
        self.requested = False
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._handle)

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.requested and time.monotonic() < end:
            time.sleep(min(0.5, end - time.monotonic()))


def alive(conn) -> bool:
    import psycopg

    try:
        conn.execute("SELECT 1").fetchone()
        return True
    except psycopg.Error:
        return False


def terminate(child: subprocess.Popen, grace: float = 15.0) -> None:
    if child.poll() is not None:
        return
    child.terminate()
    try:
        child.wait(grace)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def hold_and_run(conn, key: int, command: list[str], interval: float, stop: Stop) -> int | None:
    """Run command while holding the lock. None: lock not taken or lost (try again); else the
    command's own exit status."""
    if not conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
        return None
    log(f"holding the lock, starting: {' '.join(command)}")
    child = subprocess.Popen(command)
    try:
        while not stop.requested:
            if child.poll() is not None:
                log(f"command exited with status {child.returncode}")
                return child.returncode or 1
            if not alive(conn):
                log("lost the session holding the lock: stopping the command")
                return None
            stop.sleep(interval)
        return 0
    finally:
        terminate(child)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="builder-singleton", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--name", required=True, help="what the lock is for")
    parser.add_argument("--dsn-env", default="DATABASE_URL",
                        help="environment variable holding the PostgreSQL URL")
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    dsn = os.environ.get(args.dsn_env)
    if not command or not dsn:
        parser.error(f"need a command after -- and ${args.dsn_env}")
    import psycopg

    key = lock_key(args.name)
    stop = Stop()
    waiting = False
    while not stop.requested:
        try:
            with psycopg.connect(dsn, autocommit=True, **CONNECT) as conn:
                status = hold_and_run(conn, key, command, args.interval, stop)
        except psycopg.Error as exc:
            log(f"database: {str(exc).strip().splitlines()[0] if str(exc).strip() else exc}")
            status = None
        if status is not None:
            return status
        if not waiting:
            log(f"another node holds the {args.name} lock (or the database is away); waiting")
        waiting = True
        stop.sleep(args.interval)
    return 0


if __name__ == "__main__":
    sys.exit(main())
