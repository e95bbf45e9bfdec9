"""saleor-api by its `container` install method: a stand-in of the official image (the real
one is unreachable here) built with mmdebstrap from the stand-in bundle, pushed to a local
TLS registry (Debian's docker-registry), pulled by podman in the bake VM through the
environment's registry mirror with our test CA trusted through `ca_certificates`, then two
API nodes booted with the data tier and run by their Quadlet units."""

from __future__ import annotations

import json
import time
from pathlib import Path

import psycopg
import pytest
import registry as oci
from conftest import REPO, Builder, builder_json, graphql_shop, post_boot_failures, qemu_processes

from builder.cluster import probe
from builder.cluster.state import USER, load
from builder.cluster.vm import ssh
from builder.project import copy_tree

pytestmark = pytest.mark.vm
ENV_FILE = REPO / "tests" / "fixtures" / "saleor-container.yaml"
ENV = "saleor-container"
VERSION = "0.1.0"
BEAT = "^/app/.venv/bin/python3? /app/.venv/bin/celery .*beat"


@pytest.fixture(scope="module")
def registry(baked, tmp_path_factory):
    """The stand-in image in a local TLS registry for the whole module."""
    builder, _ = baked
    work = tmp_path_factory.mktemp("oci")
    made = builder_json(builder, "vendor", "saleor", "--version", VERSION, "--source",
                 str(REPO / "tests" / "fixtures" / "saleor-standin"), "--out", str(work),
                 "--runtime", "system", "--python-version", "3.13", timeout=900)
    started = time.monotonic()
    rootfs = oci.build_saleor_standin_rootfs(Path(made["path"]), work / "rootfs.tar")
    tls = oci.make_tls(work / "tls")
    with oci.Registry(work / "registry", tls) as reg:
        digest = oci.push_image(reg, "saleor/saleor", VERSION, rootfs,
                                oci.saleor_standin_config(VERSION))
        print(f"stand-in image built and pushed in {time.monotonic() - started:.0f} s")
        yield reg, digest


@pytest.fixture(scope="module")
def container_image(baked, registry, tmp_path_factory):
    """saleor-api baked with install: container, in a project copy sharing the data tier's
    state (its artifacts boot the cluster)."""
    data_tier, _ = baked
    reg, digest = registry
    root = copy_tree(tmp_path_factory.mktemp("container-project"), REPO)
    spec = root / "images" / "saleor-api.yaml"
    text = spec.read_text()
    assert "install: bundle\n" in text and 'tag: "3.23.28"' in text
    spec.write_text(text.replace("install: bundle\n", "install: container\n")
                    .replace('tag: "3.23.28"', f'tag: "{VERSION}"\n  digest: {digest}'))
    env = root / "registry-mirror.yaml"
    env.write_text(f"name: registry-mirror\nmirrors:\n  registries:\n"
                   f"    ghcr.io: {reg.vm_address()}\nca_certificates: [{reg.ca}]\n")
    builder = Builder(root, data_tier.state)
    report = builder_json(builder, "bake", "saleor-api", "--target", "qemu", "--env", str(env),
                   timeout=3600)
    return builder, report, digest


@pytest.fixture(scope="module")
def shop(container_image):
    builder, _, _ = container_image
    up = builder.run("cluster", "up", "--env", str(ENV_FILE), "--json", "--timeout", "1800",
                     timeout=2400)
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-3000:]
        yield builder, json.loads(up.stdout), load(builder.state, ENV)
    finally:
        down = builder.run("cluster", "down", "--env", str(ENV_FILE), timeout=300)
        assert down.returncode == 0, down.stderr
        assert not qemu_processes(str(builder.state / "cluster")), "VMs left running"


def _api(cluster) -> list:
    return [n for n in cluster.nodes if n.role == "saleor-api"]


def _run(cluster, node, command: str) -> str:
    return ssh(cluster.vm(node), cluster.key, USER, command, timeout=60).stdout


def test_bake_pulled_the_pinned_image_through_the_mirror(container_image):
    _, report, digest = container_image
    (bake,) = report["bakes"]
    assert bake["status"] == "baked", report
    print(f"saleor-api (container) baked in {bake['seconds']} s")


def test_every_node_ready_and_the_image_is_the_pushed_one(shop, container_image):
    _, up, cluster = shop
    _, _, digest = container_image
    assert sorted(n["role"] for n in up["nodes"]) == sorted(
        ["etcd-patroni", "haproxy", "redis", "saleor-api", "saleor-api"])
    for node in _api(cluster):
        image = json.loads(_run(cluster, node, "cat /etc/builder/image.json"))
        assert image["container"]["digest"] == digest
        assert image["container"]["stand_in"] is True
        assert "bundle" not in image
    print(f"ready per node: {up['ready_seconds']}")


def test_post_boot_suites_pass(shop, tmp_path):
    builder, _, cluster = shop
    assert not post_boot_failures(builder, cluster, ("saleor-api", "haproxy"), tmp_path)


def test_graphql_through_haproxy_from_both_containers(shop):
    builder, _, _ = shop
    status = builder_json(builder, "cluster", "status", "--env", str(ENV_FILE), timeout=300)
    answers = [graphql_shop(status["endpoints"]["api"]["port"]) for _ in range(4)]
    assert all(a == {"data": {"shop": {"name": "Saleor e-commerce"}}} for a in answers), answers


def test_migrated_once_and_exactly_one_beat_container(shop):
    builder, _, cluster = shop
    api = _api(cluster)
    reports = [probe.agent_report(cluster.vm(n), cluster.key, USER)["result"] for n in api]
    assert all(r["install"] == "container" for r in reports)
    assert sorted(r["migrate"]["ran"] for r in reports) == [False, True], reports
    beats = {n.name: (_run(cluster, n, f"pgrep -c -f '{BEAT}' || true").strip(),
                      _run(cluster, n, "sudo podman ps --quiet --filter name=^saleor-beat$ "
                                       "| wc -l").strip()) for n in api}
    assert sorted(beats.values()) == [("0", "0"), ("1", "1")], beats
    dsn = builder_json(builder, "cluster", "status", "--env", str(ENV_FILE),
                timeout=300)["endpoints"]["postgres"]["dsn"]
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        rows = conn.execute("SELECT release FROM builder_releases "
                            "WHERE task = 'migrate'").fetchall()
        time.sleep(45)
        recent = conn.execute("SELECT count(*) FROM standin_heartbeat "
                              "WHERE at > now() - interval '40 seconds'").fetchone()[0]
    assert rows == [(f"saleor-{VERSION}",)]
    assert 2 <= recent <= 6, recent  # one beat every 10 s, run by the worker containers
