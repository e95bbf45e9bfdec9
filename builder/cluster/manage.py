"""`builder cluster up|start|kill|replace|down`: a local HA cluster of VMs booted from the
registered artifacts, each configuring itself from its NoCloud seed alone (the same node
agent and user-data an autoscaling group's instance gets), on a private network.

Every node has a fixed slot (name and address in the environment's CIDR, as static
discovery lists them); `replace` gives the slot a new VM with a new instance-id and an
empty disk, as an autoscaling group replaces an instance, and the node agent on it does
the rest (dead etcd member removed, joins, Patroni clones a replica).
"""

from __future__ import annotations

import contextlib
import ipaddress
import secrets as random
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from builder import spec as specs
from builder.bake import accel, sshkey
from builder.cluster import probe, seed
from builder.cluster.console import ConsoleWatch, exit_cause, leave_report
from builder.cluster.network import Switch
from builder.cluster.state import USER, Cluster, Node, directory, load, locked
from builder.cluster.vm import VM, free_port, mac_address, ssh
from builder.errors import OperationError, UserError
from builder.registry import Registry, default_path
from builder.spec.project import Project, find_project

# Boot order is only the order of `qemu` launches (the agents wait for their peers).
ORDER = ("etcd-patroni", "redis", "saleor-api", "saleor-dashboard", "storefront", "haproxy")
REQUIRED = ("etcd-patroni", "haproxy")
# Node agent settings of a cluster whose guests run under TCG, where a guest on a busy
# host stalls for tens of seconds: Patroni's default ttl (20 s) arms the watchdog at 15 s,
# which then resets a primary that was only starved (seen in the suite: "softdog:
# Initiating system reboot" on a healthy primary while its peers ran their checks). A
# crash then costs up to a minute of write outage instead of ~22 s; KVM keeps the defaults.
# HAProxy's checks get 6 s instead of 2 for the same reason: two late answers from the REST
# API of a primary starved while a peer boots mark it down, and HAProxy then cuts every
# write session through a healthy primary (the suspected cause of a rolling upgrade's
# 1-9 s write gaps, "server closed the connection unexpectedly").
TCG_SETTINGS = {"etcd-patroni": {"patroni_ttl": 60, "patroni_loop_wait": 5,
                                 "patroni_retry_timeout": 15},
                "haproxy": {"check_timeout": 6}}
# Ports the host reaches on 127.0.0.1 (guest port -> a free host port).
FORWARDED = {"haproxy": (5432, 5433, 80, 9000, 8080), "storefront": (3000,)}


def artifact_of(registry: Registry, role: str, image: str | None = None,
                version: str | None = None) -> str | None:
    """The newest tested, unrevoked qemu artifact of the role still on disk; with `image`,
    the one of that name (`<version>-<key>`, the artifact's directory); with `version`, the
    newest of that role version."""
    for art in reversed(registry.list(role, "qemu")):
        on_disk = (Path(art.artifact) / "manifest.json").is_file()
        if art.tests_passed and not art.revoked and on_disk and \
                image in (None, Path(art.artifact).name) and version in (None, art.version):
            return art.artifact
    return None


def pinned(pairs: tuple[str, ...]) -> dict[str, str]:
    """`--version ROLE=VERSION` flags as {role: version}."""
    versions: dict[str, str] = {}
    for pair in pairs:
        role, sep, version = pair.partition("=")
        if not sep or not role or not version:
            raise UserError(f"expected ROLE=VERSION, got {pair!r}", field="--version")
        if role in versions and versions[role] != version:
            raise UserError(f"two versions for {role}: {versions[role]} and {version}",
                            field="--version")
        versions[role] = version
    return versions


def require_role(name: str, roles: dict, field: str) -> None:
    if name not in roles:
        raise UserError(f"unknown role {name!r} (known: {', '.join(sorted(roles))})",
                        field=field)


