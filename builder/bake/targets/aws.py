"""After an amazon-ebs bake: tag each AMI and its snapshots, require IMDSv2 on the AMI, and
record the artifact in the registry.

Packer 1.6.6 (Debian's) has neither `imds_support` nor `snapshot_tags` for copied regions
in every case, so builder finishes the job through the EC2 API from the manifest.
"""

from __future__ import annotations

import json
from pathlib import Path

from builder.errors import UserError
from builder.registry import Artifact, Registry, image_ids
from builder.release.awsclient import Aws, calling, tags_of

REQUIRED_CUSTOM_DATA = ("role", "version", "content_key", "git_sha")
UNKNOWN_BASE = "unknown"


def read_manifest(path: Path) -> dict:
    """The newest run's amazon-ebs build from a Packer manifest (it appends across runs)."""
    shown = str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError("no such manifest", file=shown) from None
    except (OSError, ValueError) as exc:
        raise UserError(f"not a Packer manifest: {exc}", file=shown) from None
    builds = data.get("builds") if isinstance(data, dict) else None
    if not builds:
        raise UserError("no builds in manifest", file=shown, field="builds")
    run = data.get("last_run_uuid")
    chosen = [b for b in builds if not run or b.get("packer_run_uuid") == run] or builds
    index = builds.index(chosen[-1])
    build = chosen[-1]
    regions = image_ids(str(build.get("artifact_id", "")))
    if not regions or not all(i.startswith("ami-") for i in regions.values()):
        raise UserError(f"expected region:ami-id[,region:ami-id...], got "
                        f"{build.get('artifact_id')!r}", file=shown,
                        field=f"builds[{index}].artifact_id")
    custom = build.get("custom_data") or {}
    for key in REQUIRED_CUSTOM_DATA:
        if not custom.get(key):
            raise UserError("required field is missing", file=shown,
                            field=f"builds[{index}].custom_data.{key}")
    return {"images": regions, "artifact_id": build["artifact_id"], **{
        k: str(custom[k]) for k in REQUIRED_CUSTOM_DATA}}


def image_tags(meta: dict, base_ami: str, tests_passed: bool) -> dict[str, str]:
    return {
        "builder:role": meta["role"],
        "builder:version": meta["version"],
        "builder:content-key": meta["content_key"],
        "builder:git-sha": meta["git_sha"],
        "builder:base-ami": base_ami,
        "builder:tests-passed": "true" if tests_passed else "false",
    }


def record(manifest: Path, registry: Registry, aws: Aws, *, tests_passed: bool = True,
           tests: dict | None = None, timings: dict | None = None,
           packer_version: str = "", base_ami: str | None = None) -> Artifact:
    """Tag, harden and record the AMIs a bake produced. Idempotent on AWS; one registry row.

    A manifest exists only when the build (and the testinfra run inside it) succeeded, hence
    `tests_passed` defaults to True.
    """
    meta = read_manifest(manifest)
    described = {}
    for region, image in meta["images"].items():
        ec2 = aws.ec2(region)
        with calling(f"waiting for {image} in {region}"):
            ec2.get_waiter("image_available").wait(
                ImageIds=[image], WaiterConfig={"Delay": 5, "MaxAttempts": 120})
        with calling(f"describing {image} in {region}"):
            described[region] = ec2.describe_images(ImageIds=[image])["Images"][0]
    # Packer tags the source-region AMI with {{ .SourceAMI }}; copies may lack it.
    base = base_ami or next((tags_of(img).get("builder:base-ami") for img in
                             described.values() if tags_of(img).get("builder:base-ami")),
                            UNKNOWN_BASE)
    tags = image_tags(meta, base, tests_passed)
    for region, img in described.items():
        ec2 = aws.ec2(region)
        snapshots = [m["Ebs"]["SnapshotId"] for m in img.get("BlockDeviceMappings", [])
                     if m.get("Ebs", {}).get("SnapshotId")]
        with calling(f"tagging {img['ImageId']} in {region}"):
            ec2.create_tags(Resources=[img["ImageId"], *snapshots],
                            Tags=[{"Key": k, "Value": v} for k, v in sorted(tags.items())])
        # ImdsSupport can be set once and never unset: skip when it already says v2.0.
        if img.get("ImdsSupport") != "v2.0":
            with calling(f"requiring IMDSv2 on {img['ImageId']} in {region}"):
                ec2.modify_image_attribute(ImageId=img["ImageId"],
                                           ImdsSupport={"Value": "v2.0"})
    existing = registry.find_image(next(iter(meta["images"].values())))
    if existing is not None and existing.content_key == meta["content_key"]:
        return existing
    art = registry.record(Artifact(
        role=meta["role"], version=meta["version"], target="aws",
        content_key=meta["content_key"], artifact=meta["artifact_id"], base=base,
        git_sha=meta["git_sha"], packer_version=packer_version, tests_passed=tests_passed,
        tests=tests or {}, timings=timings or {}))
    parent = registry.find_image(base) if base != UNKNOWN_BASE else None
    if parent is not None and parent.id is not None and art.id is not None:
        registry.set_parent(art.id, parent.id)
        if parent.revoked:
            registry.revoke(art.id, f"built from revoked image #{parent.id} ({base})")
            art = registry.get(art.id) or art
    return art


