"""Fixtures of the fast unit tests (no VMs, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import copy_project


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A private copy of the project; tests may break it as they like."""
    return copy_project(tmp_path / "project")
