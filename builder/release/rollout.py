"""Putting a channel's image on an Auto Scaling group: rolling (instance refresh) or
blue-green (a second group behind the same target groups, then a swap).

Both start from a NEW launch-template version pinned by number to the channel's AMI, with
IMDSv2 required. The group is never pointed at $Latest/$Default: a refresh would not notice
the change and AutoRollback could not return to a moving target.
"""

from __future__ import annotations

import dataclasses
import math
import time

from builder.errors import OperationError, UserError
from builder.progress import Progress
from builder.release import channels, hooks, templates
from builder.release.awsclient import calling, tags_of
from builder.release.context import Context
from builder.release.images import Image

# Roles holding state a whole-group swap would lose or split (etcd quorum and Patroni's
# timeline; Redis's broker queue): they only ever roll, one node at a time.
STATEFUL = {
    "etcd-patroni": "replacing every etcd member at once loses quorum and the database",
    "redis": "a second Redis starts empty and would drop the Celery queue",
}

REFRESH_DONE = {"Successful"}
REFRESH_ACTIVE = {"Pending", "InProgress", "Cancelling", "RollbackInProgress", "Baking"}
REFRESH_FAILED = {"Failed", "Cancelled", "RollbackSuccessful", "RollbackFailed"}
# The group's processes paused on a blue kept for rollback, so it neither re-registers with
# the target groups nor scales on alarms while it waits.
PAUSED_ON_BLUE = ["AddToLoadBalancer", "AlarmNotification", "ScheduledActions", "AZRebalance"]


@dataclasses.dataclass
class Options:
    strategy: str = "rolling"
    wait: bool = False
    timeout: float = 3600.0
    poll: float = 15.0
    min_healthy: int | None = None
    warmup: int | None = None
    # A refresh ENDS at its last checkpoint (AWS: "the last value ... describes the percentage
    # of the Auto Scaling group that needs to be successfully replaced"): ending at 100 is
    # what replaces every instance; 50 pauses halfway for a look.
    checkpoints: list[int] = dataclasses.field(default_factory=lambda: [50, 100])
    checkpoint_delay: int = 300
    rollback_window: int = 3600


# --------------------------------------------------------------------------- the group


def find_group(ctx: Context, name: str, field: str = "--asg") -> dict:
    asg = ctx.aws.autoscaling()
    with calling(f"describing Auto Scaling group {name}"):
        found = asg.describe_auto_scaling_groups(
            AutoScalingGroupNames=[name])["AutoScalingGroups"]
    if not found:
        raise UserError(f"no Auto Scaling group {name!r} in {ctx.region}", field=field)
    return found[0]


def _check_role(group: dict, role: str) -> None:
    tagged = tags_of(group).get("builder:role")
    if tagged and tagged != role:
        raise UserError(f"group {group['AutoScalingGroupName']!r} runs role {tagged!r}, "
                        f"not {role!r}", field="--asg")


# --------------------------------------------------------------------------- entry point


def rollout(ctx: Context, role: str, channel: str, asg_name: str, opts: Options,
            progress: Progress) -> dict:
    ctx.check_role(role)
    ctx.check_channel(channel)
    if opts.strategy == "blue-green" and role in STATEFUL:
        raise UserError(f"{role} cannot go blue-green: {STATEFUL[role]}; use --strategy "
                        f"rolling (one node at a time)", field="--strategy")
    image = channels.channel_image(ctx, role, channel)
    group = find_group(ctx, asg_name)
    _check_role(group, role)
    spec = templates.template_of(group)
    current = templates.numeric_version(ctx, spec)
    base = {"role": role, "channel": channel, "strategy": opts.strategy, "asg": asg_name,
            "image": image.image_id, "version": image.version,
            "launch_template": spec["LaunchTemplateId"]}
    if role in hooks.HOOKED:
        # Before any instance is replaced: each one must leave its cluster first.
        base["lifecycle_hook"] = hooks.ensure(ctx, asg_name, progress)
    if templates.up_to_date(ctx, group, spec, current, image):
        progress.say(f"{asg_name} already runs {image.image_id} (launch template version "
                     f"{current}); nothing to do")
        return {**base, "status": "up-to-date", "template_version": current}
    note = f"builder {role} {image.version} from {channel} ({image.image_id})"
    if opts.strategy == "rolling":
        return _rolling(ctx, group, spec, current, image, note, opts, progress, base)
    return _blue_green(ctx, group, spec, current, image, note, opts, progress, base)


# --------------------------------------------------------------------------- rolling


