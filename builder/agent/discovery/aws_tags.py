"""Peers from EC2 tags: running instances tagged with the cluster and the role.

The agent runs inside images on Debian's Python; boto3 (python3-boto3) is imported only
when this method is used, so images that discover statically do not need it. Credentials
come from the instance profile through IMDSv2, as botocore does by default.
"""

from __future__ import annotations

CLUSTER_TAG = "builder:cluster"
ROLE_TAG = "builder:role"


def peers(cluster: str, role: str, *, region: str | None = None,
          cluster_tag: str = CLUSTER_TAG, role_tag: str = ROLE_TAG, client=None) -> list[dict]:
    """[{name, address}] of running instances of `role` in `cluster`, sorted by name.

    The name is the instance id: unique and stable for the instance's life, which etcd
    member names must be (Name tags repeat across an Auto Scaling group).
    """
    if client is None:
        import boto3
        from botocore.config import Config

        client = boto3.client("ec2", region_name=region,
                              config=Config(retries={"mode": "standard", "max_attempts": 6}))
    filters = [{"Name": f"tag:{cluster_tag}", "Values": [cluster]},
               {"Name": f"tag:{role_tag}", "Values": [role]},
               {"Name": "instance-state-name", "Values": ["running"]}]
    found = []
    for page in client.get_paginator("describe_instances").paginate(Filters=filters):
        for reservation in page.get("Reservations", []):
            for inst in reservation.get("Instances", []):
                address = inst.get("PrivateIpAddress")
                if address:  # no address yet: not a peer anyone can reach
                    found.append({"name": inst["InstanceId"], "address": address})
    return sorted(found, key=lambda p: p["name"])
