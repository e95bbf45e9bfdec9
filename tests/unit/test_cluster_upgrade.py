"""`builder cluster upgrade` without VMs: the decisions of builder/cluster/upgrade.py on
status documents shaped as `cluster status --json` gives them (the order, one switchover,
resuming, refusing an unhealthy cluster, the rollout record, the failure line), and the
command's refusals on a cluster state whose VMs are off. The rollout itself runs in
tests/integration/test_cluster_qemu.py."""

from __future__ import annotations

import json

import pytest

from builder import spec as specs
from builder.agent.leave import MAX_LAG
from builder.cluster import health, manage, upgrade
from builder.cluster.state import Cluster, directory, locked
from builder.errors import UserError
from builder.registry import Registry, default_path
from builder.spec.project import find_project

from .helpers import copy_project, register, run_builder

OLD, NEW = "1.1.0-aaaaaaaaaaaa", "1.2.0-bbbbbbbbbbbb"
NAMES = ("etcd-patroni-1", "etcd-patroni-2", "etcd-patroni-3")


def status(leader: str = "etcd-patroni-1", images: dict[str, str] | None = None,
           **changes: dict) -> dict:
    """A whole cluster's status: `leader` leads, the others stream with no lag, etcd has
    exactly the three members; `changes` replaces fields of a node's row."""
    images = images or {}
    nodes = []
    for name in NAMES:
        role, state = ("leader", "running") if name == leader else ("replica", "streaming")
        row = {"name": name, "role": "etcd-patroni", "power": "running", "agent": "ready",
               "image": images.get(name, OLD),
               "patroni": {"role": role, "state": state, "lag": None if role == "leader"
                           else 0},
               "etcd": {"healthy": True, "leader": False}}
        for key, value in changes.get(name.replace("-", "_"), {}).items():
            row[key] = {**row[key], **value} if isinstance(value, dict) else value
        nodes.append(row)
    nodes.append({"name": "haproxy-1", "role": "haproxy", "power": "running",
                  "agent": "ready", "image": "1.0.0-hhhhhhhhhhhh"})
    members = [{"name": n, "id": str(i), "learner": False,
                "client_urls": [f"http://10.20.0.1{i}:2379"]} for i, n in enumerate(NAMES)]
    return {"env": "local", "nodes": nodes, "etcd_members": members}


def steps(doc: dict) -> list[tuple[str, bool]]:
    return [(s.node, s.primary) for s in upgrade.plan(doc, NEW)]


def test_replicas_first_by_name_then_the_primary_with_the_one_switchover():
    assert steps(status(leader="etcd-patroni-2")) == [
        ("etcd-patroni-1", False), ("etcd-patroni-3", False), ("etcd-patroni-2", True)]


def test_a_whole_rollout_replanned_after_every_node_switches_over_once_and_last():
    """What `upgrade` does: plan, upgrade the first node, plan again from the new status."""
    doc, done = status(leader="etcd-patroni-1"), []
    while upgrade.plan(doc, NEW):
        step = upgrade.plan(doc, NEW)[0]
        done.append(step)
        images = {row["name"]: row["image"] for row in health.db_nodes(doc).values()}
        leader = health.leader(doc)["name"]
        if step.primary:  # its leave hands the primary to an (upgraded) replica
            assert all(images[n] == NEW for n in NAMES if n != step.node)
            leader = sorted(n for n in NAMES if n != step.node)[0]
        doc = status(leader=leader, images={**images, step.node: NEW})
    assert [s.node for s in done] == ["etcd-patroni-2", "etcd-patroni-3", "etcd-patroni-1"]
    assert [s.primary for s in done].count(True) == 1 and done[-1].primary


def test_a_resumed_rollout_skips_the_nodes_already_on_the_target():
    assert steps(status(images={"etcd-patroni-2": NEW})) == [
        ("etcd-patroni-3", False), ("etcd-patroni-1", True)]
    # The primary already upgraded (it moved there after a failure): no switchover at all.
    assert steps(status(images={"etcd-patroni-1": NEW})) == [
        ("etcd-patroni-2", False), ("etcd-patroni-3", False)]
    assert steps(status(images=dict.fromkeys(NAMES, NEW))) == []


def test_a_whole_cluster_is_fit():
    assert upgrade.unfit(status()) == []


