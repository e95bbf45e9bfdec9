"""What a local cluster is made of, kept on disk so every `builder cluster` command (a new
process each time) finds the same VMs: <state>/cluster/<env>/

    cluster.json      nodes (name, role, address, MACs, forwards, artifact, instance-id),
                      and per role the last `cluster upgrade` (from, to, status)
    secrets.json      the generated secret values (0600; they reach VMs only in seeds)
    operator, .pub    the SSH key of the default user `debian` on every node
    switch/           the vde_switch of the cluster network
    nodes/<name>/     disk overlay, seed ISO, console log, QEMU pid file
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import secrets as secret_values
import subprocess
from pathlib import Path

from builder.cluster.network import Switch
from builder.cluster.vm import VM
from builder.errors import OperationError, UserError

USER = "debian"  # the default user cloud-init creates; the operator key is its only login


@dataclasses.dataclass
class Node:
    name: str
    role: str
    address: str
    instance_id: str
    artifact: str
    ssh_port: int
    macs: list[str]
    memory: int
    cpus: int
    forwards: dict[int, int] = dataclasses.field(default_factory=dict)  # guest -> host
    generation: int = 1

    @classmethod
    def from_json(cls, data: dict) -> Node:
        data = dict(data)
        data["forwards"] = {int(k): int(v) for k, v in data.get("forwards", {}).items()}
        return cls(**data)

    @property
    def image(self) -> str:
        """The artifact's name, `<version>-<key>` (what `--image` takes)."""
        return Path(self.artifact).name

    def version(self) -> str | None:
        return artifact_version(self.artifact)


def artifact_version(artifact: str) -> str | None:
    """The role version an image was baked as (its manifest), if the manifest is there."""
    try:
        return json.loads((Path(artifact) / "manifest.json").read_text())["version"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


@dataclasses.dataclass
class Cluster:
    directory: Path
    env: str
    name: str
    cidr: str
    accel: str
    nodes: list[Node] = dataclasses.field(default_factory=list)
    # role -> the last `cluster upgrade` of it (builder/cluster/upgrade.py): kept here so a
    # resume and `--rollback` know where the nodes came from.
    rollouts: dict[str, dict] = dataclasses.field(default_factory=dict)

    @property
    def file(self) -> Path:
        return self.directory / "cluster.json"

    @property
    def key(self) -> Path:
        return self.directory / "operator"

    @property
    def switch(self) -> Switch:
        return Switch(self.directory)

    def node_dir(self, node: Node) -> Path:
        return self.directory / "nodes" / node.name

    def node(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise UserError(f"no node {name!r} in cluster {self.env} (nodes: "
                        f"{', '.join(n.name for n in self.nodes)})", field="NODE")

    def vm(self, node: Node) -> VM:
        return VM(node.name, Path(node.artifact), self.node_dir(node),
                  self.node_dir(node) / "seed" / "seed.iso", memory=node.memory,
                  cpus=node.cpus, accel=self.accel, ssh_port=node.ssh_port,
                  forwards=node.forwards, switch=self.switch.socket_dir,
                  macs=tuple(node.macs))

    def peers(self) -> dict[str, list[dict]]:
        out: dict[str, list[dict]] = {}
        for node in self.nodes:
            out.setdefault(node.role, []).append({"name": node.name, "address": node.address})
        return out

    def save(self) -> None:
        data = {"env": self.env, "name": self.name, "cidr": self.cidr, "accel": self.accel,
                "nodes": [dataclasses.asdict(n) for n in self.nodes], "rollouts": self.rollouts}
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n")
        tmp.replace(self.file)

    def secrets(self) -> dict[str, str]:
        return json.loads((self.directory / "secrets.json").read_text())

    def make_secrets(self, names: set[str]) -> dict[str, str]:
        values = {name: (rsa_private_key() if name.endswith("_rsa_private_key")
                         else secret_values.token_urlsafe(24)) for name in sorted(names)}
        path = self.directory / "secrets.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(values, out)
        return values


def rsa_private_key(bits: int = 2048) -> str:
    """A PEM private key (Saleor signs its JWTs with one), made by openssl on stdout only."""
    try:
        proc = subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt",
                               f"rsa_keygen_bits:{bits}"], capture_output=True, text=True,
                              check=True, timeout=60)
    except (OSError, subprocess.SubprocessError) as exc:
        raise OperationError(f"openssl could not make an RSA key: {exc}") from None
    return proc.stdout


def directory(state: Path, env: str) -> Path:
    return state / "cluster" / env


def load(state: Path, env: str) -> Cluster:
    path = directory(state, env) / "cluster.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"no local cluster for environment {env} (start one with `builder "
                        f"cluster up --env {env}`)", field="--env") from None
    nodes = [Node.from_json(n) for n in data.pop("nodes")]
    return Cluster(directory(state, env), nodes=nodes, **data)


def artifacts_in_use(state: Path) -> dict[Path, list[str]]:
    """Every artifact a node of a cluster that is up boots from (its resolved path -> the
    `env/node` names): a node's disk is an overlay on the artifact's, which must not change
    under it. A cluster that is down (no cluster.json) uses none."""
    used: dict[Path, list[str]] = {}
    for file in sorted((state / "cluster").glob("*/cluster.json")):
        cluster = load(state, file.parent.name)
        for node in cluster.nodes:
            used.setdefault(Path(node.artifact).resolve(), []).append(
                f"{cluster.env}/{node.name}")
    return used


@contextlib.contextmanager
def locked(state: Path, env: str):
    """One mutating command at a time per cluster (a second one fails at once)."""
    path = directory(state, env).parent / f".{env}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"another `builder cluster` command is changing cluster {env} "
                            "right now", field="--env") from None
        yield
