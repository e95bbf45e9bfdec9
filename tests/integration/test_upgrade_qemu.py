"""A new image version rolled through a running database tier, through the CLI an
operator uses: the data tier boots on the version the bake module baked (`cluster up
--version`), the next patch version is baked before it boots (no cluster VM competes with
the bake), and `builder cluster upgrade etcd-patroni` rolls every node onto it under a
writer through HAProxy: replicas first, one switchover. Run by `make test-upgrade`: with
its own cluster it does not fit `make test`'s hour yet (README, Tests)."""

from __future__ import annotations

import time

import pytest
from clusterops import await_write_off, cli_json, wait_healthy, writing
from conftest import REPO, Builder, qemu_processes

from builder.agent.leave import MAX_LAG
from builder.cluster import health
from builder.cluster.writer import Writer
from builder.spec.project import copy_tree

pytestmark = pytest.mark.vm
DB = "etcd-patroni"


@pytest.fixture(scope="module")
def next_db_version(baked, tmp_path_factory) -> tuple[str, str]:
    """(booted, next): the database tier boots the version the bake module baked, and its
    next patch version is baked first, while no cluster VM competes for the cores; the
    rolling-upgrade test rolls the cluster onto it."""
    builder, _ = baked
    return _bake_next_version(builder, tmp_path_factory.mktemp("next-db"))


@pytest.fixture(scope="module")
def cluster(baked, next_db_version):
    builder, _ = baked
    booted, _ = next_db_version
    started = time.monotonic()
    up = builder.run("cluster", "up", "--role", DB, "--role", "haproxy",
                     "--version", f"{DB}={booted}", "--json", timeout=2400)
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-3000:]
        yield builder, time.monotonic() - started
    finally:
        if up.returncode == 0:
            _print_haproxy_checks(builder)
        down = builder.run("cluster", "down", timeout=300)
        assert down.returncode == 0, down.stderr
        assert not qemu_processes(str(builder.state / "cluster")), "VMs left running"


def _print_haproxy_checks(builder: Builder) -> None:
    """What HAProxy saw of the database backends (servers going DOWN and UP, with the check's
    reason), printed before the cluster goes: pytest shows it when the test failed, and
    the VMs that could tell are gone after teardown."""
    from builder.cluster.state import USER, load
    from builder.cluster.vm import ssh

    try:
        cluster = load(builder.state, "local")
        [proxy] = [n for n in cluster.nodes if n.role == "haproxy"]
        proc = ssh(cluster.vm(proxy), cluster.key, USER,
                   "sudo journalctl -u haproxy --no-pager -o short-precise "
                   "| grep -E 'postgres.*(DOWN|UP)' | tail -n 60", timeout=120)
        print("HAProxy's database checks:\n" + (proc.stdout or proc.stderr))
    except Exception as exc:  # diagnostics only: never the reason a test fails
        print(f"HAProxy's checks not read: {exc}")


def _gaps(writer: Writer, began: float, ended: float) -> list[str]:
    """Each write outage with its start, seconds after the upgrade began."""
    return [f"+{start - began:.0f}s {seconds:.1f}s"
            for start, seconds in writer.gaps(began, ended, over=OUTAGE_GAP)]


# The upgrade's write outage: gaps between acknowledged writes longer than OUTAGE_GAP (the
# writer's own pace under TCG stays below it) count. One switchover measured 3.8-5.6 s
# here (README); SWITCHOVER_BOUND leaves room for a busy host and stays below a leader-key
# expiry (15-20 s even at the image's ttl of 20 s, a minute at the cluster's TCG ttl), so a
# failover in place of the switchover fails it. OUTAGE_SLACK: what else may add up (a
# stalled guest's second), far below a second event such as a synchronous standby's
# departure holding commits for a Patroni loop.
OUTAGE_GAP = 1.0
SWITCHOVER_BOUND = 15.0
OUTAGE_SLACK = 2.0


