"""Deregister a role's AMIs that nothing uses, with their snapshots. Dry run unless told.

Kept, with the reason printed: anything a launch-template version, a launch configuration,
an instance (running or stopped) or a channel references, the newest --keep, and anything
younger than --min-age days.
"""

from __future__ import annotations

import datetime as dt

from builder.errors import OperationError
from builder.progress import Progress
from builder.release import images
from builder.release.awsclient import calling, read_parameter
from builder.release.context import TARGET, Context

LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]


def _pages(client, operation: str, key: str, **kwargs):
    with calling(f"{operation} in {client.meta.region_name}"):
        for page in client.get_paginator(operation).paginate(**kwargs):
            yield from page.get(key, [])


def references(ctx: Context, region: str, role: str) -> dict[str, list[str]]:
    """AMI id -> why it must stay, from everything in the region that can launch it."""
    refs: dict[str, list[str]] = {}

    def add(image: str | None, why: str) -> None:
        if image:
            refs.setdefault(image, []).append(why)

    ec2, asg = ctx.aws.ec2(region), ctx.aws.autoscaling(region)
    for lt in _pages(ec2, "describe_launch_templates", "LaunchTemplates"):
        for v in _pages(ec2, "describe_launch_template_versions", "LaunchTemplateVersions",
                        LaunchTemplateId=lt["LaunchTemplateId"]):
            image = v.get("LaunchTemplateData", {}).get("ImageId")
            why = f"launch template {lt['LaunchTemplateName']} version {v['VersionNumber']}"
            if image and image.startswith("resolve:ssm:"):
                image = read_parameter(ctx.aws, region, image.removeprefix("resolve:ssm:"))
                why += " (through SSM)"
            add(image, why)
    configs = {c["LaunchConfigurationName"]: c.get("ImageId") for c in
               _pages(asg, "describe_launch_configurations", "LaunchConfigurations")}
    for group in _pages(asg, "describe_auto_scaling_groups", "AutoScalingGroups"):
        name = group.get("LaunchConfigurationName")
        if name:
            add(configs.get(name), f"launch configuration {name} of group "
                                   f"{group['AutoScalingGroupName']}")
    for config, image in configs.items():
        add(image, f"launch configuration {config}")
    for reservation in _pages(ec2, "describe_instances", "Reservations",
                              Filters=[{"Name": "instance-state-name", "Values": LIVE_STATES}]):
        for inst in reservation.get("Instances", []):
            add(inst.get("ImageId"), f"instance {inst['InstanceId']} "
                                     f"({inst.get('State', {}).get('Name', '?')})")
    for channel in ctx.channel_names:
        name = ctx.parameter(role, channel)
        add(read_parameter(ctx.aws, region, name), f"channel {channel} ({name})")
    for entry in ctx.registry.channels(role, TARGET):
        art = ctx.registry.get(entry["artifact_id"])
        if art is not None:
            add(images.regions_of(art).get(region), f"channel {entry['channel']} (registry)")
    return refs


def _age_days(created: str, now: dt.datetime) -> float:
    try:
        when = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return 0.0
    return (now - when).total_seconds() / 86400


def plan(ctx: Context, role: str, keep: int, min_age: float) -> dict:
    ctx.check_role(role)
    now = dt.datetime.now(dt.UTC)
    regions = list(dict.fromkeys([ctx.region, *ctx.env.aws.ami_regions]))
    decisions = []
    for region in regions:
        ec2 = ctx.aws.ec2(region)
        found = list(_pages(ec2, "describe_images", "Images", Owners=["self"],
                            Filters=[{"Name": "tag:builder:role", "Values": [role]}]))
        found.sort(key=lambda i: (i.get("CreationDate", ""), i["ImageId"]), reverse=True)
        refs = references(ctx, region, role)
        for rank, img in enumerate(found):
            why = list(refs.get(img["ImageId"], []))
            if rank < keep:
                why.append(f"one of the newest {keep}")
            age = _age_days(img.get("CreationDate", ""), now)
            if age < min_age:
                why.append(f"younger than {min_age:g} days ({age:.1f})")
            art = ctx.registry.find_image(img["ImageId"])
            decisions.append({
                "region": region, "image": img["ImageId"], "name": img.get("Name", ""),
                "created": img.get("CreationDate", ""), "age_days": round(age, 2),
                "version": art.version if art else next(
                    (t["Value"] for t in img.get("Tags", [])
                     if t["Key"] == "builder:version"), "?"),
                "artifact_id": art.id if art else None,
                "snapshots": images.snapshots_of(img),
                "action": "keep" if why else "delete", "reasons": why})
    return {"role": role, "regions": regions, "keep": keep, "min_age_days": min_age,
            "images": decisions}


def apply(ctx: Context, report: dict, progress: Progress) -> dict:
    deleted = []
    for d in report["images"]:
        if d["action"] != "delete":
            continue
        ec2 = ctx.aws.ec2(d["region"])
        with calling(f"deregistering {d['image']} in {d['region']}"):
            ec2.deregister_image(ImageId=d["image"])
        ctx.registry.mark_pruned(d["artifact_id"], d["image"], d["region"])
        failed = []
        for snap in d["snapshots"]:
            try:
                with calling(f"deleting snapshot {snap}"):
                    ec2.delete_snapshot(SnapshotId=snap)
            except OperationError as exc:
                failed.append(str(exc))
        progress.say(f"deleted {d['image']} ({d['region']}) and "
                     f"{len(d['snapshots']) - len(failed)} snapshot(s)")
        d["action"] = "deleted"
        deleted.append(d["image"])
        if failed:
            d["snapshot_errors"] = failed
    report["deleted"] = deleted
    errors = [e for d in report["images"] for e in d.get("snapshot_errors", [])]
    if errors:
        raise OperationError(f"deregistered {len(deleted)} image(s) but some snapshots "
                             f"remain: {'; '.join(errors)}")
    return report
