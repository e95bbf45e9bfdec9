"""Sample bundles: what `validate` renders a Saleor-tier role with when vendor/ has no bundle
for it, so the role's templates, provisioning script, user-data and HCL are still checked
on a fresh machine. A sample is a real bundle in form (manifest, SHA256SUMS, tarball) with no
application inside; its manifest says so (stand_in, source), it lives in the validation's
scratch directory only and is never baked."""

from __future__ import annotations

from pathlib import Path

from builder.spec import RoleSpec
from builder.vendoring import bundles

SOURCE = "builder validate: sample bundle for static checks only, no application inside"
# The manifest fields each app's bundle must have (bundles._check_manifest).
RUNTIMES = {"saleor": {"python": "system", "python_version": "3.13"}}
VERSION = "0.0.0"
CREATED = "2026-01-01T00:00:00Z"  # fixed: the same sample renders the same files


def write(role: RoleSpec, vendor: Path) -> bundles.Bundle:
    """The role's sample bundle in vendor/ (a scratch directory), made once."""
    app, version = role.bundle.app, role.bundle.version or VERSION
    path = vendor / bundles.file_name(app, version)
    if path.is_file():
        return bundles.read(path)
    payload = vendor / f".payload-{app}"
    payload.mkdir(parents=True, exist_ok=True)
    (payload / "SAMPLE").write_text(SOURCE + "\n")
    return bundles.write(vendor, app, version, payload, RUNTIMES.get(app, {}), SOURCE,
                         True, created=CREATED)


def is_sample(bundle: bundles.Bundle) -> bool:
    return bundle.manifest.get("source") == SOURCE
