"""The HA database from cold VMs, through the CLI an operator uses: `builder cluster up`
boots 3 x etcd-patroni and 1 x HAProxy from the baked images on a private network; each
node configures itself from its seed. Then a primary crash under a steady writer, the
replacement of a dead node, and the graceful power-off of the primary (switchover and etcd
leave before it stops). The rolling upgrade is test_upgrade_qemu.py's."""

from __future__ import annotations

import json
import time

import psycopg
import pytest
from clusterops import await_write_off, cli_json, wait_healthy, writing
from conftest import post_boot_failures, qemu_processes

from builder.cluster import health
from builder.cluster.state import load
from builder.cluster.writer import CONNECT, Writer

pytestmark = pytest.mark.vm
DB = "etcd-patroni"


def _server(dsn: str) -> tuple[str, bool]:
    with psycopg.connect(dsn, autocommit=True, **CONNECT) as conn:
        addr, recovery = conn.execute("SELECT host(inet_server_addr()), pg_is_in_recovery()"
                                      ).fetchone()
    return addr, recovery


@pytest.fixture(scope="module")
def cluster(baked):
    builder, _ = baked
    started = time.monotonic()
    up = builder.run("cluster", "up", "--role", DB, "--role", "haproxy", "--json",
                     timeout=2400)
    try:
        assert up.returncode == 0, up.stdout[-2000:] + up.stderr[-3000:]
        yield builder, json.loads(up.stdout), time.monotonic() - started
    finally:
        down = builder.run("cluster", "down", timeout=300)
        assert down.returncode == 0, down.stderr
        assert not qemu_processes(str(builder.state / "cluster")), "VMs left running"
        assert not (builder.state / "cluster" / "local").exists()


def test_cold_cluster_one_leader_two_streaming_replicas_three_etcd_members(cluster):
    builder, up, seconds = cluster
    assert sorted(n["role"] for n in up["nodes"]) == [DB, DB, DB, "haproxy"]
    status = wait_healthy(builder)
    db = health.db_nodes(status)
    assert len(db) == 3 and all(n["agent"] == "ready" for n in db.values())
    assert sorted(n["patroni"]["state"] for n in db.values()) == \
        ["running", "streaming", "streaming"]
    assert all(n["etcd"]["healthy"] for n in db.values())
    print(f"cluster up from cold: {seconds:.0f} s; ready per node: {up['ready_seconds']}")


def test_post_boot_suites_pass_on_every_node(cluster, tmp_path):
    """tests/images/<role>/test_boot_*.py (and the common one) against each running node."""
    builder, _, _ = cluster
    wait_healthy(builder)
    assert not post_boot_failures(builder, load(builder.state, "local"), None, tmp_path)


def test_haproxy_routes_writes_to_the_leader_only_and_reads_to_replicas(cluster):
    builder, _, _ = cluster
    status = wait_healthy(builder)
    endpoints = status["endpoints"]
    dsn = endpoints["postgres"]["dsn"]
    leader = health.leader(status)
    for _ in range(5):  # every new connection, not only the first
        assert _server(dsn) == (leader["address"], False)
    replicas = dsn.replace(f":{endpoints['postgres']['port']}/",
                           f":{endpoints['postgres-replicas']['port']}/")
    address, recovery = _server(replicas)
    assert recovery and address != leader["address"]


def test_etcd_leadership_stays_off_the_primarys_node(cluster):
    """A crash of a VM holding both would make a new etcd leader renew Patroni's leader key
    by a whole ttl (builder/agent/etcd_leader.py): the guard keeps them apart."""
    builder, _, _ = cluster
    deadline = time.monotonic() + 60
    while True:
        status = wait_healthy(builder)
        etcd_leaders = [name for name, n in health.db_nodes(status).items()
                        if n["etcd"].get("leader")]
        patroni_leader = health.leader(status)["name"]
        if len(etcd_leaders) == 1 and etcd_leaders != [patroni_leader]:
            break
        assert time.monotonic() < deadline, \
            f"etcd leader(s) {etcd_leaders}, Patroni leader {patroni_leader}"
        time.sleep(3)


