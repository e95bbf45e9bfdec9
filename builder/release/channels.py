"""Channels: which image a role ships on dev/staging/prod. The registry keeps history; on AWS
each channel is also an SSM parameter (DataType aws:ec2:image) that launch templates and
people can read."""

from __future__ import annotations

import time

from builder.errors import OperationError, UserError
from builder.registry import Artifact
from builder.release import images
from builder.release.awsclient import calling, read_parameter
from builder.release.context import TARGET, Context
from builder.release.images import Image


def _write_parameters(ctx: Context, role: str, channel: str, art: Artifact) -> None:
    """Point the channel's parameter at the artifact's AMI in each of its regions; when a
    region fails, the regions already written get their previous value back."""
    name = ctx.parameter(role, channel)
    done: list[tuple[str, str | None]] = []
    try:
        for region, image in images.regions_of(art).items():
            previous = read_parameter(ctx.aws, region, name)
            with calling(f"writing SSM parameter {name} in {region}"):
                ctx.aws.ssm(region).put_parameter(
                    Name=name, Value=image, Type="String", DataType="aws:ec2:image",
                    Overwrite=True,
                    Description=f"builder: {role} {art.version} on {channel} (#{art.id})")
            done.append((region, previous))
    except OperationError as exc:
        failed = []
        for region, previous in reversed(done):
            ssm = ctx.aws.ssm(region)
            try:
                with calling(f"restoring SSM parameter {name} in {region}"):
                    if previous is None:
                        ssm.delete_parameter(Name=name)
                    else:
                        ssm.put_parameter(Name=name, Value=previous, Type="String",
                                          DataType="aws:ec2:image", Overwrite=True)
            except OperationError as again:
                failed.append(str(again))
        if failed:
            raise OperationError(f"{exc}; NOT restored: {'; '.join(failed)}") from None
        raise


def _summary(art: Artifact | None) -> dict | None:
    if art is None:
        return None
    return {"id": art.id, "version": art.version, "images": images.regions_of(art),
            "content_key": art.content_key, "revoked": art.revoked}


def _check_order(ctx: Context, role: str, art: Artifact, channel: str) -> None:
    """An image reaches a channel only after it has been on the one before it."""
    order = ctx.channel_names
    position = order.index(channel)
    if position == 0:
        return
    before = order[position - 1]
    history = ctx.registry.channel_history(role, TARGET, before)
    if not any(h["artifact_id"] == art.id for h in history):
        raise UserError(f"image #{art.id} ({role} {art.version}) has not been on {before!r}; "
                        f"promote it there first", field="--channel")


def promote(ctx: Context, role: str, ref: str, channel: str) -> dict:
    ctx.check_role(role)
    ctx.check_channel(channel)
    art = images.resolve(ctx, role, ref)
    images.check_shippable(art)
    found = images.present(ctx, art)
    for img in found.values():
        if img.revoked:
            raise UserError(f"AMI {img.image_id} is tagged revoked in {img.region}",
                            field="VERSION")
    _check_order(ctx, role, art, channel)
    current = ctx.registry.channel(role, TARGET, channel)
    result = {"role": role, "channel": channel, "parameter": ctx.parameter(role, channel),
              "image": _summary(art)}
    if current == art.id and all(
            read_parameter(ctx.aws, region, ctx.parameter(role, channel)) == image
            for region, image in images.regions_of(art).items()):
        return {**result, "changed": False, "previous": _summary(art)}
    _write_parameters(ctx, role, channel, art)
    previous = ctx.registry.set_channel(role, TARGET, channel, art.id, "promote")
    return {**result, "changed": True,
            "previous": _summary(ctx.registry.get(previous) if previous else None)}


def _stack(ctx: Context, role: str, channel: str) -> list[int]:
    """The channel's promotions still in effect: promote pushes, rollback pops."""
    stack: list[int] = []
    for entry in ctx.registry.channel_history(role, TARGET, channel):
        if entry["action"] == "promote":
            stack.append(entry["artifact_id"])
        elif entry["action"] == "rollback" and stack:
            stack.pop()
            while stack and stack[-1] != entry["artifact_id"]:
                stack.pop()
    return stack


def rollback(ctx: Context, role: str, channel: str) -> dict:
    """Back to the image the channel had before the current one, skipping revoked ones."""
    ctx.check_role(role)
    ctx.check_channel(channel)
    stack = _stack(ctx, role, channel)
    if not stack:
        raise UserError(f"{role} has nothing on channel {channel!r}", field="--channel")
    current = ctx.registry.get(stack.pop())
    target = None
    while stack:
        candidate = ctx.registry.get(stack.pop())
        if candidate is not None and candidate.id != (current.id if current else None) \
                and not candidate.revoked and candidate.tests_passed:
            target = candidate
            break
    if target is None:
        raise UserError(f"{role} on {channel!r} has no earlier unrevoked image to roll back "
                        f"to", field="--channel")
    images.present(ctx, target, field="--channel")
    _write_parameters(ctx, role, channel, target)
    ctx.registry.set_channel(role, TARGET, channel, target.id, "rollback",
                             note=f"from #{current.id if current else '?'}")
    return {"role": role, "channel": channel, "parameter": ctx.parameter(role, channel),
            "changed": True, "image": _summary(target), "previous": _summary(current)}


