"""The graceful leave of an etcd-patroni node (builder/agent/leave.py): the switchover
against a stand-in of Patroni's REST API that keeps Patroni's rules (authenticated POST,
leader and candidate checked), the etcd member removal against real etcd members on
127.0.0.1, and the reboot that is no leave."""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time

import pytest

from builder.agent import leave
from builder.agent.etcd import Client

from .test_agent_etcd import etcds as etcds  # noqa: F401 (fixtures, used by name)
from .test_agent_etcd import needs_etcd
from .test_agent_etcd import three as three  # noqa: F401

LOGIN = ("patroni", "s3cret")


class PatroniCluster:
    """GET /cluster, GET /primary and POST /switchover of a 3-member Patroni cluster, one
    server per member sharing the cluster's state (who leads)."""

    def __init__(self, leader: str, lagging: tuple[str, ...] = (), answer_after: float = 0,
                 promotion: float = 0, unknown: bool = False):
        self.leader = leader
        self.answer_after = answer_after  # seconds Patroni takes to answer a switchover
        # Seconds a new leader holds the lock while PostgreSQL is still in recovery.
        self.promotion = promotion
        self.promoted_at = 0.0
        # Answer as Patroni does when its own wait ends first: 503 "status unknown".
        self.unknown = unknown
        self.lagging = lagging
        self.switchovers: list[dict] = []
        self.servers = {name: self._serve(name) for name in ("db-0", "db-1", "db-2")}

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.servers[name].server_address[1]}"

    def primary(self, name: str) -> tuple[int, dict]:
        """Patroni 4.0's GET /primary: 200 with the lock; the role is pg_is_in_recovery()'s."""
        if name != self.leader:
            return 503, {"state": "running", "role": "replica"}
        promoted = time.monotonic() >= self.promoted_at + self.promotion
        return 200, {"state": "running", "role": "primary" if promoted else "replica"}

    def members(self) -> list[dict]:
        out = []
        for name in self.servers:
            role = "leader" if name == self.leader else (
                "sync_standby" if name == "db-2" else "replica")
            out.append({"name": name, "role": role,
                        "state": "running" if role == "leader" else "streaming",
                        "api_url": f"{self.url(name)}/patroni",
                        "lag": 99_000_000 if name in self.lagging else 0})
        return out

    def _serve(self, name: str) -> http.server.ThreadingHTTPServer:
        cluster = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _send(self, code: int, body: str = "") -> None:
                self.send_response(code)
                self.end_headers()
                self.wfile.write(body.encode())

            def do_GET(self):  # noqa: N802
                if self.path == "/cluster":
                    self._send(200, json.dumps({"members": cluster.members()}))
                elif self.path == "/primary":
                    code, body = cluster.primary(name)
                    self._send(code, json.dumps(body))
                else:
                    self._send(503)

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                login = base64.b64encode(":".join(LOGIN).encode()).decode()
                if self.headers.get("Authorization") != f"Basic {login}":
                    return self._send(401, "no auth")
                if self.path != "/switchover" or body.get("leader") != cluster.leader:
                    return self._send(412, "leader name does not match")
                cluster.switchovers.append(body)
                cluster.leader = body["candidate"]
                cluster.promoted_at = time.monotonic()
                time.sleep(cluster.answer_after)
                if cluster.unknown:
                    return self._send(503, "Switchover status unknown")
                self._send(200, f"Successfully switched over to \"{body['candidate']}\"")

            def log_message(self, *args):
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def stop(self) -> None:
        for server in self.servers.values():
            server.shutdown()
            server.server_close()


@pytest.fixture
def patroni_cluster(monkeypatch):
    monkeypatch.setattr(leave, "HAPROXY_RISE_SECONDS", 0.0)
    made: list[PatroniCluster] = []

    def make(**kwargs) -> PatroniCluster:
        made.append(PatroniCluster(**kwargs))
        return made[-1]
    yield make
    for cluster in made:
        cluster.stop()


def test_the_primary_switches_over_to_the_synchronous_standby(patroni_cluster):
    cluster = patroni_cluster(leader="db-0")
    report = leave.hand_over("db-0", leave.Patroni(cluster.url("db-0"), *LOGIN))
    assert report["switchover"] == "done" and report["candidate"] == "db-2", report
    assert cluster.switchovers == [{"leader": "db-0", "candidate": "db-2"}]
    assert cluster.leader == "db-2"


def test_the_handover_waits_for_the_new_primary_to_leave_recovery(patroni_cluster):
    """Patroni's /primary is 200 once the candidate holds the lock; HAProxy (and so the
    leave) waits for its PostgreSQL to take writes too."""
    cluster = patroni_cluster(leader="db-0", promotion=1.5)
    started = time.monotonic()
    report = leave.hand_over("db-0", leave.Patroni(cluster.url("db-0"), *LOGIN))
    assert report["switchover"] == "done", report
    assert time.monotonic() - started >= 1.5
    assert leave.Patroni(cluster.url("db-2")).takes_writes()
    assert not leave.Patroni(cluster.url("db-0")).takes_writes()


