"""Sample boot-time contexts for the config templates the node agent renders at boot.

The shape is what the agent hands a role's templates: the node's own bind address, the
peers of every role (name + address) and the secrets the role declared. Addresses are in
the `local` environment's network (10.20.0.0/24).
"""

from __future__ import annotations

import copy

CLUSTER_PEERS = {
    "etcd-patroni": [
        {"name": "etcd-patroni-0", "address": "10.20.0.11"},
        {"name": "etcd-patroni-1", "address": "10.20.0.12"},
        {"name": "etcd-patroni-2", "address": "10.20.0.13"},
    ],
    "saleor-api": [
        {"name": "saleor-api-0", "address": "10.20.0.31"},
        {"name": "saleor-api-1", "address": "10.20.0.32"},
    ],
    "saleor-dashboard": [
        {"name": "saleor-dashboard-0", "address": "10.20.0.41"},
    ],
}

HAPROXY_CONTEXT = {
    # The keys of builder.agent.roles.haproxy.context(), for a node on the aws target (where
    # it binds its private address; on qemu it binds 0.0.0.0).
    "node": {"name": "haproxy-0", "address": "10.20.0.21", "instance_id": "i-0123456789abcdef0",
             "listed": True},
    "bind": "10.20.0.21",
    "stats_user": "stats",
    "secrets": {"haproxy_stats_password": "sample-not-a-secret"},
    "peers": CLUSTER_PEERS,
    "replica_max_lag": 1048576,
    "api_host": "api.saleor.test",
    "check_timeout": 2,
}


def haproxy_context(**overrides) -> dict:
    """A fresh copy (tests may change it) of the haproxy boot context, with overrides."""
    context = copy.deepcopy(HAPROXY_CONTEXT)
    context.update(overrides)
    return context
