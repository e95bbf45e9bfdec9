"""One line on the serial console when a boot settles, so whoever watches the console (the
local cluster's host, AWS's GetConsoleOutput) knows without logging in: under TCG every
SSH login to ask costs the guest more CPU than the answer is worth."""

from __future__ import annotations

import json
from pathlib import Path

CONSOLE = Path("/dev/console")
PREFIX = "builder-agent: boot"
LEAVE_PREFIX = "builder-agent: leave"


def line(report: dict) -> str:
    instance = (report.get("identity") or {}).get("instance_id") or "-"
    return f"{PREFIX} {report.get('state', 'unknown')} {instance}"


def _write(text: str, console: Path) -> bool:
    """Whether the line reached the console (a rehearsal or an unprivileged run has none)."""
    try:
        with open(console, "w") as fh:
            fh.write(f"\n{text}\n")
    except OSError:
        return False
    return True


def announce(report: dict, console: Path = CONSOLE) -> bool:
    return _write(line(report), console)


def announce_leave(report: dict, console: Path = CONSOLE) -> bool:
    """The graceful leave's outcome on the console: the journal of a powered-off node is
    out of reach, and the console log is what the host keeps."""
    return _write(f"{LEAVE_PREFIX} {json.dumps(report, sort_keys=True)}", console)
