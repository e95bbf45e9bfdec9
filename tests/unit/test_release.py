"""Release pieces that need no AWS: manifests, refresh preferences, channel stacks, clients."""

from __future__ import annotations

import json

import pytest

from builder.bake.targets import aws as aws_target
from builder.errors import UserError
from builder.registry import Artifact, Registry, image_ids
from builder.release import rollout
from builder.release.awsclient import RETRIES, Aws
from builder.spec import AwsEnvironment


def test_image_ids_parses_packer_artifact_ids():
    assert image_ids("us-east-1:ami-1,eu-west-1:ami-2") == {"us-east-1": "ami-1",
                                                            "eu-west-1": "ami-2"}
    assert image_ids("/var/lib/images/redis") == {}


def test_manifest_takes_the_last_run(tmp_path):
    path = tmp_path / "manifest.json"
    build = {"artifact_id": "us-east-1:ami-old", "packer_run_uuid": "a", "custom_data": {
        "role": "redis", "version": "1.0.0", "content_key": "k1", "git_sha": "s"}}
    newer = {**build, "artifact_id": "us-east-1:ami-new,eu-west-1:ami-new2",
             "packer_run_uuid": "b"}
    path.write_text(json.dumps({"builds": [build, newer], "last_run_uuid": "b"}))
    meta = aws_target.read_manifest(path)
    assert meta["images"] == {"us-east-1": "ami-new", "eu-west-1": "ami-new2"}
    assert meta["role"] == "redis" and meta["content_key"] == "k1"


@pytest.mark.parametrize("text,field", [
    ("{", None),
    ('{"builds": []}', "builds"),
    ('{"builds": [{"artifact_id": "ami-1", "custom_data": {}}]}', "builds[0].artifact_id"),
])
def test_manifest_errors(tmp_path, text, field):
    path = tmp_path / "manifest.json"
    path.write_text(text)
    with pytest.raises(UserError) as err:
        aws_target.read_manifest(path)
    assert err.value.field == field


def test_stateful_roles_refresh_one_node_at_a_time():
    opts = rollout.Options(checkpoints=[25, 100])
    prefs = rollout.refresh_preferences("etcd-patroni", 5, opts)
    assert prefs["MinHealthyPercentage"] == 100
    assert prefs["CheckpointPercentages"] == [20, 40, 60, 80, 100]
    assert prefs["AutoRollback"] is True
    stateless = rollout.refresh_preferences("saleor-api", 5, opts)
    assert stateless["MinHealthyPercentage"] == 90
    assert stateless["CheckpointPercentages"] == [25, 100]
    assert "InstanceWarmup" not in stateless
    # The default replaces every instance; no checkpoints means no CheckpointDelay either.
    default = rollout.refresh_preferences("saleor-api", 5, rollout.Options())
    assert default["CheckpointPercentages"][-1] == 100 and default["CheckpointDelay"] == 300
    none = rollout.refresh_preferences("saleor-api", 5, rollout.Options(checkpoints=[]))
    assert "CheckpointPercentages" not in none and "CheckpointDelay" not in none
    tuned = rollout.refresh_preferences("saleor-api", 5, rollout.Options(min_healthy=50,
                                                                         warmup=30))
    assert tuned["MinHealthyPercentage"] == 50 and tuned["InstanceWarmup"] == 30


@pytest.mark.parametrize("text,points", [("50,100", [50, 100]), ("100", [100]),
                                         ("100,25", [25, 100]), ("", [])])
def test_checkpoints_end_at_100(text, points):
    assert rollout.parse_checkpoints(text) == points


@pytest.mark.parametrize("text,message", [("50", "last checkpoint must be 100"),
                                          ("25,75", "leave 25%"), ("0,100", "1..100"),
                                          ("x", "expected percentages")])
def test_checkpoints_refused(text, message):
    with pytest.raises(UserError, match=message) as err:
        rollout.parse_checkpoints(text)
    assert err.value.field == "--checkpoints"


def test_clients_use_standard_retries_and_the_endpoint_variable(monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    aws = Aws(AwsEnvironment(region="eu-west-1"))
    ssm = aws.ssm()
    assert ssm.meta.region_name == "eu-west-1"
    assert ssm.meta.endpoint_url == "http://127.0.0.1:9"
    assert ssm.meta.config.retries["mode"] == RETRIES["mode"] == "standard"
    assert aws.ssm() is ssm and aws.ssm("us-east-1") is not ssm
    once = aws.autoscaling(attempts=1)
    assert once.meta.config.retries["total_max_attempts"] == 1
    assert once is not aws.autoscaling() and aws.autoscaling(attempts=1) is once


def test_registry_lineage_revocation_and_channels(tmp_path):
    reg = Registry(tmp_path / "registry.db")

    def add(version, base):
        return reg.record(Artifact(role="redis", version=version, target="aws",
                                   content_key=version, artifact=f"us-east-1:ami-{version}",
                                   base=base, git_sha="s", packer_version="1.6.6",
                                   tests_passed=True, tests={}, timings={}))

    a, b, c = add("a", "debian"), add("b", "ami-a"), add("c", "ami-b")
    reg.set_parent(b.id, a.id)
    reg.set_parent(c.id, b.id)
    assert reg.descendants(a.id) == [b.id, c.id]
    assert reg.find_image("ami-b").id == b.id and reg.find_image("ami-") is None
    assert reg.revoke(b.id, "bad") == [b.id, c.id]
    assert reg.revoke(b.id, "again") == []
    assert not reg.get(a.id).revoked and reg.get(c.id).revoked
    assert reg.revocation(c.id)["inherited_from"] == b.id
    assert reg.set_channel("redis", "aws", "dev", a.id, "promote") is None
    assert reg.set_channel("redis", "aws", "dev", b.id, "promote") == a.id
    assert [h["action"] for h in reg.channel_history("redis", "aws", "dev")] == [
        "promote", "promote"]
    assert reg.channel("redis", "aws", "dev") == b.id
