"""Finding a daemon this package started, from its pid file, after the starter is gone."""

from __future__ import annotations

from pathlib import Path


def live_pid(pidfile: Path, *markers: str) -> int | None:
    """The pid in `pidfile` if that process is alive and its command line holds every
    marker (pids are recycled, so the number alone proves nothing)."""
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if all(m.encode() in cmdline for m in markers) else None
