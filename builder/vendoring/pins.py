"""Fully pinned requirements files (`name==version`, markers and `--hash` allowed): parse,
evaluate markers for the bundle's Python, and write the bundle's requirements.txt."""

from __future__ import annotations

import dataclasses
import re

from packaging.markers import InvalidMarker, Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from builder.errors import UserError

_HASH = re.compile(r"\s--hash[=\s]\s*(\S+)")


@dataclasses.dataclass(frozen=True)
class Pin:
    name: str                  # canonical (PEP 503)
    version: str
    requirement: str           # as written, without hashes: "celery[redis]==5.6.3 ; ..."
    marker: Marker | None
    hashes: tuple[str, ...]
    line: int

    def applies(self, environment: dict) -> bool:
        return self.marker is None or self.marker.evaluate(environment)

    def render(self, hashes: tuple[str, ...] | None = None) -> str:
        chosen = self.hashes if hashes is None else hashes
        return " ".join([self.requirement, *(f"--hash={h}" for h in chosen)])


def _logical_lines(text: str):
    """(first line number, text) per requirement, continuations joined, comments dropped."""
    buffer, start = "", 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = re.sub(r"(^|\s)#.*$", "", raw)
        if not buffer:
            start = number
        if line.rstrip().endswith("\\"):
            buffer += line.rstrip()[:-1] + " "
            continue
        buffer += line
        if buffer.strip():
            yield start, buffer.strip()
        buffer = ""
    if buffer.strip():
        yield start, buffer.strip()


def parse(text: str, file: str) -> list[Pin]:
    """Every requirement of a requirements file; UserError (file, line) on anything that is
    not `name==version` (extras, markers and `--hash=` allowed)."""
    pins: list[Pin] = []
    for number, line in _logical_lines(text):
        def fail(message: str, number=number, line=line):
            raise UserError(f"{message}: {line[:120]}", file=file, line=number)
        if line.startswith("-"):
            fail("only pinned requirements are allowed (no -e, -r, --index-url or other "
                 "options)")
        hashes = tuple(_HASH.findall(" " + line))
        body = _HASH.sub(" ", " " + line).strip()
        if re.search(r"(^|\s)--?[A-Za-z]", body):
            fail("only --hash options may follow a requirement")
        for h in hashes:
            if not re.fullmatch(r"sha(256|384|512):[0-9a-f]+", h):
                fail(f"bad hash {h}")
        try:
            req = Requirement(body)
        except (InvalidRequirement, InvalidMarker) as exc:
            fail(f"not a requirement ({exc})")
        specs = list(req.specifier)
        if req.url or len(specs) != 1 or specs[0].operator not in ("==", "===") \
                or "*" in specs[0].version:
            fail("not pinned: expected name==version")
        try:
            Version(specs[0].version)
        except InvalidVersion:
            fail(f"{specs[0].version} is not a version")
        pins.append(Pin(name=canonicalize_name(req.name), version=specs[0].version,
                        requirement=body, marker=req.marker, hashes=hashes, line=number))
    if not pins:
        raise UserError("lists no requirement", file=file)
    return pins


def target_environment(python_version: str) -> dict:
    """Marker variables of CPython python_version (X.Y or X.Y.Z) on x86_64 Linux."""
    parts = python_version.split(".")
    full = ".".join((parts + ["0"])[:3])
    return {"implementation_name": "cpython", "implementation_version": full,
            "os_name": "posix", "platform_machine": "x86_64",
            "platform_python_implementation": "CPython", "platform_release": "",
            "platform_system": "Linux", "platform_version": "", "python_full_version": full,
            "python_version": ".".join(parts[:2]), "sys_platform": "linux", "extra": ""}


def applicable(pins: list[Pin], environment: dict, file: str) -> list[Pin]:
    """The pins whose markers hold for the target, each name once."""
    chosen: dict[str, Pin] = {}
    for pin in pins:
        if not pin.applies(environment):
            continue
        if pin.name in chosen:
            raise UserError(f"{pin.name} is pinned twice for the bundle's Python (lines "
                            f"{chosen[pin.name].line} and {pin.line})", file=file)
        chosen[pin.name] = pin
    return list(chosen.values())


def check_hashes(pins: list[Pin], file: str) -> None:
    """pip checks hashes for all requirements or for none."""
    bare = [p for p in pins if not p.hashes]
    if bare and len(bare) != len(pins):
        raise UserError(f"{bare[0].name} has no --hash while others do (pip wants all or "
                        "none)", file=file, line=bare[0].line)


def render(pins: list[Pin], replaced_hashes: dict[tuple[str, str], tuple[str, ...]],
           header: str) -> str:
    """The bundle's requirements.txt: one line per pin (markers kept: pip skips those that do
    not apply); pins built here from an sdist carry their wheel's hash instead."""
    lines = [f"# {line}" for line in header.splitlines()]
    for pin in pins:
        key = (pin.name, str(Version(pin.version)))
        lines.append(pin.render(replaced_hashes.get(key) if pin.hashes else None))
    return "\n".join(lines) + "\n"
