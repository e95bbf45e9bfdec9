"""The `builder` command line: parse, call, print. No logic lives here.

This module: the `builder` group, its list, render, validate, base, bake and test-image
commands, and main(). cluster.py, release.py (release, rollout, prune) and vendor.py: the
other command groups. commands.py: what this module's commands do, as plain data.
output.py: how every command prints its result and exits.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import click

from builder import __version__
from builder.cli.output import emit, run


def _selectors(func):
    """ROLE... | --all, --target, --env, --images: the same on every command that needs them."""
    @click.argument("roles", nargs=-1, metavar="[ROLE]...")
    @click.option("--all", "all_roles", is_flag=True, help="Every role under --images.")
    @click.option("--target", default="qemu", show_default=True, metavar="qemu|aws",
                  help="Where the image is baked.")
    @click.option("--env", "env_name", default="local", show_default=True, metavar="NAME|FILE",
                  help="Environment: built-in `local`, environments/NAME.yaml, or a file.")
    @click.option("--images", type=click.Path(path_type=Path), default=None,
                  help="Directory of role specs (default: images/ of the project).")
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)
    return wrapper


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="builder")
def cli() -> None:
    """Bake, test and release golden VM images for a highly available Saleor stack."""


@cli.command("list")
@click.option("--images", type=click.Path(path_type=Path), default=None,
              help="Directory of role specs (default: images/ of the project).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_roles(images, as_json) -> None:
    """Roles, their versions and the targets they render for."""
    from builder.cli import commands

    emit(commands.list_roles(images), as_json, commands.print_roles)


@cli.command()
@_selectors
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output directory (default: packer/ of the project).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def render(roles, all_roles, target, env_name, images, out, as_json) -> None:
    """Render Packer HCL, user-data and provisioning files for roles."""
    from builder.cli import commands

    result = commands.render(roles, all_roles, target, env_name, images, out)
    emit(result, as_json, commands.print_rendered)


@cli.command()
@_selectors
@click.option("--no-cache", "no_cache", is_flag=True,
              help="Run every `packer validate`, also those that passed before with the same "
                   "inputs (Packer binary, rendered role, sample variables).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def validate(roles, all_roles, target, env_name, images, no_cache, as_json) -> None:
    """The static gate: specs, strict templates, HCL, packer validate/fmt, cloud-init schema."""
    from builder.cli import commands

    report = commands.validate(roles, all_roles, target, env_name, images, not no_cache)
    emit(report, as_json, commands.print_validation)
    if not report["ok"]:
        sys.exit(1)


@cli.command()
@click.option("--suite", type=click.Choice(["trixie", "bookworm"]), default="trixie",
              show_default=True, help="Debian release of the base image.")
@click.option("--force", is_flag=True, help="Rebuild even when cached.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def base(suite, force, as_json) -> None:
    """Make (or reuse) the local Debian base qcow2 with mmdebstrap."""
    from builder.cli import commands

    emit(commands.base(suite, force), as_json, lambda d: click.echo(d["image"]))


@cli.command()
@_selectors
@click.option("--force", is_flag=True, help="Bake even when an identical tested image exists.")
@click.option("--parallel", type=click.IntRange(1, 8), default=1, show_default=True,
              help="Bakes at once; the first failure stops the others.")
@click.option("--no-layer", "no_layer", is_flag=True,
              help="qemu: boot the bare base and let apt install the role's packages in the "
                   "bake VM, instead of starting from the role's package layer.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def bake(roles, all_roles, target, env_name, images, force, parallel, no_layer,
         as_json) -> None:
    """Bake images with Packer, testing each inside its build."""
    from builder.cli import commands

    report = commands.bake(roles, all_roles, target, env_name, images, force, parallel,
                           layers=not no_layer)
    emit(report, as_json, commands.print_bakes)
    if not report["ok"]:
        sys.exit(1)


@cli.command("test-image")
@click.option("--spec", "spec_file", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The rendered spec.json of the role (packer/<target>/<role>/spec.json).")
@click.option("--phase", type=click.Choice(["bake", "boot"]), default="bake", show_default=True,
              help="Which suite: bake (the image as built) or boot (a configured node).")
@click.option("--ssh", "ssh_target", required=True, metavar="USER@HOST:PORT",
              help="Where the image or node answers SSH.")
@click.option("--key", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="SSH private key file.")
@click.option("--key-env", metavar="VAR", help="Environment variable holding the private key.")
@click.option("--junit", type=click.Path(path_type=Path), help="Write JUnit XML here.")
@click.option("--project", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Project holding tests/images (default: found from the current directory).")
def test_image(spec_file, phase, ssh_target, key, key_env, junit, project) -> None:
    """Run a role's testinfra suite against a VM over SSH (used inside bakes)."""
    from builder.bake import imagetest

    sys.exit(imagetest.run(spec_file, phase, ssh_target, key, key_env, junit, project))


# The modules, not their groups: `from builder.cli.cluster import cluster` here would leave
# the package attribute builder.cli.cluster naming the group instead of the module.
from builder.cli import cluster, release, vendor  # noqa: E402

cli.add_command(release.release)
cli.add_command(release.rollout)
cli.add_command(release.prune)
cli.add_command(cluster.cluster)
cli.add_command(vendor.vendor)


def main() -> None:
    run(cli, "builder")
