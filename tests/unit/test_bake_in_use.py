"""`builder bake --force` never replaces an artifact a local cluster boots from: a node's disk
is a qcow2 overlay on the artifact's disk, so rewriting it in place corrupts the node."""

from __future__ import annotations

from pathlib import Path

import pytest

from builder.cluster.state import Cluster, Node, artifacts_in_use, directory
from builder.project import find_project

from .helpers import copy_project, register


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

