"""Which registered image a user means, what AWS says about it, and whether it may ship."""

from __future__ import annotations

import dataclasses

from builder.errors import UserError
from builder.registry import Artifact, image_ids
from builder.release.awsclient import calling, error_code, tags_of
from builder.release.context import TARGET, Context


@dataclasses.dataclass
class Image:
    """One AMI in one region, with the registry artifact it belongs to (when known)."""

    image_id: str
    region: str
    tags: dict[str, str]
    snapshots: list[str]
    created: str
    artifact: Artifact | None

    @property
    def revoked(self) -> bool:
        return bool(self.artifact and self.artifact.revoked) or \
            self.tags.get("builder:revoked") == "true"

    @property
    def tests_passed(self) -> bool:
        if self.artifact is not None:
            return self.artifact.tests_passed
        return self.tags.get("builder:tests-passed") == "true"

    @property
    def version(self) -> str:
        return self.artifact.version if self.artifact else self.tags.get("builder:version", "?")


def resolve(ctx: Context, role: str, ref: str) -> Artifact:
    """VERSION as a user writes it: 1.2.3 (the newest bake of it), an AMI id, or #ID."""
    field = "VERSION"
    if ref.startswith("ami-"):
        art = ctx.registry.find_image(ref)
        if art is None:
            raise UserError(f"unknown AMI {ref!r}: not in the registry", field=field)
    elif ref.lstrip("#").isdigit():
        art = ctx.registry.get(int(ref.lstrip("#")))
        if art is None:
            raise UserError(f"no registry entry #{ref.lstrip('#')}", field=field)
    else:
        found = ctx.registry.find_version(role, TARGET, ref)
        if not found:
            known = sorted({a.version for a in ctx.registry.list(role, TARGET)})
            raise UserError(f"no {TARGET} image of {role} {ref!r} in the registry (known: "
                            f"{', '.join(known) or 'none'})", field=field)
        art = found[0]
    if art.role != role or art.target != TARGET:
        raise UserError(f"{ref!r} is a {art.target} image of {art.role}, not an {TARGET} image "
                        f"of {role}", field=field)
    return art


def check_shippable(art: Artifact, field: str = "VERSION") -> None:
    if art.revoked:
        raise UserError(f"image #{art.id} ({art.role} {art.version}) is revoked", field=field)
    if not art.tests_passed:
        raise UserError(f"image #{art.id} ({art.role} {art.version}) did not pass its tests",
                        field=field)


def regions_of(art: Artifact) -> dict[str, str]:
    return image_ids(art.artifact)


def describe(ctx: Context, region: str, image_id: str, field: str) -> Image:
    """The AMI as AWS has it; a missing one is bad input naming `field`."""
    from botocore.exceptions import ClientError

    ec2 = ctx.aws.ec2(region)
    with calling(f"describing {image_id} in {region}"):
        try:
            found = ec2.describe_images(ImageIds=[image_id])["Images"]
        except ClientError as exc:
            if not error_code(exc).startswith("InvalidAMIID"):
                raise
            found = []
    if not found:
        raise UserError(f"AMI {image_id} does not exist in {region}", field=field)
    img = found[0]
    return Image(image_id=image_id, region=region, tags=tags_of(img),
                 snapshots=snapshots_of(img), created=img.get("CreationDate", ""),
                 artifact=ctx.registry.find_image(image_id))


def snapshots_of(image: dict) -> list[str]:
    return [m["Ebs"]["SnapshotId"] for m in image.get("BlockDeviceMappings", [])
            if m.get("Ebs", {}).get("SnapshotId")]


def present(ctx: Context, art: Artifact, field: str = "VERSION") -> dict[str, Image]:
    """Every region's AMI of an artifact, checked to exist before anything is changed."""
    return {region: describe(ctx, region, image, field)
            for region, image in regions_of(art).items()}


def existing(ctx: Context, per_artifact: list[dict[str, str]]) -> dict[str, set[str]]:
    """Region -> which of these AMIs AWS still has (one filtered describe per region and
    hundred AMIs, rather than one call per AMI)."""
    wanted: dict[str, set[str]] = {}
    for regions in per_artifact:
        for region, image_id in regions.items():
            wanted.setdefault(region, set()).add(image_id)
    found: dict[str, set[str]] = {}
    for region, ids in wanted.items():
        ordered = sorted(ids)
        ec2 = ctx.aws.ec2(region)
        with calling(f"describing {len(ordered)} AMI(s) in {region}"):
            for start in range(0, len(ordered), 100):
                answer = ec2.describe_images(Filters=[
                    {"Name": "image-id", "Values": ordered[start:start + 100]}])
                found.setdefault(region, set()).update(i["ImageId"] for i in answer["Images"])
    return found
