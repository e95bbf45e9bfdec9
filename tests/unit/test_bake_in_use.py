"""`builder bake --force` never replaces an artifact a local cluster boots from: a node's disk
is a qcow2 overlay on the artifact's disk, so rewriting it in place corrupts the node.

The bakes here run with no Packer on PATH: any bake that got past the refusal stops at
"packer is not installed" and starts no VM."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from builder import spec as specs
from builder.cluster.state import Cluster, Node, artifacts_in_use, directory
from builder.registry import Artifact, Registry, default_path
from builder.spec.project import find_project

from .helpers import copy_project, listing, register, run_builder


@pytest.fixture
def project(tmp_path, monkeypatch):
    root = copy_project(tmp_path / "project")
    monkeypatch.setenv("BUILDER_STATE", str(tmp_path / "state"))
    return find_project(start=root)


def _up(project, env: str, artifact: str, name: str = "redis-1") -> None:
    """The cluster.json `cluster up` leaves, with no VM running."""
    where = directory(project.state, env)
    where.mkdir(parents=True)
    node = Node(name, "redis", "10.20.0.14", "i-1", artifact, 0, [], 1, 1)
    Cluster(where, env, "saleor", "10.20.0.0/24", "tcg", [node]).save()


def test_only_the_nodes_of_a_cluster_that_is_up_use_an_artifact(project, tmp_path):
    used = register(project, "redis", tmp_path)
    _up(project, "local", used)
    _up(project, "lab", used, "redis-2")
    (directory(project.state, "down") / "nodes" / "redis-1").mkdir(parents=True)
    assert artifacts_in_use(project.state) == {Path(used).resolve(): ["lab/redis-2",
                                                                      "local/redis-1"]}


def _without_packer(monkeypatch) -> None:
    path = [d for d in os.environ["PATH"].split(os.pathsep) if not (Path(d) / "packer").exists()]
    monkeypatch.setenv("PATH", os.pathsep.join(path))
    monkeypatch.delenv("BUILDER_PACKER", raising=False)


def _baked(project, tmp_path) -> str:
    """redis as a bake publishes it: output/qemu/<role>/<version>-<key>/, registered."""
    rendered = run_builder(["render", "redis", "--json", "--out", str(tmp_path / "rendered")],
                           project.root, project.state)
    assert rendered.returncode == 0, rendered.stderr
    key = json.loads(rendered.stdout)["rendered"][0]["content_key"]
    version = specs.load_roles(project)["redis"].version
    artifact = project.state.resolve() / "qemu" / "redis" / f"{version}-{key[:12]}"
    artifact.mkdir(parents=True)
    (artifact / "manifest.json").write_text(json.dumps({"version": version}))
    Registry(default_path(project.state)).record(Artifact(
        role="redis", version=version, target="qemu", content_key=key,
        artifact=str(artifact), base="b", git_sha="g", packer_version="1.6.6",
        tests_passed=True, tests={}, timings={}))
    return str(artifact)


def test_a_forced_bake_of_an_artifact_a_node_boots_from_is_refused(
        project, tmp_path, monkeypatch):
    _without_packer(monkeypatch)
    artifact = _baked(project, tmp_path)
    _up(project, "local", artifact)
    before = listing(project.state)
    proc = run_builder(["bake", "redis", "--force"], project.root, project.state)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert "--force" in proc.stderr and artifact in proc.stderr
    assert "local/redis-1" in proc.stderr, proc.stderr
    assert listing(project.state) == before, proc.stderr


def test_a_cluster_that_is_down_does_not_hold_its_artifact(project, tmp_path, monkeypatch):
    _without_packer(monkeypatch)
    artifact = _baked(project, tmp_path)
    _up(project, "local", artifact)
    (directory(project.state, "local") / "cluster.json").unlink()
    proc = run_builder(["bake", "redis", "--force"], project.root, project.state)
    assert proc.returncode == 2 and "packer is not installed" in proc.stderr, proc.stderr

