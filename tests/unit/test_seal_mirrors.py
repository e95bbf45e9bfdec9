"""Seal undoes every bake-time mirror setting provision made, and the offline inspection of
the finished disk refuses one that is left: provision's and seal's rendered steps run on a
sandboxed /etc, which is then made into a real ext4 and read with debugfs as a bake does."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from builder import render as rendering
from builder import spec as specs
from builder.bake import base, inspect
from builder.spec.project import find_project

from .helpers import REPO, run_sandboxed

pytestmark = pytest.mark.skipif(not (shutil.which("debugfs") and shutil.which("mkfs.ext4")),
                                reason="needs debugfs and mkfs.ext4 (e2fsprogs)")

MIRRORS = specs.Mirrors(apt="http://10.0.2.2:3142/debian", apt_proxy="http://10.0.2.2:3128",
                        pip="http://10.0.2.2:3141/simple", npm="http://10.0.2.2:4873/")
DEBIAN = {
    "apt/sources.list": "deb http://deb.debian.org/debian trixie main\n",
    "apt/sources.list.d/debian.sources": (
        "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie trixie-updates\n\n"
        "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: trixie-security\n"),
    "apt/apt.conf.d/00trustcdrom": 'APT::Authentication::TrustCDROM "true";\n',
    "hostname": "localhost\n",
}
PROVISION = ("apt_mirror=", "# Packages must not start")
SEAL = ("# Bake-time package settings", "rm -rf /var/lib/apt/lists")


class RawImage(inspect.Image):
    """The real debugfs reader over a raw ext4 made here (no qcow2 to convert)."""

    def __init__(self, raw: Path):
        self.raw = raw


@pytest.fixture(scope="module")
def scripts(tmp_path_factory) -> dict[str, str]:
    project = find_project(start=REPO)
    roles = specs.load_roles(project)
    env = specs.load_environment("local", project, roles)
    env = specs.Environment(name=env.name, cluster_name=env.cluster_name,
                            network=env.network, nodes=env.nodes, mirrors=MIRRORS)
    [item] = rendering.render([roles["redis"]], "qemu", env, project,
                              tmp_path_factory.mktemp("out"))
    files = item.directory / "files"
    return {name: (files / f"{name}.sh").read_text() for name in ("provision", "seal")}


def debian_etc(root: Path) -> Path:
    etc = root / "etc"
    for rel, text in DEBIAN.items():
        (etc / rel).parent.mkdir(parents=True, exist_ok=True)
        (etc / rel).write_text(text)
    return etc


def contents(etc: Path) -> dict[str, str]:
    return {p.relative_to(etc).as_posix(): p.read_text() for p in etc.rglob("*") if p.is_file()}


def provisioned(scripts: dict[str, str], root: Path) -> Path:
    """Debian's /etc after provision's mirror steps and a container pull's mirror config."""
    etc = debian_etc(root)
    run_sandboxed(scripts["provision"], *PROVISION, etc)
    conf = etc / "containers/registries.conf.d/90-builder-mirrors.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("[[registry]]\n")
    return etc


def disk(root: Path, tmp_path: Path) -> RawImage:
    raw = tmp_path / "disk.raw"
    subprocess.run(["truncate", "-s", "16M", str(raw)], check=True)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(root), str(raw)], check=True,
                   capture_output=True)
    return RawImage(raw)


def test_provision_points_apt_at_the_mirror_and_keeps_the_originals(scripts, tmp_path):
    etc = debian_etc(tmp_path / "root")
    run_sandboxed(scripts["provision"], *PROVISION, etc)
    # A retried provisioning step (a dropped SSH session) must not back up its own rewrite.
    run_sandboxed(scripts["provision"], *PROVISION, etc)
    files = contents(etc)
    assert files["apt/sources.list"] == "deb http://10.0.2.2:3142/debian trixie main\n"
    assert "URIs: http://10.0.2.2:3142/debian-security" in files[
        "apt/sources.list.d/debian.sources"]
    assert files["apt/sources.list.builder-orig"] == DEBIAN["apt/sources.list"]
    assert files["apt/sources.list.d/debian.sources.builder-orig"] == DEBIAN[
        "apt/sources.list.d/debian.sources"]
    assert {"pip.conf", "npmrc", "apt/apt.conf.d/01builder-proxy"} <= set(files)


def test_seal_leaves_etc_as_debian_had_it_and_the_disk_passes(scripts, tmp_path):
    root = tmp_path / "root"
    etc = provisioned(scripts, root)
    run_sandboxed(scripts["seal"], *SEAL, etc)
    assert contents(etc) == DEBIAN
    assert inspect.mirror_settings(disk(root, tmp_path), inspect.mirror_urls(MIRRORS)) == []


def test_the_inspection_names_every_setting_an_unsealed_disk_keeps(scripts, tmp_path):
    root = tmp_path / "root"
    provisioned(scripts, root)
    problems = inspect.mirror_settings(disk(root, tmp_path), inspect.mirror_urls(MIRRORS))
    assert problems == [
        *(f"{path} is left in the image" for path in inspect.BAKE_SETTINGS),
        "/etc/apt/sources.list still names the bake mirror http://10.0.2.2:3142/debian",
        "/etc/apt/sources.list.builder-orig is left in the image (seal did not restore it)",
        "/etc/apt/sources.list.d/debian.sources still names the bake mirror "
        "http://10.0.2.2:3142/debian",
        "/etc/apt/sources.list.d/debian.sources.builder-orig is left in the image "
        "(seal did not restore it)",
    ]


def test_a_source_naming_the_mirror_as_the_build_host_sees_it_is_refused(tmp_path):
    """A package layer is fetched from the host's view of the mirror (127.0.0.1)."""
    root = tmp_path / "root"
    etc = debian_etc(root)
    (etc / "apt/sources.list").write_text("deb http://127.0.0.1:3142/debian trixie main\n")
    assert inspect.mirror_settings(disk(root, tmp_path), inspect.mirror_urls(MIRRORS)) == [
        "/etc/apt/sources.list still names the bake mirror http://127.0.0.1:3142/debian"]


def test_a_layer_made_from_a_mirror_keeps_debians_sources(tmp_path):
    etc = debian_etc(tmp_path)
    (etc / "apt/sources.list").write_text("deb http://127.0.0.1:3142/debian trixie main\n")
    base.debian_sources(tmp_path, "http://127.0.0.1:3142/debian")
    assert contents(etc) == DEBIAN


def test_hygiene_checks_the_mirror_settings_too(tmp_path):
    etc = debian_etc(tmp_path / "root")
    (etc / "pip.conf").write_text("[global]\nindex-url = http://10.0.2.2:3141/simple\n")
    problems = inspect.hygiene(disk(tmp_path / "root", tmp_path), "builder-bake",
                               inspect.mirror_urls(MIRRORS))
    assert "/etc/pip.conf is left in the image" in problems
