"""Benchmarks, one part per module of this package, run by `python -m builder.bench [PART]...`
(what `make bench` runs).

A part is a module here that defines:

    DESCRIPTION: str                          one line for `--list`
    def available() -> str | None             None when it can run here, else why not
    def run(options: Options) -> dict         measure, print a human table, return the result

`run` returns plain data; the runner writes it to <results>/<part>.json. A result carries
`goal_met` (bool, or None when the part has no goal). Helpers every part needs live in
builder.bench.common.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

# Parts run in this order when none are named; parts added later sort after these.
PREFERRED_ORDER = ("render", "bake", "failover")
_NOT_PARTS = frozenset({"common", "aptproxy"})


def part_names() -> list[str]:
    found = [m.name for m in pkgutil.iter_modules(__path__)
             if not m.name.startswith("_") and m.name not in _NOT_PARTS]
    rank = {name: i for i, name in enumerate(PREFERRED_ORDER)}
    return sorted(found, key=lambda n: (rank.get(n, len(rank)), n))


def load_part(name: str) -> ModuleType:
    module = importlib.import_module(f"{__name__}.{name}")
    for attr in ("DESCRIPTION", "available", "run"):
        if not hasattr(module, attr):
            raise TypeError(f"bench part {name!r} has no {attr}")  # a programming error
    return module
