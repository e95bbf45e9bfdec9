"""How every command prints its result: JSON for machines, a human view otherwise."""

from __future__ import annotations

import json

import click


def emit(data, as_json: bool, human) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        human(data)


def run(command: click.Command, prog: str) -> None:
    """Run a click command with the product's exit statuses: 0 ok, 1 an operation failed,
    2 bad input (one line naming the field), 130 interrupted. No traceback for user errors."""
    import sys

    from builder.errors import OperationError, UserError

    try:
        command.main(standalone_mode=False)
    except UserError as exc:
        click.echo(f"{prog}: error: {exc.render()}", err=True)
        sys.exit(2)
    except OperationError as exc:
        click.echo(f"{prog}: failed: {exc}", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo(f"{prog}: interrupted", err=True)
        sys.exit(130)
    except click.UsageError as exc:
        if isinstance(exc, getattr(click.exceptions, "NoArgsIsHelpError", ())):  # click >= 8.2
            click.echo(exc.ctx.get_help() if exc.ctx else exc.format_message())
            sys.exit(0)
        param = getattr(exc, "param", None)
        field = f" ({param.opts[0]})" if param is not None and param.opts else ""
        click.echo(f"{prog}: error: {exc.format_message()}{field}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        click.echo(f"{prog}: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
