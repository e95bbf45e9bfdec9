"""How every command prints its result: JSON for machines, a human view otherwise."""

from __future__ import annotations

import json

import click


def emit(data, as_json: bool, human) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))
    else:
        human(data)


def _wants_json(argv: list[str]) -> bool:
    words = argv[:argv.index("--")] if "--" in argv else argv
    return "--json" in words


def _fail(prog: str, kind: str, text: str, status: int, as_json: bool,
          where: dict | None = None) -> None:
    """One line on stderr; with --json also the error as a JSON object on stdout, so a
    script reading stdout always gets a document."""
    import sys

    label = {"input": "error", "operation": "failed", "interrupted": "interrupted"}[kind]
    click.echo(f"{prog}: {label}: {text}" if text else f"{prog}: {label}", err=True)
    if as_json:
        error = {"kind": kind, "message": text, "exit_status": status,
                 "file": None, "line": None, "field": None, **(where or {})}
        click.echo(json.dumps({"error": error}, sort_keys=True))
    sys.exit(status)


def run(command: click.Command, prog: str) -> None:
    """Run a click command with the product's exit statuses: 0 ok, 1 an operation failed,
    2 bad input (one line naming the field), 130 interrupted. No traceback for user errors."""
    import sys

    from builder.errors import OperationError, UserError

    as_json = _wants_json(sys.argv[1:])
    try:
        command.main(standalone_mode=False)
    except UserError as exc:
        _fail(prog, "input", exc.render(), 2, as_json,
              {"file": exc.file, "line": exc.line, "field": exc.field, "message": exc.message})
    except OperationError as exc:
        _fail(prog, "operation", str(exc), 1, as_json)
    except click.exceptions.Abort:
        _fail(prog, "interrupted", "", 130, as_json)
    except click.UsageError as exc:
        if isinstance(exc, getattr(click.exceptions, "NoArgsIsHelpError", ())):  # click >= 8.2
            click.echo(exc.ctx.get_help() if exc.ctx else exc.format_message())
            sys.exit(0)
        param = getattr(exc, "param", None)
        field = param.opts[0] if param is not None and param.opts else None
        _fail(prog, "input", exc.format_message() + (f" ({field})" if field else ""), 2,
              as_json, {"field": field, "message": exc.format_message()})
    except click.ClickException as exc:
        _fail(prog, "input", exc.format_message(), exc.exit_code, as_json)
