"""Every option of every command says what it is for, and every vendor command names its
directory the same way."""

from __future__ import annotations

import click

from builder.cli import cli


def _commands(group: click.Group, path: tuple[str, ...] = ()):
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            yield from _commands(command, (*path, name))
        else:
            yield (*path, name), command


def test_every_option_has_help():
    missing = [f"builder {' '.join(path)} {param.opts[0]}" for path, command in _commands(cli)
               for param in command.params
               if isinstance(param, click.Option) and not param.help]
    assert missing == []


def test_vendor_commands_name_the_vendor_directory_dir():
    vendor = cli.commands["vendor"]
    names = {name: {o for p in command.params for o in p.opts}
             for name, command in vendor.commands.items()}
    assert all("--dir" in opts and "--out" not in opts for opts in names.values()), names
