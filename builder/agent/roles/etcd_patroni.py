"""etcd member + Patroni (which runs PostgreSQL 17): one node of the HA database.

Order: softdog, etcd's new-vs-existing decision (builder/agent/etcd_join.py), configs,
etcd, its promotion when it joined as a learner, etcd healthy, then Patroni, ready when
its REST API's /health answers 200 (PostgreSQL up, as primary or streaming replica), then
the guard that keeps etcd's leadership off the primary's node (builder/agent/etcd_leader.py).

Patroni timing, tighter than Patroni's defaults (ttl 30, loop_wait 10, retry_timeout 10)
which cost ~25 s of write outage per node crash in our lab (notes/ha.md):
- ttl 20, loop_wait 5, retry_timeout 5 keep Patroni's rule loop_wait + 2*retry_timeout
  <= ttl (a leader that misses one loop and retries twice still holds the lock), and
  20 s is the smallest ttl Patroni accepts. So a node crash costs, measured from the logs:
  15-20 s until the leader key expires (ttl minus the time since its last refresh), 2 s
  while the new leader's pre-promotion check waits for the dead node's REST API (a
  timeout hard-coded in Patroni), ~0.5 s of promotion and 1-2 s of HAProxy checks:
  ~22 s median under TCG, which no Patroni setting brings to 15 s.
- primary_start_timeout 10: the default 300 s lets a primary whose PostgreSQL crashed
  spend 5 minutes restarting in place before anyone fails over; with synchronous_mode a
  synchronous standby holds every acknowledged commit, so failing over after 10 s loses
  nothing and shortens the outage.
- settings `patroni_ttl`, `patroni_loop_wait` and `patroni_retry_timeout` replace the
  first three, checked against the same rule: a host whose guests stall for seconds (a
  local cluster under QEMU's emulation, builder/cluster/manage.py) needs a longer ttl,
  or the watchdog (ttl - 5 s) resets a primary that was only starved.
- watchdog `automatic` when softdog loads: a primary whose Patroni died is reset before
  its leader key expires, so it cannot keep taking writes; `off` where there is none.

Settings: `ready_timeout` (s, default 600: a replica's first basebackup takes a while),
`etcd_ready_timeout` (60), `synchronous_mode` (true), `etcd_ask_rounds` (3: how many
times, a second apart, the peers are asked for a running cluster before starting new),
`app_user` and `app_database` (saleor: the application's role and database, created once
by Patroni's post_bootstrap hook with the `saleor_db_password` secret), `lifecycle_hook`
(builder-graceful-leave: the termination hook the AWS watcher completes, lifecycle.py).
"""

from __future__ import annotations

import os
import pwd
import re

from builder.agent import etcd_join, readiness, templating
from builder.agent.errors import AgentError
from builder.agent.etcd import Client
from builder.agent.roles import APP_DATABASE as APP_DB_NAME
from builder.agent.roles import APP_USER, Inputs

ROLE = "etcd-patroni"
PEER_ROLES = ["etcd-patroni"]
ETCD_ENV = "/etc/default/etcd"          # Debian's etcd.service EnvironmentFile
PATRONI_CONFIG = "/etc/patroni/config.yml"  # Debian's patroni.service reads this one
ETCD_DATA = "/var/lib/etcd"
WATCHDOG = "/dev/watchdog"
TIMING = {"ttl": 20, "loop_wait": 5, "retry_timeout": 5, "primary_start_timeout": 10}
WATCHDOG_SAFETY_MARGIN = 5  # patroni.yml.j2: the watchdog fires at ttl minus this
CLIENT_PORT, PEER_PORT = 2379, 2380
GUARD_ENV = "/etc/default/builder-etcd-leader-guard"
LEAVE_UNIT = "builder-graceful-leave"
LIFECYCLE_UNIT = "builder-lifecycle-watch"
APP_DATABASE = "/etc/patroni/app-database.psql"
APP_PASSWORD = "/etc/patroni/app-database.password"
IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def as_peer(entry: dict) -> etcd_join.Peer:
    address = entry["address"]
    return etcd_join.Peer(entry["name"], f"http://{address}:{PEER_PORT}",
                          f"http://{address}:{CLIENT_PORT}")


