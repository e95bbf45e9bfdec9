"""`builder cluster upgrade ROLE`: a new image version rolled through the running local
cluster one node at a time, in the order the reference operators use (notes/upgrades.md).

etcd-patroni: replicas first, the primary last, one planned switchover. Each node in turn:
a graceful stop (its agent leaves, builder/agent/leave.py: a primary first switches over
to the best streaming replica, all of them upgraded by then; a synchronous standby is
released by Patroni's own shutdown before it stops; then its etcd member is removed), its
slot replaced by a new instance of the target image (new instance-id, empty disk: what
`cluster replace` does), and a wait until etcd's members are exactly the nodes, all
healthy, and the new node streams within MAX_LAG. The plan is made again from a fresh
status before every node, so a rollout that stopped halfway resumes where it was: a node
already on the target image is done.

The decisions (which image, whether the cluster is fit, the order, the rollout record,
the failure line) are pure functions of the status document and the cluster state;
`upgrade` runs them against the cluster.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import time
from pathlib import Path

from builder import spec as specs
from builder.agent.leave import MAX_LAG
from builder.cluster import health, manage
from builder.cluster import status as cluster_status
from builder.cluster.state import Cluster, artifact_version, load, locked
from builder.errors import OperationError, UserError
from builder.progress import Progress
from builder.registry import Registry, default_path
from builder.spec.project import Project

SUPPORTED = (health.DB_ROLE,)
# Fewer and a node's leave keeps its etcd member (no quorum without it), and the
# replacement of a lone node would bootstrap an empty database.
MIN_NODES = 3
READY_INTERVAL = 5.0  # each status is several SSH logins into TCG guests
STOP = "graceful stop"


def check_role(role: str, known: dict) -> None:
    manage.require_role(role, known, "ROLE")
    if role not in SUPPORTED:
        raise UserError(f"cluster upgrade of {role} is not supported yet: only "
                        f"{', '.join(SUPPORTED)} (rolling, replicas first, one switchover)",
                        field="ROLE")


def rollback_image(record: dict | None, role: str) -> str:
    """The image `--rollback` goes to: where the last rollout's nodes came from, or, when
    that rollout was itself an unfinished rollback, its own target (a resume)."""
    if not record or not record.get("from"):
        raise UserError(f"no upgrade of {role} is recorded in this cluster: nothing to roll "
                        "back to", field="--rollback")
    if record.get("rollback") and record.get("status") != "done":
        return record["to"]
    return record["from"]


def choose(registry: Registry, role: str, image: str | None, version: str | None,
           field: str | None = None) -> str:
    """The target artifact; bad input naming the flag when the registry has none."""
    found = manage.artifact_of(registry, role, image, version)
    if found is not None:
        return found
    default = "--version" if version else "--image" if image else "ROLE"
    raise manage.missing_image(role, image=image, version=version,
                               field=field if field and (version or image) else default)


def unfit(status: dict) -> list[str]:
    """Why a rollout must not start (or go on) on this cluster; empty when it may."""
    count = len(health.db_nodes(status))
    found = [] if count >= MIN_NODES else [
        f"{count} {health.DB_ROLE} node(s): a rolling upgrade needs at least {MIN_NODES}"]
    return found + health.problems(status, MAX_LAG)


@dataclasses.dataclass(frozen=True)
class Step:
    node: str
    primary: bool  # its graceful stop is the rollout's one switchover


def plan(status: dict, target: str) -> list[Step]:
    """The nodes still to upgrade, in order: replicas by name, then the primary, whose leave
    hands over to a replica that is upgraded by then. A node on `target` is done."""
    nodes = health.db_nodes(status)
    leaders = {n["name"] for n in health.leaders(status)}
    todo = [name for name in sorted(nodes) if nodes[name].get("image") != target]
    return ([Step(n, False) for n in todo if n not in leaders]
            + [Step(n, True) for n in todo if n in leaders])


def begin(record: dict | None, target: str, images: list[str], rollback: bool,
          now: float) -> dict:
    """The rollout record of this run. Resuming the unfinished rollout to the same target
    keeps where its nodes came from; otherwise they come from the image most of the nodes
    not on the target run now."""
    if record and record.get("to") == target and record.get("status") != "done":
        return {**record, "status": "running"}
    others = [image for image in images if image != target]
    source = collections.Counter(others).most_common(1)[0][0] if others else None
    return {"from": source, "to": target, "rollback": rollback, "status": "running",
            "started_at": now}


def failure(role: str, env: str, node: str, step: str, error: str,
            images: dict[str, str], record: dict) -> str:
    """The one line a failed step ends with: what failed, the versions the cluster is left
    on, and the commands that resume or undo the rollout."""
    flag = "" if env == "local" else f" --env {env}"
    to_image = f"builder cluster upgrade {role} --image {record['to']}{flag}"
    to_rollback = f"builder cluster upgrade {role} --rollback{flag}"
    if record.get("rollback"):
        how = (f"resume the rollback: `{to_rollback}`; forward again: "
               f"`builder cluster upgrade {role} --image {record['from']}{flag}`")
    else:
        how = f"resume: `{to_image}` (upgraded nodes are skipped); roll back: `{to_rollback}`"
    if step != STOP:
        # Its slot already names the target: a resume refuses while the node is not ready.
        how += (f"; if {node} does not come up, first `builder cluster replace {node} "
                f"--image {record['to']}{flag}`")
    text = " ".join(error.split())
    if len(set(images.values())) == 1:
        # The last node's slot already names the target while that node is not ready.
        where = f"every slot names {next(iter(images.values()))}"
    else:
        on = ", ".join(f"{name} {image}" for name, image in sorted(images.items()))
        where = f"the cluster is on mixed versions ({on})"
    return f"{node}: {step} failed: {text}; {where}; {how}"


class StepFailed(Exception):
    def __init__(self, node: str, step: str, error: str):
        super().__init__(f"{node}: {step}: {error}")
        self.node, self.step, self.error = node, step, error


@contextlib.contextmanager
def _step(node: str, step: str):
    try:
        yield
    except (OperationError, UserError, TimeoutError) as exc:
        raise StepFailed(node, step, str(exc)) from exc


@dataclasses.dataclass
class _Run:
    """What every step needs: the loaded cluster (under its lock) and its context."""
    cluster: Cluster
    project: Project
    roles: dict[str, specs.RoleSpec]
    env: specs.Environment
    target: str
    timeout: float
    progress: Progress

    def status(self) -> dict:
        return cluster_status.status(self.cluster.env)


def _roll(run: _Run, step: Step) -> tuple[dict, dict]:
    """One node upgraded: its result, and the fresh status once the cluster is fit again."""
    node = run.cluster.node(step.node)
    out = {"node": node.name, "primary": step.primary, "old_image": node.image,
           "old_version": node.version(), "old_instance_id": node.instance_id}
    say = run.progress.say
    run.progress.stage(f"{node.name}: graceful stop" + (
        " (the primary: its leave switches over to an upgraded replica)" if step.primary
        else ""))
    with _step(node.name, STOP):
        stopped = manage.stop_node(run.cluster, node)
    leave = stopped.get("leave") or {}
    out.update(stop_seconds=stopped["seconds"], leave=leave)
    say(f"{node.name}: off in {stopped['seconds']:.1f} s (switchover: "
        f"{leave.get('switchover', '-')}, etcd: {leave.get('etcd', 'no leave report')})")
    run.progress.stage(f"{node.name}: boot from {Path(run.target).name}")
    booted = time.monotonic()
    with _step(node.name, "boot of the replacement"):
        replaced = manage.replace_node(run.cluster, node, run.project, run.roles, run.env,
                                       run.timeout, run.target)
    say(f"{node.name}: new instance {replaced['instance_id']}, agent ready in "
        f"{replaced['ready_seconds']:.1f} s")
    run.progress.stage(f"{node.name}: wait for etcd and streaming")
    with _step(node.name, "wait for etcd and streaming"):
        status, _ = health.wait_for(run.status, unfit, "cluster not fit", run.timeout,
                                    READY_INTERVAL)
    run.progress.finish()
    out.update(new_image=node.image, new_version=node.version(),
               new_instance_id=node.instance_id,
               agent_ready_seconds=replaced["ready_seconds"],
               ready_seconds=round(time.monotonic() - booted, 1))
    say(f"{node.name}: on {node.image}, streaming with etcd whole, "
        f"{out['ready_seconds']:.1f} s after its boot")
    return out, status


def _switchover(run: _Run, result: dict) -> dict:
    leave = result["leave"]
    to = leave.get("candidate")
    done = {"from": result["node"], "to": to, "outcome": leave.get("switchover"),
            "seconds": leave.get("seconds"),
            "to_image": run.cluster.node(to).image if to else None}
    if done["outcome"] != "done":
        run.progress.say(f"WARNING: {result['node']}: switchover {done['outcome']}: the "
                         "primary moved by failover")
    return done


def upgrade(env_name: str | None, role: str, image: str | None, version: str | None,
            rollback: bool, timeout: float, progress: Progress | None = None) -> dict:
    project, roles, env = manage.context(env_name)
    check_role(role, roles)
    if rollback and (image or version):
        raise UserError("--rollback returns to the image recorded before the last upgrade: "
                        "give it without --image or --version", field="--rollback")
    if image and version:
        raise UserError("give --image or --version, not both", field="--version")
    progress = progress or Progress(f"upgrade {role}: ")
    registry = Registry(default_path(project.state))
    started = time.monotonic()
    with locked(project.state, env.name):
        cluster = load(project.state, env.name)
        record = cluster.rollouts.get(role)
        target = (choose(registry, role, rollback_image(record, role), None, "--rollback")
                  if rollback else choose(registry, role, image, version))
        run = _Run(cluster, project, roles, env, target, timeout, progress)
        mine = [n for n in cluster.nodes if n.role == role]
        result = {"role": role, "env": env.name, "to": Path(target).name,
                  "to_version": artifact_version(target), "rollback": rollback, "nodes": [],
                  "skipped": [n.name for n in mine if n.image == Path(target).name],
                  "switchover": None, "switchovers": []}
        if all(n.image == result["to"] for n in mine):
            if record and record.get("to") == result["to"]:
                cluster.rollouts[role] = {**record, "status": "done"}
                cluster.save()
            progress.say(f"every {role} node already runs {result['to']}: nothing to do")
            return {**result, "from": None, "seconds": 0.0}
        status = run.status()
        problems = unfit(status)
        if problems:
            raise OperationError(f"cluster {env.name} is not healthy, not upgrading: "
                                 + "; ".join(problems))
        record = begin(record, result["to"], [n.image for n in mine], rollback, time.time())
        cluster.rollouts[role] = record
        cluster.save()
        steps = plan(status, result["to"])
        progress.say("plan: " + ", then ".join(
            s.node + (" (primary: switchover)" if s.primary else "") for s in steps)
            + (f"; already on {result['to']}: {', '.join(result['skipped'])}"
               if result["skipped"] else ""))
        while steps:
            try:
                done, status = _roll(run, steps[0])
            except StepFailed as exc:
                record.update(status="failed", failed={"node": exc.node, "step": exc.step,
                                                       "error": exc.error})
                cluster.save()
                raise OperationError(failure(role, env.name, exc.node, exc.step, exc.error,
                                             {n.name: n.image for n in mine}, record)
                                     ) from None
            result["nodes"].append(done)
            # Every leave that found its node leading handed over: the primary's, planned,
            # and any replica that became the leader since the plan (which would be a
            # second switchover, and shows here).
            if done["leave"].get("primary"):
                result["switchovers"].append(_switchover(run, done))
            if steps[0].primary:
                result["switchover"] = (result["switchovers"] or [None])[-1]
            steps = plan(status, result["to"])
        record.update(status="done", finished_at=time.time())
        record.pop("failed", None)
        cluster.save()
    result.update({"from": record["from"], "seconds": round(time.monotonic() - started, 1)})
    progress.say(f"done in {result['seconds']:.0f} s: every {role} node on {result['to']}, "
                 + (f"one switchover ({result['switchover']['from']} -> "
                    f"{result['switchover']['to']})" if result["switchover"]
                    else "no switchover (the primary was already on it)"))
    return result
