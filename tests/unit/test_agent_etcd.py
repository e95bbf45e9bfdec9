"""The node agent's etcd membership decision, against a real etcd on 127.0.0.1.

etcd comes from Debian's etcd-server package; without the binary on PATH only these tests
are skipped. Every etcd started here listens on 127.0.0.1 with free ports, keeps its data
in the test's tmp_path and is stopped by a finalizer, also when the test fails.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from builder.agent import etcd_join
from builder.agent.etcd import Client, EtcdError

ETCD = shutil.which("etcd")
needs_etcd = pytest.mark.skipif(
    ETCD is None, reason="etcd is not on PATH (Debian package etcd-server)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loopback_peer(name: str) -> etcd_join.Peer:
    return etcd_join.Peer(name, f"http://127.0.0.1:{free_port()}",
                          f"http://127.0.0.1:{free_port()}")


class Etcds:
    """etcd processes of one test; stop() ends every one of them."""

    def __init__(self, base: Path):
        self.base = base
        self.procs: list[subprocess.Popen] = []

    def start(self, peer: etcd_join.Peer, *, initial_cluster: str, state: str,
              token: str) -> Client:
        data = self.base / peer.name
        log = (self.base / f"{peer.name}.log").open("wb")
        self.procs.append(subprocess.Popen(
            [ETCD, "--name", peer.name, "--data-dir", str(data),
             "--listen-client-urls", peer.client_url, "--advertise-client-urls", peer.client_url,
             "--listen-peer-urls", peer.peer_url, "--initial-advertise-peer-urls", peer.peer_url,
             "--initial-cluster", initial_cluster, "--initial-cluster-state", state,
             "--initial-cluster-token", token],
            stdout=log, stderr=subprocess.STDOUT))
        log.close()
        return Client(peer.client_url)

    def wait_healthy(self, client: Client, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while not client.healthy():
            if any(p.poll() is not None for p in self.procs):
                pytest.fail(f"etcd exited: {self.logs()}")
            if time.monotonic() > deadline:
                pytest.fail(f"etcd at {client.url} not healthy after {timeout}s: {self.logs()}")
            time.sleep(0.2)

    def logs(self) -> str:
        return "\n".join(p.read_text()[-1500:] for p in self.base.glob("*.log"))

    def stop(self) -> None:
        # SIGKILL: the data is thrown away, and a graceful stop of a two-member cluster
        # waits seconds for a leader transfer to a peer that is stopping too.
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


@pytest.fixture
def etcds(tmp_path):
    if ETCD is None:
        pytest.skip("etcd is not on PATH (Debian package etcd-server)")
    running = Etcds(tmp_path)
    yield running
    running.stop()


@pytest.fixture
def live(etcds):
    """A running single-member cluster: (its peer, a client)."""
    peer = loopback_peer("db-0")
    client = etcds.start(peer, initial_cluster=f"db-0={peer.peer_url}", state="new",
                         token="agent-test")
    etcds.wait_healthy(client)
    return peer, client


@needs_etcd
def test_member_list_names_the_running_member(live):
    peer, client = live
    [member] = client.members()
    assert member.name == "db-0"
    assert member.peer_urls == (peer.peer_url,)
    assert member.client_urls == (peer.client_url,)
    assert not member.learner and int(member.id) > 0


@needs_etcd
def test_add_and_remove_a_member(live):
    _, client = live
    added = client.add(["http://127.0.0.1:1"], learner=True)
    members = {m.id: m for m in client.members()}
    assert members[added.id].learner and members[added.id].name == ""
    client.remove(added.id)
    assert added.id not in {m.id for m in client.members()}


@needs_etcd
def test_etcd_errors_carry_etcds_message(live):
    _, client = live
    with pytest.raises(EtcdError, match="member not found"):
        client.remove("12345")


@needs_etcd
def test_a_replacement_joins_the_running_cluster(live, etcds):
    """The live member answers: the dead predecessor (an address discovery no longer lists)
    is removed, the new node is added as a learner, starts `existing` with an empty data
    dir, is promoted, and the cluster ends with both as voting, started members."""
    old, client = live
    dead = client.add([f"http://127.0.0.1:{free_port()}"], learner=True)
    me = loopback_peer("db-1")

    decision = etcd_join.decide("shop", me, [old, me], rounds=1)

    assert decision.state == "existing"
    assert decision.asked == old.client_url
    assert decision.removed == [dead.id]
    assert decision.learner
    assert decision.initial_cluster == f"db-0={old.peer_url},db-1={me.peer_url}"
    members = {m.id: m for m in client.members()}
    assert dead.id not in members and members[decision.member_id].learner

    joined = etcds.start(me, initial_cluster=decision.initial_cluster, state=decision.state,
                         token=decision.token)
    etcd_join.promote(decision, [old, me], me, timeout=60, interval=0.5)
    etcds.wait_healthy(joined)
    final = {m.name: m for m in client.members()}
    assert set(final) == {"db-0", "db-1"}
    assert not final["db-1"].learner and final["db-1"].peer_urls == (me.peer_url,)


@needs_etcd
def test_an_added_but_never_started_self_is_reused(live):
    """A boot that added itself and then died must not add a second entry on retry."""
    old, client = live
    me = loopback_peer("db-1")
    earlier = client.add([me.peer_url], learner=True)

    decision = etcd_join.decide("shop", me, [old, me], rounds=1)

    assert decision.member_id == earlier.id and decision.removed == []
    assert len(client.members()) == 2


@needs_etcd
def test_a_late_member_of_the_initial_cluster_joins_instead_of_removing_itself(etcds):
    """Found in the first 3-VM boot: two nodes bootstrap `new` and reach quorum before the
    third asks. Its entry (named, by the initial cluster) never started, so it is its own
    slot, not a dead predecessor to remove: it starts `existing` and the cluster has three."""
    peers = [loopback_peer(f"db-{i}") for i in range(3)]
    everyone = etcd_join.initial_cluster([(p.name, p.peer_url) for p in peers])
    token = etcd_join.token("shop", [p.name for p in peers])
    clients = [etcds.start(p, initial_cluster=everyone, state="new", token=token)
               for p in peers[:2]]
    etcds.wait_healthy(clients[0])

    decision = etcd_join.decide("shop", peers[2], peers, rounds=1)

    assert decision.state == "existing" and decision.removed == [] and not decision.learner
    late = etcds.start(peers[2], initial_cluster=decision.initial_cluster,
                       state=decision.state, token=decision.token)
    etcds.wait_healthy(late)
    members = clients[0].members()
    assert sorted(m.name for m in members) == ["db-0", "db-1", "db-2"]
    assert all(m.client_urls and not m.learner for m in members)


@needs_etcd
def test_a_member_that_answers_is_kept_even_if_discovery_misses_it(live):
    """Discovery can lag behind a member that is up (here: it lists db-0's client URL
    under another peer URL): a member whose client URL answers is never removed."""
    old, client = live
    lagging = etcd_join.Peer("db-0", f"http://127.0.0.1:{free_port()}", old.client_url)
    me = loopback_peer("db-1")
    decision = etcd_join.decide("shop", me, [lagging, me], rounds=1)
    assert decision.state == "existing" and decision.removed == []
    assert "db-0" in {m.name for m in client.members()}


def test_nobody_answers_so_all_peers_start_new():
    peers = [loopback_peer(f"db-{i}") for i in (2, 0, 1)]
    decision = etcd_join.decide("shop", peers[1], peers, rounds=2, interval=0.1)
    assert decision.state == "new"
    assert decision.initial_cluster == ",".join(
        f"{p.name}={p.peer_url}" for p in sorted(peers, key=lambda p: p.name))
    assert decision.token == etcd_join.token("shop", ["db-0", "db-1", "db-2"])
    assert decision.member_id is None and not decision.learner


def test_a_node_with_data_restarts_without_asking():
    peers = [loopback_peer(f"db-{i}") for i in range(3)]
    started = time.monotonic()
    decision = etcd_join.decide("shop", peers[0], peers, data_exists=True, rounds=5,
                                interval=1.0)
    assert time.monotonic() - started < 1.0
    assert decision.state == "existing" and decision.member_id is None


def test_the_token_is_unique_per_cluster_and_membership_not_order():
    names = ["db-0", "db-1", "db-2"]
    assert etcd_join.token("shop", names) == etcd_join.token("shop", names[::-1])
    assert etcd_join.token("shop", names) != etcd_join.token("other", names)
    assert etcd_join.token("shop", names) != etcd_join.token("shop", ["db-0", "db-1", "db-3"])
    assert etcd_join.token("shop", names).startswith("shop-")


# ------------------------------------------------------------- etcd leadership guard

class PatroniRole:
    """Patroni's GET /primary on 127.0.0.1 (200 on the primary, 503 elsewhere): the one HTTP
    answer the guard reads from Patroni, served by a thread the test stops."""

    def __init__(self, primary: bool):
        import http.server
        import threading

        role = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                code = 200 if self.path == "/primary" and role.primary else 503
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.primary = primary
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def patroni():
    started: list[PatroniRole] = []

    def start(primary: bool) -> PatroniRole:
        started.append(PatroniRole(primary))
        return started[-1]
    yield start
    for role in started:
        role.stop()


@pytest.fixture
def three(etcds):
    """A running three-member cluster: {name: client}, each member healthy."""
    peers = [loopback_peer(f"db-{i}") for i in range(3)]
    everyone = etcd_join.initial_cluster([(p.name, p.peer_url) for p in peers])
    clients = {p.name: etcds.start(p, initial_cluster=everyone, state="new", token="guard")
               for p in peers}
    for client in clients.values():
        etcds.wait_healthy(client)
    return clients


def leader_of(clients: dict[str, Client]) -> str:
    names = {c.status().member_id: name for name, c in clients.items()}
    return names[next(iter(clients.values())).status().leader_id]


@needs_etcd
def test_status_names_the_member_and_the_leader(three):
    statuses = {name: c.status() for name, c in three.items()}
    assert len({s.leader_id for s in statuses.values()}) == 1
    assert sum(s.leader for s in statuses.values()) == 1
    assert len({s.member_id for s in statuses.values()}) == 3


@needs_etcd
def test_the_primarys_node_hands_etcd_leadership_to_a_follower(three, patroni):
    from builder.agent import etcd_leader

    name = leader_of(three)
    primary = patroni(primary=True)

    moved = etcd_leader.check(three[name], etcd_leader.primary_probe(primary.url))

    assert moved is not None and moved != name
    assert leader_of(three) == moved
    # Now a follower: the next look changes nothing.
    assert etcd_leader.check(three[name], etcd_leader.primary_probe(primary.url)) is None


@needs_etcd
def test_a_replicas_node_and_an_unreachable_patroni_keep_etcd_leadership(three, patroni):
    from builder.agent import etcd_leader

    name = leader_of(three)
    replica = patroni(primary=False)
    assert etcd_leader.check(three[name], etcd_leader.primary_probe(replica.url)) is None
    nobody = f"http://127.0.0.1:{free_port()}"
    assert etcd_leader.check(three[name], etcd_leader.primary_probe(nobody)) is None
    assert leader_of(three) == name


@needs_etcd
def test_the_guard_loop_moves_leadership_and_logs_it_once(three, patroni):
    from builder.agent import etcd_leader

    name = leader_of(three)
    primary = patroni(primary=True)
    lines: list[str] = []
    etcd_leader.guard(three[name].url, primary.url, interval=0.2, rounds=3, log=lines.append)
    assert leader_of(three) != name
    assert lines == [f"etcd leadership moved to {leader_of(three)}: this node runs the primary"]


def test_followers_skip_me_learners_and_members_never_started():
    from builder.agent.etcd import Member
    from builder.agent.etcd_leader import followers

    members = [Member("1", "db-0", ("p0",), ("c0",)), Member("2", "db-2", ("p2",), ("c2",)),
               Member("3", "", ("p3",), ()), Member("4", "db-4", ("p4",), ("c4",), True),
               Member("5", "db-1", ("p1",), ("c1",))]
    assert [m.name for m in followers(members, "1")] == ["db-1", "db-2"]
