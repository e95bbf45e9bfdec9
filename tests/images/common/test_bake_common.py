"""What every image must be right after provisioning, driven by the role's spec."""

from __future__ import annotations

import fnmatch
import json

import pytest
from conftest import RUNNING_STATES, enabled_units, unit_states


def test_packages_installed_at_expected_versions(host, spec):
    wanted = dict(entry.partition("=")[::2] for entry in spec["packages"])
    if not wanted:
        return
    # One dpkg-query for every package (it exits 1 when one is unknown: read its output).
    found = {}
    listed = host.run("dpkg-query -W -f '${Package}\\t${Version}\\t${db:Status-Abbrev}\\n' -- "
                      + " ".join(["%s"] * len(wanted)), *wanted)
    for line in listed.stdout.splitlines():
        name, version, status = (line.split("\t") + ["", ""])[:3]
        found[name] = (version, status.strip())
    for name, want in wanted.items():
        version, status = found.get(name, ("", ""))
        assert status == "ii", f"{name} is not installed ({status or listed.stderr.strip()})"
        if want:
            assert fnmatch.fnmatch(version, want), f"{name} {version} != {want}"


def test_files_installed_with_modes(host, spec):
    for f in spec["files"]:
        target = host.file(f["dest"])
        assert target.is_file, f"{f['dest']} missing"
        assert target.mode == int(f["mode"], 8), f"{f['dest']} mode {oct(target.mode)}"
        assert target.user == "root"


def test_config_templates_baked_for_the_agent(host, spec):
    for name in spec["templates"]:
        path = host.file(f"/usr/share/builder/templates/{spec['role']}/{name}")
        assert path.is_file and path.mode == 0o644


def test_services_installed_but_disabled_and_stopped(host, spec):
    states = unit_states(host, [svc["name"] for svc in spec["services"]])
    for name, state in states.items():
        assert state.get("LoadState") == "loaded", f"unit {name} is not installed: {state}"
        assert state.get("ActiveState") not in RUNNING_STATES, \
            f"{name} is running during the bake: {state}"
    enabled = enabled_units(host, states)
    assert not enabled, f"{enabled} enabled: they would start unconfigured"


# systemd-resolved's DNS stub, on loopback only.
LOOPBACK_DNS = {"tcp://127.0.0.53%lo:53", "tcp://127.0.0.54:53"}


def test_nothing_listens_but_ssh(host):
    tcp = [s for s in host.socket.get_listening_sockets() if s.startswith("tcp")]
    unexpected = [s for s in tcp if not s.endswith(":22") and s not in LOOPBACK_DNS]
    assert unexpected == [], f"listening during the bake: {unexpected}"


def test_node_agent_installed_and_enabled(host, spec):
    agent = host.file("/usr/local/sbin/builder-agent")
    assert agent.is_file and agent.mode == 0o755
    assert host.service("builder-agent").is_enabled
    status = host.run("/usr/local/sbin/builder-agent status")
    assert status.rc == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["role"] == spec["role"]
    assert report["image"]["version"] == spec["version"]
    assert len(report["image"]["content_key"]) == 64


def test_no_cluster_configuration_or_secrets_baked(host):
    assert not host.file("/etc/builder/node.yaml").exists
    assert not host.file("/usr/sbin/policy-rc.d").exists


@pytest.mark.parametrize("path", ["/etc/builder/image.json", "/etc/builder/role.json"])
def test_image_identity_readable(host, path):
    f = host.file(path)
    assert f.is_file and f.mode == 0o644


def test_bundle_recorded_in_the_image_identity(host, spec):
    if not spec.get("bundle"):
        return
    bundle = json.loads(host.file("/etc/builder/bundle.json").content_string)
    image = json.loads(host.file("/etc/builder/image.json").content_string)
    assert bundle["app"] == spec["bundle"]["app"] == image["bundle"]["app"]
    assert image["bundle"]["version"] == bundle["version"]
    assert spec["bundle"]["version"] in (None, bundle["version"])
    assert image["bundle"]["stand_in"] == bundle["stand_in"]