@pytest.mark.parametrize("changes, reason", [
    ({"etcd_patroni_2": {"patroni": {"role": "leader", "state": "running"}}},
     "2 Patroni leaders (etcd-patroni-1, etcd-patroni-2), not 1"),
    ({"etcd_patroni_1": {"patroni": {"role": "replica", "state": "streaming"}}},
     "0 Patroni leaders (none), not 1"),
    ({"etcd_patroni_3": {"patroni": {"state": "starting"}}},
     "etcd-patroni-3 is replica/starting, not a streaming replica"),
    ({"etcd_patroni_3": {"patroni": {"lag": MAX_LAG + 1}}},
     f"etcd-patroni-3 lags {MAX_LAG + 1} bytes (at most {MAX_LAG})"),
    ({"etcd_patroni_2": {"patroni": {"lag": "unknown"}}}, "etcd-patroni-2 lags unknown bytes"),
    ({"etcd_patroni_2": {"etcd": {"healthy": False}}}, "etcd not healthy on etcd-patroni-2"),
    ({"etcd_patroni_3": {"power": "off"}}, "etcd-patroni-3 is powered off"),
    ({"etcd_patroni_3": {"agent": "configuring"}}, "etcd-patroni-3's agent is configuring"),
])
def test_an_unhealthy_cluster_is_refused_with_the_reason(changes, reason):
    assert any(reason in found for found in upgrade.unfit(status(**changes))), \
        upgrade.unfit(status(**changes))


def test_a_stale_or_unpromoted_etcd_member_is_refused():
    stale = status()
    stale["etcd_members"].append({"name": "etcd-patroni-2", "id": "99", "learner": False,
                                  "client_urls": []})
    assert upgrade.unfit(stale) == [
        "etcd members etcd-patroni-1, etcd-patroni-2, etcd-patroni-2, etcd-patroni-3 are not "
        "the nodes etcd-patroni-1, etcd-patroni-2, etcd-patroni-3"]
    learning = status()
    learning["etcd_members"][2]["learner"] = True
    assert upgrade.unfit(learning) == ["etcd learner(s) not promoted yet: etcd-patroni-3"]
    unknown = status()
    unknown["etcd_members"] = None
    assert upgrade.unfit(unknown) == ["no DB node gave etcd's member list"]


def test_fewer_than_three_database_nodes_are_refused():
    doc = status()
    doc["nodes"] = [n for n in doc["nodes"] if n["name"] != "etcd-patroni-3"]
    doc["etcd_members"] = doc["etcd_members"][:2]
    assert upgrade.unfit(doc) == ["2 etcd-patroni node(s): a rolling upgrade needs at least 3"]


def test_the_record_keeps_where_a_resumed_rollout_came_from():
    fresh = upgrade.begin(None, NEW, [OLD, OLD, OLD], False, 1.0)
    assert fresh == {"from": OLD, "to": NEW, "rollback": False, "status": "running",
                     "started_at": 1.0}
    failed = {**fresh, "status": "failed", "failed": {"node": "etcd-patroni-3"}}
    # Resumed with two nodes upgraded: still from OLD, and the first start time.
    assert upgrade.begin(failed, NEW, [NEW, NEW, OLD], False, 2.0)["from"] == OLD
    assert upgrade.begin(failed, NEW, [NEW, NEW, OLD], False, 2.0)["started_at"] == 1.0
    # A finished rollout to the same image is no resume: a new one starts from now.
    assert upgrade.begin({**fresh, "status": "done"}, "1.3.0-cccccccccccc",
                         [NEW, NEW, NEW], False, 3.0)["from"] == NEW


def test_rollback_goes_to_the_recorded_image_and_resumes_an_unfinished_rollback():
    with pytest.raises(UserError, match="nothing to roll back") as err:
        upgrade.rollback_image(None, "etcd-patroni")
    assert err.value.field == "--rollback"
    forward = {"from": OLD, "to": NEW, "rollback": False, "status": "failed"}
    assert upgrade.rollback_image(forward, "etcd-patroni") == OLD
    assert upgrade.rollback_image({**forward, "status": "done"}, "etcd-patroni") == OLD
    back = upgrade.begin(forward, OLD, [NEW, NEW, OLD], True, 4.0)
    assert back["from"] == NEW and back["to"] == OLD and back["rollback"]
    assert upgrade.rollback_image({**back, "status": "failed"}, "etcd-patroni") == OLD
    assert upgrade.rollback_image({**back, "status": "done"}, "etcd-patroni") == NEW


