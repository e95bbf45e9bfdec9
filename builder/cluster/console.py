"""A node's serial console, read from the host as it grows: the agent's one-line boot
announcement (builder/agent/announce.py) says when a boot settled, so readiness costs no
SSH login into a guest that is still busy configuring itself."""

from __future__ import annotations

import json
import re
from pathlib import Path

from builder.agent.announce import LEAVE_PREFIX, PREFIX


class ConsoleWatch:
    def __init__(self, path: Path, instance_id: str):
        self.path = path
        self.instance_id = instance_id
        self._offset = 0
        self._partial = b""
        self.state: str | None = None  # the last announced state of this instance

    def poll(self) -> str | None:
        """The state the agent announced for this instance so far, reading only what the
        console gained since the last call (the file starts over when QEMU reopens it)."""
        try:
            with open(self.path, "rb") as fh:
                size = fh.seek(0, 2)
                if size < self._offset:
                    self._offset, self._partial, self.state = 0, b"", None
                fh.seek(self._offset)
                chunk = fh.read()
                self._offset = fh.tell()
        except OSError:
            return self.state
        *lines, self._partial = (self._partial + chunk).split(b"\n")
        for raw in lines:
            words = raw.decode("utf-8", "replace").strip().split()
            head = " ".join(words[:2])
            if head == PREFIX and len(words) == 4 and words[3] == self.instance_id:
                self.state = words[2]
        return self.state


def leave_report(path: Path) -> dict | None:
    """The report of the last graceful leave announced on a console, if any."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return None
    found = None
    for raw in text.splitlines():
        raw = raw.strip()
        if raw.startswith(LEAVE_PREFIX + " "):
            try:
                found = json.loads(raw[len(LEAVE_PREFIX) + 1:])
            except ValueError:
                continue
    return found


# What a guest's kernel prints as it goes down. A power-off is the guest's own choice; every
# other end under QEMU's -no-reboot is a reset (watchdog, panic, reboot) that real hardware
# or a cloud hypervisor would follow with a fresh boot of the same disk.
POWER_OFF = "reboot: Power down"
RESET_CAUSES = re.compile(r"softdog: Initiating system reboot|Kernel panic|Oops|BUG: |"
                          r"watchdog: |reboot: Restarting system|Out of memory")
TAIL_BYTES = 64 * 1024


def exit_cause(path: Path) -> tuple[str, str]:
    """How a guest's last boot ended, read from its console: ("power-off" | "reset",
    the line that says so) or ("unknown", its last line) when the console says neither
    (QEMU itself died, or the kernel had no time to print)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(max(0, fh.seek(0, 2) - TAIL_BYTES))
            lines = [raw.decode("utf-8", "replace").strip()
                     for raw in fh.read().splitlines()]
    except OSError:
        return "unknown", "no console"
    lines = [text for text in lines if text]
    if any(POWER_OFF in text for text in lines[-5:]):
        return "power-off", POWER_OFF
    causes = [text for text in lines if RESET_CAUSES.search(text)]
    if causes:
        return "reset", causes[0][-200:]
    return "unknown", (lines[-1][-200:] if lines else "empty console")
