"""What a running node says about itself, asked over SSH (the host has no route to the
cluster network): the node agent's boot report, Patroni's view of the cluster, etcd's
endpoint health and member list."""

from __future__ import annotations

import json
import shlex
import subprocess
from pathlib import Path

from builder.cluster.vm import VM, ssh

AGENT_REPORT = "/run/builder/agent.json"


def _json(vm: VM, key: Path, user: str, command: str, timeout: float = 30):
    try:
        proc = ssh(vm, key, user, command, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    try:
        return json.loads(proc.stdout)
    except ValueError:
        return None


def agent_report(vm: VM, key: Path, user: str) -> dict | None:
    """The agent's report of this boot; None while it has not written one (or no SSH)."""
    return _json(vm, key, user, f"cat {AGENT_REPORT} 2>/dev/null")


def patroni_cluster(vm: VM, key: Path, user: str, address: str) -> dict | None:
    """Patroni's GET /cluster from this node's REST API (no auth needed for reads)."""
    url = f"http://{address}:8008/cluster"
    code = (f"import urllib.request; print(urllib.request.urlopen({url!r}, timeout=5)"
            ".read().decode())")
    return _json(vm, key, user, f"python3 -c {shlex.quote(code)}")


def etcd_health(vm: VM, key: Path, user: str, client_urls: list[str]) -> dict[str, dict]:
    """{client URL: {"health": bool, "took": str, "error": str, "leader": bool}} for each
    endpoint that etcdctl reached: health and status in one SSH call, side by side, so a
    dead member's timeout is paid once."""
    flags = f"--dial-timeout=2s --command-timeout=3s --endpoints={','.join(client_urls)}"
    command = (f"t=$(mktemp); etcdctl {flags} endpoint health -w json >$t 2>/dev/null & "
               f"s=$(etcdctl {flags} endpoint status -w json 2>/dev/null); "
               "wait; h=$(cat $t); rm -f $t; "
               'printf \'{"health": %s, "status": %s}\' "${h:-[]}" "${s:-[]}"')
    data = _json(vm, key, user, command) or {}
    out = {item.get("endpoint"): {k: item.get(k) for k in ("health", "took", "error")}
           for item in data.get("health", []) if isinstance(item, dict)}
    for item in data.get("status", []):
        state = item.get("Status", {}) if isinstance(item, dict) else {}
        member = state.get("header", {}).get("member_id")
        if item.get("Endpoint") in out and member is not None:
            out[item["Endpoint"]]["leader"] = member == state.get("leader")
    return out


def etcd_members(vm: VM, key: Path, user: str, client_url: str) -> list[dict] | None:
    """etcd's member list as one member sees it: [{"name", "id", "learner", "client_urls"}];
    None when it did not answer. A member that never started has no name yet."""
    data = _json(vm, key, user, f"etcdctl --dial-timeout=2s --command-timeout=5s "
                                f"--endpoints={client_url} member list -w json 2>/dev/null")
    if not isinstance(data, dict) or not isinstance(data.get("members"), list):
        return None
    return [{"name": m.get("name", ""), "id": str(m.get("ID", "")),
             "learner": bool(m.get("isLearner", False)),
             "client_urls": list(m.get("clientURLs") or [])}
            for m in data["members"] if isinstance(m, dict)]