def watchdog_mode(inputs: Inputs) -> str:
    loaded = inputs.services.run("modprobe", "softdog", check=False)
    device = inputs.root(WATCHDOG)
    if not (loaded and device.exists()):
        return "off"
    if inputs.root.is_system:
        # Patroni opens the device as postgres; softdog creates it root-only.
        os.chown(device, pwd.getpwnam("postgres").pw_uid, -1)
    return "automatic"


def data_dir(inputs: Inputs) -> str:
    return f"{ETCD_DATA}/{inputs.config.cluster}"


def decide(inputs: Inputs, node: dict) -> etcd_join.Decision:
    peers = [as_peer(p) for p in inputs.peers.get(ROLE, [])]
    if not node["listed"]:
        raise AgentError(f"this node's address {node['address']} is not among the "
                         f"{len(peers)} discovered {ROLE} peers of cluster "
                         f"{inputs.config.cluster}")
    data_exists = (inputs.root(data_dir(inputs)) / "member").is_dir()
    return etcd_join.decide(inputs.config.cluster, as_peer(node), peers,
                            data_exists=data_exists,
                            rounds=int(inputs.setting("etcd_ask_rounds", 3)))


def timing(inputs: Inputs) -> dict:
    """TIMING with the node's `patroni_*` settings, refused unless Patroni would accept it
    and the watchdog would still fire before the leader key expires."""
    chosen = dict(TIMING)
    for key in ("ttl", "loop_wait", "retry_timeout"):
        value = inputs.setting(f"patroni_{key}", chosen[key])
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise AgentError(f"setting patroni_{key}: expected a whole number of seconds "
                             f"(>= 1), got {value!r}")
        chosen[key] = value
    if chosen["ttl"] < 20:
        raise AgentError(f"setting patroni_ttl: {chosen['ttl']} is below 20, the smallest "
                         "ttl Patroni accepts")
    if chosen["loop_wait"] + 2 * chosen["retry_timeout"] > chosen["ttl"]:
        raise AgentError(f"settings patroni_*: loop_wait {chosen['loop_wait']} + 2 x "
                         f"retry_timeout {chosen['retry_timeout']} exceeds ttl "
                         f"{chosen['ttl']} (Patroni's rule: a leader that misses one loop "
                         "and retries twice must still hold its lock)")
    return chosen


def context(inputs: Inputs, decision: etcd_join.Decision, watchdog: str) -> dict:
    return {
        "node": inputs.node(),
        "peers": inputs.peers,
        "cluster": {"name": inputs.config.cluster, "cidr": inputs.config.cidr},
        "secrets": inputs.secrets,
        "etcd": {"initial_cluster": decision.initial_cluster,
                 "initial_cluster_state": decision.state, "token": decision.token},
        "timing": timing(inputs),
        "watchdog_safety_margin": WATCHDOG_SAFETY_MARGIN,
        "synchronous_mode": bool(inputs.setting("synchronous_mode", True)),
        "watchdog_mode": watchdog,
    }


def write_app_database(inputs: Inputs) -> None:
    """What the post_bootstrap hook creates: names as psql variables, the password alone
    in a postgres-only file (psql reads it with a backtick command, so it is never in argv)."""
    names = {"app_user": inputs.setting("app_user", APP_USER),
             "app_db": inputs.setting("app_database", APP_DB_NAME)}
    for key, value in names.items():
        if not isinstance(value, str) or not IDENTIFIER.match(value):
            raise AgentError(f"setting {key}: {value!r} is not a lower-case SQL identifier")
    psql = "".join(f"\\set {key} '{value}'\n" for key, value in names.items())
    templating.write(inputs.root, APP_DATABASE, psql, mode=0o600, owner="postgres",
                     group="postgres")
    templating.write(inputs.root, APP_PASSWORD, inputs.secrets["saleor_db_password"],
                     mode=0o600, owner="postgres", group="postgres")


