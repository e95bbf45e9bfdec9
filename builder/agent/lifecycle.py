"""On AWS, the graceful leave before an Auto Scaling group terminates this instance.

A termination lifecycle hook (autoscaling:EC2_INSTANCE_TERMINATING, which `builder rollout`
puts on an etcd-patroni group: builder/release/hooks.py) holds the instance in
Terminating:Wait, and IMDS's autoscaling/target-lifecycle-state reads Terminated. Nothing
is powered off yet, so builder-graceful-leave's ExecStop has not run: this watcher (started
by the agent on EC2 only) polls that value and, on Terminated, runs the same leave as
`builder-agent leave` (switchover, etcd member removal), keeps its report, then completes
the lifecycle action (CONTINUE) so the group terminates the instance now rather than at the
hook's heartbeat timeout. The power-off that follows runs the leave again, which finds this
node no primary and its member gone.

The instance profile needs autoscaling:CompleteLifecycleAction (and
autoscaling:DescribeAutoScalingInstances when instance tags are not in the metadata).
Setting `lifecycle_hook` names the hook (default HOOK, the name `builder rollout` puts).
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Callable

from builder.agent.errors import AgentError
from builder.agent.metadata import ec2

STATE = "autoscaling/target-lifecycle-state"
TERMINATED = "Terminated"
GROUP_TAG = "aws:autoscaling:groupName"
HOOK = "builder-graceful-leave"
INTERVAL, MIN_INTERVAL, MAX_INTERVAL = 5.0, 1.0, 60.0
# IMDS's errors: no route or no answer (OSError, URLError, HTTPError) or a broken answer.
IMDS_ERRORS = (OSError, http.client.HTTPException)


def bounded(seconds: float) -> float:
    """A poll interval IMDS's rate limit and a heartbeat timeout of minutes both allow."""
    return min(max(float(seconds), MIN_INTERVAL), MAX_INTERVAL)


def wait_for_termination(imds: ec2.IMDS, *, interval: float = INTERVAL,
                         log: Callable[[str], None] = print, rounds: int | None = None,
                         sleep: Callable[[float], None] = time.sleep) -> bool:
    """Poll the target lifecycle state until it reads Terminated (True), or `rounds` looks
    (False). What it reads is logged when it changes; an IMDS failure is one such line and
    never ends the loop."""
    last, done = None, 0
    while rounds is None or done < rounds:
        try:
            # 404 (None): not in an Auto Scaling group; it may be attached to one later.
            state = (imds.get(STATE) or "").strip() or "none (in no Auto Scaling group)"
        except IMDS_ERRORS as exc:
            state = f"unknown: IMDS unreachable ({_first_line(exc)})"
        if state != last:
            log(f"target-lifecycle-state {state}")
            last = state
        if state == TERMINATED:
            return True
        done += 1
        if rounds is None or done < rounds:
            sleep(interval)
    return False


def complete(imds: ec2.IMDS, hook: str) -> str:
    """CompleteLifecycleAction CONTINUE for this instance; how it went, as one line."""
    identity = ec2.read(timeout=imds.timeout, endpoint=imds.endpoint)
    if identity is None:
        return "not completed: IMDS gave no instance identity"
    try:
        from botocore.exceptions import BotoCoreError, ClientError
    except ImportError:
        return "not completed: boto3 is not installed (Debian's python3-boto3)"
    where = f"hook {hook}, instance {identity.instance_id}"
    try:
        client = _autoscaling(identity.region)
        group = identity.tags.get(GROUP_TAG) or _group_of(client, identity.instance_id)
        if not group:
            return f"not completed: {identity.instance_id} is in no Auto Scaling group"
        where = f"hook {hook}, group {group}, instance {identity.instance_id}"
        client.complete_lifecycle_action(
            LifecycleHookName=hook, AutoScalingGroupName=group, InstanceId=identity.instance_id,
            LifecycleActionResult="CONTINUE")
    except ClientError as exc:
        err = exc.response.get("Error", {})
        return (f"not completed ({where}): {err.get('Code', 'error')}: "
                f"{_first_line(err.get('Message', ''))}")
    except BotoCoreError as exc:
        return f"not completed ({where}): {_first_line(exc)}"
    return f"completed: CONTINUE ({where})"


def _autoscaling(region: str | None):
    import boto3
    from botocore.config import Config

    return boto3.client("autoscaling", region_name=region,
                        config=Config(retries={"mode": "standard", "max_attempts": 6}))


def _group_of(client, instance_id: str) -> str | None:
    """The group from the API, for an instance whose tags are not in its metadata."""
    found = client.describe_auto_scaling_instances(InstanceIds=[instance_id])
    return next((i["AutoScalingGroupName"] for i in found.get("AutoScalingInstances", [])), None)


def _first_line(text) -> str:
    return (str(text).strip().splitlines() or [""])[0][:300]


def hook_name(root) -> str:
    from builder.agent import config

    try:
        name = config.load(root).settings.get("lifecycle_hook", HOOK)
    except AgentError:
        return HOOK  # the boot reported why node.yaml is unusable; the hook has a default
    return name if isinstance(name, str) and name else HOOK


def leave_and_complete(root, imds: ec2.IMDS, hook: str,
                       leave: Callable[..., dict] | None = None) -> dict:
    """The leave as on a power-off (`leave`, default leave_cluster), its report kept, then
    the lifecycle action completed whatever the leave did: the instance goes either way,
    and holding it longer helps no one."""
    from builder.agent.roles import etcd_patroni

    try:
        # The group terminates this instance: a leave for good, though nothing powers off.
        report = (leave or etcd_patroni.leave_cluster)(root, for_good=lambda: True)
    except Exception as exc:  # one line in the report, never a traceback
        report = {"left": False, "error": f"{type(exc).__name__}: {_first_line(exc)}"}
        etcd_patroni.record_leave(root, report)
    report["trigger"] = "lifecycle"
    report["lifecycle_action"] = complete(imds, hook)
    etcd_patroni.record_leave(root, report)
    return report


def watch(root, *, interval: float = INTERVAL, log: Callable[[str], None] = print,
          imds: ec2.IMDS | None = None, rounds: int | None = None,
          leave: Callable[..., dict] | None = None) -> dict | None:
    """`builder-agent lifecycle-watch`: the leave's report once the group terminates this
    instance, None after `rounds` looks without it."""
    imds = imds or ec2.IMDS()
    hook = hook_name(root)
    if not wait_for_termination(imds, interval=bounded(interval), log=log, rounds=rounds):
        return None
    log("terminating: leaving the cluster before the group terminates this instance")
    report = leave_and_complete(root, imds, hook, leave)
    log(f"lifecycle action {report['lifecycle_action']}")
    return report