def missing_image(role: str, *, field: str, image: str | None = None,
                  version: str | None = None) -> UserError:
    """The bad input of a role, image or version the registry holds no tested image of."""
    if version:
        return UserError(f"no tested qemu image of {role} version {version} in the registry "
                         f"(set version: {version} in images/{role}.yaml and run `builder "
                         f"bake {role}`)", field=field)
    if image:
        return UserError(f"no tested qemu image {image} of role {role} in the registry",
                         field=field)
    return UserError(f"no tested qemu image of role {role} in the registry (run `builder "
                     f"bake {role}`)", field=field)


def plan(project: Project, env: specs.Environment, roles: dict[str, specs.RoleSpec],
         only: tuple[str, ...], versions: dict[str, str] | None = None
         ) -> tuple[list[Node], list[str]]:
    """The nodes to boot and the roles left out for want of an artifact; `versions` pins a
    role to its newest image of that version."""
    versions = versions or {}
    for name in only:
        require_role(name, roles, "--role")
    for name in versions:
        require_role(name, roles, "--version")
        if only and name not in only or not env.nodes.get(name):
            raise UserError(f"{name} is not booted in this cluster: its version has no "
                            "node to apply to", field="--version")
    registry = Registry(default_path(project.state))
    network = ipaddress.ip_network(env.network.cidr)
    hosts = list(network.hosts())
    nodes: list[Node] = []
    skipped: list[str] = []
    for role_name in ORDER:
        count = env.nodes.get(role_name, 0)
        if not count or (only and role_name not in only) or role_name not in roles:
            continue
        artifact = artifact_of(registry, role_name, version=versions.get(role_name))
        if artifact is None and role_name in versions:
            raise missing_image(role_name, version=versions[role_name], field="--version")
        if artifact is None:
            if role_name in REQUIRED or role_name in only:
                raise missing_image(role_name, field="--role")
            skipped.append(role_name)
            continue
        qemu = roles[role_name].targets.qemu
        for index in range(1, count + 1):
            # The environment's load made sure the network holds every node.
            slot = specs.FIRST_NODE_HOST + len(nodes)
            name = f"{role_name}-{index}"
            nodes.append(Node(
                name=name, role=role_name, address=str(hosts[slot - 1]),
                instance_id=_instance_id(), artifact=artifact, ssh_port=0,
                macs=[mac_address(env.name, name, "mgmt"), mac_address(env.name, name, "cluster")],
                memory=qemu.memory, cpus=qemu.cpus))
    return nodes, skipped


def _instance_id() -> str:
    return f"i-{random.token_hex(8)}"


def boot_settings(accel: str, role: str) -> dict:
    """The node agent's settings for a node of `role` booted with `accel`."""
    return dict(TCG_SETTINGS.get(role, {})) if accel == "tcg" else {}


def _write_seed(cluster: Cluster, node: Node, project: Project,
                roles: dict[str, specs.RoleSpec], env: specs.Environment) -> None:
    role = roles[node.role]
    values = cluster.secrets()
    user_data = seed.user_data(role, env, project, peers=cluster.peers(),
                               secrets={n: values[n] for n in role.secrets},
                               ssh_keys=[cluster.key.with_suffix(".pub").read_text().strip()],
                               settings=boot_settings(cluster.accel, node.role))
    prefix = ipaddress.ip_network(cluster.cidr).prefixlen
    seed_dir = cluster.node_dir(node) / "seed"
    shutil.rmtree(seed_dir, ignore_errors=True)
    seed.write_iso(seed_dir, {
        "user-data": user_data,
        "meta-data": seed.meta_data(node.instance_id, node.name, node.address),
        "network-config": seed.network_config(node.macs[0], node.macs[1], node.address, prefix),
    })


def resolve(env_name: str | None) -> tuple[Project, str]:
    """The project and the environment's name (an environment file names itself)."""
    project = find_project()
    name = env_name or "local"
    if "/" in name or name.endswith((".yaml", ".yml")):
        name = specs.load_environment(name, project, specs.load_roles(project)).name
    return project, name


