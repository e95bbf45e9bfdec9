"""Graceful leave of an etcd-patroni node that powers off for good (replaced, scaled in):
run by builder-graceful-leave.service's ExecStop, which systemd stops before Patroni and
etcd because the unit is ordered after them; on AWS first by the lifecycle watcher
(builder/agent/lifecycle.py) while the group holds the instance in Terminating:Wait, so
the power-off's run that follows finds nothing left to do.

A crash costs the cluster a leader-key expiry (~22 s of write outage here, notes/ha.md)
and leaves a dead etcd member that only the replacement's agent removes. Leaving instead:
1. if this node is the Patroni leader, a switchover to a healthy replica (the synchronous
   standby first), waited for until the new primary takes writes as HAProxy checks it
   (Patroni's /primary is 200 and its PostgreSQL has left recovery), for HAProxy's rise
   window;
2. this node's etcd member removed, unless that would leave fewer healthy members than
   the smaller cluster's quorum (then it stays, and the replacement removes it as today);
   the local etcd data goes with it, so a later boot of this disk joins as a new member.
A reboot is no leave: the node comes back with its data and its membership.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from builder.agent.errors import AgentError
from builder.agent.etcd import Client, EtcdError, Member

# The targets a shutdown for good queues; reboot.target and kexec.target are not leaves.
FOR_GOOD = ("poweroff.target", "halt.target")
# Measured under TCG: Patroni's own wait for the switchover (20 polls) ran out before it
# ended; the budget is the new primary's, from the request on.
SWITCHOVER_TIMEOUT = 120.0
# HAProxy checks /primary every second and marks a server up after 2 (haproxy.cfg.j2).
HAPROXY_RISE_SECONDS = 3.0
REPORT = "/var/lib/builder/leave.json"
# Patroni's maximum_lag_on_failover in patroni.yml.j2: a replica further behind would not
# be promoted by a failover either.
MAX_LAG = 1048576
# etcd refuses a removal ("unhealthy cluster") until every remaining member has been
# connected for 5 s; a peer that just reconnected is worth that wait.
REMOVE_TIMEOUT = 30.0
ETCD_TIMEOUT = 10.0
# Right after the switchover the new primary's node hands etcd's leadership on
# (builder/agent/etcd_leader.py); members answer /health false until the transfer's
# election ends, seconds on a starved host (measured: a leave 3 s after the switchover
# found 1 healthy voting peer of 2). A peer is given this long before the member is kept.
QUORUM_WAIT = 30.0


def shutting_down_for_good(list_jobs: Callable[[], str] | None = None) -> bool:
    """Whether systemd's queued jobs power the machine off (not a reboot)."""
    text = (list_jobs or _systemd_jobs)()
    units = {fields[1] for fields in (line.split() for line in text.splitlines())
             if len(fields) >= 3 and fields[2] == "start"}
    return bool(units & set(FOR_GOOD))


