"""HAProxy's routing policy, read from the config the node agent renders at boot: writes go
only to the Patroni leader (an HTTP check of Patroni's REST API, never a plain TCP check),
and sessions to a demoted primary are cut at once."""

from __future__ import annotations

import grp
import os
import pwd
import re
import shutil
import subprocess

import jinja2
import pytest

from builder.render import jinja_env
from builder.spec.project import find_project

from .helpers import REPO
from .samples import CLUSTER_PEERS, haproxy_context

TEMPLATE = "haproxy/haproxy.cfg.j2"


def render(context: dict) -> str:
    return jinja_env(find_project(start=REPO)).get_template(TEMPLATE).render(**context)


def sections(text: str) -> dict[str, list[str]]:
    """`listen NAME`, `frontend NAME`, ... -> its (stripped, non-comment) lines."""
    out: dict[str, list[str]] = {}
    current = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not raw[0].isspace():
            current = " ".join(line.split()[:2])
            out[current] = []
        elif current is not None:
            out[current].append(" ".join(line.split()))
    return out


def postgres_listeners(parsed: dict[str, list[str]]) -> dict[str, list[str]]:
    """Every section that binds a PostgreSQL port or sends traffic to one."""
    return {name: lines for name, lines in parsed.items()
            if any(ln.startswith("bind ") and ln.endswith((":5432", ":5433")) for ln in lines)
            or any(ln.startswith("server ") and ":5432" in ln for ln in lines)}


@pytest.fixture(scope="module")
def config() -> str:
    return render(haproxy_context())


def test_no_tcp_check_for_postgres(config):
    listeners = postgres_listeners(sections(config))
    assert set(listeners) >= {"listen postgres", "listen postgres-replicas"}
    for name, lines in listeners.items():
        assert not any("tcp-check" in ln for ln in lines), name
        assert all(ln.split()[0] != "server" or "check" in ln.split() for ln in lines), name


def test_writes_go_to_the_patroni_primary_only(config):
    lines = sections(config)["listen postgres"]
    bind = [ln for ln in lines if ln.startswith("bind ")]
    assert bind == ["bind 10.20.0.21:5432"]
    assert "mode tcp" in lines
    checks = [ln for ln in lines if ln.startswith(("option httpchk", "http-check "))]
    # The leader lock and a PostgreSQL out of recovery, both (the role is the body's).
    assert checks == ["option httpchk GET /primary",
                      'http-check expect rstring "\\"role\\": \\"(master|primary)\\""',
                      "http-check expect status 200"]
    [defaults] = [ln for ln in lines if ln.startswith("default-server ")]
    assert "on-marked-down shutdown-sessions" in defaults
    servers = [ln for ln in lines if ln.startswith("server ")]
    assert servers == [f"server {p['name']} {p['address']}:5432 check port 8008"
                       for p in CLUSTER_PEERS["etcd-patroni"]]


def test_reads_go_to_replicas_checked_by_patroni(config):
    lines = sections(config)["listen postgres-replicas"]
    assert any(ln.startswith("option httpchk OPTIONS /replica") for ln in lines)
    [defaults] = [ln for ln in lines if ln.startswith("default-server ")]
    assert "on-marked-down shutdown-sessions" in defaults
    servers = [ln for ln in lines if ln.startswith("server ")]
    assert len(servers) == 3 and all(ln.endswith("check port 8008") for ln in servers)


def test_http_backends_have_every_peer(config):
    parsed = sections(config)
    api = [ln for ln in parsed["backend saleor-api"] if ln.startswith("server ")]
    assert api == ["server saleor-api-0 10.20.0.31:8000 check",
                   "server saleor-api-1 10.20.0.32:8000 check"]
    dash = [ln for ln in parsed["backend saleor-dashboard"] if ln.startswith("server ")]
    assert dash == ["server saleor-dashboard-0 10.20.0.41:9000 check"]
    assert any("hdr Host api.saleor.test" in ln for ln in parsed["backend saleor-api"])


