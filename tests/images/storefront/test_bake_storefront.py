"""storefront image: the Next.js server installed from its bundle alone, on a node at least
as new as the bundle needs, run by a hardened unit as its own user; nothing configured or
running until the agent writes storefront.env at boot.

tests/images/common checks the spec-driven rest (the unit installed, disabled and stopped;
nothing listening but ssh)."""

from __future__ import annotations

import json

from conftest import SAMPLE_NODE, rendered_in_image

APP = "/opt/storefront"


def _bundle(host) -> dict:
    return json.loads(host.file(f"{APP}/bundle.json").content_string)


NODE = f"{APP}/node/bin/node"  # what the unit runs


def test_node_is_new_enough_for_the_bundle(host):
    major = int(host.check_output("%s --version", NODE).lstrip("v").split(".")[0])
    want = _bundle(host)["runtime"]["node"].replace(" ", "")
    assert want.startswith(">=") and major >= int(want[2:].split(".")[0]), want


def test_the_unit_runs_the_bundles_node_or_the_images(host):
    runtime = _bundle(host)["runtime"]
    node = host.file(NODE)
    if runtime.get("node_runtime") == "bundled":
        assert node.is_file and not node.is_symlink and node.user == "root"
        assert host.check_output("%s --version", NODE) == f"v{runtime['node_version']}"
        assert host.file(f"{APP}/node/LICENSE").is_file
    else:
        assert node.is_symlink
        assert node.linked_to == host.check_output("readlink -f \"$(command -v node)\"")
    exec_start = host.check_output("systemctl show -p ExecStart --value storefront")
    assert f"path={NODE} " in exec_start, exec_start


def test_standalone_server_installed(host):
    assert host.file(f"{APP}/server.js").is_file
    assert host.file(f"{APP}/.next").is_directory
    check = host.run("%s --check %s/server.js", NODE, APP)
    assert check.rc == 0, check.stderr


def test_app_tree_read_only_for_the_service_user(host):
    user = host.user("storefront")
    assert user.exists and user.shell == "/usr/sbin/nologin"
    assert user.home == "/var/lib/storefront" and user.uid < 1000
    app = host.file(APP)
    assert app.user == "root" and app.mode & 0o022 == 0
    assert host.check_output("find %s ! -user root -print -quit", APP) == ""
    assert host.check_output("find %s ! -type l -perm /022 -print -quit", APP) == ""
    assert host.run("runuser -u storefront -- test -r %s/server.js", APP).rc == 0
    assert host.run("runuser -u storefront -- test -w %s/server.js", APP).rc != 0


def test_next_cache_is_the_one_writable_place(host):
    cache = host.file(f"{APP}/.next/cache")
    assert cache.is_symlink and cache.linked_to == "/var/cache/storefront"
    home = host.file("/var/lib/storefront")
    assert home.is_directory and home.user == "storefront" and home.mode == 0o750


def test_unit_is_hardened_and_reads_the_agents_environment(host):
    verify = host.run("systemd-analyze verify /etc/systemd/system/storefront.service")
    assert verify.rc == 0, verify.stdout + verify.stderr
    props = dict(line.split("=", 1) for line in host.check_output(
        "systemctl show storefront -p User -p NoNewPrivileges -p ProtectSystem -p ProtectHome "
        "-p PrivateTmp -p EnvironmentFiles -p WorkingDirectory -p Restart").splitlines())
    assert props["User"] == "storefront" and props["Restart"] == "on-failure"
    assert props["NoNewPrivileges"] == "yes" and props["PrivateTmp"] == "yes"
    assert props["ProtectSystem"] == "strict" and props["ProtectHome"] == "yes"
    assert props["WorkingDirectory"] == APP
    assert props["EnvironmentFiles"].startswith("/etc/storefront/storefront.env ")


def test_rendered_environment_names_the_node_and_api(host):
    context = {"node": SAMPLE_NODE, "port": 3000, "api_url": "http://10.20.0.5/graphql/",
               "channel": "default-channel", "bind": SAMPLE_NODE["address"]}
    with rendered_in_image(host, "/usr/share/builder/templates/storefront/storefront.env.j2",
                           context, "/tmp/storefront-test.env") as path:
        lines = host.check_output("grep -v '^#' %s", path).splitlines()
    assert lines == ["PORT=3000", "HOSTNAME=10.20.0.11",
                     "NEXT_PUBLIC_SALEOR_API_URL=http://10.20.0.5/graphql/",
                     "NEXT_PUBLIC_DEFAULT_CHANNEL=default-channel"]


def test_no_environment_baked(host):
    assert not host.file("/etc/storefront/storefront.env").exists


def test_nothing_listens_on_3000_before_boot(host):
    assert not [s for s in host.socket.get_listening_sockets() if s.endswith(":3000")]
