"""Who my peers are: one module per discovery method, each returning [{name, address}]
sorted by name, so every node of a cluster derives the same member list.

Every method has the same call, `peers(cluster, role, **options)`; `discover` picks the
method from node.yaml and asks it for each role the node's role talks to.
"""

from __future__ import annotations

import time

from builder.agent.errors import AgentError


def discover(config, roles: list[str], *, timeout: float = 300.0,
             interval: float = 5.0) -> dict[str, list[dict]]:
    """role -> peers, for every role in `roles` (an empty list for a role with none).

    With tags, instances of one Auto Scaling group appear in the EC2 API seconds apart:
    the node's own role, when it is among `roles`, is polled until the environment's count
    (node.yaml `nodes`) is seen, because etcd's initial cluster and token must be the same
    on every member.
    """
    # Only a role that is its own peer (etcd) needs everyone at once; the others (HAProxy)
    # start with whom they see and take the rest from `builder-agent refresh`.
    waits = config.method == "aws-tags" and config.role in roles
    own_expected = config.nodes.get(config.role, 0) if waits else 0
    started = time.monotonic()
    while True:
        found = {role: _one(config, role) for role in roles}
        seen = len(found.get(config.role, []))
        if seen >= own_expected:
            return found
        if time.monotonic() - started >= timeout:
            raise AgentError(f"discovery: {seen} of {own_expected} {config.role} peers of "
                             f"cluster {config.cluster} after {timeout:.0f}s")
        time.sleep(interval)


def _one(config, role: str) -> list[dict]:
    options = config.discovery
    if config.method == "static":
        from builder.agent.discovery import static

        return static.peers(config.cluster, role, table=options.get("peers"))
    from builder.agent.discovery import aws_tags

    kwargs = {"region": options.get("region")}
    if options.get("tag_key"):
        kwargs["cluster_tag"] = options["tag_key"]
    return aws_tags.peers(config.cluster, role, **kwargs)
