"""Deregister a role's AMIs that nothing uses, with their snapshots. Dry run unless told.

Kept, with the reason printed: anything a launch-template version that can still launch
instances, a launch configuration, an instance (running or stopped) or a channel references,
the newest --keep, and anything younger than --min-age days.

A launch-template version can still launch instances when it is its template's $Default or
$Latest, or a group or an in-progress instance refresh names it (by number or through
$Default/$Latest). Older versions are history: counting them kept every AMI ever rolled out
forever. Prune does not delete those old versions: a template's versions are its owner's
record (often managed by Terraform or CloudFormation, which track them), and one naming a
deregistered AMI harms nothing until someone points a group at it; the plan names them
("stale_template_versions") so their owner can delete them.
"""

from __future__ import annotations

import datetime as dt

from builder.errors import OperationError
from builder.progress import Progress
from builder.release import images
from builder.release.awsclient import calling, read_parameter
from builder.release.context import TARGET, Context
from builder.release.rollout import REFRESH_ACTIVE
from builder.release.templates import launch_template_spec

LIVE_STATES = ["pending", "running", "stopping", "stopped", "shutting-down"]


def _pages(client, operation: str, key: str, **kwargs):
    with calling(f"{operation} in {client.meta.region_name}"):
        for page in client.get_paginator(operation).paginate(**kwargs):
            yield from page.get(key, [])


def _live_versions(ctx: Context, region: str, templates: list[dict]) -> dict:
    """(template id, version number) -> why it can still launch instances."""
    asg = ctx.aws.autoscaling(region)
    by_name = {t["LaunchTemplateName"]: t for t in templates}
    by_id = {t["LaunchTemplateId"]: t for t in templates}
    live: dict[tuple[str, int], list[str]] = {}

    def add(spec: dict, why: str) -> None:
        lt = by_id.get(spec.get("LaunchTemplateId")) or by_name.get(
            spec.get("LaunchTemplateName"))
        if lt is None:
            return
        version = str(spec.get("Version") or "$Default")
        number = (lt["LatestVersionNumber"] if version == "$Latest" else
                  lt["DefaultVersionNumber"] if version == "$Default" else int(version))
        live.setdefault((lt["LaunchTemplateId"], int(number)), []).append(why)

    for lt in templates:
        add({"LaunchTemplateId": lt["LaunchTemplateId"], "Version": "$Default"}, "$Default")
        add({"LaunchTemplateId": lt["LaunchTemplateId"], "Version": "$Latest"}, "$Latest")
    for group in _pages(asg, "describe_auto_scaling_groups", "AutoScalingGroups"):
        name = group["AutoScalingGroupName"]
        spec = launch_template_spec(group)
        if spec:
            add(spec, f"group {name}")
        with calling(f"describing the instance refreshes of {name} in {region}"):
            refreshes = asg.describe_instance_refreshes(
                AutoScalingGroupName=name)["InstanceRefreshes"]
        for refresh in refreshes:
            desired = (refresh.get("DesiredConfiguration") or {}).get("LaunchTemplate")
            if desired and refresh.get("Status") in REFRESH_ACTIVE:
                add(desired, f"instance refresh {refresh['InstanceRefreshId']} of {name}")
    return live


def references(ctx: Context, region: str, role: str) -> tuple[dict[str, list[str]],
                                                              dict[str, list[str]]]:
    """AMI id -> why it must stay, from everything in the region that can launch it; and
    AMI id -> the launch-template versions that name it but can no longer launch."""
    refs: dict[str, list[str]] = {}
    stale: dict[str, list[str]] = {}

    def add(image: str | None, why: str) -> None:
        if image:
            refs.setdefault(image, []).append(why)

    ec2, asg = ctx.aws.ec2(region), ctx.aws.autoscaling(region)
    templates = list(_pages(ec2, "describe_launch_templates", "LaunchTemplates"))
    live = _live_versions(ctx, region, templates)
    for lt in templates:
        for v in _pages(ec2, "describe_launch_template_versions", "LaunchTemplateVersions",
                        LaunchTemplateId=lt["LaunchTemplateId"]):
            image = v.get("LaunchTemplateData", {}).get("ImageId")
            number = int(v["VersionNumber"])
            name = f"{lt['LaunchTemplateName']} version {number}"
            through = ""
            if image and image.startswith("resolve:ssm:"):
                image = read_parameter(ctx.aws, region, image.removeprefix("resolve:ssm:"))
                through = " (through SSM)"
            whys = live.get((lt["LaunchTemplateId"], number))
            if whys:
                add(image, f"launch template {name}{through} ({', '.join(whys)})")
            elif image:
                stale.setdefault(image, []).append(f"{lt['LaunchTemplateName']}:{number}")
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
    return refs, stale


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
        refs, stale = references(ctx, region, role)
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
                "action": "keep" if why else "delete", "reasons": why,
                "stale_template_versions": stale.get(img["ImageId"], [])})
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