def parse_checkpoints(text: str) -> list[int]:
    """--checkpoints as a user writes it (25,50,100): ascending, unique, ending at 100."""
    try:
        points = sorted({int(p) for p in text.split(",") if p.strip()})
    except ValueError:
        raise UserError(f"expected percentages like 50,100, got {text!r}",
                        field="--checkpoints") from None
    if any(not 0 < p <= 100 for p in points):
        raise UserError("percentages must be within 1..100", field="--checkpoints")
    if points and points[-1] != 100:
        raise UserError(f"the last checkpoint must be 100, got {text!r}: an instance refresh "
                        f"ends at its last checkpoint and would leave "
                        f"{100 - points[-1]}% of the group on the old image",
                        field="--checkpoints")
    return points


def refresh_preferences(role: str, desired: int, opts: Options) -> dict:
    prefs: dict = {"SkipMatching": True, "AutoRollback": True,
                   "ScaleInProtectedInstances": "Refresh", "StandbyInstances": "Terminate"}
    if role in STATEFUL:
        # 100 % healthy means one instance at a time; a checkpoint after each node lets the
        # new member join (etcd) and catch up (Patroni replica) before the next one goes.
        nodes = max(desired, 1)
        prefs["MinHealthyPercentage"] = 100
        prefs["CheckpointPercentages"] = sorted({math.ceil(100 * i / nodes)
                                                 for i in range(1, nodes + 1)})
    else:
        prefs["MinHealthyPercentage"] = 90 if opts.min_healthy is None else opts.min_healthy
        if opts.checkpoints:
            prefs["CheckpointPercentages"] = sorted(set(opts.checkpoints))
    if opts.min_healthy is not None:
        prefs["MinHealthyPercentage"] = opts.min_healthy
    if prefs.get("CheckpointPercentages"):
        # AWS refuses a CheckpointDelay without CheckpointPercentages.
        prefs["CheckpointDelay"] = opts.checkpoint_delay
    if opts.warmup is not None:
        prefs["InstanceWarmup"] = opts.warmup
    return prefs


def _rolling(ctx, group, spec, current, image, note, opts, progress, base) -> dict:
    name = group["AutoScalingGroupName"]
    role = base["role"]
    _check_no_refresh(ctx, name)
    version = templates.prepare(ctx, group, spec, current, image, note)
    progress.say(f"launch template {spec['LaunchTemplateId']} version {version} -> "
                 f"{image.image_id} (was {current})")
    prefs = refresh_preferences(role, int(group.get("DesiredCapacity") or 0), opts)
    desired = {"LaunchTemplate": {"LaunchTemplateId": spec["LaunchTemplateId"],
                                  "Version": str(version)}}
    refresh_id = _start_refresh(ctx, group, spec, version, desired, prefs)
    progress.say(f"instance refresh {refresh_id} started on {name} "
                 f"(min healthy {prefs['MinHealthyPercentage']}%, checkpoints "
                 f"{prefs.get('CheckpointPercentages') or 'none'})")
    rollout_id = ctx.registry.record_rollout(
        role=role, channel=base["channel"], strategy="rolling", asg=name,
        image=image.image_id, artifact_id=image.artifact.id if image.artifact else None,
        status="started", detail={"refresh_id": refresh_id, "template_version": version})
    result = {**base, "template_version": version, "previous_template_version": current,
              "refresh_id": refresh_id, "preferences": prefs, "status": "started"}
    if not opts.wait:
        return result
    final = wait_refresh(ctx, name, refresh_id, opts, progress)
    status = final.get("Status", "?")
    ctx.registry.finish_rollout(rollout_id, status, {"refresh_id": refresh_id,
                                                     "template_version": version})
    result.update(status=status, percentage=final.get("PercentageComplete"))
    if status not in REFRESH_DONE:
        raise OperationError(f"instance refresh {refresh_id} on {name} ended {status}: "
                             f"{final.get('StatusReason', 'no reason given')}")
    templates.make_default(ctx, spec["LaunchTemplateId"], version, progress)
    return result


def _active_refreshes(ctx: Context, name: str) -> list[dict]:
    with calling(f"describing the instance refreshes of {name}"):
        found = ctx.aws.autoscaling().describe_instance_refreshes(
            AutoScalingGroupName=name)["InstanceRefreshes"]
    return [r for r in found if r.get("Status") in REFRESH_ACTIVE]


