"""The AWS lifecycle watcher (builder/agent/lifecycle.py) against an IMDSv2 stand-in on
127.0.0.1 (imds_standin.py) and moto's server behind the stand-in for what moto lacks
(CompleteLifecycleAction: tests/integration/refresh_standin.py); the leave itself against
the Patroni stand-in and the real etcd members of test_agent_leave.py."""

from __future__ import annotations

import json
import socket

import boto3
import pytest
import yaml

from builder.agent import leave, lifecycle
from builder.agent.__main__ import main as agent_main
from builder.agent.metadata import ec2
from builder.agent.paths import Root
from builder.agent.roles import etcd_patroni

from .imds_standin import IMDSStandIn
from .test_agent_etcd import etcds as etcds  # noqa: F401 (fixtures, used by name)
from .test_agent_etcd import needs_etcd
from .test_agent_etcd import three as three  # noqa: F401
from .test_agent_leave import LOGIN
from .test_agent_leave import patroni_cluster as patroni_cluster  # noqa: F401

REGION = "us-east-1"
STATE = lifecycle.STATE


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def imds():
    made: list[IMDSStandIn] = []

    def make(instance_id: str = "i-0123456789abcdef0", state: str | None = "InService",
             tags: dict | None = None) -> IMDSStandIn:
        metadata = {"instance-id": instance_id, "local-hostname": "ip-10-0-1-5",
                    "local-ipv4": "10.0.1.5", "placement/region": REGION}
        if state is not None:
            metadata[STATE] = state
        made.append(IMDSStandIn(metadata, tags))
        return made[-1]
    yield make
    for server in made:
        server.close()


def in_group(count: int = 1) -> tuple[str, list[str]]:
    """An Auto Scaling group in moto (aws_sandbox) with the hook `builder rollout` puts:
    (its name, its instances)."""
    asg = boto3.client("autoscaling", region_name=REGION)
    ec2_api = boto3.client("ec2", region_name=REGION)
    lt = ec2_api.create_launch_template(LaunchTemplateName="db-lt", LaunchTemplateData={
        "ImageId": "ami-12c6146b", "InstanceType": "t3.small"})["LaunchTemplate"]
    asg.create_auto_scaling_group(
        AutoScalingGroupName="db", MinSize=count, MaxSize=count, DesiredCapacity=count,
        AvailabilityZones=[f"{REGION}a"],
        LaunchTemplate={"LaunchTemplateId": lt["LaunchTemplateId"], "Version": "1"})
    asg.put_lifecycle_hook(AutoScalingGroupName="db", LifecycleHookName=lifecycle.HOOK,
                           LifecycleTransition="autoscaling:EC2_INSTANCE_TERMINATING",
                           HeartbeatTimeout=300, DefaultResult="CONTINUE")
    group = asg.describe_auto_scaling_groups(AutoScalingGroupNames=["db"])
    return "db", [i["InstanceId"] for i in group["AutoScalingGroups"][0]["Instances"]]


# --------------------------------------------------------------------------- IMDS


def test_every_read_carries_a_token_and_an_expired_one_is_renewed(imds):
    server = imds()
    client = ec2.IMDS(server.url)
    assert client.get(STATE) == "InService"
    server.expire_tokens()  # a watcher outlives the token's TTL
    assert client.get(STATE) == "InService"
    assert [r for r in server.requests if r[0] == "PUT"] == [("PUT", "/latest/api/token")] * 2
    assert client.get("no/such/path") is None


def test_the_watch_logs_each_state_once_and_stops_at_terminated(imds):
    server = imds(state="InService")
    script = [lambda: None, lambda: server.set(STATE, None),
              lambda: server.set(STATE, "Terminated")]
    lines: list[str] = []
    found = lifecycle.wait_for_termination(ec2.IMDS(server.url), log=lines.append,
                                           sleep=lambda _: script.pop(0)())
    assert found and script == []
    assert lines == ["target-lifecycle-state InService",
                     "target-lifecycle-state none (in no Auto Scaling group)",
                     "target-lifecycle-state Terminated"]


def test_an_unreachable_imds_is_one_line_and_the_watch_goes_on():
    lines: list[str] = []
    unreachable = ec2.IMDS(f"http://127.0.0.1:{closed_port()}", timeout=1)
    assert not lifecycle.wait_for_termination(unreachable, log=lines.append, rounds=3,
                                              sleep=lambda _: None)
    assert len(lines) == 1 and "\n" not in lines[0], lines
    assert lines[0].startswith("target-lifecycle-state unknown: IMDS unreachable ("), lines


def test_the_interval_is_bounded():
    assert [lifecycle.bounded(s) for s in (0, 5, 3600)] == [1.0, 5.0, 60.0]


def test_the_hook_name_comes_from_the_node_settings(tmp_path):
    root = Root(tmp_path)
    assert lifecycle.hook_name(root) == "builder-graceful-leave"  # no node.yaml: the default
    root("/etc/builder").mkdir(parents=True)
    root("/etc/builder/node.yaml").write_text(yaml.safe_dump({
        "cluster": "shop", "environment": "prod", "role": "etcd-patroni",
        "network": {"cidr": "10.0.0.0/16"}, "discovery": {"method": "aws-tags"},
        "settings": {"lifecycle_hook": "drain-db"}}))
    assert lifecycle.hook_name(root) == "drain-db"


# --------------------------------------------------------------------------- completing


