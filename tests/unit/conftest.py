"""Fixtures of the fast unit tests (no VMs, no network)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import copy_project


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A private copy of the project; tests may break it as they like."""
    return copy_project(tmp_path / "project")


SAMPLE_PAYLOADS = {
    "saleor": ({"app/manage.py": "# sample\n", "app/saleor/__init__.py": "",
                "requirements.txt": "", "wheels/.keep": ""},
               {"python": "system", "python_version": "3.13"}),
    "dashboard": ({"dist/index.html": '<script>window.__SALEOR_CONFIG__ = '
                                      '{ API_URL: "http://localhost:8000/graphql/" };</script>\n'},
                  {}),
    "storefront": ({"app/server.js": "// sample\n"}, {"node": ">=24"}),
}


@pytest.fixture(scope="session", autouse=True)
def sample_bundles(tmp_path_factory):
    """Tiny bundles of every app in a private vendor/ (BUILDER_VENDOR), so the Saleor-tier
    roles render like the others; tests that need an empty vendor/ set their own."""
    import os

    from builder.vendoring import bundles

    vendor = tmp_path_factory.mktemp("vendor")
    for app, (files, runtime) in SAMPLE_PAYLOADS.items():
        payload = tmp_path_factory.mktemp(f"{app}-payload")
        for rel, text in files.items():
            (payload / rel).parent.mkdir(parents=True, exist_ok=True)
            (payload / rel).write_text(text)
        bundles.write(vendor, app, "0.1.0", payload, runtime, "tests/unit sample", True,
                      created="2026-01-01T00:00:00Z")
    old = os.environ.get("BUILDER_VENDOR")
    os.environ["BUILDER_VENDOR"] = str(vendor)
    yield vendor
    if old is None:
        os.environ.pop("BUILDER_VENDOR", None)
    else:
        os.environ["BUILDER_VENDOR"] = old
