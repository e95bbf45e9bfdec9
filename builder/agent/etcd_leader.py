"""Keep etcd's leadership off the node that runs the PostgreSQL primary.

A newly elected etcd leader renews every lease by its full TTL (etcd's lessor Promote). So
when one VM holds both the Patroni leader key and etcd's leadership and dies, the leader key
does not expire ttl minus the time since its last refresh after the crash, but a whole ttl
after etcd's election: one crash costs two timeouts. The failover bench (guards off, same
run, 3 kills each) measured 26.9 s median write outage with both on the killed VM and
22.3 s with etcd's leader elsewhere; with the guards on, 5 kills: 22.3 s. Every etcd-patroni node
runs this check every few seconds; only the primary's node ever acts, and only while its
local etcd member is the leader: it hands leadership to a follower that answers.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from builder.agent import readiness
from builder.agent.etcd import Client, EtcdError, Member

INTERVAL = 2.0


def followers(members: list[Member], me: str) -> list[Member]:
    """Voting members other than me that have started (and so publish a client URL)."""
    return sorted((m for m in members if m.id != me and not m.learner and m.client_urls),
                  key=lambda m: m.name)


def check(local: Client, is_primary: Callable[[], bool], *,
          peer_timeout: float = 2.0) -> str | None:
    """One look: the name of the member that leadership moved to, or None (nothing to do,
    or no healthy follower to hand it to)."""
    status = local.status()
    if not status.leader or not is_primary():
        return None
    for member in followers(local.members(), status.member_id):
        if Client(member.client_urls[0], timeout=peer_timeout).healthy():
            local.move_leader(member.id)
            return member.name or member.id
    return None


def primary_probe(patroni_url: str) -> Callable[[], bool]:
    """True while Patroni's REST API says this node is the primary (GET /primary is 200)."""
    probe = readiness.http_ok(f"{patroni_url.rstrip('/')}/primary")

    def is_primary() -> bool:
        try:
            return probe()
        except OSError:
            return False
    return is_primary


def guard(etcd_url: str, patroni_url: str, *, interval: float = INTERVAL,
          rounds: int | None = None, log: Callable[[str], None] = print) -> None:
    """Check every `interval` seconds, forever (or `rounds` times); errors are logged when
    they change and never end the loop: etcd or Patroni may be restarting."""
    local, is_primary = Client(etcd_url), primary_probe(patroni_url)
    last_error = None
    done = 0
    while rounds is None or done < rounds:
        try:
            moved = check(local, is_primary)
            if moved:
                log(f"etcd leadership moved to {moved}: this node runs the primary")
            last_error = None
        except EtcdError as exc:
            if str(exc) != last_error:
                log(f"etcd not answering: {exc}")
            last_error = str(exc)
        done += 1
        if rounds is None or done < rounds:
            time.sleep(interval)
