"""Role package layers: what their key depends on, how bakes name them, and the decisions
around a bake that never reached SSH (the layer itself is built by every integration bake)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from builder import render as rendering
from builder import spec as specs
from builder.bake import base as bases
from builder.bake import layer, packerrun
from builder.errors import UserError
from builder.spec.project import find_project

from .test_contentkey import keys


def _roles(root: Path) -> dict[str, specs.RoleSpec]:
    return specs.load_roles(find_project(start=root))


def test_layer_key_follows_packages_and_mirror_not_order_or_proxy(project):
    role = _roles(project)["etcd-patroni"]
    mirrors = specs.Mirrors()
    ident = layer.identity(role.base, role.packages, mirrors)
    assert ident.startswith("layer:trixie:")
    assert layer.identity(role.base, list(reversed(role.packages)), mirrors) == ident
    assert layer.identity(role.base, [*role.packages, "htop"], mirrors) != ident
    assert layer.identity(role.base, role.packages,
                          specs.Mirrors(apt="http://10.0.2.2:3142/debian")) != ident
    assert layer.identity(role.base, role.packages,
                          specs.Mirrors(apt_proxy="http://10.0.2.2:3142")) == ident
    other_suite = dataclasses.replace(role.base, suite="bookworm")
    assert layer.identity(other_suite, role.packages, mirrors) != ident


def test_layers_apply_to_local_qemu_bases_with_packages_only(project):
    roles = _roles(project)
    assert layer.applies(roles["etcd-patroni"], "qemu")
    assert not layer.applies(roles["etcd-patroni"], "aws")
    no_packages = dataclasses.replace(roles["redis"], packages=[])
    assert not layer.applies(no_packages, "qemu")


def test_a_template_change_keeps_the_layer_and_changes_the_image_key(project, tmp_path):
    role = _roles(project)["haproxy"]
    before_layer = layer.identity(role.base, role.packages, specs.Mirrors())
    before = keys(project, tmp_path / "a")
    cfg = project / "templates/haproxy/haproxy.cfg.j2"
    cfg.write_text(cfg.read_text() + "# edited\n")
    after = keys(project, tmp_path / "b")
    role = _roles(project)["haproxy"]
    assert layer.identity(role.base, role.packages, specs.Mirrors()) == before_layer
    assert before["haproxy"] != after["haproxy"]


def test_layered_and_bare_bakes_are_different_images(project, tmp_path):
    proj = find_project(start=project)
    loaded = specs.load_roles(proj)
    env = specs.load_environment("local", proj, loaded)
    role = loaded["redis"]
    layered = rendering.render([role], "qemu", env, proj, tmp_path / "l")[0]
    bare = rendering.render([role], "qemu", env, proj, tmp_path / "b", layers=False)[0]
    assert layered.content_key != bare.content_key
    def source(target: str, layers: bool) -> str:
        return rendering.source_identity(role, target, env, layers, proj.templates)

    assert source("qemu", True).startswith("layer:")
    assert source("qemu", False) == bases.identity(role.base)
    # AWS bakes start from Debian's AMI whatever the flag says.
    assert source("aws", True).startswith("ami:")


def test_provisioning_skips_apt_only_when_every_package_is_present(project, tmp_path):
    import subprocess

    proj = find_project(start=project)
    loaded = specs.load_roles(proj)
    env = specs.load_environment("local", proj, loaded)
    out = rendering.render([loaded["redis"]], "qemu", env, proj, tmp_path)[0]
    script = (out.directory / "files/provision.sh").read_text()
    check = script[script.index('missing=""'):script.index("\nfi\n") + 4]
    fake = tmp_path / "bin"
    fake.mkdir()
    # dpkg-query answering for a layer (everything installed) and apt-get recording a call.
    (fake / "dpkg-query").write_text("#!/bin/sh\n[ -n \"$INSTALLED\" ] && "
                                     "echo 'install ok installed'\nexit 0\n")
    (fake / "apt-get").write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path}/apt.log\n")
    for tool in ("dpkg-query", "apt-get"):
        (fake / tool).chmod(0o755)
    prelude = 'say() { echo "builder: $*"; }\n'
    for installed, apt_called in (("yes", False), ("", True)):
        (tmp_path / "apt.log").unlink(missing_ok=True)
        proc = subprocess.run(["sh", "-euc", prelude + check], capture_output=True, text=True,
                              env={"PATH": f"{fake}:/usr/bin:/bin", "INSTALLED": installed},
                              check=False)
        assert proc.returncode == 0, proc.stderr
        assert (tmp_path / "apt.log").exists() is apt_called, proc.stdout
    assert "install -y -q --no-install-recommends redis-server" in \
        (tmp_path / "apt.log").read_text()


def test_host_view_of_a_bake_vm_url():
    assert layer.host_view("http://10.0.2.2:3142/debian") == "http://127.0.0.1:3142/debian"
    assert layer.host_view("http://mirror.internal/debian") == "http://mirror.internal/debian"
    assert layer.host_view(None) is None


def test_only_a_bake_that_never_reached_ssh_is_booted_again(tmp_path):
    log = tmp_path / "packer.log"
    assert not packerrun.never_reached_ssh(log)
    log.write_text("==> qemu: Waiting for SSH to become available...\n"
                   "Build 'qemu.redis' errored: Timeout waiting for SSH.\n")
    assert packerrun.never_reached_ssh(log)
    log.write_text("builder-stage: provision\nsomething\nTimeout waiting for SSH\n")
    assert not packerrun.never_reached_ssh(log)


def test_the_agents_own_packages_join_the_list_on_aws_only(project, tmp_path):
    """On AWS the agent imports boto3 (tag discovery, SSM secrets, the lifecycle hook) and
    Debian's AMI has none; a qemu image has no use for it."""
    import shlex

    proj = find_project(start=project)
    loaded = specs.load_roles(proj)
    lists = {}
    for target in ("qemu", "aws"):
        env = specs.load_environment("local", proj, loaded)
        out = rendering.render([loaded["redis"]], target, env, proj, tmp_path / target)[0]
        script = (out.directory / "files/provision.sh").read_text()
        loop = next(line for line in script.splitlines() if line.startswith("for p in "))
        lists[target] = shlex.split(loop.removeprefix("for p in ").removesuffix("; do"))
    assert lists["aws"] == lists["qemu"] + ["python3-boto3"]
    assert "python3-boto3" not in lists["qemu"]


