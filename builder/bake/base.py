"""Debian base images for the qemu target: built offline-capable with mmdebstrap, or taken
from an official cloud image with its checksum. Cached under state/bases/ by content key."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from builder.errors import OperationError, UserError
from builder.progress import Progress
from builder.spec import BaseImage

# What goes into a locally made base. Changing this list changes every content key.
INCLUDE = (
    "linux-image-cloud-amd64", "systemd-sysv", "udev", "cloud-init", "openssh-server",
    "systemd-resolved", "netbase", "iproute2", "sudo", "python3", "ca-certificates",
    "e2fsprogs",
)
RECIPE_VERSION = 3
DISK_SIZE = "3G"

# Written into the base: cloud-init looks only for a NoCloud seed (no 2-minute EC2 probe on
# a local VM), and systemd-networkd brings eth0 up by DHCP until cloud-init renders its own
# network config (ifupdown's dhclient hung under TCG here).
FILES = {
    "etc/fstab": "/dev/vda / ext4 defaults,errors=remount-ro 0 1\n",
    "etc/systemd/network/90-builder-dhcp.network": (
        "[Match]\nName=eth* en*\n\n[Network]\nDHCP=yes\n"
    ),
    # A server answers no LLMNR/mDNS on every interface; the loopback DNS stub stays.
    "etc/systemd/resolved.conf.d/90-builder.conf": "[Resolve]\nLLMNR=no\nMulticastDNS=no\n",
    "etc/cloud/cloud.cfg.d/05-builder-datasource.cfg": "datasource_list: [NoCloud, None]\n",
    "etc/hostname": "localhost\n",
}


@dataclasses.dataclass(frozen=True)
class Base:
    """A base ready to bake from."""

    identity: str          # what the content key of every image built on it includes
    image: str             # qcow2 path (or URL)
    checksum: str          # sha256:<hex> for Packer
    kernel: str | None     # direct kernel boot (local bases); None boots the disk's own loader
    initrd: str | None
    parent: str | None = None      # a package layer: the identity of the base it extends
    seconds: float | None = None   # how long it took to build (None: fetched)


def identity(base: BaseImage) -> str:
    if base.url:
        return f"image:{base.checksum}"
    recipe = {"suite": base.suite, "include": INCLUDE, "files": FILES, "size": DISK_SIZE,
              "recipe": RECIPE_VERSION}
    blob = json.dumps(recipe, sort_keys=True).encode()
    return f"mmdebstrap:{base.suite}:{hashlib.sha256(blob).hexdigest()[:16]}"


def _dir(state: Path, base: BaseImage) -> Path:
    return state / "bases" / identity(base).replace(":", "-")


def find(state: Path, base: BaseImage) -> Base | None:
    """The cached base for this recipe, if it was completed."""
    return read_entry(_dir(state, base), identity(base))


def read_entry(directory: Path, ident: str, parent: str | None = None) -> Base | None:
    """A completed cache entry (a base or a layer): its metadata file is written last."""
    meta = directory / "base.json"
    if not meta.is_file():
        return None
    data = json.loads(meta.read_text())
    return Base(identity=ident, image=str(directory / data["image"]),
                checksum=data["checksum"],
                kernel=str(directory / data["kernel"]) if data.get("kernel") else None,
                initrd=str(directory / data["initrd"]) if data.get("initrd") else None,
                parent=parent, seconds=data.get("seconds"))


def ensure(state: Path, base: BaseImage, progress: Progress, force: bool = False) -> Base:
    found = None if force else find(state, base)
    if found:
        progress.say(f"base {identity(base)} up to date")
        return found
    if base.url:
        return _fetch_official(state, base, progress)
    return _build_local(state, base, progress)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _run(cmd: list[str], what: str, log: Path) -> None:
    with log.open("ab") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = log.read_text(errors="replace").strip().splitlines()[-5:]
        raise OperationError(f"{what} failed (exit {proc.returncode}): " + " | ".join(tail))


@contextlib.contextmanager
def staging(final: Path):
    """A private directory next to the cache entry `final`; it becomes the entry only
    through `publish`, and is removed if anything fails or is interrupted."""
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def publish(final: Path, tmp: Path, meta: dict) -> None:
    (tmp / "base.json").write_text(json.dumps(meta, indent=2) + "\n")
    if final.exists():
        shutil.rmtree(final)
    tmp.rename(final)


def _publish(state: Path, base: BaseImage, tmp: Path, meta: dict) -> Base:
    publish(_dir(state, base), tmp, meta)
    found = find(state, base)
    assert found is not None
    return found


def _build_local(state: Path, base: BaseImage, progress: Progress) -> Base:
    with staging(_dir(state, base)) as tmp:
        meta = build_disk(tmp, base.suite, INCLUDE, progress)
        found = _publish(state, base, tmp, {"identity": identity(base), **meta})
        progress.say(f"base {identity(base)} built in {meta['seconds']} s")
        return found


def build_disk(tmp: Path, suite: str, include: tuple[str, ...], progress: Progress,
               mirror: str | None = None, aptopts: tuple[str, ...] = (),
               hooks: tuple[str, ...] = ()) -> dict:
    """The base recipe into tmp/: mmdebstrap of `include` at native speed (maintainer
    scripts run in the chroot; mmdebstrap's policy-rc.d keeps daemons from starting), the
    base's files, no host identity, as a whole-disk ext4 qcow2 plus its kernel and initrd.
    Returns the facts for the cache entry's metadata."""
    for tool in ("mmdebstrap", "mkfs.ext4", "qemu-img"):
        if not shutil.which(tool):
            raise UserError(f"{tool} is not installed (run `make setup`)", field="base")
    started = time.monotonic()
    rootfs = tmp / "rootfs"
    log = tmp / "build.log"
    progress.stage("debootstrap", f"mmdebstrap {suite} ({len(include)} packages)")
    cmd = ["mmdebstrap", "--variant=minbase", "--include=" + ",".join(include),
           "--aptopt=Acquire::Retries \"3\"", *(f"--aptopt={o}" for o in aptopts),
           "--customize-hook=chroot \"$1\" systemctl enable systemd-networkd",
           *(f"--customize-hook={h}" for h in hooks), suite, str(rootfs)]
    if mirror:
        cmd.append(mirror)
    _run(cmd, "mmdebstrap", log)
    if mirror:
        debian_sources(rootfs, mirror)
    for rel, text in FILES.items():
        (rootfs / rel).parent.mkdir(parents=True, exist_ok=True)
        (rootfs / rel).write_text(text)
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    initrds = sorted((rootfs / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise OperationError("the base has no kernel or initrd in /boot")
    shutil.copy2(kernels[-1], tmp / "vmlinuz")
    shutil.copy2(initrds[-1], tmp / "initrd.img")
    # Nothing host- or build-specific may stay in the base.
    for leftover in ("etc/machine-id", "var/lib/dbus/machine-id"):
        (rootfs / leftover).unlink(missing_ok=True)
    (rootfs / "etc/machine-id").write_text("")
    for key in (rootfs / "etc/ssh").glob("ssh_host_*"):
        key.unlink()
    progress.stage("filesystem", f"ext4 image {DISK_SIZE}")
    raw = tmp / "disk.raw"
    _run(["truncate", "-s", DISK_SIZE, str(raw)], "truncate", log)
    _run(["mkfs.ext4", "-q", "-F", "-L", "root", "-d", str(rootfs), str(raw)], "mkfs.ext4",
         log)
    shutil.rmtree(rootfs)
    _run(["qemu-img", "convert", "-O", "qcow2", str(raw), str(tmp / "base.qcow2")],
         "qemu-img convert", log)
    raw.unlink()
    return {"suite": suite, "image": "base.qcow2", "checksum": _sha256(tmp / "base.qcow2"),
            "kernel": "vmlinuz", "initrd": "initrd.img",
            "seconds": round(time.monotonic() - started, 1)}


DEBIAN_MIRROR = "http://deb.debian.org/debian"


def debian_sources(rootfs: Path, mirror: str) -> None:
    """mmdebstrap writes the mirror it fetched from into the apt sources: put Debian's back,
    so an image made from this disk names no build-network host (the bake's own mirror
    rewrite is undone by seal, and the finished disk is checked for both)."""
    apt = rootfs / "etc" / "apt"
    for path in [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*"))]:
        if path.is_file():
            path.write_text(path.read_text().replace(mirror.rstrip("/"), DEBIAN_MIRROR))


def _fetch_official(state: Path, base: BaseImage, progress: Progress) -> Base:
    """An official cloud image (a URL or a local file) checked against its sha256."""
    with staging(_dir(state, base)) as tmp:
        target = tmp / "base.qcow2"
        progress.stage("download", base.url or "")
        if base.url.startswith(("http://", "https://")):
            import urllib.request

            try:
                with urllib.request.urlopen(base.url, timeout=60) as resp, \
                        target.open("wb") as out:
                    shutil.copyfileobj(resp, out)
            except OSError as exc:
                raise UserError(f"base image unreachable: {exc}", field="base.url") from None
        else:
            source = Path(base.url.removeprefix("file://"))
            if not source.is_file():
                raise UserError(f"no such base image file {source}", field="base.url")
            shutil.copyfile(source, target)
        actual = _sha256(target)
        if actual != base.checksum:
            raise UserError(f"checksum mismatch: expected {base.checksum}, got {actual}",
                            field="base.checksum")
        return _publish(state, base, tmp, {"identity": identity(base), "image": "base.qcow2",
                                           "checksum": actual, "kernel": None, "initrd": None})
