"""Saleor storefront: the Next.js standalone server baked into /opt/storefront, run by
storefront.service (`node server.js`) on the node's private address :3000.

Settings: `api_url` (default http://<first haproxy peer>/graphql/, as the dashboard's),
`channel` (the Saleor channel slug the shop opens on, default `default-channel`), `bind`
(default 0.0.0.0 on qemu, where the host reaches the VM through QEMU's user network, as
HAProxy's; else the node's private address).
"""

from __future__ import annotations

import http.client
import re
import urllib.error
import urllib.request
from collections.abc import Callable

from builder.agent import readiness, templating
from builder.agent.errors import AgentError
from builder.agent.roles import Inputs

ROLE = "storefront"
PEER_ROLES = ["haproxy"]
PORT = 3000
ENV_FILE = "/etc/storefront/storefront.env"
SLUG = re.compile(r"[A-Za-z0-9_-]+")  # a Saleor channel slug


def channel(inputs: Inputs) -> str:
    value = inputs.setting("channel", "default-channel")
    if not isinstance(value, str) or not SLUG.fullmatch(value):
        raise AgentError(f"settings.channel must be a Saleor channel slug (letters, digits, "
                         f"- and _), got {value!r}")
    return value


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # urllib then raises HTTPError with the 3xx itself


def answers(url: str, seen: dict, timeout: float = 2.0) -> Callable[[], bool]:
    """True once GET url gets an HTTP answer, whatever its status (put in seen["status"]);
    redirects are not followed.

    The storefront has no health endpoint, and its pages ask the Saleor API: the real
    app's `/` redirects (307) to the default channel's page, which fails while the API is
    down or still migrating; the stand-in renders the shop's name on `/` (502 without the
    API). Whether the API answers is the API nodes' readiness, and they may well boot
    later than this one: this node is ready when its server answers on its address."""
    opener = urllib.request.build_opener(_NoRedirect)

    def probe() -> bool:
        try:
            with opener.open(url, timeout=timeout) as resp:
                seen["status"] = resp.status
        except urllib.error.HTTPError as exc:
            exc.close()
            seen["status"] = exc.code
        except http.client.HTTPException:
            return False  # not HTTP: a half-started server, or another program on the port
        return True
    return probe


def context(inputs: Inputs) -> dict:
    return {"node": inputs.node(), "port": PORT, "api_url": inputs.api_url(),
            "channel": channel(inputs), "bind": inputs.bind()}


def configure(inputs: Inputs) -> dict:
    ctx = context(inputs)
    text = templating.render(inputs.root, ROLE, "storefront.env.j2", ctx)
    # No secret in it; systemd reads it as root, the group lets the service user read it too.
    templating.write(inputs.root, ENV_FILE, text, mode=0o640, group="storefront")
    inputs.services.restart("storefront")
    report = {"files": [ENV_FILE], "api_url": ctx["api_url"], "channel": ctx["channel"],
              "bind": ctx["bind"]}
    if not inputs.services.dry_run:
        seen: dict = {}
        report["ready_seconds"] = readiness.wait(
            "storefront", answers(f"http://{ctx['node']['address']}:{PORT}/", seen),
            timeout=float(inputs.setting("ready_timeout", 120)))
        report["http_status"] = seen["status"]  # 5xx: the server runs, the API did not answer
    return report
