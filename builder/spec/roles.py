"""Role specs (images/<role>.yaml), loaded into typed, validated objects."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Literal

from builder.errors import UserError
from builder.spec.fields import ROLE_NAME, _each, _names_fit, _regions
from builder.spec.project import Project
from builder.spec.typed import Source, build, checked, load_yaml

PACKAGE = re.compile(r"^[a-z0-9][a-z0-9+.-]+(=[A-Za-z0-9.+:~*-]+)?$")
UNIT = re.compile(r"^[A-Za-z0-9@_.-]+$")
SIZE = re.compile(r"^[1-9][0-9]*[MG]$")
# registry host[:port] / path, lower case (the OCI distribution spec's repository names).
IMAGE_NAME = re.compile(r"[a-z0-9.-]+(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+")
TARGETS = ("qemu", "aws")
# AWS's own shape of an instance type: t3.small, m7i-flex.large.
INSTANCE_TYPE = re.compile(r"[a-z0-9-]+\.[a-z0-9]+")
# AWS limits an AMI description to 255 characters.
AMI_DESCRIPTION_MAX = 255


def _semver(value: str) -> None:
    if not re.fullmatch(r"\d+\.\d+\.\d+", value):
        raise ValueError(f"expected a version like 1.2.3, got {value!r}")


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
