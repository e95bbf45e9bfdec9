"""The AWS release lifecycle end to end through the CLI, against moto in server mode.

moto runs as a real HTTP server on 127.0.0.1 (a thread of this process, stopped by the
fixture's finalizer); boto3 reaches it through AWS_ENDPOINT_URL, exactly as it would reach
AWS. Commands run in-process through builder.cli.main (same argv parsing, error lines and
exit codes as the installed script) and, for the bad-input cases, as a real subprocess.

moto does not implement instance refreshes (nor DeleteLaunchTemplateVersions): builder talks
to an HTTP stand-in in front of moto (refresh_standin.py) that answers those calls under
AWS's documented rules and forwards every other call (launch templates, groups, target
groups, SSM, AMIs) to moto.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
from bad_endpoint import BadEndpoint, closed_port
from botocore.config import Config

from builder.agent.discovery import aws_tags
from builder.bake.targets import aws as aws_target
from builder.cli import main
from builder.errors import UserError
from builder.registry import Registry, default_path
from builder.release.awsclient import Aws
from builder.spec import AwsEnvironment

ROOT = Path(__file__).resolve().parents[2]
BUILDER = Path(sys.executable).parent / "builder"
REGION, OTHER_REGION = "us-east-1", "eu-west-1"
ENV_YAML = f"""\
name: test
cluster_name: shop
aws:
  region: {REGION}
  channels: [dev, staging, prod]
  ssm_prefix: /builder
  ami_regions: [{REGION}, {OTHER_REGION}]
"""


# --------------------------------------------------------------------------- fixtures


class World:
    """The test's own view of (moto) AWS and of the registry, for setup and assertions."""

    def __init__(self, url: str, tmp: Path):
        self.url = url
        self.tmp = tmp
        self.env_file = tmp / "test.yaml"
        self.env_file.write_text(ENV_YAML)
        self.state = tmp / "state"
        cfg = Config(retries={"mode": "standard", "max_attempts": 2})
        self.ec2 = boto3.client("ec2", region_name=REGION, endpoint_url=url, config=cfg)
        self.ec2_other = boto3.client("ec2", region_name=OTHER_REGION, endpoint_url=url,
                                      config=cfg)
        self.ssm = boto3.client("ssm", region_name=REGION, endpoint_url=url, config=cfg)
        self.asg = boto3.client("autoscaling", region_name=REGION, endpoint_url=url,
                                config=cfg)
        self.elb = boto3.client("elbv2", region_name=REGION, endpoint_url=url, config=cfg)
        self.base_ami = self.ec2.register_image(Name="debian-13-amd64-base")["ImageId"]
        self.registry = Registry(default_path(self.state.resolve()))
        self.baked = 0

    def aws(self) -> Aws:
        return Aws(AwsEnvironment(region=REGION, ami_regions=[REGION, OTHER_REGION]))

    def bake(self, role: str, version: str, *, base: str | None = None,
             regions: tuple[str, ...] = (REGION,), tests_passed: bool = True):
        """What a Packer amazon-ebs bake leaves behind: AMIs (tagged with the source AMI, as
        the template does) and a manifest; then the real post-bake recording."""
        self.baked += 1
        key = f"{self.baked:064x}"
        ids = []
        for region in regions:
            ec2 = self.ec2 if region == REGION else self.ec2_other
            ami = ec2.register_image(Name=f"shop-{role}-{version}-{self.baked}")["ImageId"]
            ec2.create_tags(Resources=[ami], Tags=[
                {"Key": "builder:base-ami", "Value": base or self.base_ami}])
            ids.append(f"{region}:{ami}")
        manifest = self.tmp / f"manifest-{self.baked}.json"
        manifest.write_text(json.dumps({"builds": [{
            "name": role, "builder_type": "amazon-ebs", "artifact_id": ",".join(ids),
            "packer_run_uuid": f"run-{self.baked}",
            "custom_data": {"role": role, "version": version, "content_key": key,
                            "git_sha": "abc123"}}], "last_run_uuid": f"run-{self.baked}"}))
        return aws_target.record(manifest, self.registry, self.aws(), tests_passed=tests_passed,
                                 packer_version="1.6.6")

    def ami(self, art, region: str = REGION) -> str:
        return dict(p.split(":") for p in art.artifact.split(","))[region]

    def parameter(self, role: str, channel: str) -> str | None:
        try:
            return self.ssm.get_parameter(Name=f"/builder/test/{role}/{channel}")[
                "Parameter"]["Value"]
        except self.ssm.exceptions.ParameterNotFound:
            return None

    def tags(self, resource: str, ec2=None) -> dict[str, str]:
        found = (ec2 or self.ec2).describe_tags(
            Filters=[{"Name": "resource-id", "Values": [resource]}])["Tags"]
        return {t["Key"]: t["Value"] for t in found}

    def network(self) -> tuple[str, str]:
        vpc = self.ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnet = self.ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24",
                                        AvailabilityZone=f"{REGION}a")["Subnet"]["SubnetId"]
        return vpc, subnet

    def group(self, name: str, role: str, ami: str, *, size: int = 2,
              target_group: str | None = None, subnet: str | None = None,
              version: str = "$Latest") -> str:
        if subnet is None:
            _, subnet = self.network()
        lt = self.ec2.create_launch_template(
            LaunchTemplateName=f"{name}-lt",
            LaunchTemplateData={"ImageId": ami, "InstanceType": "t3.small"})["LaunchTemplate"]
        self.asg.create_auto_scaling_group(
            AutoScalingGroupName=name, MinSize=size, MaxSize=size * 2, DesiredCapacity=size,
            LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplateId"], "Version": version},
            VPCZoneIdentifier=subnet, TargetGroupARNs=[target_group] if target_group else [],
            Tags=[{"Key": "builder:role", "Value": role, "PropagateAtLaunch": True},
                  {"Key": "builder:cluster", "Value": "shop", "PropagateAtLaunch": True}])
        return lt["LaunchTemplateId"]

    def describe_group(self, name: str) -> dict | None:
        found = self.asg.describe_auto_scaling_groups(AutoScalingGroupNames=[name])
        return (found["AutoScalingGroups"] or [None])[0]

    def instance_images(self, name: str) -> set[str]:
        ids = [i["InstanceId"] for i in self.describe_group(name)["Instances"]]
        found = self.ec2.describe_instances(InstanceIds=ids)["Reservations"]
        return {i["ImageId"] for r in found for i in r["Instances"]}

    def snapshot(self) -> dict:
        """Everything a failed command must leave untouched."""
        params = self.ssm.describe_parameters()["Parameters"]
        return {
            "channels": self.registry.channels(),
            "history": [self.registry.channel_history(r, "aws") for r in
                        ("saleor-api", "etcd-patroni")],
            "revoked": [(a.id, a.revoked) for a in self.registry.list()],
            "parameters": sorted((p["Name"], p["Version"]) for p in params),
            "groups": sorted(g["AutoScalingGroupName"] for g in
                             self.asg.describe_auto_scaling_groups()["AutoScalingGroups"]),
            "templates": sorted((t["LaunchTemplateName"], t["LatestVersionNumber"]) for t in
                                self.ec2.describe_launch_templates()["LaunchTemplates"]),
            "images": sorted(i["ImageId"] for i in
                             self.ec2.describe_images(Owners=["self"])["Images"]),
        }