def test_every_listener_binds_the_node_address_only(config):
    binds = [ln for lines in sections(config).values() for ln in lines if ln.startswith("bind ")]
    assert binds and all(ln.startswith("bind 10.20.0.21:") for ln in binds)


def test_the_template_is_strict_about_its_context():
    context = haproxy_context()
    del context["replica_max_lag"]
    with pytest.raises(jinja2.UndefinedError):
        render(context)


def _account_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_haproxy_accepts_the_config(config, tmp_path):
    if not _account_exists("haproxy"):
        # The image has the haproxy account (the package makes it); a host with only the
        # binary does not, and -c would fail on that alone.
        me = pwd.getpwuid(os.getuid()).pw_name
        group = grp.getgrgid(os.getgid()).gr_name
        config = re.sub(r"(?m)^(\s+)user haproxy$", rf"\g<1>user {me}", config)
        config = re.sub(r"(?m)^(\s+)group haproxy$", rf"\g<1>group {group}", config)
    path = tmp_path / "haproxy.cfg"
    path.write_text(config)
    proc = subprocess.run([shutil.which("haproxy"), "-c", "-f", str(path)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_sample_context_has_the_keys_the_agent_gives():
    """The sample stays in step with what the node agent really hands the template."""
    from builder.agent import roles
    from builder.agent.roles import haproxy as agent_haproxy

    class Inputs:
        config = type("C", (), {"target": "aws", "role": "haproxy", "settings": {}})()
        bind = roles.Inputs.bind
        peers = CLUSTER_PEERS
        secrets = {"haproxy_stats_password": "x"}
        setting = staticmethod(lambda key, default=None: default)

        def node(self):
            return {"name": "haproxy-0", "address": "10.20.0.21",
                    "instance_id": "i-0123456789abcdef0", "listed": True}

    assert set(agent_haproxy.context(Inputs())) == set(haproxy_context())


def test_stats_and_metrics_share_one_password_check(config):
    parsed = sections(config)
    assert parsed["userlist stats-users"] == ["user stats insecure-password sample-not-a-secret"]
    lines = parsed["listen stats"]
    rules = [ln for ln in lines if ln.startswith("http-request ")]
    # The exporter answers as soon as its rule matches: the auth rule must come first.
    assert rules == ["http-request auth realm haproxy-stats unless { http_auth(stats-users) }",
                     "http-request use-service prometheus-exporter if { path /metrics }"]
    assert not any(ln.startswith("stats auth") for ln in lines)


def _stats_only(config: str, port: int) -> str:
    """The rendered global, defaults, userlist and stats sections as they are, on a free
    loopback port, without the image's account and socket (the rest binds well-known ports
    and routes to peers that do not exist here)."""
    keep, out = False, []
    for line in config.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            keep = line.split()[0] in ("global", "defaults", "userlist") or line == "listen stats"
        if keep and not re.match(r"\s+(user|group) haproxy$|\s+stats socket ", line):
            out.append(line.replace("10.20.0.21:8080", f"127.0.0.1:{port}"))
    return "\n".join(out) + "\n"


def _status(url: str, password: str | None = None) -> int:
    import base64
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url)
    if password is not None:
        token = base64.b64encode(f"stats:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_a_running_haproxy_serves_metrics_only_with_the_password(config, tmp_path):
    import socket
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = tmp_path / "haproxy.cfg"
    path.write_text(_stats_only(config, port))
    proc = subprocess.Popen([shutil.which("haproxy"), "-db", "-f", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(50):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, proc.stdout.read()
                time.sleep(0.1)
        for page in ("/metrics", "/haproxy_stats"):
            assert _status(base + page) == 401, page
            assert _status(base + page, "wrong") == 401, page
            assert _status(base + page, "sample-not-a-secret") == 200, page
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _writes_only(config: str, port: int, pg: int, api: int, sock: str) -> str:
    """The rendered defaults and `listen postgres` as they are, on loopback: one server,
    its PostgreSQL port and Patroni's API replaced by this test's stand-ins."""
    keep, out = False, ["global", f"    stats socket {sock} level admin"]
    for line in config.splitlines():
        if line and not line[0].isspace() and not line.startswith("#"):
            keep = line in ("defaults", "listen postgres")
        if not keep or line.strip().startswith("log "):
            continue
        if line.strip().startswith("server "):
            if any(ln.strip().startswith("server ") for ln in out):
                continue
            line = re.sub(r"\S+:5432 check port 8008", f"127.0.0.1:{pg} check port {api}", line)
        out.append(line.replace("10.20.0.21:5432", f"127.0.0.1:{port}"))
    return "\n".join(out) + "\n"


@pytest.mark.skipif(shutil.which("haproxy") is None, reason="haproxy is not installed")
def test_a_running_haproxy_sends_writes_only_to_a_promoted_leader(config, tmp_path):
    """Patroni's /primary is 200 from the moment it holds the leader lock, while the
    promotion may still run: the check's body rule keeps writes off that server until
    PostgreSQL leaves recovery, and the status rule keeps them off an old primary that lost
    the lock. The stand-in answers as the image's Patroni 4.0 does (json.dumps of its status;
    3.0 said "master", which the rule takes too)."""
    import http.server
    import json
    import socket
    import threading
    import time

    answer = {"code": 200, "role": "replica"}

    class Patroni(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps({"state": "running", "role": answer["role"]}).encode()
            self.send_response(answer["code"])
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def do_OPTIONS(self):  # Patroni's answer to OPTIONS: the status line alone
            self.send_response_only(answer["code"])
            self.end_headers()

        def log_message(self, *args):
            pass

    api = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Patroni)
    pg = socket.create_server(("127.0.0.1", 0))

    def serve_pg():
        while True:
            try:
                conn, _ = pg.accept()
            except OSError:
                return
            with conn:
                conn.sendall(b"postgres\n")

    threads = [threading.Thread(target=api.serve_forever, daemon=True),
               threading.Thread(target=serve_pg, daemon=True)]
    for thread in threads:
        thread.start()
    port = _free_port()
    path = tmp_path / "haproxy.cfg"
    path.write_text(_writes_only(config, port, pg.getsockname()[1], api.server_port,
                                 str(tmp_path / "admin.sock")))
    proc = subprocess.Popen([shutil.which("haproxy"), "-db", "-f", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def routed() -> bool:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                conn.settimeout(2)
                return conn.recv(16) == b"postgres\n"
        except OSError:
            assert proc.poll() is None, proc.stdout.read()
            return False

    def settles(want: bool) -> bool:
        # inter 1s, rise 2, fall 2: a change shows within ~3 s; 3 more confirm it holds.
        deadline, seen = time.monotonic() + 15, 0
        while time.monotonic() < deadline and seen < 3:
            seen = seen + 1 if routed() == want else 0
            time.sleep(1)
        return seen == 3

    try:
        assert settles(False), "routed while promotion ran (leader lock, still in recovery)"
        answer.update(role="primary")
        assert settles(True), "not routed to the promoted leader"
        answer.update(code=503)
        assert settles(False), "routed to a server without the leader lock"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        api.shutdown()
        pg.close()


def test_the_check_timeout_is_the_nodes_setting_and_refused_when_not_whole_seconds():
    """A starved host's guests get longer checks (builder/cluster/manage.py TCG_SETTINGS)."""
    from builder.agent.errors import AgentError
    from builder.agent.roles import haproxy as agent_haproxy

    assert "timeout check 6s" in sections(render(haproxy_context(check_timeout=6)))["defaults"]

    def inputs(value):
        return type("I", (), {"setting": staticmethod(
            lambda key, default=None: value if key == "check_timeout" else default)})()

    assert agent_haproxy.check_timeout(inputs(2)) == 2
    for bad in (0, 31, "6s", True, 2.5):
        with pytest.raises(AgentError, match="setting check_timeout"):
            agent_haproxy.check_timeout(inputs(bad))
