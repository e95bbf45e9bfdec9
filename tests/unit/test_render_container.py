"""saleor-api rendered for its `container` install method: the pull through a registry
mirror in the provisioning script, no bundle anywhere, and the content key that changes
with the image reference but not with the other method's settings."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from .helpers import run_builder

MIRRORED = "name: mirrored\nmirrors:\n  registries:\n    ghcr.io: 10.0.2.2:5443\n"


def _container_project(project: Path) -> Path:
    spec = project / "images" / "saleor-api.yaml"
    spec.write_text(spec.read_text().replace("install: bundle\n", "install: container\n"))
    (project / "mirrored.yaml").write_text(MIRRORED)
    return project


def _render(project: Path, out: Path) -> Path:
    proc = run_builder(["render", "saleor-api", "--env", "mirrored.yaml", "--out", str(out)],
                       project)
    assert proc.returncode == 0, proc.stderr
    return out / "qemu" / "saleor-api"


@pytest.fixture
def rendered(project, tmp_path) -> Path:
    # No vendor/ at all: a container image needs no bundle.
    return _render(_container_project(project), tmp_path / "out")


def test_provisioning_pulls_through_the_mirror_and_forgets_it(rendered):
    script = (rendered / "files" / "provision.sh").read_text()
    assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0
    mirror = script.index('location = "10.0.2.2:5443"')
    pull = script.index('podman pull --quiet "$container_ref"')
    forget = script.index("rm -f /etc/containers/registries.conf.d/90-builder-mirrors.conf")
    install = script.index('sh "$F/role/"\'install-saleor.sh\'')
    assert mirror < pull < forget < install
    assert "container_ref='ghcr.io/saleor/saleor:3.23.28'\n" in script
    assert 'export BUILDER_CONTAINER_IMAGE="$container_ref"' in script
    image = image_json(script, container_digest="sha256:" + "c" * 64, container_stand_in="true")
    assert image["container"] == {"image": "ghcr.io/saleor/saleor", "tag": "3.23.28",
                                  "ref": "ghcr.io/saleor/saleor:3.23.28",
                                  "digest": "sha256:" + "c" * 64, "stand_in": True}
    assert "bundle" not in image and image["content_key"] == "k1"


def image_json(script: str, **shell_vars: str) -> dict:
    """/etc/builder/image.json as the provisioning script writes it, run in sh on its own
    (stdout instead of the file; the bake's variables given)."""
    part = script[script.index("image_json="):script.index(" > /etc/builder/image.json")]
    env = {"PATH": "/usr/bin:/bin", "BUILDER_CONTENT_KEY": "k1", **shell_vars}
    proc = subprocess.run(["sh", "-euc", part], capture_output=True, text=True, env=env,
                          check=True)
    return json.loads(proc.stdout)

def test_no_bundle_and_only_the_container_units(rendered):
    assert not (rendered / "files" / "bundle").exists()
    spec = json.loads((rendered / "spec.json").read_text())
    assert spec["install"] == "container" and spec["bundle"] is None
    assert "podman" in spec["packages"] and "python3-venv" not in spec["packages"]
    role = rendered / "files" / "role"
    assert (role / "container" / "saleor-api.container").is_file()
    assert not (role / "saleor-api.service").exists()


def test_content_key_follows_the_image_reference(project, tmp_path):
    project = _container_project(project)
    first = json.loads((_render(project, tmp_path / "a") / "build.json").read_text())
    spec = project / "images" / "saleor-api.yaml"
    spec.write_text(spec.read_text().replace("  app: saleor\n",
                                             "  app: saleor\n  version: 9.9.9\n"))
    same = json.loads((_render(project, tmp_path / "b") / "build.json").read_text())
    spec.write_text(spec.read_text().replace('tag: "3.23.28"', 'tag: "3.23.29"'))
    moved = json.loads((_render(project, tmp_path / "c") / "build.json").read_text())
    assert first["content_key"] == same["content_key"] != moved["content_key"]