def _systemd_jobs() -> str:
    try:
        return subprocess.run(["systemctl", "list-jobs", "--no-legend", "--plain"],
                              capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


@dataclasses.dataclass
class Patroni:
    """Patroni's REST API on one node; writes need the API's basic-auth login."""
    url: str
    user: str = ""
    password: str = ""
    timeout: float = 5.0

    def _request(self, path: str, body: dict | None = None) -> tuple[int, str]:
        req = urllib.request.Request(self.url.rstrip("/") + path)
        if body is not None:  # a write: JSON, behind the API's basic-auth login
            login = base64.b64encode(f"{self.user}:{self.password}".encode()).decode()
            req.data = json.dumps(body).encode()
            req.add_header("Content-Type", "application/json")
            req.add_header("Authorization", f"Basic {login}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return resp.status, resp.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode(errors="replace")
        except OSError as exc:
            return 0, str(exc)

    def cluster(self) -> dict:
        code, text = self._request("/cluster")
        if code != 200:
            raise AgentError(f"patroni {self.url}/cluster: HTTP {code}: {text[:200]}")
        return json.loads(text)

    def takes_writes(self) -> bool:
        """What HAProxy's check asks (haproxy.cfg.j2): /primary is 200 (the leader lock)
        and the body's role, from pg_is_in_recovery(), is a primary's."""
        code, text = self._request("/primary")
        if code != 200:
            return False
        try:
            return json.loads(text).get("role") in ("master", "primary")
        except (ValueError, AttributeError):
            return False

    def switchover(self, leader: str, candidate: str) -> tuple[int, str]:
        # Patroni answers once the switchover is over: seconds, more under TCG.
        slow = dataclasses.replace(self, timeout=SWITCHOVER_TIMEOUT / 2)
        return slow._request("/switchover", {"leader": leader, "candidate": candidate})


def candidate(cluster: dict, me: str) -> dict | None:
    """The member to hand the primary to: streaming, the synchronous standby before the
    others, the least lag first; None when there is none."""
    ranked = [m for m in cluster.get("members", [])
              if m.get("name") != me and m.get("role") in ("sync_standby", "replica")
              and m.get("state") in ("streaming", "running") and _lag(m) <= MAX_LAG
              and "nofailover" not in (m.get("tags") or {})]
    ranked.sort(key=lambda m: (m.get("role") != "sync_standby", _lag(m)))
    return ranked[0] if ranked else None


def _lag(member: dict) -> float:
    lag = member.get("lag", 0)
    return float(lag) if isinstance(lag, int | float) else float("inf")


def _leader(cluster: dict) -> dict | None:
    return next((m for m in cluster.get("members", []) if m.get("role") == "leader"), None)


def hand_over(me: str, patroni: Patroni, *, timeout: float = SWITCHOVER_TIMEOUT,
              clock: Callable[[], float] = time.monotonic,
              sleep: Callable[[float], None] = time.sleep) -> dict:
    """Switch over when this node leads; what happened, as a report."""
    cluster = patroni.cluster()
    leader = _leader(cluster)
    if not leader or leader.get("name") != me:
        return {"primary": False}
    target = candidate(cluster, me)
    if target is None:
        return {"primary": True, "switchover": "no healthy replica: left to failover"}
    started = clock()
    code, text = patroni.switchover(me, target["name"])
    # No answer (code 0) is not a refusal, nor Patroni's 503 "Switchover status unknown"
    # (its API stopped waiting while the failover key still stands): the switchover may
    # be under way; the new primary below says whether it happened.
    pending = code == 0 or (code == 503 and "status unknown" in text)
    if code != 200 and not pending:
        return {"primary": True, "switchover": f"refused: HTTP {code}: {text.strip()[:200]}",
                "candidate": target["name"]}
    new = dataclasses.replace(patroni, url=target["api_url"].rsplit("/patroni", 1)[0])
    while not new.takes_writes():
        if clock() - started > timeout:
            return {"primary": True, "candidate": target["name"],
                    "switchover": f"{target['name']} not primary after {timeout:.0f} s"}
        sleep(0.5)
    sleep(HAPROXY_RISE_SECONDS)
    return {"primary": True, "candidate": target["name"], "switchover": "done",
            "seconds": round(clock() - started, 1)}


def quorum(size: int) -> int:
    return size // 2 + 1


def leave_etcd(me: str, local: Client, client_for: Callable[[Member], Client]) -> dict:
    """This node's member removed when the rest keep a quorum of the smaller cluster."""
    members = local.members()
    mine = next((m for m in members if m.name == me), None)
    if mine is None:
        return {"etcd": "not a member"}
    others = [m for m in members if m.id != mine.id]
    needed = quorum(len([m for m in others if not m.learner]))
    waited_until = time.monotonic() + QUORUM_WAIT
    while True:
        voters = [m for m in others
                  if not m.learner and m.client_urls and client_for(m).healthy()]
        if others and len(voters) >= needed:
            break
        if not others or time.monotonic() > waited_until:
            return {"etcd": f"member kept: {len(voters)} healthy voting peer(s) of "
                            f"{len(others)} would not hold a quorum without it"}
        time.sleep(1)
    deadline = time.monotonic() + REMOVE_TIMEOUT
    peer = client_for(voters[0])
    while True:
        try:
            peer.remove(mine.id)
            break
        except EtcdError as exc:
            # A removal whose answer timed out may have been applied: the list says.
            if "timed out" in str(exc) and _gone(peer, mine.id):
                break
            retry = "unhealthy cluster" in str(exc) or "timed out" in str(exc)
            if not retry or time.monotonic() > deadline:
                raise
            time.sleep(1)
    return {"etcd": "removed", "member_id": mine.id, "members_left": len(others)}


def _gone(peer: Client, member_id: str) -> bool:
    try:
        return all(m.id != member_id for m in peer.members())
    except EtcdError:
        return False


def leave(me: str, patroni: Patroni, local: Client, *, etcd_data: Path,
          client_for: Callable[[Member], Client] | None = None,
          for_good: Callable[[], bool] = shutting_down_for_good) -> dict:
    if not for_good():
        return {"left": False, "why": "not a power-off (a reboot keeps the membership)"}
    report: dict = {"left": True}
    started = time.monotonic()
    try:
        report.update(hand_over(me, patroni))
    except (AgentError, ValueError) as exc:
        report["switchover"] = f"skipped: {exc}"
    if not (etcd_data / "member").is_dir():
        # An earlier leave (the lifecycle hook's, builder/agent/lifecycle.py) removed the
        # member and its data, and the local etcd stopped: nothing is left to ask or remove.
        report["etcd"] = "not a member: left before (no local data)"
    else:
        try:
            # A membership change waits for a raft commit: seconds on a starved guest.
            report.update(leave_etcd(me, local, client_for or (
                lambda m: Client(m.client_urls[0], timeout=ETCD_TIMEOUT))))
        except EtcdError as exc:
            report["etcd"] = f"member kept: {exc}"
    if report.get("etcd") == "removed":
        # Its member is gone from the cluster: this data could never start again.
        shutil.rmtree(etcd_data / "member", ignore_errors=True)
    report["seconds"] = round(time.monotonic() - started, 1)
    return report