@pytest.fixture
def world(aws_sandbox, moto_url, tmp_path, monkeypatch):
    """moto and the stand-in emptied, boto3 pointed at them (tests/conftest.py)."""
    monkeypatch.setenv("BUILDER_STATE", str(tmp_path / "state"))
    monkeypatch.chdir(ROOT)
    return World(moto_url, tmp_path)


class Result:
    def __init__(self, code: int, out: str, err: str):
        self.code, self.out, self.err = code, out, err

    @property
    def json(self):
        return json.loads(self.out)

    @property
    def error(self) -> str:
        lines = [ln for ln in self.err.splitlines() if ln.startswith("builder:")]
        assert len(lines) == 1, self.err
        return lines[0]


@pytest.fixture
def builder(world, capsys, monkeypatch):
    """Run `builder ARGS --env <test env>` in-process through main()."""
    def run(*args: str) -> Result:
        monkeypatch.setattr(sys, "argv", ["builder", *args, "--env", str(world.env_file)])
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return Result(code, out, err)
    return run


def run_script(world: World, *args: str) -> Result:
    """The installed `builder` script, as a user runs it."""
    proc = subprocess.run([str(BUILDER), *args, "--env", str(world.env_file)],
                          capture_output=True, text=True, timeout=60, env=dict(os.environ),
                          cwd=ROOT)
    return Result(proc.returncode, proc.stdout, proc.stderr)


# --------------------------------------------------------------------------- post-bake


def test_post_bake_recording_tags_hardens_and_records(world, monkeypatch):
    calls = []
    original = Aws.client

    def spying(aws_self, service, region=None):
        made = original(aws_self, service, region)
        if service == "ec2" and not getattr(made, "_spied", False):
            made.meta.events.register("before-parameter-build.ec2.ModifyImageAttribute",
                                      lambda params, **_: calls.append(dict(params)))
            made._spied = True
        return made

    monkeypatch.setattr(Aws, "client", spying)
    art = world.bake("saleor-api", "1.0.0", regions=(REGION, OTHER_REGION))

    assert art.target == "aws" and art.tests_passed and art.base == world.base_ami
    assert world.registry.find_image(world.ami(art, OTHER_REGION)).id == art.id
    for region, ec2 in ((REGION, world.ec2), (OTHER_REGION, world.ec2_other)):
        ami = world.ami(art, region)
        image = ec2.describe_images(ImageIds=[ami])["Images"][0]
        snapshot = image["BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]
        for resource in (ami, snapshot):
            tags = world.tags(resource, ec2)
            assert tags["builder:role"] == "saleor-api"
            assert tags["builder:version"] == "1.0.0"
            assert tags["builder:content-key"] == art.content_key
            assert tags["builder:git-sha"] == "abc123"
            assert tags["builder:base-ami"] == world.base_ami
            assert tags["builder:tests-passed"] == "true"
    # moto accepts ImdsSupport but does not store it: assert what was sent.
    assert sorted(c["ImageId"] for c in calls) == sorted(
        [world.ami(art, REGION), world.ami(art, OTHER_REGION)])
    assert all(c["ImdsSupport"] == {"Value": "v2.0"} for c in calls)

    child = world.bake("saleor-api", "1.0.1", base=world.ami(art))
    assert world.registry.parent(child.id) == art.id


def test_post_bake_manifest_errors_name_the_field(world, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"builds": [{"artifact_id": "us-east-1:i-123", "custom_data": {
        "role": "redis", "version": "1.0.0", "content_key": "k", "git_sha": "s"}}]}))
    with pytest.raises(UserError, match=r"builds\[0\]\.artifact_id"):
        aws_target.record(bad, world.registry, world.aws())
    bad.write_text(json.dumps({"builds": [{"artifact_id": "us-east-1:ami-1", "custom_data": {
        "role": "redis", "version": "1.0.0", "git_sha": "s"}}]}))
    with pytest.raises(UserError, match=r"custom_data\.content_key"):
        aws_target.record(bad, world.registry, world.aws())
    assert world.registry.list() == []


# --------------------------------------------------------------------------- channels


