"""The shape of the rendered Packer HCL, read back with python-hcl2 (what Packer will see)."""

from __future__ import annotations

import re
from pathlib import Path

import hcl2
import pytest

from builder import render as rendering
from builder import spec as specs
from builder.bake import packer
from builder.spec.project import find_project

from .helpers import REPO, ROLES

DEBIAN_OWNER = "136693071363"


def _unquote(value):
    """python-hcl2 keeps HCL's quotes and adds bookkeeping keys: plain data without them."""
    if isinstance(value, dict):
        return {_unquote(k): _unquote(v) for k, v in value.items()
                if not (isinstance(k, str) and k.startswith("__") and k.endswith("__"))}
    if isinstance(value, list):
        return [_unquote(v) for v in value]
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def render_and_parse(target: str, out: Path, root: Path = REPO, env: str = "local",
                     roles: tuple[str, ...] = ROLES) -> dict[str, dict]:
    project = find_project(start=root)
    loaded = specs.load_roles(project)
    environment = specs.load_environment(env, project, loaded)
    chosen = [loaded[r] for r in roles]
    rendering.render(chosen, target, environment, project, out)
    parsed = {}
    for role in roles:
        path = out / target / role / f"{role}.pkr.hcl"
        with path.open() as fh:
            parsed[role] = _unquote(hcl2.load(fh))
    return parsed


def source(doc: dict, kind: str, role: str) -> dict:
    [block] = [b for b in doc["source"] if kind in b]
    return block[kind][role]


def variables(doc: dict) -> dict[str, dict]:
    return {name: body for block in doc["variable"] for name, body in block.items()}


def provisioners(doc: dict) -> list[tuple[str, dict]]:
    [build] = doc["build"]
    return [(kind, body) for block in build["provisioner"] for kind, body in block.items()]


@pytest.fixture(scope="module")
def qemu(tmp_path_factory):
    return render_and_parse("qemu", tmp_path_factory.mktemp("qemu"))


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    return render_and_parse("aws", tmp_path_factory.mktemp("aws"))


@pytest.fixture(scope="module")
def roles():
    return specs.load_roles(find_project(start=REPO))


# ------------------------------------------------------------------------------------ qemu


@pytest.mark.parametrize("role", ROLES)
def test_qemu_source(qemu, roles, role):
    src = source(qemu[role], "qemu", role)
    spec = roles[role]
    assert src["disk_image"] is True
    assert src["format"] == "qcow2"
    assert src["accelerator"] == "${var.accelerator}"
    assert variables(qemu[role])["accelerator"]["default"] == "tcg"
    # The bake-time NoCloud seed travels as a CD labelled cidata.
    assert src["cd_label"] == "cidata"
    assert {Path(f).name for f in src["cd_files"]} == {"user-data", "meta-data"}
    assert "builder-final" in src["shutdown_command"]
    # Sizes come from the spec.
    assert src["memory"] == spec.targets.qemu.memory
    assert src["cpus"] == "${var.cpus}"
    assert variables(qemu[role])["cpus"]["default"] == spec.targets.qemu.cpus
    assert src["disk_size"] == spec.targets.qemu.disk_size
    assert src["vm_name"] == f"{role}.qcow2"


@pytest.mark.parametrize("role", ROLES)
def test_qemu_forwards_ssh_on_loopback_only(qemu, role):
    args = [a for pair in source(qemu[role], "qemu", role)["qemuargs"] for a in pair]
    netdevs = [a for a in args if "hostfwd=" in a]
    assert netdevs, "Packer's own -netdev would forward SSH on every address"
    for netdev in netdevs:
        forwards = re.findall(r"hostfwd=(?:tcp|udp):([^:,]*):", netdev)
        assert forwards and set(forwards) == {"127.0.0.1"}, netdev
    assert args[args.index("-netdev") + 1].startswith("user,id=user.0")


def _order(doc: dict) -> list[str]:
    """Which step each provisioner is, in order (unknown ones as their kind)."""
    steps = []
    for kind, body in provisioners(doc):
        text = " ".join(body.get("inline", [])) if isinstance(body.get("inline"), list) else ""
        if kind == "file":
            steps.append("file")
        elif kind == "shell" and "provision.sh" in text:
            steps.append("provision")
        elif kind == "shell-local" and "test-image" in text:
            steps.append("test-image")
        elif kind == "shell" and "seal.sh" in (text + str(body.get("script", ""))):
            steps.append("seal")
        elif kind == "shell" and "builder-final" in text:
            steps.append("final")
        else:
            steps.append(kind)
    return steps


@pytest.mark.parametrize("role", ROLES)
def test_qemu_provisioners_in_order(qemu, role):
    steps = [s for s in _order(qemu[role])
             if s in {"file", "provision", "test-image", "seal", "final"}]
    # qemu runs builder-final as its shutdown_command, not as a provisioner.
    assert steps == ["file", "provision", "test-image", "seal"]
    [test] = [b for k, b in provisioners(qemu[role]) if k == "shell-local"]
    command = " ".join(test["inline"])
    assert "${build.Host}" in command and "${build.Port}" in command
    assert "--phase bake" in command
    # A step whose SSH session dropped runs once more; the image's tests never do.
    retried = {_order({"build": [{"provisioner": [{k: b}]}]})[0]: b.get("max_retries", 0)
               for k, b in provisioners(qemu[role])}
    assert retried == {"shell": 1, "file": 1, "provision": 1, "test-image": 0, "seal": 1}


