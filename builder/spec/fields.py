"""Field shapes and checks that role specs and environments share."""

from __future__ import annotations

import re
from pathlib import Path

ROLE_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
# AWS's own shape of a region name: eu-central-1, us-gov-west-1.
REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]{1,2}")


def _names_fit(value: str) -> None:
    """A longer file name fails every system call that sees it (ENAMETOOLONG)."""
    if any(len(part.encode()) > 255 for part in Path(value).parts):
        raise ValueError("a file name in the path is longer than 255 bytes")


def _each(pattern: re.Pattern, what: str):
    def check(values: list[str]) -> None:
        for value in values:
            if not pattern.fullmatch(value):
                raise ValueError(f"{value!r} is not a valid {what}")
    return check


def _regions(values: list[str]) -> None:
    _each(REGION, "AWS region name (like eu-central-1)")(values)