def _bake_next_version(builder: Builder, tmp_path) -> tuple[str, str]:
    """etcd-patroni baked again as the next patch version, in a copy of the project sharing
    the cluster's state (registry, package layer): the spec changes only in its version, so
    the layer is reused and the bake is a re-bake on it. Returns (the version before, the
    new version)."""
    root = copy_tree(tmp_path / "next-project", REPO)
    spec = root / "images" / f"{DB}.yaml"
    text = spec.read_text()
    current = next(line for line in text.splitlines() if line.startswith("version: "))
    major, minor, patch = current.removeprefix("version: ").split(".")
    version = f"{major}.{minor}.{int(patch) + 1}"
    spec.write_text(text.replace(current + "\n", f"version: {version}\n", 1))
    [bake] = cli_json(Builder(root, builder.state), "bake", DB, "--target", "qemu",
                   timeout=3600)["bakes"]
    assert bake["status"] == "baked", bake
    return current.removeprefix("version: "), version


def test_rolling_upgrade_of_the_database_tier_costs_one_switchover(cluster, next_db_version):
    """`cluster upgrade etcd-patroni` of all three nodes to a new image version under a
    writer through HAProxy 5432: every acknowledged write present, none misrouted, the
    write outage one switchover's, replicas first and the primary last, each node leaving
    etcd before it stops; then every node on the new version and etcd with exactly three
    healthy members. The cluster was booted on the version before (`cluster up --version`)."""
    builder, _ = cluster
    _, version = next_db_version
    status = wait_healthy(builder)
    before = health.db_nodes(status)
    old_leader = health.leader(status)
    assert version not in {row["version"] for row in before.values()}
    dsn = status["endpoints"]["postgres"]["dsn"]
    writer = Writer(dsn).start()
    try:
        writing(writer)
        began = time.monotonic()
        done = cli_json(builder, "cluster", "upgrade", DB, "--version", version, timeout=5400)
        ended = time.monotonic()
        # The old primary's slot is a replica now: a write after the upgrade lands elsewhere.
        await_write_off(writer, ended, old_leader["address"], 60, "no write after it")
        time.sleep(2)
    finally:
        writer.stop()
    outages = writer.outages(began, ended, over=OUTAGE_GAP)
    switchover = done["switchover"]
    # The order and the one switchover, as the command reports them.
    assert [n["primary"] for n in done["nodes"]] == [False, False, True], done["nodes"]
    assert done["nodes"][-1]["node"] == old_leader["name"]
    assert switchover and switchover["outcome"] == "done", done
    assert len(done["switchovers"]) == 1 and switchover["to_image"] == done["to"]
    assert all(n["new_version"] == version and n["new_instance_id"] !=
               n["old_instance_id"] for n in done["nodes"]), done["nodes"]
    assert all(n["leave"].get("etcd") == "removed" for n in done["nodes"]), done["nodes"]
    # What the application saw.
    assert writer.missing(dsn) == [], "acknowledged writes lost"
    assert writer.misrouted == 0, f"{writer.misrouted} writes refused read-only: " \
                                  f"{writer.errors[-8:]}"
    longest = max(outages, default=0.0)
    steps = [(n["node"], {k: v for k, v in n.items() if k.endswith("seconds")})
             for n in done["nodes"]]
    assert longest <= SWITCHOVER_BOUND, (_gaps(writer, began, ended), steps, writer.errors[-8:])
    assert sum(outages) <= longest + OUTAGE_SLACK, (_gaps(writer, began, ended), steps,
                                                    writer.errors[-4:])
    # The cluster afterwards.
    after = wait_healthy(builder)
    db = health.db_nodes(after)
    assert {row["version"] for row in db.values()} == {version}, db
    assert health.problems(after, MAX_LAG) == [], after
    members = after["etcd_members"]
    assert sorted(m["name"] for m in members) == sorted(db) and len(members) == 3
    assert not any(m["learner"] for m in members)
    assert all(row["etcd"]["healthy"] for row in db.values())
    # A second run finds every node on the target: nothing to do, no node touched.
    again = cli_json(builder, "cluster", "upgrade", DB, "--version", version)
    assert again["nodes"] == [] and sorted(again["skipped"]) == sorted(db)
    print(f"rolling upgrade to {done['to']}: {done['seconds']:.0f} s; write outages "
          f"{outages} s; switchover {switchover['from']} -> {switchover['to']} "
          f"({switchover['seconds']} s); ready after boot per node: "
          f"{ {n['node']: n['ready_seconds'] for n in done['nodes']} }; "
          f"{len(writer.acks)} writes acknowledged")
