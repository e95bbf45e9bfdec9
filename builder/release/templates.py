"""The launch templates a rollout works on: which one a group names, the new version
pinned to a channel's AMI, pinning a group to a number, undoing both, and whether a group
already has its whole desired configuration."""

from __future__ import annotations

from builder.errors import OperationError, UserError
from builder.progress import Progress
from builder.release.awsclient import calling
from builder.release.context import Context
from builder.release.images import Image

# What every launch-template version builder makes has: IMDSv2 only, and tags readable from
# metadata (the node agent reads its role and cluster there).
REQUIRED_METADATA = {"HttpTokens": "required", "HttpEndpoint": "enabled",
                     "InstanceMetadataTags": "enabled"}
METADATA_KEYS = ("HttpTokens", "HttpPutResponseHopLimit", "HttpEndpoint", "HttpProtocolIpv6",
                 "InstanceMetadataTags")


def launch_template_spec(group: dict) -> dict | None:
    return group.get("LaunchTemplate") or (group.get("MixedInstancesPolicy") or {}).get(
        "LaunchTemplate", {}).get("LaunchTemplateSpecification")


def template_of(group: dict) -> dict:
    spec = launch_template_spec(group)
    if not spec:
        raise UserError(f"group {group['AutoScalingGroupName']!r} uses a launch configuration; "
                        f"builder rolls out launch templates only", field="--asg")
    return spec


def numeric_version(ctx: Context, spec: dict) -> int:
    version = str(spec.get("Version") or "$Default")
    if version.isdigit():
        return int(version)
    ec2 = ctx.aws.ec2()
    with calling(f"describing launch template {spec['LaunchTemplateId']}"):
        lt = ec2.describe_launch_templates(
            LaunchTemplateIds=[spec["LaunchTemplateId"]])["LaunchTemplates"][0]
    return int(lt["LatestVersionNumber"] if version == "$Latest" else lt["DefaultVersionNumber"])


def version_data(ctx: Context, template_id: str, version: int) -> dict:
    with calling(f"describing launch template {template_id} version {version}"):
        found = ctx.aws.ec2().describe_launch_template_versions(
            LaunchTemplateId=template_id, Versions=[str(version)])["LaunchTemplateVersions"]
    return found[0]["LaunchTemplateData"] if found else {}


def new_template_version(ctx: Context, template_id: str, source: int, image: Image,
                         note: str) -> int:
    """A copy of `source` with the channel's AMI and IMDSv2 required (tags readable from
    metadata, which the node agent uses)."""
    data = version_data(ctx, template_id, source)
    metadata = {k: v for k, v in (data.get("MetadataOptions") or {}).items()
                if k in METADATA_KEYS}
    metadata.update(REQUIRED_METADATA)
    metadata.setdefault("HttpPutResponseHopLimit", 1)
    with calling(f"creating a version of launch template {template_id}"):
        created = ctx.aws.ec2().create_launch_template_version(
            LaunchTemplateId=template_id, SourceVersion=str(source),
            VersionDescription=note[:255],
            LaunchTemplateData={"ImageId": image.image_id, "MetadataOptions": metadata})
        return int(created["LaunchTemplateVersion"]["VersionNumber"])


def pin(ctx: Context, group: dict, spec: dict, version: int) -> None:
    """Pin a group on $Latest/$Default to the number it runs now (no instance changes), so
    AutoRollback has a fixed configuration to return to."""
    if str(spec.get("Version", "")).isdigit():
        return
    with calling(f"pinning {group['AutoScalingGroupName']} to launch template version "
                 f"{version}"):
        ctx.aws.autoscaling().update_auto_scaling_group(
            AutoScalingGroupName=group["AutoScalingGroupName"],
            LaunchTemplate={"LaunchTemplateId": spec["LaunchTemplateId"],
                            "Version": str(version)})


def prepare(ctx: Context, group: dict, spec: dict, current: int, image: Image,
            note: str) -> int:
    """What both strategies start from: the group pinned to the number it runs (so it keeps
    launching that while the shared template gains a version), then the new version."""
    pin(ctx, group, spec, current)
    try:
        return new_template_version(ctx, spec["LaunchTemplateId"], current, image, note)
    except OperationError as exc:
        raise OperationError(f"{exc}; {undo(ctx, group, spec, None)}") from None


def undo(ctx: Context, group: dict, spec: dict, version: int | None) -> str:
    """Back to before the rollout: the group names the launch-template Version it named
    (pinning changed only $Latest/$Default) and the version this rollout made is deleted.
    Returns what was done, for the error line; what could not be undone is said too."""
    name = group["AutoScalingGroupName"]
    template = spec["LaunchTemplateId"]
    original = str(spec.get("Version") or "$Default")
    done, failed = [], []
    if not original.isdigit():
        try:
            with calling(f"restoring {name} to launch template version {original}"):
                ctx.aws.autoscaling().update_auto_scaling_group(
                    AutoScalingGroupName=name,
                    LaunchTemplate={"LaunchTemplateId": template, "Version": original})
            done.append(f"{name} back on {original}")
        except OperationError as exc:
            failed.append(str(exc))
    if version is not None:
        try:
            with calling(f"deleting launch template {template} version {version}"):
                answer = ctx.aws.ec2().delete_launch_template_versions(
                    LaunchTemplateId=template, Versions=[str(version)])
            for bad in answer.get("UnsuccessfullyDeletedLaunchTemplateVersions") or []:
                err = bad.get("ResponseError") or {}
                raise OperationError(f"deleting launch template {template} version "
                                     f"{version}: {err.get('Code')}: {err.get('Message')}")
            done.append(f"version {version} deleted")
        except OperationError as exc:
            failed.append(str(exc))
    text = "undone: " + (", ".join(done) or "nothing to undo")
    return text + (f"; NOT undone: {'; '.join(failed)}" if failed else "")


def up_to_date(ctx: Context, group: dict, spec: dict, version: int, image: Image) -> bool:
    """The group's whole desired configuration is in place: pinned to a version number that
    launches the image with the metadata options builder requires, and every instance it
    has runs the image. (A group on $Latest, or one allowing IMDSv1, gets a rollout.)"""
    if not str(spec.get("Version", "")).isdigit():
        return False
    data = version_data(ctx, spec["LaunchTemplateId"], version)
    metadata = data.get("MetadataOptions") or {}
    if data.get("ImageId") != image.image_id or any(
            metadata.get(k) != v for k, v in REQUIRED_METADATA.items()):
        return False
    ids = [i["InstanceId"] for i in group.get("Instances", [])]
    if not ids:
        return True
    with calling(f"describing the instances of {group['AutoScalingGroupName']}"):
        pages = ctx.aws.ec2().get_paginator("describe_instances").paginate(InstanceIds=ids)
        running = {inst["ImageId"] for page in pages for r in page["Reservations"]
                   for inst in r["Instances"]}
    return running == {image.image_id}


def make_default(ctx: Context, template_id: str, version: int, progress: Progress) -> None:
    """The rolled-out version becomes the template's $Default, so what launches by default
    is what runs, and older versions stop counting as live (prune)."""
    with calling(f"making version {version} the default of launch template {template_id}"):
        ctx.aws.ec2().modify_launch_template(LaunchTemplateId=template_id,
                                             DefaultVersion=str(version))
    progress.say(f"launch template {template_id} default version -> {version}")
