"""Counts from a JUnit XML report (what pytest --junitxml writes)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path


def summary(path: Path) -> dict:
    if not path.is_file():
        return {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "report": None}
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in suites:
        for key in totals:
            totals[key] += int(suite.get(key, 0))
    return {**totals, "report": path.name}


def passed(counts: dict) -> bool:
    return counts["tests"] > 0 and counts["failures"] == 0 and counts["errors"] == 0