def revoke(ctx: Context, role: str, ref: str, reason: str) -> dict:
    """Revoke an image and flag its descendants; AMIs are tagged so other machines see it.

    The first revocation stands, as in the registry: revoking again tags nothing and keeps
    the first reason (a no-op that says so), and an AMI another machine already tagged
    revoked keeps its tags. Descendants recorded since are still flagged."""
    ctx.check_role(role)
    art = images.resolve(ctx, role, ref)
    affected = [art.id, *ctx.registry.descendants(art.id)]
    arts = [ctx.registry.get(i) for i in affected]
    pending = [a for a in arts if not a.revoked]
    # Revocation must work for images already pruned from AWS: tag only what still exists.
    found, missing = [], []
    for a in pending:
        for region, image_id in images.regions_of(a).items():
            try:
                found.append((a, images.describe(ctx, region, image_id, "VERSION")))
            except UserError:
                missing.append(f"{region}:{image_id}")
    stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for a, img in found:
        if img.tags.get("builder:revoked") == "true":
            continue
        inherited = "" if a.id == art.id else f" (inherited from #{art.id})"
        with calling(f"tagging {img.image_id} revoked in {img.region}"):
            ctx.aws.ec2(img.region).create_tags(Resources=[img.image_id], Tags=[
                {"Key": "builder:revoked", "Value": "true"},
                {"Key": "builder:revoked-at", "Value": stamp},
                {"Key": "builder:revoked-reason", "Value": (reason + inherited)[:255]}])
    newly = ctx.registry.revoke(art.id, reason)
    on_channels = [c for c in ctx.registry.channels(role, TARGET) if c["artifact_id"] in
                   affected]
    return {"role": role, "image": _summary(ctx.registry.get(art.id)), "reason": reason,
            "revoked": newly, "descendants": [i for i in affected[1:] if i in newly],
            "changed": bool(newly), "missing_in_aws": missing,
            "revocation": ctx.registry.revocation(art.id),
            "channels_still_pointing": [c["channel"] for c in on_channels]}


def channel_image(ctx: Context, role: str, channel: str) -> Image:
    """The AMI a channel points at on AWS (SSM is what other machines read), checked to
    be shippable."""
    ctx.check_role(role)
    ctx.check_channel(channel)
    name = ctx.parameter(role, channel)
    image_id = read_parameter(ctx.aws, ctx.region, name)
    if image_id is None:
        raise UserError(f"{role} has no image on channel {channel!r} in {ctx.region} "
                        f"(SSM parameter {name} not found)", field="--channel")
    img = images.describe(ctx, ctx.region, image_id, field="--channel")
    # SSM parameters can be written by anyone: deploy only what is known to be this role's.
    known = img.artifact.role if img.artifact else img.tags.get("builder:role")
    if known != role:
        what = (f"an image of {known}, not {role}" if known else f"which is not a known "
                f"image of {role} (neither in the registry nor tagged builder:role)")
        raise UserError(f"channel {channel!r} ({name}) points at {image_id}, {what}",
                        field="--channel")
    if img.revoked:
        raise UserError(f"channel {channel!r} points at {image_id} ({role} {img.version}), "
                        f"which is revoked; roll the channel back or promote another image",
                        field="--channel")
    if not img.tests_passed:
        raise UserError(f"channel {channel!r} points at {image_id}, whose tests did not pass",
                        field="--channel")
    return img


def listing(ctx: Context, role: str | None) -> dict:
    if role:
        ctx.check_role(role)
    chans: dict[int, list[str]] = {}
    for c in ctx.registry.channels(role, TARGET):
        chans.setdefault(c["artifact_id"], []).append(c["channel"])
    pruned = ctx.registry.pruned()
    names = ctx.channel_names

    def order(channel: str) -> int:
        return names.index(channel) if channel in names else len(names)

    arts = ctx.registry.list(role, TARGET)
    existing = images.existing(ctx, [images.regions_of(a) for a in arts])
    rows = []
    for art in arts:
        regions = images.regions_of(art)
        # Gone: pruned by builder, or deregistered behind its back.
        gone = sorted(r for r, i in regions.items()
                      if i in pruned or i not in existing.get(r, set()))
        rows.append({**_summary(art), "role": art.role, "created_at": art.created_at,
                     "git_sha": art.git_sha, "tests_passed": art.tests_passed,
                     "channels": sorted(chans.get(art.id, []), key=order),
                     "pruned": bool(regions) and len(gone) == len(regions),
                     "gone_regions": gone})
    return {"environment": ctx.env.name, "images": rows}


def show(ctx: Context, role: str, ref: str) -> dict:
    ctx.check_role(role)
    art = images.resolve(ctx, role, ref)
    parent = ctx.registry.parent(art.id)
    history = [h for h in ctx.registry.channel_history(role, TARGET)
               if art.id in (h["artifact_id"], h["previous_id"])]
    return {**art.as_json(), "images": images.regions_of(art),
            "channels": [c["channel"] for c in ctx.registry.channels(role, TARGET)
                         if c["artifact_id"] == art.id],
            "parameters": {c: ctx.parameter(role, c) for c in ctx.channel_names},
            "parent": parent, "descendants": ctx.registry.descendants(art.id),
            "revocation": ctx.registry.revocation(art.id), "history": history}