def test_a_layer_script_edit_rebuilds_only_that_roles_layer(project):
    proj = find_project(start=project)
    roles = specs.load_roles(proj)
    db, lb = roles["etcd-patroni"], roles["haproxy"]
    assert db.layer_scripts == ["neutralize.sh"]
    before = {r.role: layer.role_identity(r, specs.Mirrors(), proj.templates) for r in (db, lb)}
    # No layer scripts: the key is the one it was before layer scripts existed.
    assert before["haproxy"] == layer.identity(lb.base, lb.packages, specs.Mirrors())
    script = project / "templates/etcd-patroni/neutralize.sh"
    script.write_text(script.read_text() + "# edited\n")
    after = {r.role: layer.role_identity(r, specs.Mirrors(), proj.templates) for r in (db, lb)}
    assert after["etcd-patroni"] != before["etcd-patroni"]
    assert after["haproxy"] == before["haproxy"]


def test_layer_scripts_run_in_the_chroot_from_a_quoted_path(tmp_path):
    script = tmp_path / "a dir; rm -rf x" / "neutralize.sh"
    [hook] = layer._script_hooks({"neutralize.sh": script})
    assert hook.startswith("cp '" + str(script) + "' \"$1/tmp/builder-layer-script\" && ")
    assert 'chroot "$1" sh /tmp/builder-layer-script' in hook


def test_a_layer_script_must_be_one_of_the_roles_scripts(project):
    import yaml

    spec_path = project / "images/etcd-patroni.yaml"
    data = yaml.safe_load(spec_path.read_text())
    data["layer_scripts"] = ["post-bootstrap.sh"]
    spec_path.write_text(yaml.safe_dump(data))
    with pytest.raises(UserError, match="post-bootstrap.sh is not one of the role's scripts")\
            as err:
        specs.load_roles(find_project(start=project))
    assert "layer_scripts" in str(err.value)