def test_promote_rollback_list_show(world, builder):
    v1 = world.bake("saleor-api", "1.0.0", regions=(REGION, OTHER_REGION))
    v2 = world.bake("saleor-api", "1.1.0", regions=(REGION, OTHER_REGION))

    res = builder("release", "promote", "saleor-api", "1.0.0", "--channel", "dev", "--json")
    assert res.code == 0, res.err
    assert res.json["changed"] and res.json["image"]["id"] == v1.id
    assert world.parameter("saleor-api", "dev") == world.ami(v1)
    param = world.ssm.get_parameter(Name="/builder/test/saleor-api/dev")["Parameter"]
    assert param["DataType"] == "aws:ec2:image"
    other = boto3.client("ssm", region_name=OTHER_REGION, endpoint_url=world.url)
    assert other.get_parameter(Name="/builder/test/saleor-api/dev")["Parameter"][
        "Value"] == world.ami(v1, OTHER_REGION)

    assert builder("release", "promote", "saleor-api", "1.1.0", "--channel", "dev").code == 0
    assert world.parameter("saleor-api", "dev") == world.ami(v2)
    again = builder("release", "promote", "saleor-api", "1.1.0", "--channel", "dev", "--json")
    assert again.code == 0 and not again.json["changed"]
    # Someone changed the parameter behind builder's back: promoting again repairs it.
    world.ssm.put_parameter(Name="/builder/test/saleor-api/dev", Value=world.ami(v1),
                            Type="String", DataType="aws:ec2:image", Overwrite=True)
    repaired = builder("release", "promote", "saleor-api", "1.1.0", "--channel", "dev",
                       "--json")
    assert repaired.code == 0 and repaired.json["changed"]
    assert world.parameter("saleor-api", "dev") == world.ami(v2)
    # Promotion follows the channel order: staging only after dev.
    assert builder("release", "promote", "saleor-api", world.ami(v2), "--channel",
                   "staging").code == 0

    back = builder("release", "rollback", "saleor-api", "--channel", "dev", "--json")
    assert back.code == 0, back.err
    assert back.json["image"]["id"] == v1.id and back.json["previous"]["id"] == v2.id
    assert world.parameter("saleor-api", "dev") == world.ami(v1)
    assert world.parameter("saleor-api", "staging") == world.ami(v2)
    # Nothing before v1: a second rollback is refused and changes nothing.
    before = world.snapshot()
    again = builder("release", "rollback", "saleor-api", "--channel", "dev")
    assert again.code == 2 and "--channel" in again.error
    assert world.snapshot() == before

    listed = builder("release", "list", "saleor-api", "--json").json["images"]
    assert [(r["version"], r["channels"]) for r in listed] == [
        ("1.0.0", ["dev"]), ("1.1.0", ["staging"])]
    human = builder("release", "list")
    assert human.code == 0 and "1.1.0" in human.out and "staging" in human.out
    shown = builder("release", "show", "saleor-api", "1.1.0", "--json").json
    assert shown["channels"] == ["staging"]
    assert [h["action"] for h in shown["history"]] == [
        "promote", "promote", "promote", "rollback"]
    assert builder("release", "show", "saleor-api", f"#{v1.id}").code == 0


def test_revoke_flags_descendants_and_blocks_promotion_and_rollout(world, builder):
    parent = world.bake("saleor-api", "1.0.0")
    child = world.bake("saleor-api", "1.0.1", base=world.ami(parent))
    grandchild = world.bake("saleor-api", "1.0.2", base=world.ami(child))
    assert builder("release", "promote", "saleor-api", "1.0.2", "--channel", "dev").code == 0

    res = builder("release", "revoke", "saleor-api", "1.0.0", "--reason", "CVE-2026-0001",
                  "--json")
    assert res.code == 0, res.err
    assert sorted(res.json["revoked"]) == sorted([parent.id, child.id, grandchild.id])
    assert res.json["channels_still_pointing"] == ["dev"]
    for art in (parent, child, grandchild):
        assert world.registry.get(art.id).revoked
        assert world.tags(world.ami(art))["builder:revoked"] == "true"
    assert world.registry.revocation(grandchild.id)["inherited_from"] == parent.id

    # Revoking again keeps the first reason, in the registry and on the AMIs, and says so.
    tags = {a.id: world.tags(world.ami(a)) for a in (parent, child, grandchild)}
    again = builder("release", "revoke", "saleor-api", "1.0.0", "--reason", "other", "--json")
    assert again.code == 0 and not again.json["changed"] and again.json["revoked"] == []
    assert again.json["revocation"]["reason"] == "CVE-2026-0001"
    assert {a.id: world.tags(world.ami(a)) for a in (parent, child, grandchild)} == tags
    assert world.tags(world.ami(parent))["builder:revoked-reason"] == "CVE-2026-0001"
    assert world.registry.revocation(parent.id)["reason"] == "CVE-2026-0001"
    human = builder("release", "revoke", "saleor-api", "1.0.0", "--reason", "other")
    assert "already revoked: CVE-2026-0001" in human.out and "kept" in human.out
    assert world.registry.find_tested("saleor-api", "aws", grandchild.content_key) is None

    before = world.snapshot()
    refused = builder("release", "promote", "saleor-api", "1.0.1", "--channel", "dev")
    assert refused.code == 2 and refused.error.startswith("builder: error: VERSION")
    assert "revoked" in refused.error
    assert world.snapshot() == before
    world.group("api", "saleor-api", world.ami(parent))
    before = world.snapshot()
    refused = builder("rollout", "saleor-api", "--channel", "dev", "--asg", "api")
    assert refused.code == 2 and "--channel" in refused.error and "revoked" in refused.error
    assert world.snapshot() == before

    # A later image built from a revoked base is flagged at record time.
    late = world.bake("saleor-api", "1.0.3", base=world.ami(child))
    assert world.registry.get(late.id).revoked


# --------------------------------------------------------------------------- rollouts


