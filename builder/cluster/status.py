"""`builder cluster status`: each node's power, agent and database state, and the
endpoints the host reaches on 127.0.0.1 (with a ready-to-use DSN for the application)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from urllib.parse import quote

from builder.agent.roles import APP_DATABASE, APP_USER
from builder.cluster import probe
from builder.cluster.health import DB_ROLE
from builder.cluster.manage import resolve
from builder.cluster.state import USER, Cluster, load

# Which HAProxy port serves what.
ENDPOINTS = {"postgres": 5432, "postgres-replicas": 5433, "api": 80, "dashboard": 9000,
             "stats": 8080}


def endpoints(cluster: Cluster, secrets: dict[str, str]) -> dict:
    proxies = [n for n in cluster.nodes if n.role == "haproxy"]
    if not proxies:
        return {}
    forwards = proxies[0].forwards
    out = {name: {"host": "127.0.0.1", "port": forwards[port]}
           for name, port in ENDPOINTS.items() if port in forwards}
    if "postgres" in out and "saleor_db_password" in secrets:
        out["postgres"]["dsn"] = (
            f"postgresql://{APP_USER}:{quote(secrets['saleor_db_password'], safe='')}"
            f"@127.0.0.1:{out['postgres']['port']}/{APP_DATABASE}")
    if "stats" in out:
        base = f"http://127.0.0.1:{out['stats']['port']}"
        # Both take the stats user and its password (secrets.json, haproxy_stats_password).
        out["stats"].update(url=f"{base}/haproxy_stats", user="stats")
        out["metrics"] = {"host": "127.0.0.1", "port": out["stats"]["port"],
                          "url": f"{base}/metrics", "user": "stats"}
    for node in cluster.nodes:
        if node.role == "storefront" and 3000 in node.forwards:
            out.setdefault("storefront", {"host": "127.0.0.1", "port": node.forwards[3000]})
    for name, path in (("api", "/graphql/"), ("dashboard", "/"), ("storefront", "/")):
        if name in out:
            out[name]["url"] = f"http://127.0.0.1:{out[name]['port']}{path}"
    return out


def _database(cluster: Cluster, rows: dict[str, dict]) -> list[dict] | None:
    """Patroni and etcd state of the DB nodes, asked from the first one that answers; the
    etcd member list it sees (None: no DB node answered)."""
    db_nodes = [n for n in cluster.nodes if n.role == DB_ROLE]
    urls = [f"http://{n.address}:2379" for n in db_nodes]
    for node in db_nodes:
        if rows[node.name]["power"] != "running":
            continue
        vm = cluster.vm(node)
        members = probe.patroni_cluster(vm, cluster.key, USER, node.address)
        if members is None:
            continue
        health = probe.etcd_health(vm, cluster.key, USER, urls)
        by_name = {m.get("name"): m for m in members.get("members", [])}
        for other in db_nodes:
            member = by_name.get(other.name, {})
            rows[other.name]["patroni"] = {
                "role": member.get("role", "absent"), "state": member.get("state"),
                "timeline": member.get("timeline"), "lag": member.get("lag")}
            etcd = health.get(f"http://{other.address}:2379", {})
            rows[other.name]["etcd"] = {"healthy": bool(etcd.get("health")),
                                        "leader": bool(etcd.get("leader")),
                                        "error": etcd.get("error") or None}
        rows[node.name]["asked"] = True
        # Asked apart from endpoint health: a member no node's slot names (a stale one)
        # has no endpoint in `urls`, and only the list shows it.
        return probe.etcd_members(vm, cluster.key, USER, f"http://{node.address}:2379")
    return None


def _node_row(cluster: Cluster, node) -> dict:
    vm = cluster.vm(node)
    running = vm.running()
    row = {"name": node.name, "role": node.role, "address": node.address,
           "instance_id": node.instance_id, "generation": node.generation,
           "image": node.image, "version": node.version(),
           "power": "running" if running else "off",
           "ssh": f"{USER}@127.0.0.1:{node.ssh_port}"}
    if running:
        report = probe.agent_report(vm, cluster.key, USER) or {}
        row["agent"] = report.get("state", "no-report")
        if report.get("error"):
            row["agent_error"] = report["error"]
        if row["agent"] in ("booting", "retrying"):
            # Where a slow boot is: its step, and a long task's count (Saleor's migrate).
            row["agent_step"] = report.get("step")
            if report.get("progress"):
                row["agent_progress"] = report["progress"]
    return row


def status(env_name: str | None) -> dict:
    project, env = resolve(env_name)
    cluster = load(project.state, env)
    # Nodes asked at once: each report is an SSH round trip into a (TCG) guest.
    with ThreadPoolExecutor(max_workers=max(1, len(cluster.nodes))) as pool:
        rows = {row["name"]: row for row in pool.map(lambda n: _node_row(cluster, n),
                                                     cluster.nodes)}
    members = _database(cluster, rows)
    return {"env": cluster.env, "cluster": cluster.name, "cidr": cluster.cidr,
            "directory": str(cluster.directory), "ssh_key": str(cluster.key),
            "nodes": list(rows.values()), "etcd_members": members,
            "rollouts": cluster.rollouts, "endpoints": endpoints(cluster, cluster.secrets())}
