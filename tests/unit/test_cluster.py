"""`builder cluster` without VMs: the plan (slots, addresses, MACs, what is left out), the
seed's network-config, the private switch, reading a status, and bad input. The VMs
themselves are booted in tests/integration/test_cluster_qemu.py."""

from __future__ import annotations

import ipaddress
import json
import shutil

import pytest
import yaml

from builder import spec as specs
from builder.bench.failover import seed_config
from builder.cluster import health, manage, seed, views
from builder.cluster.network import Switch
from builder.cluster.state import Node
from builder.errors import UserError
from builder.registry import Registry, default_path
from builder.spec.project import find_project

from .helpers import REPO, copy_project, register, run_builder


@pytest.fixture
def project(tmp_path, monkeypatch):
    root = copy_project(tmp_path / "project")
    state = tmp_path / "state"
    monkeypatch.setenv("BUILDER_STATE", str(state))
    return find_project(start=root)


def plan(project, only=(), versions=None):
    roles = specs.load_roles(project)
    env = specs.load_environment("local", project, roles)
    return manage.plan(project, env, roles, only, versions)


def test_plan_gives_every_node_a_slot_address_and_macs(project, tmp_path):
    db = register(project, "etcd-patroni", tmp_path)
    register(project, "haproxy", tmp_path)
    nodes, skipped = plan(project)
    assert [(n.name, n.role, n.address) for n in nodes] == [
        ("etcd-patroni-1", "etcd-patroni", "10.20.0.10"),
        ("etcd-patroni-2", "etcd-patroni", "10.20.0.11"),
        ("etcd-patroni-3", "etcd-patroni", "10.20.0.12"),
        ("haproxy-1", "haproxy", "10.20.0.13")]
    assert all(ipaddress.ip_address(n.address) in ipaddress.ip_network("10.20.0.0/24")
               for n in nodes)
    macs = [m for n in nodes for m in n.macs]
    assert len(set(macs)) == len(macs) and all(m.startswith("52:54:00:") for m in macs)
    assert len({n.instance_id for n in nodes}) == 4
    assert nodes[0].artifact == db and nodes[0].memory == 1536
    # Roles of the environment without an image are left out, and said so.
    assert sorted(skipped) == ["redis", "saleor-api", "saleor-dashboard", "storefront"]


def test_plan_needs_the_database_and_haproxy_images(project, tmp_path):
    register(project, "etcd-patroni", tmp_path)
    with pytest.raises(UserError, match="builder bake haproxy") as err:
        plan(project)
    assert err.value.field == "--role"


def test_up_boots_a_pinned_version_instead_of_the_newest(project, tmp_path):
    old = register(project, "etcd-patroni", tmp_path, version="1.1.0")
    new = register(project, "etcd-patroni", tmp_path, version="1.2.0")
    register(project, "haproxy", tmp_path)
    assert {n.artifact for n in plan(project)[0] if n.role == "etcd-patroni"} == {new}
    nodes, _ = plan(project, versions=manage.pinned(("etcd-patroni=1.1.0",)))
    assert {n.artifact for n in nodes if n.role == "etcd-patroni"} == {old}


@pytest.mark.parametrize("pairs, words", [
    (("etcd-patroni",), "expected ROLE=VERSION"),
    (("=1.0.0",), "expected ROLE=VERSION"),
    (("etcd-patroni=1.0.0", "etcd-patroni=1.1.0"), "two versions for etcd-patroni"),
    (("nope=1.0.0",), "unknown role 'nope'"),
    (("etcd-patroni=9.9.9",), "no tested qemu image of etcd-patroni version 9.9.9"),
])
def test_a_bad_pinned_version_names_the_flag(project, tmp_path, pairs, words):
    register(project, "etcd-patroni", tmp_path)
    register(project, "haproxy", tmp_path)
    with pytest.raises(UserError, match=words) as err:
        plan(project, versions=manage.pinned(pairs))
    assert err.value.field == "--version"


def test_a_pinned_role_must_be_booted(project, tmp_path):
    register(project, "etcd-patroni", tmp_path)
    register(project, "haproxy", tmp_path)
    with pytest.raises(UserError, match="not booted in this cluster") as err:
        plan(project, only=("etcd-patroni", "haproxy"),
             versions=manage.pinned(("redis=1.0.0",)))
    assert err.value.field == "--version"


def test_plan_rejects_an_unknown_role(project):
    with pytest.raises(UserError, match="unknown role 'nope'"):
        plan(project, only=("nope",))


