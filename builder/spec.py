"""Role specs (images/<role>.yaml) and environments, loaded into typed, validated objects."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from pathlib import Path
from typing import Literal

from builder.errors import UserError
from builder.project import Project
from builder.typed import Source, build, checked, load_yaml

ROLE_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+:~*-]+)?$")
UNIT = re.compile(r"^[A-Za-z0-9@_.-]+$")
SIZE = re.compile(r"^[1-9][0-9]*[MG]$")
# registry host[:port] / path, lower case (the OCI distribution spec's repository names).
IMAGE_NAME = re.compile(r"[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+")
TARGETS = ("qemu", "aws")
# AWS's own shapes: eu-central-1, us-gov-west-1; t3.small, m7i-flex.large.
REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]{1,2}")
INSTANCE_TYPE = re.compile(r"[a-z0-9-]+\.[a-z0-9]+")
# AWS limits: an AMI name <= 128 characters, its description <= 255.
AMI_NAME_MAX = 128
AMI_DESCRIPTION_MAX = 255
CONTENT_KEY_IN_AMI_NAME = 12  # the ${substr(var.content_key, 0, 12)} of aws.pkr.hcl.j2


def _semver(value: str) -> None:
    if not re.fullmatch(r"\d+\.\d+\.\d+", value):
        raise ValueError(f"expected a version like 1.2.3, got {value!r}")


def _names_fit(value: str) -> None:
    """A longer file name fails every system call that sees it (ENAMETOOLONG)."""
    if any(len(part.encode()) > 255 for part in Path(value).parts):
        raise ValueError("a file name in the path is longer than 255 bytes")


def _relative(value: str) -> None:
    if value.startswith("/") or ".." in Path(value).parts:
        raise ValueError(f"must be a relative path inside the project, got {value!r}")
    _names_fit(value)


def _absolute(value: str) -> None:
    if not value.startswith("/") or ".." in Path(value).parts:
        raise ValueError(f"must be an absolute path in the image, got {value!r}")
    _names_fit(value)


def _mode(value: str) -> None:
    if not re.fullmatch(r"0[0-7]{3}", value):
        raise ValueError(f"expected an octal mode like \"0644\" (quoted), got {value!r}")


def _each(pattern: re.Pattern, what: str):
    def check(values: list[str]) -> None:
        for value in values:
            if not pattern.fullmatch(value):
                raise ValueError(f"{value!r} is not a valid {what}")
    return check


def _ports(values: list[int]) -> None:
    for port in values:
        if not 0 < port < 65536:
            raise ValueError(f"{port} is not a TCP port")


def _positive(value: int) -> None:
    if value <= 0:
        raise ValueError(f"must be positive, got {value}")


def _size(value: str) -> None:
    if not SIZE.fullmatch(value):
        raise ValueError(f"expected a size like 4G or 512M, got {value!r}")


def _sha256(value: str) -> None:
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", value):
        raise ValueError("expected sha256:<64 hex digits>")


@dataclasses.dataclass(frozen=True)
class BaseImage:
    """What the image is baked from. qemu: a local mmdebstrap base of `suite`, or an official
    cloud image `url` with its `checksum`. aws: the official Debian AMI of `suite`."""

    suite: Literal["trixie", "bookworm"] = "trixie"
    url: str | None = None
    checksum: str | None = checked(_sha256, default=None)

    def __post_init__(self) -> None:
        if (self.url is None) != (self.checksum is None):
            raise ValueError("url and checksum go together")


@dataclasses.dataclass(frozen=True)
class FileSpec:
    src: str = checked(_relative)
    dest: str = checked(_absolute)
    mode: str = checked(_mode, default="0644")


@dataclasses.dataclass(frozen=True)
class ServiceSpec:
    name: str = checked(lambda v: _each(UNIT, "unit name")([v]))
    description: str = ""


def _ami_description(value: str) -> None:
    if len(value) > AMI_DESCRIPTION_MAX:
        raise ValueError(f"{len(value)} characters: AWS allows {AMI_DESCRIPTION_MAX} in an AMI "
                         "description")
    # Packer expands Go templates ({{ .SourceAMI }}, {{ vault ... }}) in AMI descriptions.
    if "{{" in value or "}}" in value:
        raise ValueError("'{{' and '}}' are Packer template syntax: not allowed here")


def _regions(values: list[str]) -> None:
    _each(REGION, "AWS region name (like eu-central-1)")(values)


def _bundle_app(value: str) -> None:
    if value not in ("saleor", "dashboard", "storefront"):
        raise ValueError(f"expected saleor, dashboard or storefront, got {value!r}")


def _bundle_version(value: str | None) -> None:
    if value is not None and not re.fullmatch(r"[0-9][0-9A-Za-z.+-]*", value):
        raise ValueError(f"expected a release like 3.23.28, got {value!r}")


@dataclasses.dataclass(frozen=True)
class BundleSpec:
    """The application bundle (docs/bundles.md) the bake installs from vendor/: the newest
    of `app`, or `version` when pinned."""

    app: str = checked(_bundle_app)
    version: str | None = checked(_bundle_version, default=None)


def _image_name(value: str) -> None:
    if not IMAGE_NAME.fullmatch(value):
        raise ValueError(f"expected a registry/repository name like ghcr.io/saleor/saleor "
                         f"(no tag), got {value!r}")


def _tag(value: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}", value):
        raise ValueError(f"expected an image tag like 3.23.28, got {value!r}")


@dataclasses.dataclass(frozen=True)
class ContainerSpec:
    """An OCI image the bake pulls with podman (through the environment's registry mirror,
    if any) and keeps in the image's storage; the role's units run it, never pulling at boot.
    `digest` pins the content a tag may later stop naming."""

    image: str = checked(_image_name)
    tag: str = checked(_tag)
    digest: str | None = checked(_sha256, default=None)

    @property
    def ref(self) -> str:
        return f"{self.image}:{self.tag}" + (f"@{self.digest}" if self.digest else "")


@dataclasses.dataclass(frozen=True)
class InstallExtras:
    """What one install method adds to the role's packages and files."""

    packages: list[str] = checked(_each(PACKAGE, "Debian package (name or name=version)"),
                                  default_factory=list)
    files: list[FileSpec] = dataclasses.field(default_factory=list)


