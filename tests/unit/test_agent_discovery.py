"""Peer discovery of the node agent: the static list of a local cluster and EC2 tags,
behind the one call `discover(config, roles)`."""

from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from builder.agent.config import NodeConfig
from builder.agent.discovery import discover, static
from builder.agent.errors import AgentError


def node_config(discovery: dict, role: str = "etcd-patroni", nodes=None) -> NodeConfig:
    return NodeConfig(cluster="shop", environment="test", role=role, cidr="10.30.0.0/24",
                      discovery=discovery, secrets={}, nodes=nodes or {})


def test_static_peers_are_sorted_and_roles_without_peers_are_empty():
    table = {"etcd-patroni": [{"name": "db-2", "address": "10.30.0.13"},
                              {"name": "db-0", "address": "10.30.0.11"}]}
    found = discover(node_config({"method": "static", "peers": table}),
                     ["etcd-patroni", "saleor-api"])
    assert found == {"etcd-patroni": [{"name": "db-0", "address": "10.30.0.11"},
                                      {"name": "db-2", "address": "10.30.0.13"}],
                     "saleor-api": []}


@pytest.mark.parametrize(("entries", "message"), [
    ([{"name": "db-0"}], r"discovery.peers.etcd-patroni\[0\] .*needs a name and an address"),
    ([{"name": "a", "address": "x"}, {"name": "a", "address": "y"}], "repeats a name"),
    ({"name": "a"}, "must be a list"),
])
def test_static_peer_errors_name_the_entry(entries, message):
    with pytest.raises(AgentError, match=message):
        static.peers("shop", "etcd-patroni", table={"etcd-patroni": entries})


def _launch(ec2, count: int, role: str, cluster: str = "shop") -> list[str]:
    image = "ami-12c6146b"  # one of the images moto knows
    tags = [{"Key": "builder:cluster", "Value": cluster}, {"Key": "builder:role", "Value": role}]
    made = ec2.run_instances(ImageId=image, MinCount=count, MaxCount=count,
                             TagSpecifications=[{"ResourceType": "instance", "Tags": tags}])
    return [i["InstanceId"] for i in made["Instances"]]


@mock_aws
def test_tags_find_running_instances_of_the_cluster_and_role():
    ec2 = boto3.client("ec2", region_name="eu-central-1")
    db = _launch(ec2, 3, "etcd-patroni")
    _launch(ec2, 1, "etcd-patroni", cluster="other")
    _launch(ec2, 2, "saleor-api")
    cfg = node_config({"method": "aws-tags", "tag_key": "builder:cluster",
                       "region": "eu-central-1"}, nodes={"etcd-patroni": 3})
    found = discover(cfg, ["etcd-patroni"])
    assert [p["name"] for p in found["etcd-patroni"]] == sorted(db)
    assert all(p["address"] for p in found["etcd-patroni"])


@mock_aws
def test_tags_wait_for_the_environment_count_then_fail_naming_it():
    ec2 = boto3.client("ec2", region_name="eu-central-1")
    _launch(ec2, 2, "etcd-patroni")
    cfg = node_config({"method": "aws-tags", "region": "eu-central-1"},
                      nodes={"etcd-patroni": 3})
    with pytest.raises(AgentError, match="discovery: 2 of 3 etcd-patroni peers of cluster shop"):
        discover(cfg, ["etcd-patroni"], timeout=0.2, interval=0.1)


@mock_aws
def test_tags_do_not_wait_for_the_own_role_when_it_is_not_a_peer_role():
    """HAProxy asks for the database and API nodes, not for other HAProxies: the
    environment's haproxy count must not hold its boot until the timeout."""
    ec2 = boto3.client("ec2", region_name="eu-central-1")
    db = _launch(ec2, 3, "etcd-patroni")
    cfg = node_config({"method": "aws-tags", "region": "eu-central-1"},
                      nodes={"etcd-patroni": 3, "haproxy": 2}, role="haproxy")
    found = discover(cfg, ["etcd-patroni", "saleor-api"], timeout=0.2, interval=0.1)
    assert [p["name"] for p in found["etcd-patroni"]] == sorted(db)
    assert found["saleor-api"] == []
