"""haproxy image: HAProxy 3.2 from Debian 13 that accepts the config the agent will render."""

from __future__ import annotations

from conftest import SAMPLE_NODE, SAMPLE_PEERS, rendered_in_image


def test_haproxy_version(host):
    out = host.check_output("/usr/sbin/haproxy -v")
    assert "version 3.0." in out, out  # Debian 13 ships 3.0 (DESIGN.md said 3.2)


def test_prometheus_exporter_built_in(host):
    assert "prometheus-exporter" in host.check_output("/usr/sbin/haproxy -vv")


def test_rendered_config_is_accepted_by_this_haproxy(host):
    context = {"node": SAMPLE_NODE, "peers": SAMPLE_PEERS, "bind": "0.0.0.0",
               "stats_user": "stats", "secrets": {"haproxy_stats_password": "sample"},
               "replica_max_lag": 1048576, "api_host": "api.example.test",
               "check_timeout": 6}  # what a TCG cluster gives it (builder/cluster/manage.py)
    with rendered_in_image(host, "/usr/share/builder/templates/haproxy/haproxy.cfg.j2", context,
                           "/tmp/haproxy-test.cfg") as path:
        check = host.run("/usr/sbin/haproxy -c -f %s", path)
    assert check.rc == 0, check.stdout + check.stderr


def test_writes_never_routed_by_a_plain_tcp_check(host):
    template = host.file("/usr/share/builder/templates/haproxy/haproxy.cfg.j2").content_string
    assert "tcp-check" not in template
    assert "httpchk GET /primary" in template


def test_peer_refresh_timer_installed_but_not_enabled(host):
    """The agent starts it after the first boot; enabled, it would run on a bare boot."""
    timer = host.service("builder-peer-refresh.timer")
    assert host.file("/etc/systemd/system/builder-peer-refresh.timer").exists
    assert not timer.is_enabled and not timer.is_running
