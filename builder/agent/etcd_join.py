"""Whether this node's etcd starts a new cluster or joins a running one.

etcd never guesses: `new` on a node whose cluster is running makes a second, split
cluster; `existing` without a membership entry is refused. So the live peers are asked
first. If one answers, the cluster exists: members that are dead predecessors are
removed, this node is added (as a learner, which does not count towards quorum until it
has caught up and is promoted) and starts `existing` with an empty data directory.
If nobody answers, all discovered peers start `new` together with the same initial
cluster and a token unique to the cluster and its members.

Known limit: two replacements joining at once can race (etcd admits one learner at a
time; a member added by a peer that discovery does not list yet looks dead). The loser's
role step fails, and the agent's next attempt (builder/agent/boot.py) joins.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time

from builder.agent.etcd import Client, EtcdError, Member

MUTATION_TIMEOUT = 20.0


@dataclasses.dataclass(frozen=True)
class Peer:
    name: str
    peer_url: str
    client_url: str


@dataclasses.dataclass
class Decision:
    state: str                       # "new" | "existing"
    initial_cluster: str
    token: str
    reason: str
    member_id: str | None = None     # this node's id, when it was added to a live cluster
    learner: bool = False            # must be promoted once its etcd runs
    removed: list[str] = dataclasses.field(default_factory=list)
    asked: str | None = None         # the client URL of the member that answered

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def token(cluster: str, names: list[str]) -> str:
    digest = hashlib.sha256("\n".join([cluster, *sorted(names)]).encode()).hexdigest()
    return f"{cluster}-{digest[:16]}"


def initial_cluster(pairs: list[tuple[str, str]]) -> str:
    return ",".join(f"{name}={url}" for name, url in sorted(pairs))


def ask(peers: list[Peer], me: Peer, *, rounds: int = 3, interval: float = 1.0,
        timeout: float = 2.0) -> tuple[Client, list[Member]] | None:
    """The member list from the first other peer that answers, or None if none does."""
    others = [p for p in peers if p.name != me.name and p.client_url != me.client_url]
    for attempt in range(rounds):
        for peer in others:
            client = Client(peer.client_url, timeout=timeout)
            try:
                return client, client.members()
            except EtcdError:
                continue
        if attempt + 1 < rounds:
            time.sleep(interval)
    return None


def _answers(member: Member, timeout: float) -> bool:
    return any(Client(url, timeout=timeout).healthy() for url in member.client_urls)


def decide(cluster: str, me: Peer, peers: list[Peer], *, data_exists: bool = False,
           rounds: int = 3, interval: float = 1.0, timeout: float = 2.0) -> Decision:
    names = [p.name for p in peers]
    new_token = token(cluster, names)
    everyone = initial_cluster([(p.name, p.peer_url) for p in peers])
    if data_exists:
        # A reboot: etcd ignores the initial-cluster settings once it has a data dir.
        return Decision("existing", everyone, new_token,
                        reason="data directory present: restarting as the same member")
    answered = ask(peers, me, rounds=rounds, interval=interval, timeout=timeout)
    if answered is None:
        return Decision("new", everyone, new_token,
                        reason=f"no peer answered on {len(peers) - 1} client URL(s)")
    asked, members = answered
    # Membership changes go through raft: give them longer than a read (2 s was not enough
    # for a member add under TCG, and the add had succeeded when the client gave up).
    client = Client(asked.url, timeout=MUTATION_TIMEOUT)
    discovered = {p.peer_url for p in peers if p.name != me.name}
    own: Member | None = None
    removed: list[str] = []
    for member in members:
        mine = me.peer_url in member.peer_urls
        if mine and not member.client_urls:
            # Our slot, never started: a member of the initial cluster that the faster peers
            # bootstrapped without us, or added by an earlier run. (A member publishes its
            # client URLs when it first starts, so a dead predecessor has them.)
            own = member
            continue
        predecessor = mine or member.name == me.name
        gone = not set(member.peer_urls) & discovered and not _answers(member, timeout)
        if predecessor or gone:
            client.remove(member.id)
            removed.append(member.name or member.id)
    learner = own.learner if own else True
    if own is None:
        own = _add_learner(client, me)
    kept = [m for m in members if (m.name or m.id) not in removed and m.id != own.id]
    # etcd checks that the initial cluster has exactly the live membership (compared by
    # peer URL); a member that never started has no name yet, its id stands in.
    pairs = [(m.name or m.id, url) for m in kept for url in m.peer_urls]
    pairs.append((me.name, me.peer_url))
    return Decision("existing", initial_cluster(pairs), new_token,
                    reason=f"cluster answered at {client.url}", member_id=own.id,
                    learner=learner, removed=removed, asked=client.url)


def _add_learner(client: Client, me: Peer) -> Member:
    """Add this node as a learner; if the call failed but the add went through (a reply
    lost to a timeout), the entry it made is the one to use."""
    try:
        return client.add([me.peer_url], learner=True)
    except EtcdError:
        for member in client.members():
            if me.peer_url in member.peer_urls and not member.client_urls:
                return member
        raise


def promote(decision: Decision, peers: list[Peer], me: Peer, *, timeout: float = 120.0,
            interval: float = 1.0) -> float:
    """Promote this learner once it has caught up; seconds it took."""
    started = time.monotonic()
    urls = [decision.asked] + [p.client_url for p in peers if p.name != me.name]
    last = "no member answered"
    while True:
        for url in dict.fromkeys(u for u in urls if u):
            try:
                Client(url, timeout=MUTATION_TIMEOUT).promote(decision.member_id)
                return round(time.monotonic() - started, 2)
            except EtcdError as exc:
                last = str(exc)
                if "not a learner" in last:  # promoted by an earlier run
                    return round(time.monotonic() - started, 2)
        if time.monotonic() - started >= timeout:
            raise EtcdError(f"etcd learner {me.name} not promoted after {timeout:.0f}s ({last})")
        time.sleep(interval)