def _check_no_refresh(ctx: Context, name: str) -> None:
    """Before anything changes: one refresh at a time per group (InstanceRefreshInProgress)."""
    for refresh in _active_refreshes(ctx, name):
        raise OperationError(f"{name} already has instance refresh "
                             f"{refresh['InstanceRefreshId']} {refresh['Status']}; wait for it "
                             f"or cancel it first (nothing changed)")


def _start_refresh(ctx: Context, group: dict, spec: dict, version: int, desired: dict,
                   prefs: dict) -> str:
    """StartInstanceRefresh is not idempotent: sent once, never retried. When it fails, a
    refresh AWS started anyway (the answer was lost) is followed; otherwise the pin and the
    new template version are undone."""
    name = group["AutoScalingGroupName"]
    try:
        with calling(f"starting an instance refresh of {name}"):
            return ctx.aws.autoscaling(attempts=1).start_instance_refresh(
                AutoScalingGroupName=name, Strategy="Rolling", DesiredConfiguration=desired,
                Preferences=prefs)["InstanceRefreshId"]
    except OperationError as exc:
        failure = str(exc)
    try:
        ours = [r for r in _active_refreshes(ctx, name)
                if (r.get("DesiredConfiguration") or {}).get("LaunchTemplate", {}).get(
                    "Version") == str(version)]
    except OperationError as exc:
        raise OperationError(f"{failure}; and whether it started is unknown ({exc}): "
                             f"nothing undone, check the group's instance refreshes") from None
    if ours:
        return ours[0]["InstanceRefreshId"]
    raise OperationError(f"{failure}; {templates.undo(ctx, group, spec, version)}")


def wait_refresh(ctx: Context, name: str, refresh_id: str, opts: Options,
                 progress: Progress) -> dict:
    asg = ctx.aws.autoscaling()
    deadline = time.monotonic() + opts.timeout
    last = None
    while True:
        with calling(f"describing instance refresh {refresh_id}"):
            found = asg.describe_instance_refreshes(
                AutoScalingGroupName=name, InstanceRefreshIds=[refresh_id])["InstanceRefreshes"]
        if not found:
            raise OperationError(f"instance refresh {refresh_id} on {name} disappeared")
        refresh = found[0]
        status = refresh.get("Status", "?")
        line = (f"{name}: {status} {refresh.get('PercentageComplete', 0)}% "
                f"({refresh.get('InstancesToUpdate', '?')} to update)")
        if refresh.get("StatusReason"):
            line += f" - {refresh['StatusReason']}"
        if line != last:
            progress.say(line)
            last = line
        if status in REFRESH_DONE | REFRESH_FAILED:
            return refresh
        if time.monotonic() > deadline:
            raise OperationError(f"gave up waiting after {opts.timeout:.0f} s: instance "
                                 f"refresh {refresh_id} is still {status} (it goes on in AWS)")
        time.sleep(opts.poll)


# --------------------------------------------------------------------------- blue-green


def _green_name(blue: str, image: Image) -> str:
    stem = blue.split("--", 1)[0]
    return f"{stem}--{image.version}-{image.image_id.removeprefix('ami-')[-8:]}"


def _group_tags(group: dict, extra: dict[str, str]) -> list[dict]:
    # State tags describe one group, never its successor.
    tags = {t["Key"]: t for t in group.get("Tags", []) if not t["Key"].startswith("aws:")
            and t["Key"] not in ("builder:live", "builder:retire-after")}
    for key, value in extra.items():
        tags[key] = {"Key": key, "Value": value, "PropagateAtLaunch": False}
    return [{"Key": t["Key"], "Value": t["Value"],
             "PropagateAtLaunch": bool(t.get("PropagateAtLaunch"))} for t in tags.values()]


def _tag_group(ctx: Context, name: str, tags: dict[str, str]) -> None:
    with calling(f"tagging {name}"):
        ctx.aws.autoscaling().create_or_update_tags(Tags=[
            {"ResourceId": name, "ResourceType": "auto-scaling-group", "Key": k, "Value": v,
             "PropagateAtLaunch": False} for k, v in tags.items()])


