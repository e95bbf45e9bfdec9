"""Offline checks of a finished disk image: what the seal step promised, read from the
filesystem itself with debugfs (no mount, no boot, no root needed)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from builder.bake import base as bases
from builder.bake import layer
from builder.errors import OperationError
from builder.spec import Mirrors


class Image:
    """Read-only access to an ext4 root filesystem inside a qcow2 (whole-disk ext4)."""

    def __init__(self, qcow2: Path):
        self.qcow2 = qcow2
        self._tmp = tempfile.TemporaryDirectory(prefix="builder-inspect-", dir=qcow2.parent)
        self.raw = Path(self._tmp.name) / "disk.raw"

    def __enter__(self) -> Image:
        subprocess.run(["qemu-img", "convert", "-O", "raw", str(self.qcow2), str(self.raw)],
                       check=True, capture_output=True)
        return self

    def __exit__(self, *exc) -> None:
        self._tmp.cleanup()

    def _debugfs(self, request: str) -> str:
        proc = subprocess.run(["debugfs", "-R", request, str(self.raw)], capture_output=True,
                              text=True, check=False)
        return proc.stdout

    def read(self, path: str) -> str | None:
        """File content, or None when the path does not exist."""
        if not self.exists(path):
            return None
        return self._debugfs(f"cat {path}")

    def exists(self, path: str) -> bool:
        proc = subprocess.run(["debugfs", "-R", f"stat {path}", str(self.raw)],
                              capture_output=True, text=True, check=False)
        return "File not found" not in proc.stderr and "Inode:" in proc.stdout

    def listdir(self, path: str) -> list[str]:
        if not self.exists(path):
            return []
        names = []
        for line in self._debugfs(f"ls -p {path}").splitlines():
            parts = line.strip().split("/")
            if len(parts) >= 6 and parts[5] not in (".", "..", ""):
                names.append(parts[5])
        return names

    def dump(self, path: str, dest: Path) -> None:
        subprocess.run(["debugfs", "-R", f"dump -p {path} {dest}", str(self.raw)],
                       check=True, capture_output=True)
        if not dest.is_file() or dest.stat().st_size == 0:
            raise OperationError(f"could not extract {path} from {self.qcow2.name}")


# What provision writes for the bake's network and seal removes (or puts back).
BAKE_SETTINGS = ("/etc/pip.conf", "/etc/npmrc", "/etc/apt/apt.conf.d/01builder-proxy",
                 "/etc/containers/registries.conf.d/90-builder-mirrors.conf")
APT_DIRS = ("/etc/apt", "/etc/apt/sources.list.d")


def mirror_urls(mirrors: Mirrors) -> list[str]:
    """Every bake-time mirror URL as the bake VM saw it and as the build host did (a layer
    is fetched from the host's view)."""
    urls = [u for u in (mirrors.apt, mirrors.apt_proxy, mirrors.pip, mirrors.npm) if u]
    views = {view.rstrip("/") for u in urls for view in (u, layer.host_view(u))}
    return sorted(views - {bases.DEBIAN_MIRROR})  # a "mirror" that is Debian's own is fine


def mirror_settings(img: Image, mirrors: list[str]) -> list[str]:
    """What seal should have removed or put back: the bake's pip/npm/proxy/registry files,
    apt sources provision kept aside, and apt sources that name one of `mirrors`."""
    problems = [f"{path} is left in the image" for path in BAKE_SETTINGS if img.exists(path)]
    for directory in APT_DIRS:
        for name in sorted(img.listdir(directory)):
            path = f"{directory}/{name}"
            if name.endswith(".builder-orig"):
                problems.append(f"{path} is left in the image (seal did not restore it)")
            elif path == "/etc/apt/sources.list" or directory == APT_DIRS[1]:
                named = [m for m in mirrors if m in (img.read(path) or "")]
                if named:
                    problems.append(f"{path} still names the bake mirror {named[0]}")
    return problems


def hygiene(img: Image, bake_user: str, mirrors: list[str] = ()) -> list[str]:
    """Problems found; an empty list means the image is clean. `mirrors`: the bake's mirror
    URLs (mirror_urls), none of which an apt source may still name."""
    problems = mirror_settings(img, list(mirrors))
    machine_id = img.read("/etc/machine-id")
    if machine_id is not None and machine_id.strip() not in ("", "uninitialized"):
        problems.append("/etc/machine-id has content")
    keys = [n for n in img.listdir("/etc/ssh") if n.startswith("ssh_host_")]
    if keys:
        problems.append(f"SSH host keys left: {', '.join(sorted(keys))}")
    for db in ("/etc/passwd", "/etc/shadow", "/etc/group"):
        text = img.read(db) or ""
        if re.search(rf"^{re.escape(bake_user)}:", text, re.M):
            problems.append(f"bake user {bake_user} still in {db}")
    for path in (f"/home/{bake_user}", "/etc/sudoers.d/90-cloud-init-users",
                 "/root/.ssh/authorized_keys", "/etc/builder/node.yaml",
                 "/var/lib/dbus/machine-id", "/usr/sbin/policy-rc.d"):
        if img.exists(path):
            problems.append(f"{path} is left in the image")
    if [n for n in img.listdir("/var/lib/cloud/instances")]:
        problems.append("cloud-init instance state left in /var/lib/cloud/instances")
    lists = [n for n in img.listdir("/var/lib/apt/lists") if n not in ("lock", "partial",
                                                                         "auxfiles")]
    if lists:
        problems.append(f"{len(lists)} apt list files left in /var/lib/apt/lists")
    return problems


def extract_boot(img: Image, dest: Path) -> tuple[Path, Path]:
    """The image's own kernel and initrd, for direct kernel boot of the artifact."""
    boot = img.listdir("/boot")
    kernels = sorted(n for n in boot if n.startswith("vmlinuz-"))
    initrds = sorted(n for n in boot if n.startswith("initrd.img-"))
    if not kernels or not initrds:
        raise OperationError("the image has no kernel or initrd in /boot")
    kernel, initrd = dest / "vmlinuz", dest / "initrd.img"
    img.dump(f"/boot/{kernels[-1]}", kernel)
    img.dump(f"/boot/{initrds[-1]}", initrd)
    return kernel, initrd


def debugfs_available() -> bool:
    return shutil.which("debugfs") is not None