def test_network_config_matches_nics_by_mac():
    data = yaml.safe_load(seed.network_config("52:54:00:00:00:01", "52:54:00:00:00:02",
                                              "10.20.0.11", 24))
    assert data["version"] == 2
    mgmt, cluster = data["ethernets"]["mgmt"], data["ethernets"]["cluster"]
    assert mgmt == {"match": {"macaddress": "52:54:00:00:00:01"}, "dhcp4": True}
    assert cluster["match"] == {"macaddress": "52:54:00:00:00:02"}
    assert cluster["addresses"] == ["10.20.0.11/24"] and cluster["dhcp4"] is False


@pytest.mark.skipif(shutil.which("vde_switch") is None, reason="vde2 is not installed")
def test_switch_starts_as_a_daemon_and_stops(tmp_path):
    switch = Switch(tmp_path / "c").start()
    try:
        assert switch.running() and (switch.socket_dir / "ctl").exists()
        assert oct(switch.socket_dir.stat().st_mode & 0o777) == "0o700"
    finally:
        assert switch.stop()
    assert not switch.running() and not switch.socket_dir.exists()
    assert not Switch(tmp_path / "c").stop()  # nothing left to stop


def test_node_round_trips_through_json():
    node = Node("haproxy-1", "haproxy", "10.20.0.13", "i-1", "/a", 2222, ["m1", "m2"], 1024, 2,
                forwards={5432: 40000})
    assert Node.from_json(json.loads(json.dumps(node.__dict__))) == node


def _status(*db: tuple[str, str, bool]) -> dict:
    return {"nodes": [{"name": f"etcd-patroni-{i}", "role": "etcd-patroni",
                       "patroni": {"role": role, "state": state}, "etcd": {"healthy": etcd}}
                      for i, (role, state, etcd) in enumerate(db, 1)]
            + [{"name": "haproxy-1", "role": "haproxy"}]}


def test_whole_means_one_leader_others_streaming_and_etcd_healthy():
    good = _status(("leader", "running", True), ("sync_standby", "streaming", True),
                   ("replica", "streaming", True))
    assert health.whole(good) and health.leader(good)["name"] == "etcd-patroni-1"
    assert not health.whole(_status(("leader", "running", True),
                                    ("replica", "stopped", True),
                                    ("replica", "streaming", True)))
    assert not health.whole(_status(("leader", "running", True),
                                    ("replica", "streaming", False),
                                    ("replica", "streaming", True)))
    assert not health.whole(_status(("replica", "running", True),
                                    ("replica", "streaming", True),
                                    ("absent", None, False)))


def test_the_human_status_masks_the_password():
    assert views._mask("postgresql://saleor:s3cret@127.0.0.1:5/saleor") == \
        "postgresql://saleor:***@127.0.0.1:5/saleor"


def test_the_human_status_shows_where_a_booting_agent_is(capsys):
    row = {"name": "saleor-api-1", "role": "saleor-api", "version": "1.2.0",
           "address": "10.20.0.31", "power": "running", "agent": "booting",
           "agent_step": "role", "agent_progress": {"task": "migrate", "applied": 632,
                                                     "total": 1406, "last": "order.0190_z"}}
    views.status({"cluster": "shop", "env": "local", "cidr": "10.20.0.0/24", "nodes": [row],
                  "endpoints": {}, "ssh_key": "/k"})
    shown = capsys.readouterr().out
    assert "agent at: role, migrate 632/1406 (last order.0190_z)" in shown
    views.status({"cluster": "shop", "env": "local", "cidr": "10.20.0.0/24", "endpoints": {},
                  "ssh_key": "/k", "nodes": [row | {"agent_progress": None}]})
    assert "agent at: role\n" in capsys.readouterr().out


def test_the_seed_backend_replaces_only_the_postgres_section():
    ours = (REPO / "templates/haproxy/haproxy.cfg.j2").read_text()
    db = [Node(f"db-{i}", "etcd-patroni", f"10.20.0.1{i}", "i", "/a", 1, [], 1, 1)
          for i in range(3)]
    swapped = seed_config(ours, db)
    assert "tcp-check connect port 5432" in swapped
    assert "httpchk GET /primary" not in swapped and "OPTIONS /replica" in swapped
    assert "listen postgres-replicas" in swapped and "listen stats" in swapped
    assert swapped.count("server db-") == 3


