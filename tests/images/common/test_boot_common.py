"""What every instance booted from an image must be once its node agent has run."""

from __future__ import annotations

import json

import yaml
from conftest import enabled_units, unit_states


def _agent_report(host) -> dict:
    return json.loads(host.file("/run/builder/agent.json").content_string)


def test_node_agent_configured_the_instance(host, spec):
    report = _agent_report(host)
    assert report["state"] == "ready", report
    assert report["role"] == spec["role"]
    assert host.service("builder-agent").is_valid


def test_instance_has_its_own_identity(host):
    machine_id = host.file("/etc/machine-id").content_string.strip()
    assert len(machine_id) == 32 and machine_id != "uninitialized"
    assert host.file("/etc/ssh/ssh_host_ed25519_key").exists
    assert not host.user("builder-bake").exists


def test_boot_configuration_is_root_only(host):
    for path in ("/etc/builder/node.yaml", "/etc/builder/secrets.yaml"):
        f = host.file(path)
        if f.exists:
            assert f.user == "root" and f.mode == 0o600, path


def test_no_secret_value_in_the_agent_report(host):
    secrets = host.file("/etc/builder/secrets.yaml")
    if not secrets.exists:
        return
    values = [str(v) for v in (yaml.safe_load(secrets.content_string) or {}).values()]
    report = host.file("/run/builder/agent.json").content_string
    assert values and not [v for v in values if v in report]


def test_role_services_still_disabled_after_first_boot(host, spec):
    # The first boot applies systemd's presets; the image's own preset keeps every role
    # service off, so only the node agent starts them, after rendering their configs.
    enabled = enabled_units(host, unit_states(host, [svc["name"] for svc in spec["services"]]))
    assert not enabled, f"{enabled} enabled at first boot"
