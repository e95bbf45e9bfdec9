"""Finding a daemon this package started, from its pid file, after the starter is gone,
and ending it: ask, wait, then insist."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

from builder.errors import OperationError


def live_pid(pidfile: Path, *markers: str) -> int | None:
    """The pid in `pidfile` if that process is alive and its command line holds every
    marker (pids are recycled, so the number alone proves nothing)."""
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError):
        return None
    return pid if all(m.encode() in cmdline for m in markers) else None


def end(pid: int, alive: Callable[[], bool], *, grace: float, name: str,
        sig: int = signal.SIGTERM) -> bool:
    """Send `sig` and wait up to `grace` s for alive() to turn false, then SIGKILL and wait
    10 s more. False if the process was already gone; raises if it outlives SIGKILL."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    if _gone(alive, grace):
        return True
    if sig != signal.SIGKILL:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        if _gone(alive, 10):
            return True
    raise OperationError(f"{name} pid {pid} survived SIGKILL")


def _gone(alive: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while alive():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True