def builder_cidr() -> str:
    """The address the temporary security group admits: the build host's, as /32."""
    import ipaddress
    import os

    value = os.environ.get("BUILDER_CIDR", "")
    try:
        net = ipaddress.ip_network(value)
    except ValueError:
        raise UserError("set BUILDER_CIDR to this host's public address as a /32 (the bake's "
                        "temporary security group admits nothing else)",
                        field="BUILDER_CIDR") from None
    if net.num_addresses > 256:
        raise UserError(f"{value} is wider than /24: the build instance would be exposed",
                        field="BUILDER_CIDR")
    return str(net)


def bake_all(todo, env, project, state: Path, registry: Registry, sha: str) -> dict[str, dict]:
    """Packer amazon-ebs for each role in turn (tests run inside each build), then tag,
    harden and record what it made. Cloud resources of a failed or interrupted build are
    Packer's to remove (-on-error=cleanup)."""
    import shutil
    import sys
    import tempfile
    import threading
    import time

    from builder.bake import junit, packer, packerrun
    from builder.errors import OperationError
    from builder.progress import Progress

    cidr = builder_cidr()
    aws = Aws(env.aws)
    cancel = threading.Event()
    results = {}
    for item in todo:
        role = item.role.role
        progress = Progress(f"{role}: ")
        begun = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=f".tmp-bake-{role}-", dir=state))
        try:
            variables = {
                "content_key": item.content_key, "git_sha": sha, "python": sys.executable,
                "project_root": str(project.root), "junit_path": str(work / "junit.xml"),
                "manifest_path": str(work / "manifest.json"), "builder_cidr": cidr,
                "region": env.aws.region,
            }
            rc = packerrun.build(item.hcl, variables, work / "packer.log", progress, cancel)
            tests = junit.summary(work / "junit.xml")
            if rc != 0 or not junit.passed(tests):
                logs = state / "logs"
                logs.mkdir(parents=True, exist_ok=True)
                kept = logs / f"{role}-{item.content_key[:12]}-aws-failed.log"
                shutil.copyfile(work / "packer.log", kept)
                raise OperationError(f"{role}: amazon-ebs bake failed (tests: {tests['tests']} "
                                     f"run, {tests['failures']} failed); log kept at {kept}")
            seconds = round(time.monotonic() - begun, 1)
            art = record(work / "manifest.json", registry, aws, tests_passed=True, tests=tests,
                         timings={**progress.timings, "total": seconds},
                         packer_version=packer.version_string(packer.target_version()))
            results[role] = {"role": role, "status": "baked", "content_key": item.content_key,
                             "artifact": art.artifact, "seconds": seconds, "tests": tests}
        except OperationError as exc:
            results[role] = {"role": role, "status": "failed", "error": str(exc),
                             "content_key": item.content_key,
                             "seconds": round(time.monotonic() - begun, 1)}
            break  # fail-fast: the next bake would spend money on a pipeline that is broken
        finally:
            shutil.rmtree(work, ignore_errors=True)
    for item in todo:
        results.setdefault(item.role.role, {"role": item.role.role, "status": "cancelled",
                                            "content_key": item.content_key, "seconds": 0.0})
    return results
