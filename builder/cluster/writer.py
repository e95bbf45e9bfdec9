"""A steady writer through HAProxy: one autocommit INSERT at a time, reconnecting after
every error, recording which writes the server acknowledged and where they landed.

What failover tests and benchmarks need from it: the acknowledged sequence numbers (every
one must survive), the gaps between consecutive acknowledgements (the write outage seen
by an application), and writes refused by a read-only server (misrouted by the proxy).
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time

import psycopg

TABLE = "builder_writes"
# libpq settings: give up on a dead server within seconds instead of TCP's minutes.
CONNECT = {"connect_timeout": 2, "tcp_user_timeout": 3000, "keepalives_idle": 1,
           "keepalives_interval": 1, "keepalives_count": 2, "application_name": "builder-writer"}


@dataclasses.dataclass
class Ack:
    seq: int
    at: float          # time.monotonic() when the commit returned
    server: str        # inet_server_addr() of the server that took it


@dataclasses.dataclass
class Writer:
    # Out of repr: a failed assertion prints the writer, and the DSN holds the password.
    dsn: str = dataclasses.field(repr=False)
    interval: float = 0.05
    acks: list[Ack] = dataclasses.field(default_factory=list, repr=False)
    errors: list[tuple[float, str]] = dataclasses.field(default_factory=list)
    misrouted: int = 0    # refused because the server was a read-only replica
    attempts: int = 0
    # A new connection for every write, as Django's default CONN_MAX_AGE=0 does (Saleor):
    # each write is then routed by the proxy on its own.
    fresh: bool = False

    def __post_init__(self):
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._seq = 0

    def prepare(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True, **CONNECT) as conn:
            conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (seq bigint PRIMARY KEY, "
                         "server inet, written timestamptz DEFAULT now())")
            self._seq = conn.execute(f"SELECT coalesce(max(seq), 0) FROM {TABLE}").fetchone()[0]

    def start(self, prepare: bool = True) -> Writer:
        if prepare:
            self.prepare()
        self._thread = threading.Thread(target=self._run, name="builder-writer", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> Writer:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        return self

    def _run(self) -> None:
        conn = None
        while not self._stop.is_set():
            try:
                if conn is None:
                    conn = psycopg.connect(self.dsn, autocommit=True, **CONNECT)
                seq = self._seq + 1
                self.attempts += 1
                row = conn.execute(f"INSERT INTO {TABLE} (seq, server) VALUES (%s, "
                                   "inet_server_addr()) RETURNING host(server)", (seq,)).fetchone()
                self._seq = seq
                self.acks.append(Ack(seq, time.monotonic(), row[0]))
                if self.fresh:
                    conn = self._close(conn)
            except psycopg.errors.ReadOnlySqlTransaction as exc:
                self.misrouted += 1
                self._seq += 1  # never reuse a number a replica might have seen
                self._error(exc)
                conn = self._close(conn)
            except psycopg.Error as exc:
                # The outcome of an INSERT whose commit reply was lost is unknown: its number
                # is skipped, so it can neither count as acknowledged nor collide later.
                self._seq += 1
                self._error(exc)
                conn = self._close(conn)
                self._stop.wait(0.2)
            self._stop.wait(self.interval)
        self._close(conn)

    def _error(self, exc: Exception) -> None:
        text = str(exc).strip().splitlines()
        self.errors.append((time.monotonic(), text[0] if text else type(exc).__name__))

    @staticmethod
    def _close(conn):
        if conn is not None:
            with contextlib.suppress(psycopg.Error):
                conn.close()
        return None

    def acked_after(self, moment: float) -> list[Ack]:
        return [a for a in self.acks if a.at > moment]

    def outage_around(self, moment: float, until: float | None = None) -> float:
        """The longest gap between consecutive acknowledgements that spans `moment` or
        starts after it: what an application saw of a failure at `moment`. With `until`,
        a gap still open then counts up to it (no write taken since)."""
        times = [a.at for a in self.acks]
        if until is not None and times and times[-1] < until:
            times.append(until)
        gaps = [(b - a) for a, b in zip(times, times[1:], strict=False) if b > moment]
        return round(max(gaps, default=0.0), 2)

    def gaps(self, since: float, until: float, over: float = 1.0) -> list[tuple[float, float]]:
        """(start, seconds) of every gap between consecutive acknowledgements longer than
        `over` seconds that overlaps [since, until]."""
        times = [a.at for a in self.acks]
        return [(a, round(b - a, 2)) for a, b in zip(times, times[1:], strict=False)
                if b - a > over and b > since and a < until]

    def outages(self, since: float, until: float, over: float = 1.0) -> list[float]:
        """The lengths of gaps(): the separate write outages of a long operation (one
        switchover should be one gap; a second event is a second gap)."""
        return [seconds for _, seconds in self.gaps(since, until, over)]

    def missing(self, dsn: str) -> list[int]:
        """Acknowledged sequence numbers not in the table now (must be none)."""
        with psycopg.connect(dsn, autocommit=True, **CONNECT) as conn:
            present = {r[0] for r in conn.execute(f"SELECT seq FROM {TABLE}")}
        return [a.seq for a in self.acks if a.seq not in present]