def test_rolling_refresh_pins_a_new_template_version(world, builder, standin):
    sim = standin
    v1 = world.bake("saleor-api", "1.0.0")
    v2 = world.bake("saleor-api", "1.1.0")
    lt = world.group("api", "saleor-api", world.ami(v1), size=2)
    assert world.instance_images("api") == {world.ami(v1)}
    builder("release", "promote", "saleor-api", "1.1.0", "--channel", "dev")

    res = builder("rollout", "saleor-api", "--channel", "dev", "--asg", "api", "--wait",
                  "--poll", "0.01", "--timeout", "20", "--json")
    assert res.code == 0, res.err
    assert res.json["status"] == "Successful" and res.json["template_version"] == 2
    assert "InProgress 50%" in res.err and "Successful 100%" in res.err

    version = world.ec2.describe_launch_template_versions(
        LaunchTemplateId=lt, Versions=["2"])["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    assert version["ImageId"] == world.ami(v2)
    assert version["MetadataOptions"]["HttpTokens"] == "required"
    (started,) = sim.started
    assert started["DesiredConfiguration"]["LaunchTemplate"] == {
        "LaunchTemplateId": lt, "Version": "2"}
    prefs = started["Preferences"]
    assert prefs["AutoRollback"] is True and prefs["MinHealthyPercentage"] == 90
    assert prefs["CheckpointPercentages"] == [50, 100] and prefs["SkipMatching"] is True
    # The group was on $Latest: pinned to the version it ran, so AutoRollback has a target.
    group = world.describe_group("api")
    assert group["LaunchTemplate"]["Version"] == "2"
    assert world.instance_images("api") == {world.ami(v2)}
    assert [r["status"] for r in world.registry.rollouts("saleor-api")] == ["Successful"]

    again = builder("rollout", "saleor-api", "--channel", "dev", "--asg", "api", "--json")
    assert again.code == 0 and again.json["status"] == "up-to-date"


def test_up_to_date_means_the_whole_desired_configuration(world, builder, standin):
    """The group already runs the channel's AMI, but on $Latest with IMDSv1 allowed: a
    rollout still makes the pinned IMDSv2 version; only then is it up to date."""
    v1 = world.bake("saleor-api", "1.0.0")
    lt = world.group("api", "saleor-api", world.ami(v1))
    builder("release", "promote", "saleor-api", "1.0.0", "--channel", "dev")
    res = builder("rollout", "saleor-api", "--channel", "dev", "--asg", "api", "--wait",
                  "--poll", "0.01", "--json")
    assert res.code == 0, res.err
    assert res.json["status"] == "Successful" and res.json["template_version"] == 2
    data = world.ec2.describe_launch_template_versions(
        LaunchTemplateId=lt, Versions=["2"])["LaunchTemplateVersions"][0]["LaunchTemplateData"]
    assert data["ImageId"] == world.ami(v1)
    assert data["MetadataOptions"]["HttpTokens"] == "required"
    assert world.describe_group("api")["LaunchTemplate"]["Version"] == "2"
    again = builder("rollout", "saleor-api", "--channel", "dev", "--asg", "api", "--json")
    assert again.code == 0 and again.json["status"] == "up-to-date", again.err


def test_rolling_refresh_failure_exits_1(world, builder, standin):
    v1 = world.bake("saleor-api", "1.0.0")
    v2 = world.bake("saleor-api", "1.1.0")
    standin.unhealthy_images.add(world.ami(v2))
    world.group("api", "saleor-api", world.ami(v1), version="1")
    builder("release", "promote", "saleor-api", "1.1.0", "--channel", "dev")
    res = builder("rollout", "saleor-api", "--channel", "dev", "--asg", "api", "--wait",
                  "--poll", "0.01")
    assert res.code == 1
    assert res.error.startswith("builder: failed:") and "RollbackSuccessful" in res.error
    assert world.describe_group("api")["LaunchTemplate"]["Version"] == "1"
    assert world.instance_images("api") == {world.ami(v1)}


@pytest.mark.parametrize("fault", ["500", "close"])
def test_failed_refresh_start_is_sent_once_and_undone(world, builder, standin, fault):
    """StartInstanceRefresh is not idempotent: one attempt; when it fails, the group's own
    launch-template Version comes back and the new version is deleted."""
    v1 = world.bake("saleor-api", "1.0.0")
    world.bake("saleor-api", "1.1.0")
    world.group("api", "saleor-api", world.ami(v1), size=2)
    builder("release", "promote", "saleor-api", "1.1.0", "--channel", "dev")
    before = world.snapshot()
    standin.start_faults.append(fault)

    res = builder("rollout", "saleor-api", "--channel", "dev", "--asg", "api")
    assert res.code == 1, res.err
    assert res.error.startswith("builder: failed: starting an instance refresh of api")
    assert "undone: api back on $Latest, version 2 deleted" in res.error
    assert len(standin.start_requests) == 1 and standin.refreshes == []
    assert world.describe_group("api")["LaunchTemplate"]["Version"] == "$Latest"
    assert world.snapshot() == before
    assert world.registry.rollouts("saleor-api") == []


def test_refresh_started_behind_a_dropped_answer_is_followed(world, builder, standin):
    """The connection dropped after AWS started the refresh: builder finds it, undoes
    nothing and goes on."""
    v1 = world.bake("saleor-api", "1.0.0")
    v2 = world.bake("saleor-api", "1.1.0")
    world.group("api", "saleor-api", world.ami(v1), size=2)
    builder("release", "promote", "saleor-api", "1.1.0", "--channel", "dev")
    standin.start_faults.append("close-after-start")
    res = builder("rollout", "saleor-api", "--channel", "dev", "--asg", "api", "--wait",
                  "--poll", "0.01", "--json")
    assert res.code == 0, res.err
    assert res.json["status"] == "Successful"
    assert res.json["refresh_id"] == standin.refreshes[0].id
    assert len(standin.start_requests) == 1
    assert world.instance_images("api") == {world.ami(v2)}


def test_etcd_patroni_rolls_one_node_at_a_time_and_refuses_blue_green(world, builder,
                                                                      standin):
    sim = standin
    v1 = world.bake("etcd-patroni", "1.0.0")
    world.bake("etcd-patroni", "1.1.0")
    world.group("db", "etcd-patroni", world.ami(v1), size=3, version="1")
    builder("release", "promote", "etcd-patroni", "1.1.0", "--channel", "dev")

    before = world.snapshot()
    refused = run_script(world, "rollout", "etcd-patroni", "--channel", "dev", "--asg", "db",
                         "--strategy", "blue-green")
    assert refused.code == 2 and refused.error.startswith("builder: error: --strategy")
    assert world.snapshot() == before

    res = builder("rollout", "etcd-patroni", "--channel", "dev", "--asg", "db", "--json")
    assert res.code == 0 and res.json["status"] == "started"
    prefs = sim.started[0]["Preferences"]
    assert prefs["MinHealthyPercentage"] == 100
    assert prefs["CheckpointPercentages"] == [34, 67, 100]
    # Its terminations wait for each node to leave the cluster (builder/agent/lifecycle.py).
    assert res.json["lifecycle_hook"] == "created"
    assert lifecycle_hooks(world, "db") == [("builder-graceful-leave",
                                             "autoscaling:EC2_INSTANCE_TERMINATING", 300,
                                             "CONTINUE")]

    # One refresh at a time: refused before anything changes.
    world.bake("etcd-patroni", "1.2.0")
    builder("release", "promote", "etcd-patroni", "1.2.0", "--channel", "dev")
    before = world.snapshot()
    busy = builder("rollout", "etcd-patroni", "--channel", "dev", "--asg", "db")
    assert busy.code == 1 and "already has instance refresh" in busy.error, busy.err
    assert world.snapshot() == before and len(sim.start_requests) == 1
    assert lifecycle_hooks(world, "db")[0][2] == 300  # present: left alone

    # A hook someone changed is put back as wanted by the next rollout.
    world.asg.put_lifecycle_hook(AutoScalingGroupName="db", HeartbeatTimeout=30,
                                 LifecycleHookName="builder-graceful-leave",
                                 LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING")
    world.aws().autoscaling().cancel_instance_refresh(AutoScalingGroupName="db")  # stand-in
    again = builder("rollout", "etcd-patroni", "--channel", "dev", "--asg", "db", "--json")
    assert again.code == 0 and again.json["lifecycle_hook"] == "updated", again.err
    assert lifecycle_hooks(world, "db")[0][2:] == (300, "CONTINUE")


def lifecycle_hooks(world: World, group: str) -> list[tuple]:
    return [(h["LifecycleHookName"], h["LifecycleTransition"], h["HeartbeatTimeout"],
             h["DefaultResult"]) for h in world.asg.describe_lifecycle_hooks(
                 AutoScalingGroupName=group)["LifecycleHooks"]]


def test_blue_green_swap_rollback_and_retire(world, builder):
    v1 = world.bake("saleor-api", "1.0.0")
    v2 = world.bake("saleor-api", "1.1.0")
    vpc, subnet = world.network()
    tg = world.elb.create_target_group(Name="api", Protocol="HTTP", Port=8000, VpcId=vpc,
                                       TargetType="instance")["TargetGroups"][0][
                                           "TargetGroupArn"]
    world.group("api", "saleor-api", world.ami(v1), size=2, target_group=tg, subnet=subnet)
    blue_ids = {i["InstanceId"] for i in world.describe_group("api")["Instances"]}
    builder("release", "promote", "saleor-api", "1.1.0", "--channel", "dev")

    def serving() -> set[str]:
        health = world.elb.describe_target_health(TargetGroupArn=tg)["TargetHealthDescriptions"]
        return {d["Target"]["Id"] for d in health if d["TargetHealth"]["State"] == "healthy"}

    assert serving() == blue_ids
    res = builder("rollout", "saleor-api", "--channel", "dev", "--asg", "api", "--strategy",
                  "blue-green", "--poll", "0.01", "--timeout", "20", "--json")
    assert res.code == 0, res.err
    green = res.json["green"]
    assert green.startswith("api--1.1.0-") and res.json["status"] == "swapped"
    green_group = world.describe_group(green)
    assert green_group["LaunchTemplate"]["Version"] == str(res.json["template_version"])
    lt_id = green_group["LaunchTemplate"]["LaunchTemplateId"]
    assert world.ec2.describe_launch_templates(LaunchTemplateIds=[lt_id])["LaunchTemplates"][
        0]["DefaultVersionNumber"] == res.json["template_version"]
    assert world.instance_images(green) == {world.ami(v2)}
    green_ids = {i["InstanceId"] for i in green_group["Instances"]}
    assert serving() == green_ids
    blue = world.describe_group("api")
    assert blue is not None and blue["TargetGroupARNs"] == []
    assert {p["ProcessName"] for p in blue["SuspendedProcesses"]} >= {"AddToLoadBalancer"}
    assert "healthy in 1 target group" in res.err

    early = builder("rollout", "saleor-api", "--asg", green, "--retire")
    assert early.code == 2 and "--retire" in early.error

    back = builder("rollout", "saleor-api", "--asg", green, "--rollback", "--poll", "0.01",
                   "--timeout", "20", "--json")
    assert back.code == 0, back.err
    assert world.describe_group(green) is None
    assert serving() == blue_ids
    assert world.describe_group("api")["SuspendedProcesses"] == []
    # Blue was on $Latest while the shared template gained green's version: pinned to the
    # version it ran, it scales out with the old image.
    assert world.describe_group("api")["LaunchTemplate"]["Version"] == "1"
    lt = world.describe_group("api")["LaunchTemplate"]["LaunchTemplateId"]
    assert world.ec2.describe_launch_templates(LaunchTemplateIds=[lt])["LaunchTemplates"][0][
        "DefaultVersionNumber"] == 1
    world.asg.set_desired_capacity(AutoScalingGroupName="api", DesiredCapacity=3)
    assert world.instance_images("api") == {world.ami(v1)}

    again = builder("rollout", "saleor-api", "--channel", "dev", "--asg", "api", "--strategy",
                    "blue-green", "--poll", "0.01", "--timeout", "20", "--json")
    assert again.code == 0, again.err
    retired = builder("rollout", "saleor-api", "--asg", again.json["green"], "--retire",
                      "--force", "--json")
    assert retired.code == 0 and retired.json["retired"] == "api"
    assert world.describe_group("api") is None


# --------------------------------------------------------------------------- prune


def test_prune_keeps_referenced_images(world, builder):
    in_template = world.bake("saleor-api", "1.0.0")
    on_instance = world.bake("saleor-api", "1.1.0")
    on_channel = world.bake("saleor-api", "1.2.0")
    unused = world.bake("saleor-api", "1.3.0")
    other_role = world.bake("redis", "1.0.0")
    world.ec2.create_launch_template(LaunchTemplateName="old-api", LaunchTemplateData={
        "ImageId": world.ami(in_template)})
    world.ec2.run_instances(ImageId=world.ami(on_instance), MinCount=1, MaxCount=1)
    builder("release", "promote", "saleor-api", "1.2.0", "--channel", "dev")
    snapshot = world.ec2.describe_images(ImageIds=[world.ami(unused)])["Images"][0][
        "BlockDeviceMappings"][0]["Ebs"]["SnapshotId"]

    dry = builder("prune", "saleor-api", "--keep", "0", "--min-age", "0", "--json")
    assert dry.code == 0, dry.err
    plan = {d["image"]: d for d in dry.json["images"]}
    assert set(plan) == {world.ami(a) for a in (in_template, on_instance, on_channel, unused)}
    assert plan[world.ami(unused)]["action"] == "delete"
    assert "launch template old-api version 1 ($Default, $Latest)" in plan[
        world.ami(in_template)]["reasons"]
    assert any(r.startswith("instance i-") for r in plan[world.ami(on_instance)]["reasons"])
    assert "channel dev (/builder/test/saleor-api/dev)" in plan[world.ami(on_channel)][
        "reasons"]
    human = builder("prune", "saleor-api", "--keep", "0", "--min-age", "0")
    assert "dry run: 1 image(s) would be deleted, 3 kept" in human.out
    assert world.ec2.describe_images(ImageIds=[world.ami(unused)])["Images"]

    young = builder("prune", "saleor-api", "--json").json
    assert all(d["action"] == "keep" for d in young["images"])

    done = builder("prune", "saleor-api", "--keep", "0", "--min-age", "0", "--yes", "--json")
    assert done.code == 0, done.err
    assert done.json["deleted"] == [world.ami(unused)]
    remaining = {i["ImageId"] for i in world.ec2.describe_images(Owners=["self"])["Images"]}
    assert world.ami(unused) not in remaining
    assert {world.ami(a) for a in (in_template, on_instance, on_channel, other_role)} <= \
        remaining
    snaps = {s["SnapshotId"] for s in world.ec2.describe_snapshots(OwnerIds=["self"])[
        "Snapshots"]}
    assert snapshot not in snaps
    listed = {r["version"]: r for r in builder("release", "list", "saleor-api",
                                               "--json").json["images"]}
    assert listed["1.3.0"]["pruned"] and not listed["1.2.0"]["pruned"]


def test_prune_counts_only_template_versions_that_can_still_launch(world, builder, standin):
    """Rolled out twice: the first two AMIs are only in old template versions (neither
    $Default, $Latest, nor named by a group or refresh), so they can go; the live one stays.
    A successful rollout makes its version the template's $Default."""
    arts = [world.bake("saleor-api", v) for v in ("1.0.0", "1.1.0", "1.2.0")]
    lt = world.group("api", "saleor-api", world.ami(arts[0]))
    for art in arts[1:]:
        assert builder("release", "promote", "saleor-api", art.version, "--channel",
                       "dev").code == 0
        res = builder("rollout", "saleor-api", "--channel", "dev", "--asg", "api", "--wait",
                      "--poll", "0.01")
        assert res.code == 0, res.err
    template = world.ec2.describe_launch_templates(LaunchTemplateIds=[lt])["LaunchTemplates"][0]
    assert template["DefaultVersionNumber"] == template["LatestVersionNumber"] == 3
    # The registry's channel history is not a reference; only where the channel points now.
    plan = {d["image"]: d for d in builder("prune", "saleor-api", "--keep", "0", "--min-age",
                                           "0", "--json").json["images"]}
    first, second, live = (plan[world.ami(a)] for a in arts)
    assert first["action"] == second["action"] == "delete", (first, second)
    assert first["stale_template_versions"] == ["api-lt:1"]
    assert second["stale_template_versions"] == ["api-lt:2"]
    assert "launch template api-lt version 3 ($Default, $Latest, group api)" in live[
        "reasons"], live["reasons"]
    human = builder("prune", "saleor-api", "--keep", "0", "--min-age", "0")
    assert "old launch template version(s) api-lt:1 (not deleted)" in human.out

    # An in-progress refresh's desired version is live too (here also $Latest: pin the
    # group elsewhere to see the refresh alone keep it).
    newest = world.bake("saleor-api", "1.3.0")
    builder("release", "promote", "saleor-api", "1.3.0", "--channel", "dev")
    assert builder("rollout", "saleor-api", "--channel", "dev", "--asg", "api").code == 0
    world.ec2.create_launch_template_version(LaunchTemplateId=lt, SourceVersion="3",
                                             LaunchTemplateData={"ImageId": world.base_ami})
    builder("release", "rollback", "saleor-api", "--channel", "dev")
    plan = {d["image"]: d for d in builder("prune", "saleor-api", "--keep", "0", "--min-age",
                                           "0", "--json").json["images"]}
    assert any(r.startswith("launch template api-lt version 4 (instance refresh")
               for r in plan[world.ami(newest)]["reasons"]), plan[world.ami(newest)]


def test_list_shows_an_image_gone_in_some_regions(world, builder):
    """Half-pruned: the AMI was pruned in one region (the other keeps it, referenced), or
    deregistered there behind builder's back; list names the regions."""
    both = world.bake("saleor-api", "1.0.0", regions=(REGION, OTHER_REGION))
    other = world.bake("saleor-api", "1.1.0", regions=(REGION, OTHER_REGION))
    world.ec2.create_launch_template(LaunchTemplateName="keeps-it", LaunchTemplateData={
        "ImageId": world.ami(both)})
    for ec2, region in ((world.ec2, REGION), (world.ec2_other, OTHER_REGION)):
        ec2.create_launch_template(LaunchTemplateName="keeps-other", LaunchTemplateData={
            "ImageId": world.ami(other, region)})
    done = builder("prune", "saleor-api", "--keep", "0", "--min-age", "0", "--yes", "--json")
    assert done.code == 0, done.err
    assert world.ami(both, OTHER_REGION) in done.json["deleted"]
    assert world.ami(both) not in done.json["deleted"]
    world.ec2_other.deregister_image(ImageId=world.ami(other, OTHER_REGION))

    rows = {r["version"]: r for r in builder("release", "list", "saleor-api",
                                             "--json").json["images"]}
    assert rows["1.0.0"]["gone_regions"] == [OTHER_REGION] and not rows["1.0.0"]["pruned"]
    assert rows["1.1.0"]["gone_regions"] == [OTHER_REGION] and not rows["1.1.0"]["pruned"]
    human = builder("release", "list", "saleor-api").out
    assert human.count(f"gone in {OTHER_REGION}") == 2, human


# --------------------------------------------------------------------------- discovery


def test_discovery_by_tags(world):
    _, subnet = world.network()

    def launch(count, cluster, role):
        tags = [{"Key": "builder:cluster", "Value": cluster},
                {"Key": "builder:role", "Value": role}]
        found = world.ec2.run_instances(
            ImageId=world.base_ami, MinCount=count, MaxCount=count, SubnetId=subnet,
            TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])["Instances"]
        return {i["InstanceId"]: i["PrivateIpAddress"] for i in found}

    members = launch(3, "shop", "etcd-patroni")
    launch(1, "shop", "haproxy")
    launch(1, "other", "etcd-patroni")
    stopped = launch(1, "shop", "etcd-patroni")
    world.ec2.stop_instances(InstanceIds=list(stopped))

    expected = [{"name": i, "address": a} for i, a in sorted(members.items())]
    assert aws_tags.peers("shop", "etcd-patroni", client=world.ec2) == expected
    # Without a client: boto3's own resolution (region argument, AWS_ENDPOINT_URL).
    assert aws_tags.peers("shop", "etcd-patroni", region=REGION) == expected
    assert aws_tags.peers("nope", "etcd-patroni", client=world.ec2) == []


# --------------------------------------------------------------------------- bad input


def test_bad_input_is_one_line_exit_2_and_changes_nothing(world, builder):
    good = world.bake("saleor-api", "1.0.0")
    world.bake("saleor-api", "1.1.0", tests_passed=False)
    world.group("api", "saleor-api", world.ami(good))
    builder("release", "promote", "saleor-api", "1.0.0", "--channel", "dev")
    before = world.snapshot()

    cases = [
        (("release", "promote", "saleor-api", "ami-0123456789abcdef0", "--channel", "dev"),
         "VERSION", "unknown AMI"),
        (("release", "promote", "saleor-api", "9.9.9", "--channel", "dev"), "VERSION",
         "no aws image"),
        (("release", "promote", "saleor-api", "1.0.0", "--channel", "qa"), "--channel",
         "unknown channel"),
        (("release", "promote", "saleor-api", "1.1.0", "--channel", "dev"), "VERSION",
         "did not pass"),
        (("release", "promote", "saleor-api", "1.0.0", "--channel", "prod"), "--channel",
         "has not been on 'staging'"),
        (("release", "promote", "no-such-role", "1.0.0", "--channel", "dev"), "ROLE",
         "unknown role"),
        (("release", "promote", "redis", "1.0.0", "--channel", "dev"), "VERSION",
         "no aws image of redis"),
        (("release", "show", "saleor-api", "#999"), "VERSION", "no registry entry"),
        (("release", "revoke", "saleor-api", "ami-0123456789abcdef0", "--reason", "x"),
         "VERSION", "unknown AMI"),
        (("release", "rollback", "saleor-api", "--channel", "staging"), "--channel",
         "nothing on channel"),
        (("rollout", "saleor-api", "--channel", "dev", "--asg", "missing"), "--asg",
         "no Auto Scaling group 'missing'"),
        (("rollout", "saleor-api", "--channel", "staging", "--asg", "api"), "--channel",
         "no image on channel 'staging'"),
        (("rollout", "saleor-api", "--channel", "nope", "--asg", "api"), "--channel",
         "unknown channel"),
        (("rollout", "haproxy", "--channel", "dev", "--asg", "api"), "--channel",
         "no image on channel"),
        (("rollout", "saleor-api", "--asg", "api"), "--channel", "required"),
        (("rollout", "saleor-api", "--asg", "api", "--rollback"), "--asg",
         "not made by a blue-green"),
        (("rollout", "saleor-api", "--channel", "dev", "--asg", "api", "--checkpoints",
          "0,500"), "--checkpoints", "1..100"),
        # A refresh ends at its last checkpoint: 50 would leave half the group behind.
        (("rollout", "saleor-api", "--channel", "dev", "--asg", "api", "--checkpoints",
          "50"), "--checkpoints", "last checkpoint must be 100"),
        (("prune", "no-such-role"), "ROLE", "unknown role"),
    ]
    for args, field, text in cases:
        res = builder(*args)
        assert res.code == 2, (args, res.err)
        assert res.error.startswith(f"builder: error: {field}"), (args, res.error)
        assert text in res.error, (args, res.error)
        assert res.out == "", (args, res.out)
    # The installed script behaves the same for a user.
    res = run_script(world, "release", "promote", "saleor-api", "ami-0123456789abcdef0",
                     "--channel", "dev")
    assert res.code == 2 and res.err.strip().splitlines() == [res.error]
    assert res.error.startswith("builder: error: VERSION: unknown AMI")
    assert world.snapshot() == before

    # A channel pointing at another role's image (registry, or only the AMI's tag), or at
    # an AMI of no known role: refused before anything changes.
    redis = world.bake("redis", "1.0.0")
    stranger = world.ec2.register_image(Name="someone-elses")["ImageId"]
    tagged = world.ec2.register_image(Name="tagged-redis")["ImageId"]
    world.ec2.create_tags(Resources=[tagged], Tags=[{"Key": "builder:role", "Value": "redis"},
                                                    {"Key": "builder:tests-passed",
                                                     "Value": "true"}])
    for ami, text in ((world.ami(redis), "an image of redis"), (tagged, "an image of redis"),
                      (stranger, "not a known image of saleor-api")):
        world.ssm.put_parameter(Name="/builder/test/saleor-api/dev", Type="String",
                                DataType="aws:ec2:image", Value=ami, Overwrite=True)
        before = world.snapshot()
        res = builder("rollout", "saleor-api", "--channel", "dev", "--asg", "api")
        assert res.code == 2 and res.error.startswith("builder: error: --channel"), res.err
        assert text in res.error and ami in res.error, res.error
        assert world.snapshot() == before

    # A channel pointing at an AMI that no longer exists in AWS.
    world.ssm.put_parameter(Name="/builder/test/saleor-api/staging", Type="String",
                            DataType="aws:ec2:image", Value="ami-0123456789abcdef0")
    res = builder("rollout", "saleor-api", "--channel", "staging", "--asg", "api")
    assert res.code == 2 and "ami-0123456789abcdef0 does not exist" in res.error


# --------------------------------------------------------------------------- bad endpoints


def _lifecycle_commands(world, builder) -> list[tuple[str, ...]]:
    """A role with a channel, a group and a blue-green pair to act on."""
    world.bake("saleor-api", "1.0.0")
    v2 = world.bake("saleor-api", "1.1.0")
    world.group("api", "saleor-api", world.ami(v2))
    assert builder("release", "promote", "saleor-api", "1.0.0", "--channel", "dev").code == 0
    assert builder("release", "promote", "saleor-api", "1.1.0", "--channel", "dev").code == 0
    return [("release", "promote", "saleor-api", "1.1.0", "--channel", "staging"),
            ("release", "rollback", "saleor-api", "--channel", "dev"),
            ("release", "revoke", "saleor-api", "1.1.0", "--reason", "x"),
            ("rollout", "saleor-api", "--channel", "dev", "--asg", "api"),
            ("rollout", "saleor-api", "--channel", "dev", "--asg", "api", "--strategy",
             "blue-green"),
            ("rollout", "saleor-api", "--asg", "api", "--rollback"),
            ("prune", "saleor-api", "--yes"),
            ("release", "list")]


@pytest.mark.parametrize("mode", ["unreachable", "garbage", "html-500", "close"])
def test_a_bad_endpoint_is_one_line_exit_1_and_changes_nothing(world, builder, monkeypatch,
                                                               mode):
    commands = _lifecycle_commands(world, builder)
    before = world.snapshot()
    bad = None if mode == "unreachable" else BadEndpoint(mode)
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", closed_port() if bad is None else bad.url)
        # The standard variable, honoured: two attempts keep the test short.
        monkeypatch.setenv("AWS_MAX_ATTEMPTS", "2")
        for args in commands:
            res = builder(*args)
            assert res.code == 1, (args, res.err)
            assert res.error.startswith("builder: failed: "), (args, res.err)
            assert "Traceback" not in res.err and res.out == "", (args, res.err)
    finally:
        if bad is not None:
            bad.close()
    assert world.snapshot() == before


def test_a_silent_endpoint_times_out_in_one_line(world):
    from builder.errors import OperationError
    from builder.release.awsclient import calling

    bad = BadEndpoint("silent")
    try:
        ssm = boto3.client("ssm", region_name=REGION, endpoint_url=bad.url, config=Config(
            read_timeout=0.3, retries={"total_max_attempts": 1}))
        with pytest.raises(OperationError) as err, calling("reading SSM parameter /x"):
            ssm.get_parameter(Name="/x")
    finally:
        bad.close()
    assert str(err.value).startswith("reading SSM parameter /x: Read timeout")
    assert "\n" not in str(err.value)


def test_bad_max_attempts_names_the_variable(world, builder, monkeypatch):
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "many")
    res = builder("release", "rollback", "saleor-api", "--channel", "dev")
    assert res.code == 2 and res.error.startswith("builder: error: AWS_MAX_ATTEMPTS")


