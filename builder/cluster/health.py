"""Reading a `builder cluster status` document: the DB nodes, the leader, and whether the
database cluster is whole (one leader, every other member streaming, etcd healthy)."""

from __future__ import annotations

import time
from collections.abc import Callable

DB_ROLE = "etcd-patroni"


def db_nodes(status: dict) -> dict[str, dict]:
    return {n["name"]: n for n in status["nodes"] if n["role"] == DB_ROLE}


def leaders(status: dict) -> list[dict]:
    return [n for n in db_nodes(status).values() if n.get("patroni", {}).get("role") == "leader"]


def leader(status: dict) -> dict:
    (only,) = leaders(status)
    return only


def whole(status: dict) -> bool:
    nodes = list(db_nodes(status).values())
    states = [n.get("patroni", {}).get("state") for n in nodes]
    return (len(leaders(status)) == 1
            and states.count("streaming") == len(nodes) - 1
            and all(n.get("etcd", {}).get("healthy") for n in nodes))


def wait_whole(get_status: Callable[[], dict], timeout: float = 600,
               interval: float = 3) -> tuple[dict, float]:
    """The first status that is whole, and the seconds it took; TimeoutError otherwise."""
    started = time.monotonic()
    while True:
        status = get_status()
        if whole(status):
            return status, time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"database cluster not whole after {timeout:.0f} s: " + ", ".join(
                f"{name}={n.get('patroni', {}).get('role')}/{n.get('patroni', {}).get('state')}"
                for name, n in db_nodes(status).items()))
        time.sleep(interval)
