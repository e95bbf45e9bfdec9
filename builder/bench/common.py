"""What every bench part needs: options, statistics, a table, the results file."""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from builder.spec.project import Project


@dataclasses.dataclass(frozen=True)
class Options:
    project: Project
    results: Path           # directory of <part>.json
    repeat: int = 5         # measured runs, after `warmup` unmeasured ones
    warmup: int = 1


def stats(samples: Sequence[float]) -> dict:
    return {"median": round(statistics.median(samples), 3), "min": round(min(samples), 3),
            "max": round(max(samples), 3), "samples": [round(s, 3) for s in samples]}


def machine() -> dict:
    """Enough context to compare numbers taken on different days or hosts."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "platform": platform.platform(), "load_average": load}


def builder_command(*args: str) -> list[str]:
    """The CLI exactly as a user runs it, in this interpreter."""
    return [sys.executable, "-m", "builder", *args]


def run_cli(args: Sequence[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(builder_command(*args), cwd=cwd, capture_output=True, text=True,
                          check=False, stdin=subprocess.DEVNULL)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    cells = [[str(h) for h in headers]] + [[_cell(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) if i == 0 or not _numeric(c) else c.rjust(w)
                       for i, (c, w) in enumerate(zip(row, widths, strict=True))).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _cell(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def write_result(options: Options, part: str, data: dict) -> Path:
    options.results.mkdir(parents=True, exist_ok=True)
    path = options.results / f"{part}.json"
    document = {"part": part,
                "measured_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
                "machine": machine(), **data}
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)
    return path
