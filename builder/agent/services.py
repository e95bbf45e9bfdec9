"""Running systemctl and other system commands, or only recording them (`--dry-run-services`).

The recorded calls go into the boot report either way, so a rehearsal shows exactly what
a real boot would run, in order.
"""

from __future__ import annotations

import subprocess

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

    def start(self, unit: str) -> None:
        self.run("systemctl", "start", unit)

    def restart(self, unit: str) -> None:
        # restart, not start: a second boot run must apply freshly rendered configs.
        self.run("systemctl", "restart", unit)

    def reload_or_restart(self, unit: str) -> None:
        """Apply freshly rendered configs without dropping what the unit serves (HAProxy's
        reload hands listeners to a new worker; the old one finishes its sessions)."""
        self.run("systemctl", "reload-or-restart", unit)
