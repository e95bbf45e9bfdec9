"""Throwaway SSH key pairs: one per bake, never stored with an artifact."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from builder.errors import UserError


def generate(path: Path, comment: str = "builder-bake") -> str:
    """Write an ed25519 key pair at path (+ .pub); return the public key line."""
    if not shutil.which("ssh-keygen"):
        raise UserError("ssh-keygen is not installed (run `make setup`)", field="ssh")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f",
                    str(path)], check=True, stdin=subprocess.DEVNULL)
    path.chmod(0o600)
    return path.with_suffix(".pub").read_text().strip()
