"""The Saleor tier from its bundles: stand-in applications (tests/fixtures/*-standin, the
real sources are unreachable here) vendored into bundles, baked with the real install
steps, booted with the data tier by `builder cluster up`, configured by their node agents,
and reached through HAProxy :80 and :9000 and the storefront's :3000.

Then the API tier moves to saleor-api's `container` install method in the running shop, as
an operator swaps an image version: a stand-in of the official image (the real one is
unreachable here) built with mmdebstrap, pushed to a local TLS registry (Debian's
docker-registry), pulled by podman in the bake VM through the environment's registry mirror
with our test CA trusted through `ca_certificates`; then each API node is replaced by one
booted from that image and run by its Quadlet units. One cluster serves both methods, so
the data tier boots once for the whole module."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import psycopg
import pytest
import registry as oci
from conftest import (
    REPO,
    Builder,
    builder_json,
    fetch,
    graphql_shop,
    post_boot_failures,
    qemu_processes,
)

from builder.cluster import probe
from builder.cluster.state import USER, load
from builder.cluster.vm import ssh
from builder.project import copy_tree

pytestmark = pytest.mark.vm
ENV_FILE = REPO / "tests" / "fixtures" / "saleor-tier.yaml"
ENV = "saleor-tier"
SALEOR_TIER = ("saleor-api", "saleor-dashboard", "storefront")
# What each stand-in's bundle is made from, and how.
STAND_INS = {
    "saleor": ("saleor-standin", ["--runtime", "system", "--python-version", "3.13"]),
    "dashboard": ("dashboard-standin", []),
    "storefront": ("storefront-standin", []),
}
BEAT = "^/opt/saleor/venv/bin/python3? /opt/saleor/venv/bin/celery .*beat"
CONTAINER_BEAT = "^/app/.venv/bin/python3? /app/.venv/bin/celery .*beat"
# The container image is a newer release than the bundles: its first node migrates.
CONTAINER_VERSION = "0.2.0"


def _standin_rootfs(builder: Builder, work: Path) -> Path:
    made = builder_json(builder, "vendor", "saleor", "--version", CONTAINER_VERSION, "--source",
                        str(REPO / "tests" / "fixtures" / "saleor-standin"), "--out",
                        str(work), "--runtime", "system", "--python-version", "3.13",
                        timeout=900)
    return oci.build_saleor_standin_rootfs(Path(made["path"]), work / "rootfs.tar")


@pytest.fixture(scope="module")
def container_image(baked, tmp_path_factory):
    """saleor-api baked with install: container, pinned by digest, in a project copy sharing
    the data tier's state; baked before the bundles, so `cluster up` boots the bundle image
    (the newest) and the swap names this one."""
    builder, _ = baked
    work = tmp_path_factory.mktemp("oci")
    started = time.monotonic()
    rootfs = _standin_rootfs(builder, work)
    root = copy_tree(tmp_path_factory.mktemp("container-project"), REPO)
    spec = root / "images" / "saleor-api.yaml"
    text = spec.read_text()
    assert "install: bundle\n" in text and 'tag: "3.23.28"' in text
    with oci.Registry(work / "registry", oci.make_tls(work / "tls")) as reg:
        digest = oci.push_image(reg, "saleor/saleor", CONTAINER_VERSION, rootfs,
                                oci.saleor_standin_config(CONTAINER_VERSION))
        print(f"stand-in image built and pushed in {time.monotonic() - started:.0f} s")
        spec.write_text(text.replace("install: bundle\n", "install: container\n").replace(
            'tag: "3.23.28"', f'tag: "{CONTAINER_VERSION}"\n  digest: {digest}'))
        env = root / "registry-mirror.yaml"
        env.write_text(f"name: registry-mirror\nmirrors:\n  registries:\n"
                       f"    ghcr.io: {reg.vm_address()}\nca_certificates: [{reg.ca}]\n")
        swapper = Builder(root, builder.state)
        report = builder_json(swapper, "bake", "saleor-api", "--target", "qemu", "--env",
                              str(env), timeout=3600)
    return swapper, report, digest


@pytest.fixture(scope="module")
def saleor_images(baked, container_image, tmp_path_factory):
    """Stand-in bundles in a private vendor/, and the three Saleor-tier roles baked from them
    next to the data tier's images."""
    builder, _ = baked
    vendor = tmp_path_factory.mktemp("vendor")
    for app, (source, options) in STAND_INS.items():
        made = builder_json(builder, "vendor", app, "--version", "0.1.0", "--source",
                     str(REPO / "tests" / "fixtures" / source), "--out", str(vendor), *options,
                     timeout=900)
        assert made["stand_in"] is True, made
    builder.extra_env["BUILDER_VENDOR"] = str(vendor)
    baked_tier = builder_json(builder, "bake", *SALEOR_TIER, "--target", "qemu", "--parallel", "2",
                       timeout=3600)
    return builder, baked_tier


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