def context(env_name: str | None):
    """The project, its role specs and the loaded environment."""
    project = find_project()
    roles = specs.load_roles(project)
    env = specs.load_environment(env_name or "local", project, roles)
    return project, roles, env


# Asked over SSH anyway this often, for an image whose agent announces nothing (older than
# the announcement) or a console line lost.
UNANNOUNCED_POLL = 30.0


def wait_ready(cluster: Cluster, nodes: list[Node], started: dict[str, float],
               timeout: float, resets: dict[str, list[str]] | None = None) -> dict[str, float]:
    """Seconds from power-on to the agent's `ready` per node; the first failure raises.
    A node is asked over SSH once its console announces a settled boot (or every
    UNANNOUNCED_POLL s): each login costs a TCG guest seconds of CPU it needs to boot.
    A guest that resets while booting is powered on once more (`resets` collects why)."""
    resets = {} if resets is None else resets
    pending = {n.name: n for n in nodes}
    watches = {n.name: ConsoleWatch(cluster.vm(n).console, n.instance_id) for n in nodes}
    asked_at = {n.name: time.monotonic() for n in nodes}
    ready: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        while pending:
            for node in pending.values():
                if _rebooted(cluster, node, resets):
                    watches[node.name] = ConsoleWatch(cluster.vm(node).console,
                                                      node.instance_id)
            now = time.monotonic()
            due = [node for name, node in pending.items()
                   if watches[name].poll() or now - asked_at[name] >= UNANNOUNCED_POLL]
            asked = list(pool.map(
                lambda node: probe.agent_report(cluster.vm(node), cluster.key, USER), due))
            for node, report in zip(due, asked, strict=True):
                asked_at[node.name] = time.monotonic()
                if _settled(node.name, report):
                    ready[node.name] = round(time.monotonic() - started[node.name], 1)
                    del pending[node.name]
            if pending and time.monotonic() > deadline:
                raise OperationError(f"not ready after {timeout:.0f} s: {', '.join(pending)} "
                                     f"(consoles under {cluster.directory / 'nodes'})")
            if pending:
                time.sleep(2)
    return ready


# Resets a booting guest survives: a watchdog on a starved TCG host or a kernel panic ends
# QEMU (-no-reboot), where a cloud instance would boot again with the same disk, and the
# agent resumes a rebooted node (etcd's data directory, Patroni's own state). A second
# reset, or a power-off, fails the boot.
RESETS_ALLOWED = 1


def _rebooted(cluster: Cluster, node: Node, resets: dict[str, list[str]]) -> bool:
    """False while the node's VM runs; True once a reset VM was powered on again."""
    vm = cluster.vm(node)
    if vm.running():
        return False
    kind, line = exit_cause(vm.console)
    seen = resets.setdefault(node.name, [])
    if kind == "power-off" or len(seen) >= RESETS_ALLOWED:
        ended = "powered off" if kind == "power-off" else f"ended ({kind})"
        again = f" after {len(seen)} reset(s)" if seen else ""
        raise OperationError(f"{node.name}: VM {ended} while booting{again}: {line} "
                             f"(see {vm.console})")
    kept = vm.console.with_name(f"console.reset-{len(seen) + 1}.log")
    shutil.copyfile(vm.console, kept)
    seen.append(line)
    print(f"builder: {node.name}: guest {kind} while booting ({line}): powered on once "
          f"more with its disk as it was; the first boot's console is {kept}",
          file=sys.stderr, flush=True)
    vm.start()
    return True


def _settled(name: str, report: dict | None) -> bool:
    """Whether a node's agent is done (ready); a failed or unconfigured agent raises."""
    if not report:
        return False
    if report.get("state") == "failed":
        raise OperationError(f"{name}: node agent failed: {report.get('error')}")
    if report.get("state") == "unconfigured":
        raise OperationError(f"{name}: booted without its node configuration")
    return report.get("state") == "ready"


def _power_on(cluster: Cluster, nodes: list[Node]) -> dict[str, float]:
    started = {}
    for node in nodes:
        cluster.vm(node).start()
        started[node.name] = time.monotonic()
    return started


