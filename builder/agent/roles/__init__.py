"""One module per role: build the templates' context from what the node knows, render the
role's configs, start its services in order and wait until they answer.

Each module has PEER_ROLES (whose peers its configs name), SECRETS is read from the
image's role.json, and `configure(inputs) -> dict` returns what it did for the report.
"""

from __future__ import annotations

import dataclasses
import importlib
import re
from collections.abc import Callable

from builder.agent.config import NodeConfig
from builder.agent.errors import AgentError
from builder.agent.metadata import Identity
from builder.agent.paths import Root
from builder.agent.services import Services

MODULES = {"haproxy": "haproxy", "etcd-patroni": "etcd_patroni", "redis": "redis",
           "saleor-api": "saleor_api", "saleor-dashboard": "saleor_dashboard",
           "storefront": "storefront"}
# The application's PostgreSQL role and database: created by the etcd-patroni nodes
# (settings app_user/app_database), used by saleor-api (db_user/db_name) and by the DSN that
# `builder cluster status` prints.
APP_USER = APP_DATABASE = "saleor"
# What may go into a JS string in HTML and an environment file unescaped.
URL = re.compile(r"https?://[^\s\"'`<>\\]+")


@dataclasses.dataclass
class Inputs:
    identity: Identity
    config: NodeConfig
    peers: dict[str, list[dict]]
    secrets: dict[str, str]
    root: Root
    services: Services
    # Where a long step says how far it got (the status file, builder/agent/boot.py).
    progress: Callable[[dict], None] = lambda _progress: None

    @property
    def setting(self):
        return self.config.settings.get

    def node(self) -> dict:
        """Own name and address. The name is the one discovery lists for this address, so
        it is the name every peer uses for this node (etcd insists on that)."""
        address = self.identity.address
        if not address:
            raise AgentError("metadata gave no private address for this instance")
        mine = [p for p in self.peers.get(self.config.role, []) if p["address"] == address]
        name = mine[0]["name"] if mine else self.identity.instance_id
        return {"name": name, "address": address, "instance_id": self.identity.instance_id,
                "listed": bool(mine)}

    def bind(self) -> str:
        """Where a service the host must reach listens: setting `bind`, else everywhere on
        qemu (the host's forwards arrive on QEMU's user network, not the cluster NIC) and
        the node's private address elsewhere."""
        default = "0.0.0.0" if self.config.target == "qemu" else self.node()["address"]
        return self.setting("bind", default)

    def api_url(self) -> str:
        """The Saleor GraphQL endpoint the frontends call: settings.api_url, or the API behind
        the first haproxy peer (peers are sorted by name, so every node picks the same)."""
        value = self.setting("api_url")
        if value is None:
            balancers = self.peers.get("haproxy", [])
            if not balancers:
                raise AgentError("no haproxy peer to reach the Saleor API through and no "
                                 "settings.api_url")
            value = f"http://{balancers[0]['address']}/graphql/"
        if not isinstance(value, str) or not URL.fullmatch(value):
            raise AgentError(f"settings.api_url must be an http(s) URL without spaces, quotes "
                             f"or backslashes, got {value!r}")
        return value


def module_for(role: str):
    if role not in MODULES:
        raise AgentError(f"role {role} has no boot-time configuration in this agent "
                         f"(known: {', '.join(sorted(MODULES))})")
    return importlib.import_module(f"builder.agent.roles.{MODULES[role]}")
