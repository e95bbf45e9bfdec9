"""Suite-wide reporting: each test module's wall time, printed at the end of every run so a CI
log shows where the time goes (fixture set-up counts toward the module that triggered it)."""

from __future__ import annotations

import time
from collections import defaultdict

import pytest

_module_seconds: dict[str, float] = defaultdict(float)
_module_counts: dict[str, int] = defaultdict(int)
_started = time.monotonic()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    started = time.monotonic()
    yield
    module = item.nodeid.split("::", 1)[0]
    _module_seconds[module] += time.monotonic() - started
    _module_counts[module] += 1


def pytest_terminal_summary(terminalreporter):
    if not _module_seconds:
        return
    total = time.monotonic() - _started
    terminalreporter.section("wall time per module")
    for module, seconds in sorted(_module_seconds.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{seconds:8.1f} s  {_module_counts[module]:4d} tests  "
                                    f"{module}")
    terminalreporter.write_line(f"{total:8.1f} s  total (collection and session teardown "
                                "included)")