def wait_healthy(ctx: Context, name: str, target_groups: list[str], opts: Options,
                 progress: Progress) -> list[str]:
    """Until every instance the group wants is InService and healthy in each target group."""
    elb = ctx.aws.elbv2()
    deadline = time.monotonic() + opts.timeout
    last = None
    while True:
        group = find_group(ctx, name)
        want = int(group.get("DesiredCapacity") or 0)
        ready = [i["InstanceId"] for i in group.get("Instances", [])
                 if i.get("LifecycleState") == "InService" and i.get("HealthStatus") == "Healthy"]
        healthy_everywhere = len(ready) >= want
        for arn in target_groups:
            with calling(f"describing target health of {arn}"):
                states = {d["Target"]["Id"]: d["TargetHealth"]["State"] for d in
                          elb.describe_target_health(TargetGroupArn=arn)[
                              "TargetHealthDescriptions"]}
            if sum(1 for i in ready if states.get(i) == "healthy") < want:
                healthy_everywhere = False
        line = f"{name}: {len(ready)}/{want} in service" + (
            f", healthy in {len(target_groups)} target group(s)" if healthy_everywhere and
            target_groups else "")
        if line != last:
            progress.say(line)
            last = line
        if healthy_everywhere:
            return ready
        if time.monotonic() > deadline:
            raise OperationError(f"{name} was not healthy after {opts.timeout:.0f} s "
                                 f"({len(ready)}/{want} in service)")
        time.sleep(opts.poll)


def _delete_group(ctx: Context, name: str) -> None:
    with calling(f"deleting Auto Scaling group {name}"):
        ctx.aws.autoscaling().delete_auto_scaling_group(AutoScalingGroupName=name,
                                                        ForceDelete=True)


def _blue_green(ctx, blue, spec, current, image, note, opts, progress, base) -> dict:
    asg = ctx.aws.autoscaling()
    blue_name = blue["AutoScalingGroupName"]
    green_name = _green_name(blue_name, image)
    with calling(f"describing Auto Scaling group {green_name}"):
        exists = asg.describe_auto_scaling_groups(
            AutoScalingGroupNames=[green_name])["AutoScalingGroups"]
    if exists:
        raise UserError(f"group {green_name!r} already exists (an earlier blue-green of "
                        f"{image.image_id}?); roll it back or retire it first", field="--asg")
    target_groups = list(blue.get("TargetGroupARNs") or [])
    # Blue on $Latest/$Default would launch green's image once the shared template has it
    # (on a scale-out after --rollback, say): pin it to what it runs first.
    version = templates.prepare(ctx, blue, spec, current, image, note)
    progress.say(f"launch template {spec['LaunchTemplateId']} version {version} -> "
                 f"{image.image_id}")
    params = {
        "AutoScalingGroupName": green_name,
        "LaunchTemplate": {"LaunchTemplateId": spec["LaunchTemplateId"],
                           "Version": str(version)},
        "MinSize": blue["MinSize"], "MaxSize": blue["MaxSize"],
        "DesiredCapacity": blue.get("DesiredCapacity", blue["MinSize"]),
        "TargetGroupARNs": target_groups,
        "HealthCheckType": blue.get("HealthCheckType", "EC2"),
        "HealthCheckGracePeriod": blue.get("HealthCheckGracePeriod", 300),
        "Tags": _group_tags(blue, {"builder:role": base["role"], "builder:live": "false",
                                   "builder:image": image.image_id,
                                   "builder:blue-green-previous": blue_name}),
    }
    if blue.get("VPCZoneIdentifier"):
        params["VPCZoneIdentifier"] = blue["VPCZoneIdentifier"]
    else:
        params["AvailabilityZones"] = blue["AvailabilityZones"]
    try:
        with calling(f"creating green group {green_name}"):
            asg.create_auto_scaling_group(**params)
    except OperationError as exc:
        raise OperationError(f"{exc}; {templates.undo(ctx, blue, spec, version)}") from None
    progress.say(f"green {green_name} created ({params['DesiredCapacity']} instances, "
                 f"{len(target_groups)} target group(s))")
    rollout_id = ctx.registry.record_rollout(
        role=base["role"], channel=base["channel"], strategy="blue-green", asg=blue_name,
        image=image.image_id, artifact_id=image.artifact.id if image.artifact else None,
        status="started", detail={"green": green_name, "template_version": version})
    try:
        wait_healthy(ctx, green_name, target_groups, opts, progress)
    except OperationError:
        progress.say(f"green {green_name} never became healthy: deleting it; blue "
                     f"{blue_name} keeps serving")
        _delete_group(ctx, green_name)
        ctx.registry.finish_rollout(rollout_id, "failed", {"green": green_name})
        progress.say(templates.undo(ctx, blue, spec, version))
        raise
    _swap(ctx, live=green_name, old=blue_name, target_groups=target_groups, progress=progress)
    templates.make_default(ctx, spec["LaunchTemplateId"], version, progress)
    retire_after = int(time.time() + opts.rollback_window)
    _tag_group(ctx, blue_name, {"builder:retire-after": str(retire_after)})
    result = {**base, "template_version": version, "green": green_name, "blue": blue_name,
              "target_groups": target_groups, "status": "swapped",
              "retire_after": retire_after}
    if opts.rollback_window <= 0:
        _delete_group(ctx, blue_name)
        progress.say(f"blue {blue_name} retired (no rollback window)")
        result["status"] = "retired"
    else:
        progress.say(f"blue {blue_name} kept for rollback until "
                     f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(retire_after))}")
    ctx.registry.finish_rollout(rollout_id, result["status"], {"green": green_name})
    return result