def test_a_failed_step_says_which_node_and_step_the_versions_and_how_to_go_on():
    record = {"from": OLD, "to": NEW, "rollback": False, "status": "failed"}
    images = {"etcd-patroni-1": OLD, "etcd-patroni-2": NEW, "etcd-patroni-3": NEW}
    line = upgrade.failure("etcd-patroni", "local", "etcd-patroni-3",
                           "wait for etcd and streaming", "cluster not fit after 1200 s:\n"
                           "etcd-patroni-3 is replica/starting", images, record)
    assert "\n" not in line
    assert line.startswith("etcd-patroni-3: wait for etcd and streaming failed: cluster not "
                           "fit after 1200 s: etcd-patroni-3 is replica/starting; ")
    assert (f"mixed versions (etcd-patroni-1 {OLD}, etcd-patroni-2 {NEW}, "
            f"etcd-patroni-3 {NEW})") in line
    assert f"resume: `builder cluster upgrade etcd-patroni --image {NEW}`" in line
    assert "roll back: `builder cluster upgrade etcd-patroni --rollback`" in line
    assert line.endswith("; if etcd-patroni-3 does not come up, first `builder cluster "
                         f"replace etcd-patroni-3 --image {NEW}`")
    last = upgrade.failure("etcd-patroni", "local", "etcd-patroni-3", "wait for etcd and "
                           "streaming", "x", dict.fromkeys(images, NEW), record)
    assert "mixed" not in last and f"every slot names {NEW};" in last, last
    lab = upgrade.failure("etcd-patroni", "lab", "etcd-patroni-3", "graceful stop", "x",
                          images, {**record, "rollback": True, "from": NEW, "to": OLD})
    assert "resume the rollback: `builder cluster upgrade etcd-patroni --rollback --env lab`" \
        in lab and f"--image {NEW} --env lab" in lab and "does not come up" not in lab


@pytest.fixture
def project(tmp_path, monkeypatch):
    root = copy_project(tmp_path / "project")
    monkeypatch.setenv("BUILDER_STATE", str(tmp_path / "state"))
    return find_project(start=root)


def test_the_target_is_chosen_by_version_or_image_and_missing_ones_name_their_flag(
        project, tmp_path):
    register(project, "etcd-patroni", tmp_path, OLD, version="1.1.0")
    newer = register(project, "etcd-patroni", tmp_path, NEW, version="1.2.0")
    registry = Registry(default_path(project.state))
    assert upgrade.choose(registry, "etcd-patroni", None, "1.2.0") == newer
    assert upgrade.choose(registry, "etcd-patroni", None, None) == newer
    for image, version, field in ((None, "9.9.9", "--version"),
                                  ("1.2.0-cccccccccccc", None, "--image")):
        with pytest.raises(UserError) as err:
            upgrade.choose(registry, "etcd-patroni", image, version)
        assert err.value.field == field
    with pytest.raises(UserError) as err:
        upgrade.choose(registry, "etcd-patroni", "0.9.0-dddddddddddd", None, "--rollback")
    assert err.value.field == "--rollback"


def _cluster_on_disk(project, tmp_path) -> Cluster:
    """The state `cluster up` leaves (cluster.json, secrets.json), with no VM running."""
    register(project, "etcd-patroni", tmp_path, OLD, version="1.1.0")
    register(project, "haproxy", tmp_path)
    roles = specs.load_roles(project)
    env = specs.load_environment("local", project, roles)
    nodes, _ = manage.plan(project, env, roles, ("etcd-patroni", "haproxy"))
    where = directory(project.state, "local")
    where.mkdir(parents=True)
    cluster = Cluster(where, "local", "saleor", "10.20.0.0/24", "tcg", nodes)
    cluster.make_secrets({"saleor_db_password"})
    cluster.save()
    return cluster


def _fails_in_one_line(proc, code: int) -> str:
    assert proc.returncode == code, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    return proc.stderr


@pytest.mark.parametrize("args, words", [
    (["saleor-api"], ["saleor-api", "not supported yet", "only etcd-patroni", "ROLE"]),
    (["nope"], ["unknown role 'nope'", "ROLE"]),
    (["etcd-patroni", "--rollback", "--image", NEW], ["--rollback"]),
    (["etcd-patroni", "--image", NEW, "--version", "1.2.0"], ["--version"]),
    (["etcd-patroni", "--version", "9.9.9"], ["--version", "version 9.9.9"]),
    (["etcd-patroni", "--rollback"], ["--rollback", "nothing to roll back"]),
])
def test_bad_input_is_one_line_naming_the_flag_exit_2(project, tmp_path, args, words):
    _cluster_on_disk(project, tmp_path)
    proc = run_builder(["cluster", "upgrade", *args], project.root, project.state)
    line = _fails_in_one_line(proc, 2)
    assert all(word in line for word in words), line