@pytest.mark.parametrize("args, code, text", [
    (["cluster", "status"], 2, "no local cluster for environment local"),
    (["cluster", "kill", "etcd-patroni-1"], 2, "builder cluster up --env local"),
    (["cluster", "replace", "etcd-patroni-1"], 2, "no local cluster"),
    (["cluster", "down"], 0, "nothing to stop"),
    (["cluster", "up", "--timeout", "1"], 2, "--timeout"),
])
def test_cluster_commands_without_a_cluster(tmp_path, args, code, text):
    root = copy_project(tmp_path / "project")
    proc = run_builder(args, root)
    assert proc.returncode == code, proc.stderr
    output = proc.stderr if code else proc.stdout
    assert text in output and "Traceback" not in proc.stderr
    if code:
        assert len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "state" / "cluster" / "local").exists()


def test_an_environment_file_names_its_cluster(tmp_path):
    root = copy_project(tmp_path / "project")
    (tmp_path / "lab.yaml").write_text("name: lab\nnodes: {etcd-patroni: 3, haproxy: 1}\n")
    down = run_builder(["cluster", "down", "--env", str(tmp_path / "lab.yaml")], root)
    assert down.returncode == 0 and "no cluster lab" in down.stdout, down.stderr
    status = run_builder(["cluster", "status", "--env", str(tmp_path / "lab.yaml")], root)
    assert status.returncode == 2 and "environment lab" in status.stderr


def test_end_asks_then_insists_and_reaps(tmp_path):
    """SIGTERM first; a process that ignores it gets SIGKILL after the grace period."""
    import subprocess
    import sys

    from builder.cluster.process import end

    polite = subprocess.Popen(["sleep", "60"])
    assert end(polite.pid, lambda: polite.poll() is None, grace=5, name="sleep")
    assert polite.returncode == -15

    stubborn = subprocess.Popen([sys.executable, "-c",
                                 "import signal, time; signal.signal(signal.SIGTERM, "
                                 "signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"],
                                stdout=subprocess.PIPE)
    assert stubborn.stdout.readline() == b"ready\n"
    assert end(stubborn.pid, lambda: stubborn.poll() is None, grace=0.5, name="stubborn")
    assert stubborn.returncode == -9
    assert not end(stubborn.pid, lambda: False, grace=1, name="gone")


def test_a_failed_up_keeps_every_console_outside_the_cluster_directory(tmp_path):
    where = tmp_path / "cluster" / "shop"
    for name, text in (("haproxy-1", "haproxy booted"), ("redis-1", "Kernel panic")):
        (where / "nodes" / name).mkdir(parents=True)
        (where / "nodes" / name / "console.log").write_text(text)
    kept = manage.keep_consoles(where, tmp_path / "logs", "shop")
    shutil.rmtree(where)
    assert kept.parent == tmp_path / "logs" and kept.name.startswith("cluster-shop-")
    assert (kept / "redis-1.console.log").read_text() == "Kernel panic"
    assert sorted(p.name for p in kept.iterdir()) == ["haproxy-1.console.log",
                                                      "redis-1.console.log"]


def test_an_image_is_chosen_by_its_name_or_else_the_newest(project, tmp_path):
    registry = Registry(default_path(project.state))
    older = register(project, "saleor-api", tmp_path, "1.2.0-aaaaaaaaaaaa")
    newer = register(project, "saleor-api", tmp_path, "1.2.0-bbbbbbbbbbbb")
    assert manage.artifact_of(registry, "saleor-api") == newer
    assert manage.artifact_of(registry, "saleor-api", "1.2.0-aaaaaaaaaaaa") == older
    assert manage.artifact_of(registry, "saleor-api", "1.2.0-cccccccccccc") is None
    assert manage.artifact_of(registry, "redis", "1.2.0-aaaaaaaaaaaa") is None


def test_status_names_the_user_of_stats_and_metrics_and_never_the_password(tmp_path):
    from builder.cluster import status
    from builder.cluster.state import Cluster

    proxy = Node("haproxy-1", "haproxy", "10.20.0.21", "i-1", "/a", 2222, [], 1, 1,
                 forwards={8080: 48080})
    cluster = Cluster(tmp_path, "local", "saleor", "10.20.0.0/24", "tcg", [proxy])
    out = status.endpoints(cluster, {"haproxy_stats_password": "sample-not-a-secret"})
    assert out["metrics"] == {"host": "127.0.0.1", "port": 48080, "user": "stats",
                              "url": "http://127.0.0.1:48080/metrics"}
    assert out["stats"]["user"] == "stats"
    assert "sample-not-a-secret" not in json.dumps(out)


