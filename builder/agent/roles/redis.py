"""Redis: bound to the node's private address (and loopback), password required, memory
capped so the kernel's OOM killer never picks it.

Settings: `maxmemory_percent` (of MemTotal, default 50: leaves room for the fork of an
AOF rewrite, which copies pages being written).
"""

from __future__ import annotations

from builder.agent import readiness, templating
from builder.agent.errors import AgentError
from builder.agent.paths import Root
from builder.agent.roles import Inputs

ROLE = "redis"
PEER_ROLES = ["redis"]
CONFIG = "/etc/redis/redis.conf"


def mem_total_bytes(root: Root) -> int:
    path = root("/proc/meminfo")
    try:
        for line in path.read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    raise AgentError(f"{path}: no MemTotal line")


def maxmemory(total: int, percent: float) -> str:
    return f"{max(1, int(total * percent / 100) // (1024 * 1024))}mb"


def context(inputs: Inputs) -> dict:
    percent = float(inputs.setting("maxmemory_percent", 50))
    return {"node": inputs.node(), "secrets": inputs.secrets,
            "maxmemory": maxmemory(mem_total_bytes(inputs.root), percent)}


def configure(inputs: Inputs) -> dict:
    ctx = context(inputs)
    text = templating.render(inputs.root, ROLE, "redis.conf.j2", ctx)
    templating.write(inputs.root, CONFIG, text, mode=0o640, owner="redis", group="redis")
    inputs.services.restart("redis-server")
    report = {"files": [CONFIG], "maxmemory": ctx["maxmemory"]}
    if not inputs.services.dry_run:
        report["ready_seconds"] = readiness.wait(
            "redis", readiness.redis_pong(ctx["node"]["address"],
                                          inputs.secrets["redis_password"]),
            timeout=float(inputs.setting("ready_timeout", 60)))
    return report
