"""`python -m builder.bench [PART]...`: run benchmark parts (all available ones by default)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from builder import bench
from builder.bench.common import Options, write_result
from builder.cli.output import run
from builder.errors import OperationError, UserError
from builder.spec.project import find_project


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("parts", nargs=-1, metavar="[PART]...")
@click.option("--repeat", type=click.IntRange(1, 100), default=5, show_default=True,
              help="Measured runs (after the warm-up).")
@click.option("--warmup", type=click.IntRange(0, 10), default=1, show_default=True,
              help="Unmeasured runs first (caches, page cache, bytecode).")
@click.option("--results", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Directory for <part>.json (default: bench/results/ of the project).")
@click.option("--list", "list_only", is_flag=True, help="List the parts and exit.")
@click.option("--check", is_flag=True, help="Exit 1 when a part misses its goal.")
def main(parts, repeat, warmup, results, list_only, check) -> None:
    """Benchmarks of the builder, one PART per module of builder.bench (render, ...)."""
    known = bench.part_names()
    if list_only:
        for name in known:
            module = bench.load_part(name)
            reason = module.available()
            click.echo(f"{name:<10} {module.DESCRIPTION}"
                       + (f"  [unavailable: {reason}]" if reason else ""))
        return
    for name in parts:
        if name not in known:
            raise UserError(f"unknown bench part {name!r} (known: {', '.join(known)})",
                            field="PART")
    project = find_project()
    options = Options(project=project, results=results or project.root / "bench" / "results",
                      repeat=repeat, warmup=warmup)
    missed = []
    for name in parts or known:
        module = bench.load_part(name)
        reason = module.available()
        if reason:
            if parts:
                raise OperationError(f"bench part {name} cannot run here: {reason}")
            click.echo(f"skip {name}: {reason}")
            continue
        data = module.run(options)
        path = write_result(options, name, data)
        click.echo(f"{name}: results in {project.display(path)}")
        if data.get("goal_met") is False:
            missed.append(name)
    if missed:
        click.echo(f"goal missed: {', '.join(missed)}", err=True)
        if check:
            sys.exit(1)


def entry() -> None:
    run(main, "builder bench")


if __name__ == "__main__":
    entry()
