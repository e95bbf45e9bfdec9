"""Role package layers: the base recipe with the role's Debian packages installed at native
speed on the build host, cached under state/layers/ by their own key. A layer is the qemu
source image of the role's bake (a parent image, as in a chained Packer build): dpkg's
unpacking and maintainer scripts, most of a cold bake under TCG, happen once per package
list instead of once per bake, and a re-bake after a template change reuses the layer.

The bake's provisioning script is the same with or without a layer (and on AWS): it finds
the packages present and skips apt, and still runs every role script (Debian's `main`
cluster dropped, etcd's default member removed), which the image suites still test. The
role's `layer_scripts` run in the layer's chroot as well: under TCG the same steps cost the
bake VM ~90 s (perl tools, update-rc.d, stopping what the layer's boot had started), and a
VM booted from a layer they already ran on starts none of it.
"""

from __future__ import annotations

import hashlib
import json
import shlex
import urllib.parse
from pathlib import Path

from builder.bake import base as bases
from builder.bake.base import Base
from builder.progress import Progress
from builder.spec import BaseImage, Mirrors, RoleSpec

# Bump when the way a layer is made changes, so old layers stop matching.
RECIPE_VERSION = 1
# QEMU user networking: the guest reaches the build host's loopback at this address, so a
# mirror written for the bake VM is reached from the host at 127.0.0.1.
HOST_FROM_GUEST = "10.0.2.2"


def applies(role: RoleSpec, target: str) -> bool:
    """Layers are qemu source images over a locally made base (an official cloud image is
    partitioned; AWS bakes start from Debian's AMI)."""
    return target == "qemu" and bool(role.packages) and not role.base.url


def scripts(role: RoleSpec, templates: Path) -> dict[str, Path]:
    """The role's scripts that run in its layer's chroot, by name."""
    return {name: templates / role.role / name for name in role.layer_scripts}


def identity(base: BaseImage, packages: list[str], mirrors: Mirrors,
             chroot_scripts: dict[str, Path] | None = None) -> str:
    """Key of a layer: its base, the package list, where packages come from, the recipe,
    the scripts run in it. A proxy is transport only and is left out."""
    recipe = {"base": bases.identity(base), "packages": sorted(set(packages)),
              "apt_mirror": mirrors.apt, "recipe": RECIPE_VERSION}
    if chroot_scripts:
        # Absent when empty: layers without scripts keep the keys they had.
        recipe["scripts"] = {name: hashlib.sha256(path.read_bytes()).hexdigest()
                             for name, path in chroot_scripts.items()}
    if mirrors.apt:
        # Layers from a mirror now keep Debian's sources (base.debian_sources); those made
        # without one are unchanged and keep their key.
        recipe["sources"] = "debian"
    blob = json.dumps(recipe, sort_keys=True).encode()
    return f"layer:{base.suite}:{hashlib.sha256(blob).hexdigest()[:16]}"


def role_identity(role: RoleSpec, mirrors: Mirrors, templates: Path) -> str:
    """The key of the role's layer (templates: the project's templates/ directory)."""
    return identity(role.base, role.packages, mirrors, scripts(role, templates))


def _dir(state: Path, ident: str) -> Path:
    return state / "layers" / ident.replace(":", "-")


def host_view(url: str | None) -> str | None:
    """A bake-VM URL as the build host reaches it (10.0.2.2 is the host's loopback)."""
    if not url:
        return None
    parts = urllib.parse.urlsplit(url)
    if parts.hostname != HOST_FROM_GUEST:
        return url
    netloc = parts.netloc.replace(HOST_FROM_GUEST, "127.0.0.1", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def find(state: Path, role: RoleSpec, mirrors: Mirrors,
         chroot_scripts: dict[str, Path] | None = None) -> Base | None:
    ident = identity(role.base, role.packages, mirrors, chroot_scripts)
    return bases.read_entry(_dir(state, ident), ident, parent=bases.identity(role.base))


def _script_hooks(chroot_scripts: dict[str, Path]) -> tuple[str, ...]:
    """mmdebstrap customize hooks (shell, run on the host with the chroot as $1) that copy
    each script in, run it in the chroot as root after every package is configured (the
    policy-rc.d still keeps daemons from starting) and remove it again."""
    return tuple(f'cp {shlex.quote(str(path))} "$1/tmp/builder-layer-script" && '
                 'chroot "$1" sh /tmp/builder-layer-script && '
                 'rm -f "$1/tmp/builder-layer-script"'
                 for path in chroot_scripts.values())


def ensure(state: Path, role: RoleSpec, mirrors: Mirrors, progress: Progress,
           force: bool = False, chroot_scripts: dict[str, Path] | None = None) -> Base:
    """The role's layer, built unless cached (all or nothing, like a base)."""
    chroot_scripts = chroot_scripts or {}
    found = None if force else find(state, role, mirrors, chroot_scripts)
    ident = identity(role.base, role.packages, mirrors, chroot_scripts)
    if found:
        progress.say(f"layer {ident} up to date")
        return found
    aptopts = ()
    proxy = host_view(mirrors.apt_proxy)
    if proxy:
        aptopts = (f'Acquire::http::Proxy "{proxy}"',)
    packages = tuple(dict.fromkeys((*bases.INCLUDE, *role.packages)))
    with bases.staging(_dir(state, ident)) as tmp:
        meta = bases.build_disk(tmp, role.base.suite, packages, progress,
                                mirror=host_view(mirrors.apt), aptopts=aptopts,
                                hooks=_script_hooks(chroot_scripts))
        bases.publish(_dir(state, ident), tmp, {
            "identity": ident, "parent": bases.identity(role.base),
            "packages": sorted(set(role.packages)), "scripts": sorted(chroot_scripts),
            **meta})
    found = find(state, role, mirrors, chroot_scripts)
    assert found is not None
    progress.say(f"layer {ident} ({len(role.packages)} packages) built in "
                 f"{found.seconds} s")
    return found
