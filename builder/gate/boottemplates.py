"""The role templates the node agent renders at boot, rendered by the gate the way the agent
renders them: its Jinja settings (StrictUndefined) and its own context functions, fed one
sample node with sample peers and placeholder secrets. A template the agent could not render
(an undefined variable, a syntax error) is bad input, found here instead of at boot."""

from __future__ import annotations

from pathlib import Path

import jinja2

from builder.agent import etcd_join, templating
from builder.agent.config import NodeConfig
from builder.agent.metadata import Identity
from builder.agent.paths import Root
from builder.agent.roles import Inputs, module_for
from builder.agent.services import Services
from builder.errors import UserError
from builder.render import Rendered
from builder.spec.project import Project

# A cluster of the `local` network (10.20.0.0/24): every role's peers, in their order.
CLUSTER, CIDR = "sample", "10.20.0.0/24"
PEERS = {
    "etcd-patroni": [{"name": f"etcd-patroni-{i}", "address": f"10.20.0.1{i}"} for i in (1, 2, 3)],
    "haproxy": [{"name": "haproxy-1", "address": "10.20.0.21"}],
    "redis": [{"name": "redis-1", "address": "10.20.0.41"}],
    "saleor-api": [{"name": f"saleor-api-{i}", "address": f"10.20.0.3{i}"} for i in (1, 2)],
    "saleor-dashboard": [{"name": "saleor-dashboard-1", "address": "10.20.0.51"}],
    "storefront": [{"name": "storefront-1", "address": "10.20.0.61"}],
}
MEMINFO = "MemTotal:        2030000 kB\n"  # what redis sizes maxmemory from


def _inputs(item: Rendered, root: Path) -> Inputs:
    role = item.role.role
    me = PEERS[role][0]
    identity = Identity(instance_id="i-0sample", hostname=me["name"], address=me["address"],
                        source="validate sample")
    config = NodeConfig(cluster=CLUSTER, environment="validate", role=role, cidr=CIDR,
                        discovery={"method": "static"}, secrets={}, target=item.target)
    secrets = {name: f"sample-{name}-not-a-secret" for name in item.role.secrets}
    return Inputs(identity=identity, config=config, peers=PEERS, secrets=secrets,
                  root=Root(root), services=Services(dry_run=True))


def contexts(item: Rendered, root: Path) -> list[tuple[str, str, dict]]:
    """(template, variant, context) for every boot-time template of the role, each context
    made by the agent's own code; a role may render a template more than one way."""
    inputs = _inputs(item, root)
    module = module_for(item.role.role)
    role = item.role.role
    if role == "etcd-patroni":
        members = ",".join(f"{p['name']}=http://{p['address']}:2380" for p in PEERS[role])
        decision = etcd_join.Decision(state="new", initial_cluster=members,
                                      token=f"{CLUSTER}-etcd", reason="validate sample")
        ctx = module.context(inputs, decision, "off")
        return [(t, "", ctx) for t in item.role.templates]
    if role == "saleor-api":
        return [(t, method, module.template_context(inputs, method))
                for method in ("bundle", "container") for t in item.role.templates]
    return [(t, "", module.context(inputs)) for t in item.role.templates]


def render(item: Rendered, project: Project, dest: Path) -> list[Path]:
    """Every boot-time template of the role rendered into dest/[variant/] (named after the
    template, without .j2); a template that does not render raises UserError naming it."""
    directory = project.templates / item.role.role
    root = dest / ".root"
    (root / "proc").mkdir(parents=True, exist_ok=True)
    (root / "proc" / "meminfo").write_text(MEMINFO)
    env = templating.environment(directory)
    written = []
    for template, variant, ctx in contexts(item, root):
        shown = project.display(directory / template)
        try:
            text = env.get_template(template).render(**ctx)
        except jinja2.TemplateSyntaxError as exc:
            raise UserError(f"line {exc.lineno}: {exc.message}", file=shown) from None
        except jinja2.UndefinedError as exc:
            where = f" ({variant} install)" if variant else ""
            raise UserError(f"{exc.message} at boot{where}", file=shown) from None
        path = dest / variant / template.removesuffix(".j2")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return written
