"""This node's boot configuration, /etc/builder/node.yaml, and its secrets.

cloud-init writes node.yaml from the user-data (cloud-init/node.yaml.j2), root 0600:

    cluster: saleor                  # names the cluster: Patroni scope, etcd token, tags
    environment: local
    role: etcd-patroni               # must be the role baked into this image
    target: qemu                     # qemu | aws
    network: {cidr: 10.20.0.0/24}    # the only network pg_hba and friends admit
    nodes: {etcd-patroni: 3, ...}    # how many of each role the environment runs
    discovery:
      method: static                 # static | aws-tags
      peers:                         # static only; `builder cluster up` writes it into the
        etcd-patroni:                # NoCloud seed, never into packer/
          - {name: etcd-patroni-0, address: 10.20.0.11}
      tag_key: builder:cluster       # aws-tags only
      region: eu-central-1           # aws-tags only
    secrets:                         # references only, never values
      redis_password: {user-data: redis_password}            # local
      redis_password: {ssm: /builder/prod/secrets/redis_password}   # aws
    settings: {}                     # optional per-role knobs (see builder/agent/roles/*)

`user-data: NAME` reads NAME from /etc/builder/secrets.yaml, a flat mapping of name to
value that cloud-init writes root 0600 from the NoCloud seed of a local cluster. `ssm:
/path` reads a SecureString from SSM Parameter Store (boto3, imported only then).
"""

from __future__ import annotations

import dataclasses

import yaml

from builder.agent.errors import AgentError
from builder.agent.paths import Root

NODE_FILE = "/etc/builder/node.yaml"
SECRETS_FILE = "/etc/builder/secrets.yaml"
METHODS = ("static", "aws-tags")


@dataclasses.dataclass(frozen=True)
class NodeConfig:
    cluster: str
    environment: str
    role: str
    cidr: str
    discovery: dict
    secrets: dict[str, dict]
    target: str = "qemu"
    nodes: dict[str, int] = dataclasses.field(default_factory=dict)
    settings: dict = dataclasses.field(default_factory=dict)

    @property
    def method(self) -> str:
        return self.discovery["method"]


def _read_yaml(path, what: str) -> dict:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise AgentError(f"{path}: cannot read {what} ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise AgentError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise AgentError(f"{path}: {what} must be a mapping")
    return data


def load(root: Root) -> NodeConfig:
    path = root(NODE_FILE)
    data = _read_yaml(path, "the node configuration")

    def need(value, field: str, kind=str):
        if not isinstance(value, kind) or (kind is str and not value):
            raise AgentError(f"{path}: field {field} is missing or not a {kind.__name__}")
        return value

    discovery = need(data.get("discovery"), "discovery", dict)
    if discovery.get("method") not in METHODS:
        raise AgentError(f"{path}: field discovery.method must be one of {', '.join(METHODS)}")
    secrets = data.get("secrets") or {}
    need(secrets, "secrets", dict)
    for name, ref in secrets.items():
        if not (isinstance(ref, dict) and len(ref) == 1 and set(ref) <= {"user-data", "ssm"}):
            raise AgentError(f"{path}: field secrets.{name} must be {{user-data: NAME}} "
                             "or {ssm: /path}")
    return NodeConfig(
        cluster=need(data.get("cluster"), "cluster"),
        environment=need(data.get("environment"), "environment"),
        role=need(data.get("role"), "role"),
        cidr=need((data.get("network") or {}).get("cidr"), "network.cidr"),
        discovery=discovery,
        secrets=secrets,
        target=data.get("target") or "qemu",
        nodes=data.get("nodes") or {},
        settings=need(data.get("settings") or {}, "settings", dict),
    )


def resolve_secrets(config: NodeConfig, needed: list[str], root: Root, *,
                    ssm_client=None, region: str | None = None) -> dict[str, str]:
    """Values of the `needed` secrets; one AgentError naming every one that is missing."""
    unreferenced = [name for name in needed if name not in config.secrets]
    if unreferenced:
        raise AgentError(f"{root(NODE_FILE)}: no reference for secret(s) "
                         f"{', '.join(unreferenced)} under secrets")
    values: dict[str, str] = {}
    missing: list[str] = []
    local: dict | None = None
    for name in needed:
        ref = config.secrets[name]
        if "user-data" in ref:
            if local is None:
                path = root(SECRETS_FILE)
                local = _read_yaml(path, "the secrets") if path.exists() else {}
            value = local.get(ref["user-data"])
            if value is None or value == "":
                missing.append(f"{name} (key {ref['user-data']!r} of {root(SECRETS_FILE)})")
                continue
        else:
            if ssm_client is None:
                ssm_client = _ssm(region or config.discovery.get("region"))
            value = _from_ssm(ssm_client, ref["ssm"])
            if value is None:
                missing.append(f"{name} (SSM parameter {ref['ssm']})")
                continue
        values[name] = str(value)
    if missing:
        raise AgentError(f"secret(s) not provided: {'; '.join(missing)}")
    return values


def _ssm(region: str | None):
    import boto3
    from botocore.config import Config

    return boto3.client("ssm", region_name=region,
                        config=Config(retries={"mode": "standard", "max_attempts": 6}))


def _from_ssm(client, name: str) -> str | None:
    try:
        return client.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    except client.exceptions.ParameterNotFound:
        return None
