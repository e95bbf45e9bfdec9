"""The only way values enter generated HCL, shell and YAML: quoted as data, never as text.

Each function takes a value and returns text that the target language reads back as exactly
that value, whatever characters it holds. Templates use them as Jinja filters (see
`FILTERS`); a value that reaches a generated file any other way is a bug.
"""

from __future__ import annotations

import json
from typing import Any

import yaml

# HCL's escapes inside a quoted template (hclsyntax spec, "Template Literals").
_HCL_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _hcl_char(ch: str) -> str:
    if ch in _HCL_ESCAPES:
        return _HCL_ESCAPES[ch]
    if ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F:
        return f"\\u{ord(ch):04x}"
    return ch


def hcl_string(value: Any) -> str:
    """A quoted HCL string literal: `${` and `%{` doubled, so Packer never evaluates it."""
    text = "".join(_hcl_char(ch) for ch in str(value))
    return '"' + text.replace("${", "$${").replace("%{", "%%{") + '"'


def hcl_text(value: Any) -> str:
    """The inside of an HCL string literal, for a template that adds its own `${...}`."""
    return hcl_string(value)[1:-1]


def hcl_value(value: Any) -> str:
    """A list, map, number, bool or string as an HCL expression of literals only."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(hcl_value(v) for v in value) + "]"
    if isinstance(value, dict):
        pairs = (f"{hcl_string(k)} = {hcl_value(v)}" for k, v in value.items())
        return "{ " + ", ".join(pairs) + " }"
    return hcl_string(value)


def shell_word(value: Any) -> str:
    """One POSIX shell word that is the value itself: no expansion, no splitting. Always
    single-quoted, so a rendered script reads the same whatever the value is."""
    return "'" + str(value).replace("'", "'\\''") + "'"


class _OneLineDumper(yaml.SafeDumper):
    """Strings double-quoted with escapes: a value embedded in a larger YAML document stays on
    one line whatever it holds (line breaks, quotes, `#`, `: `, non-printable characters)."""


def _quoted_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style='"')


_OneLineDumper.add_representer(str, _quoted_str)


def yaml_value(value: Any) -> str:
    """A YAML flow value (scalar, list or mapping) on one line, for a template's `key: ...`."""
    text = yaml.dump(value, Dumper=_OneLineDumper, default_flow_style=True,
                     width=float("inf"), allow_unicode=True, sort_keys=False)
    return text.removesuffix("\n...\n").rstrip("\n")


class _DocumentDumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks (a file embedded in user-data stays readable);
    PyYAML itself falls back to a quoted scalar when a value cannot be one."""


def _block_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_DocumentDumper.add_representer(str, _block_str)


def yaml_document(value: Any) -> str:
    """A whole YAML document dumped from data, in block style, keys in the order given."""
    return yaml.dump(value, Dumper=_DocumentDumper, default_flow_style=False,
                     allow_unicode=True, sort_keys=False, width=float("inf"))


def json_value(value: Any) -> str:
    return json.dumps(value)


FILTERS = {
    "hcl": hcl_value,
    "hcl_text": hcl_text,
    "shell": shell_word,
    "yaml": yaml_value,
    "yaml_document": yaml_document,
    "tojson": json_value,
}
