"""Shared fixtures for the image suites: the role's rendered spec and the test phase.

These suites run against a VM over SSH (`builder test-image`, inside every bake and after
boot), never against the machine running pytest.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pytest
import yaml


@pytest.fixture(scope="session")
def spec() -> dict:
    path = os.environ.get("BUILDER_IMAGE_SPEC")
    if not path:
        pytest.fail("BUILDER_IMAGE_SPEC is not set: run image suites with `builder test-image`")
    return json.loads(Path(path).read_text())


@pytest.fixture(scope="session")
def role(spec) -> str:
    return spec["role"]


@pytest.fixture(scope="module")
def report(host) -> dict:
    """The node agent's report of a booted instance (boot suites)."""
    return json.loads(host.file("/run/builder/agent.json").content_string)


@pytest.fixture(scope="module")
def address(report) -> str:
    """The instance's private address, as its metadata gave it."""
    return report["identity"]["address"]


# `systemctl is-enabled` exits 0 for these (what testinfra's is_enabled counts as enabled).
ENABLED_STATES = {"enabled", "enabled-runtime", "static", "alias", "indirect", "transient",
                  "generated"}
RUNNING_STATES = {"active", "activating", "reloading", "deactivating", "refreshing"}


def unit_states(host, units: list[str]) -> dict[str, dict[str, str]]:
    """`systemctl show` of every unit in one command ({name: {LoadState, ActiveState,
    UnitFileState}}): each command is an SSH round trip and a sudo into a TCG guest."""
    names = [u if "." in u else f"{u}.service" for u in units]
    if not names:
        return {}
    out = host.check_output("systemctl show --property=Id,LoadState,ActiveState,UnitFileState"
                            " -- " + " ".join(["%s"] * len(names)), *names)
    blocks = [dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
              for block in out.split("\n\n")]
    # systemctl show keeps the order of its arguments; Id is the unit's canonical name.
    return dict(zip(units, [b for b in blocks if b], strict=True))


def enabled_units(host, states: dict[str, dict[str, str]]) -> list[str]:
    """The units of `states` (unit_states) that systemd would start at boot. A unit made by
    a generator (Quadlet) reports `generated`, which `systemctl is-enabled` counts as
    enabled; it starts at boot only if the generator linked it into a target's .wants/,
    which costs one more command."""
    return [name for name, state in states.items()
            if (_linked_by_generator(host, name) if state.get("UnitFileState") == "generated"
                else state.get("UnitFileState") in ENABLED_STATES)]


def _linked_by_generator(host, unit: str) -> bool:
    name = unit if "." in unit else f"{unit}.service"
    links = host.run("find /run/systemd/generator /run/systemd/generator.late "
                     "-path '*.wants/*' -name %s", name)
    return bool(links.stdout.strip())


def render_in_image(host, template: str, context: dict, dest: str) -> None:
    """Render a baked config template INSIDE the image with the image's own Jinja2, as the
    node agent will at boot, so a template the image's tools reject fails the bake."""
    script = (
        "import json, sys, jinja2\n"
        "env = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True,"
        " lstrip_blocks=True, keep_trailing_newline=True)\n"
        "env.filters['tojson'] = json.dumps\n"
        "text = open(sys.argv[1]).read()\n"
        "out = env.from_string(text).render(**json.loads(sys.argv[2]))\n"
        "open(sys.argv[3], 'w').write(out)\n"
    )
    cmd = host.run("python3 -c %s %s %s %s", script, template, json.dumps(context), dest)
    assert cmd.rc == 0, cmd.stderr


@contextlib.contextmanager
def rendered_in_image(host, template: str, context: dict, dest: str):
    """render_in_image() to dest for the block; dest is removed again afterwards (the image
    keeps no trace of its tests)."""
    render_in_image(host, template, context, dest)
    try:
        yield dest
    finally:
        host.run("rm -f %s", dest)


def secret(host, name: str) -> str:
    """A secret the node agent wrote to the booted instance."""
    return yaml.safe_load(host.file("/etc/builder/secrets.yaml").content_string)[name]


SAMPLE_NODE = {"name": "node-1", "address": "10.20.0.11", "instance_id": "i-sample"}
SAMPLE_PEERS = {
    "etcd-patroni": [{"name": f"pg-{i}", "address": f"10.20.0.1{i}"} for i in (1, 2, 3)],
    "saleor-api": [{"name": "api-1", "address": "10.20.0.21"},
                   {"name": "api-2", "address": "10.20.0.22"}],
    "saleor-dashboard": [{"name": "dash-1", "address": "10.20.0.31"}],
    "redis": [{"name": "redis-1", "address": "10.20.0.41"}],
    "haproxy": [{"name": "lb-1", "address": "10.20.0.5"}],
}


_HTTP = (
    "import json, sys, urllib.request, urllib.error\n"
    "url, method, headers, body = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), sys.argv[4]\n"
    "req = urllib.request.Request(url, method=method, headers=headers,"
    " data=body.encode() if body else None)\n"
    "try:\n"
    "    resp = urllib.request.urlopen(req, timeout=20)\n"
    "except urllib.error.HTTPError as exc:\n"
    "    resp = exc\n"
    "print(json.dumps({'status': resp.status, 'body': resp.read().decode('utf-8', 'replace'),"
    " 'headers': dict(resp.headers)}))\n"
)


def http(host, url: str, *, method: str = "GET", headers: dict | None = None,
         body: str = "") -> dict:
    """An HTTP request made FROM the instance with its own python3 (images carry no curl):
    {'status', 'body', 'headers'}."""
    out = host.check_output("python3 -c %s %s %s %s %s", _HTTP, url, method,
                            json.dumps(headers or {}), body)
    return json.loads(out)


def graphql_shop(host, url: str, host_header: str) -> dict:
    """Saleor's readiness query, `{ shop { name } }`, as a client sends it."""
    return http(host, url, method="POST", body=json.dumps({"query": "{ shop { name } }"}),
                headers={"Content-Type": "application/json", "Host": host_header})
