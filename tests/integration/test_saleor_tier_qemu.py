"""The Saleor tier from its bundles: stand-in applications (tests/fixtures/*-standin, the
real sources are unreachable here) vendored into bundles, baked with the real install
steps, booted with a small data tier by `builder cluster up` (tests/fixtures/saleor-tier.yaml:
one database node; the HA behaviour is test_cluster_qemu's), configured by their node
agents, and reached through HAProxy :80 and :9000 and the storefront's :3000.

Then the API tier moves to saleor-api's `container` install method in the running shop, as
an operator swaps an image version: the dead API node is replaced by one booted from the
container image (conftest's container_image) and run by its Quadlet units."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import psycopg
import pytest
from conftest import (
    CONTAINER_VERSION,
    REPO,
    SALEOR_TIER,
    beats,
    builder_json,
    fetch,
    graphql_shop,
    post_boot_failures,
    qemu_processes,
    recent_heartbeats,
)

from builder import spec as specs
from builder.bake import base as bases
from builder.bake import inspect
from builder.cluster import probe
from builder.cluster.state import USER, load
from builder.cluster.vm import ssh
from builder.spec.project import find_project

pytestmark = pytest.mark.vm
ENV_FILE = REPO / "tests" / "fixtures" / "saleor-tier.yaml"
ENV = "saleor-tier"


@pytest.fixture(scope="module")
def shop(saleor_images):
    builder, _ = saleor_images
    started = time.monotonic()
    up = builder.run("cluster", "up", "--env", str(ENV_FILE), "--json", "--timeout", "1800",
                     timeout=2400)
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-3000:]
        cluster = load(builder.state, ENV)
        yield builder, json.loads(up.stdout), cluster, time.monotonic() - started
    finally:
        down = builder.run("cluster", "down", "--env", str(ENV_FILE), timeout=300)
        assert down.returncode == 0, down.stderr
        assert not qemu_processes(str(builder.state / "cluster")), "VMs left running"


def _status(builder) -> dict:
    return builder_json(builder, "cluster", "status", "--env", str(ENV_FILE), timeout=300)


def _on(cluster, role: str) -> list:
    return [n for n in cluster.nodes if n.role == role]


def _run(cluster, node, command: str) -> str:
    proc = ssh(cluster.vm(node), cluster.key, USER, command, timeout=60)
    return proc.stdout


def test_bakes_installed_the_bundles(saleor_images):
    _, report = saleor_images
    assert [b["status"] for b in report["bakes"]] == ["baked"] * 3, report
    for bake in report["bakes"]:
        print(f"{bake['role']}: baked in {bake['seconds']} s")


def test_every_node_ready_from_its_seed(shop):
    _, up, cluster, seconds = shop
    roles = sorted(n["role"] for n in up["nodes"])
    assert roles == sorted(["etcd-patroni", "haproxy", "redis", "saleor-api", "saleor-api",
                            "saleor-dashboard", "storefront"])
    assert up["skipped_roles"] == []
    print(f"shop up from cold: {seconds:.0f} s; ready per node: {up['ready_seconds']}")


def test_post_boot_suites_pass_on_the_saleor_tier(shop, tmp_path):
    builder, _, cluster, _ = shop
    assert not post_boot_failures(builder, cluster, SALEOR_TIER + ("haproxy", "redis"),
                                  tmp_path)


def test_graphql_through_haproxy_port_80_from_the_database(shop):
    builder, _, _, _ = shop
    endpoints = _status(builder)["endpoints"]
    # Four answers: both API nodes, round robin.
    answers = [graphql_shop(endpoints["api"]["port"]) for _ in range(4)]
    assert all(a == {"data": {"shop": {"name": "Saleor e-commerce"}}} for a in answers), answers


def test_dashboard_through_haproxy_port_9000_with_api_url_rewritten(shop):
    builder, _, cluster, _ = shop
    endpoints = _status(builder)["endpoints"]
    haproxy = _on(cluster, "haproxy")[0].address
    status, page = fetch(f"http://127.0.0.1:{endpoints['dashboard']['port']}/")
    assert status == 200
    assert f'API_URL: "http://{haproxy}/graphql/"' in page
    assert "localhost:8000" not in page  # the bundle's placeholder is gone
    status, deep = fetch(f"http://127.0.0.1:{endpoints['dashboard']['port']}/orders/123")
    assert status == 200 and deep == page  # SPA fallback


def test_storefront_renders_the_shop_from_the_api(shop):
    builder, _, _, _ = shop
    endpoints = _status(builder)["endpoints"]
    status, page = fetch(f"http://127.0.0.1:{endpoints['storefront']['port']}/")
    assert status == 200
    assert "Saleor e-commerce" in page and "default-channel" in page


def test_migrations_ran_once_for_the_release(shop):
    builder, _, cluster, _ = shop
    dsn = _status(builder)["endpoints"]["postgres"]["dsn"]
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        rows = conn.execute("SELECT release, node FROM builder_releases "
                            "WHERE task = 'migrate'").fetchall()
        applied = conn.execute("SELECT count(*), count(DISTINCT (app, name)) "
                               "FROM django_migrations").fetchone()
    assert len(rows) == 1 and rows[0][0] == "saleor-0.1.0", rows
    assert applied[0] == applied[1]  # no migration applied twice
    reports = [probe.agent_report(cluster.vm(n), cluster.key, USER)["result"]["migrate"]
               for n in _on(cluster, "saleor-api")]
    assert sorted(r["ran"] for r in reports) == [False, True], reports
    assert {r["by"] for r in reports} == {rows[0][1]}
    # The bundle's schema dump went into the empty database instead of a migrate.
    [first] = [r for r in reports if r["ran"]]
    assert first["how"] == "restored" and first["applied_before"] == 0, first


def test_exactly_one_beat_and_the_worker_runs_its_tasks(shop):
    builder, _, cluster, _ = shop
    counted = beats(cluster)
    assert sorted(counted.values()) == [0, 1], counted
    recent = recent_heartbeats(_status(builder)["endpoints"]["postgres"]["dsn"])
    assert 2 <= recent <= 6, recent


def test_beat_moves_when_its_node_dies(shop):
    builder, _, cluster, _ = shop
    counted = beats(cluster)
    holder = next(name for name, count in counted.items() if count == 1)
    other = next(name for name in counted if name != holder)
    builder_json(builder, "cluster", "kill", holder, "--env", str(ENV_FILE), timeout=120)
    deadline = time.monotonic() + 240
    while beats(cluster).get(other) != 1:
        assert time.monotonic() < deadline, "beat did not move to the surviving node"
        time.sleep(5)
    print(f"beat moved to {other} {240 - (deadline - time.monotonic()):.0f} s after the kill")


# --- the API tier swapped to the container install method -----------------------------------

@pytest.fixture(scope="module")
def swapped(shop, container_image):
    """The replacement an operator makes after the beat test's kill: the dead API node's
    slot gets an instance of the container image, a newer release, beside the surviving
    bundle node (both methods serve one tier). The storefront and the dashboard are done
    with and powered off first, to give the boot the CPUs. Returns the cluster as it is
    then and the new node."""
    builder, _, cluster, _ = shop
    for node in _on(cluster, "storefront") + _on(cluster, "saleor-dashboard"):
        builder_json(builder, "cluster", "kill", node.name, "--env", str(ENV_FILE),
                     timeout=120)
    dead = [n for n in _on(cluster, "saleor-api") if not cluster.vm(n).running()]
    victim = (dead or _on(cluster, "saleor-api"))[0].name
    swapper, report, _, _ = container_image
    image = Path(report["bakes"][0]["artifact"]).name
    done = builder_json(swapper, "cluster", "replace", victim, "--env", str(ENV_FILE),
                        "--image", image, timeout=1800)
    assert done["image"] == image
    print(f"{victim} replaced by {image}, ready after {done['ready_seconds']} s")
    after = load(swapper.state, ENV)
    return swapper, after, after.node(victim)


def test_container_bake_pulled_the_pinned_image_through_the_mirror(container_image):
    _, report, _, _ = container_image
    (bake,) = report["bakes"]
    assert bake["status"] == "baked", report
    print(f"saleor-api (container) baked in {bake['seconds']} s")


def test_the_image_keeps_none_of_the_bakes_mirror_settings(container_image):
    """Baked with apt, pip, npm and registry mirrors set: the sealed disk has Debian's apt
    sources back and no pip, npm, proxy or registry-mirror file (the bake's own inspection
    refuses such a disk; this reads it again, independently)."""
    swapper, report, _, env_file = container_image
    project = find_project(start=swapper.root)
    mirrors = specs.load_environment(str(env_file), project, specs.load_roles(project)).mirrors
    art = Path(report["bakes"][0]["artifact"])
    with inspect.Image(art / "saleor-api.qcow2") as img:
        assert inspect.hygiene(img, "builder-bake", inspect.mirror_urls(mirrors)) == []
        for path in ("/etc/pip.conf", "/etc/npmrc", "/etc/apt/apt.conf.d/01builder-proxy",
                     "/etc/containers/registries.conf.d/90-builder-mirrors.conf"):
            assert not img.exists(path), path
        sources = "".join(img.read(f"/etc/apt/sources.list.d/{n}") or "" for n in
                          img.listdir("/etc/apt/sources.list.d")) + \
            (img.read("/etc/apt/sources.list") or "")
    assert bases.DEBIAN_MIRROR in sources and "10.0.2.2" not in sources and \
        "127.0.0.1" not in sources, sources


def test_the_new_node_runs_the_pushed_image(swapped, container_image):
    _, cluster, node = swapped
    _, report, digest, _ = container_image
    assert node.artifact == report["bakes"][0]["artifact"]
    image = json.loads(_run(cluster, node, "cat /etc/builder/image.json"))
    assert image["container"]["digest"] == digest
    assert image["container"]["stand_in"] is True
    assert "bundle" not in image


def test_post_boot_suites_pass_on_the_container_node(swapped, tmp_path):
    swapper, cluster, node = swapped
    nodes = [n for n in cluster.nodes if n.name == node.name or n.role == "haproxy"]
    assert not post_boot_failures(swapper, dataclasses.replace(cluster, nodes=nodes), None,
                                  tmp_path)


def test_graphql_through_haproxy_from_both_install_methods(swapped):
    """Round robin over the bundle node and the container node (which answers on its own
    address in its post-boot suite)."""
    swapper, _, _ = swapped
    api = _status(swapper)["endpoints"]["api"]["port"]
    answers = [graphql_shop(api) for _ in range(4)]
    assert all(a == {"data": {"shop": {"name": "Saleor e-commerce"}}} for a in answers), answers


def test_the_new_release_migrated_by_its_first_node_and_one_beat_across_methods(swapped):
    """The container node is the first of release 0.2.0: it migrates, under the same lock;
    the beat lock is the tier's, whatever the method: one beat, on the bundle node that
    took it over, and none in the container node."""
    swapper, cluster, node = swapped
    report = probe.agent_report(cluster.vm(node), cluster.key, USER)["result"]
    assert report["install"] == "container"
    assert report["migrate"]["ran"] is True, report
    assert report["migrate"]["how"] == "migrated", report  # a schema was there: no restore
    counted = beats(cluster)
    assert sorted(counted.values()) == [0, 1] and counted[node.name] == 0, counted
    assert _run(cluster, node, "sudo podman ps --all --quiet --filter name=^saleor-beat$ "
                               "| wc -l").strip() == "0"
    dsn = _status(swapper)["endpoints"]["postgres"]["dsn"]
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        rows = conn.execute("SELECT release, node FROM builder_releases "
                            "WHERE task = 'migrate' ORDER BY release").fetchall()
    recent = recent_heartbeats(dsn)
    assert [r[0] for r in rows] == ["saleor-0.1.0", f"saleor-{CONTAINER_VERSION}"], rows
    assert rows[1][1] == report["migrate"]["by"]
    assert 2 <= recent <= 6, recent  # one beat every 10 s, tasks run by either worker
