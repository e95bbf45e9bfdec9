"""Reading a `builder cluster status` document: the DB nodes, the leader, whether the
database cluster is whole (one leader, every other member streaming, etcd healthy), and
what stands in the way of a rolling change (`problems`)."""

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


def problems(status: dict, max_lag: float) -> list[str]:
    """Why the database cluster is not fit for a rolling change, one phrase each (none:
    it is): every DB node running with its agent ready, one Patroni leader, every other
    member streaming at most `max_lag` bytes behind, etcd healthy on every node, and etcd's
    members exactly the nodes' slots, none a learner (a stale member would count towards
    the quorum a departing node's leave needs)."""
    nodes = db_nodes(status)
    found = [f"{name} is powered off" for name, row in nodes.items()
             if row.get("power") != "running"]
    # A node that is off says nothing more: its Patroni and etcd are off with it.
    running = {name: row for name, row in nodes.items() if row.get("power") == "running"}
    found += [f"{name}'s agent is {row.get('agent', 'unknown')}"
              for name, row in running.items() if row.get("agent") != "ready"]
    heads = sorted(n["name"] for n in leaders(status))
    if len(heads) != 1:
        found.append(f"{len(heads)} Patroni leaders ({', '.join(heads) or 'none'}), not 1")
    for name, row in running.items():
        patroni = row.get("patroni") or {}
        if patroni.get("role") == "leader":
            continue
        lag = patroni.get("lag")
        if patroni.get("state") != "streaming":
            found.append(f"{name} is {patroni.get('role', 'unknown')}/"
                         f"{patroni.get('state') or '-'}, not a streaming replica")
        elif not isinstance(lag, int | float) or lag > max_lag:
            found.append(f"{name} lags {lag} bytes (at most {max_lag:.0f})")
    sick = [name for name, row in running.items() if not (row.get("etcd") or {}).get("healthy")]
    if sick:
        found.append(f"etcd not healthy on {', '.join(sick)}")
    return found + _etcd_membership(status, sorted(nodes))


def _etcd_membership(status: dict, names: list[str]) -> list[str]:
    members = status.get("etcd_members")
    if members is None:
        return ["no DB node gave etcd's member list"]
    found = []
    listed = sorted(m.get("name") or f"(unstarted {m.get('id')})" for m in members)
    if listed != names:
        found.append(f"etcd members {', '.join(listed) or 'none'} are not the nodes "
                     f"{', '.join(names)}")
    learners = sorted(m.get("name") or str(m.get("id")) for m in members if m.get("learner"))
    if learners:
        found.append(f"etcd learner(s) not promoted yet: {', '.join(learners)}")
    return found


def wait_whole(get_status: Callable[[], dict], timeout: float = 600,
               interval: float = 3) -> tuple[dict, float]:
    """The first status that is whole, and the seconds it took; TimeoutError otherwise."""
    def missing(status: dict) -> list[str]:
        return [] if whole(status) else [", ".join(
            f"{name}={n.get('patroni', {}).get('role')}/{n.get('patroni', {}).get('state')}"
            for name, n in db_nodes(status).items())]
    return wait_for(get_status, missing, "database cluster not whole", timeout, interval)


def wait_for(get_status: Callable[[], dict], missing: Callable[[dict], list[str]], what: str,
             timeout: float, interval: float) -> tuple[dict, float]:
    """The first status of which `missing` finds nothing, and the seconds it took;
    TimeoutError saying `what` and what was still missing otherwise."""
    started = time.monotonic()
    while True:
        status = get_status()
        found = missing(status)
        if not found:
            return status, time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"{what} after {timeout:.0f} s: {'; '.join(found)}")
        time.sleep(interval)
