"""Progress lines with elapsed time, on stderr so --json output stays clean."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, prefix: str = "", quiet: bool = False, stream=None):
        self.prefix = prefix
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.current: str | None = None
        self.stage_started = self.started
        self.timings: dict[str, float] = {}

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _emit(self, text: str) -> None:
        if not self.quiet:
            print(f"[{self.elapsed():6.1f}s] {self.prefix}{text}", file=self.stream, flush=True)

    def say(self, text: str) -> None:
        self._emit(text)

    def stage(self, name: str, detail: str = "") -> None:
        """Start a named stage; the previous one's duration is recorded."""
        self.finish()
        self.current = name
        self.stage_started = time.monotonic()
        self._emit(f"{name}" + (f": {detail}" if detail else ""))

    def finish(self) -> None:
        if self.current is not None:
            took = time.monotonic() - self.stage_started
            self.timings[self.current] = round(self.timings.get(self.current, 0) + took, 1)
            self.current = None