def test_a_lagging_standby_is_passed_over_and_a_replica_does_nothing(patroni_cluster):
    cluster = patroni_cluster(leader="db-0", lagging=("db-2",))
    assert leave.candidate({"members": cluster.members()}, "db-0")["name"] == "db-1"
    assert leave.hand_over("db-1", leave.Patroni(cluster.url("db-1"), *LOGIN)) == \
        {"primary": False}
    assert cluster.switchovers == []


def test_a_switchover_answered_late_is_judged_by_the_new_primary(patroni_cluster,
                                                                  monkeypatch):
    monkeypatch.setattr(leave, "SWITCHOVER_TIMEOUT", 2.0)  # the POST gives up after 1 s
    cluster = patroni_cluster(leader="db-0", answer_after=1.5)
    report = leave.hand_over("db-0", leave.Patroni(cluster.url("db-0"), *LOGIN))
    assert report["switchover"] == "done" and report["candidate"] == "db-2", report


def test_a_switchover_patroni_stopped_waiting_for_is_judged_by_the_new_primary(
        patroni_cluster):
    """Stop 21's CI: Patroni answered 503 "Switchover status unknown" under TCG while the
    switchover went on; that is not a refusal."""
    cluster = patroni_cluster(leader="db-0", unknown=True, promotion=0.5)
    report = leave.hand_over("db-0", leave.Patroni(cluster.url("db-0"), *LOGIN))
    assert report["switchover"] == "done" and report["candidate"] == "db-2", report


def test_a_refused_switchover_is_reported_not_hidden(patroni_cluster):
    cluster = patroni_cluster(leader="db-0")
    report = leave.hand_over("db-0", leave.Patroni(cluster.url("db-0"), "patroni", "wrong"))
    assert report["switchover"].startswith("refused: HTTP 401"), report
    assert cluster.leader == "db-0"


def test_no_candidate_leaves_it_to_failover():
    members = {"members": [{"name": "db-0", "role": "leader", "state": "running"},
                           {"name": "db-1", "role": "replica", "state": "starting"}]}
    assert leave.candidate(members, "db-0") is None


def test_only_a_power_off_is_a_leave():
    jobs = "1 poweroff.target start waiting\n7 patroni.service stop running\n"
    assert leave.shutting_down_for_good(lambda: jobs)
    assert not leave.shutting_down_for_good(lambda: "1 reboot.target start waiting\n")
    assert not leave.shutting_down_for_good(lambda: "")
    report = leave.leave("db-0", leave.Patroni("http://127.0.0.1:9"), Client("http://127.0.0.1:9"),
                         etcd_data=None, for_good=lambda: False)
    assert report["left"] is False


@needs_etcd
def test_the_member_leaves_when_the_rest_keep_a_quorum(three, tmp_path):
    clients = three
    data = tmp_path / "db-0"  # where the fixture's etcd keeps db-0's data
    assert (data / "member").is_dir()
    report = leave.leave("db-0", leave.Patroni("http://127.0.0.1:9"), clients["db-0"],
                         etcd_data=data, for_good=lambda: True)
    assert report["etcd"] == "removed" and report["members_left"] == 2, report
    assert report["switchover"].startswith("skipped")  # no Patroni answered
    assert sorted(m.name for m in clients["db-1"].members()) == ["db-1", "db-2"]
    assert not (data / "member").exists()


@needs_etcd
def test_the_member_stays_when_leaving_would_lose_the_quorum(three, etcds, monkeypatch):
    running, clients = etcds, three
    # A follower dies (no election to wait out): one healthy voting peer of two is left.
    leader_id = clients["db-0"].status().leader_id
    victim = next(n for n in ("db-1", "db-2") if clients[n].status().member_id != leader_id)
    proc = next(p for p in running.procs if p.args[2] == victim)
    proc.kill()
    proc.wait(timeout=10)
    monkeypatch.setattr(leave, "QUORUM_WAIT", 2.0)
    report = leave.leave_etcd("db-0", clients["db-0"], lambda m: Client(m.client_urls[0]))
    assert report["etcd"].startswith("member kept: 1 healthy voting peer(s) of 2"), report
    assert len(clients["db-0"].members()) == 3


@needs_etcd
def test_a_peer_unhealthy_for_a_moment_is_waited_for(three, tmp_path):
    """The switchover's etcd leadership transfer makes members answer /health false for
    a moment: the leave looks again instead of keeping the member."""
    clients = three
    looks: dict[str, int] = {}

    class Transferring(Client):
        def healthy(self) -> bool:
            looks[self.url] = looks.get(self.url, 0) + 1
            return looks[self.url] > 2 and super().healthy()

    started = time.monotonic()
    report = leave.leave_etcd("db-0", clients["db-0"], lambda m: Transferring(m.client_urls[0]))
    assert report["etcd"] == "removed", report
    assert time.monotonic() - started >= 2  # two looks, a second apart, found no quorum
    assert sorted(m.name for m in clients["db-1"].members()) == ["db-1", "db-2"]
