"""One role rendered into its directory: the templates' context, its application bundle,
the files copied in (role files, the node agent, CA certificates), and the content key of
what it would bake."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import jinja2

from builder.bake import base as bases
from builder.bake import layer, packer
from builder.errors import UserError
from builder.gate import samplebundle
from builder.render import contentkey
from builder.render.templates import render_template
from builder.spec import Environment, RoleSpec
from builder.spec.project import PACKAGE_DIR, Project
from builder.vendoring import bundles

BAKE_USERS = {"qemu": "builder-bake", "aws": "admin"}
AGENT_SOURCES = ("__init__.py", "agent")


@dataclasses.dataclass
class Rendered:
    role: RoleSpec
    target: str
    directory: Path
    content_key: str

    @property
    def hcl(self) -> Path:
        return self.directory / f"{self.role.role}.pkr.hcl"

    def as_json(self) -> dict:
        return {"role": self.role.role, "version": self.role.version, "target": self.target,
                "directory": str(self.directory), "content_key": self.content_key}


def context_for(role: RoleSpec, target: str, env: Environment) -> dict:
    ver = packer.target_version()
    return {
        "role": role.as_data(),
        "target": target,
        "env": env.as_data(),
        "mirrors": dataclasses.asdict(env.mirrors),
        "ca_files": [f"{i:02d}-{p.stem}.crt" for i, p in enumerate(env.ca_paths())],
        "bake_user": BAKE_USERS[target],
        "packer": {"version": packer.version_string(ver), "plugins": packer.has_plugins(ver)},
        "aws_source": {"name": AWS_AMI_NAMES[role.base.suite], "owner": DEBIAN_AMI_OWNER},
        "agent_packages": AGENT_PACKAGES[target],
    }


# What the node agent itself imports on a target, beyond the base's Python: on AWS, boto3
# for tag discovery, SSM secrets and the lifecycle hook (Debian's AMI has no boto3).
AGENT_PACKAGES = {"qemu": [], "aws": ["python3-boto3"]}
DEBIAN_AMI_OWNER = "136693071363"
AWS_AMI_NAMES = {"trixie": "debian-13-amd64-*", "bookworm": "debian-12-amd64-*"}


def user_data_template(project: Project, role: str) -> str:
    own = project.cloud_init / f"{role}.yaml.j2"
    return own.name if own.is_file() else "node.yaml.j2"


def _find_bundle(role: RoleSpec, project: Project) -> tuple[bundles.Bundle | None, str]:
    """The role's bundle in vendor/ (None if absent) and, for absence, why in one line."""
    vendor = bundles.vendor_dir(project)
    app, version = role.bundle.app, role.bundle.version
    why = (f"no {app} bundle{' ' + version if version else ''} in {project.display(vendor)}/ "
           f"(make one with `builder vendor {app} --version V` on a machine with internet; "
           "docs/bundles.md)")
    return bundles.find(vendor, app, version), why


def missing_bundle(role: RoleSpec, project: Project) -> str | None:
    """Why the role cannot be rendered for want of its bundle, or None."""
    if role.bundle is None:
        return None
    found, why = _find_bundle(role, project)
    return None if found else why


def bundle_for(role: RoleSpec, project: Project,
               samples: Path | None = None) -> bundles.Bundle | None:
    """The verified application bundle the role installs (None for roles without one). With
    `samples` (a scratch directory; `validate` only), a role whose bundle is not in vendor/
    gets a sample bundle made there instead of an error."""
    if role.bundle is None:
        return None
    found, why = _find_bundle(role, project)
    if found is None and samples is not None:
        found = samplebundle.write(role, samples)
    if found is None:
        raise UserError(why, file=project.display(role.path), field="bundle")
    return bundles.verify(found.path)


def _bundle_context(bundle: bundles.Bundle | None) -> dict | None:
    if bundle is None:
        return None
    return {"app": bundle.app, "version": bundle.version, "top": bundle.top,
            "file": bundle.path.name, "sha256": bundle.sha256, "stand_in": bundle.stand_in}


def _container_context(role: RoleSpec) -> dict | None:
    if role.container is None:
        return None
    return dataclasses.asdict(role.container) | {"ref": role.container.ref}