def _swap(ctx: Context, live: str, old: str, target_groups: list[str],
          progress: Progress) -> None:
    asg = ctx.aws.autoscaling()
    if target_groups:
        with calling(f"detaching {old} from its target groups"):
            asg.detach_load_balancer_target_groups(AutoScalingGroupName=old,
                                                   TargetGroupARNs=target_groups)
    with calling(f"pausing {old}"):
        asg.suspend_processes(AutoScalingGroupName=old, ScalingProcesses=PAUSED_ON_BLUE)
    _tag_group(ctx, live, {"builder:live": "true"})
    _tag_group(ctx, old, {"builder:live": "false"})
    progress.say(f"swapped: {live} serves, {old} detached")


def _pair(ctx: Context, role: str, green_name: str) -> tuple[dict, dict]:
    ctx.check_role(role)
    green = find_group(ctx, green_name)
    _check_role(green, role)
    blue_name = tags_of(green).get("builder:blue-green-previous")
    if not blue_name:
        raise UserError(f"group {green_name!r} was not made by a blue-green rollout",
                        field="--asg")
    blue = find_group(ctx, blue_name, field="--asg")
    return green, blue


def rollback(ctx: Context, role: str, green_name: str, opts: Options,
             progress: Progress) -> dict:
    """Undo a blue-green swap while the blue group still exists: blue serves again, green
    is deleted."""
    green, blue = _pair(ctx, role, green_name)
    blue_name = blue["AutoScalingGroupName"]
    target_groups = list(green.get("TargetGroupARNs") or [])
    asg = ctx.aws.autoscaling()
    with calling(f"resuming {blue_name}"):
        asg.resume_processes(AutoScalingGroupName=blue_name, ScalingProcesses=PAUSED_ON_BLUE)
    if target_groups:
        with calling(f"attaching {blue_name} to the target groups"):
            asg.attach_load_balancer_target_groups(AutoScalingGroupName=blue_name,
                                                   TargetGroupARNs=target_groups)
    wait_healthy(ctx, blue_name, target_groups, opts, progress)
    if target_groups:
        with calling(f"detaching {green_name}"):
            asg.detach_load_balancer_target_groups(AutoScalingGroupName=green_name,
                                                   TargetGroupARNs=target_groups)
    _tag_group(ctx, blue_name, {"builder:live": "true", "builder:retire-after": ""})
    _delete_group(ctx, green_name)
    spec = templates.launch_template_spec(blue) or {}
    if str(spec.get("Version", "")).isdigit():
        # What launches by default is again what serves.
        templates.make_default(ctx, spec["LaunchTemplateId"], int(spec["Version"]), progress)
    progress.say(f"rolled back: {blue_name} serves again, {green_name} deleted")
    ctx.registry.record_rollout(role=role, channel="-", strategy="blue-green-rollback",
                                asg=green_name, image=tags_of(green).get("builder:image", "?"),
                                status="rolled-back", detail={"blue": blue_name})
    return {"role": role, "status": "rolled-back", "live": blue_name, "deleted": green_name,
            "target_groups": target_groups}


def retire(ctx: Context, role: str, green_name: str, force: bool, progress: Progress) -> dict:
    """Delete the blue group a swap kept, once its rollback window is over (or --force)."""
    green, blue = _pair(ctx, role, green_name)
    blue_name = blue["AutoScalingGroupName"]
    if tags_of(blue).get("builder:live") == "true":
        raise UserError(f"{blue_name} is serving again (rolled back); nothing to retire",
                        field="--asg")
    after = tags_of(blue).get("builder:retire-after") or "0"
    remaining = int(after) - time.time() if after.isdigit() else 0
    if remaining > 0 and not force:
        raise UserError(f"{blue_name} is kept for rollback for another {remaining / 60:.0f} "
                        f"min; pass --force to retire it now", field="--retire")
    _delete_group(ctx, blue_name)
    progress.say(f"blue {blue_name} retired; {green_name} stays live")
    return {"role": role, "status": "retired", "retired": blue_name, "live": green_name}
