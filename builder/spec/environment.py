"""Environments (environments/<name>.yaml, or the built-in `local`), loaded into typed,
validated objects."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from pathlib import Path
from typing import Literal

from builder.errors import UserError
from builder.spec.fields import ROLE_NAME, _each, _names_fit, _regions
from builder.spec.project import Project
from builder.spec.roles import RoleSpec
from builder.spec.typed import Source, build, checked, load_yaml

# AWS limits an AMI name to 128 characters.
AMI_NAME_MAX = 128
CONTENT_KEY_IN_AMI_NAME = 12  # the ${substr(var.content_key, 0, 12)} of aws.pkr.hcl.j2

# Nodes get addresses from .10 of the cluster network on (builder.cluster.manage.plan);
# the lower ones are left to gateways and the like, the last one is never used.
FIRST_NODE_HOST = 10
PRIVATE_NETWORKS = tuple(ipaddress.IPv4Network(n)
                         for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16"))


def _cidr(value: str) -> None:
    try:
        network = ipaddress.ip_network(value)
    except ValueError:
        raise ValueError(f"{value!r} is not a network in CIDR notation") from None
    if not isinstance(network, ipaddress.IPv4Network):
        raise ValueError(f"{value} is IPv6: cluster networks are IPv4")
    # pg_hba and the services' bind rules admit the whole cluster network.
    if not any(network.subnet_of(private) for private in PRIVATE_NETWORKS):
        raise ValueError(f"{value} is not inside a private (RFC 1918) network: 10.0.0.0/8, "
                         "172.16.0.0/12 or 192.168.0.0/16")


def node_capacity(cidr: str) -> int:
    """How many nodes the network holds: its hosts from FIRST_NODE_HOST on, less the last."""
    hosts = ipaddress.IPv4Network(cidr).num_addresses - 2
    return max(0, hosts - FIRST_NODE_HOST)


# RFC 3986 characters less those that quote, escape, comment or expand in the files a mirror
# URL is written to (sources.list, pip.conf, npmrc, a sed script): no ' " ` \\ $ ; # { } or
# whitespace.
URL = re.compile(r"https?://[A-Za-z0-9.:\[\]-]+(/[A-Za-z0-9._~%!&()*+,=:@/?-]*)?")


def _url(value: str | None) -> None:
    if value is None:
        return
    # Checked first, and the value not shown: the password must not reach a log either.
    if re.match(r"[^/]*//[^/]*@", value):
        raise ValueError("credentials (user:password@) in a mirror URL would be baked into "
                         "the image and printed in the bake log: not allowed")
    if not URL.fullmatch(value):
        raise ValueError(f"expected an http(s) URL of letters, digits and -._~%!&()*+,=:@/? "
                         f"only, got {value!r}")


def _tag_key(value: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9 _.:/=+@-]{1,128}", value) or value.startswith("aws:"):
        raise ValueError(f"expected an EC2 tag key (1-128 of letters, digits, spaces and "
                         f"_.:/=+-@, not starting with aws:), got {value!r}")


def _ssm_prefix(value: str) -> None:
    if not re.fullmatch(r"(/[A-Za-z0-9_.-]+)+", value):
        raise ValueError(f"expected an SSM parameter path like /builder (letters, digits and "
                         f"_.-), got {value!r}")


def _channels(values: list[str]) -> None:
    _each(ROLE_NAME, "channel name")(values)
    if len(set(values)) != len(values):
        raise ValueError("channels must be unique")


@dataclasses.dataclass(frozen=True)
class Network:
    cidr: str = checked(_cidr, default="10.20.0.0/24")


@dataclasses.dataclass(frozen=True)
class Discovery:
    method: Literal["static", "aws-tags"] = "static"
    tag_key: str = checked(_tag_key, default="builder:cluster")


@dataclasses.dataclass(frozen=True)
class AwsEnvironment:
    region: str = checked(lambda v: _regions([v]), default="eu-central-1")
    profile: str | None = None
    channels: list[str] = checked(_channels, default_factory=lambda: ["dev", "staging", "prod"])
    ssm_prefix: str = checked(_ssm_prefix, default="/builder")
    ami_regions: list[str] = checked(_regions, default_factory=list)


def _registry_mirrors(values: dict[str, str]) -> None:
    for registry, mirror in values.items():
        if not re.fullmatch(r"[a-z0-9.-]+(:[0-9]+)?", registry):
            raise ValueError(f"{registry!r} is not a registry host[:port]")
        if not re.fullmatch(r"[A-Za-z0-9.-]+(:[0-9]+)?(/[a-z0-9._/-]+)?", mirror):
            raise ValueError(f"mirror of {registry}: expected host[:port][/path], got {mirror!r}")


@dataclasses.dataclass(frozen=True)
class Mirrors:
    """Package mirrors used INSIDE the bake VM (none: the base image's own sources)."""

    apt: str | None = checked(_url, default=None)
    # An HTTP proxy for apt only (apt-cacher-ng, say); from a qemu bake VM the build host
    # is 10.0.2.2.
    apt_proxy: str | None = checked(_url, default=None)
    pip: str | None = checked(_url, default=None)
    npm: str | None = checked(_url, default=None)
    # Container registry mirrors for podman pulls in the bake, e.g. {ghcr.io: "10.0.2.2:5000"}
    # (host[:port][/path], TLS verified: trust a private CA with ca_certificates). Bake-time
    # only: the image keeps no mirror setting.
    registries: dict[str, str] = checked(_registry_mirrors, default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Environment:
    name: str = checked(lambda v: _each(ROLE_NAME, "environment name")([v]))
    cluster_name: str = checked(lambda v: _each(ROLE_NAME, "cluster name")([v]),
                                default="saleor")
    network: Network = dataclasses.field(default_factory=Network)
    nodes: dict[str, int] = dataclasses.field(default_factory=dict)
    discovery: Discovery = dataclasses.field(default_factory=Discovery)
    aws: AwsEnvironment = dataclasses.field(default_factory=AwsEnvironment)
    mirrors: Mirrors = dataclasses.field(default_factory=Mirrors)
    # PEM files trusted inside the bake VM (a corporate TLS-intercepting proxy, say).
    ca_certificates: list[str] = checked(lambda v: [_names_fit(x) for x in v],
                                         default_factory=list)

    path: Path | None = dataclasses.field(default=None, compare=False, init=False)

    def ca_paths(self) -> list[Path]:
        base = self.path.parent if self.path else Path.cwd()
        return [(base / p).resolve() for p in self.ca_certificates]

    def as_data(self) -> dict:
        data = dataclasses.asdict(self)
        data.pop("path")
        return data


LOCAL = {
    "name": "local",
    "cluster_name": "saleor",
    "network": {"cidr": "10.20.0.0/24"},
    "nodes": {"etcd-patroni": 3, "haproxy": 1, "redis": 1, "saleor-api": 2,
              "saleor-dashboard": 1, "storefront": 1},
    "discovery": {"method": "static"},
}


def load_environment(name_or_file: str | None, project: Project,
                     specs: dict[str, RoleSpec]) -> Environment:
    """`local` (built in), a file path, or a name under environments/."""
    if name_or_file in (None, "local"):
        data, lines, shown = LOCAL, {}, "<built-in environment local>"
        path = None
    else:
        path = Path(name_or_file)
        if not path.suffix:
            path = project.environments / f"{name_or_file}.yaml"
        shown = project.display(path)
        if not path.is_file():
            raise UserError("no such environment file", file=shown, field="--env")
        data, lines = load_yaml(path, shown)
    source = Source(shown, lines)
    env = build(Environment, data, source)
    object.__setattr__(env, "path", path)
    _check_nodes(env, specs, project, source)
    _check_ami_names(env, specs, source)
    _check_ca_files(env, source)
    return env


def _check_nodes(env: Environment, specs: dict[str, RoleSpec], project: Project,
                 source: Source) -> None:
    for role, count in env.nodes.items():
        if role not in specs:
            raise source.error(("nodes", role), f"names role {role!r}, which has no spec in "
                               f"{project.display(project.images)}")
        if count < 0:
            raise source.error(("nodes", role), f"node count must be >= 0, got {count}")
    etcd = env.nodes.get("etcd-patroni")
    if etcd is not None and (etcd < 1 or etcd % 2 == 0):
        # An even member count tolerates no more failures than one fewer, and splits evenly.
        raise source.error(("nodes", "etcd-patroni"),
                           f"etcd needs an odd number of members >= 1 (3 or 5 for HA), "
                           f"got {etcd}")
    total, capacity = sum(env.nodes.values()), node_capacity(env.network.cidr)
    if total > capacity:
        raise source.error(("network", "cidr"),
                           f"{env.network.cidr} holds {capacity} nodes (addresses from "
                           f".{FIRST_NODE_HOST} on, the last one kept), the environment has "
                           f"{total}")


def _check_ami_names(env: Environment, specs: dict[str, RoleSpec], source: Source) -> None:
    """<cluster>-<role>-<version>-<12 of the content key> must fit AWS's 128 characters."""
    for spec in specs.values():
        length = len(f"{env.cluster_name}-{spec.role}-{spec.version}-") + CONTENT_KEY_IN_AMI_NAME
        if length > AMI_NAME_MAX:
            raise source.error(("cluster_name",),
                               f"the AMI name of role {spec.role} would be {length} characters "
                               f"(AWS allows {AMI_NAME_MAX}): shorten the cluster name")


def _check_ca_files(env: Environment, source: Source) -> None:
    cas = env.ca_paths()
    if not cas:
        return
    # Imported only now: ~40-60 ms of a CLI run, and most environments list no CA.
    from cryptography import x509

    for i, ca in enumerate(cas):
        if not ca.is_file():
            raise source.error(("ca_certificates", i), f"no such file {ca}")
        try:
            x509.load_pem_x509_certificates(ca.read_bytes())
        except ValueError:
            raise source.error(("ca_certificates", i),
                               f"{ca} is not a PEM certificate (or a bundle of them)") from None
