"""The boot sequence: identity -> config -> secrets -> discovery -> role -> status file.

Every step is timed; a failure is reported as one line naming the step, in the status file
as well as in the exit status. Discovery and the role's configuration are retried (state
`retrying` in the status file meanwhile) because their failures are often a race with
peers booting at the same time; the steps before them fail at once (bad input).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from builder.agent import config as node_config
from builder.agent import discovery, roles
from builder.agent.errors import AgentError
from builder.agent.metadata import discover as identify
from builder.agent.metadata import nocloud
from builder.agent.paths import Root
from builder.agent.services import Services

ROLE_FILE = "/etc/builder/role.json"
IMAGE_FILE = "/etc/builder/image.json"
STATUS_FILE = "/run/builder/agent.json"
# The discovery and role steps run again after a failure, up to settings.boot_attempts
# times, boot_retry_seconds apart; the status file says `retrying` meanwhile.
ATTEMPTS, RETRY_SECONDS = 3, 15.0


def load_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


class Steps:
    """Named, timed steps; on_step(name) as each begins (the status file says where a slow
    boot is, instead of nothing until it ends)."""

    def __init__(self, report: dict, on_step=lambda name: None):
        self.report = report
        self.timings: dict[str, float] = report.setdefault("timings", {})
        self.current = ""
        self.on_step = on_step

    def run(self, name: str, fn, *args, **kwargs):
        self.current = name
        self.on_step(name)
        started = time.monotonic()
        try:
            return fn(*args, **kwargs)
        finally:
            self.timings[name] = round(time.monotonic() - started, 3)


def boot(root: Root, services: Services, *, discovery_timeout: float = 300.0) -> dict:
    started = time.monotonic()
    report: dict = {"state": "booting", "dry_run_services": services.dry_run}

    def at(step: str) -> None:
        report["step"] = step
        report.pop("progress", None)
        write_status(root, report)

    def progress(done: dict) -> None:
        report["progress"] = done
        write_status(root, report)

    steps = Steps(report, at)
    try:
        identity = steps.run("identity", identify,
                             instance_data=root(nocloud.INSTANCE_DATA))
        report["identity"] = identity.as_dict()
        report["image"] = load_json(root(IMAGE_FILE))
        baked = load_json(root(ROLE_FILE))
        report["role"] = baked.get("role")
        report["configured"] = root(node_config.NODE_FILE).is_file()
        if not report["configured"]:
            report["state"] = "unconfigured"
            report["message"] = (f"no {node_config.NODE_FILE}: this instance was booted "
                                 "without user-data")
            return report
        cfg = steps.run("config", node_config.load, root)
        report.update(cluster=cfg.cluster, environment=cfg.environment, role=cfg.role)
        if baked.get("role") and baked["role"] != cfg.role:
            raise AgentError(f"node.yaml says role {cfg.role} but this image is "
                             f"{baked['role']} ({ROLE_FILE})")
        module = roles.module_for(cfg.role)
        needed = baked.get("secrets", sorted(cfg.secrets))
        secrets = steps.run("secrets", node_config.resolve_secrets, cfg, needed, root,
                            region=identity.region)
        attempts = int(cfg.settings.get("boot_attempts", ATTEMPTS))
        for attempt in range(1, attempts + 1):
            report["attempts"] = attempt
            try:
                peers = steps.run("discovery", discovery.discover, cfg, module.PEER_ROLES,
                                  timeout=discovery_timeout)
                report["peers"] = peers
                inputs = roles.Inputs(identity=identity, config=cfg, peers=peers,
                                      secrets=secrets, root=root, services=services,
                                      progress=progress)
                report["result"] = steps.run("role", module.configure, inputs)
                break
            except Exception as exc:
                if attempt >= attempts:
                    raise
                # Peers booting at the same moment race (two etcd joins, a primary not
                # elected yet): the role steps are safe to run again, so try again.
                report.update(state="retrying", error=f"{steps.current}: {_describe(exc)}")
                write_status(root, report)
                time.sleep(float(cfg.settings.get("boot_retry_seconds", RETRY_SECONDS)))
        report.pop("error", None)
        report.pop("progress", None)
        report["state"] = "ready"
    except Exception as exc:  # the status file must say why a boot died, whatever it was
        report["state"] = "failed"
        report["error"] = f"{steps.current}: {_describe(exc)}"
    finally:
        report["services"] = services.calls
        report["seconds"] = round(time.monotonic() - started, 2)
        write_status(root, report)
    return report


def refresh(root: Root, services: Services) -> dict:
    """Discovery again; when a peer list differs from the last ready boot's, the boot runs
    again (configs rendered anew, services reloaded). An empty list where the boot saw
    peers is refused (an API hiccup must not empty a load balancer)."""
    last = load_json(root(STATUS_FILE))
    if last.get("state") != "ready":
        return {"changed": False, "why": f"the last boot is {last.get('state', 'missing')}"}
    cfg = node_config.load(root)
    module = roles.module_for(cfg.role)
    peers = discovery.discover(cfg, module.PEER_ROLES, timeout=0)
    before = last.get("peers", {})
    if peers == before:
        return {"changed": False}
    emptied = sorted(r for r in module.PEER_ROLES if before.get(r) and not peers.get(r))
    if emptied:
        raise AgentError(f"discovery found no {', '.join(emptied)} peers where the last boot "
                         "saw some: configs kept")
    report = boot(root, services)
    return {"changed": True, "state": report["state"], "error": report.get("error"),
            "before": before, "after": peers}


def _describe(exc: Exception) -> str:
    return str(exc) if isinstance(exc, AgentError) else f"{type(exc).__name__}: {exc}"


def write_status(root: Root, report: dict) -> None:
    path = root(STATUS_FILE)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=2) + "\n")
    tmp.replace(path)