def up(env_name: str | None, only: tuple[str, ...], timeout: float, keep: bool,
       versions: dict[str, str] | None = None) -> dict:
    project, roles, env = context(env_name)
    if env.discovery.method != "static":
        raise UserError(f"environment {env.name} discovers peers by {env.discovery.method}; "
                        "a local cluster needs static discovery", field="discovery.method")
    nodes, skipped = plan(project, env, roles, only, versions)
    with locked(project.state, env.name):
        where = directory(project.state, env.name)
        if (where / "cluster.json").exists():
            raise UserError(f"cluster {env.name} is already up in {where} (`builder cluster "
                            f"down --env {env.name}` first)", field="--env")
        shutil.rmtree(where, ignore_errors=True)  # leftovers of a crashed `up`
        where.mkdir(parents=True)
        first = Path(nodes[0].artifact)
        cluster = Cluster(where, env.name, env.cluster_name, env.network.cidr,
                          accel.choose(project.state, str(first / "vmlinuz"),
                                       str(first / "initrd.img")), nodes)
        try:
            sshkey.generate(cluster.key, f"builder-cluster-{env.name}")
            cluster.make_secrets({s for n in nodes for s in roles[n.role].secrets})
            cluster.switch.start()
            for node in nodes:
                node.ssh_port = free_port()
                node.forwards = {port: free_port() for port in FORWARDED.get(node.role, ())}
                _write_seed(cluster, node, project, roles, env)
            cluster.save()
            started = _power_on(cluster, nodes)
            resets: dict[str, list[str]] = {}
            ready = wait_ready(cluster, nodes, started, timeout, resets)
        except OperationError as exc:
            if keep:
                raise
            kept = keep_consoles(where, project.state / "logs", env.name)
            _teardown(where)
            raise OperationError(f"{exc}; consoles kept in {kept}") from exc
        except BaseException:
            if not keep:
                _teardown(where)
            raise
    return {"env": env.name, "cluster": env.cluster_name, "directory": str(where),
            "ready_seconds": ready, "skipped_roles": skipped,
            "resets": {name: causes for name, causes in resets.items() if causes},
            "nodes": [{"name": n.name, "role": n.role, "address": n.address} for n in nodes]}


def keep_consoles(where: Path, logs: Path, env_name: str) -> Path:
    """Copy every node's serial console out of a cluster directory about to be removed:
    the only record of why a guest died or never got ready."""
    kept = logs / f"cluster-{env_name}-{time.strftime('%Y%m%dT%H%M%S')}"
    kept.mkdir(parents=True, exist_ok=True)
    for console in sorted(where.glob("nodes/*/console*.log")):
        shutil.copyfile(console, kept / f"{console.parent.name}.{console.name}")
    return kept


def _teardown(where: Path) -> list[str]:
    """Power off every VM whose pid file is under `where`, stop the switch, remove it all."""
    stopped = []
    for pidfile in sorted(where.glob("nodes/*/qemu.pid")):
        vm = VM(pidfile.parent.name, Path(), pidfile.parent, Path())
        if vm.stop():
            stopped.append(vm.name)
    Switch(where).stop()
    shutil.rmtree(where, ignore_errors=True)
    return stopped


def down(env_name: str | None) -> dict:
    project, env = resolve(env_name)
    with locked(project.state, env):
        where = directory(project.state, env)
        existed = where.exists()
        stopped = _teardown(where) if existed else []
    return {"env": env, "existed": existed, "stopped": stopped}


def kill(env_name: str | None, name: str) -> dict:
    project, env = resolve(env_name)
    # Locked like every other power change: a kill inside an upgrade or replace breaks it.
    with locked(project.state, env):
        cluster = load(project.state, env)
        was_running = cluster.vm(cluster.node(name)).kill()
    return {"node": name, "killed": was_running, "at": time.time()}