def test_completing_continues_the_termination(imds, aws_sandbox):
    group, (instance,) = in_group()
    server = imds(instance, state="Terminated")  # no tags in the metadata: the API says
    assert aws_sandbox.hold_for_termination(REGION, group, instance) == [lifecycle.HOOK]
    line = lifecycle.complete(ec2.IMDS(server.url), lifecycle.HOOK)
    assert line == (f"completed: CONTINUE (hook {lifecycle.HOOK}, group {group}, "
                    f"instance {instance})")
    assert aws_sandbox.completed == [{"LifecycleHookName": lifecycle.HOOK,
                                      "AutoScalingGroupName": group, "InstanceId": instance,
                                      "LifecycleActionResult": "CONTINUE"}]
    assert not aws_sandbox.waiting(instance)
    # Terminated now, the instance is in no group the API knows.
    assert lifecycle.complete(ec2.IMDS(server.url), lifecycle.HOOK) == \
        f"not completed: {instance} is in no Auto Scaling group"


def test_the_group_tag_in_the_metadata_spares_the_api_lookup(imds, aws_sandbox):
    group, (instance,) = in_group()
    server = imds(instance, state="Terminated", tags={lifecycle.GROUP_TAG: group})
    aws_sandbox.hold_for_termination(REGION, group, instance)
    refused = (f"not completed (hook {{}}, group {group}, instance {instance}): "
               f"ValidationError: No active Lifecycle Action found with instance ID {instance}")
    assert lifecycle.complete(ec2.IMDS(server.url), "other-hook") == \
        refused.format("other-hook")
    assert aws_sandbox.waiting(instance)  # the wrong hook completed nothing
    assert lifecycle.complete(ec2.IMDS(server.url), lifecycle.HOOK).startswith("completed")
    # AWS refuses a second completion (no action is pending any more).
    assert lifecycle.complete(ec2.IMDS(server.url), lifecycle.HOOK) == \
        refused.format(lifecycle.HOOK)


def test_no_identity_is_one_line(imds):
    server = imds()
    server.set("instance-id", None)
    assert lifecycle.complete(ec2.IMDS(server.url), lifecycle.HOOK) == \
        "not completed: IMDS gave no instance identity"


# --------------------------------------------------------------------------- the whole watch


@needs_etcd
def test_terminated_leaves_records_completes_and_the_power_off_finds_nothing_to_do(
        imds, aws_sandbox, patroni_cluster, three, tmp_path):  # noqa: F811
    group, (instance,) = in_group()
    aws_sandbox.hold_for_termination(REGION, group, instance)
    server = imds(instance, state="Terminated")
    cluster = patroni_cluster(leader="db-0")
    data = tmp_path / "db-0"  # where the etcd fixture keeps db-0's data
    root = Root(tmp_path / "root")

    def leave_db0(root, for_good):
        # leave_cluster's own call, with this test's Patroni and etcd instead of the
        # node's configs (its etcd listens on 127.0.0.1:2379, which a test cannot own).
        report = leave.leave("db-0", leave.Patroni(cluster.url("db-0"), *LOGIN), three["db-0"],
                             etcd_data=data, for_good=for_good)
        etcd_patroni.record_leave(root, report)
        return report

    lines: list[str] = []
    report = lifecycle.watch(root, imds=ec2.IMDS(server.url), log=lines.append, rounds=1,
                             leave=leave_db0)
    assert report["switchover"] == "done" and report["candidate"] == "db-2", report
    assert report["etcd"] == "removed", report
    assert report["trigger"] == "lifecycle"
    assert report["lifecycle_action"].startswith("completed: CONTINUE"), report
    assert json.loads(root(leave.REPORT).read_text()) == report
    assert lines[-1] == f"lifecycle action {report['lifecycle_action']}"
    assert not aws_sandbox.waiting(instance)

    # The power-off that follows (builder-graceful-leave's ExecStop) changes nothing: no
    # switchover, and no question to the local etcd, which a removed member stops.
    again = leave.leave("db-0", leave.Patroni(cluster.url("db-0"), *LOGIN), three["db-0"],
                        etcd_data=data, for_good=lambda: True)
    assert again["primary"] is False, again
    assert again["etcd"] == "not a member: left before (no local data)", again
    assert cluster.switchovers == [{"leader": "db-0", "candidate": "db-2"}]
    assert sorted(m.name for m in three["db-1"].members()) == ["db-1", "db-2"]


def test_a_failed_leave_and_an_unknown_group_are_lines_in_the_report(imds, aws_sandbox,
                                                                     tmp_path, capsys,
                                                                     monkeypatch):
    server = imds("i-00000000000000000", state="Terminated")  # in no group moto knows
    monkeypatch.setattr(ec2, "ENDPOINT", server.url)
    root = Root(tmp_path / "root")
    assert agent_main(["lifecycle-watch", "--root", str(root.root), "--interval", "1"]) == 0
    out = capsys.readouterr().out
    report = json.loads(out[out.index("{"):])
    assert out.startswith("lifecycle: target-lifecycle-state Terminated\n"), out
    # No configs from a boot: the leave could not start, and says so in one line.
    assert report["left"] is False and report["error"].startswith("FileNotFoundError: ")
    assert report["lifecycle_action"] == ("not completed: i-00000000000000000 is in no "
                                          "Auto Scaling group"), report
    assert json.loads(root(leave.REPORT).read_text()) == report
