"""Peers listed in node.yaml (`discovery.method: static`): the local cluster, where
`builder cluster up` knows every VM's name and address before any of them boots."""

from __future__ import annotations

from builder.agent.errors import AgentError


def peers(cluster: str, role: str, *, table: dict | None = None) -> list[dict]:
    """[{name, address}] listed for `role` under discovery.peers, sorted by name."""
    entries = (table or {}).get(role) or []
    if not isinstance(entries, list):
        raise AgentError(f"discovery.peers.{role} of cluster {cluster} must be a list")
    found = []
    for i, entry in enumerate(entries):
        if not (isinstance(entry, dict) and isinstance(entry.get("name"), str)
                and isinstance(entry.get("address"), str)):
            raise AgentError(f"discovery.peers.{role}[{i}] of cluster {cluster} needs "
                             "a name and an address")
        found.append({"name": entry["name"], "address": entry["address"]})
    names = [p["name"] for p in found]
    if len(set(names)) != len(names):
        raise AgentError(f"discovery.peers.{role} of cluster {cluster} repeats a name")
    return sorted(found, key=lambda p: p["name"])