def test_invalid_regions_are_refused_at_load(world, builder):
    for field, text in (("region", '"eu west 1"'), ("ami_regions", '["us-east-1", "x y"]')):
        world.env_file.write_text(ENV_YAML.replace(
            f"  ami_regions: [{REGION}, {OTHER_REGION}]\n", "").replace(
            f"  region: {REGION}\n", "") + f"  {field}: {text}\n")
        res = builder("release", "promote", "saleor-api", "1.0.0", "--channel", "dev")
        assert res.code == 2, res.err
        assert f"aws.{field}" in res.error and "region" in res.error, res.error


# --------------------------------------------------------------------------- the stand-in


def test_refresh_standin_enforces_the_documented_rules(world, standin):
    """The stand-in refuses what AWS refuses, so builder's tests fail where AWS would."""
    # Without botocore's own range checks, so the stand-in's are seen too.
    asg = boto3.client("autoscaling", region_name=REGION, endpoint_url=standin.url,
                       config=Config(retries={"mode": "standard", "max_attempts": 1},
                                     parameter_validation=False))
    old = world.ec2.register_image(Name="old-image")["ImageId"]
    new = world.ec2.register_image(Name="new-image")["ImageId"]
    lt = world.group("g", "saleor-api", old, size=4)
    world.ec2.create_launch_template_version(LaunchTemplateId=lt, SourceVersion="1",
                                             LaunchTemplateData={"ImageId": new})
    desired = {"LaunchTemplate": {"LaunchTemplateId": lt, "Version": "2"}}

    def start(**prefs):
        return asg.start_instance_refresh(AutoScalingGroupName="g",
                                          DesiredConfiguration=desired, Preferences=prefs)

    def refused(code, **prefs):
        with pytest.raises(asg.exceptions.ClientError) as err:
            start(**prefs)
        assert err.value.response["Error"]["Code"] == code, err.value.response

    for bad in ({"CheckpointPercentages": [50, 20]}, {"CheckpointPercentages": [50, 50]},
                {"CheckpointPercentages": [0, 100]}, {"CheckpointDelay": 10},
                {"MaxHealthyPercentage": 150}, {"MinHealthyPercentage": 50,
                                                "MaxHealthyPercentage": 99},
                {"MinHealthyPercentage": 50, "MaxHealthyPercentage": 160},
                # The group is on $Latest: nothing fixed to return to.
                {"AutoRollback": True}):
        refused("ValidationError", **bad)
    assert standin.refreshes == []

    world.asg.update_auto_scaling_group(AutoScalingGroupName="g", LaunchTemplate={
        "LaunchTemplateId": lt, "Version": "1"})
    first = start(AutoRollback=True, MinHealthyPercentage=50, CheckpointPercentages=[50])
    refused("InstanceRefreshInProgress", MinHealthyPercentage=50)

    def poll():
        return asg.describe_instance_refreshes(AutoScalingGroupName="g")["InstanceRefreshes"][0]

    done = poll()
    # A refresh ends at its last checkpoint: half the group stays on the old image.
    assert done["Status"] == "Successful" and done["PercentageComplete"] == 50
    assert done["InstanceRefreshId"] == first["InstanceRefreshId"]
    assert sorted(world.instance_images("g")) == sorted({old, new})
    assert world.describe_group("g")["LaunchTemplate"]["Version"] == "2"

    # A failing refresh with AutoRollback returns to the group's configuration before it.
    world.ec2.create_launch_template_version(LaunchTemplateId=lt, SourceVersion="1",
                                             LaunchTemplateData={"ImageId": old})
    standin.unhealthy_images.add(new)
    before = world.instance_images("g")
    world.asg.update_auto_scaling_group(AutoScalingGroupName="g", LaunchTemplate={
        "LaunchTemplateId": lt, "Version": "3"})
    start(AutoRollback=True, MinHealthyPercentage=50, SkipMatching=True)
    assert poll()["Status"] == "RollbackInProgress"
    assert poll()["Status"] == "RollbackSuccessful"
    # The instances this refresh replaced are replaced back; earlier ones stay.
    assert world.instance_images("g") == before
    assert world.describe_group("g")["LaunchTemplate"]["Version"] == "3"
    with pytest.raises(asg.exceptions.ClientError) as err:
        asg.cancel_instance_refresh(AutoScalingGroupName="g")
    assert err.value.response["Error"]["Code"] == "ActiveInstanceRefreshNotFound"