@pytest.mark.parametrize("command", ["kill", "stop"])
def test_kill_and_stop_are_refused_while_another_command_changes_the_cluster(
        project, tmp_path, command):
    """An upgrade, replace or start holds the lock: a power-off in the middle of one would
    break it (a node stopped between its replacement's boot and ready)."""
    _cluster_on_disk(project, tmp_path)
    with locked(project.state, "local"):
        proc = run_builder(["cluster", command, "etcd-patroni-2"], project.root, project.state)
    line = _fails_in_one_line(proc, 2)
    assert "--env: another `builder cluster` command is changing cluster local" in line


def test_kill_and_stop_go_ahead_when_no_one_holds_the_lock(project, tmp_path):
    _cluster_on_disk(project, tmp_path)
    kill = run_builder(["cluster", "kill", "etcd-patroni-2", "--json"], project.root,
                       project.state)
    assert kill.returncode == 0, kill.stderr
    assert json.loads(kill.stdout)["killed"] is False  # no VM was running
    stop = run_builder(["cluster", "stop", "etcd-patroni-2"], project.root, project.state)
    assert "node etcd-patroni-2 is not running" in _fails_in_one_line(stop, 2)


def test_an_unhealthy_cluster_is_refused_exit_1_and_nothing_is_recorded(project, tmp_path):
    cluster = _cluster_on_disk(project, tmp_path)
    register(project, "etcd-patroni", tmp_path, NEW, version="1.2.0")
    proc = run_builder(["cluster", "upgrade", "etcd-patroni", "--version", "1.2.0"],
                       project.root, project.state)
    line = _fails_in_one_line(proc, 1)
    assert "cluster local is not healthy, not upgrading" in line
    assert "etcd-patroni-1 is powered off" in line
    assert json.loads(cluster.file.read_text())["rollouts"] == {}


def test_a_cluster_already_on_the_target_has_nothing_to_do(project, tmp_path):
    _cluster_on_disk(project, tmp_path)
    proc = run_builder(["cluster", "upgrade", "etcd-patroni", "--json"], project.root,
                       project.state)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["nodes"] == [] and out["to"] == OLD and out["switchover"] is None
    assert sorted(out["skipped"]) == list(NAMES) and "nothing to do" in proc.stderr


def test_status_names_each_nodes_image_and_version(project, tmp_path):
    _cluster_on_disk(project, tmp_path)
    proc = run_builder(["cluster", "status", "--json"], project.root, project.state)
    assert proc.returncode == 0, proc.stderr
    rows = {row["name"]: row for row in json.loads(proc.stdout)["nodes"]}
    assert {rows[n]["image"] for n in NAMES} == {OLD}
    assert {rows[n]["version"] for n in NAMES} == {"1.1.0"}
    assert rows["haproxy-1"]["version"] == "1.0.0"
    human = run_builder(["cluster", "status"], project.root, project.state)
    assert human.returncode == 0, human.stderr
    assert all(" 1.1.0 " in line for line in human.stdout.splitlines()
               if line.startswith("etcd-patroni-"))


def test_the_writer_counts_each_outage_of_a_long_operation_apart():
    """The upgrade test's measure: one switchover is one gap; a second event shows as a
    second one, and the writer's own pace (gaps under a second) is none."""
    from builder.cluster.writer import Ack, Writer

    writer = Writer("postgresql://unused")
    times = [0.0, 0.3, 0.6, 4.6, 4.9, 5.2, 7.5, 7.8, 30.0]
    writer.acks = [Ack(i, at, "10.20.0.10") for i, at in enumerate(times)]
    assert writer.outages(0.5, 7.0) == [4.0, 2.3]
    assert writer.outages(5.0, 7.0) == [2.3]
    assert writer.outages(0.5, 7.0, over=3.0) == [4.0]
    # A gap still open at the end of the window is part of it.
    assert writer.outages(0.5, 8.0) == [4.0, 2.3, 22.2]
