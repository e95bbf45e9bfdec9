"""Helpers of the unit tests: throwaway copies of the project and the CLI as a user runs it
(a subprocess: exit status, stdout and stderr exactly as in a shell)."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

from builder.spec.project import copy_tree

REPO = Path(__file__).resolve().parents[2]
ROLES = ("etcd-patroni", "haproxy", "redis", "saleor-api", "saleor-dashboard", "storefront")


def copy_project(dest: Path) -> Path:
    return copy_tree(dest, REPO)


def run_builder(args: list[str], cwd: Path, state: Path | None = None,
                timeout: float = 120) -> subprocess.CompletedProcess:
    """`builder ARGS...` in cwd, exactly as from a shell (own process, real exit status).
    State (bases, registry) goes to `state`, by default next to the project copy: a test
    never writes into the checkout's output/."""
    if state is None:
        assert cwd.resolve() != REPO, "pass state= when running in the checkout"
        state = cwd.parent / "state"
    env = dict(os.environ)
    env["BUILDER_STATE"] = str(state)
    return subprocess.run([sys.executable, "-m", "builder", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)


def register(project, role: str, tmp_path: Path, name: str | None = None,
             version: str = "1.0.0") -> str:
    """A tested qemu artifact of `role` recorded in the project's registry, with the
    manifest a bake writes (no disk image): what `cluster` commands choose images from."""
    import json

    from builder.registry import Artifact, Registry, default_path

    artifact = tmp_path / "artifacts" / role / (name or f"{version}-kkkkkkkkkkkk")
    artifact.mkdir(parents=True)
    (artifact / "manifest.json").write_text(json.dumps({"image": f"{role}.qcow2",
                                                        "version": version}))
    Registry(default_path(project.state)).record(Artifact(
        role=role, version=version, target="qemu", content_key="k" * 64,
        artifact=str(artifact), base="b", git_sha="g", packer_version="1.6.6",
        tests_passed=True, tests={}, timings={}))
    return str(artifact)


def listing(root: Path) -> dict[str, str] | None:
    """Every file and directory below root with a digest of its content (None: no root)."""
    if not root.exists():
        return None
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_dir():
            out[rel + "/"] = "dir"
        else:
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def sample_ca_pem(name: str = "builder unit-test CA") -> str:
    """A real self-signed CA certificate (PEM): environments refuse anything that is not."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(1).not_valid_before(start)
            .not_valid_after(start + datetime.timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def run_sandboxed(script: str, start: str, end: str, etc: Path) -> None:
    """Runs the part of a rendered script from `start` up to `end` in sh, with its /etc paths
    (each follows a space in these steps) moved to `etc`: what the bake VM's /etc would get,
    nothing outside touched (PATH has only the usual homes of sed, cp and printf)."""
    part = script[script.index(start):script.index(end)]
    part = part.replace(" /etc/", f" {etc}/")
    subprocess.run(["sh", "-euc", 'say() { echo "builder: $*"; }\n' + part], check=True,
                   cwd=etc.parent, capture_output=True, env={"PATH": "/usr/bin:/bin"})