INSTALL_METHODS = ("bundle", "container")


@dataclasses.dataclass(frozen=True)
class QemuSettings:
    memory: int = checked(_positive, default=1024)
    cpus: int = checked(_positive, default=2)
    disk_size: str = checked(_size, default="4G")


@dataclasses.dataclass(frozen=True)
class AwsSettings:
    instance_type: str = checked(lambda v: _each(INSTANCE_TYPE, "EC2 instance type")([v]),
                                 default="t3.small")
    volume_size: int = checked(_positive, default=8)
    volume_type: Literal["gp3", "gp2", "io2"] = "gp3"
    regions: list[str] = checked(_regions, default_factory=list)


@dataclasses.dataclass(frozen=True)
class TargetSettings:
    qemu: QemuSettings = dataclasses.field(default_factory=QemuSettings)
    aws: AwsSettings = dataclasses.field(default_factory=AwsSettings)


@dataclasses.dataclass(frozen=True)
class RoleSpec:
    role: str = checked(lambda v: _each(ROLE_NAME, "role name")([v]))
    version: str = checked(_semver)
    description: str = checked(_ami_description, default="")
    base: BaseImage = dataclasses.field(default_factory=BaseImage)
    packages: list[str] = checked(_each(PACKAGE, "Debian package (name or name=version)"),
                                  default_factory=list)
    files: list[FileSpec] = dataclasses.field(default_factory=list)
    templates: list[str] = checked(lambda v: [_relative(x) for x in v], default_factory=list)
    scripts: list[str] = checked(lambda v: [_relative(x) for x in v], default_factory=list)
    # Of `scripts`, those that act only on what the role's packages installed: they run in
    # the package layer's chroot too (at native speed), so a bake VM booted from the layer
    # has nothing left for them to do. Idempotent, and able to run offline in a chroot.
    layer_scripts: list[str] = checked(lambda v: [_relative(x) for x in v],
                                       default_factory=list)
    # How the application arrives: from a vendored `bundle`, or as a `container` image.
    # A spec may describe both and choose with `install`; `per_install` adds each method's
    # own packages and files. The loaded spec keeps only the chosen method's parts.
    install: Literal["bundle", "container"] | None = None
    bundle: BundleSpec | None = None
    container: ContainerSpec | None = None
    per_install: dict[str, InstallExtras] = dataclasses.field(default_factory=dict)
    services: list[ServiceSpec] = dataclasses.field(default_factory=list)
    ports: list[int] = checked(_ports, default_factory=list)
    # Names of secrets the role needs at boot (values arrive then, never at bake).
    secrets: list[str] = checked(_each(re.compile(r"^[a-z][a-z0-9_]*$"), "secret name"),
                                 default_factory=list)
    tests: str = checked(_relative, default="")
    targets: TargetSettings = dataclasses.field(default_factory=TargetSettings)

    # Set by the loader, not by the YAML.
    path: Path = dataclasses.field(default=Path(), compare=False, init=False)

    @property
    def package_names(self) -> list[str]:
        return [p.split("=", 1)[0] for p in self.packages]

    def as_data(self) -> dict:
        """The spec as plain data (what the content key and templates see)."""
        data = dataclasses.asdict(self)
        data.pop("path")
        return data