def test_primary_crash_loses_no_acknowledged_write(cluster):
    builder, _, _ = cluster
    status = wait_healthy(builder)
    dsn = status["endpoints"]["postgres"]["dsn"]
    old = health.leader(status)
    writer = Writer(dsn).start()
    try:
        writing(writer)
        killed = cli_json(builder, "cluster", "kill", old["name"])
        assert killed["killed"]
        moment = time.monotonic()
        await_write_off(writer, moment, old["address"], 180, "no write taken after the kill")
        outage = writer.outage_around(moment)
        time.sleep(2)
    finally:
        # Stopped once the new primary takes writes: a connection per write kept the new
        # primary's guest 65-85 % busy through the old one's 11-minute rejoin (2026-12-03),
        # which is not what this test is about; every acknowledged write is checked below.
        writer.stop()
    cli_json(builder, "cluster", "start", old["name"], timeout=1200)
    after = wait_healthy(builder)
    new = health.leader(after)
    assert new["name"] != old["name"]
    # The old primary rejoined as a replica.
    assert health.db_nodes(after)[old["name"]]["patroni"]["state"] == "streaming", after
    assert writer.missing(dsn) == [], "acknowledged writes lost"
    assert writer.misrouted == 0, f"{writer.misrouted} writes refused read-only: " \
                                  f"{writer.errors[-8:]}"
    print(f"primary crash: write outage {outage:.1f} s, {len(writer.acks)} writes acknowledged")


def test_replace_dead_node_joins_etcd_and_patroni_as_replica(cluster):
    builder, _, _ = cluster
    status = wait_healthy(builder)
    victim = sorted(n for n, row in health.db_nodes(status).items()
                    if row["patroni"]["role"] != "leader")[0]
    old_id = health.db_nodes(status)[victim]["instance_id"]
    cli_json(builder, "cluster", "kill", victim)
    replaced = cli_json(builder, "cluster", "replace", victim, timeout=1800)
    assert replaced["replaced"] == old_id and replaced["instance_id"] != old_id
    # Like for like: the image it ran, not the newer one the upgrade test rolls out.
    assert replaced["image"] == health.db_nodes(status)[victim]["image"], replaced
    after = wait_healthy(builder)
    row = health.db_nodes(after)[victim]
    assert row["instance_id"] == replaced["instance_id"]
    assert row["patroni"]["state"] == "streaming"
    assert all(n["etcd"]["healthy"] for n in health.db_nodes(after).values())


def _etcd_members(builder, name: str) -> list[str]:
    """Member names in etcd's list, asked on node `name`."""
    from builder.cluster.state import USER
    from builder.cluster.vm import ssh

    cluster = load(builder.state, "local")
    node = cluster.node(name)
    proc = ssh(cluster.vm(node), cluster.key, USER,
               f"etcdctl --endpoints=http://{node.address}:2379 member list -w json", timeout=60)
    assert proc.returncode == 0, proc.stderr
    return sorted(m.get("name", "") for m in json.loads(proc.stdout)["members"])


def test_graceful_power_off_of_the_primary_switches_over_and_leaves_etcd(cluster):
    """`cluster stop` of the primary, a power-off from inside as an autoscaling group
    terminates an instance: before Patroni stops, its agent switches over to a streaming
    replica and removes its own etcd member. No acknowledged write is lost and the outage is
    the switchover's. (A replacement's join is test_replace_dead_node's: the slot is not
    replaced again here, to keep the suite's time.)"""
    builder, _, _ = cluster
    status = wait_healthy(builder)
    dsn = status["endpoints"]["postgres"]["dsn"]
    old = health.leader(status)
    survivor = next(n for n in health.db_nodes(status) if n != old["name"])
    writer = Writer(dsn).start()
    try:
        writing(writer)
        moment = time.monotonic()
        stopped = cli_json(builder, "cluster", "stop", old["name"], timeout=600)
        await_write_off(writer, moment, old["address"], 60, "no write on the new primary")
        outage = writer.outage_around(moment)
        time.sleep(2)
    finally:
        writer.stop()
    leave = stopped["leave"]
    assert leave and leave.get("switchover") == "done" and leave.get("etcd") == "removed", \
        stopped
    assert writer.missing(dsn) == [], "acknowledged writes lost"
    assert old["name"] not in _etcd_members(builder, survivor)
    print(f"graceful stop of the primary: write outage {outage:.1f} s, switchover "
          f"{leave.get('seconds')} s, power-off done after {stopped['seconds']} s, "
          f"{writer.misrouted} writes refused read-only, {len(writer.acks)} acknowledged")


@pytest.mark.parametrize("args, field", [
    (("cluster", "kill", "no-such-node"), "NODE"),
    (("cluster", "up", "--role", DB, "--role", "haproxy"), "--env"),
    (("cluster", "status", "--env", "no-such-env"), "no-such-env"),
    (("cluster", "up", "--role", "no-such-role"), "--role"),
    (("cluster", "upgrade", DB, "--version", "0.0.0-none"), "--version"),
    (("cluster", "upgrade", "haproxy"), "ROLE"),
])
def test_bad_input_one_line_exit_2(cluster, args, field):
    builder, _, _ = cluster
    proc = builder.run(*args, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and field in proc.stderr