def test_exactly_one_beat_and_the_worker_runs_its_tasks(shop):
    builder, _, cluster, _ = shop
    api = _on(cluster, "saleor-api")
    beats = {n.name: _run(cluster, n, f"pgrep -c -f '{BEAT}' || true").strip() for n in api}
    assert sorted(beats.values()) == ["0", "1"], beats
    dsn = _status(builder)["endpoints"]["postgres"]["dsn"]
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        time.sleep(45)
        recent = conn.execute("SELECT count(*) FROM standin_heartbeat "
                              "WHERE at > now() - interval '40 seconds'").fetchone()[0]
    # One beat sends the task every 10 s: about 4; two beats would make about 8.
    assert 2 <= recent <= 6, recent


def test_beat_moves_when_its_node_dies(shop):
    builder, _, cluster, _ = shop
    api = _on(cluster, "saleor-api")
    holder = next(n for n in api if _run(cluster, n, f"pgrep -c -f '{BEAT}' || true")
                  .strip() == "1")
    other = next(n for n in api if n.name != holder.name)
    builder_json(builder, "cluster", "kill", holder.name, "--env", str(ENV_FILE), timeout=120)
    deadline = time.monotonic() + 240
    while _run(cluster, other, f"pgrep -c -f '{BEAT}' || true").strip() != "1":
        assert time.monotonic() < deadline, "beat did not move to the surviving node"
        time.sleep(5)
    print(f"beat moved to {other.name} {240 - (deadline - time.monotonic()):.0f} s after the kill")


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
        builder_json(builder, "cluster", "kill", node.name, "--env", str(ENV_FILE), timeout=120)
    dead = [n for n in _on(cluster, "saleor-api") if not cluster.vm(n).running()]
    victim = (dead or _on(cluster, "saleor-api"))[0].name
    swapper, report, _ = container_image
    image = Path(report["bakes"][0]["artifact"]).name
    done = builder_json(swapper, "cluster", "replace", victim, "--env", str(ENV_FILE),
                        "--image", image, timeout=1800)
    assert done["image"] == image
    print(f"{victim} replaced by {image}, ready after {done['ready_seconds']} s")
    after = load(swapper.state, ENV)
    return swapper, after, after.node(victim)


def test_container_bake_pulled_the_pinned_image_through_the_mirror(container_image):
    _, report, _ = container_image
    (bake,) = report["bakes"]
    assert bake["status"] == "baked", report
    print(f"saleor-api (container) baked in {bake['seconds']} s")


def test_the_new_node_runs_the_pushed_image(swapped, container_image):
    _, cluster, node = swapped
    _, report, digest = container_image
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
    beats = {n.name: int(_run(cluster, n, f"pgrep -c -f '{BEAT}|{CONTAINER_BEAT}' || true"))
             for n in _on(cluster, "saleor-api") if cluster.vm(n).running()}
    assert sorted(beats.values()) == [0, 1] and beats[node.name] == 0, beats
    assert _run(cluster, node, "sudo podman ps --all --quiet --filter name=^saleor-beat$ "
                               "| wc -l").strip() == "0"
    dsn = _status(swapper)["endpoints"]["postgres"]["dsn"]
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        rows = conn.execute("SELECT release, node FROM builder_releases "
                            "WHERE task = 'migrate' ORDER BY release").fetchall()
        time.sleep(45)
        recent = conn.execute("SELECT count(*) FROM standin_heartbeat "
                              "WHERE at > now() - interval '40 seconds'").fetchone()[0]
    assert [r[0] for r in rows] == ["saleor-0.1.0", f"saleor-{CONTAINER_VERSION}"], rows
    assert rows[1][1] == report["migrate"]["by"]
    assert 2 <= recent <= 6, recent  # one beat every 10 s, tasks run by either worker