def load_role(path: Path, project: Project) -> RoleSpec:
    shown = project.display(path)
    data, lines = load_yaml(path, shown)
    source = Source(shown, lines)
    if data is None:
        raise UserError("empty spec", file=shown)
    spec = build(RoleSpec, data, source)
    if spec.role != path.stem:
        raise source.error(("role",), f"must match the file name {path.stem!r}, got {spec.role!r}")
    object.__setattr__(spec, "path", path)
    _check_role_files(spec, project, source)
    _choose_install(spec, source)
    return spec


def _choose_install(spec: RoleSpec, source: Source) -> None:
    """Fold the chosen install method into the spec: its extras join packages and files, the
    other method is dropped (it must not reach the content key or the bake)."""
    for method in spec.per_install:
        if method not in INSTALL_METHODS:
            raise source.error(("per_install", method),
                               f"unknown install method (known: {', '.join(INSTALL_METHODS)})")
    method = spec.install
    if method is None:
        given = [m for m in INSTALL_METHODS if getattr(spec, m) is not None]
        if len(given) > 1:
            raise source.error(("install",), "bundle and container both given: choose one")
        if not given:
            if spec.per_install:
                raise source.error(("per_install",), "no bundle or container to install")
            return
        method = given[0]
    if getattr(spec, method) is None:
        raise source.error(("install",), f"is {method!r}, but the spec has no {method} section")
    extras = spec.per_install.get(method, InstallExtras())
    for name, value in (("install", method), ("per_install", {}),
                        ("packages", spec.packages + extras.packages),
                        ("files", spec.files + extras.files)):
        object.__setattr__(spec, name, value)
    for other in INSTALL_METHODS:
        if other != method:
            object.__setattr__(spec, other, None)


def _check_role_files(spec: RoleSpec, project: Project, source: Source) -> None:
    role_dir = project.templates / spec.role
    # Every method's files, not only the chosen one's: switching methods must not find a gap.
    files = [(("files", i, "src"), f) for i, f in enumerate(spec.files)]
    files += [(("per_install", m, "files", i, "src"), f)
              for m, extras in spec.per_install.items() for i, f in enumerate(extras.files)]
    for field, f in files:
        if not (role_dir / f.src).is_file():
            raise source.error(field, f"no such file {project.display(role_dir / f.src)}")
    for key in ("templates", "scripts"):
        for i, name in enumerate(getattr(spec, key)):
            if not (role_dir / name).is_file():
                raise source.error((key, i), f"no such file {project.display(role_dir / name)}")
    for i, name in enumerate(spec.layer_scripts):
        if name not in spec.scripts:
            raise source.error(("layer_scripts", i), f"{name} is not one of the role's scripts")
    if spec.tests and not (project.root / spec.tests).is_dir():
        raise source.error(("tests",), f"no such test suite directory {spec.tests}")


def load_roles(project: Project) -> dict[str, RoleSpec]:
    if not project.images.is_dir():
        raise UserError("no such directory", file=str(project.images), field="--images")
    specs = {}
    for path in sorted(project.images.glob("*.yaml")):
        spec = load_role(path, project)
        specs[spec.role] = spec
    if not specs:
        raise UserError("no role specs (*.yaml) found", file=str(project.images))
    return specs


def select_roles(specs: dict[str, RoleSpec], names: tuple[str, ...] | list[str],
                 all_roles: bool) -> list[RoleSpec]:
    if all_roles and names:
        raise UserError("give role names or --all, not both", field="ROLE")
    if not all_roles and not names:
        raise UserError("name at least one role, or use --all", field="ROLE")
    if all_roles:
        return list(specs.values())
    chosen = []
    for name in names:
        if name not in specs:
            raise UserError(f"unknown role {name!r} (known: {', '.join(specs)})", field="ROLE")
        if specs[name] not in chosen:
            chosen.append(specs[name])
    return chosen


def check_target(target: str) -> str:
    if target not in TARGETS:
        raise UserError(f"unknown target {target!r} (known: {', '.join(TARGETS)})",
                        field="--target")
    return target


# --------------------------------------------------------------------------- environments


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
