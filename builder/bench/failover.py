"""Failover of the HA database, measured on a real local cluster (3 x etcd-patroni, 1 x
HAProxy booted by `builder cluster up`) under a steady writer through HAProxy 5432:

- hard kills of the primary's VM: write outage (longest gap between acknowledged writes),
  acknowledged writes lost, boot-to-healthy seconds of the killed node when it comes back;
- planned switchovers: write outage;
- the same kills with Patroni's default timing (ttl 30, loop_wait 10, retry_timeout 10,
  primary_start_timeout 300), set through Patroni's dynamic configuration in the same run;
- the seed's HAProxy `tcp-check` backend in place of ours: writes sent to replicas, and
  acknowledged writes lost across a primary kill;
- what the etcd leadership guard is worth (builder/agent/etcd_leader.py): with the guards
  stopped, kills alternate between a primary whose VM was made etcd's leader too and one
  whose VM was not (etcdctl move-leader before each kill).

Goals (issue 4): node-crash outage <= 15 s median, switchover <= 3 s, 0 writes lost.
Needs the etcd-patroni and haproxy images (`builder bake etcd-patroni haproxy`).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import click

from builder.agent.roles.etcd_patroni import TIMING
from builder.bench.common import Options, builder_command, table
from builder.cluster import health
from builder.cluster.state import USER
from builder.cluster.state import load as load_cluster
from builder.cluster.vm import ssh, ssh_command
from builder.errors import OperationError, UserError

DESCRIPTION = "primary kill / switchover write outage, ours vs Patroni defaults vs seed tcp-check"
KILLS = 5
SWITCHOVERS = 3
COLOCATED_KILLS = 6
SEED_WRITE_SECONDS = 30
SEED_CRASH_SECONDS = 60
GOALS = {"crash_outage_median_s": 15.0, "switchover_outage_max_s": 3.0, "lost_writes": 0}
PATRONI_DEFAULTS = {"ttl": 30, "loop_wait": 10, "retry_timeout": 10,
                    "primary_start_timeout": 300}
ENV = "bench-failover"
PATRONICTL = "sudo -u postgres patronictl -c /etc/patroni/config.yml"
# A subset of the phases, comma-separated (the whole part takes ~75 min under TCG).
PHASES_VAR = "BUILDER_BENCH_FAILOVER_PHASES"
PHASES = ("ours", "switchover", "colocated", "defaults", "seed")
GUARD = "builder-etcd-leader-guard"


def available() -> str | None:
    import shutil

    for tool in ("qemu-system-x86_64", "vde_switch", "xorriso"):
        if not shutil.which(tool):
            return f"{tool} is not installed (make setup)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg is not installed (pip install -e '.[dev]')"
    return None


class Bench:
    def __init__(self, options: Options, env_file: Path):
        self.root = options.project.root
        self.state = options.project.state
        self.env_file = env_file

    def cli(self, *args: str, timeout: float = 1800) -> dict:
        proc = subprocess.run(builder_command(*args, "--env", str(self.env_file), "--json"),
                              cwd=self.root, capture_output=True, text=True, check=False,
                              timeout=timeout, stdin=subprocess.DEVNULL)
        if proc.returncode != 0:
            raise OperationError(f"builder {' '.join(args)}: {proc.stderr.strip()[-500:]}")
        return json.loads(proc.stdout)

    def status(self) -> dict:
        return self.cli("cluster", "status", timeout=300)

    def whole(self) -> tuple[dict, float]:
        return health.wait_whole(self.status, timeout=900, interval=2)

    def on(self, name: str, command: str, stdin: str | None = None) -> str:
        cluster = load_cluster(self.state, ENV)
        vm = cluster.vm(cluster.node(name))
        if stdin is None:
            proc = ssh(vm, cluster.key, USER, command, timeout=120)
        else:
            proc = subprocess.run(ssh_command(vm.ssh_port, cluster.key, USER, command),
                                  input=stdin, capture_output=True, text=True, timeout=120,
                                  check=False)
        if proc.returncode != 0:
            raise OperationError(f"{name}: {command}: "
                                 f"{(proc.stderr or proc.stdout).strip()[-300:]}")
        return proc.stdout

    # -------------------------------------------------------------------- measurements

    def kills(self, dsn: str, count: int, label: str, arrange=None) -> dict:
        """`count` primary kills; arrange(i), when given, prepares the cluster before kill i."""
        from builder.cluster.writer import Writer

        outages, rejoin, lost, misrouted, both = [], [], 0, 0, []
        for i in range(count):
            if arrange is not None:
                arrange(i)
            status, _ = self.whole()
            old = health.leader(status)
            both.append(bool(old.get("etcd", {}).get("leader")))
            writer = Writer(dsn).start()
            try:
                _wait(lambda w=writer: len(w.acks) >= 20, 60, "writes before the kill")
                self.cli("cluster", "kill", old["name"])
                moment = time.monotonic()
                _wait(lambda w=writer, m=moment, a=old["address"]:
                      any(x.server != a for x in w.acked_after(m)), 300,
                      "a write taken by the new primary")
                outages.append(writer.outage_around(moment))
                started = self.cli("cluster", "start", old["name"], timeout=1800)
                rejoin.append(started["ready_seconds"])
                self.whole()
            finally:
                writer.stop()
            lost += len(writer.missing(dsn))
            misrouted += writer.misrouted
            click.echo(f"  {label} kill {i + 1}/{count}: {old['name']}"
                       f"{' (also etcd leader)' if both[-1] else ''} outage "
                       f"{outages[-1]:.1f} s, back and ready in {rejoin[-1]:.0f} s")
        return {"outage_s": _stats(outages), "node_ready_after_restart_s": _stats(rejoin),
                "lost_writes": lost, "misrouted_writes": misrouted,
                "killed_node_was_etcd_leader": both}

    def switchovers(self, dsn: str, count: int) -> dict:
        from builder.cluster.writer import Writer

        outages, lost = [], 0
        for i in range(count):
            status, _ = self.whole()
            old = health.leader(status)
            # With synchronous_mode Patroni switches over only to the synchronous standby.
            candidate = sorted(n for n, row in health.db_nodes(status).items()
                               if row["patroni"]["role"] == "sync_standby")[0]
            writer = Writer(dsn).start()
            try:
                _wait(lambda w=writer: len(w.acks) >= 20, 60, "writes before the switchover")
                moment = time.monotonic()
                said = self.on(old["name"], f"{PATRONICTL} switchover --leader {old['name']} "
                                            f"--candidate {candidate} --force")
                if "failed" in said.lower():  # patronictl can exit 0 on a refused switchover
                    raise OperationError(f"switchover to {candidate}: {said.strip()[-300:]}")
                _wait(lambda w=writer, m=moment, a=old["address"]:
                      any(x.server != a for x in w.acked_after(m)), 120,
                      "a write taken by the new primary")
                time.sleep(1)
                outages.append(writer.outage_around(moment))
            finally:
                writer.stop()
            lost += len(writer.missing(dsn))
            click.echo(f"  switchover {i + 1}/{count}: {old['name']} -> {candidate}, outage "
                       f"{outages[-1]:.2f} s")
        return {"outage_s": _stats(outages), "lost_writes": lost}

    def colocated(self, dsn: str, count: int) -> dict:
        """Kills with etcd's leader on the primary's VM (odd i) or elsewhere (even i), the
        guards stopped so the placement holds."""
        def arrange(i: int) -> None:
            self.place_etcd_leader(on_primary=i % 2 == 1)

        try:
            result = self.kills(dsn, count, "guard off", arrange)
        finally:
            self.guards("start")
        split = {True: [], False: []}
        for outage, together in zip(result["outage_s"]["samples"],
                                    result["killed_node_was_etcd_leader"], strict=True):
            split[together].append(outage)
        if not split[True] or not split[False]:
            raise OperationError("colocated phase: the etcd leader did not stay where it was "
                                 f"put: {result['killed_node_was_etcd_leader']}")
        both, apart = _stats(split[True]), _stats(split[False])
        return {"etcd_leader_on_killed_vm": both, "etcd_leader_elsewhere": apart,
                "ratio_colocated_over_apart": round(both["median"] / apart["median"], 2),
                "lost_writes": result["lost_writes"],
                "misrouted_writes": result["misrouted_writes"]}

    def guards(self, action: str) -> None:
        for node in load_cluster(self.state, ENV).nodes:
            if node.role == health.DB_ROLE:
                self.on(node.name, f"sudo systemctl {action} {GUARD}")

    def place_etcd_leader(self, on_primary: bool) -> None:
        """Stop the guards (a restarted node's agent starts its own again), then move etcd's
        leadership onto the primary's VM or onto the first replica's."""
        self.guards("stop")
        status, _ = self.whole()
        primary = health.leader(status)["name"]
        db = health.db_nodes(status)
        target = primary if on_primary else sorted(n for n in db if n != primary)[0]
        if db[target]["etcd"].get("leader"):
            return
        said = self.on(target, "etcdctl --endpoints=http://127.0.0.1:2379 endpoint status "
                               "-w json")
        member = json.loads(said)[0]["Status"]["header"]["member_id"]
        urls = ",".join(f"http://{row['address']}:2379" for row in db.values())
        self.on(target, f"etcdctl --endpoints={urls} move-leader {member:x}")
        _wait(lambda: health.db_nodes(self.status())[target]["etcd"].get("leader"), 30,
              f"etcd leadership on {target}")

    def set_timing(self, timing: dict) -> None:
        status, _ = self.whole()
        sets = " ".join(f"--set {k}={v}" for k, v in timing.items())
        self.on(health.leader(status)["name"], f"{PATRONICTL} edit-config --force {sets}")

    def seed_haproxy(self, dsn: str) -> dict:
        """Swap HAProxy's postgres section for the seed's tcp-check backend, then write."""
        from builder.cluster.writer import Writer

        cluster = load_cluster(self.state, ENV)
        proxy = next(n for n in cluster.nodes if n.role == "haproxy")
        config = self.on(proxy.name, "sudo cat /etc/haproxy/haproxy.cfg")
        # The table first, through our backend: behind the seed's, CREATE TABLE itself can
        # land on a replica (run 2 of this bench died of exactly that).
        steady, writer = Writer(dsn, fresh=True), Writer(dsn)
        writer.prepare()
        self.on(proxy.name, "sudo tee /etc/haproxy/haproxy.cfg >/dev/null",
                stdin=seed_config(config, [n for n in cluster.nodes
                                           if n.role == health.DB_ROLE]))
        self.on(proxy.name, "sudo systemctl reload haproxy")
        time.sleep(3)
        try:
            # A connection per write (Django's default): each is routed on its own.
            steady.start(prepare=False)
            time.sleep(SEED_WRITE_SECONDS)
            steady.stop()
            # A long-lived connection (a pool) across a primary kill.
            writer.start(prepare=False)
            time.sleep(5)
            crash = self.kills_with(writer, dsn)
        finally:
            steady.stop()
            writer.stop()
            self.on(proxy.name, "sudo tee /etc/haproxy/haproxy.cfg >/dev/null", stdin=config)
            self.on(proxy.name, "sudo systemctl reload haproxy")
        self.whole()
        time.sleep(5)  # our backend's checks mark the primary up again (rise 2)
        return {"steady_attempts": steady.attempts, "steady_misrouted": steady.misrouted,
                "misrouted_share": round(steady.misrouted / max(steady.attempts, 1), 3),
                "lost_writes": len(writer.missing(dsn)) + len(steady.missing(dsn)),
                "crash_misrouted": writer.misrouted, **crash}

    def kills_with(self, writer, dsn: str) -> dict:
        status, _ = self.whole()
        old = health.leader(status)
        self.cli("cluster", "kill", old["name"])
        moment = time.monotonic()
        time.sleep(SEED_CRASH_SECONDS)  # whatever the proxy does meanwhile is the seed's
        # No write taken by then counts as an outage of the whole window (the seed has no
        # `on-marked-down shutdown-sessions`: a session to the dead primary just hangs).
        outage = writer.outage_around(moment, until=time.monotonic())
        self.cli("cluster", "start", old["name"], timeout=1800)
        self.whole()
        time.sleep(5)
        return {"crash_outage_s": outage}


def seed_config(config: str, db_nodes) -> str:
    """Our haproxy.cfg with its `listen postgres` section replaced by the seed's."""
    head, rest = config.split("listen postgres\n", 1)
    _, tail = rest.split("\nlisten ", 1)
    servers = "".join(f"  server {n.name} {n.address}:5432 check\n" for n in db_nodes)
    seed = ("# The seed's backend (bench only): any node with port 5432 open takes writes.\n"
            "frontend postgres\n  bind *:5432\n  mode tcp\n  default_backend patroni_pg\n\n"
            "backend patroni_pg\n  mode tcp\n  option tcp-check\n  tcp-check connect port 5432\n"
            + servers + "\n")
    return head + seed + "listen " + tail


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise OperationError(f"failover bench: no {what} within {timeout:.0f} s")
        time.sleep(0.5)


def _stats(samples: list[float]) -> dict:
    return {"median": round(statistics.median(samples), 2), "max": round(max(samples), 2),
            "min": round(min(samples), 2), "samples": samples}


def run(options: Options) -> dict:
    phases = set(os.environ.get(PHASES_VAR, ",".join(PHASES)).split(","))
    if not phases <= set(PHASES):
        raise UserError(f"{PHASES_VAR}: phases are {', '.join(PHASES)}", field=PHASES_VAR)
    subprocess.run(builder_command("bake", "etcd-patroni", "haproxy", "--parallel", "2"),
                   cwd=options.project.root, check=True, stdin=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory(prefix="builder-bench-failover-") as tmp:
        env_file = Path(tmp) / f"{ENV}.yaml"
        env_file.write_text(f"name: {ENV}\nnodes: {{etcd-patroni: 3, haproxy: 1}}\n")
        bench = Bench(options, env_file)
        bench.cli("cluster", "down")
        try:
            started = time.monotonic()
            up = bench.cli("cluster", "up", "--role", "etcd-patroni", "--role", "haproxy",
                           timeout=3600)
            status, _ = bench.whole()
            cold = round(time.monotonic() - started, 1)
            dsn = status["endpoints"]["postgres"]["dsn"]
            click.echo(f"cluster up and whole from cold in {cold:.0f} s")
            # The image's own timing, not the longer one a TCG cluster boots with
            # (builder/cluster/manage.py TCG_SETTINGS): that is what the bench measures.
            bench.set_timing({k: TIMING[k] for k in ("ttl", "loop_wait", "retry_timeout")})
            kills = max(options.repeat, KILLS) if "ours" in phases else 0
            ours = bench.kills(dsn, kills, "ours") if kills else None
            switch = bench.switchovers(dsn, SWITCHOVERS) if "switchover" in phases else None
            colocated = (bench.colocated(dsn, max(options.repeat, COLOCATED_KILLS))
                         if "colocated" in phases else None)
            defaults = None
            if "defaults" in phases:
                bench.set_timing(PATRONI_DEFAULTS)
                defaults = bench.kills(dsn, max(options.repeat, KILLS), "defaults")
            seed = bench.seed_haproxy(dsn) if "seed" in phases else None
        finally:
            bench.cli("cluster", "down")
    return summarize(up, cold, ours, switch, defaults, seed, colocated)


def summarize(up, cold, ours, switch, defaults, seed, colocated=None) -> dict:
    rows = []
    if ours:
        rows.append(("ours: primary kill", ours["outage_s"]["median"], ours["outage_s"]["max"],
                     ours["lost_writes"], ours["misrouted_writes"]))
    if switch:
        rows.append(("ours: switchover", switch["outage_s"]["median"],
                     switch["outage_s"]["max"], switch["lost_writes"], 0))
    if colocated:
        for key, label in (("etcd_leader_elsewhere", "guard off: etcd leader elsewhere"),
                           ("etcd_leader_on_killed_vm", "guard off: etcd leader killed too")):
            rows.append((label, colocated[key]["median"], colocated[key]["max"], "", ""))
    if defaults:
        rows.append(("Patroni defaults: primary kill", defaults["outage_s"]["median"],
                     defaults["outage_s"]["max"], defaults["lost_writes"],
                     defaults["misrouted_writes"]))
    if seed:
        rows.append(("seed tcp-check: primary kill", seed["crash_outage_s"],
                     seed["crash_outage_s"], seed["lost_writes"], seed["steady_misrouted"]))
    click.echo(table(("scenario", "outage median s", "max s", "lost", "misrouted"), rows))
    ratio = None
    if ours and defaults:
        ratio = round(ours["outage_s"]["median"] / max(defaults["outage_s"]["median"], 0.01), 2)
        click.echo(f"outage ratio ours/defaults: {ratio}")
    if colocated:
        click.echo("outage ratio etcd leader on the killed VM / elsewhere: "
                   f"{colocated['ratio_colocated_over_apart']}")
    if seed:
        click.echo(f"seed tcp-check sent {seed['misrouted_share']:.0%} of steady writes to "
                   "replicas")
    goal_met = None
    if ours and switch:
        goal_met = (ours["outage_s"]["median"] <= GOALS["crash_outage_median_s"]
                    and switch["outage_s"]["max"] <= GOALS["switchover_outage_max_s"]
                    and ours["lost_writes"] + switch["lost_writes"] == GOALS["lost_writes"])
    return {"goals": GOALS, "goal_met": goal_met, "cold_up_seconds": cold,
            "boot_to_ready_s": up["ready_seconds"], "ours": ours, "switchover": switch,
            "patroni_defaults": defaults and {**defaults, "timing": PATRONI_DEFAULTS},
            "ratio_ours_over_defaults": ratio, "seed_tcp_check": seed,
            "etcd_leader_guard_off": colocated}
