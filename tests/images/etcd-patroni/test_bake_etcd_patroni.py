"""etcd-patroni image: Debian 13's etcd, Patroni and PostgreSQL 17, with nothing initialised."""

from __future__ import annotations

import pytest
from conftest import SAMPLE_NODE, SAMPLE_PEERS, rendered_in_image


def test_versions(host):
    # Debian 13 ships Patroni 4.0 (not 4.1 as DESIGN.md had it); 4.x has etcd3 + failsafe.
    assert host.package("patroni").version.startswith("4.")
    assert host.package("etcd-server").version.startswith("3.5.")
    assert host.file("/usr/lib/postgresql/17/bin/postgres").is_file


def test_patroni_has_its_etcd3_dcs(host):
    # Without python3-etcd Patroni starts, then dies with "Available implementations:
    # consul, kubernetes" (it is only a Recommends of Debian's patroni).
    check = host.run("python3 -c 'import patroni.dcs.etcd3'")
    assert check.rc == 0, check.stderr


def test_post_bootstrap_hook_installed(host):
    hook = host.file("/usr/lib/builder/patroni-post-bootstrap")
    assert hook.is_file and hook.mode == 0o755 and hook.user == "root"
    assert host.run("sh -n /usr/lib/builder/patroni-post-bootstrap").rc == 0
    assert not host.file("/etc/patroni/app-database.password").exists  # written at boot only


def test_no_postgres_cluster_baked(host):
    assert host.check_output("pg_lsclusters -h") == ""
    assert not host.file("/var/lib/postgresql/17/main").exists


def test_no_etcd_member_baked(host):
    data = host.file("/var/lib/etcd")
    assert data.is_directory and data.user == "etcd"
    assert host.check_output("ls -A /var/lib/etcd") == ""


@pytest.mark.parametrize("unit", ["postgresql", "etcd", "patroni", "builder-etcd-leader-guard"])
def test_units_disabled(host, unit):
    assert not host.service(unit).is_enabled
    assert not host.service(unit).is_running


def test_softdog_available_for_patroni_watchdog(host):
    assert host.run("modinfo softdog").rc == 0


def test_rendered_patroni_config_is_valid(host):
    # The validator binds the listen addresses: use the bake VM's own.
    own = host.interface("eth0").addresses[0]
    context = {
        "node": {**SAMPLE_NODE, "address": own}, "peers": SAMPLE_PEERS,
        "cluster": {"name": "saleor", "cidr": "10.20.0.0/24"},
        "secrets": {"patroni_api_password": "a", "postgres_superuser_password": "b",
                    "postgres_replication_password": "c"},
        "timing": {"ttl": 20, "loop_wait": 5, "retry_timeout": 5, "primary_start_timeout": 10},
        "synchronous_mode": True, "watchdog_mode": "automatic", "watchdog_safety_margin": 5,
    }
    with rendered_in_image(host, "/usr/share/builder/templates/etcd-patroni/patroni.yml.j2",
                           context, "/tmp/patroni-test.yml") as path:
        # --validate-config checks option names and types without starting anything.
        check = host.run("patroni --validate-config %s", path)
    assert check.rc == 0, check.stdout + check.stderr


def test_etcd_env_template_renders(host):
    context = {"node": SAMPLE_NODE, "cluster": {"name": "saleor"},
               "etcd": {"initial_cluster": "node-1=http://10.20.0.11:2380",
                        "initial_cluster_state": "new", "token": "saleor-abc"}}
    with rendered_in_image(host, "/usr/share/builder/templates/etcd-patroni/etcd.env.j2",
                           context, "/tmp/etcd-test.env") as path:
        text = host.check_output("cat %s", path)
    assert 'ETCD_AUTO_COMPACTION_RETENTION="1"' in text
    assert 'ETCD_INITIAL_CLUSTER_TOKEN="saleor-abc"' in text