@pytest.mark.parametrize("role", ROLES)
def test_qemu_manifest_post_processor(qemu, role):
    [build] = qemu[role]["build"]
    assert build["sources"] == [f"source.qemu.{role}"]
    [manifest] = [b["manifest"] for b in build["post-processor"] if "manifest" in b]
    assert manifest["output"] == "${var.manifest_path}"
    assert manifest["custom_data"]["role"] == role
    assert manifest["custom_data"]["content_key"] == "${var.content_key}"


# ------------------------------------------------------------------------------------- aws


@pytest.mark.parametrize("role", ROLES)
def test_aws_source(aws, roles, role):
    src = source(aws[role], "amazon-ebs", role)
    spec = roles[role]
    [ami_filter] = src["source_ami_filter"]
    assert ami_filter["owners"] == [DEBIAN_OWNER]
    assert ami_filter["filters"]["name"] == "debian-13-amd64-*"
    assert ami_filter["filters"]["architecture"] == "x86_64"
    assert ami_filter["most_recent"] is True
    assert src["encrypt_boot"] is True
    [volume] = src["launch_block_device_mappings"]
    assert volume["encrypted"] is True
    assert volume["volume_size"] == spec.targets.aws.volume_size
    assert src["instance_type"] == spec.targets.aws.instance_type
    # Only the build host may reach the build instance.
    assert src["temporary_security_group_source_cidrs"] == ["${var.builder_cidr}"]
    assert src["ami_regions"] == "${var.ami_regions}"
    tags = src["tags"]
    assert tags["builder:role"] == role
    assert tags["builder:version"] == spec.version
    assert tags["builder:content-key"] == "${var.content_key}"
    assert tags["builder:git-sha"] == "${var.git_sha}"


@pytest.mark.parametrize("role", ROLES)
def test_aws_provisioners_and_manifest(aws, role):
    steps = [s for s in _order(aws[role])
             if s in {"file", "provision", "test-image", "seal", "final"}]
    # amazon-ebs stops the instance itself: the bake user is removed by the last step.
    assert steps == ["file", "provision", "test-image", "seal", "final"]
    [build] = aws[role]["build"]
    assert build["sources"] == [f"source.amazon-ebs.{role}"]
    [manifest] = [b["manifest"] for b in build["post-processor"] if "manifest" in b]
    assert manifest["output"] == "${var.manifest_path}"
    assert manifest["custom_data"]["git_sha"] == "${var.git_sha}"


def test_aws_ami_regions_come_from_the_environment(tmp_path):
    root = tmp_path / "project"
    from .helpers import copy_project

    copy_project(root)
    (root / "environments").mkdir(exist_ok=True)
    (root / "environments" / "multi.yaml").write_text(
        "name: multi\naws:\n  region: eu-west-1\n  ami_regions: [eu-central-1, us-east-1]\n")
    [doc] = render_and_parse("aws", tmp_path / "out", root, env="multi",
                             roles=("redis",)).values()
    assert variables(doc)["ami_regions"]["default"] == ["eu-central-1", "us-east-1"]
    assert variables(doc)["region"]["default"] == "eu-west-1"


def test_aws_bookworm_base_uses_the_debian_12_ami(tmp_path):
    root = tmp_path / "project"
    from .helpers import copy_project

    copy_project(root)
    path = root / "images" / "redis.yaml"
    path.write_text(path.read_text().replace("suite: trixie", "suite: bookworm"))
    [doc] = render_and_parse("aws", tmp_path / "out", root, roles=("redis",)).values()
    [ami_filter] = source(doc, "amazon-ebs", "redis")["source_ami_filter"]
    assert ami_filter["filters"]["name"] == "debian-12-amd64-*"
    assert ami_filter["owners"] == [DEBIAN_OWNER]


# ------------------------------------------------------------- packer {} by Packer version


@pytest.mark.parametrize("target", ["qemu", "aws"])
def test_no_packer_block_for_packer_before_1_7(monkeypatch, tmp_path, target):
    monkeypatch.setattr(packer, "version", lambda: (1, 6, 6))
    [doc] = render_and_parse(target, tmp_path, roles=("haproxy",)).values()
    assert "packer" not in doc


@pytest.mark.parametrize(("target", "plugin"), [("qemu", "qemu"), ("aws", "amazon")])
def test_packer_block_with_required_plugins_from_1_7(monkeypatch, tmp_path, target, plugin):
    monkeypatch.setattr(packer, "version", lambda: (1, 11, 2))
    assert packer.target_version() == (1, 11, 2)
    [doc] = render_and_parse(target, tmp_path, roles=("haproxy",)).values()
    [block] = doc["packer"]
    [plugins] = block["required_plugins"]
    assert plugins[plugin]["source"] == f"github.com/hashicorp/{plugin}"


def test_target_version_falls_back_to_debian_packer(monkeypatch, tmp_path):
    monkeypatch.setattr(packer, "version", lambda: None)
    assert packer.target_version() == packer.DEFAULT_VERSION
    [doc] = render_and_parse("qemu", tmp_path, roles=("redis",)).values()
    assert "packer" not in doc
