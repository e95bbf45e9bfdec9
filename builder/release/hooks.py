"""The termination lifecycle hook on the groups of roles whose instances must leave their
cluster before they go: an etcd-patroni node hands over the primary and removes its etcd
member (builder/agent/lifecycle.py) while the hook holds it in Terminating:Wait.

A rollout puts it before anything else touches the group, so the refresh's terminations
(and every scale-in or replacement after) wait for the leave. PutLifecycleHook creates or
replaces, so a hook that is already as wanted is left alone and one that differs is put
again.
"""

from __future__ import annotations

from builder.agent.lifecycle import HOOK
from builder.progress import Progress
from builder.release.awsclient import calling
from builder.release.context import Context

HOOKED = {"etcd-patroni"}
# A switchover waits 90 s at most and the etcd removal 40 s (builder/agent/leave.py), on an
# instance that may be starved; the agent completes the action as soon as it has left.
HEARTBEAT_TIMEOUT = 300
# The leave is a courtesy: when the agent cannot complete (no network, no permission), the
# instance is terminated at the timeout anyway, as it would be without the hook.
WANTED = {"LifecycleTransition": "autoscaling:EC2_INSTANCE_TERMINATING",
          "HeartbeatTimeout": HEARTBEAT_TIMEOUT, "DefaultResult": "CONTINUE"}


def ensure(ctx: Context, group: str, progress: Progress) -> str:
    """The hook on `group`: 'present' (nothing to do), 'created' or 'updated'."""
    asg = ctx.aws.autoscaling()
    with calling(f"describing the lifecycle hooks of {group}"):
        found = asg.describe_lifecycle_hooks(AutoScalingGroupName=group,
                                             LifecycleHookNames=[HOOK])["LifecycleHooks"]
    if found and all(found[0].get(key) == value for key, value in WANTED.items()):
        return "present"
    with calling(f"putting lifecycle hook {HOOK} on {group}"):
        asg.put_lifecycle_hook(AutoScalingGroupName=group, LifecycleHookName=HOOK, **WANTED)
    outcome = "updated" if found else "created"
    progress.say(f"lifecycle hook {HOOK} {outcome} on {group} (terminations wait up to "
                 f"{HEARTBEAT_TIMEOUT} s for the node to leave its cluster)")
    return outcome
