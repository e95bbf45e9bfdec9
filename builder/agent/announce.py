"""One line on the serial console when a boot settles, so whoever watches the console (the
local cluster's host, AWS's GetConsoleOutput) knows without logging in: under TCG every
SSH login to ask costs the guest more CPU than the answer is worth."""

from __future__ import annotations

from pathlib import Path

CONSOLE = Path("/dev/console")
PREFIX = "builder-agent: boot"


def line(report: dict) -> str:
    instance = (report.get("identity") or {}).get("instance_id") or "-"
    return f"{PREFIX} {report.get('state', 'unknown')} {instance}"


def announce(report: dict, console: Path = CONSOLE) -> bool:
    """Whether the line reached the console (a rehearsal or an unprivileged run has none)."""
    try:
        with open(console, "w") as fh:
            fh.write("\n" + line(report) + "\n")
    except OSError:
        return False
    return True
