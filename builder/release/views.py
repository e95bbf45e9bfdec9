"""Human-readable output of the release commands (the --json output is the data itself)."""

from __future__ import annotations

import time

import click


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.gmtime(ts)) if ts else "-"


def _images(images: dict[str, str]) -> str:
    return ",".join(f"{r}:{i}" for r, i in images.items())


def image_list(data: dict) -> None:
    if not data["images"]:
        click.echo("no aws images in the registry")
        return
    for row in data["images"]:
        gone = row.get("gone_regions") or []
        flags = [f for f, on in (("revoked", row["revoked"]), ("pruned", row["pruned"]),
                                 (f"gone in {','.join(gone)}", gone and not row["pruned"]),
                                 ("untested", not row["tests_passed"])) if on]
        click.echo(f"#{row['id']:<4} {row['role']:<18} {row['version']:<8} "
                   f"{','.join(row['channels']) or '-':<18} {_when(row['created_at'])}  "
                   f"{_images(row['images'])}" + (f"  [{' '.join(flags)}]" if flags else ""))


def image_show(data: dict) -> None:
    click.echo(f"#{data['id']} {data['role']} {data['version']} ({data['target']})")
    click.echo(f"  images:      {_images(data['images'])}")
    click.echo(f"  content key: {data['content_key']}")
    click.echo(f"  git sha:     {data['git_sha']}")
    click.echo(f"  base:        {data['base']}" + (f" (#{data['parent']})"
                                                     if data["parent"] else ""))
    click.echo(f"  tests:       {'passed' if data['tests_passed'] else 'FAILED'}")
    click.echo(f"  channels:    {', '.join(data['channels']) or '-'}")
    if data["descendants"]:
        click.echo(f"  descendants: {', '.join(f'#{d}' for d in data['descendants'])}")
    if data["revocation"]:
        rev = data["revocation"]
        inherited = f", inherited from #{rev['inherited_from']}" if rev["inherited_from"] else ""
        click.echo(f"  REVOKED:     {rev['reason']} ({_when(rev['at'])}{inherited})")
    for h in data["history"]:
        click.echo(f"  {_when(h['at'])}  {h['action']:<8} {h['channel']:<10} "
                   f"#{h['previous_id'] or '-'} -> #{h['artifact_id']}")


def channel_change(data: dict) -> None:
    img = data["image"]
    if not data["changed"]:
        click.echo(f"{data['role']} {img['version']} (#{img['id']}) is already on "
                   f"{data['channel']}")
        return
    prev = data["previous"]
    was = f"#{prev['id']} {prev['version']}" if prev else "nothing"
    click.echo(f"{data['role']} {data['channel']}: #{img['id']} {img['version']} "
               f"{_images(img['images'])} (was {was}); {data['parameter']}")


def revoked(data: dict) -> None:
    img = data["image"]
    if not data["changed"]:
        first = data.get("revocation") or {}
        click.echo(f"#{img['id']} {data['role']} {img['version']} was already revoked: "
                   f"{first.get('reason', '?')} ({_when(first.get('at'))}); that reason is "
                   f"kept, nothing changed")
        return
    click.echo(f"revoked #{img['id']} {data['role']} {img['version']}: {data['reason']}")
    for d in data["descendants"]:
        click.echo(f"  flagged descendant #{d}")
    for name in data["channels_still_pointing"]:
        click.echo(f"  channel {name} still points at a revoked image: run `builder release "
                   f"rollback {data['role']} --channel {name}` or promote another")
    for missing in data["missing_in_aws"]:
        click.echo(f"  {missing} no longer exists in AWS (registry flagged only)")


def rollout(data: dict) -> None:
    keys = ("status", "asg", "image", "template_version", "refresh_id", "green", "blue",
            "live", "deleted", "retired")
    click.echo(" ".join(f"{k}={data[k]}" for k in keys if data.get(k) is not None))


def prune(data: dict) -> None:
    for d in data["images"]:
        why = "; ".join(d["reasons"]) if d["reasons"] else "unreferenced"
        click.echo(f"{d['action']:<7} {d['region']:<14} {d['image']:<22} {d['version']:<8} "
                   f"{why}" + (f" (+{len(d['snapshots'])} snapshot(s))"
                               if d["action"] != "keep" else ""))
        if d["action"] != "keep" and d.get("stale_template_versions"):
            click.echo(f"        still named by old launch template version(s) "
                       f"{', '.join(d['stale_template_versions'])} (not deleted)")
    doomed = [d for d in data["images"] if d["action"] == "delete"]
    if "deleted" not in data:
        click.echo(f"dry run: {len(doomed)} image(s) would be deleted, "
                   f"{len(data['images']) - len(doomed)} kept; pass --yes to delete")
    else:
        click.echo(f"deleted {len(data['deleted'])} image(s)")
