"""A booted haproxy instance: every frontend listening, stats behind a password, and with
no Patroni primary reachable, no PostgreSQL backend is marked up (no write can be misrouted)."""

from __future__ import annotations

from conftest import secret

PORTS = (80, 5432, 5433, 8080, 9000)


def test_haproxy_running_with_the_rendered_config(host):
    assert host.service("haproxy").is_running
    cfg = host.file("/etc/haproxy/haproxy.cfg")
    assert cfg.group == "haproxy" and cfg.mode == 0o640
    assert cfg.contains("option httpchk OPTIONS /primary")
    assert not cfg.contains("tcp-check")


def test_every_frontend_listens(host):
    for port in PORTS:
        assert host.socket(f"tcp://0.0.0.0:{port}").is_listening, port


def test_stats_need_the_password(host):
    url = "http://127.0.0.1:8080/haproxy_stats"
    anonymous = host.run("python3 -c %s %s", _STATUS, url)
    assert anonymous.stdout.strip() == "401"
    authed = host.run("python3 -c %s %s stats %s", _STATUS, url,
                      secret(host, "haproxy_stats_password"))
    assert authed.stdout.strip() == "200"


def test_no_postgres_backend_is_up_without_a_primary(host):
    csv = host.run("python3 -c %s %s stats %s", _BODY, "http://127.0.0.1:8080/haproxy_stats;csv",
                   secret(host, "haproxy_stats_password")).stdout
    rows = [line.split(",") for line in csv.splitlines() if line.startswith("postgres,")]
    servers = [r for r in rows if r[1] not in ("FRONTEND", "BACKEND")]
    assert len(servers) == 3
    assert all(not r[17].startswith("UP") for r in servers), [r[17] for r in servers]


_STATUS = """
import sys, urllib.request, urllib.error, base64
req = urllib.request.Request(sys.argv[1])
if len(sys.argv) > 3:
    token = base64.b64encode(f"{sys.argv[2]}:{sys.argv[3]}".encode()).decode()
    req.add_header("Authorization", "Basic " + token)
try:
    print(urllib.request.urlopen(req, timeout=10).status)
except urllib.error.HTTPError as exc:
    print(exc.code)
"""

_BODY = """
import sys, urllib.request, base64
req = urllib.request.Request(sys.argv[1])
token = base64.b64encode(f"{sys.argv[2]}:{sys.argv[3]}".encode()).decode()
req.add_header("Authorization", "Basic " + token)
print(urllib.request.urlopen(req, timeout=10).read().decode())
"""