def _place(src: Path, dest: Path) -> None:
    """A hard link where possible: bundles are large and never modified in place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        dest.hardlink_to(src)
    except OSError:
        shutil.copyfile(src, dest)


def _copy_agent(dest: Path) -> None:
    (dest / "builder").mkdir(parents=True)
    shutil.copy2(PACKAGE_DIR / "__init__.py", dest / "builder" / "__init__.py")
    shutil.copytree(PACKAGE_DIR / "agent", dest / "builder" / "agent",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("builder-agent", "builder-agent.service"):
        shutil.copy2(PACKAGE_DIR / "agent" / "files" / name, dest / name)


def render_role(role: RoleSpec, target: str, env: Environment, project: Project,
                dest: Path, jenv: jinja2.Environment, layers: bool = True,
                samples: Path | None = None) -> Rendered:
    """Write one role's directory at dest (which must not exist); `samples`: see bundle_for."""
    bundle = bundle_for(role, project, samples)
    ctx = context_for(role, target, env) | {"bundle": _bundle_context(bundle),
                                             "container": _container_context(role)}
    files = dest / "files"
    (files / "role").mkdir(parents=True)
    role_dir = project.templates / role.role
    display = project.display(role.path)

    def write(rel: str, text: str, mode: int = 0o644) -> None:
        path = dest / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        path.chmod(mode)

    write(f"{role.role}.pkr.hcl",
          render_template(jenv, f"packer/{target}.pkr.hcl.j2", ctx, display))
    write("files/provision.sh",
          render_template(jenv, "provision/provision.sh.j2", ctx, display), 0o755)
    write("files/seal.sh", render_template(jenv, "provision/seal.sh.j2", ctx, display), 0o755)
    write("user-data",
          render_template(jenv, user_data_template(project, role.role), ctx, display))
    for rel in [f.src for f in role.files] + list(role.templates) + list(role.scripts):
        target_path = files / "role" / rel
        target_path.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(role_dir / rel, target_path)
    role_json = {k: ctx["role"][k] for k in ("role", "version", "services", "ports", "templates",
                                              "secrets")}
    write("files/role.json", json.dumps(role_json, indent=2, sort_keys=True) + "\n")
    # What the image tests check against (packages, files, services, ...).
    write("spec.json", json.dumps(ctx["role"], indent=2, sort_keys=True) + "\n")
    _copy_agent(files / "agent")
    if bundle is not None:
        _place(bundle.path, files / "bundle" / bundle.path.name)
    if ctx["ca_files"]:
        (files / "ca").mkdir()
        for name, src in zip(ctx["ca_files"], env.ca_paths(), strict=True):
            shutil.copyfile(src, files / "ca" / name)

    key = content_key(role, target, dest, project, env, layers)
    write("build.json", json.dumps({"role": role.role, "version": role.version,
                                    "target": target, "content_key": key}, indent=2) + "\n")
    return Rendered(role=role, target=target, directory=dest, content_key=key)


def tests_digest(role: RoleSpec, project: Project) -> dict[str, str]:
    """The role's suite plus the shared image tests decide whether an artifact is proven."""
    digests = {}
    for rel in ("tests/images/conftest.py", "tests/images/common"):
        path = project.root / rel
        if path.is_file():
            digests[rel] = contentkey.file_digest(path)
        elif path.is_dir():
            digests.update({f"{rel}/{k}": v for k, v in contentkey.file_digests(path).items()})
    if role.tests:
        suite = contentkey.file_digests(project.root / role.tests)
        digests.update({f"{role.tests}/{k}": v for k, v in suite.items()})
    return digests


# Rendered files that never reach the image: build.json holds the key itself, and user-data
# is the boot-time configuration of a deployment (an environment change must not force a
# re-bake of an identical image).
NOT_BAKED = frozenset({"build.json", "user-data"})


def source_identity(role: RoleSpec, target: str, env: Environment, layers: bool,
                    templates: Path) -> str:
    """What the bake starts from: the AMI, the role's package layer, or the bare base."""
    if target == "aws":
        return f"ami:{DEBIAN_AMI_OWNER}:{AWS_AMI_NAMES[role.base.suite]}"
    if layers and layer.applies(role, target):
        return layer.role_identity(role, env.mirrors, templates)
    return bases.identity(role.base)


def content_key(role: RoleSpec, target: str, directory: Path, project: Project,
                env: Environment, layers: bool = True) -> str:
    base_identity = source_identity(role, target, env, layers, project.templates)
    return contentkey.compute(
        role=role.as_data(), target=target,
        rendered=contentkey.file_digests(directory, exclude=NOT_BAKED),
        tests=tests_digest(role, project), base=base_identity,
        packer_version=packer.version_string(packer.target_version()))
