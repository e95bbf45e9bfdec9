"""Saleor dashboard: the static build baked into /opt/saleor-dashboard, served by nginx on the
node's private address :9000 with a single-page-app fallback.

The browser learns where the API is from `window.__SALEOR_CONFIG__` in index.html. As the
official image's entrypoint does (sed `s#API_URL: ".*"#API_URL: "$API_URL"#`), the agent
writes the URL there at boot, always from the pristine index.html.orig baked beside it, so
every boot gives the same file whatever the previous one wrote.

Settings: `api_url` (default http://<first haproxy peer>/graphql/: the Saleor API behind the
load balancer's port 80; set it where browsers reach the API by another name).
"""

from __future__ import annotations

import re

from builder.agent import readiness, templating
from builder.agent.errors import AgentError
from builder.agent.roles import Inputs

ROLE = "saleor-dashboard"
PEER_ROLES = ["haproxy"]
PORT = 9000
APP = "/opt/saleor-dashboard"
INDEX = f"{APP}/index.html"
PRISTINE = f"{INDEX}.orig"
SITE = "/etc/nginx/sites-enabled/saleor-dashboard.conf"

# The first `API_URL: "…"` inside `window.__SALEOR_CONFIG__ = { … }` (the dashboard's
# src/index.html: one key a line, string values, no nested braces).
CONFIG_API_URL = re.compile(
    r'(window\.__SALEOR_CONFIG__\s*=\s*\{[^}]*?\bAPI_URL\s*:\s*")([^"\n]*)(")')


def with_api_url(html: str, url: str, source: str) -> str:
    """html with the API_URL of window.__SALEOR_CONFIG__ set to url (already checked by
    Inputs.api_url(), so it needs no escaping)."""
    text, count = CONFIG_API_URL.subn(lambda m: m[1] + url + m[3], html, count=1)
    if not count:
        raise AgentError(f'{source}: no API_URL: "..." in window.__SALEOR_CONFIG__ '
                         "(not a Saleor dashboard build?)")
    return text


def context(inputs: Inputs) -> dict:
    return {"node": inputs.node(), "port": PORT}


def configure(inputs: Inputs) -> dict:
    node = inputs.node()
    url = inputs.api_url()
    pristine = inputs.root(PRISTINE)
    try:
        html = pristine.read_text(encoding="utf-8")
    except OSError as exc:
        raise AgentError(f"{pristine}: cannot read the baked dashboard ({exc.strerror})") \
            from None
    templating.write(inputs.root, INDEX, with_api_url(html, url, str(pristine)), mode=0o644)
    site = templating.render(inputs.root, ROLE, "nginx-dashboard.conf.j2", context(inputs))
    templating.write(inputs.root, SITE, site, mode=0o644)
    inputs.services.run("nginx", "-t", "-q")
    inputs.services.restart("nginx")
    report = {"files": [INDEX, SITE], "api_url": url}
    if not inputs.services.dry_run:
        report["ready_seconds"] = readiness.wait(
            "dashboard", readiness.http_ok(f"http://{node['address']}:{PORT}/"),
            timeout=float(inputs.setting("ready_timeout", 60)))
    return report
