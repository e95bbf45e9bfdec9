"""The node agent's whole boot sequence for a sample 3-node database cluster, its load
balancer and Redis, rehearsed into tmp_path: the user-data cloud-init would write, the
templates baked into the image, the agent run as on an instance (`--root`), and
systemctl only recorded (`--dry-run-services`). Peers of the etcd role are on 127.0.0.x so
the agent's question to live etcd peers goes nowhere but loopback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest
import yaml

from builder.agent import boot, etcd_join
from builder.agent.metadata import ec2
from builder.agent.paths import Root
from builder.agent.services import Services
from builder.spec import load_roles
from builder.spec.project import find_project

from .helpers import REPO
from .imds_standin import IMDSStandIn
from .test_agent_config import install, user_data

CIDR = "10.20.0.0/24"
DB = [{"name": f"etcd-patroni-{i}", "address": f"127.0.0.1{i + 1}"} for i in range(3)]
PEERS = {
    "etcd-patroni": DB,
    "saleor-api": [{"name": "saleor-api-0", "address": "10.20.0.31"},
                   {"name": "saleor-api-1", "address": "10.20.0.32"}],
    "saleor-dashboard": [{"name": "saleor-dashboard-0", "address": "10.20.0.41"}],
    "redis": [{"name": "redis-0", "address": "10.20.0.51"}],
}
ADDRESS = {"etcd-patroni": "127.0.0.12", "haproxy": "10.20.0.21", "redis": "10.20.0.51"}
MEMINFO = "MemTotal:        2048000 kB\nMemFree:          900000 kB\n"


def secret_values(role: str) -> dict[str, str]:
    return {name: f"{name}-value" for name in load_roles(find_project(start=REPO))[role].secrets}


def prepare(tmp_path: Path, role: str, *, secrets: dict | None = None,
            settings: dict | None = None, address: str | None = None) -> Root:
    """An instance of `role` right after cloud-init, under tmp_path."""
    root = Root(tmp_path / "root")
    shutil.copytree(REPO / "templates" / role, root(f"/usr/share/builder/templates/{role}"))
    spec = load_roles(find_project(start=REPO))[role]
    root("/etc/builder").mkdir(parents=True, exist_ok=True)
    root("/etc/builder/role.json").write_text(json.dumps({"role": role,
                                                          "secrets": spec.secrets}))
    root("/etc/builder/image.json").write_text(json.dumps({"role": role, "version": "1.0.0"}))
    instance = {"v1": {"instance_id": f"iid-{role}", "local_hostname": f"{role}-host",
                       "platform": "nocloud"},
                "ds": {"meta_data": {"local-ipv4": address or ADDRESS[role]}}}
    root("/run/cloud-init").mkdir(parents=True)
    root("/run/cloud-init/instance-data.json").write_text(json.dumps(instance))
    root("/proc").mkdir()
    root("/proc/meminfo").write_text(MEMINFO)
    seed = {"peers": PEERS, "secrets": secret_values(role) if secrets is None else secrets}
    install(root, user_data(role, seed=seed))
    node = yaml.safe_load(root("/etc/builder/node.yaml").read_text())
    node["settings"] = {"etcd_ask_rounds": 1, "boot_retry_seconds": 0, **(settings or {})}
    root("/etc/builder/node.yaml").write_text(yaml.safe_dump(node))
    return root


def rehearse(root: Root) -> dict:
    report = boot.boot(root, Services(dry_run=True), discovery_timeout=5)
    assert json.loads(root(boot.STATUS_FILE).read_text()) == report
    return report


def commands(report: dict) -> list[str]:
    return [" ".join(call["argv"]) for call in report["services"]]


def mode(path: Path) -> str:
    return oct(path.stat().st_mode & 0o777)


@pytest.fixture
def db(tmp_path):
    root = prepare(tmp_path, "etcd-patroni")
    return root, rehearse(root)


def test_db_node_boots_ready_with_services_in_order(db):
    root, report = db
    assert report["state"] == "ready", report.get("error")
    assert commands(report) == ["modprobe softdog", "systemctl restart etcd",
                                "systemctl restart patroni",
                                "systemctl restart builder-etcd-leader-guard",
                                "systemctl start builder-graceful-leave"]
    assert set(report["timings"]) == {"identity", "config", "secrets", "discovery", "role"}
    assert report["result"]["etcd"]["state"] == "new"
    assert "-value" not in root(boot.STATUS_FILE).read_text()  # no secret in the report


def test_on_ec2_the_db_node_also_watches_its_lifecycle(tmp_path, monkeypatch):
    """The watcher (builder/agent/lifecycle.py) starts only where the metadata is EC2's:
    the NoCloud boot above does not start it."""
    root = prepare(tmp_path, "etcd-patroni")
    data = json.loads(root("/run/cloud-init/instance-data.json").read_text())
    data["v1"]["platform"] = "ec2"
    root("/run/cloud-init/instance-data.json").write_text(json.dumps(data))
    imds = IMDSStandIn({"instance-id": "i-0db", "local-hostname": "ip-127-0-0-12",
                        "local-ipv4": ADDRESS["etcd-patroni"], "placement/region": "us-east-1"})
    monkeypatch.setattr(ec2, "ENDPOINT", imds.url)
    try:
        report = rehearse(root)
    finally:
        imds.close()
    assert report["state"] == "ready", report.get("error")
    assert report["identity"]["source"] == "ec2"
    assert commands(report)[-2:] == ["systemctl start builder-graceful-leave",
                                     "systemctl start builder-lifecycle-watch"]


def test_etcd_env_starts_a_new_cluster_of_all_discovered_peers(db):
    root, _ = db
    env = dict(line.split("=", 1) for line in root("/etc/default/etcd").read_text().splitlines()
               if line and not line.startswith("#"))
    assert env["ETCD_NAME"] == '"etcd-patroni-1"'
    assert env["ETCD_INITIAL_CLUSTER"] == '"' + ",".join(
        f"{p['name']}=http://{p['address']}:2380" for p in DB) + '"'
    assert env["ETCD_INITIAL_CLUSTER_STATE"] == '"new"'
    token = etcd_join.token("saleor", [p["name"] for p in DB])
    assert env["ETCD_INITIAL_CLUSTER_TOKEN"] == f'"{token}"' and token.startswith("saleor-")
    assert env["ETCD_LISTEN_PEER_URLS"] == '"http://127.0.0.12:2380"'
    assert env["ETCD_DATA_DIR"] == '"/var/lib/etcd/saleor"'
    assert mode(root("/var/lib/etcd/saleor")) == "0o700"


def test_patroni_config_timing_auth_and_pg_hba(db):
    root, _ = db
    path = root("/etc/patroni/config.yml")
    assert mode(path) == "0o600"
    conf = yaml.safe_load(path.read_text())
    assert (conf["scope"], conf["name"]) == ("saleor", "etcd-patroni-1")
    assert conf["etcd3"]["hosts"] == [f"{p['address']}:2379" for p in DB]
    dcs = conf["bootstrap"]["dcs"]
    assert {k: dcs[k] for k in ("ttl", "loop_wait", "retry_timeout", "primary_start_timeout")} \
        == {"ttl": 20, "loop_wait": 5, "retry_timeout": 5, "primary_start_timeout": 10}
    assert dcs["loop_wait"] + 2 * dcs["retry_timeout"] <= dcs["ttl"]
    assert dcs["synchronous_mode"] is True
    assert conf["watchdog"]["mode"] == "off"  # no /dev/watchdog under this root
    auth = conf["postgresql"]["authentication"]
    assert auth["superuser"]["password"] == "postgres_superuser_password-value"
    assert auth["replication"]["password"] == "postgres_replication_password-value"
    assert conf["restapi"]["authentication"]["password"] == "patroni_api_password-value"
    hba = [line.split() for line in conf["postgresql"]["pg_hba"]]
    remote = [h for h in hba if h[0].startswith("host")]
    assert remote and all(h[-1] == "scram-sha-256" for h in remote)
    assert {h[-2] for h in remote} == {"127.0.0.1/32", CIDR}
    assert ["host", "replication", "replicator", CIDR, "scram-sha-256"] in hba
    # Patroni's pre-promotion WAL check connects locally for replication.
    assert ["host", "replication", "replicator", "127.0.0.1/32", "scram-sha-256"] in hba
    assert "0.0.0.0/0" not in path.read_text()


def test_app_database_for_the_post_bootstrap_hook(db):
    root, _ = db
    conf = yaml.safe_load(root("/etc/patroni/config.yml").read_text())
    assert conf["bootstrap"]["post_bootstrap"] == "/usr/lib/builder/patroni-post-bootstrap"
    names = root("/etc/patroni/app-database.psql")
    password = root("/etc/patroni/app-database.password")
    assert names.read_text() == "\\set app_user 'saleor'\n\\set app_db 'saleor'\n"
    assert password.read_text() == "saleor_db_password-value"
    assert mode(names) == mode(password) == "0o600"
    hook = (REPO / "templates/etcd-patroni/post-bootstrap.sh").read_text()
    assert "app-database.password" in hook and "app-database.psql" in hook


def test_app_database_names_must_be_sql_identifiers(tmp_path):
    report = rehearse(prepare(tmp_path, "etcd-patroni",
                              settings={"app_user": "saleor'; DROP ROLE postgres; --"}))
    assert report["state"] == "failed" and "app_user" in report["error"]


def test_patroni_timing_from_the_nodes_settings(tmp_path):
    """A TCG cluster's longer ttl (builder/cluster/manage.py TCG_SETTINGS) reaches Patroni,
    and the watchdog still fires before the leader key expires."""
    root = prepare(tmp_path, "etcd-patroni", settings={
        "patroni_ttl": 60, "patroni_loop_wait": 5, "patroni_retry_timeout": 15})
    report = rehearse(root)
    assert report["state"] == "ready", report.get("error")
    conf = yaml.safe_load(root("/etc/patroni/config.yml").read_text())
    dcs = conf["bootstrap"]["dcs"]
    assert (dcs["ttl"], dcs["loop_wait"], dcs["retry_timeout"]) == (60, 5, 15)
    assert dcs["primary_start_timeout"] == 10
    assert 0 < conf["watchdog"]["safety_margin"] < dcs["ttl"]
    assert report["result"]["timing"]["ttl"] == 60


@pytest.mark.parametrize("settings, field", [
    ({"patroni_ttl": 10}, "patroni_ttl"),
    ({"patroni_ttl": "60"}, "patroni_ttl"),
    ({"patroni_loop_wait": 0}, "patroni_loop_wait"),
    ({"patroni_retry_timeout": True}, "patroni_retry_timeout"),
    ({"patroni_ttl": 20, "patroni_retry_timeout": 10}, "exceeds ttl 20"),
])
def test_patroni_timing_patroni_would_refuse_fails_the_boot(tmp_path, settings, field):
    report = rehearse(prepare(tmp_path, "etcd-patroni", settings=settings))
    assert report["state"] == "failed" and field in report["error"], report.get("error")


def test_watchdog_is_automatic_when_softdog_gives_a_device(tmp_path):
    root = prepare(tmp_path, "etcd-patroni")
    root("/dev").mkdir()
    root("/dev/watchdog").touch()
    report = rehearse(root)
    conf = yaml.safe_load(root("/etc/patroni/config.yml").read_text())
    assert report["result"]["watchdog"] == conf["watchdog"]["mode"] == "automatic"


def test_a_db_node_missing_from_discovery_fails_naming_its_address(tmp_path):
    report = rehearse(prepare(tmp_path, "etcd-patroni", address="127.0.0.19"))
    assert report["state"] == "failed"
    assert report["error"].startswith("role: this node's address 127.0.0.19 is not among")
    # Discovery may lag behind a new instance (tags, an autoscaling group): tried 3 times.
    assert report["attempts"] == 3
    assert commands(report) == ["modprobe softdog"] * 3


def test_a_role_step_that_fails_once_is_retried_and_the_boot_ends_ready(tmp_path,
                                                                       monkeypatch):
    """Peers booting together race (two etcd joins at once): a second run of the role
    steps joins; meanwhile the status file says `retrying` with the first error (and
    before that, `booting` at the step under way)."""
    from builder.agent.roles import haproxy

    root = prepare(tmp_path, "haproxy")
    real, seen = haproxy.configure, []

    def flaky(inputs):
        seen.append(json.loads(root(boot.STATUS_FILE).read_text())
                    if root(boot.STATUS_FILE).exists() else None)
        if len(seen) == 1:
            raise boot.AgentError("etcd member add timed out")
        return real(inputs)

    monkeypatch.setattr(haproxy, "configure", flaky)
    report = rehearse(root)
    assert report["state"] == "ready" and report["attempts"] == 2 and "error" not in report
    assert seen[0]["state"] == "booting" and seen[0]["step"] == "role"
    assert seen[1]["state"] == "retrying" and seen[1]["step"] == "role"
    assert seen[1]["error"] == "role: etcd member add timed out"


def test_haproxy_routes_every_backend_with_the_stats_password(tmp_path):
    root = prepare(tmp_path, "haproxy", settings={"api_host": "api.shop.test"})
    report = rehearse(root)
    assert report["state"] == "ready", report.get("error")
    path = root("/etc/haproxy/haproxy.cfg")
    assert mode(path) == "0o640"
    assert commands(report) == [f"haproxy -c -q -f {path}",
                                "systemctl reload-or-restart haproxy",
                                "systemctl restart builder-peer-refresh.timer"]
    text = path.read_text()
    lines = [" ".join(line.split()) for line in text.splitlines()]
    assert "bind 0.0.0.0:5432" in lines and "bind 0.0.0.0:80" in lines
    assert "user stats insecure-password haproxy_stats_password-value" in lines
    for p in DB:
        assert lines.count(f"server {p['name']} {p['address']}:5432 check port 8008") == 2
    assert "option httpchk OPTIONS /replica?lag=1048576" in lines
    assert "server saleor-api-1 10.20.0.32:8000 check" in lines
    assert "server saleor-dashboard-0 10.20.0.41:9000 check" in lines
    assert "hdr Host api.shop.test" in text


def test_haproxy_binds_the_private_address_on_aws_like_targets(tmp_path):
    root = prepare(tmp_path, "haproxy")
    node = yaml.safe_load(root("/etc/builder/node.yaml").read_text())
    node["target"] = "aws"
    root("/etc/builder/node.yaml").write_text(yaml.safe_dump(node))
    assert rehearse(root)["result"]["bind"] == "10.20.0.21"
    assert "bind 10.20.0.21:5432" in root("/etc/haproxy/haproxy.cfg").read_text()


def test_redis_binds_its_address_with_password_and_half_the_memory(tmp_path):
    root = prepare(tmp_path, "redis")
    report = rehearse(root)
    assert report["state"] == "ready", report.get("error")
    path = root("/etc/redis/redis.conf")
    assert mode(path) == "0o640"
    lines = path.read_text().splitlines()
    assert "bind 10.20.0.51 127.0.0.1" in lines
    assert "requirepass redis_password-value" in lines
    assert "maxmemory 1000mb" in lines  # 50% of 2048000 kB
    assert commands(report) == ["systemctl restart redis-server"]


def agent(args: list[str], *, env_root: Path | None = None, baked: Path | None = None,
          ) -> subprocess.CompletedProcess:
    """`python3 -m builder.agent ARGS`; with `baked`, from that copy alone: -S skips the
    .pth files, so this checkout's editable install cannot supply other builder modules,
    and only the third-party libraries (PyYAML, Jinja2, boto3) stay importable."""
    env = dict(os.environ)
    env.pop("BUILDER_AGENT_ROOT", None)
    if env_root is not None:
        env["BUILDER_AGENT_ROOT"] = str(env_root)
    python = [sys.executable]
    if baked is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(baked), sysconfig.get_paths()["purelib"]])
        python.append("-S")
    return subprocess.run([*python, "-m", "builder.agent", *args], capture_output=True,
                          text=True, timeout=120, env=env, cwd=baked, check=False)


def test_cli_without_node_yaml_is_unconfigured_and_exits_0(tmp_path):
    root = prepare(tmp_path, "redis")
    root("/etc/builder/node.yaml").unlink()
    proc = agent(["boot", "--dry-run-services"], env_root=root.root)
    assert proc.returncode == 0, proc.stderr
    status = json.loads(root(boot.STATUS_FILE).read_text())
    assert status["state"] == "unconfigured" and status["services"] == []
    assert status["role"] == "redis" and status["configured"] is False


def test_cli_missing_secret_fails_with_exit_1_naming_it(tmp_path):
    root = prepare(tmp_path, "redis", secrets={"unrelated": "x"})
    proc = agent(["boot", "--root", str(root.root), "--dry-run-services"])
    assert proc.returncode == 1
    status = json.loads(root(boot.STATUS_FILE).read_text())
    assert status["state"] == "failed"
    assert status["error"].startswith("secrets: secret(s) not provided: redis_password")
    assert not root("/etc/redis/redis.conf").exists() and status["services"] == []


def test_cli_rejects_user_data_for_another_role(tmp_path):
    root = prepare(tmp_path, "redis")
    root("/etc/builder/role.json").write_text(json.dumps({"role": "haproxy", "secrets": []}))
    proc = agent(["boot", "--root", str(root.root), "--dry-run-services"])
    assert proc.returncode == 1
    assert "node.yaml says role redis but this image is haproxy" in proc.stdout


def test_the_baked_copy_boots_without_the_rest_of_builder(tmp_path):
    """The image holds builder/__init__.py and builder/agent only (builder.render.role
    _copy_agent): the agent must not import any other builder module."""
    lib = tmp_path / "lib"
    (lib / "builder").mkdir(parents=True)
    shutil.copy2(REPO / "builder" / "__init__.py", lib / "builder" / "__init__.py")
    shutil.copytree(REPO / "builder" / "agent", lib / "builder" / "agent",
                    ignore=shutil.ignore_patterns("__pycache__"))
    root = prepare(tmp_path, "etcd-patroni")
    proc = agent(["boot", "--root", str(root.root), "--dry-run-services"], baked=lib)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["state"] == "ready"
    status = agent(["status", "--root", str(root.root)], baked=lib)
    assert json.loads(status.stdout)["cluster"] == "saleor"


def _set_peers(root: Root, role: str, peers: list[dict]) -> None:
    node = yaml.safe_load(root("/etc/builder/node.yaml").read_text())
    node["discovery"]["peers"][role] = peers
    root("/etc/builder/node.yaml").write_text(yaml.safe_dump(node))


def test_refresh_with_the_same_peers_changes_nothing(tmp_path):
    root = prepare(tmp_path, "haproxy")
    rehearse(root)
    before = root("/etc/haproxy/haproxy.cfg").read_text()
    services = Services(dry_run=True)
    assert boot.refresh(root, services) == {"changed": False}
    assert services.calls == [] and root("/etc/haproxy/haproxy.cfg").read_text() == before


def test_refresh_routes_to_a_replacement_with_a_new_address_by_reloading(tmp_path):
    """An autoscaling group replaced saleor-api-1: same slot, new address."""
    root = prepare(tmp_path, "haproxy")
    rehearse(root)
    moved = [PEERS["saleor-api"][0], {"name": "saleor-api-1", "address": "10.20.0.39"}]
    _set_peers(root, "saleor-api", moved)
    services = Services(dry_run=True)

    result = boot.refresh(root, services)

    assert result["changed"] and result["state"] == "ready"
    assert result["after"]["saleor-api"] == moved
    text = root("/etc/haproxy/haproxy.cfg").read_text()
    assert "10.20.0.39:8000" in text and "10.20.0.32:8000" not in text
    assert "systemctl reload-or-restart haproxy" in commands({"services": services.calls})
    assert "systemctl restart haproxy" not in commands({"services": services.calls})
    status = json.loads(root(boot.STATUS_FILE).read_text())
    assert status["state"] == "ready" and status["peers"]["saleor-api"] == moved


def test_refresh_refuses_to_empty_a_backend(tmp_path):
    root = prepare(tmp_path, "haproxy")
    rehearse(root)
    before = root("/etc/haproxy/haproxy.cfg").read_text()
    _set_peers(root, "etcd-patroni", [])
    with pytest.raises(boot.AgentError, match="no etcd-patroni peers where the last boot"):
        boot.refresh(root, Services(dry_run=True))
    assert root("/etc/haproxy/haproxy.cfg").read_text() == before


def test_refresh_waits_for_a_ready_boot(tmp_path):
    root = prepare(tmp_path, "haproxy")
    assert boot.refresh(root, Services(dry_run=True)) == {
        "changed": False, "why": "the last boot is missing"}
