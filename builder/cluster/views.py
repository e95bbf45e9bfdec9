"""Human views of `builder cluster` results (--json prints the data itself)."""

from __future__ import annotations

import re

import click


def up(data: dict) -> None:
    for node in data["nodes"]:
        seconds = data["ready_seconds"].get(node["name"])
        click.echo(f"{node['name']:<20} {node['role']:<18} {node['address']:<15} "
                   f"ready in {seconds:.0f} s")
    for role in data["skipped_roles"]:
        click.echo(f"{role}: no image in the registry, not booted")
    click.echo(f"cluster {data['cluster']} ({data['env']}) is up: `builder cluster status`")


def _mask(dsn: str) -> str:
    return re.sub(r"(://[^:/@]+:)[^@]+@", r"\1***@", dsn)


def _progress(row: dict) -> str:
    done = row.get("agent_progress")
    if not done:
        return ""
    total = f"/{done['total']}" if done.get("total") else ""
    last = f" (last {done['last']})" if done.get("last") else ""
    return f", {done['task']} {done['applied']}{total}{last}"


def status(data: dict) -> None:
    click.echo(f"cluster {data['cluster']} ({data['env']}), network {data['cidr']}")
    for row in data["nodes"]:
        patroni = row.get("patroni", {})
        etcd = row.get("etcd")
        db = ""
        if patroni:
            lag = patroni.get("lag")
            db = f"{patroni['role']}/{patroni.get('state') or '-'}"
            db += f" lag={lag}" if lag not in (None, 0) else ""
            db += " etcd=" + ("healthy" if etcd and etcd["healthy"] else "unhealthy")
        click.echo(f"{row['name']:<20} {row['role']:<16} {row.get('version') or '?':<9} "
                   f"{row['address']:<15} {row['power']:<8} {row.get('agent', '-'):<11} {db}")
        if row.get("agent_error"):
            click.echo(f"    agent: {row['agent_error']}")
        if row.get("agent_step"):
            click.echo(f"    agent at: {row['agent_step']}" + _progress(row))
    members = data.get("etcd_members")
    if members is not None:
        click.echo(f"etcd members ({len(members)}): " + ", ".join(
            (m["name"] or m["id"]) + (" (learner)" if m["learner"] else "") for m in members))
    for name, ep in sorted(data["endpoints"].items()):
        extra = _mask(ep["dsn"]) if "dsn" in ep else ep.get("url", "")
        click.echo(f"{name:<18} 127.0.0.1:{ep['port']:<6} {extra}")
    click.echo(f"ssh: ssh -i {data['ssh_key']} -p PORT debian@127.0.0.1 "
               "(--json shows ports and the full DSN)")


def upgrade(data: dict) -> None:
    for node in data["nodes"]:
        click.echo(f"{node['node']:<20} {node['old_image']} -> {node['new_image']}  "
                   f"stop {node['stop_seconds']:.0f} s, ready {node['ready_seconds']:.0f} s "
                   f"after boot" + ("  (was the primary)" if node["primary"] else ""))
    for name in data["skipped"]:
        click.echo(f"{name:<20} already on {data['to']}")
    switch = data["switchover"]
    if switch:
        click.echo(f"switchover {switch['from']} -> {switch['to']}: {switch['outcome']}"
                   + (f" in {switch['seconds']} s" if switch.get("seconds") else ""))
    click.echo(f"{data['role']} on {data['to']} ({data['env']})"
               + (" (rollback)" if data["rollback"] else ""))


def done(data: dict) -> None:
    click.echo(" ".join(f"{k}={v}" for k, v in data.items()))


def down(data: dict) -> None:
    if not data["existed"]:
        click.echo(f"no cluster {data['env']}: nothing to stop")
    else:
        click.echo(f"cluster {data['env']} down; powered off: "
                   f"{', '.join(data['stopped']) or 'none was running'}")
