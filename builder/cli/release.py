"""`builder release`, `builder rollout`, `builder prune`: parse, call, print."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from builder.cli.output import emit


def _common(func):
    @click.option("--env", "env_name", default="local", show_default=True, metavar="NAME|FILE",
                  help="Environment: region, profile, channels and SSM prefix come from it.")
    @click.option("--images", type=click.Path(path_type=Path), default=None,
                  help="Directory of role specs (default: images/ of the project).")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)
    return wrapper


def _ctx(env_name, images):
    from builder.release import context

    return context.load(env_name, images)


@click.group()
def release() -> None:
    """Image channels on AWS: list, show, promote, rollback, revoke."""


@release.command("list")
@click.argument("role", required=False)
@_common
def release_list(role, env_name, images, as_json) -> None:
    """Registered AWS images (of ROLE), with their channels."""
    from builder.release import channels, views

    emit(channels.listing(_ctx(env_name, images), role), as_json, views.image_list)


@release.command("show")
@click.argument("role")
@click.argument("version")
@_common
def release_show(role, version, env_name, images, as_json) -> None:
    """One image: AMIs, ancestry, channels, revocation and history.

    VERSION is a version (the newest bake of it), an AMI id or a registry #ID."""
    from builder.release import channels, views

    emit(channels.show(_ctx(env_name, images), role, version), as_json, views.image_show)


@release.command("promote")
@click.argument("role")
@click.argument("version")
@click.option("--channel", required=True, help="Channel from the environment's aws.channels.")
@_common
def release_promote(role, version, channel, env_name, images, as_json) -> None:
    """Put a tested, unrevoked image on a channel (registry and SSM parameter)."""
    from builder.release import channels, views

    emit(channels.promote(_ctx(env_name, images), role, version, channel), as_json,
          views.channel_change)


@release.command("rollback")
@click.argument("role")
@click.option("--channel", required=True, help="Channel to point back at its previous image.")
@_common
def release_rollback(role, channel, env_name, images, as_json) -> None:
    """Point a channel back at the image it had before (skipping revoked ones)."""
    from builder.release import channels, views

    emit(channels.rollback(_ctx(env_name, images), role, channel), as_json,
          views.channel_change)


@release.command("revoke")
@click.argument("role")
@click.argument("version")
@click.option("--reason", required=True, help="Why; recorded and tagged on the AMIs.")
@_common
def release_revoke(role, version, reason, env_name, images, as_json) -> None:
    """Revoke an image and flag its descendants: neither can be promoted or rolled out."""
    from builder.release import channels, views

    emit(channels.revoke(_ctx(env_name, images), role, version, reason), as_json,
          views.revoked)


@click.command()
@click.argument("role")
@click.option("--asg", "asg_name", required=True, metavar="NAME",
              help="The Auto Scaling group (for --rollback/--retire: the live green group).")
@click.option("--channel", help="Channel whose image to roll out.")
@click.option("--strategy", type=click.Choice(["rolling", "blue-green"]), default="rolling",
              show_default=True, help="rolling: an instance refresh of the group; blue-green: "
                                      "a second group, then a swap of the target groups.")
@click.option("--wait", is_flag=True,
              help="Rolling: wait for the instance refresh and report progress. "
                   "(Blue-green always waits for green to be healthy before swapping.)")
@click.option("--min-healthy", type=click.IntRange(0, 100), default=None,
              help="Instance refresh MinHealthyPercentage [default: 90; 100 for stateful].")
@click.option("--warmup", type=click.IntRange(0), default=None, help="Instance warmup, s.")
@click.option("--checkpoints", default="50,100", show_default=True, metavar="PCT[,PCT...]",
              help="Instance refresh checkpoint percentages, ending at 100 (the refresh "
                   "stops at the last one; stateful roles: every node).")
@click.option("--checkpoint-delay", type=click.IntRange(0, 172800), default=300,
              show_default=True, help="Seconds to pause at each checkpoint.")
@click.option("--rollback-window", type=click.IntRange(0), default=3600, show_default=True,
              help="Blue-green: seconds to keep blue for rollback (0: retire at once).")
@click.option("--rollback", "do_rollback", is_flag=True,
              help="Blue-green: swap back to the kept blue group and delete green.")
@click.option("--retire", "do_retire", is_flag=True,
              help="Blue-green: delete the kept blue group once its window is over.")
@click.option("--force", is_flag=True, help="With --retire: before the window is over.")
@click.option("--timeout", type=click.FloatRange(1), default=3600, show_default=True,
              help="Seconds to wait for health or the refresh.")
@click.option("--poll", type=click.FloatRange(0.01), default=15, show_default=True,
              help="Seconds between progress checks.")
@_common
def rollout(role, asg_name, channel, strategy, wait, min_healthy, warmup, checkpoints,
            checkpoint_delay, rollback_window, do_rollback, do_retire, force, timeout, poll,
            env_name, images, as_json) -> None:
    """Roll a channel's image out to an Auto Scaling group (rolling or blue-green)."""
    from builder.errors import UserError
    from builder.progress import Progress
    from builder.release import rollout as rollouts
    from builder.release import views

    points = rollouts.parse_checkpoints(checkpoints)
    if do_rollback and do_retire:
        raise UserError("give --rollback or --retire, not both", field="--rollback")
    opts = rollouts.Options(strategy=strategy, wait=wait, timeout=timeout, poll=poll,
                            min_healthy=min_healthy, warmup=warmup, checkpoints=points,
                            checkpoint_delay=checkpoint_delay, rollback_window=rollback_window)
    progress = Progress(f"{role}: ")
    ctx = _ctx(env_name, images)
    if do_rollback:
        result = rollouts.rollback(ctx, role, asg_name, opts, progress)
    elif do_retire:
        result = rollouts.retire(ctx, role, asg_name, force, progress)
    else:
        if not channel:
            raise UserError("required to roll out (which channel's image?)", field="--channel")
        result = rollouts.rollout(ctx, role, channel, asg_name, opts, progress)
    emit(result, as_json, views.rollout)


@click.command()
@click.argument("role")
@click.option("--keep", type=click.IntRange(0), default=3, show_default=True,
              help="Always keep this many newest images.")
@click.option("--min-age", type=click.FloatRange(0), default=14, show_default=True,
              metavar="DAYS", help="Keep images younger than this.")
@click.option("--yes", is_flag=True, help="Really deregister (default: dry run).")
@_common
def prune(role, keep, min_age, yes, env_name, images, as_json) -> None:
    """Deregister a role's unused AMIs and their snapshots (dry run unless --yes)."""
    from builder.progress import Progress
    from builder.release import prune as pruning
    from builder.release import views

    ctx = _ctx(env_name, images)
    report = pruning.plan(ctx, role, keep, min_age)
    if yes:
        report = pruning.apply(ctx, report, Progress(f"{role}: "))
    emit(report, as_json, views.prune)
