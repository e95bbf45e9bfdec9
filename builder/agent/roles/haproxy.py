"""HAProxy: routes to the Patroni primary (5432), replicas (5433), Saleor API and dashboard.

Settings (node.yaml `settings`): `bind` (default 0.0.0.0 on qemu, where the host reaches
the VM through QEMU's user network, else the node's private address), `stats_user`
(stats), `replica_max_lag` (bytes a replica may trail and still take reads; 1 MB, the
same bound Patroni uses for failover), `api_host` (Host header of the API health check;
it must be in Saleor's ALLOWED_HOSTS; default localhost), `check_timeout` (s a backend's
health check may take before it counts as failed; 2, and longer where guests stall for
seconds, builder/cluster/manage.py: two slow answers from a starved but healthy primary
would mark it down and cut every session through it).

`builder-peer-refresh.timer` runs `builder-agent refresh` every 30 s: when discovery sees
other backends than the last boot did, the config is rendered again and HAProxy reloads,
so a database or API node that an autoscaling group replaced (new address) is routed to.
"""

from __future__ import annotations

from builder.agent import readiness, templating
from builder.agent.errors import AgentError
from builder.agent.roles import Inputs

ROLE = "haproxy"
PEER_ROLES = ["etcd-patroni", "saleor-api", "saleor-dashboard"]
CONFIG = "/etc/haproxy/haproxy.cfg"
REFRESH_TIMER = "builder-peer-refresh.timer"


def context(inputs: Inputs) -> dict:
    node = inputs.node()
    return {
        "node": node,
        "peers": inputs.peers,
        "bind": inputs.bind(),
        "stats_user": inputs.setting("stats_user", "stats"),
        "secrets": inputs.secrets,
        "replica_max_lag": int(inputs.setting("replica_max_lag", 1048576)),
        "api_host": inputs.setting("api_host", "localhost"),
        "check_timeout": check_timeout(inputs),
    }


def check_timeout(inputs: Inputs) -> int:
    value = inputs.setting("check_timeout", 2)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 30:
        raise AgentError(f"setting check_timeout: expected whole seconds from 1 to 30, "
                         f"got {value!r}")
    return value


def configure(inputs: Inputs) -> dict:
    ctx = context(inputs)
    text = templating.render(inputs.root, ROLE, "haproxy.cfg.j2", ctx)
    # root:haproxy 0640: the stats password is in it, and haproxy reads it after dropping
    # privileges on reload.
    path = templating.write(inputs.root, CONFIG, text, mode=0o640, group="haproxy")
    inputs.services.run("haproxy", "-c", "-q", "-f", str(path))
    inputs.services.reload_or_restart("haproxy")
    # Backends change after boot where replacements get new addresses (aws-tags).
    inputs.services.restart(REFRESH_TIMER)
    report = {"files": [CONFIG], "bind": ctx["bind"],
              "backends": {r: len(inputs.peers.get(r, [])) for r in PEER_ROLES}}
    if inputs.services.dry_run:
        return report
    host = "127.0.0.1" if ctx["bind"] == "0.0.0.0" else ctx["bind"]
    report["ready_seconds"] = readiness.wait(
        "haproxy stats", readiness.http_ok(f"http://{host}:8080/haproxy_stats",
                                           user=ctx["stats_user"],
                                           password=inputs.secrets["haproxy_stats_password"]),
        timeout=float(inputs.setting("ready_timeout", 60)))
    return report
