"""How every command prints its result: JSON for machines, a human view otherwise."""

from __future__ import annotations

import json

import click


def emit(data, as_json: bool, human) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        human(data)
