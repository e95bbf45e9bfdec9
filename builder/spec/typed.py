"""YAML documents into frozen dataclasses, with one-line errors naming file, line and field.

Field types come from the dataclass annotations; a field's metadata may carry a `check`
callable that raises ValueError with a human message. Unknown fields are errors.
"""

from __future__ import annotations

import dataclasses
import types
import typing
import unicodedata
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

import yaml

from builder.errors import UserError

Lines = dict[tuple, int]


def load_yaml(path: Path, display: str | None = None) -> tuple[Any, Lines]:
    """Parse one YAML document; return the data and the line of every mapping key."""
    shown = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError("file not found", file=shown) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read: {exc}", file=shown) from None
    try:
        loader = yaml.SafeLoader(text)
    except yaml.reader.ReaderError as exc:  # a NUL or other non-printable byte in the file
        line = text.count("\n", 0, exc.position) + 1
        raise UserError(f"malformed YAML: unacceptable character #x{exc.character:04x}",
                        file=shown, line=line) from None
    try:
        node = loader.get_single_node()
        if node is not None:
            _reject_duplicates(node, shown)
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise UserError(f"malformed YAML: {problem}", file=shown, line=line) from None
    except yaml.YAMLError as exc:
        raise UserError(f"malformed YAML: {exc}", file=shown) from None
    finally:
        loader.dispose()
    lines: Lines = {}
    if node is not None:
        _record_lines(node, (), lines)
    return data, lines


def _reject_duplicates(node: yaml.Node, shown: str, path: tuple = (),
                       visited: set[int] | None = None) -> None:
    """PyYAML keeps the last of two equal keys and drops the first without a word; in a spec
    that silently loses settings. Checked before construction, which flattens `<<` merges."""
    visited = set() if visited is None else visited
    if id(node) in visited:  # an alias: already checked, and maybe recursive
        return
    visited.add(id(node))
    if isinstance(node, yaml.MappingNode):
        seen = set()
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None and key != "<<":
                if key in seen:
                    raise UserError("duplicate key", file=shown,
                                    field=field_name(path + (key,)),
                                    line=key_node.start_mark.line + 1)
                seen.add(key)
            _reject_duplicates(value_node, shown, path + (key,), visited)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _reject_duplicates(item, shown, path + (index,), visited)


def _record_lines(node: yaml.Node, path: tuple, lines: Lines) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value
            lines[path + (key,)] = key_node.start_mark.line + 1
            _record_lines(value_node, path + (key,), lines)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(item, path + (index,), lines)


@dataclasses.dataclass
class Source:
    """Where a document came from, for error messages."""

    file: str
    lines: Lines

    def error(self, path: tuple, message: str) -> UserError:
        line = None
        for cut in range(len(path), -1, -1):
            if path[:cut] in self.lines:
                line = self.lines[path[:cut]]
                break
        return UserError(message, file=self.file, field=field_name(path) or None, line=line)


def field_name(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def build(cls: type, data: Any, source: Source, path: tuple = ()) -> Any:
    """Convert plain YAML data into an instance of `cls` (a dataclass or a typing form)."""
    return _convert(cls, data, source, path)


def _describe(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _convert(tp: Any, value: Any, source: Source, path: tuple) -> Any:
    origin = get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        options = get_args(tp)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _convert(option, value, source, path)
            except UserError as exc:
                errors.append(exc)
        raise errors[0]
    if origin is Literal:
        allowed = get_args(tp)
        if value not in allowed:
            choices = ", ".join(repr(a) for a in allowed)
            raise source.error(path, f"must be one of {choices}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise source.error(path, f"expected a list, got {_describe(value)}")
        (item_tp, *_) = get_args(tp) or (Any,)
        items = [_convert(item_tp, item, source, path + (i,)) for i, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise source.error(path, f"expected a mapping, got {_describe(value)}")
        key_tp, val_tp = get_args(tp) or (str, Any)
        return {
            _convert(key_tp, k, source, path + (k,)): _convert(val_tp, v, source, path + (k,))
            for k, v in value.items()
        }
    if dataclasses.is_dataclass(tp):
        return _dataclass(tp, value, source, path)
    if tp is bool:
        if not isinstance(value, bool):
            raise source.error(path, f"expected true or false, got {_describe(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise source.error(path, f"expected an integer, got {_describe(value)}")
        return value
    if tp is str:
        if not isinstance(value, str):
            raise source.error(path, f"expected a string, got {_describe(value)}")
        _one_line_of_text(value, source, path)
        return value
    raise TypeError(f"unsupported annotation {tp!r}")  # a programming error, not user input


# Line and paragraph separators, control characters (NUL, newline, tab, ESC, ...) and lone
# surrogates: no spec or environment string needs them, and each would change the meaning
# of a generated file or a log line, or could not be written as UTF-8 at all.
_NOT_TEXT = {"Cc", "Cs", "Zl", "Zp"}


def _one_line_of_text(value: str, source: Source, path: tuple) -> None:
    for ch in value:
        if unicodedata.category(ch) in _NOT_TEXT:
            raise source.error(path, f"control character U+{ord(ch):04X} in a string "
                               "(one line of printable text expected)")


def _dataclass(cls: type, value: Any, source: Source, path: tuple) -> Any:
    if not isinstance(value, dict):
        raise source.error(path, f"expected a mapping, got {_describe(value)}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in value:
        if key not in fields:
            known = ", ".join(sorted(fields))
            raise source.error(path + (key,), f"unknown field (known: {known})")
    kwargs = {}
    for key, f in fields.items():
        if key in value:
            converted = _convert(hints[f.name], value[key], source, path + (key,))
            check = f.metadata.get("check")
            if check is not None:
                try:
                    check(converted)
                except ValueError as exc:
                    raise source.error(path + (key,), str(exc)) from None
            kwargs[f.name] = converted
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise source.error(path + (key,), "required field is missing")
    try:
        return cls(**kwargs)
    except ValueError as exc:  # cross-field checks in __post_init__
        raise source.error(path, str(exc)) from None


def checked(check: typing.Callable[[Any], None], **kw: Any) -> Any:
    """A dataclass field with a value check (raise ValueError with a message)."""
    return dataclasses.field(metadata={"check": check}, **kw)
