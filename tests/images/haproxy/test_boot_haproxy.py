"""A booted haproxy instance: every frontend listening, stats and metrics behind a password,
and the only PostgreSQL write backend marked up is the Patroni primary (none when there is
none)."""

from __future__ import annotations

import json

from conftest import secret

PORTS = (80, 5432, 5433, 8080, 9000)


def test_haproxy_running_with_the_rendered_config(host):
    assert host.service("haproxy").is_running
    cfg = host.file("/etc/haproxy/haproxy.cfg")
    assert cfg.group == "haproxy" and cfg.mode == 0o640
    assert cfg.contains("option httpchk GET /primary")
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


def test_metrics_need_the_stats_password(host):
    """Prometheus' /metrics takes the stats credentials too. The password is read inside
    the VM (as root), so it is on no command line this suite logs."""
    said = host.run("sudo python3 -c %s %s", _METRICS, "http://127.0.0.1:8080/metrics")
    assert said.rc == 0, said.stderr
    anonymous, wrong, authed, exported = said.stdout.split()
    assert (anonymous, wrong, authed) == ("401", "401", "200")
    assert exported == "haproxy_process", "the exporter's series are missing"


_METRICS = """
import base64, sys, urllib.error, urllib.request, yaml
with open("/etc/builder/secrets.yaml") as fh:
    password = yaml.safe_load(fh)["haproxy_stats_password"]
def status(password):
    req = urllib.request.Request(sys.argv[1])
    if password is not None:
        token = base64.b64encode(f"stats:{password}".encode()).decode()
        req.add_header("Authorization", "Basic " + token)
    try:
        with urllib.request.urlopen(req, timeout=5) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""
code, body = status(password)
print(status(None)[0], status(password + "x")[0], code,
      "haproxy_process" if "haproxy_process_" in body else "none")
"""


def test_the_postgres_backends_up_are_exactly_the_patroni_primary(host):
    """Writes can only reach a node whose Patroni says it is the primary: with no primary
    (a lone boot) no server is up; in a cluster exactly the leader is."""
    peers = json.loads(host.file("/run/builder/agent.json").content_string)["peers"]
    primaries = {db["name"] for db in peers["etcd-patroni"]
                 if host.run("python3 -c %s %s", _STATUS,
                             f"http://{db['address']}:8008/primary").stdout.strip() == "200"}
    assert len(primaries) <= 1
    csv = host.run("python3 -c %s %s stats %s", _BODY, "http://127.0.0.1:8080/haproxy_stats;csv",
                   secret(host, "haproxy_stats_password")).stdout
    rows = [line.split(",") for line in csv.splitlines() if line.startswith("postgres,")]
    servers = {r[1]: r[17] for r in rows if r[1] not in ("FRONTEND", "BACKEND")}
    assert len(servers) == len(peers["etcd-patroni"])
    assert {name for name, state in servers.items() if state.startswith("UP")} == primaries, \
        servers


_STATUS = """
import sys, urllib.request, urllib.error, base64
req = urllib.request.Request(sys.argv[1])
if len(sys.argv) > 3:
    token = base64.b64encode(f"{sys.argv[2]}:{sys.argv[3]}".encode()).decode()
    req.add_header("Authorization", "Basic " + token)
try:
    print(urllib.request.urlopen(req, timeout=5).status)
except urllib.error.HTTPError as exc:
    print(exc.code)
except OSError:
    print("unreachable")
"""

_BODY = """
import sys, urllib.request, base64
req = urllib.request.Request(sys.argv[1])
token = base64.b64encode(f"{sys.argv[2]}:{sys.argv[3]}".encode()).decode()
req.add_header("Authorization", "Basic " + token)
print(urllib.request.urlopen(req, timeout=10).read().decode())
"""


def test_peer_refresh_timer_runs_and_finds_the_same_backends(host):
    assert host.service("builder-peer-refresh.timer").is_running
    said = host.run("sudo /usr/local/sbin/builder-agent refresh")
    assert said.rc == 0, said.stderr
    assert json.loads(said.stdout) == {"changed": False}