@pytest.mark.parametrize("accel", ["tcg", "kvm"])
def test_a_tcg_cluster_gives_patroni_a_longer_ttl_through_node_settings(accel):
    """Under TCG a starved guest stalls past Patroni's 15 s watchdog: the seed's node.yaml
    carries the longer timing; under KVM the image's own timing stands."""
    project = find_project(start=REPO)
    roles = specs.load_roles(project)
    env = specs.load_environment("local", project, roles)
    role = roles["etcd-patroni"]
    text = seed.user_data(role, env, project, peers={}, ssh_keys=[],
                          secrets={name: "x" for name in role.secrets},
                          settings=manage.boot_settings(accel, "etcd-patroni"))
    files = {f["path"]: f for f in yaml.safe_load(text)["write_files"]}
    node = yaml.safe_load(files["/etc/builder/node.yaml"]["content"])
    if accel == "tcg":
        assert node["settings"] == manage.TCG_SETTINGS["etcd-patroni"]
        assert node["settings"]["patroni_ttl"] > 20
    else:
        assert node["settings"] == {}
    assert manage.boot_settings(accel, "haproxy") == (
        {"check_timeout": 6} if accel == "tcg" else {})
    assert manage.boot_settings(accel, "redis") == {}


def test_a_writer_shown_in_a_failed_assertion_keeps_its_password_out():
    from builder.cluster.writer import Writer

    shown = repr(Writer("postgresql://saleor:s3cret-value@127.0.0.1:5433/saleor"))
    assert "s3cret-value" not in shown and "misrouted" in shown


def test_a_booting_guest_that_resets_is_powered_on_once_more_and_a_second_reset_fails(
        tmp_path, monkeypatch, capsys):
    """A watchdog or panic under -no-reboot ends QEMU; `up` boots the same disk again once
    (as a cloud host would reboot it), keeps the first console, then gives up with the cause."""
    from builder.cluster.state import Cluster
    from builder.cluster.vm import VM

    node = Node("etcd-patroni-1", "etcd-patroni", "10.20.0.11", "i-1", str(tmp_path), 2222,
                ["m1", "m2"], 1024, 1)
    cluster = Cluster(tmp_path / "shop", "local", "shop", "10.20.0.0/24", "tcg", [node])
    console = cluster.vm(node).console
    console.parent.mkdir(parents=True)
    powered_on = []
    monkeypatch.setattr(VM, "start", lambda vm: powered_on.append(vm.name) or vm)
    console.write_text("[ 371.9] softdog: Initiating system reboot\r\n")
    resets: dict[str, list[str]] = {}
    assert manage._rebooted(cluster, node, resets) is True
    assert powered_on == ["etcd-patroni-1"]
    assert resets == {"etcd-patroni-1": ["[ 371.9] softdog: Initiating system reboot"]}
    assert "softdog" in (console.parent / "console.reset-1.log").read_text()
    assert "powered on once more" in capsys.readouterr().err

    console.write_text("[ 9.2] Kernel panic - not syncing: Attempted to kill init!\r\n")
    with pytest.raises(manage.OperationError, match=r"etcd-patroni-1: VM ended \(reset\) "
                       r"while booting after 1 reset\(s\): .*Kernel panic"):
        manage._rebooted(cluster, node, resets)
    assert powered_on == ["etcd-patroni-1"]


def test_a_guest_that_powers_itself_off_while_booting_is_not_booted_again(tmp_path,
                                                                           monkeypatch):
    from builder.cluster.state import Cluster
    from builder.cluster.vm import VM

    node = Node("redis-1", "redis", "10.20.0.14", "i-2", str(tmp_path), 2222, ["m1", "m2"],
                1024, 1)
    cluster = Cluster(tmp_path / "shop", "local", "shop", "10.20.0.0/24", "tcg", [node])
    console = cluster.vm(node).console
    console.parent.mkdir(parents=True)
    console.write_text("[ 101.2] reboot: Power down\r\n")
    monkeypatch.setattr(VM, "start", lambda vm: pytest.fail("booted again"))
    with pytest.raises(manage.OperationError, match="redis-1: VM powered off while booting: "
                                                    "reboot: Power down"):
        manage._rebooted(cluster, node, {})
