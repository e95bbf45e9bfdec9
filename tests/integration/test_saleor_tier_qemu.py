"""The Saleor tier from its bundles: stand-in applications (tests/fixtures/*-standin, the
real sources are unreachable here) vendored into bundles, baked with the real install
steps, booted with the data tier by `builder cluster up`, configured by their node agents,
and reached through HAProxy :80 and :9000 and the storefront's :3000."""

from __future__ import annotations

import json
import time

import psycopg
import pytest
from conftest import REPO, builder_json, fetch, graphql_shop, post_boot_failures, qemu_processes

from builder.cluster import probe
from builder.cluster.state import USER, load
from builder.cluster.vm import ssh

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


@pytest.fixture(scope="module")
def saleor_images(baked, tmp_path_factory):
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
    assert not post_boot_failures(builder, cluster, SALEOR_TIER + ("haproxy",), tmp_path)


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
