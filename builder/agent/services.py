"""Running systemctl and other system commands, or only recording them (`--dry-run-services`).

The recorded calls go into the boot report either way, so a rehearsal shows exactly what
a real boot would run, in order.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Callable

from builder.agent.errors import AgentError


class Services:
    def __init__(self, dry_run: bool = False, timeout: float = 300.0):
        self.dry_run = dry_run
        self.timeout = timeout
        self.calls: list[dict] = []

    def run(self, *argv: str, check: bool = True, timeout: float | None = None) -> bool:
        """Run argv; True when it succeeded (always, when only recording)."""
        record: dict = {"argv": list(argv)}
        self.calls.append(record)
        if self.dry_run:
            record["dry_run"] = True
            return True
        try:
            proc = subprocess.run(list(argv), capture_output=True, text=True,
                                  timeout=timeout or self.timeout, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            record["error"] = str(exc)
            if check:
                raise AgentError(f"{' '.join(argv)}: {exc}") from None
            return False
        record["rc"] = proc.returncode
        if proc.returncode != 0 and check:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            raise AgentError(f"{' '.join(argv)} exited {proc.returncode}"
                             + (f": {detail[-1]}" if detail else ""))
        return proc.returncode == 0

    def stream(self, *argv: str, on_line: Callable[[str], None],
               timeout: float | None = None) -> None:
        """run() for a long command whose output tells its progress: each line of its
        stdout and stderr goes to on_line() as it comes; killed at the timeout."""
        record: dict = {"argv": list(argv)}
        self.calls.append(record)
        if self.dry_run:
            record["dry_run"] = True
            return
        limit = timeout or self.timeout
        try:
            proc = subprocess.Popen(list(argv), stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    text=True, errors="replace")
        except OSError as exc:
            record["error"] = str(exc)
            raise AgentError(f"{' '.join(argv)}: {exc}") from None
        expired = threading.Event()

        def kill() -> None:
            expired.set()
            proc.kill()

        timer = threading.Timer(limit, kill)
        timer.start()
        last = ""
        try:
            for line in proc.stdout:
                if line.strip():
                    last = line.strip()
                on_line(line.rstrip("\n"))
            proc.wait()
        finally:
            timer.cancel()
            proc.stdout.close()
        record["rc"] = proc.returncode
        if expired.is_set():
            record["error"] = f"timed out after {limit:.0f} s"
            raise AgentError(f"{' '.join(argv)}: timed out after {limit:.0f} s"
                             + (f" (last output: {last})" if last else ""))
        if proc.returncode != 0:
            raise AgentError(f"{' '.join(argv)} exited {proc.returncode}"
                             + (f": {last}" if last else ""))

    def start(self, unit: str) -> None:
        self.run("systemctl", "start", unit)

    def restart(self, unit: str) -> None:
        # restart, not start: a second boot run must apply freshly rendered configs.
        self.run("systemctl", "restart", unit)

    def reload_or_restart(self, unit: str) -> None:
        """Apply freshly rendered configs without dropping what the unit serves (HAProxy's
        reload hands listeners to a new worker; the old one finishes its sessions)."""
        self.run("systemctl", "reload-or-restart", unit)