# A graceful leave may take a switchover (builder/agent/leave.py) before the power-off.
# The graceful leave's unit may take 300 s to stop (builder-graceful-leave.service), then
# the rest of the power-off.
STOP_TIMEOUT = 420.0


def stop(env_name: str | None, name: str, timeout: float = STOP_TIMEOUT) -> dict:
    """Graceful power-off of NODE from inside (`systemctl poweroff`, as an autoscaling
    group's termination or an operator's shutdown): its units stop in order, and an
    etcd-patroni node leaves the cluster first. Waits until its VM is off."""
    project, env = resolve(env_name)
    with locked(project.state, env):
        cluster = load(project.state, env)
        return stop_node(cluster, cluster.node(name), timeout)


def stop_node(cluster: Cluster, node: Node, timeout: float = STOP_TIMEOUT) -> dict:
    """`stop` of one node of a loaded cluster (the caller holds the lock, if it needs one)."""
    vm = cluster.vm(node)
    if not vm.running():
        raise UserError(f"node {node.name} is not running", field="NODE")
    started = time.monotonic()
    # The session ends with the power-off: its exit status says nothing, the VM's end does.
    with contextlib.suppress(subprocess.TimeoutExpired):
        ssh(vm, cluster.key, USER, "sudo systemctl poweroff", timeout=60)
    while vm.running():
        if time.monotonic() - started > timeout:
            vm.kill()
            raise OperationError(f"{node.name}: not off {timeout:.0f} s after `systemctl "
                                 f"poweroff`: powered off hard (see {vm.console})")
        time.sleep(1)
    return {"node": node.name, "stopped": True,
            "seconds": round(time.monotonic() - started, 1), "leave": leave_report(vm.console)}


def start(env_name: str | None, name: str, timeout: float) -> dict:
    """Power a stopped node on again with its disk as it was (a host coming back)."""
    project, env = resolve(env_name)
    cluster = load(project.state, env)
    with locked(project.state, cluster.env):
        node = cluster.node(name)
        if cluster.vm(node).running():
            raise UserError(f"node {name} is running", field="NODE")
        started = _power_on(cluster, [node])
        ready = wait_ready(cluster, [node], started, timeout)
    return {"node": name, "ready_seconds": ready[name]}


def replace(env_name: str | None, name: str, timeout: float, image: str | None = None) -> dict:
    """A new instance in the node's slot: new instance-id, empty disk, same role; booted
    from `image` when given (an image swap or a rollback), else from the image the node
    ran, as an autoscaling group replaces a dead instance from its launch template (a newer
    image reaches a running cluster only by `--image` or `cluster upgrade`)."""
    project, roles, env = context(env_name)
    cluster = load(project.state, env.name)
    with locked(project.state, cluster.env):
        node = cluster.node(name)
        chosen = None
        if image:
            chosen = artifact_of(Registry(default_path(project.state)), node.role, image)
            if chosen is None:
                raise missing_image(node.role, image=image, field="--image")
        elif not (Path(node.artifact) / "manifest.json").is_file():
            raise OperationError(f"{name}'s image {node.image} is no longer on disk: give "
                                 "the one to boot with --image")
        return replace_node(cluster, node, project, roles, env, timeout, chosen)


def replace_node(cluster: Cluster, node: Node, project: Project,
                 roles: dict[str, specs.RoleSpec], env: specs.Environment, timeout: float,
                 artifact: str | None) -> dict:
    """`replace` of one node of a loaded cluster, booted from `artifact` (None: the one it
    had); the caller holds the cluster's lock."""
    old = node.instance_id
    vm = cluster.vm(node)
    vm.kill()
    vm.disk.unlink(missing_ok=True)
    node.instance_id = _instance_id()
    node.generation += 1
    node.artifact = artifact or node.artifact
    _write_seed(cluster, node, project, roles, env)
    cluster.save()
    started = _power_on(cluster, [node])
    ready = wait_ready(cluster, [node], started, timeout)
    return {"node": node.name, "replaced": old, "instance_id": node.instance_id,
            "image": node.image, "ready_seconds": ready[node.name]}