def configure(inputs: Inputs) -> dict:
    node = inputs.node()
    watchdog = watchdog_mode(inputs)
    decision = decide(inputs, node)
    ctx = context(inputs, decision, watchdog)
    templating.directory(inputs.root, data_dir(inputs), mode=0o700, owner="etcd",
                         group="etcd")
    templating.write(inputs.root, ETCD_ENV,
                     templating.render(inputs.root, ROLE, "etcd.env.j2", ctx))
    templating.directory(inputs.root, "/etc/patroni", mode=0o750, owner="postgres",
                         group="postgres")
    templating.write(inputs.root, PATRONI_CONFIG,
                     templating.render(inputs.root, ROLE, "patroni.yml.j2", ctx),
                     mode=0o600, owner="postgres", group="postgres")
    write_app_database(inputs)
    templating.write(inputs.root, GUARD_ENV, f"PATRONI_URL=http://{node['address']}:8008\n")
    report = {"files": [ETCD_ENV, PATRONI_CONFIG, APP_DATABASE, APP_PASSWORD, GUARD_ENV],
              "node": node["name"],
              "etcd": decision.as_dict(), "watchdog": watchdog, "timing": ctx["timing"]}
    inputs.services.restart("etcd")
    dry = inputs.services.dry_run
    if decision.learner and not dry:
        peers = [as_peer(p) for p in inputs.peers[ROLE]]
        report["promoted_seconds"] = etcd_join.promote(decision, peers, as_peer(node))
    if not dry:
        report["etcd_ready_seconds"] = readiness.wait(
            "etcd", Client(f"http://127.0.0.1:{CLIENT_PORT}").healthy,
            timeout=float(inputs.setting("etcd_ready_timeout", 60)))
    inputs.services.restart("patroni")
    if not dry:
        report["ready_seconds"] = readiness.wait(
            "patroni", readiness.http_ok(f"http://{node['address']}:8008/health"),
            timeout=float(inputs.setting("ready_timeout", 600)), interval=2.0)
    inputs.services.restart("builder-etcd-leader-guard")
    # start, never restart: stopping it is the leave (builder/agent/leave.py).
    inputs.services.start(LEAVE_UNIT)
    if inputs.identity.source == "ec2":
        # Only EC2 has an Auto Scaling group's lifecycle in IMDS (builder/agent/lifecycle.py);
        # on qemu/NoCloud there is nothing to watch.
        inputs.services.start(LIFECYCLE_UNIT)
    return report


def leave_cluster(root, for_good=None) -> dict:
    """`builder-agent leave`: this node's graceful leave, from the configs its boot wrote;
    the report is also kept on disk (the journal of a powered-off node is out of reach).
    `for_good` says whether this is a leave (default: systemd's jobs power the machine off)."""
    import yaml

    from builder.agent import leave

    cfg = yaml.safe_load(root(PATRONI_CONFIG).read_text())
    auth = cfg["restapi"].get("authentication") or {}
    patroni = leave.Patroni(f"http://{cfg['restapi']['connect_address']}",
                            auth.get("username", ""), auth.get("password", ""))
    local = Client(f"http://127.0.0.1:{CLIENT_PORT}", timeout=leave.ETCD_TIMEOUT)
    report = leave.leave(cfg["name"], patroni, local,
                         etcd_data=root(ETCD_DATA) / cfg["scope"],
                         for_good=for_good or leave.shutting_down_for_good)
    record_leave(root, report)
    return report


def record_leave(root, report: dict) -> None:
    import json

    from builder.agent import leave

    path = root(leave.REPORT)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
